//! The front door end to end on loopback sockets: echo and raw instances
//! behind a proxy, raw clients in front of it.

use super::*;
use bytes::Bytes;
use drain::InFlight;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn member(id: &str, port: u16) -> Member {
    Member {
        id: id.into(),
        revision: "r1".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn routed(proxy: &Proxy) -> Vec<InstanceId> {
    let (_, table) = proxy.routes.current(None);
    let mut ids: Vec<_> = table
        .groups
        .iter()
        .flat_map(|g| g.upstreams.iter().map(|u| u.id.clone()))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_drain_waits_for_requests_on_an_instance_that_already_left() {
    let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
    proxy.set_members(&[member("a", 1), member("b", 2)]);
    let a = proxy.members.state().upstreams["a"].clone();
    let request = InFlight::enter(&a);
    // `a` fails a probe: out of the table, its request still running.
    proxy.set_members(&[member("b", 2)]);
    assert_eq!(routed(&proxy), ["b"]);
    let finish = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(request);
    };
    let started = Instant::now();
    let ids = ["a".into()];
    let drained = proxy.drain(&ids, Duration::from_secs(5));
    assert_eq!(tokio::join!(drained, finish).0, 0);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn a_draining_instance_is_never_routed_again() {
    let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
    proxy.set_members(&[member("a", 1), member("b", 2)]);
    let a = proxy.members.state().upstreams["a"].clone();
    let request = InFlight::enter(&a);
    let drain = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.drain(&["a".into()], Duration::from_secs(5)).await })
    };
    while routed(&proxy) != ["b"] {
        tokio::task::yield_now().await;
    }
    // A stale publish still naming `a` does not bring it back.
    proxy.set_members(&[member("a", 1), member("b", 2)]);
    assert_eq!(routed(&proxy), ["b"]);
    drop(request);
    assert_eq!(drain.await.unwrap(), 0);
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `n` frames of 16 KiB, of unknown total length (sent chunked).
fn frames(n: usize) -> TestBody {
    use http_body_util::BodyExt;
    let frames = (0..n).map(|i| Ok(hyper::body::Frame::data(Bytes::from(vec![i as u8; 16384]))));
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// An instance that echoes a POST's body (saying how it was framed)
/// and answers anything else with 64 chunked frames.
async fn echo_instance() -> SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let framing = match req.headers().contains_key("transfer-encoding") {
                    true => "chunked",
                    false => "length",
                };
                let res = match *req.method() {
                    Method::POST => {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        Response::builder()
                            .header("x-framing", framing)
                            .body(Full::new(body).boxed())
                    }
                    _ => Response::builder().body(frames(64)),
                };
                Ok::<_, Infallible>(res.unwrap())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn bodies_of_every_framing_pass_through() {
    use http_body_util::BodyExt;
    let proxy = proxied().await;
    let stream = connect(&proxy).await;
    let (mut client, conn) =
        hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = |method: Method, body: TestBody| {
        Request::builder()
            .method(method)
            .uri("/")
            .header("host", "svc")
            .body(body)
            .unwrap()
    };
    // One keep-alive client connection carries them all, in turn.
    for _ in 0..2 {
        let res = client
            .send_request(request(Method::POST, frames(3)))
            .await
            .unwrap();
        assert_eq!(res.headers()["x-framing"], "chunked");
        assert_eq!(res.headers()["x-rollout-revision"], "r1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 3 * 16384);
        assert!(body[16384..32768].iter().all(|&b| b == 1));

        let posted = Full::new(Bytes::from_static(b"hello")).boxed();
        let res = client
            .send_request(request(Method::POST, posted))
            .await
            .unwrap();
        assert_eq!(res.headers()["x-framing"], "length");
        assert_eq!(
            &res.into_body().collect().await.unwrap().to_bytes()[..],
            b"hello"
        );

        let res = client
            .send_request(request(Method::GET, frames(0)))
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 64 * 16384);
        assert!(body[63 * 16384..].iter().all(|&b| b == 63));

        let res = client
            .send_request(request(Method::HEAD, frames(0)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
    }
    // Every request has left the instance.
    assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 0);
}

/// A proxy for `svc` in front of one echo instance.
async fn proxied() -> Arc<Proxy> {
    proxied_by(Door::default()).await
}

/// A proxy for `svc` with `door` in front of one echo instance.
async fn proxied_by(door: Door) -> Arc<Proxy> {
    in_front_of(door, echo_instance().await)
}

/// Write `text` on a raw connection, then read until `done` holds for
/// what came back (or the proxy closes the connection).
async fn raw(
    stream: &mut tokio::net::TcpStream,
    text: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&got)) {
        match stream.read(&mut buf).await.unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(got).unwrap()
}

async fn connect(proxy: &Proxy) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let proxy = proxied().await;
    let mut stream = connect(&proxy).await;
    let one = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\none";
    let two = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\ntwo";
    let got = raw(&mut stream, &format!("{one}{two}"), |t| t.ends_with("two")).await;
    let one_at = got.find("\r\n\r\none").expect(&got);
    let two_at = got.find("\r\n\r\ntwo").expect(&got);
    assert!(one_at < two_at, "{got}");
    assert_eq!(got.matches("x-rollout-revision: r1").count(), 2, "{got}");
}

#[tokio::test]
async fn a_client_expecting_100_continue_is_told_to_go_on() {
    let proxy = proxied().await;
    let mut stream = connect(&proxy).await;
    let head = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n";
    let interim = raw(&mut stream, head, |t| t.contains("\r\n\r\n")).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    let got = raw(&mut stream, "hello", |t| t.ends_with("hello")).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
}

#[tokio::test]
async fn an_http10_client_gets_a_body_of_unknown_length_until_the_close() {
    let proxy = proxied().await;
    let mut stream = connect(&proxy).await;
    // The instance answers a GET in chunks; HTTP/1.0 has no chunks.
    let got = raw(&mut stream, "GET / HTTP/1.0\r\nhost: svc\r\n\r\n", |_| {
        false
    })
    .await;
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 64 * 16384);
}

