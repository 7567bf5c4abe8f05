//! The agent's control API: HTTP/1.1 + JSON on a Unix socket (mode 0600,
//! so only the agent's user can drive it), and optionally on TCP where
//! every request must carry `Authorization: Bearer TOKEN`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::types::{ErrorBody, RunRequest, UndoRequest};
use crate::agent::{Agent, AgentError};
use crate::engine::operator::Action;

/// Largest request body: a policy upload (an 18 MB Python component is
/// 24 MB in base64) with room to spare.
const MAX_BODY: usize = 128 << 20;

/// Serve one connection until the client closes it.
pub async fn connection<S>(agent: Arc<Agent>, stream: S, token: Option<Arc<str>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (agent, token) = (agent.clone(), token.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(&agent, req, token.as_deref()).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// A request the agent does not carry out: its status and why.
struct Refusal(StatusCode, String);

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

impl Refusal {
    fn answer(self) -> Answer {
        let unchanged = self.0 != StatusCode::INTERNAL_SERVER_ERROR;
        json(
            self.0,
            &ErrorBody {
                error: self.1,
                unchanged,
            },
        )
    }
}

fn answer<T: Serialize>(result: Result<T, AgentError>) -> Answer {
    match result {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => {
            let status = match e {
                AgentError::Invalid(_) => StatusCode::BAD_REQUEST,
                AgentError::NotFound(_) => StatusCode::NOT_FOUND,
                AgentError::Conflict(_) => StatusCode::CONFLICT,
                AgentError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.to_string()).answer()
        }
    }
}

/// The value of `key` in the query string.
fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn number<T: std::str::FromStr>(
    req: &Request<Incoming>,
    key: &str,
    default: T,
) -> Result<T, Refusal> {
    match query(req, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{key}: not a number: {v:?}"),
            )
        }),
    }
}

async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Refusal> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("malformed request: {e}")))
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit, so timing does not leak the token.
    given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

async fn handle(agent: &Arc<Agent>, req: Request<Incoming>, token: Option<&str>) -> Answer {
    if !authorized(&req, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (set ROLLOUT_TOKEN to the agent's token)",
        )
        .answer();
    }
    route(agent, req).await.unwrap_or_else(Refusal::answer)
}

/// Run `f` (compiling a policy, SQLite writes) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(AgentError::Internal(format!("the request failed: {e}"))))
}

async fn route(agent: &Arc<Agent>, req: Request<Incoming>) -> Result<Answer, Refusal> {
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().clone();
    Ok(match (&method, path.as_slice()) {
        (&Method::GET, ["v1", "health"]) => json(
            StatusCode::OK,
            &serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }),
        ),
        (&Method::GET, ["metrics"]) => match agent.prometheus() {
            Ok(text) => Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(text)))
                .unwrap_or_default(),
            Err(e) => answer::<()>(Err(e)),
        },
        (&Method::GET, ["v1", "services"]) => answer(agent.statuses()),
        (&Method::GET, ["v1", "services", name]) => answer(agent.status(name)),
        (&Method::GET, ["v1", "services", name, "history"]) => {
            let revision = match query(&req, "revision") {
                Some(_) => Some(number(&req, "revision", 0u32)?),
                None => None,
            };
            answer(agent.history(name, revision))
        }
        (&Method::POST, ["v1", "services", name, "undo"]) => {
            let name = name.to_string();
            let undo: UndoRequest = body(req).await?;
            let agent = agent.clone();
            answer(blocking(move || agent.undo(&name, undo)).await)
        }
        (&Method::POST, ["v1", "services", name, action]) => {
            let action = match *action {
                "pause" => Action::Pause,
                "resume" => Action::Resume,
                "abort" => Action::Abort,
                "promote" => Action::Promote,
                other => return Err(error(StatusCode::NOT_FOUND, format!("no action {other}"))),
            };
            answer(agent.control(name, action))
        }
        (&Method::POST, ["v1", "rollouts"]) => {
            let run: RunRequest = body(req).await?;
            let agent = agent.clone();
            answer(blocking(move || agent.run(run)).await)
        }
        (&Method::GET, ["v1", "rollouts", id, "events"]) => {
            let id = id
                .parse()
                .map_err(|_| error(StatusCode::NOT_FOUND, format!("no rollout {id}")))?;
            let after = number(&req, "after", 0i64)?;
            let wait = number(&req, "wait_ms", 0u64)?.min(30_000);
            answer(agent.events(id, after, wait).await)
        }
        (&Method::GET, ["v1", "instances", id, "logs"]) => {
            let lines = number(&req, "lines", 100u32)?;
            answer(agent.logs(id, lines))
        }
        _ => {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {}", req.uri().path()),
            ));
        }
    })
}
