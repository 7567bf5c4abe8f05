//! Docker for the end-to-end tests: whether a daemon answers (and what a
//! test does when none does), the demo-app images built `FROM scratch`, and
//! removal of the containers an agent started.
//!
//! A test that needs Docker starts with `if !docker_ready() { return; }`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::util::repo;

/// Repository of the demo-app images: tags `v1`, `v2` and `v3`.
pub const DEMO_IMAGE: &str = "rollout-e2e-demo";

/// `ERROR_AFTER_MS` baked into `rollout-e2e-demo:v3`: it logs `[ERROR]`
/// this long after it starts.
pub const V3_ERROR_AFTER_MS: u64 = 300;

/// Whether `docker info` answers: `Err` holds what it printed. Asked once
/// per test run.
fn docker_info() -> &'static Result<(), String> {
    static INFO: OnceLock<Result<(), String>> = OnceLock::new();
    INFO.get_or_init(|| match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot run `docker`: {e}")),
    })
}

/// Whether a Docker daemon answers (no panic, no message).
pub fn docker_available() -> bool {
    docker_info().is_ok()
}

/// Whether environment variable `name` is set to `1` (or `true`).
fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The gate of a test that needs Docker: `true` when the daemon answers.
/// When it does not: panics under `ROLLOUT_REQUIRE_DOCKER=1` (CI);
/// returns `false` after a loud `SKIPPED` line on stderr under
/// `ROLLOUT_SKIP_DOCKER=1`, and the test returns early; otherwise panics
/// with how to start Docker, so a missing daemon never passes silently.
pub fn docker_ready() -> bool {
    let Err(why) = docker_info() else {
        return true;
    };
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test");
    if flag("ROLLOUT_REQUIRE_DOCKER") {
        panic!(
            "{test} needs a Docker daemon and ROLLOUT_REQUIRE_DOCKER=1 is set, \
             but `docker info` fails:\n{why}"
        );
    }
    if flag("ROLLOUT_SKIP_DOCKER") {
        // Straight to stderr: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (ROLLOUT_SKIP_DOCKER=1): {test} needs a Docker daemon"
        );
        return false;
    }
    panic!(
        "{test} needs a Docker daemon, but `docker info` fails:\n{why}\n\
         Start Docker: run `dockerd &` as root (if `dockerd` is missing, \
         `apt-get install docker.io` first), or set ROLLOUT_SKIP_DOCKER=1 to \
         skip the Docker tests explicitly."
    );
}

/// The gate of a test that needs Docker Swarm: [`docker_ready`], then a
/// single-node Swarm, initialised here (on 127.0.0.1) if the daemon is not
/// in one yet, and left after.
pub fn swarm_ready() -> bool {
    if !docker_ready() {
        return false;
    }
    static SWARM: OnceLock<()> = OnceLock::new();
    SWARM.get_or_init(|| {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        if state != "active" {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        }
    });
    true
}

/// Run `docker args`; its stdout, trimmed. Panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The demo-app images, built once per test run (idempotent: the layer
/// cache makes a rebuild a no-op); returns [`DEMO_IMAGE`].
/// `rollout-e2e-demo:<tag>` is `FROM scratch` with a static
/// `examples/demo-app` as its entrypoint and `ENV VERSION=<tag>`; `v3`
/// also has `ENV ERROR_AFTER_MS=`[`V3_ERROR_AFTER_MS`].
pub fn demo_images() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let context = tempfile::tempdir().expect("temp dir");
        std::fs::copy(static_demo_app(), context.path().join("demo-app"))
            .expect("copy demo-app into the build context");
        for (tag, more) in [
            ("v1", String::new()),
            ("v2", String::new()),
            ("v3", format!("ENV ERROR_AFTER_MS={V3_ERROR_AFTER_MS}\n")),
        ] {
            let dockerfile = context.path().join(format!("{tag}.Dockerfile"));
            std::fs::write(
                &dockerfile,
                format!(
                    "FROM scratch\nCOPY demo-app /demo-app\nENV VERSION={tag}\n{more}\
                     ENTRYPOINT [\"/demo-app\"]\n"
                ),
            )
            .expect("write Dockerfile");
            let image = format!("{DEMO_IMAGE}:{tag}");
            docker(&[
                "build",
                "-q",
                "-t",
                &image,
                "-f",
                dockerfile.to_str().expect("utf-8 path"),
                context.path().to_str().expect("utf-8 path"),
            ]);
        }
        let images = ["v1", "v2", "v3"].map(|tag| format!("{DEMO_IMAGE}:{tag}"));
        for worker in swarm_workers() {
            copy_images(&images, &worker);
        }
    });
    DEMO_IMAGE
}

