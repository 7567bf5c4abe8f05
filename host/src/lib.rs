//! `rollout`: a deployment engine whose strategies are sandboxed
//! WebAssembly components.
//!
//! - [`runtime`]: wasmtime, the sandbox and the `rollout:policy` bindings.
//! - [`engine`]: runs a policy under guardrails, operator commands and
//!   deadlines; journals every step; restores the fleet when a policy fails.
//! - [`backend`]: what runs instances (`sim` today).
//! - [`scenario`]: `rollout test` scenarios and their assertions.
//! - [`cli`]: the `rollout` command.

#![deny(missing_docs)]

pub mod agent;
pub mod api;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod duration;
pub mod engine;
pub mod health;
pub mod model;
pub mod proxy;
pub mod runtime;
pub mod scenario;
pub mod spec;
pub mod store;
