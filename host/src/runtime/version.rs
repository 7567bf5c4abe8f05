//! Which `rollout:policy` version a component was built against, checked
//! before instantiating: a mismatch names both versions.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PolicyError;
use super::v0_1_0;

/// WIT versions this host links.
pub const SUPPORTED: &[&str] = &[v0_1_0::VERSION];

/// The package every import of ours starts with.
const PACKAGE: &str = "rollout:policy/";

/// Refuse a component that imports another `rollout:policy` version or does
/// not export `run`.
pub fn check(policy: &str, engine: &Engine, component: &Component) -> Result<(), PolicyError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let Some(rest) = name.strip_prefix(PACKAGE) else {
            continue;
        };
        let found = rest.split_once('@').map_or("(unversioned)", |(_, v)| v);
        if !SUPPORTED.contains(&found) {
            return Err(PolicyError::WitVersion {
                policy: policy.to_string(),
                found: found.to_string(),
                supported: SUPPORTED.join(", "),
            });
        }
    }
    if !ty.exports(engine).any(|(name, _)| name == "run") {
        return Err(PolicyError::Link {
            policy: policy.to_string(),
            reason: "it does not export `run`: build it for the `policy` world of rollout:policy"
                .into(),
        });
    }
    Ok(())
}
