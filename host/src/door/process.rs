//! `rollout door`: one front door in a process of its own. It listens on
//! its control socket for the agent, opens the [`Proxy`] it is asked to,
//! and serves traffic with the last members and weights it was given for
//! as long as it runs, whether an agent is there or not.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::wire::{self, MAX_LINE, Opened, Reply, Request};
use crate::proxy::Proxy;

/// The door's state: what it serves, once opened.
#[derive(Default)]
struct Door {
    serving: Mutex<Option<(Opened, Arc<Proxy>)>>,
}

/// What a connection asks the door to do after its answer.
enum Then {
    /// Read the next request.
    Go,
    /// Exit: closed, or its listener could not be opened.
    Exit,
}

/// Serve the control socket at `socket` until told to close; the process
/// exits with it.
pub async fn serve(socket: &Path) -> std::io::Result<()> {
    // The proxy counts its connections against this process's limit.
    let _ = crate::proxy::admission::raise_descriptor_limit();
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    let door = Arc::new(Door::default());
    let (exit, mut exiting) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (door, exit) = (door.clone(), exit.clone());
                    tokio::spawn(async move {
                        if let Then::Exit = converse(&door, stream).await {
                            let _ = exit.send(()).await;
                        }
                    });
                }
                Err(e) => {
                    eprintln!("door: control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = exiting.recv() => break,
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Answer the requests of one connection, in order.
async fn converse(door: &Door, stream: UnixStream) -> Then {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let request = match (&mut read)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return Then::Go,
            Ok(_) => wire::parse::<Request>(&line),
        };
        // The rest of a line over the cap is never read: this connection
        // ends after saying so.
        let whole = line.len() as u64 <= MAX_LINE;
        let (reply, then) = match request {
            Ok(request) => answer(door, request).await,
            Err(e) => (
                Reply::Refused {
                    error: format!("not a request: {e}"),
                },
                Then::Go,
            ),
        };
        let mut out = Vec::new();
        let sent = match wire::send(&mut out, &reply) {
            Ok(()) => write.write_all(&out).await,
            Err(e) => Err(e),
        };
        if matches!(then, Then::Exit) || sent.is_err() || !whole {
            return then;
        }
    }
}

