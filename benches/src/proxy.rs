//! `rollout bench proxy`: the front door against nginx, and a rollout
//! under load.
//!
//! An in-process agent runs two `demo-app` instances behind its proxy. wrk
//! (from Debian's `wrk` package) loads the proxy and nginx (Debian's
//! `nginx-light`, a keep-alive reverse proxy to the same two instances)
//! at full load for throughput, and with 4 connections for the latency a
//! hop adds (against one instance directly, the floor). The runs are
//! interleaved over several rounds, each round in the other order, and
//! the medians reported: on a shared machine the load of the moment
//! drifts, and a drift then falls on both sides alike. Then wrk runs
//! against the proxy while the service rolls to v2, counting every request
//! that did not get a 2xx.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use rollout::agent::Agent;
use rollout::agent::ServiceStatus;
use rollout::bench::rollout::roll;
use rollout::executor::DurableRuntime;
use rollout::fleet::free_port;
use rollout::spec::ServiceSpec;

/// Figures of `rollout bench proxy`; units are in the names.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyFigures {
    /// wrk threads and connections.
    pub connections: u32,
    /// Rounds of interleaved runs; the figures below are medians over them
    /// (CPU per request: over all of them).
    pub rounds: u32,
    /// Requests per second through the proxy.
    pub rps: f64,
    /// Through nginx, same backends, same load.
    pub nginx_rps: f64,
    /// The median over rounds of each round's proxy/nginx requests/s.
    pub throughput_ratio_vs_nginx: f64,
    /// The lowest round's ratio.
    pub throughput_ratio_min: f64,
    /// The highest round's ratio.
    pub throughput_ratio_max: f64,
    /// CPU time of the proxy's threads per request at full load (less
    /// noisy than requests/s on a machine shared with wrk and the
    /// instances).
    pub cpu_us_per_request: f64,
    /// CPU time of nginx's processes per request at full load.
    pub nginx_cpu_us_per_request: f64,
    /// p99 through the proxy at full load (`connections`).
    pub p99_saturated_ms: f64,
    /// p99 through nginx at full load.
    pub nginx_p99_saturated_ms: f64,
    /// p99 straight to one instance, light load (4 connections).
    pub direct_p99_ms: f64,
    /// p99 through the proxy, light load.
    pub p99_ms: f64,
    /// p99 through nginx, light load.
    pub nginx_p99_ms: f64,
    /// `p99_ms - direct_p99_ms` (of the medians).
    pub p99_added_ms: f64,
    /// `nginx_p99_ms - direct_p99_ms`.
    pub nginx_p99_added_ms: f64,
    /// Requests sent through the proxy during a rolling update.
    pub total_requests: u64,
    /// Of those, answers other than 2xx/3xx plus socket errors.
    pub failed_requests: u64,
    /// How the rollout under load ended.
    pub rollout_outcome: String,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wrk {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus connect, read, write and timeout errors.
    pub failed: u64,
}

/// `5.12ms`, `337.00us`, `1.2s` in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => return None,
    })
}

/// Read wrk's report (run with `--latency`).
pub fn parse_wrk(report: &str) -> anyhow::Result<Wrk> {
    let mut wrk = Wrk::default();
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["99%", latency] => wrk.p99_ms = millis(latency).context("wrk p99")?,
            [n, "requests", "in", ..] => wrk.requests = n.parse()?,
            ["Requests/sec:", n] => wrk.rps = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => wrk.failed += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                wrk.failed += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if wrk.requests == 0 {
        bail!("wrk reported no requests:\n{report}");
    }
    Ok(wrk)
}

/// Tools the benchmark runs.
pub struct Tools {
    /// The wrk binary.
    pub wrk: PathBuf,
    /// The nginx binary.
    pub nginx: PathBuf,
    /// The demo-app binary.
    pub app: PathBuf,
}

/// Connections of the latency runs: few enough that nothing queues for
/// CPU, so the p99 shows what a hop costs rather than saturation.
const LATENCY_CONNECTIONS: u32 = 4;

fn load(wrk: &Path, url: &str, seconds: u32, connections: u32) -> anyhow::Result<Wrk> {
    let threads = connections.clamp(1, 2);
    let out = Command::new(wrk)
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// nginx as a keep-alive reverse proxy from `port` to `backends`, under
/// `dir`; the running child.
fn nginx(
    nginx: &Path,
    dir: &Path,
    port: u16,
    backends: &[String],
) -> anyhow::Result<std::process::Child> {
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {b};\n"))
        .collect();
    let conf = format!(
        "worker_processes auto;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  upstream backends {{\n{servers}    keepalive 256;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://backends;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        dir = dir.display()
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf)?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&file)
        .args(["-p"])
        .arg(dir)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", nginx.display()))?;
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!(
        "nginx did not listen on {port}; see {}/error.log",
        dir.display()
    )
}

