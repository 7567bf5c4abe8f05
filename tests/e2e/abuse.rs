//! Clients that hold connections and send nothing, or a head a byte at a
//! time, against an agent limited to 1024 open files (the common
//! `ulimit -n`): they must not take its descriptors from health probes,
//! instance connections or the control API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::proxy::{front_door, roll};
use crate::util::Agent;

/// The agent's open-file limit in this test.
const NOFILE: u64 = 1024;
/// Idle connections opened at once.
const IDLE: usize = 2_000;
/// Slowloris connections kept open (reopened when the door closes one).
const SLOW: usize = 50;

/// The value of the metric line that starts with `name{service="web"`.
fn metric(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{service=\"web\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sets its flag when dropped, so the client threads end however the test
/// does (a failed assertion included) instead of spinning on for the rest
/// of the suite.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Threads keeping `SLOW` connections that send a request head one byte
/// every 20 ms and never end it.
fn slowloris(addr: &str, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..SLOW)
        .map(|_| {
            let (addr, stop) = (addr.to_string(), stop.clone());
            std::thread::spawn(move || {
                let head = b"GET / HTTP/1.1\r\nHost: web\r\nX-Slow: ";
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(&addr) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let mut sent = s.write_all(head);
                    while sent.is_ok() && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                        sent = s.write_all(b"a");
                    }
                }
            })
        })
        .collect()
}

/// A client that opens a connection per request, as a browser's first
/// visit does, until stopped: (answers with status 200, other outcomes).
fn visitor(addr: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let outcome = TcpStream::connect(&addr).and_then(|mut s| {
                s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")?;
                let mut got = String::new();
                s.read_to_string(&mut got)?;
                Ok(got)
            });
            match outcome {
                Ok(got) if got.starts_with("HTTP/1.1 200 ") => ok += 1,
                Ok(got) => failed.push(got.lines().next().unwrap_or("nothing").to_string()),
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    })
}

#[test]
fn idle_and_slow_clients_do_not_take_the_agents_descriptors() {
    // The test itself holds thousands of sockets.
    rollout::proxy::admission::raise_descriptor_limit().expect("raise the test's own limit");
    let agent = Agent::start_limited(NOFILE);
    let (sets, addr) = front_door(&agent, &[]);
    let rss_before = rss_kib(agent.pid());

    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let slow = slowloris(&addr, stop.clone());
    // Every idle connection has been accepted: held, or closed to make
    // room for a newer one. A connection told to go counts as held until
    // its task has closed it, so under load the count settles once those
    // evictions are done: half of what the reserve of 256 leaves, and a
    // few evictions in progress.
    let most = (NOFILE - 256) / 2 + 64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = agent.get("/metrics");
        let held = metric(&text, "rollout_front_door_connections");
        let evicted = metric(&text, "rollout_front_door_connections_evicted_total");
        if held + evicted >= IDLE as u64 && held <= most {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "held {held} (at most {most}), evicted {evicted}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let visitors: Vec<_> = (0..2).map(|_| visitor(&addr, stop.clone())).collect();
    let run = roll(&agent, "v2", &sets, &["--param", "max-surge=1"]);
    assert_eq!(run.code, 0, "the rollout under abuse: {run:#?}");
    let ls = agent.rollout(&["ls"]);
    assert_eq!(ls.code, 0, "{ls:#?}");
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().expect("a slowloris thread");
    }
    let (mut ok, mut failed) = (0, Vec::new());
    for v in visitors {
        let (o, f) = v.join().expect("a visitor thread");
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "visitors failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 20, "only {ok} visits");

    let text = agent.get("/metrics");
    assert_eq!(
        metric(&text, "rollout_front_door_connections_refused_total"),
        0,
        "no connection had a request in flight to protect"
    );
    let grown = rss_kib(agent.pid()).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "the agent grew by {grown} KiB");
    drop(idle);
}
