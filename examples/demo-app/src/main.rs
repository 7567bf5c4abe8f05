//! `demo-app`: a tiny std-only HTTP server that `rollout` deploys in tests and
//! demos. It reports its version, has a readiness endpoint, and can inject
//! faults (crash, never ready, error logs, error rate, latency) so that
//! automatic rollback can be exercised. `demo-app --check` is its own
//! health check, for images without a shell. See README.md.

mod app;
mod check;
mod config;
mod faults;
mod http;
mod log;
mod server;

use std::net::TcpListener;
use std::process;
use std::sync::Arc;
use std::time::Instant;

use app::App;
use config::Config;

/// Exit code for a missing or invalid environment variable.
const EXIT_CONFIG: i32 = 2;
/// Exit code for a failure at run time (crash, bind failure, simulated exit),
/// and of a failed `--check`.
const EXIT_FAILURE: i32 = 1;

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "--check")
    {
        process::exit(health_check());
    }
    let started = Instant::now();
    let config = Config::from_lookup(std::env::var_os).unwrap_or_else(|error| {
        log::error(error);
        process::exit(EXIT_CONFIG)
    });
    if config.ignore_sigterm {
        faults::ignore_sigterm();
    }
    if config.crash_at_start {
        log::error("crashing at start (CRASH_AT_START)");
        process::exit(EXIT_FAILURE);
    }
    let listener = listen(&config);
    log::info(format_args!(
        "demo-app {} listening on {}:{} (instance {})",
        config.version, config.host, config.port, config.instance
    ));
    faults::spawn_timers(&config, started);
    server::run(&listener, &Arc::new(App::new(&config, started)));
}

/// `demo-app --check`: `GET /healthz` on the address the app listens on
/// (its `HOST` and `PORT`) within a second. Prints one line and returns
/// the exit status: 0 on HTTP 200, 1 otherwise (also when the environment
/// does not say where the app listens).
fn health_check() -> i32 {
    let config = match Config::from_lookup(std::env::var_os) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("unhealthy: cannot tell where the app listens: {error}");
            return EXIT_FAILURE;
        }
    };
    let (host, port) = check::target(&config);
    match check::check(&host, port, check::TIMEOUT) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(failure) => {
            eprintln!("{failure}");
            EXIT_FAILURE
        }
    }
}

/// Binds the listening socket, or exits with a message naming the address.
fn listen(config: &Config) -> TcpListener {
    TcpListener::bind((config.host.as_str(), config.port)).unwrap_or_else(|error| {
        log::error(format_args!(
            "cannot listen on {}:{}: {error}",
            config.host, config.port
        ));
        process::exit(EXIT_FAILURE)
    })
}
