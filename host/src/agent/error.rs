//! Why the agent refused or failed a request: one enum whose variants keep
//! their causes. The control API decides what each one means on the wire
//! ([`crate::api`]); the agent only says what went wrong.

use std::net::SocketAddr;

use crate::backend::BackendError;
use crate::runtime::PolicyError;
use crate::spec::SpecError;
use crate::store::StoreError;

/// Why the agent refused a request. Display is a complete message for the
/// user (it includes the cause, which `source()` also gives).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The spec sent does not parse or validate; nothing changed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The policy cannot be found, loaded or checked; nothing changed.
    #[error("{0}; nothing was changed")]
    Policy(#[source] PolicyError),
    /// The revision's backend could not start it (a command that does not
    /// exist, an image the Docker host lacks, a daemon that does not
    /// answer); nothing changed.
    #[error("{origin}: {source}; nothing was changed")]
    Unstartable {
        /// Where the spec came from (its file, or the revision it repeats).
        origin: String,
        /// What the backend said.
        #[source]
        source: BackendError,
    },
    /// The service's front door cannot listen on its port; nothing changed.
    #[error("{service}: cannot listen on {addr} for its front door: {source}; nothing was changed")]
    FrontDoor {
        /// The service.
        service: String,
        /// The address asked for.
        addr: SocketAddr,
        /// Why it cannot be had (the port is taken, most often).
        #[source]
        source: crate::door::DoorError,
    },
    /// The request is wrong in another way; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// It names nothing that exists.
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with what is running (another rollout).
    #[error("{0}")]
    Conflict(String),
    /// The state database failed, or a row it names is missing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A spec the agent stored itself no longer parses.
    #[error("a stored spec no longer parses: {0}")]
    StoredSpec(#[source] SpecError),
    /// The service's log directory cannot be created.
    #[error("cannot create the log directory: {0}")]
    LogDir(#[source] std::io::Error),
    /// The fleet failed to carry out a command.
    #[error(transparent)]
    Fleet(BackendError),
}

/// Result of an agent call.
pub type Result<T> = std::result::Result<T, AgentError>;
