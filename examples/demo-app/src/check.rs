//! `demo-app --check`: the app's own health check, for images built `FROM
//! scratch` (no shell, no curl) that need a Docker `HEALTHCHECK` or a Swarm
//! `--health-cmd`: `GET /healthz` on the app's address, 200 or not.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::Config;

/// The whole check (connect, send, read the status line) must fit in this.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// Longest status line read, in bytes.
const MAX_STATUS_LINE: u64 = 1024;

/// Why the check failed: one line, printed by the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the check connects: the app's `HOST` and `PORT`, with a wildcard
/// `HOST` (`0.0.0.0`, `::`) replaced by the loopback address of its family,
/// so the default (`127.0.0.1`) and a container listening on every
/// interface are both checked on loopback.
pub fn target(config: &Config) -> (String, u16) {
    let host = match config.host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        _ => config.host.clone(),
    };
    (host, config.port)
}

/// `GET /healthz` on `host:port` within `timeout`: `Ok` with a line saying
/// so on HTTP 200, `Err` with why not otherwise.
pub fn check(host: &str, port: u16, timeout: Duration) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let url = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("http://[{ip}]:{port}/healthz"),
        _ => format!("http://{host}:{port}/healthz"),
    };
    let fail = |why: String| Failure(format!("unhealthy: GET {url}: {why}"));
    let addr = resolve(host, port).map_err(fail)?;
    let status = get_status(addr, host, deadline).map_err(|e| fail(describe(&e, timeout)))?;
    match status {
        200 => Ok(format!("healthy: GET {url} answered 200")),
        code => Err(fail(format!("answered {code}, not 200"))),
    }
}

/// The first address `host:port` resolves to.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Sends the request and reads the status code of the answer.
fn get_status(addr: SocketAddr, host: &str, deadline: Instant) -> io::Result<u16> {
    let stream = TcpStream::connect_timeout(&addr, left(deadline)?)?;
    stream.set_write_timeout(Some(left(deadline)?))?;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nUser-Agent: demo-app-check\r\nConnection: close\r\n\r\n",
        host_header(addr, host)
    );
    (&stream).write_all(request.as_bytes())?;
    stream.set_read_timeout(Some(left(deadline)?))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_STATUS_LINE)).read_line(&mut line)?;
    if Instant::now() > deadline {
        return Err(io::ErrorKind::TimedOut.into());
    }
    parse_status_line(&line).ok_or_else(|| {
        let shown = line.trim_end();
        let why = if shown.is_empty() {
            "closed the connection without an answer".to_string()
        } else {
            format!("not an HTTP answer: {shown:?}")
        };
        io::Error::new(io::ErrorKind::InvalidData, why)
    })
}

/// The `Host` header for `addr` reached as `host`.
fn host_header(addr: SocketAddr, host: &str) -> String {
    match addr.ip() {
        IpAddr::V6(_) if host.parse::<IpAddr>().is_ok() => {
            format!("[{}]:{}", addr.ip(), addr.port())
        }
        _ => format!("{host}:{}", addr.port()),
    }
}

/// Time left before `deadline`, or a timeout error when none is.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    let after = rest.get(3..)?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || !(after.is_empty() || after.starts_with([' ', '\r', '\n']))
    {
        return None;
    }
    code.parse().ok()
}

/// An I/O error in words; timeouts (which read as `WouldBlock` on Linux)
/// name the budget.
fn describe(error: &io::Error, timeout: Duration) -> String {
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
        .unwrap()
    }

    #[test]
    fn target_is_the_apps_address_with_wildcards_on_loopback() {
        let port = [("PORT", "8080")];
        assert_eq!(target(&config(&port)), ("127.0.0.1".into(), 8080));
        for (host, expected) in [
            ("0.0.0.0", "127.0.0.1"),
            ("::", "::1"),
            ("[::]", "::1"),
            ("10.0.0.7", "10.0.0.7"),
            ("localhost", "localhost"),
        ] {
            let checked = target(&config(&[("PORT", "9"), ("HOST", host)]));
            assert_eq!(checked, (expected.to_string(), 9), "{host}");
        }
    }

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line("HTTP/1.1 204\r\n"), Some(204));
        for bad in [
            "",
            "HTTP/1.1 20",
            "HTTP/2 200 OK\r\n",
            "HTTP/1.1 2000 OK",
            "SSH-2.0-x",
        ] {
            assert_eq!(parse_status_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nobody_listening_fails_with_the_reason() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let Err(Failure(why)) = check("127.0.0.1", port, TIMEOUT) else {
            panic!("a closed port passed the check");
        };
        assert!(
            why.starts_with(&format!("unhealthy: GET http://127.0.0.1:{port}/healthz: ")),
            "{why}"
        );
    }
}
