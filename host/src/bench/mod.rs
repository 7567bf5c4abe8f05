//! `rollout bench`: performance figures, not assertions (tests check
//! behaviour).
//!
//! - [`runtime`]: what the policy runtime costs.
//! - [`rollout`]: a real rollout of `demo-app` processes against its
//!   physical limit.
//! - [`proxy`]: the front door against nginx, and a rollout under load.
//! - [`swarm`]: rollout on its `swarm` backend against Docker Swarm's own
//!   rolling update and rollback.

pub mod proxy;
pub mod rollout;
pub mod runtime;
pub mod swarm;
