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
            PolicySource::Uploaded { name, bytes } if bytes.len() as u64 > MAX_COMPONENT_BYTES => {
                Err(PolicyError::NotFound {
                    policy: name.clone(),
                    reason: too_large(bytes.len() as u64),
                })
            }
            PolicySource::Uploaded { bytes, .. } => Ok(Cow::Owned(bytes.to_vec())),
            PolicySource::Path(path) => {
                read_component(path)
                    .map(Cow::Owned)
                    .map_err(|reason| PolicyError::NotFound {
                        policy: path.display().to_string(),
                        reason,
                    })
            }
        }
    }
}

/// Largest policy component read or accepted: a Python policy, the
/// largest kind, is about 18 MB.
const MAX_COMPONENT_BYTES: u64 = 64 << 20;

fn too_large(len: u64) -> String {
    format!(
        "{len} bytes is more than a policy may be ({} MiB)",
        MAX_COMPONENT_BYTES >> 20
    )
}

/// Read the component file at `path`, which must be a regular file of at
/// most [`MAX_COMPONENT_BYTES`]: a FIFO or a device (`/dev/zero`) is
/// refused at once instead of hanging the reader or filling its memory.
/// The error says why, for "policy PATH: ...".
pub fn read_component(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let cannot = |e: std::io::Error| format!("cannot read it: {e}");
    // Non-blocking, so opening a FIFO with no writer returns at once.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err("not a regular file (a policy is a .wasm component file)".into());
    }
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
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

    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.wasm");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let huge = dir.path().join("huge.wasm");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_COMPONENT_BYTES + 1)
            .unwrap();
        let cases = [
            (fifo.as_path(), "not a regular file"),
            (Path::new("/dev/zero"), "not a regular file"),
            (dir.path(), "not a regular file"),
            (huge.as_path(), "more than a policy may be (64 MiB)"),
        ];
        for (path, why) in cases {
            let err = read_component(path).unwrap_err();
            assert!(err.contains(why), "{}: {err}", path.display());
        }
        let small = dir.path().join("small.wasm");
        std::fs::write(&small, b"\0asm").unwrap();
        assert_eq!(read_component(&small).unwrap(), b"\0asm");
        let upload = PolicySource::Uploaded {
            name: "big.wasm".into(),
            bytes: vec![0; MAX_COMPONENT_BYTES as usize + 1].into(),
        };
        let err = upload.bytes().unwrap_err().to_string();
        assert!(err.contains("more than a policy may be"), "{err}");
    }
}