/// Stop nginx with its workers: SIGTERM to the master (SIGKILL would leave
/// the workers running, holding the port).
fn stop_nginx(mut master: std::process::Child) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    unsafe {
        libc::kill(master.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = master.wait();
}

/// The spec of the benchmarked service.
fn spec(app: &Path, port: u16, version: &str) -> anyhow::Result<String> {
    let text = format!(
        r#"name = "bench"
replicas = 2
port = {port}
stop-grace = "5s"
[revision]
command = "{app}"
env = {{ VERSION = "{version}" }}
[health]
http = {{ path = "/healthz", status = 200 }}
interval = "50ms"
[guardrails]
max-surge = 1
min-available = "100%"
[policy]
name = "rolling"
params = {{ min-ready-ms = "2s" }}
"#,
        app = app.display()
    );
    Ok(ServiceSpec::parse(&text, "bench", Path::new("/"))?.to_toml())
}

/// Measure the proxy against nginx, in `rounds` interleaved rounds, and a
/// rollout under load.
pub async fn proxy_figures(
    runtime: DurableRuntime,
    tools: &Tools,
    load: Load,
) -> anyhow::Result<ProxyFigures> {
    let home = std::env::temp_dir().join(format!("rollout-bench-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let (agent, _) = Agent::open(&home, runtime).await?;
    let result = measure(&agent, &home, tools, load).await;
    agent.stop_all().await?;
    let _ = std::fs::remove_dir_all(&home);
    result
}

/// How hard and how long `rollout bench proxy` loads each side.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Seconds of each wrk run.
    pub seconds: u32,
    /// wrk connections at full load.
    pub connections: u32,
    /// Rounds of interleaved runs.
    pub rounds: u32,
}

/// What receives the load, and whose CPU time it costs.
#[derive(Clone, Copy)]
enum Target {
    /// One instance, straight (the floor).
    Direct,
    /// The front door (this process's `proxy-` threads).
    Proxy,
    /// nginx (its master process and workers).
    Nginx(u32),
}

impl Target {
    /// CPU time it has used so far, in ms.
    fn cpu_ms(self) -> anyhow::Result<f64> {
        match self {
            Target::Direct => Ok(0.0),
            Target::Proxy => proxy_cpu_ms(),
            Target::Nginx(master) => tree_cpu_ms(master),
        }
    }
}

/// One wrk run against `target` at `url`, and the CPU time it cost there.
async fn run(
    wrk: &Path,
    target: Target,
    url: &str,
    seconds: u32,
    connections: u32,
) -> anyhow::Result<(Wrk, f64)> {
    let (wrk, url) = (wrk.to_path_buf(), url.to_string());
    let before = target.cpu_ms()?;
    let report =
        tokio::task::spawn_blocking(move || load(&wrk, &url, seconds, connections)).await??;
    Ok((report, target.cpu_ms()? - before))
}

/// The median of `values` (0 for none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// What the runs of one side measured, round after round.
#[derive(Default)]
struct Side {
    full: Vec<Wrk>,
    light: Vec<Wrk>,
    cpu_ms: f64,
}

impl Side {
    fn rps(&self) -> f64 {
        median(&self.full.iter().map(|w| w.rps).collect::<Vec<_>>())
    }

    fn p99_full_ms(&self) -> f64 {
        median(&self.full.iter().map(|w| w.p99_ms).collect::<Vec<_>>())
    }

    fn p99_light_ms(&self) -> f64 {
        median(&self.light.iter().map(|w| w.p99_ms).collect::<Vec<_>>())
    }

    /// CPU time per request over all full-load runs.
    fn cpu_us_per_request(&self) -> f64 {
        let requests: u64 = self.full.iter().map(|w| w.requests).sum();
        self.cpu_ms * 1e3 / requests.max(1) as f64
    }
}

async fn measure(
    agent: &Arc<Agent>,
    home: &Path,
    tools: &Tools,
    load: Load,
) -> anyhow::Result<ProxyFigures> {
    let port = free_port()?;
    let (v1, _) = roll(agent, spec(&tools.app, port, "v1")?).await?;
    anyhow::ensure!(
        v1.state == "completed",
        "deploying v1 ended {}: {}",
        v1.state,
        v1.reason
    );
    let status: ServiceStatus = agent.status("bench")?;
    let backends: Vec<String> = status
        .instances
        .iter()
        .filter_map(|i| i.address.clone())
        .collect();

    let direct = format!("http://{}/", backends[0]);
    let ours = format!("http://127.0.0.1:{port}/");
    let nginx_port = free_port()?;
    let theirs = format!("http://127.0.0.1:{nginx_port}/");
    let server = nginx(&tools.nginx, home, nginx_port, &backends)?;
    let master = server.id();
    let (seconds, connections) = (load.seconds, load.connections);
    let rounds = async {
        let (mut floor, mut proxy, mut nginx) = (Side::default(), Side::default(), Side::default());
        for round in 0..load.rounds.max(1) {
            let mut sides = [
                (Target::Proxy, &ours, &mut proxy),
                (Target::Nginx(master), &theirs, &mut nginx),
            ];
            if round % 2 == 1 {
                sides.reverse();
            }
            for (target, url, side) in &mut sides {
                let (full, cpu_ms) = run(&tools.wrk, *target, url, seconds, connections).await?;
                side.full.push(full);
                side.cpu_ms += cpu_ms;
            }
            let (light, _) = run(
                &tools.wrk,
                Target::Direct,
                &direct,
                seconds,
                LATENCY_CONNECTIONS,
            )
            .await?;
            floor.light.push(light);
            for (target, url, side) in &mut sides {
                let (light, _) =
                    run(&tools.wrk, *target, url, seconds, LATENCY_CONNECTIONS).await?;
                side.light.push(light);
            }
        }
        anyhow::Ok((floor, proxy, nginx))
    }
    .await;
    stop_nginx(server);
    let (floor, proxy, nginx) = rounds?;
    let ratios: Vec<f64> = proxy
        .full
        .iter()
        .zip(&nginx.full)
        .map(|(p, n)| p.rps / n.rps)
        .collect();

    // A rolling update in the middle of a long load.
    let during = {
        let (wrk, ours) = (tools.wrk.clone(), ours.clone());
        let seconds = seconds.max(10) + 4;
        tokio::task::spawn_blocking(move || self::load(&wrk, &ours, seconds, connections))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (v2, _) = roll(agent, spec(&tools.app, port, "v2")?).await?;
    let rollout_outcome = v2.state;
    let during = during.await??;

    let direct_p99_ms = floor.p99_light_ms();
    Ok(ProxyFigures {
        connections,
        rounds: ratios.len() as u32,
        rps: proxy.rps(),
        nginx_rps: nginx.rps(),
        throughput_ratio_vs_nginx: median(&ratios),
        throughput_ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        throughput_ratio_max: ratios.iter().copied().fold(0.0, f64::max),
        cpu_us_per_request: proxy.cpu_us_per_request(),
        nginx_cpu_us_per_request: nginx.cpu_us_per_request(),
        p99_saturated_ms: proxy.p99_full_ms(),
        nginx_p99_saturated_ms: nginx.p99_full_ms(),
        direct_p99_ms,
        p99_ms: proxy.p99_light_ms(),
        nginx_p99_ms: nginx.p99_light_ms(),
        p99_added_ms: proxy.p99_light_ms() - direct_p99_ms,
        nginx_p99_added_ms: nginx.p99_light_ms() - direct_p99_ms,
        total_requests: during.requests,
        failed_requests: during.failed,
        rollout_outcome,
    })
}

/// User and system CPU time in `/proc/.../stat` (`stat` of one task or
/// process), in ms, and its parent's pid.
fn stat_cpu_ms(stat: &str) -> Option<(f64, u32)> {
    // After the command name in parentheses: state, ppid, ... utime and
    // stime are fields 14 and 15 (man 5 proc).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((ticks as f64 * 1e3 / ticks_per_second(), ppid))
}

/// The unit of CPU times in `/proc/.../stat`.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU time so far of this process's front-door threads (named `proxy-`).
fn proxy_cpu_ms() -> anyhow::Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("proxy-") {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            total += stat_cpu_ms(&stat).map_or(0.0, |(ms, _)| ms);
        }
    }
    Ok(total)
}

/// CPU time so far of process `pid` and its children (nginx's master and
/// workers).
fn tree_cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(this) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some((ms, ppid)) = stat_cpu_ms(&stat)
            && (this == pid || ppid == pid)
        {
            total += ms;
        }
    }
    Ok(total)
}

