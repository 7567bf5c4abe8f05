//! The service spec, `rollout.toml`: what a service runs, how many, on which
//! backend, how its health is judged, the guardrails and the policy that
//! rolls it out.
//!
//! ```toml
//! name = "web"                  # [a-z0-9-], 1..=40 chars, starts with a letter
//! replicas = 3                  # >= 1
//! backend = "process"           # process (default) | docker | swarm
//! port = 8080                   # optional front-door port
//! stop-grace = "10s"            # SIGTERM -> SIGKILL grace period (default 10s)
//! log-max-bytes = 10485760      # per-instance log cap before rotation (default 10 MiB)
//!
//! [revision]                    # what an instance runs
//! command = "../target/debug/demo-app"   # process backend; a path with '/' is relative to this file
//! args = []
//! env = { VERSION = "v1" }
//! image = "demo-app:v1"         # docker and swarm backends
//! workdir = "."                 # relative to this file
//!
//! [health]                      # crate::health::HealthSpec
//! http = { path = "/healthz", status = 200 }
//! interval = "100ms"
//!
//! [guardrails]                  # crate::executor::guardrails::GuardrailSpec
//! max-surge = 1
//! min-available = "100%"
//!
//! [policy]
//! name = "rolling"              # built-in name, or a .wasm path relative to this file
//! params = { min-ready-ms = "2s" }
//! ```
//!
//! A [`ServiceSpec`] keeps the TOML table it was read from (after `--set`
//! overrides, with relative paths made absolute): [`ServiceSpec::to_toml`]
//! writes it back and [`ServiceSpec::diff`] compares two of them key by key.

mod diff;
mod error;
mod overrides;
mod source;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use error::Context;
pub use error::SpecError;
use validate::validate;

use crate::executor::guardrails::GuardrailSpec;
use crate::health::HealthSpec;
use crate::proxy::{self, Door, Sticky};

/// Policy used when `[policy]` names none.
pub const DEFAULT_POLICY: &str = "rolling";
/// Default `stop-grace`, in ms.
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
/// `[traffic] idle-timeout` when not given, in ms (the front door's
/// [`proxy::config::DEFAULT_IDLE_TIMEOUT`]).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = proxy::config::DEFAULT_IDLE_TIMEOUT.as_millis() as u64;
/// `[traffic] head-timeout` when not given, in ms.
pub const DEFAULT_HEAD_TIMEOUT_MS: u64 = proxy::config::DEFAULT_HEAD_TIMEOUT.as_millis() as u64;
/// `[traffic] upstream-timeout` when not given, in ms.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 =
    proxy::config::DEFAULT_UPSTREAM_TIMEOUT.as_millis() as u64;
/// `[traffic] max-connections` when not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = proxy::config::DEFAULT_MAX_CONNECTIONS;
/// Smallest `log-max-bytes`: below it, logs would rotate constantly.
pub const MIN_LOG_MAX_BYTES: u64 = 64 * 1024;

/// Default `log-max-bytes` (10 MiB).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Longest service name.
pub const MAX_NAME_LEN: usize = 40;

/// A parsed, validated service spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Service name: `[a-z0-9-]`, 1 to 40 characters, starting with a letter.
    pub name: String,
    /// Instances the service runs (at least 1).
    pub replicas: u32,
    /// What runs the instances.
    pub backend: BackendKind,
    /// Front-door port of the service, if any (never 0).
    pub port: Option<u16>,
    /// Grace period between SIGTERM and SIGKILL, in ms.
    pub stop_grace_ms: u64,
    /// Per-instance log size before rotation, in bytes.
    pub log_max_bytes: u64,
    /// What an instance runs.
    pub revision: RevisionSpec,
    /// Health checks of an instance.
    pub health: HealthSpec,
    /// Limits no policy can break.
    pub guardrails: GuardrailSpec,
    /// The policy that rolls the service out, and its params.
    pub policy: PolicySpec,
    /// How the front door spreads requests.
    pub traffic: TrafficSpec,
    /// The table the spec was read from (overrides applied, paths resolved).
    raw: toml::Table,
}

/// What runs the instances of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Local processes (the default).
    #[default]
    Process,
    /// Docker containers.
    Docker,
    /// Docker Swarm services.
    Swarm,
}

impl BackendKind {
    /// The name as written in a spec: `process`, `docker` or `swarm`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Docker => "docker",
            BackendKind::Swarm => "swarm",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an instance runs, as written under `[revision]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RevisionSpec {
    /// Program to run. Process backend: a path containing `/` is absolute
    /// once loaded, a bare name is looked up in `PATH`. Container backends:
    /// replaces the image's entrypoint (a path inside the image).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Image to run (docker and swarm backends; ignored by process).
    pub image: Option<String>,
    /// Working directory: absolute once loaded (process backend), or a
    /// directory inside the image (container backends).
    pub workdir: Option<String>,
}

/// The policy that rolls a service out, as written under `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// A built-in policy name (`rolling`) or the absolute path of a `.wasm`.
    pub name: String,
    /// Params passed to the policy, sorted by name; values as strings.
    pub params: Vec<(String, String)>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            name: DEFAULT_POLICY.to_string(),
            params: Vec::new(),
        }
    }
}

