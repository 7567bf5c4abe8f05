//! The harness: run the `rollout` binary, build guest fixtures once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::docker_util::{demo_images, remove_containers_of};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A scenario file under `tests/scenarios/`.
pub fn scenario(name: &str) -> PathBuf {
    repo().join("tests/scenarios").join(format!("{name}.toml"))
}

/// What a run of `rollout` printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (for `--output json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

impl Run {
    /// Run `command` to its end.
    pub fn of(command: &mut Command) -> Run {
        let out = command.output().expect("run the rollout binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Run `rollout` with `args`; its home (policy cache) is shared by the tests.
pub fn rollout(args: &[&str]) -> Run {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rollout-home");
    Run::of(
        Command::new(env!("CARGO_BIN_EXE_rollout"))
            .args(args)
            .env("ROLLOUT_HOME", home)
            .current_dir(repo()),
    )
}

/// `rollout test --policy P --scenario S --output json` plus `extra`.
pub fn rollout_test(policy: &str, scenario_name: &str, extra: &[&str]) -> Run {
    let file = scenario(scenario_name);
    let mut args = vec!["test", "--policy", policy, "--scenario"];
    args.push(file.to_str().expect("utf-8 path"));
    args.extend(["--output", "json"]);
    args.extend(extra);
    rollout(args.as_slice())
}

/// Build the hostile guest policies in `tests/policies/` once; the path of
/// the component for package `name`.
pub fn hostile(name: &str) -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let target = BUILT.get_or_init(|| {
        let target = repo().join("policies/target");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo().join("tests/policies/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building tests/policies failed");
        target.join("wasm32-wasip2/release")
    });
    let file = target.join(format!("{}.wasm", name.replace('-', "_")));
    file.to_str().expect("utf-8 path").to_string()
}

/// Assert `haystack` contains `needle`, showing the haystack when not.
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected to find {needle:?} in:\n{haystack}"
    );
}

/// Build workspace package `package` (a binary of the same name) into a
/// target directory of its own (the outer `cargo test` holds the
/// workspace's); its path.
fn build_binary(package: &str) -> PathBuf {
    let target = repo().join(format!("target/e2e-{package}"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", package, "--manifest-path"])
        .arg(repo().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building {package} failed");
    target.join("debug").join(package)
}

/// `examples/demo-app`, built once; its path.
pub fn demo_app() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("demo-app")).clone()
}

/// `tests/raw-instance`, the recording instance of the framing vectors,
/// built once; its path.
pub fn raw_instance() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("raw-instance")).clone()
}

/// The backend a test's specs deploy to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Child processes of the agent.
    Process,
    /// Containers on the local Docker daemon.
    Docker,
    /// Tasks of a single-node Docker Swarm.
    Swarm,
}

/// A running `rollout serve` in a home of its own; stopped, with every
/// instance it started, when dropped.
pub struct Agent {
    /// The agent's home (state, socket, logs).
    pub home: tempfile::TempDir,
    /// Where [`Agent::spec`] deploys.
    pub on: On,
    /// Its limit on open files (soft and hard), if not the test's.
    nofile: Option<u64>,
    /// The home is a tmpfs of its own, unmounted on drop.
    mounted: bool,
    child: Option<std::process::Child>,
}

impl Agent {
    /// Start an agent in a new home and wait until it answers; its specs
    /// use the process backend.
    pub fn start() -> Agent {
        Agent::start_on(On::Process)
    }

    /// Start an agent whose specs deploy on `on`.
    pub fn start_on(on: On) -> Agent {
        Agent::start_with(on, None)
    }

    /// Start an agent on the process backend that may open at most
    /// `nofile` files (its soft and hard limit, as `ulimit -n` in a
    /// shell sets them).
    pub fn start_limited(nofile: u64) -> Agent {
        Agent::start_with(On::Process, Some(nofile))
    }

    fn start_with(on: On, nofile: Option<u64>) -> Agent {
        let mut agent = Agent {
            home: tempfile::tempdir().expect("temp dir"),
            on,
            nofile,
            mounted: false,
            child: None,
        };
        agent.restart();
        agent
    }

    /// Start an agent on the process backend whose home is a tmpfs of
    /// `megabytes` MB, so that the test can fill it; `None` when this
    /// machine does not let the test mount one (not root).
    pub fn start_on_tmpfs(megabytes: u32) -> Option<Agent> {
        let home = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(home.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            return None;
        }
        let mut agent = Agent {
            home,
            on: On::Process,
            nofile: None,
            mounted: true,
            child: None,
        };
        agent.restart();
        Some(agent)
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent runs").id()
    }

