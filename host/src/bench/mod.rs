//! `rollout bench`: performance figures, not assertions (tests check
//! behaviour), of what needs nothing but rollout itself.
//!
//! - [`runtime`]: what the policy runtime costs.
//! - [`rollout`]: a real rollout of `demo-app` processes against its
//!   physical limit.
//! - `resume`: how soon a restarted agent resumes the rollout it was
//!   killed during.
//!
//! The benchmarks that drive other systems (the front door against nginx,
//! the swarm backend against Docker Swarm) are the `rollout-bench` binary
//! of the `benches/` crate, which `rollout bench proxy|swarm` runs.

pub(crate) mod resume;
pub mod rollout;
pub(crate) mod runtime;
