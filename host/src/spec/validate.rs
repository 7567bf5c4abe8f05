//! The rules a well-formed spec must also follow (names, counts, paths,
//! backend-specific fields), checked before anything changes.

use super::error::Problem;
use super::{BackendKind, DEFAULT_POLICY, Document, MAX_NAME_LEN, MIN_LOG_MAX_BYTES, article};

/// The first thing wrong with a deserialized spec, if any.
pub(super) fn validate(doc: &Document) -> Option<Problem> {
    let name_ok = (1..=MAX_NAME_LEN).contains(&doc.name.len())
        && doc.name.starts_with(|c: char| c.is_ascii_lowercase())
        && doc
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Some(Problem::new(
            &["name"],
            format!(
                "must be 1 to {MAX_NAME_LEN} characters among a-z, 0-9 and '-', \
                 starting with a letter; got {:?}",
                doc.name
            ),
        ));
    }
    if doc.replicas == 0 {
        return Some(Problem::new(
            &["replicas"],
            "must be at least 1, got 0".to_string(),
        ));
    }
    if doc.port == Some(0) {
        return Some(Problem::new(
            &["port"],
            "must be between 1 and 65535, got 0".to_string(),
        ));
    }
    let rev = &doc.revision;
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    match doc.backend {
        BackendKind::Process if blank(&rev.command) => {
            return Some(Problem {
                path: vec!["revision".into(), "command".into()],
                also: Some("backend"),
                message: "required by the process backend: the program each instance runs, \
                          e.g. command = \"./bin/web\""
                    .to_string(),
            });
        }
        BackendKind::Docker | BackendKind::Swarm if blank(&rev.image) => {
            return Some(Problem {
                path: vec!["revision".into(), "image".into()],
                also: Some("backend"),
                message: format!(
                    "required by the {} backend: the image each instance runs, \
                     e.g. image = \"web:v2\"",
                    doc.backend
                ),
            });
        }
        _ => {}
    }
    if let Some(key) = rev
        .env
        .keys()
        .find(|k| k.is_empty() || k.contains(['=', '\0']))
    {
        let path = ["revision", "env", key.as_str()];
        return Some(Problem::new(
            &path,
            "environment variable names must be non-empty, without '=' or NUL".to_string(),
        ));
    }
    if let Some(p) = rev
        .args
        .iter()
        .chain(rev.env.values())
        .find(|s| s.contains('\0'))
    {
        return Some(Problem::new(
            &["revision"],
            format!("arguments and environment values cannot contain NUL: {p:?}"),
        ));
    }
    if doc.health.interval == 0 {
        return Some(Problem::new(
            &["health", "interval"],
            "must be more than 0".to_string(),
        ));
    }
    if doc.health.timeout == 0 {
        return Some(Problem::new(
            &["health", "timeout"],
            "must be more than 0".to_string(),
        ));
    }
    if doc.health.start_period == Some(0) {
        return Some(Problem::new(
            &["health", "start-period"],
            "must be more than 0: a starting instance is probed 10 ms after it starts, before most services listen".to_string(),
        ));
    }
    if let Some(h) = &doc.traffic.sticky_header
        && hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        return Some(Problem::new(
            &["traffic", "sticky-header"],
            format!("not a valid HTTP header name: {h:?}"),
        ));
    }
    if let Some(preview) = doc.traffic.preview_port
        && (preview == 0 || doc.port.is_none() || doc.port == Some(preview))
    {
        return Some(Problem::new(
            &["traffic", "preview-port"],
            format!("must be a port other than 0 and `port`, which must be set too; got {preview}"),
        ));
    }
    for (key, ms) in [
        ("idle-timeout", doc.traffic.idle_timeout),
        ("head-timeout", doc.traffic.head_timeout),
        ("upstream-timeout", doc.traffic.upstream_timeout),
    ] {
        if ms == 0 {
            return Some(Problem::new(
                &["traffic", key],
                "must be a duration above 0, like \"60s\"".to_string(),
            ));
        }
    }
    if doc.traffic.max_connections == 0 {
        return Some(Problem::new(
            &["traffic", "max-connections"],
            "must be at least 1: the most client connections the front door holds at once, like 10000"
                .to_string(),
        ));
    }
    if doc.traffic.sticky_header.is_some() && doc.traffic.sticky_cookie.is_some() {
        return Some(Problem::new(
            &["traffic", "sticky-cookie"],
            "give sticky-header or sticky-cookie, not both".to_string(),
        ));
    }
    if doc.log_max_bytes < MIN_LOG_MAX_BYTES {
        return Some(Problem::new(
            &["log-max-bytes"],
            format!(
                "must be at least {MIN_LOG_MAX_BYTES} bytes, got {}",
                doc.log_max_bytes
            ),
        ));
    }
    if doc.policy.name.trim().is_empty() {
        return Some(Problem::new(
            &["policy", "name"],
            format!("must name a built-in policy (e.g. {DEFAULT_POLICY:?}) or a .wasm file"),
        ));
    }
    for (key, value) in &doc.policy.params {
        if !matches!(
            value,
            toml::Value::String(_)
                | toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
        ) {
            return Some(Problem::new(
                &["policy", "params", key.as_str()],
                format!(
                    "policy params must be strings, integers, floats or booleans, got {} {}",
                    article(value.type_str()),
                    value.type_str()
                ),
            ));
        }
    }
    None
}
