//! Why a policy could not be loaded or did not finish.
//!
//! Every variant names the policy; those raised while it runs also name the
//! limit and the last step it reported, so an operator knows which and why.

use super::Limits;
use super::host::Halt;
use super::limits::LimitHit;

/// A policy failed to load or to run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file or built-in name does not exist or cannot be read.
    #[error("policy {policy}: {reason}")]
    NotFound {
        /// Name or path.
        policy: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// Not a WebAssembly component.
    #[error("policy {policy} is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// Name or path.
        policy: String,
        /// The parser's message.
        reason: String,
    },
    /// Built against a `rollout:policy` version this host does not support.
    #[error(
        "policy {policy} was built against rollout:policy@{found}, but this host supports rollout:policy@{supported}: rebuild it with the rollout-policy SDK for {supported}"
    )]
    WitVersion {
        /// Name or path.
        policy: String,
        /// The version the component imports.
        found: String,
        /// The versions this host supports.
        supported: String,
    },
    /// Imports something the sandbox does not provide.
    #[error("policy {policy} cannot be linked: {reason}")]
    Link {
        /// Name or path.
        policy: String,
        /// Which import is missing.
        reason: String,
    },
    /// Ran too long without calling the host.
    #[error(
        "policy {policy} exceeded its CPU limit: computed more than {limit_ms} ms without calling the host, at {step}"
    )]
    Cpu {
        /// Name or path.
        policy: String,
        /// The limit.
        limit_ms: u128,
        /// Last reported step.
        step: String,
    },
    /// Grew its memory past the cap.
    #[error(
        "policy {policy} exceeded its memory limit of {limit_mib} MiB (asked for {asked_mib} MiB), at {step}"
    )]
    Memory {
        /// Name or path.
        policy: String,
        /// The limit.
        limit_mib: usize,
        /// What it asked for.
        asked_mib: usize,
        /// Last reported step.
        step: String,
    },
    /// Stopped by the host: rollout deadline, or paused forever.
    #[error("policy {policy} stopped by the host: {halt}, at {step}")]
    Halted {
        /// Name or path.
        policy: String,
        /// Why.
        halt: Halt,
        /// Last reported step.
        step: String,
    },
    /// Trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("policy {policy} trapped at {step}: {message}")]
    Trap {
        /// Name or path.
        policy: String,
        /// The trap and what the guest printed before it.
        message: String,
        /// Last reported step.
        step: String,
    },
    /// The engine could not be set up.
    #[error("policy runtime: {0:#}")]
    Engine(wasmtime::Error),
}

impl PolicyError {
    /// An engine setup error.
    pub fn engine(e: wasmtime::Error) -> Self {
        PolicyError::Engine(e)
    }

    /// A link error for `policy`.
    pub fn link(policy: &str, e: wasmtime::Error) -> Self {
        PolicyError::Link {
            policy: policy.to_string(),
            reason: format!("{e:#}"),
        }
    }

    /// Classify the error a policy's run ended with.
    pub fn from_trap(
        policy: &str,
        step: &str,
        error: wasmtime::Error,
        hit: Option<LimitHit>,
        stderr: &str,
        limits: &Limits,
    ) -> Self {
        let (policy, step) = (policy.to_string(), step.to_string());
        if let Some(halt) = error.downcast_ref::<Halt>() {
            return PolicyError::Halted {
                policy,
                halt: halt.clone(),
                step,
            };
        }
        match hit.or_else(|| error.downcast_ref::<LimitHit>().copied()) {
            Some(LimitHit::Cpu) => PolicyError::Cpu {
                policy,
                limit_ms: limits.cpu_per_call.as_millis(),
                step,
            },
            Some(LimitHit::Memory { desired }) => PolicyError::Memory {
                policy,
                limit_mib: limits.memory_bytes >> 20,
                asked_mib: desired.div_ceil(1 << 20),
                step,
            },
            None => {
                // What the guest printed before trapping, e.g. a Rust panic
                // message, without the advice about backtraces it cannot take.
                let printed = stderr
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let message = match printed.is_empty() {
                    true => format!("{:#}", error.root_cause()),
                    false => format!("{:#}; it printed: {printed}", error.root_cause()),
                };
                PolicyError::Trap {
                    policy,
                    message,
                    step,
                }
            }
        }
    }
}
