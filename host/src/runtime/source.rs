//! Where a policy comes from: a built-in name or a `.wasm` path.
//!
//! Built-in policies are compiled from `policies/` by the host's build
//! script and embedded in the binary, so `--policy rolling` needs no file.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::PolicyError;

/// Built-in policies users can name: `(name, what it does)`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "rolling",
        "replace instances in batches (max-surge, max-unavailable), roll back on failure",
    ),
    (
        "canary",
        "shift traffic in weighted steps, compare error rate and p99 with the old revision, roll back on failure",
    ),
    (
        "blue-green",
        "start a full new set at weight 0, switch all traffic at once, switch back on failure",
    ),
];

static ROLLING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policies/rolling.wasm"));
static CANARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policies/canary.wasm"));
static BLUE_GREEN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policies/blue_green.wasm"));
static BENCH_CALLS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policies/bench_calls.wasm"));

/// A policy to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Embedded in the binary.
    Builtin(&'static str),
    /// A component file.
    Path(PathBuf),
    /// A component's bytes, sent to the agent by a client.
    Uploaded {
        /// Where the client read it, for messages.
        name: String,
        /// The component.
        bytes: std::sync::Arc<[u8]>,
    },
}

impl PolicySource {
    /// Read `--policy`: a path when it looks like one (contains `/` or ends
    /// in `.wasm`), else a built-in name.
    pub fn parse(arg: &str) -> Result<Self, PolicyError> {
        if arg.contains('/') || arg.ends_with(".wasm") || Path::new(arg).is_file() {
            return Ok(PolicySource::Path(PathBuf::from(arg)));
        }
        match BUILTIN.iter().find(|(name, _)| *name == arg) {
            Some((name, _)) => Ok(PolicySource::Builtin(name)),
            None => Err(PolicyError::NotFound {
                policy: arg.to_string(),
                reason: format!(
                    "no built-in policy of that name (built-in: {}); to load a file, give its path, e.g. ./{arg}.wasm",
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// The guest `rollout bench runtime` times host calls with.
    pub fn bench_calls() -> Self {
        PolicySource::Builtin("bench-calls")
    }

    /// Name for messages.
    pub fn name(&self) -> String {
        match self {
            PolicySource::Builtin(name) => (*name).to_string(),
            PolicySource::Path(path) => path.display().to_string(),
            PolicySource::Uploaded { name, .. } => name.clone(),
        }
    }

    /// The component's bytes.
    pub fn bytes(&self) -> Result<Cow<'static, [u8]>, PolicyError> {
        match self {
            PolicySource::Builtin("rolling") => Ok(Cow::Borrowed(ROLLING)),
            PolicySource::Builtin("canary") => Ok(Cow::Borrowed(CANARY)),
            PolicySource::Builtin("blue-green") => Ok(Cow::Borrowed(BLUE_GREEN)),
            PolicySource::Builtin("bench-calls") => Ok(Cow::Borrowed(BENCH_CALLS)),
            PolicySource::Builtin(name) => Err(PolicyError::NotFound {
                policy: (*name).to_string(),
                reason: "not built into this binary".into(),
            }),
            PolicySource::Uploaded { bytes, .. } => Ok(Cow::Owned(bytes.to_vec())),
            PolicySource::Path(path) => {
                std::fs::read(path)
                    .map(Cow::Owned)
                    .map_err(|e| PolicyError::NotFound {
                        policy: path.display().to_string(),
                        reason: format!("cannot read it: {e}"),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            PolicySource::parse("rolling").unwrap(),
            PolicySource::Builtin("rolling")
        );
        assert!(matches!(
            PolicySource::parse("./x.wasm"),
            Ok(PolicySource::Path(_))
        ));
        let err = PolicySource::parse("canary-ish").unwrap_err().to_string();
        assert!(err.contains("built-in: rolling"), "{err}");
        let err = PolicySource::parse("/nope/x.wasm")
            .unwrap()
            .bytes()
            .unwrap_err();
        assert!(err.to_string().contains("cannot read it"), "{err}");
        assert!(
            PolicySource::parse("rolling")
                .unwrap()
                .bytes()
                .unwrap()
                .len()
                > 1000
        );
    }

    #[test]
    fn every_builtin_is_embedded() {
        for (name, about) in BUILTIN {
            let source = PolicySource::parse(name).unwrap();
            assert_eq!(source, PolicySource::Builtin(name));
            assert!(source.bytes().unwrap().len() > 1000, "{name}");
            assert!(!about.is_empty());
        }
    }
}