#[tokio::test]
async fn a_bad_request_is_refused_and_its_connection_closed() {
    let proxy = proxied().await;
    let mut stream = connect(&proxy).await;
    let smuggled = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\
                    transfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    let got = raw(&mut stream, smuggled, |_| false).await;
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(
        got.ends_with("both content-length and transfer-encoding\n"),
        "{got}"
    );
}

#[tokio::test]
async fn past_max_connections_the_one_idle_longest_gives_way() {
    let proxy = proxied_by(Door {
        max_connections: 1,
        ..Door::default()
    })
    .await;
    let get = "GET / HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n";
    let mut idle = connect(&proxy).await;
    let mut newcomer = connect(&proxy).await;
    // The idle connection is closed without an answer.
    assert_eq!(raw(&mut idle, "", |_| false).await, "");
    let got = raw(&mut newcomer, get, |t| t.contains("\r\n\r\n")).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let mut metrics = String::new();
    proxy.prometheus(&mut metrics);
    assert!(
        metrics.contains("_evicted_total{service=\"svc\""),
        "{metrics}"
    );
    assert_eq!(proxy.admission.counts().evicted, 1);
}

#[tokio::test]
async fn past_max_connections_with_every_one_busy_a_newcomer_gets_503() {
    let proxy = proxied_by(Door {
        max_connections: 1,
        ..Door::default()
    })
    .await;
    // A request whose body never comes keeps its connection busy.
    let mut busy = connect(&proxy).await;
    let head = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut busy, head.as_bytes())
        .await
        .unwrap();
    // Its head has reached the instance: it is in flight.
    let upstream = proxy.members.state().upstreams["a"].clone();
    while upstream.inflight.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut newcomer = connect(&proxy).await;
    let got = raw(&mut newcomer, "", |_| false).await;
    assert!(
        got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{got}"
    );
    assert!(got.contains("connection: close"), "{got}");
    assert_eq!(proxy.admission.counts().refused, 1);
}

#[tokio::test]
async fn without_a_ready_instance_the_answer_is_503_and_the_connection_stays() {
    let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
    let mut stream = connect(&proxy).await;
    let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
    for _ in 0..2 {
        let got = raw(&mut stream, get, |t| t.ends_with("no ready instance\n")).await;
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{got}"
        );
        assert!(!got.contains("connection: close"), "{got}");
    }
}

/// A door that waits `ms` on its clients.
fn impatient(ms: u64) -> Door {
    Door {
        sticky: None,
        idle_timeout: Duration::from_millis(ms),
        head_timeout: Duration::from_millis(ms),
        upstream_timeout: Duration::from_millis(ms),
        ..Door::default()
    }
}

#[tokio::test]
async fn an_idle_client_is_let_go_after_the_idle_timeout() {
    let proxy = proxied_by(impatient(100)).await;
    let mut stream = connect(&proxy).await;
    let get = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 2\r\n\r\nhi";
    let got = raw(&mut stream, get, |t| t.ends_with("hi")).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let answered = Instant::now();
    // Nothing more comes, and nothing more is sent: the door closes.
    assert_eq!(raw(&mut stream, "", |_| false).await, "");
    assert!(answered.elapsed() >= Duration::from_millis(90));
}

