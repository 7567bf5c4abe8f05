//! The front door under load: real demo-app processes behind the agent's
//! proxy, a load generator on loopback, rollouts in the middle of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{Agent, assert_contains};

/// What the load generator saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Answers with status 200.
    pub ok: u64,
    /// Everything else: non-200 answers and broken connections.
    pub failed: Vec<String>,
    /// (when, revision) of every good answer.
    pub answers: Vec<(Instant, String)>,
}

/// Client threads sending keep-alive GETs to the proxy until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

/// One keep-alive GET: (status, x-rollout-revision).
fn get(stream: &mut BufReader<TcpStream>, headers: &str) -> std::io::Result<(u16, String)> {
    let request = format!("GET / HTTP/1.1\r\nHost: load\r\n{headers}\r\n");
    stream.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut revision) = (0usize, String::new());
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "x-rollout-revision" => revision = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, revision))
}

impl Load {
    /// `clients` threads against `addr`, each pausing `pause` between
    /// requests; `headers(i)` gives client i's extra header lines.
    pub fn start(
        addr: &str,
        clients: usize,
        pause: Duration,
        headers: fn(usize) -> String,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|i| {
                let (stop, addr, headers) = (stop.clone(), addr.to_string(), headers(i));
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    let connect = || {
                        let s = TcpStream::connect(&addr)?;
                        s.set_nodelay(true)?;
                        Ok::<_, std::io::Error>(BufReader::new(s))
                    };
                    let mut stream = connect().ok();
                    while !stop.load(Ordering::Relaxed) {
                        let result = match stream.as_mut() {
                            Some(s) => get(s, &headers),
                            None => Err(std::io::Error::other("cannot connect")),
                        };
                        match result {
                            Ok((200, revision)) => {
                                tally.ok += 1;
                                tally.answers.push((Instant::now(), revision));
                            }
                            Ok((status, _)) => tally.failed.push(format!("status {status}")),
                            Err(e) => {
                                tally.failed.push(e.to_string());
                                stream = connect().ok();
                            }
                        }
                        std::thread::sleep(pause);
                    }
                    tally
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stop the clients; what they saw together.
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            let t = t.join().expect("a load thread panicked");
            all.ok += t.ok;
            all.failed.extend(t.failed);
            all.answers.extend(t.answers);
        }
        all.answers.sort_by_key(|(at, _)| *at);
        all
    }
}

/// A free loopback port for a front door.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deploy `web` v1 with 4 replicas behind a front door on a free port;
/// (spec overrides for every run, front-door address).
pub fn front_door(agent: &Agent, extra: &[&str]) -> (Vec<String>, String) {
    let port = free_port();
    let mut sets = vec![
        format!("port={port}"),
        "replicas=4".to_string(),
        "guardrails.max-surge=100%".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let v1 = agent.spec("web", "v1", "");
    let mut args = vec!["run", "--spec", v1.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let run = agent.rollout(&args);
    assert_eq!(run.code, 0, "{run:#?}");
    (sets, format!("127.0.0.1:{port}"))
}

/// `rollout run` of `web` `version` with `sets` and `more` arguments.
pub fn roll(agent: &Agent, version: &str, sets: &[String], more: &[&str]) -> crate::util::Run {
    let spec = agent.spec("web", version, "");
    let mut args = vec!["run", "--spec", spec.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(more);
    args.extend(["--output", "json"]);
    agent.rollout(&args)
}

#[test]
fn a_rolling_update_under_load_fails_no_request() {
    let agent = Agent::start();
    let (sets, addr) = front_door(&agent, &[]);
    let load = Load::start(&addr, 4, Duration::from_millis(1), |_| String::new());
    let run = roll(&agent, "v2", &sets, &["--param", "max-surge=1"]);
    assert_eq!(run.code, 0, "{run:#?}");
    // A little traffic on the new fleet too.
    std::thread::sleep(Duration::from_millis(200));
    let tally = load.finish();
    assert!(
        tally.failed.is_empty(),
        "{} failed: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert!(tally.ok > 500, "only {} requests", tally.ok);
    let last = &tally.answers.last().expect("answers").1;
    assert_eq!(last, "r2");
    let first = &tally.answers[0].1;
    assert_eq!(first, "r1");

    let text = agent.get("/metrics");
    assert_contains(
        &text,
        "rollout_requests_total{service=\"web\",revision=\"r2\"}",
    );
    assert_contains(
        &text,
        "rollout_ready_instances{service=\"web\",revision=\"r2\"} 4",
    );
    assert_contains(
        &text,
        "rollout_request_errors_total{service=\"web\",revision=\"r1\"} 0",
    );
}

#[test]
fn no_ready_instance_is_a_503() {
    let agent = Agent::start();
    let (_, addr) = front_door(&agent, &[]);
    let mut stream = BufReader::new(TcpStream::connect(&addr).unwrap());
    assert_eq!(get(&mut stream, "").unwrap().0, 200);
    let pids = agent.pids("web");
    for pid in pids {
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    // Once the fleet has seen the exits, nothing serves.
    let mut status = 200;
    for _ in 0..400 {
        let mut s = BufReader::new(TcpStream::connect(&addr).unwrap());
        status = get(&mut s, "").map(|(st, _)| st).unwrap_or(0);
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(status, 503);
}
