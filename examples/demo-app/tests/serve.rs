//! Starts the built `demo-app` binary and talks HTTP to it over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long the app may take to print its listening line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout of test connections, so that a broken server fails the test.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A running demo-app, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the app with `env` on a free port and waits until it listens.
    fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut child = command(port, env)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start demo-app");
        let lines = forward_lines(child.stdout.take().expect("piped stdout"));
        let server = Self { child, port };
        wait_for_listening(&lines);
        server
    }

    /// Opens a new connection to the app.
    fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// The app's command with a clean environment, `PORT` and `env`.
fn command(port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo-app"));
    command
        .env_clear()
        .env("PORT", port.to_string())
        .envs(env.iter().copied());
    command
}

/// Sends each stdout line over a channel, and keeps draining stdout after
/// the receiver is gone so that the app never blocks on a full pipe.
fn forward_lines(stdout: ChildStdout) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    receiver
}

/// Waits for the `listening on` line; panics if the app exits or times out.
fn wait_for_listening(lines: &Receiver<String>) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("[INFO] demo-app ") && line.contains(" listening on ") => {
                return;
            }
            Ok(_) => {}
            Err(error) => panic!("demo-app did not report listening: {error}"),
        }
    }
}

/// One HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
}

/// A parsed response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Client {
    /// `GET path` on this connection.
    fn get(&mut self, path: &str) -> Reply {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
    }

    /// Sends a raw request and reads its response (no body for `HEAD`).
    fn send(&mut self, request: &str) -> Reply {
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let status_line = self.read_line();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = self.read_headers();
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        if !request.starts_with("HEAD ") {
            reply.body = self.read_body(&reply);
        }
        reply
    }

    /// Reads header lines up to the blank line.
    fn read_headers(&mut self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                return headers;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }

    /// Reads a body of the reply's `Content-Length`.
    fn read_body(&mut self, reply: &Reply) -> String {
        let length = reply
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        String::from_utf8(body).unwrap()
    }

    /// Reads one line without its CRLF.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "unterminated line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Whether the server has closed the connection.
    fn is_closed(&mut self) -> bool {
        let mut byte = [0];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

#[test]
fn endpoints_report_version_and_instance() {
    let server = Server::start(&[("VERSION", "v7"), ("ROLLOUT_INSTANCE", "web-3")]);
    let mut client = server.connect();
    let root = client.get("/");
    assert_eq!((root.status, root.body.as_str()), (200, "v7 web-3\n"));
    assert_eq!(root.header("X-Version"), Some("v7"));
    assert_eq!(client.get("/version").body, "v7\n");
    assert_eq!(client.get("/healthz").body, "ok\n");
    assert_eq!(client.get("/missing").status, 404);
    let head = client.send("HEAD / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("9"));
    // No body followed the HEAD response: the next response parses cleanly.
    assert_eq!(client.get("/version").body, "v7\n");
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    for _ in 0..2 {
        let reply = client.get("/");
        assert_eq!((reply.status, reply.body.as_str()), (200, "v1 demo\n"));
        assert_eq!(reply.header("Connection"), Some("keep-alive"));
    }
    let last = client.send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(last.header("Connection"), Some("close"));
    assert!(client.is_closed());
}

#[test]
fn http10_closes_unless_keep_alive_asked() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let kept = client.send("GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(kept.header("Connection"), Some("keep-alive"));
    let closed = client.send("GET /version HTTP/1.0\r\n\r\n");
    assert_eq!(closed.header("Connection"), Some("close"));
    assert!(client.is_closed());
}

#[test]
fn post_bodies_are_discarded() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let posted = client.send("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(posted.status, 200);
    assert_eq!(client.get("/version").body, "v1\n");
}

#[test]
fn ready_after_delays_health() {
    let server = Server::start(&[("READY_AFTER_MS", "300")]);
    let mut client = server.connect();
    let first = client.get("/healthz");
    assert_eq!((first.status, first.body.as_str()), (503, "starting\n"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client.get("/healthz");
        if reply.status == 200 {
            assert_eq!(reply.body, "ok\n");
            return;
        }
        assert_eq!(reply.status, 503);
        assert!(Instant::now() < deadline, "never became ready");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn crash_at_start_exits_with_status_1() {
    let output = command(free_port(), &[("CRASH_AT_START", "1")])
        .output()
        .expect("run demo-app");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[ERROR] crashing at start (CRASH_AT_START)"),
        "{stdout}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");
}

#[test]
fn invalid_configuration_exits_with_status_2() {
    let output = command(free_port(), &[("ERROR_RATE", "lots")])
        .output()
        .expect("run demo-app");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ERROR_RATE"));
    let output = Command::new(env!("CARGO_BIN_EXE_demo-app"))
        .env_clear()
        .output()
        .expect("run demo-app");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).contains("PORT is required"));
}

#[test]
fn error_rate_half_fails_five_of_ten() {
    let server = Server::start(&[("ERROR_RATE", "0.5")]);
    let mut client = server.connect();
    let replies: Vec<Reply> = (0..10).map(|_| client.get("/")).collect();
    let failed: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 500).collect();
    assert_eq!(failed.len(), 5, "{replies:?}");
    assert!(failed.iter().all(|reply| reply.body == "error\n"));
}

/// Runs `demo-app --check` with `PORT=port` and `env`; its exit status,
/// stdout and stderr, and how long it took.
fn run_check(port: Option<u16>, env: &[(&str, &str)]) -> (Option<i32>, String, String, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo-app"));
    command.arg("--check").env_clear().envs(env.iter().copied());
    if let Some(port) = port {
        command.env("PORT", port.to_string());
    }
    let started = Instant::now();
    let output = command.output().expect("run demo-app --check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn check_passes_on_a_ready_app() {
    let server = Server::start(&[]);
    let (code, stdout, stderr, _) = run_check(Some(server.port), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let expected = format!(
        "healthy: GET http://127.0.0.1:{}/healthz answered 200\n",
        server.port
    );
    assert_eq!((stdout.as_str(), stderr.as_str()), (expected.as_str(), ""));
}

#[test]
fn check_fails_on_an_unready_or_unhealthy_app() {
    for env in [("NEVER_READY", "1"), ("UNHEALTHY_AFTER_MS", "0")] {
        let server = Server::start(&[env]);
        let (code, stdout, stderr, _) = run_check(Some(server.port), &[]);
        assert_eq!(code, Some(1), "{env:?}: {stdout}{stderr}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("answered 503, not 200"), "{stderr}");
    }
}

#[test]
fn unhealthy_after_turns_health_to_503_for_good() {
    let server = Server::start(&[("UNHEALTHY_AFTER_MS", "300")]);
    let mut client = server.connect();
    assert_eq!(client.get("/healthz").status, 200);
    thread::sleep(Duration::from_millis(400));
    let failed = client.get("/healthz");
    assert_eq!((failed.status, failed.body.as_str()), (503, "unhealthy\n"));
    assert_eq!(client.get("/").status, 200, "only the health check fails");
}

#[test]
fn check_fails_when_nothing_listens() {
    let port = free_port();
    let (code, _, stderr, _) = run_check(Some(port), &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(&format!("unhealthy: GET http://127.0.0.1:{port}/healthz: ")),
        "{stderr}"
    );
}

#[test]
fn check_gives_up_after_one_second() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().unwrap().port();
    let (code, _, stderr, took) = run_check(Some(port), &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no answer within 1000 ms"), "{stderr}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(silent);
}

#[test]
fn check_without_port_fails_and_says_why() {
    let (code, stdout, stderr, _) = run_check(None, &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("PORT is required"), "{stderr}");
}

#[test]
fn check_reaches_an_app_listening_on_every_interface() {
    let server = Server::start(&[("HOST", "0.0.0.0")]);
    let (code, stdout, stderr, _) = run_check(Some(server.port), &[("HOST", "0.0.0.0")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("http://127.0.0.1:"), "{stdout}");
}