/// Find `name` on the PATH (or in /usr/sbin, where Debian puts nginx).
pub fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{name} not found: install it with `apt-get install nginx-light wrk` (or run benches/bench-proxy.sh)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_and_parent_from_a_stat_line() {
        let stat = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 100 0 0 0 \
                    250 50 0 0 20 0 1 0 12345 0 0";
        let (ms, ppid) = stat_cpu_ms(stat).unwrap();
        assert_eq!(ppid, 4241);
        assert!((ms - 300.0 * 1e3 / ticks_per_second()).abs() < 1e-9);
        assert!(proxy_cpu_ms().is_ok());
    }

    #[test]
    fn a_median_is_the_middle_value_or_the_mean_of_the_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 2s test @ http://127.0.0.1:18081/
  2 threads and 16 connections
  Latency Distribution
     50%   56.00us
     99%    1.37ms
  323271 requests in 2.10s, 38.85MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec: 153992.54
";
        let wrk = parse_wrk(report).unwrap();
        assert_eq!(wrk.requests, 323_271);
        assert_eq!(wrk.failed, 11);
        assert!((wrk.p99_ms - 1.37).abs() < 1e-9);
        assert!((wrk.rps - 153_992.54).abs() < 1e-6);
        assert!(parse_wrk("nothing").is_err());
    }
}