/// The file as deserialized, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Document {
    name: String,
    replicas: u32,
    #[serde(default)]
    backend: BackendKind,
    port: Option<u16>,
    #[serde(default = "default_stop_grace", with = "crate::duration")]
    stop_grace: u64,
    #[serde(default = "default_log_max_bytes")]
    log_max_bytes: u64,
    #[serde(default)]
    revision: RevisionSpec,
    #[serde(default)]
    health: HealthSpec,
    #[serde(default)]
    guardrails: GuardrailSpec,
    #[serde(default)]
    policy: PolicyTable,
    #[serde(default)]
    traffic: TrafficSpec,
}

/// `[traffic]`: how the front door (on `port`) spreads requests and how
/// long it waits on clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrafficSpec {
    /// Pin each client to a revision by the value of this request header
    /// (e.g. `X-User-Id`), so a canary reaches a stable subset of users.
    pub sticky_header: Option<String>,
    /// Pin each client by the value of this cookie instead.
    pub sticky_cookie: Option<String>,
    /// A second listener that sends everything to the revision being rolled
    /// out, e.g. to try a blue-green's new set before the switch.
    pub preview_port: Option<u16>,
    /// A client connection with no request under way is closed after this
    /// long without one, as is a client that stops sending a request body
    /// or reading an answer for this long (ms).
    #[serde(default = "default_idle_timeout", with = "crate::duration")]
    pub idle_timeout: u64,
    /// A request's head must arrive whole within this long of its first
    /// byte, else the client gets a 408 and its connection closes (ms).
    #[serde(default = "default_head_timeout", with = "crate::duration")]
    pub head_timeout: u64,
    /// An instance must start its answer within this long, else its client
    /// gets a 504, counted as an error of its revision (ms).
    #[serde(default = "default_upstream_timeout", with = "crate::duration")]
    pub upstream_timeout: u64,
    /// The most client connections the front door holds; past it, a new
    /// one takes the place of the one idle longest, or gets a 503 if
    /// every one has a request in flight.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        TrafficSpec {
            sticky_header: None,
            sticky_cookie: None,
            preview_port: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT_MS,
            head_timeout: DEFAULT_HEAD_TIMEOUT_MS,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl TrafficSpec {
    /// The front door these settings describe. A sticky header that is no
    /// valid field name pins no one.
    pub fn door(&self) -> Door {
        let sticky = match (&self.sticky_header, &self.sticky_cookie) {
            (Some(h), _) => hyper::header::HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(Sticky::Header),
            (None, Some(c)) => Some(Sticky::Cookie(c.clone())),
            (None, None) => None,
        };
        Door {
            sticky,
            idle_timeout: Duration::from_millis(self.idle_timeout),
            head_timeout: Duration::from_millis(self.head_timeout),
            upstream_timeout: Duration::from_millis(self.upstream_timeout),
            max_connections: self.max_connections,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct PolicyTable {
    name: String,
    params: BTreeMap<String, toml::Value>,
}

impl Default for PolicyTable {
    fn default() -> Self {
        PolicyTable {
            name: DEFAULT_POLICY.to_string(),
            params: BTreeMap::new(),
        }
    }
}

fn default_stop_grace() -> u64 {
    DEFAULT_STOP_GRACE_MS
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}

fn default_head_timeout() -> u64 {
    DEFAULT_HEAD_TIMEOUT_MS
}

fn default_upstream_timeout() -> u64 {
    DEFAULT_UPSTREAM_TIMEOUT_MS
}

fn default_log_max_bytes() -> u64 {
    DEFAULT_LOG_MAX_BYTES
}

impl ServiceSpec {
    /// Read and validate a spec file; relative command/workdir/policy paths
    /// become absolute (relative to the file's directory) so the stored spec
    /// is self-contained.
    pub fn load(path: &Path) -> Result<ServiceSpec, SpecError> {
        Self::load_with(path, &[])
    }

    /// [`ServiceSpec::load`], applying `--set key=value` overrides first:
    /// dotted paths into the TOML (`replicas=5`, `revision.env.VERSION=v2`,
    /// `revision.args=["--fast"]`, `health.interval=50ms`,
    /// `policy.params.max-surge=2`). The value is parsed as a TOML value if
    /// it parses (numbers, booleans, arrays, quoted strings), else taken as
    /// a plain string; it is also kept as written when it replaces a string
    /// or sets an environment variable (`revision.env.VERSION=2` is `"2"`).
    /// Keys may be created; the result is validated like the file, and an
    /// error caused by an override names it (`--set replicas=x: ...`).
    pub fn load_with(path: &Path, sets: &[(String, String)]) -> Result<ServiceSpec, SpecError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: shown.clone(),
            source,
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::parse_with(&text, &shown, &base, sets)
    }

    /// Parse from text; `origin` names the source in errors, `base_dir`
    /// resolves relative paths.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<ServiceSpec, SpecError> {
        Self::parse_with(text, origin, base_dir, &[])
    }

    /// [`ServiceSpec::parse`] with `--set` overrides, as in
    /// [`ServiceSpec::load_with`].
    pub fn parse_with(
        text: &str,
        origin: &str,
        base_dir: &Path,
        sets: &[(String, String)],
    ) -> Result<ServiceSpec, SpecError> {
        let cx = Context { text, origin, sets };
        let mut raw: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| cx.parse_error(e.to_string().trim_end().to_string()))?;
        for (i, (key, value)) in sets.iter().enumerate() {
            overrides::apply(&mut raw, key, value).map_err(|m| cx.set_error(i, m))?;
        }
        let doc: Document = if sets.is_empty() {
            toml::from_str(text).map_err(|e| cx.parse_error(source::describe(text, &e)))?
        } else {
            let generated = toml::to_string(&raw).map_err(|e| cx.parse_error(e.to_string()))?;
            toml::from_str(&generated).map_err(|e| cx.merged_error(&generated, &e))?
        };
        if let Some(problem) = validate(&doc) {
            return Err(cx.invalid(problem));
        }
        Ok(Self::build(doc, raw, base_dir))
    }

    /// The typed spec, with relative paths resolved against `base_dir` in
    /// both the fields and the raw table.
    fn build(doc: Document, mut raw: toml::Table, base_dir: &Path) -> ServiceSpec {
        let mut revision = doc.revision;
        let mut resolve = |value: &mut Option<String>, path: &[&str], applies: bool| {
            if let Some(v) = value
                && applies
                && !Path::new(v.as_str()).is_absolute()
            {
                *v = absolute(base_dir, v);
                overrides::put(&mut raw, path, toml::Value::String(v.clone()));
            }
        };
        // In a container, paths are the image's, not this machine's.
        let on_host = doc.backend == BackendKind::Process;
        let command_is_path = revision.command.as_ref().is_some_and(|c| c.contains('/'));
        resolve(
            &mut revision.command,
            &["revision", "command"],
            command_is_path && on_host,
        );
        resolve(&mut revision.workdir, &["revision", "workdir"], on_host);
        let mut policy_name = Some(doc.policy.name);
        let policy_is_path = policy_name
            .as_ref()
            .is_some_and(|n| n.contains('/') || n.ends_with(".wasm"));
        resolve(&mut policy_name, &["policy", "name"], policy_is_path);
        let params = doc
            .policy
            .params
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        ServiceSpec {
            name: doc.name,
            replicas: doc.replicas,
            backend: doc.backend,
            port: doc.port,
            stop_grace_ms: doc.stop_grace,
            log_max_bytes: doc.log_max_bytes,
            revision,
            health: doc.health,
            guardrails: doc.guardrails,
            policy: PolicySpec {
                name: policy_name.unwrap_or_default(),
                params,
            },
            traffic: doc.traffic,
            raw,
        }
    }

    /// The same spec with `replicas` instances (a scale of it).
    pub fn with_replicas(&self, replicas: u32) -> ServiceSpec {
        let mut spec = self.clone();
        spec.replicas = replicas;
        spec.raw
            .insert("replicas".into(), toml::Value::Integer(replicas.into()));
        spec
    }

    /// The TOML table this spec was read from, with overrides applied and
    /// relative paths made absolute. [`ServiceSpec::to_toml`] writes it.
    pub fn raw(&self) -> &toml::Table {
        &self.raw
    }

    /// Canonical TOML text of this spec (after overrides, paths resolved):
    /// what the agent stores per revision; `parse(to_toml())` gives back an
    /// equal spec. Keys are sorted; defaults are left out as in the source,
    /// so the text reflects the table the spec was read from (change a spec
    /// through overrides, not by editing its fields, to keep them in step).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.raw).expect("a TOML table always serializes")
    }

    /// Human diff between two specs, one line per changed key path, sorted
    /// by key path; empty when equal:
    /// `replicas: 3 -> 5`, `revision.env.VERSION: "v1" -> "v2"`,
    /// `+ health.tcp = true`, `- revision.args = ["--fast"]`.
    pub fn diff(&self, newer: &ServiceSpec) -> Vec<String> {
        diff::diff(&self.raw, &newer.raw)
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `relative` joined to `base`, absolute, without `.` and `..` components.
fn absolute(base: &Path, relative: &str) -> String {
    let joined = base.join(relative);
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    let mut out = PathBuf::new();
    for component in abs.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}
