//! What the CLI and the agent say to each other: JSON bodies of the control
//! API, shared by [`super::client`] and the routes, and how they map to and
//! from the agent's own types ([`crate::agent`]).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
pub use super::error::ErrorBody;
use crate::agent;
/// Answers whose wire form is the agent's own type.
pub use crate::agent::{
    ControlAnswer, Events, Healing, HistoryEntry, Removed, RevisionTraffic, Started,
};
use crate::model::Instance;
use crate::store::RolloutRow;

/// Which policy a rollout runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PolicyRef {
    /// A policy built into the agent.
    Builtin {
        /// Its name.
        name: String,
    },
    /// A component the client read from a file.
    Wasm {
        /// The path it was read from, for messages.
        name: String,
        /// The component, base64.
        base64: String,
    },
}

/// `POST /v1/rollouts`: record a new revision and roll it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// The spec as canonical TOML (overrides applied, paths absolute).
    pub spec: String,
    /// Where the spec came from, for messages.
    pub origin: String,
    /// The policy; `None` runs the spec's.
    pub policy: Option<PolicyRef>,
    /// Policy params overriding the spec's.
    pub params: Vec<(String, String)>,
    /// Why (`--cause`); the default says what changed.
    pub cause: Option<String>,
}

/// `POST /v1/services/NAME/undo`: roll back to an earlier revision's spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UndoRequest {
    /// The revision to return to; default the one before the current.
    pub to_revision: Option<u32>,
    /// The policy; `None` runs the target revision's.
    pub policy: Option<PolicyRef>,
    /// Policy params overriding the spec's.
    pub params: Vec<(String, String)>,
}

/// `POST /v1/services/NAME/scale`: keep `replicas` instances of the
/// serving revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// How many.
    pub replicas: u32,
}

/// `GET /v1/services[/NAME]`: one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// The revision serving (the last one rolled out completely).
    pub current_revision: Option<u32>,
    /// Replicas it keeps: its spec's, or as last scaled.
    pub replicas: u32,
    /// What its fleet manager replaced (restarts, the last reason) and
    /// holds back (the crash-loop backoff).
    #[serde(default)]
    pub healing: Healing,
    /// Backend name.
    pub backend: String,
    /// Its instances.
    pub instances: Vec<Instance>,
    /// The rollout in progress, if any.
    pub active: Option<RolloutRow>,
    /// Whether the rollout in progress is paused.
    pub paused: bool,
    /// The last rollout, if any.
    pub last: Option<RolloutRow>,
    /// The last progress line of the rollout in progress.
    pub progress: Option<String>,
    /// The front door's address, if the service has one.
    pub front_door: Option<String>,
    /// The preview listener's address (the revision being rolled out).
    pub preview: Option<String>,
    /// What each revision served through the front door over the last minute.
    pub traffic: Vec<RevisionTraffic>,
}

impl PolicyRef {
    /// The policy as the agent takes it (an upload decoded).
    fn into_domain(self) -> Result<agent::PolicyChoice, ApiError> {
        Ok(match self {
            PolicyRef::Builtin { name } => agent::PolicyChoice::Named(name),
            PolicyRef::Wasm { name, base64 } => {
                match base64::engine::general_purpose::STANDARD.decode(base64) {
                    Ok(bytes) => agent::PolicyChoice::Uploaded {
                        name,
                        bytes: bytes.into(),
                    },
                    Err(source) => return Err(ApiError::Upload { name, source }),
                }
            }
        })
    }
}

/// The policy of a request, as the agent takes it.
fn policy_choice(policy: Option<PolicyRef>) -> Result<Option<agent::PolicyChoice>, ApiError> {
    policy.map(PolicyRef::into_domain).transpose()
}

impl RunRequest {
    /// The request as the agent takes it.
    pub(super) fn into_domain(self) -> Result<agent::RunRequest, ApiError> {
        Ok(agent::RunRequest {
            policy: policy_choice(self.policy)?,
            spec: self.spec,
            origin: self.origin,
            params: self.params,
            cause: self.cause,
        })
    }
}

impl UndoRequest {
    /// The request as the agent takes it.
    pub(super) fn into_domain(self) -> Result<agent::UndoRequest, ApiError> {
        Ok(agent::UndoRequest {
            policy: policy_choice(self.policy)?,
            to_revision: self.to_revision,
            params: self.params,
        })
    }
}

impl From<agent::ServiceStatus> for ServiceStatus {
    fn from(s: agent::ServiceStatus) -> Self {
        ServiceStatus {
            name: s.name,
            current_revision: s.current_revision,
            replicas: s.replicas,
            healing: s.healing,
            backend: s.backend.name().to_string(),
            instances: s.instances,
            active: s.active,
            paused: s.paused,
            last: s.last,
            progress: s.progress,
            front_door: s.front_door.map(|a| a.to_string()),
            preview: s.preview.map(|a| a.to_string()),
            traffic: s.traffic,
        }
    }
}
