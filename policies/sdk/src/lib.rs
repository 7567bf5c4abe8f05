//! Write `rollout` deployment strategies in Rust.
//!
//! A policy is a WebAssembly component that the `rollout` host runs to drive
//! one rollout. This crate wraps the generated `rollout:policy@0.1.0` bindings
//! in plain Rust traits ([`Fleet`], [`Health`], [`Traffic`], [`Clock`],
//! [`Control`], together [`Host`]), so policy logic is ordinary code that:
//!
//! - runs inside the host when built for `wasm32-wasip2` ([`export!`] wires it
//!   to the component's `run` export), and
//! - runs natively under `cargo test` against [`testing::FakeFleet`], an
//!   in-memory fleet on a virtual clock, with no Wasm involved.
//!
//! Most strategies replace instances in batches; [`strategy::replace`] is that
//! loop (checkpoints, progress, readiness, rollback of every replaced
//! instance) with three hooks: the batch plan, the health verdict and the
//! rollback condition.
//!
//! Strategies that shift traffic between two revisions (canary, blue-green)
//! build on [`shift`] (scale a revision up and wait until it is ready within
//! the surge guardrail, scale one down, roll back traffic first) and
//! [`analysis`] (judge a revision by the error rate and latency of the
//! traffic it served, against thresholds read from params).
//!
//! # Example
//!
//! A complete policy: replace one instance at a time, roll back on the first
//! unhealthy one.
//!
//! ```
//! use rollout_policy::strategy::{self, Batch, State, Strategy};
//! use rollout_policy::{Host, Outcome, Policy, ProbeResult, RolloutInfo, Verdict};
//!
//! struct OneByOne;
//!
//! impl Strategy for OneByOne {
//!     fn plan(&self, _state: &State) -> Batch {
//!         Batch { stop_first: 0, start: 1 }
//!     }
//!     fn verdict(&self, _host: &mut impl Host, probe: &ProbeResult) -> Verdict {
//!         probe.verdict.clone()
//!     }
//!     fn roll_back(&self, state: &State) -> Option<String> {
//!         state.failures.first().map(|f| f.to_string())
//!     }
//! }
//!
//! impl Policy for OneByOne {
//!     fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
//!         strategy::replace(host, info, &OneByOne)
//!     }
//! }
//!
//! // In the policy crate (crate-type = ["cdylib"]), built with
//! // `cargo build --release --target wasm32-wasip2`:
//! // rollout_policy::export!(OneByOne);
//!
//! // And its test, natively:
//! use rollout_policy::testing::{Behaviour, FakeFleet};
//! let mut fleet = FakeFleet::new()
//!     .serving("v1", 3)
//!     .behaviour("v2", Behaviour::ready_after(2_000));
//! let info = fleet.info("v1", "v2", 3);
//! let outcome = OneByOne::run(&mut fleet, &info);
//! assert_eq!(outcome, Outcome::Completed);
//! assert_eq!(fleet.count("v2"), 3);
//! assert_eq!(fleet.max_instances(), 4);
//! ```

extern crate self as rollout_policy;

pub mod analysis;
mod error;
mod host;
mod instances;
pub mod params;
mod restore;
pub mod shift;
pub mod strategy;
pub mod testing;

pub use error::EffectError;
pub use host::{Clock, Control, Fleet, Health, Host, Traffic, WasmHost};
pub use params::Params;

/// The generated bindings of the `policy` world. Prefer the re-exported types
/// and the [`Host`] traits; these are public for [`export!`] and for policies
/// that need an import this crate does not wrap yet.
pub mod bindings {
    // The generated `run` export takes the flattened `rollout-info` fields.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "::rollout_policy::bindings",
        runtime_path: "::rollout_policy::__wit_bindgen::rt",
        generate_all,
        // The SDK's own type, whose `Display` is not the debug form.
        with: { "rollout:policy/types@0.1.0/effect-error": crate::EffectError },
        additional_derives: [PartialEq, Eq],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::rollout::policy::types::{
    Command, Instance, InstanceId, InstanceState, Level, Outcome, ProbeResult, Progress,
    RevisionId, RevisionStats, RolloutInfo, Verdict,
};

/// A deployment strategy: drives one rollout through the [`Host`] and says
/// how it ended.
pub trait Policy {
    /// Run the rollout described by `info` to its end.
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome;
}

/// Export a [`Policy`] as the component's `run`. Use once, in the policy
/// crate's `lib.rs` (crate-type `cdylib`).
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        // The generated `run` export takes the flattened `rollout-info` fields.
        #[allow(clippy::too_many_arguments)]
        const _: () = {
            struct __RolloutPolicyExport;

            impl $crate::bindings::Guest for __RolloutPolicyExport {
                fn run(info: $crate::RolloutInfo) -> $crate::Outcome {
                    <$policy as $crate::Policy>::run(&mut $crate::WasmHost, &info)
                }
            }

            $crate::bindings::__export_policy_world!(__RolloutPolicyExport);
        };
    };
}

impl Verdict {
    /// True for [`Verdict::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Verdict::Healthy)
    }
}
