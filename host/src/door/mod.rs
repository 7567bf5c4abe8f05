//! Front doors that outlive the agent. Each front door (and preview
//! listener) is a process of its own, `rollout door`, as the data plane of
//! a service mesh is apart from its control plane: when the agent dies,
//! its clients are still served by the ready instances and weights it was
//! last told, and the restarted agent takes the door over where it is.
//!
//! - `wire`: the control socket's messages, one JSON line each way.
//! - `process`: the door process ([`serve`]), a [`Proxy`](crate::proxy::Proxy)
//!   and its control socket.
//! - `handle`: the agent's side ([`FrontDoor`]): adopt the door serving a
//!   port or start one, tell it the ready set and weights, ask it for its
//!   traffic, start it again if it died.

mod handle;
mod process;
mod wire;

pub use handle::{DoorError, Doors, FrontDoor};
pub use process::serve;
pub use wire::Opened;
