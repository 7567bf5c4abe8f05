//! The door's listener and its workers. Like nginx's workers, one thread
//! per core runs its own single-threaded runtime: a connection, its
//! requests and their upstream connections stay on one thread, with no
//! work stealing or cross-core wake-ups on the request path. The first
//! worker also accepts, and hands connections to the workers in turn: an
//! even split, where `SO_REUSEPORT` listeners (the kernel hashing each
//! connection to one) can leave most of a few long-lived connections on
//! one core. A connection the door has no room for ([`super::admission`])
//! is answered `503` at the door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::admission::{Admission, Ticket};
use super::config::Door;
use super::routes::Routes;
use super::{downstream, metrics};

/// A connection accepted for a worker, with its place at the door.
type Handoff = (std::net::TcpStream, Ticket);

/// What a client the door has no room for is told, with a `503`.
const NO_ROOM: &str = "the front door holds all the connections it may (traffic.max-connections)\n";

/// What the workers of one door share.
pub(super) struct Entrance {
    /// The routes its connections follow.
    pub(super) routes: Arc<Routes>,
    /// How it treats its clients.
    pub(super) door: Door,
    /// Which connections it holds.
    pub(super) admission: Arc<Admission>,
    /// Becomes true when the door closes or its proxy is dropped.
    pub(super) closed: watch::Receiver<bool>,
}

/// Serve `listener` for `service` on one worker thread per core until
/// `entrance.closed` turns true.
pub(super) fn spawn(
    service: &str,
    listener: std::net::TcpListener,
    entrance: Entrance,
) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (handoffs, inboxes): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| mpsc::unbounded_channel::<Handoff>())
        .unzip();
    let entrance = Arc::new(entrance);
    let mut acceptor = Some((listener, handoffs));
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let entrance = entrance.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let accepts = acceptor.take();
        std::thread::Builder::new()
            .name(format!("proxy-{service}-{i}"))
            .spawn(move || {
                metrics::record_into(i);
                runtime.block_on(async move {
                    if let Some((listener, handoffs)) = accepts {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(l) => {
                                tokio::spawn(accept(entrance.clone(), l, handoffs));
                            }
                            Err(e) => eprintln!("proxy: cannot use its listener: {e}"),
                        }
                    }
                    serve(entrance, inbox).await
                })
            })?;
    }
    Ok(())
}

/// Accept connections until the door closes, handing them to the workers
/// in turn; one the door has no room for is answered 503 and closed here.
/// Accept errors (out of descriptors, most often) are logged, at most once
/// a second, and accepting pauses briefly.
async fn accept(
    entrance: Arc<Entrance>,
    listener: tokio::net::TcpListener,
    handoffs: Vec<mpsc::UnboundedSender<Handoff>>,
) {
    let mut closed = entrance.closed.clone();
    let mut logged: Option<Instant> = None;
    for next in (0..handoffs.len()).cycle() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.wait_for(|c| *c) => return,
        };
        if *closed.borrow() {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    let addr = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    eprintln!("front door {addr}: cannot accept a connection: {e}");
                    logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(ticket) = entrance.admission.admit() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // A worker that is gone takes nothing: the connection closes.
        if let Ok(stream) = stream.into_std() {
            let _ = handoffs[next].send((stream, ticket));
        }
    }
}

/// Answer a client the door has no room for with a `503` and close its
/// connection. Written straight to the socket (a fresh one's send buffer
/// takes it whole, and the runtime has not seen it writable yet), then
/// what the client already sent is read off, so that the close does not
/// reset the connection and lose the answer.
fn refuse(stream: tokio::net::TcpStream) {
    use std::io::{Read, Write};
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let mut answer = Vec::with_capacity(256);
    rollout_http1::own_answer(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        NO_ROOM,
        false,
        &mut answer,
    );
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Serve the connections handed to this worker until the door closes.
async fn serve(entrance: Arc<Entrance>, mut inbox: mpsc::UnboundedReceiver<Handoff>) {
    let mut closed = entrance.closed.clone();
    loop {
        let handoff = tokio::select! {
            handoff = inbox.recv() => handoff,
            _ = closed.wait_for(|c| *c) => return,
        };
        let Some((stream, ticket)) = handoff else {
            return;
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            continue;
        };
        if entrance.routes.gone() {
            return;
        }
        let (routes, door) = (entrance.routes.clone(), entrance.door.clone());
        tokio::spawn(downstream::serve(routes, door, stream, ticket));
    }
}
