//! The control API's routes: one handler per endpoint, each taking its
//! path, query and body through extractors and answering with a wire type
//! ([`super::types`]) or an [`ApiError`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, Uri, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::extract::{JsonBody, Params, Segments};
use super::types::{
    ControlAnswer, Events, HistoryEntry, Removed, RunRequest, ScaleRequest, ServiceStatus, Started,
    UndoRequest,
};
use crate::agent::{Agent, AgentError};
use crate::executor::operator::Action;
use crate::store::ServiceEvent;

/// A handler's answer: JSON of a wire type, or an error.
type Answer<T> = Result<Json<T>, ApiError>;

/// Longest long poll of `GET /v1/rollouts/ID/events`.
const MAX_WAIT_MS: u64 = 30_000;

/// Every endpoint of the control API, on `agent`.
pub(super) fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/services", get(statuses))
        .route("/v1/services/{name}", get(status).delete(remove))
        .route("/v1/services/{name}/history", get(history))
        .route("/v1/services/{name}/events", get(service_events))
        .route("/v1/services/{name}/undo", post(undo))
        .route("/v1/services/{name}/scale", post(scale))
        .route("/v1/services/{name}/restart", post(restart))
        .route("/v1/services/{name}/{action}", post(control))
        .route("/v1/rollouts", post(run))
        .route("/v1/rollouts/{id}/events", get(events))
        .route("/v1/instances/{id}/logs", get(logs))
        .fallback(no_endpoint)
        .method_not_allowed_fallback(no_endpoint)
        .with_state(agent)
}

/// The answer to a request no route takes.
async fn no_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::NoEndpoint {
        method,
        path: uri.path().to_string(),
    }
}

/// The agent's answer `result`, as its wire type.
fn answer<T, W: From<T>>(result: Result<T, impl Into<ApiError>>) -> Answer<W> {
    Ok(Json(W::from(result.map_err(Into::into)?)))
}

/// [`answer`] for a list.
fn answer_all<T, W: From<T>>(result: Result<Vec<T>, AgentError>) -> Answer<Vec<W>> {
    Ok(Json(result?.into_iter().map(W::from).collect()))
}

/// Run `f` (compiling a policy, SQLite writes) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// `GET /v1/health`.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(agent): State<Arc<Agent>>) -> Result<impl IntoResponse, ApiError> {
    let text = agent.prometheus()?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// `GET /v1/services`.
async fn statuses(State(agent): State<Arc<Agent>>) -> Answer<Vec<ServiceStatus>> {
    answer_all(agent.statuses())
}

/// `GET /v1/services/NAME`.
async fn status(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
) -> Answer<ServiceStatus> {
    answer(agent.status(&name))
}

/// `GET /v1/services/NAME/history[?revision=N]`.
async fn history(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
    params: Params,
) -> Answer<Vec<HistoryEntry>> {
    let revision = params.number("revision")?;
    answer_all(agent.history(&name, revision))
}

/// `GET /v1/services/NAME/events`: what its fleet manager did.
async fn service_events(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
) -> Answer<Vec<ServiceEvent>> {
    answer(agent.service_events(&name))
}

/// `POST /v1/services/NAME/undo`.
async fn undo(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
    JsonBody(undo): JsonBody<UndoRequest>,
) -> Answer<Started> {
    let undo = undo.into_domain()?;
    answer(blocking(move || agent.undo(&name, undo)).await)
}

/// `POST /v1/services/NAME/scale`.
async fn scale(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
    JsonBody(scale): JsonBody<ScaleRequest>,
) -> Answer<Started> {
    answer(blocking(move || agent.scale(&name, scale.replicas, "rollout scale")).await)
}

/// `POST /v1/services/NAME/restart`.
async fn restart(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
) -> Answer<Started> {
    answer(blocking(move || agent.restart(&name)).await)
}

/// `DELETE /v1/services/NAME[?purge=1]`.
async fn remove(
    State(agent): State<Arc<Agent>>,
    Segments(name): Segments<String>,
    params: Params,
) -> Answer<Removed> {
    let purge = params.number::<u8>("purge")?.unwrap_or(0) != 0;
    answer(agent.remove(&name, purge).await)
}

/// `POST /v1/services/NAME/{pause,resume,abort,promote}`.
async fn control(
    State(agent): State<Arc<Agent>>,
    Segments((name, action)): Segments<(String, String)>,
) -> Answer<ControlAnswer> {
    let action = match action.as_str() {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "abort" => Action::Abort,
        "promote" => Action::Promote,
        _ => return Err(ApiError::NoAction(action)),
    };
    answer(agent.control(&name, action))
}

/// `POST /v1/rollouts`.
async fn run(
    State(agent): State<Arc<Agent>>,
    JsonBody(run): JsonBody<RunRequest>,
) -> Answer<Started> {
    let run = run.into_domain()?;
    answer(blocking(move || agent.run(run)).await)
}

/// `GET /v1/rollouts/ID/events?after=SEQ&wait_ms=MS`: a long poll.
async fn events(
    State(agent): State<Arc<Agent>>,
    Segments(id): Segments<String>,
    params: Params,
) -> Answer<Events> {
    let id = id.parse().map_err(|_| ApiError::NoRollout(id))?;
    let after = params.number("after")?.unwrap_or(0);
    let wait = params.number("wait_ms")?.unwrap_or(0u64).min(MAX_WAIT_MS);
    answer(agent.events(id, after, wait).await)
}

/// `GET /v1/instances/ID/logs?lines=N`.
async fn logs(
    State(agent): State<Arc<Agent>>,
    Segments(id): Segments<String>,
    params: Params,
) -> Answer<Vec<String>> {
    let lines = params.number("lines")?.unwrap_or(100);
    answer(agent.logs(&id, lines))
}
