//! Why the control API refused or failed a request, and the one place
//! where every error becomes an HTTP status and an [`ErrorBody`]: 400 (bad
//! request, nothing changed), 401, 404, 409 (another rollout runs) or 500.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use serde::{Deserialize, Serialize};

use crate::agent::AgentError;
use crate::store::StoreError;

/// An error from the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, and what to do.
    pub error: String,
    /// True when nothing was changed.
    pub unchanged: bool,
}

/// Why a request was not carried out. Display is the message the client
/// shows.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The agent refused or failed it.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The TCP listener's bearer token is missing or wrong.
    #[error("missing or wrong bearer token (set ROLLOUT_TOKEN to the agent's token)")]
    Unauthorized,
    /// No route has this method and path.
    #[error("no such endpoint: {method} {path}")]
    NoEndpoint {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// `POST /v1/services/NAME/ACTION` with an unknown action.
    #[error("no action {0}")]
    NoAction(String),
    /// A rollout id that is not a number.
    #[error("no rollout {0}")]
    NoRollout(String),
    /// A query parameter that should be a number is not.
    #[error("{key}: not a number: {value:?}")]
    NotANumber {
        /// The parameter.
        key: &'static str,
        /// What was given.
        value: String,
    },
    /// The path's parameters do not decode.
    #[error(transparent)]
    Path(#[from] PathRejection),
    /// The query string does not decode.
    #[error(transparent)]
    Query(#[from] QueryRejection),
    /// The request body could not be read (or is too large).
    #[error("cannot read the request: {0}")]
    Read(#[source] axum::BoxError),
    /// The client stopped sending its request body.
    #[error("the request body stopped arriving for {} s; nothing was changed", .0.as_secs())]
    Stalled(std::time::Duration),
    /// The request body is not the JSON the endpoint takes.
    #[error("malformed request: {0}")]
    Malformed(#[source] serde_json::Error),
    /// An uploaded policy that is not valid base64.
    #[error("policy {name}: bad upload: {source}")]
    Upload {
        /// Where the client read the policy.
        name: String,
        /// Why it does not decode.
        #[source]
        source: base64::DecodeError,
    },
    /// The task carrying out the request died.
    #[error("the request failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ApiError {
    /// The status the client gets.
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Agent(e) => match e {
                AgentError::Spec(_)
                | AgentError::Policy(_)
                | AgentError::Unstartable { .. }
                | AgentError::FrontDoor { .. }
                | AgentError::Invalid(_) => StatusCode::BAD_REQUEST,
                AgentError::NotFound(_) | AgentError::Store(StoreError::NotFound(_)) => {
                    StatusCode::NOT_FOUND
                }
                AgentError::Conflict(_) => StatusCode::CONFLICT,
                AgentError::Store(_)
                | AgentError::StoredSpec(_)
                | AgentError::LogDir(_)
                | AgentError::Fleet(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Path(rejection) => rejection.status(),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NoEndpoint { .. } | ApiError::NoAction(_) | ApiError::NoRollout(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::NotANumber { .. }
            | ApiError::Query(_)
            | ApiError::Read(_)
            | ApiError::Malformed(_)
            | ApiError::Upload { .. } => StatusCode::BAD_REQUEST,
            ApiError::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.to_string(),
            unchanged: status != StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(body)).into_response()
    }
}