/// The Docker hosts of this machine's other Swarm nodes, from
/// `ROLLOUT_E2E_SWARM_WORKERS` (comma-separated, as
/// `scripts/swarm-second-node.sh` prints it): the tests copy their images
/// there and require tasks on more than one node.
pub fn swarm_workers() -> Vec<String> {
    let hosts = std::env::var("ROLLOUT_E2E_SWARM_WORKERS").unwrap_or_default();
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// `docker save images | docker -H host load`: no registry is reachable.
fn copy_images(images: &[String], host: &str) {
    let mut save = Command::new("docker")
        .arg("save")
        .args(images)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run docker save");
    let tar = save.stdout.take().expect("docker save's stdout");
    let loaded = Command::new("docker")
        .args(["-H", host, "load", "-q"])
        .stdin(tar)
        .output()
        .expect("run docker load");
    let saved = save.wait().expect("wait for docker save");
    assert!(
        saved.success() && loaded.status.success(),
        "copying {images:?} to the Swarm node at {host} failed: {}",
        String::from_utf8_lossy(&loaded.stderr).trim()
    );
}

/// While it lives, Swarm starts no new task on this machine's engine (the
/// manager; `docker node update --availability pause`): they all go to
/// the other nodes. Tasks already running stay.
pub struct ManagerPaused(String);

impl ManagerPaused {
    /// Pause the manager node.
    pub fn new() -> Self {
        let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
        docker(&["node", "update", "--availability", "pause", &node]);
        ManagerPaused(node)
    }

    /// The manager's node id.
    pub fn node(&self) -> &str {
        &self.0
    }
}

impl Drop for ManagerPaused {
    fn drop(&mut self) {
        // Also while a failed test unwinds: never leave the node paused.
        let _ = Command::new("docker")
            .args(["node", "update", "--availability", "active", &self.0])
            .stdout(Stdio::null())
            .status();
    }
}

/// The nodes the tasks of `services` run on (node ids, sorted, deduplicated).
pub fn nodes_of(services: &[String]) -> Vec<String> {
    let mut nodes = Vec::new();
    for service in services {
        let tasks = docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ]);
        for task in tasks.split_whitespace() {
            nodes.push(docker(&["inspect", "--format", "{{.NodeID}}", task]));
        }
    }
    nodes.sort();
    nodes.dedup();
    nodes
}

/// `examples/demo-app` linked statically (crt-static) for images `FROM
/// scratch`, built into `target/e2e-static`; its path. `--target` keeps the
/// static flag off build scripts and proc macros.
fn static_demo_app() -> PathBuf {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target = repo().join("target/e2e-static");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "demo-app",
            "--target",
            &triple,
            "--manifest-path",
        ])
        .arg(repo().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building a static examples/demo-app failed"
    );
    let binary = target.join(triple).join("debug/demo-app");
    assert!(
        !has_interpreter(&binary),
        "{} is dynamically linked; it cannot run FROM scratch",
        binary.display()
    );
    binary
}

/// Whether the ELF64 file at `path` names a program interpreter
/// (`PT_INTERP`), i.e. needs a dynamic loader at run time.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).expect("read the binary");
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(54), u16_at(56));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == 3 // PT_INTERP
    })
}

/// Remove every Swarm service (`docker service rm`) and every container
/// (`docker rm -f`) labelled `rollout.home=<home>`, as given or canonical.
/// Does nothing when no daemon answers; never panics (it runs in `Drop`).
pub fn remove_containers_of(home: &Path) {
    if !docker_available() {
        return;
    }
    let mut homes = vec![home.to_path_buf()];
    if let Ok(canonical) = home.canonicalize()
        && canonical != home
    {
        homes.push(canonical);
    }
    let kinds: [(&[&str], &[&str]); 2] = [
        (&["service", "ls", "-q"], &["service", "rm"]),
        (&["ps", "-aq"], &["rm", "-f"]),
    ];
    for home in homes {
        for (list, remove) in kinds {
            let Ok(out) = Command::new("docker")
                .args(list)
                .arg("--filter")
                .arg(format!("label=rollout.home={}", home.display()))
                .output()
            else {
                continue;
            };
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(remove)
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Ids of the Swarm services labelled `rollout.home=<home>` and
/// `rollout.service=<service>`, sorted.
pub fn services_of(home: &Path, service: &str) -> Vec<String> {
    let home = format!("label=rollout.home={}", home.display());
    let service = format!("label=rollout.service={service}");
    let out = docker(&[
        "service", "ls", "-q", "--filter", &home, "--filter", &service,
    ]);
    let mut ids: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    ids.sort();
    ids
}

/// Ids of the running containers labelled `rollout.home=<home>` and
/// `rollout.service=<service>`, sorted.
pub fn containers_of(home: &Path, service: &str) -> Vec<String> {
    let home = format!("label=rollout.home={}", home.display());
    let service = format!("label=rollout.service={service}");
    let out = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &home,
        "--filter",
        &service,
    ]);
    let mut ids: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    ids.sort();
    ids
}