    /// Start the agent process (again) on the same home.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// Run `rollout serve` on this home, expecting it to refuse to start:
    /// what it said and its exit code. One still running after 30 s is
    /// killed and its code is -1.
    pub fn start_refused(&self) -> Run {
        assert!(self.child.is_none(), "the agent runs");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollout"))
            .args(["serve", "--home"])
            .arg(self.home.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start rollout serve");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut code = -1;
        while std::time::Instant::now() < until {
            if let Some(status) = child.try_wait().expect("wait") {
                code = status.code().unwrap_or(-1);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        if code == -1 {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("its output");
        Run {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start the agent process (again) on the same home, with `extra`
    /// arguments to `rollout serve`.
    pub fn restart_with(&mut self, extra: &[&str]) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollout"));
        command
            .args(["serve", "--home"])
            .arg(self.home.path())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        if let Some(nofile) = self.nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            // SAFETY: between fork and exec the child only sets its own
            // limit, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let mut child = command.spawn().expect("start rollout serve");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).expect("read the agent's first line");
        assert!(first.contains("serving"), "agent did not start: {first:?}");
        // Keep reading what it prints, as a terminal would.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        self.child = Some(child);
    }

    /// Kill the agent with SIGKILL (its instances keep running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the agent with SIGTERM and wait for it to exit; how it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the agent runs");
        // SAFETY: signals the agent's own process only.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        child.wait().expect("wait for the agent")
    }

    /// Run `rollout` against this agent.
    pub fn rollout(&self, args: &[&str]) -> Run {
        Run::of(&mut self.command(args))
    }

    /// A `rollout` command against this agent, to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollout"));
        command
            .args(args)
            .env("ROLLOUT_HOME", self.home.path())
            .env_remove("ROLLOUT_AGENT")
            .current_dir(repo());
        command
    }

    /// Write a spec for `examples/demo-app` `version` on the agent's
    /// backend into the home; its path. `extra` is appended to the
    /// `[revision.env]` table.
    pub fn spec(&self, name: &str, version: &str, extra_env: &str) -> PathBuf {
        if self.on != On::Process {
            return self.docker_spec(name, version, extra_env);
        }
        let revision = format!(
            "command = \"{app}\"\nenv = {{ VERSION = \"{version}\"{extra_env} }}",
            app = demo_app().display()
        );
        self.write_spec(&format!("{name}-{version}.toml"), name, "", &revision)
    }

    /// Write a spec for service `name` running `command` on the process
    /// backend, with `env` (inline-table entries, `A = "1", B = "2"`) as
    /// its environment and the tests' health, guardrails and policy; its
    /// path.
    pub fn command_spec(&self, name: &str, command: &Path, env: &str) -> PathBuf {
        let revision = format!("command = \"{}\"\nenv = {{ {env} }}", command.display());
        self.write_spec(&format!("{name}.toml"), name, "", &revision)
    }

    /// Write a spec for the `docker` backend (`swarm` on a Swarm agent)
    /// running image `rollout-e2e-demo:<tag>` (built by [`demo_images`];
    /// the image sets `VERSION`) into the home, with the same health,
    /// guardrails and policy as [`Agent::spec`]; its path. `extra_env` holds
    /// inline-table entries (`ERROR_RATE = "0.2"`; a leading `, ` as in
    /// [`Agent::spec`] is fine) and becomes `[revision] env` when not empty.
    pub fn docker_spec(&self, name: &str, tag: &str, extra_env: &str) -> PathBuf {
        let mut revision = format!("image = \"{}:{tag}\"", demo_images());
        let env = extra_env.trim().trim_start_matches(',').trim();
        if !env.is_empty() {
            revision.push_str(&format!("\nenv = {{ {env} }}"));
        }
        let backend = match self.on {
            On::Swarm => "backend = \"swarm\"\n",
            On::Process | On::Docker => "backend = \"docker\"\n",
        };
        self.write_spec(
            &format!("{name}-{tag}.docker.toml"),
            name,
            backend,
            &revision,
        )
    }

    /// Write `file` into the home: a spec for service `name` with `top`
    /// (whole lines) after the header, `revision` as its `[revision]` table
    /// and the tests' health, guardrails and policy; its path.
    fn write_spec(&self, file: &str, name: &str, top: &str, revision: &str) -> PathBuf {
        // Stopping a Swarm task on another node than the agent's takes
        // Swarm's own 2 s gossip delay and the node's report of its end,
        // up to about 4 s, during which nothing new becomes ready.
        let deadline = match self.on {
            On::Swarm => "15s",
            On::Process | On::Docker => "4s",
        };
        let text = format!(
            r#"name = "{name}"
replicas = 3
stop-grace = "2s"
{top}
[revision]
{revision}

[health]
http = {{ path = "/healthz", status = 200 }}
interval = "20ms"

[guardrails]
max-surge = 1
min-available = "100%"
progress-deadline = "{deadline}"

[policy]
name = "rolling"
params = {{ min-ready-ms = "400ms", ready-timeout-ms = "5s" }}
"#
        );
        let path = self.home.path().join(file);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    /// `GET path` on the agent's control socket; the body.
    pub fn get(&self, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
        let answer = self.request(request.as_bytes());
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// Send `raw` bytes on the agent's control socket; the whole answer
    /// (status line, headers, body) once the agent closes the connection.
    pub fn request(&self, raw: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.home.path().join("agent.sock"))
            .expect("connect to the agent");
        s.write_all(raw).expect("send");
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).expect("read");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `POST path` of `body` (JSON) on the agent's control socket; the
    /// whole answer.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> String {
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.request(&[head.as_bytes(), body.as_bytes()].concat())
    }

    /// The agent's database.
    pub fn store(&self) -> rollout::store::Store {
        rollout::store::Store::open(&self.home.path().join("state.db")).expect("open state.db")
    }

    /// What runs the instances of `service`, sorted: process ids, or
    /// container ids on Docker.
    pub fn handles(&self, service: &str) -> Vec<String> {
        match self.on {
            On::Process => {
                let mut pids: Vec<String> =
                    self.pids(service).iter().map(|p| p.to_string()).collect();
                pids.sort();
                pids
            }
            On::Docker => crate::docker_util::containers_of(self.home.path(), service),
            On::Swarm => crate::docker_util::services_of(self.home.path(), service),
        }
    }

    /// True while the process or container `handle` (from
    /// [`Agent::handles`]) runs.
    pub fn runs(&self, handle: &str) -> bool {
        match self.on {
            On::Process => Path::new(&format!("/proc/{handle}/exe")).exists(),
            On::Docker => {
                let id = format!("id={handle}");
                !crate::docker_util::docker(&["ps", "-q", "--filter", &id]).is_empty()
            }
            On::Swarm => {
                let id = format!("id={handle}");
                !crate::docker_util::docker(&["service", "ls", "-q", "--filter", &id]).is_empty()
            }
        }
    }

    /// Kill what runs `handle` (from [`Agent::handles`]) with SIGKILL, as
    /// an operator or the kernel's OOM killer would, behind the agent's
    /// back.
    pub fn kill_handle(&self, handle: &str) {
        match self.on {
            On::Process => {
                let pid: libc::pid_t = handle.parse().expect("a pid");
                // SAFETY: signals one instance's process only.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
            }
            On::Docker => {
                crate::docker_util::docker(&["kill", handle]);
            }
            On::Swarm => {
                // The task's container, on whichever node runs it (this
                // engine or another node's, `ROLLOUT_E2E_SWARM_WORKERS`).
                let tasks = crate::docker_util::docker(&[
                    "service",
                    "ps",
                    "-q",
                    "--filter",
                    "desired-state=running",
                    handle,
                ]);
                let task = tasks.split_whitespace().next().expect("a running task");
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let container = loop {
                    let id = crate::docker_util::docker(&[
                        "inspect",
                        "--format",
                        "{{.Status.ContainerStatus.ContainerID}}",
                        task,
                    ]);
                    if !id.is_empty() {
                        break id;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{task} has no container"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                };
                let hosts = std::iter::once(None)
                    .chain(crate::docker_util::swarm_workers().into_iter().map(Some));
                let killed = hosts.into_iter().any(|host| {
                    let mut kill = Command::new("docker");
                    if let Some(h) = &host {
                        kill.args(["-H", h]);
                    }
                    kill.args(["kill", &container])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                });
                assert!(killed, "no node runs container {container} of {handle}");
            }
        }
    }

    /// The front door processes of this home (`rollout door`, whose
    /// control socket is in it), whichever agent started them.
    pub fn door_processes(&self) -> Vec<u32> {
        let home = self.home.path().to_string_lossy().into_owned();
        processes(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.windows(3).any(|w| {
                w[0] == b"door" && w[1] == b"--socket" && w[2].starts_with(home.as_bytes())
            })
        })
    }

    /// Process ids of the instances the agent remembers for `service`.
    pub fn pids(&self, service: &str) -> Vec<i64> {
        let rows = self.store().instances(service).expect("instances");
        rows.iter().map(|r| r.pid).collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if let Ok(services) = self.store().services() {
            for service in services {
                // Docker instances are stored with pid 0: -0 would be the
                // test's own process group.
                for pid in self.pids(&service).into_iter().filter(|&pid| pid > 0) {
                    // SAFETY: signals the instance's process group only.
                    unsafe {
                        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
                    }
                }
            }
        }
        remove_containers_of(self.home.path());
        for pid in self.door_processes() {
            // SAFETY: signals one front door's process only.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.home.path())
                .status();
        }
    }
}

/// GET `http://addr/path` with a plain HTTP/1.0 request; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    text.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The processes of this machine that `chosen` picks, by process id.
pub fn processes(chosen: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| chosen(pid))
        .collect()
}
