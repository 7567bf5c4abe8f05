//! `rollout`: a deployment engine whose strategies are sandboxed
//! WebAssembly components.
//!
//! Leaves: [`model`], `clock`, [`journal`], `duration`. Above them:
//! `runtime` (wasmtime, the sandbox, the `rollout:policy` bindings,
//! generic over the host its imports call) and [`executor`] (that host: a
//! policy under guardrails, operator commands and deadlines, restoring the
//! fleet when it fails); [`backend`] (the trait, the sim fleet, and the
//! process, docker and swarm runners); [`health`], [`proxy`] (the front
//! door), [`door`] (each front door in a process of its own, outliving
//! the agent), [`spec`], [`store`]; [`fleet`] (the fleet manager: live
//! instances started by a runner, watched, drained, re-adopted); then
//! [`agent`], its control `api`, `scenario` (`rollout test`) and
//! [`cli`], with [`bench`] for the benchmarks the binary runs itself.
//! `host/tests/layers.rs` keeps sibling modules free of import cycles.

#![deny(missing_docs)]

pub mod agent;
pub(crate) mod api;
pub mod backend;
pub mod bench;
pub mod cli;
pub(crate) mod clock;
pub mod door;
pub(crate) mod duration;
pub mod executor;
pub mod fleet;
pub mod health;
pub mod journal;
pub mod model;
pub mod proxy;
pub(crate) mod runtime;
pub(crate) mod scenario;
pub mod spec;
pub mod store;