#[tokio::test]
async fn a_head_that_does_not_arrive_whole_in_time_gets_408() {
    let proxy = proxied_by(impatient(100)).await;
    let mut stream = connect(&proxy).await;
    let got = raw(&mut stream, "GET / HTTP/1.1\r\nhost: s", |_| false).await;
    assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(
        got.ends_with("the request head did not arrive whole within 0.1s\n"),
        "{got}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_does_not_count_against_the_instance() {
    let proxy = proxied_by(impatient(100)).await;
    let mut stream = connect(&proxy).await;
    let post = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 10\r\n\r\nabc";
    let got = raw(&mut stream, post, |_| false).await;
    assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
    assert!(got.contains("reading the client's body"), "{got}");
    let stats = proxy.stats("r1", Duration::from_secs(60));
    assert_eq!((stats.requests, stats.errors), (0, 0), "{stats:?}");
}

/// An instance on a loopback port that serves each connection with
/// `serve`, speaking raw bytes.
async fn raw_instance<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// An instance that takes connections and reads, and answers
/// nothing but `begin` (then holds the connection open).
async fn mute_instance(begin: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw_instance(move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(begin.as_bytes()).await;
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await
}

/// A proxy with `door` in front of `instance` as `a` of `r1`.
fn in_front_of(door: Door, instance: SocketAddr) -> Arc<Proxy> {
    let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), door).unwrap();
    proxy.set_members(&[Member {
        id: "a".into(),
        revision: "r1".into(),
        addr: instance,
    }]);
    proxy
}

#[tokio::test]
async fn an_instance_that_does_not_answer_in_time_gets_its_client_a_504_counted_as_an_error() {
    let proxy = in_front_of(impatient(100), mute_instance("").await);
    let mut stream = connect(&proxy).await;
    let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
    let got = raw(&mut stream, get, |t| t.ends_with("0.1s\n")).await;
    assert!(got.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{got}");
    assert!(
        got.ends_with("instance a did not answer within 0.1s\n"),
        "{got}"
    );
    let stats = proxy.stats("r1", Duration::from_secs(60));
    assert_eq!((stats.requests, stats.errors), (1, 1), "{stats:?}");
    // Its request has left the instance.
    assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 0);
}

#[tokio::test]
async fn an_answer_that_stalls_midway_is_cut_off() {
    let begin = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
    let proxy = in_front_of(impatient(100), mute_instance(begin).await);
    let mut stream = connect(&proxy).await;
    let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
    // The client has the head and what came of the body, then the end.
    let got = raw(&mut stream, get, |_| false).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nabc"), "{got}");
}

#[tokio::test]
async fn a_body_that_breaks_before_the_answer_went_out_is_a_502() {
    // Head and broken chunk arrive together: nothing went to the client.
    let broken = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";
    let proxy = in_front_of(impatient(1000), mute_instance(broken).await);
    let mut stream = connect(&proxy).await;
    let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
    let got = raw(&mut stream, get, |t| t.ends_with("size\n")).await;
    assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
    assert!(!got.contains("abc"), "{got}");
    // The client's connection carries on.
    let got = raw(&mut stream, get, |t| t.ends_with("size\n")).await;
    assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
    // Counted as the errors they are, for a canary's analysis.
    let stats = proxy.stats("r1", Duration::from_secs(60));
    assert_eq!((stats.requests, stats.errors), (2, 2));
}

/// An instance that switches every connection to an echo protocol.
async fn echo_switching_instance() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw_instance(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("upgrade: websocket\r\nconnection: upgrade\r\n"));
        let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\n\r\n";
        stream.write_all(switch.as_bytes()).await.unwrap();
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_upgraded_connection_is_a_tunnel_to_its_instance_until_it_closes() {
    let proxy = in_front_of(impatient(100), echo_switching_instance().await);
    let mut stream = connect(&proxy).await;
    let ask = "GET /ws HTTP/1.1\r\nhost: svc\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
    let got = raw(&mut stream, ask, |t| t.ends_with("\r\n\r\n")).await;
    assert!(
        got.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{got}"
    );
    assert!(
        got.contains("upgrade: websocket\r\nconnection: upgrade\r\n"),
        "{got}"
    );
    assert!(got.contains("x-rollout-revision: r1\r\n"), "{got}");
    // Longer quiet than every timeout of the door: a tunnel has none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for word in ["ping", "pong"] {
        assert_eq!(raw(&mut stream, word, |t| t == word).await, word);
    }
    // The request is in flight until the tunnel closes.
    assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 1);
    drop(stream);
    assert_eq!(proxy.drain(&["a".into()], Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn a_port_in_use_is_refused() {
    let proxy = Proxy::bind("one", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
    let taken = Proxy::bind("two", proxy.local_addr(), Door::default());
    assert!(taken.is_err());
}