/// Do what `request` asks.
async fn answer(door: &Door, request: Request) -> (Reply, Then) {
    let serving = door
        .serving
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let go = |reply| (reply, Then::Go);
    match (request, serving) {
        (Request::Hello, serving) => go(Reply::Hello {
            pid: std::process::id(),
            weights: serving.as_ref().and_then(|(_, p)| p.weights()),
            opened: serving.map(|(o, _)| o),
        }),
        (Request::Open(wanted), Some((opened, _))) => go(if wanted == opened {
            Reply::Done
        } else {
            Reply::Refused {
                error: format!(
                    "this door already serves {} on {}",
                    opened.service, opened.addr
                ),
            }
        }),
        (Request::Open(wanted), None) => {
            match Proxy::bind(&wanted.service, wanted.addr, wanted.door.clone()) {
                Ok(proxy) => {
                    *door.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some((wanted, proxy));
                    go(Reply::Done)
                }
                Err(e) => (
                    Reply::Refused {
                        error: e.to_string(),
                    },
                    Then::Exit,
                ),
            }
        }
        (Request::Close, serving) => {
            if let Some((_, proxy)) = serving {
                proxy.close();
            }
            (Reply::Done, Then::Exit)
        }
        (_, None) => go(Reply::Refused {
            error: "this door is not open yet".into(),
        }),
        (Request::Members { members }, Some((_, proxy))) => {
            proxy.set_members(&members);
            go(Reply::Done)
        }
        (Request::Weights { weights }, Some((_, proxy))) => {
            proxy.set_weights(weights);
            go(Reply::Done)
        }
        (Request::Drain { ids, grace_ms }, Some((_, proxy))) => {
            let in_flight = proxy.drain(&ids, Duration::from_millis(grace_ms)).await;
            go(Reply::Drained { in_flight })
        }
        (
            Request::Stats {
                revision,
                window_ms,
            },
            Some((_, proxy)),
        ) => go(Reply::Stats {
            stats: proxy.stats(&revision, Duration::from_millis(window_ms)),
        }),
        (Request::Revisions, Some((_, proxy))) => go(Reply::Revisions {
            revisions: proxy.revisions(),
        }),
        (Request::Prometheus, Some((_, proxy))) => {
            let mut text = String::new();
            proxy.prometheus(&mut text);
            go(Reply::Text { text })
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::proxy::Door as Settings;

    /// A door serving on a socket in a temporary directory, and the task
    /// that ends when it exits.
    async fn door() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("door.sock");
        let path = socket.clone();
        let task = tokio::spawn(async move { serve(&path).await.unwrap() });
        while UnixStream::connect(&socket).await.is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (dir, socket, task)
    }

    /// Send raw `bytes` on a new connection; every answer line until it
    /// closes or `answers` lines came.
    async fn raw(socket: &Path, bytes: &[u8], answers: usize) -> Vec<String> {
        let stream = UnixStream::connect(socket).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(bytes).await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut got = Vec::new();
        while got.len() < answers {
            match lines.next_line().await {
                Ok(Some(line)) => got.push(line),
                _ => break,
            }
        }
        got
    }

    fn opened(port: u16) -> Opened {
        Opened {
            service: "web".into(),
            addr: ([127, 0, 0, 1], port).into(),
            door: Settings::default(),
        }
    }

    fn line(request: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        wire::send(&mut out, request).unwrap();
        out
    }

    /// Raw bytes on the control socket: each bad line is refused and the
    /// connection goes on; nothing but `open` is done before the door is
    /// open.
    #[tokio::test]
    async fn bad_lines_are_refused_and_the_door_goes_on() {
        let (_dir, socket, _task) = door().await;
        let cases: &[(&[u8], &str)] = &[
            (b"hello\n", "not a request"),
            (b"\x00\xff\n", "not a request"),
            (b"{\"op\":\"open\"}\n", "not a request"),
            (b"{\"op\":\"members\",\"members\":[]}\n", "not open yet"),
            (
                b"{\"op\":\"drain\",\"ids\":[],\"grace_ms\":1}\n",
                "not open yet",
            ),
            (b"{\"op\":\"hello\"}\n", "\"opened\":null"),
        ];
        let all: Vec<u8> = cases.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let answers = raw(&socket, &all, cases.len()).await;
        assert_eq!(answers.len(), cases.len(), "{answers:?}");
        for ((bytes, want), got) in cases.iter().zip(&answers) {
            assert!(
                got.contains(want),
                "{:?}: {got}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    /// A line over the cap is refused and ends its connection; the door
    /// still answers the next one.
    #[tokio::test]
    async fn a_line_over_the_cap_ends_its_connection() {
        let (_dir, socket, _task) = door().await;
        let mut long = vec![b' '; MAX_LINE as usize + 100];
        long.extend_from_slice(b"{\"op\":\"hello\"}\n");
        let answers = raw(&socket, &long, 2).await;
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert!(answers[0].contains("refused"), "{answers:?}");
        let again = raw(&socket, &line(&Request::Hello), 1).await;
        assert!(again[0].contains("\"reply\":\"hello\""), "{again:?}");
    }

    /// Open, tell, ask and close: the door listens on its port once open,
    /// refuses to become another door, and exits when closed.
    #[tokio::test]
    async fn a_door_opens_serves_and_closes() {
        let (_dir, socket, task) = door().await;
        let port = crate::fleet::free_port().unwrap();
        let open = line(&Request::Open(opened(port)));
        assert_eq!(raw(&socket, &open, 1).await, ["{\"reply\":\"done\"}"]);
        assert_eq!(raw(&socket, &open, 1).await, ["{\"reply\":\"done\"}"]);
        let mut other = opened(port);
        other.service = "api".into();
        let refused = raw(&socket, &line(&Request::Open(other)), 1).await;
        assert!(refused[0].contains("already serves web"), "{refused:?}");
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens");
        let weights = Request::Weights {
            weights: Some(vec![("r1".into(), 100)]),
        };
        assert_eq!(
            raw(&socket, &line(&weights), 1).await,
            ["{\"reply\":\"done\"}"]
        );
        let hello = raw(&socket, &line(&Request::Hello), 1).await;
        let hello: Reply = wire::parse(format!("{}\n", hello[0]).as_bytes()).unwrap();
        let Reply::Hello {
            opened: o, weights, ..
        } = hello
        else {
            panic!("{hello:?}");
        };
        assert_eq!(
            (o, weights),
            (Some(opened(port)), Some(vec![("r1".into(), 100)]))
        );
        let closed = raw(&socket, &line(&Request::Close), 1).await;
        assert_eq!(closed, ["{\"reply\":\"done\"}"]);
        task.await.unwrap();
        assert!(!socket.exists(), "its socket is removed");
    }

    /// A port already taken: the door says why and exits.
    #[tokio::test]
    async fn a_door_whose_port_is_taken_says_so_and_exits() {
        let (_dir, socket, task) = door().await;
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let answer = raw(&socket, &line(&Request::Open(opened(port))), 1).await;
        assert!(answer[0].contains("refused"), "{answer:?}");
        task.await.unwrap();
    }
}
