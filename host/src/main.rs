//! The `rollout` command; see `rollout --help`.

fn main() -> std::process::ExitCode {
    rollout::cli::main()
}
