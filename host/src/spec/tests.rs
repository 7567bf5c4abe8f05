use std::path::{Path, PathBuf};

use super::*;
use crate::executor::guardrails::Count;
use crate::health::HttpCheck;

const FULL: &str = r#"name = "web"
replicas = 3
backend = "process"
port = 8080
stop-grace = "5s"
log-max-bytes = 65536

[revision]
command = "../target/debug/demo-app"
args = ["--fast"]
env = { VERSION = "v1" }
workdir = "."

[health]
http = { path = "/healthz", status = 200 }
interval = "100ms"

[guardrails]
max-surge = 1
min-available = "100%"

[policy]
name = "rolling"
params = { min-ready-ms = "2s", batches = 2, ratio = 0.5, verbose = true }
"#;

const MINIMAL: &str = "name = \"web\"\nreplicas = 2\n[revision]\ncommand = \"web-server\"\n";

fn base() -> &'static Path {
    Path::new("/srv/app")
}

fn parse(text: &str) -> Result<ServiceSpec, SpecError> {
    ServiceSpec::parse(text, "web.toml", base())
}

fn parse_sets(text: &str, sets: &[(&str, &str)]) -> Result<ServiceSpec, SpecError> {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceSpec::parse_with(text, "web.toml", base(), &sets)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn set_err(text: &str, sets: &[(&str, &str)]) -> String {
    let e = parse_sets(text, sets).unwrap_err();
    assert!(matches!(e, SpecError::Set { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn full_example_parses() {
    let s = parse(FULL).unwrap();
    assert_eq!(s.name, "web");
    assert_eq!(s.replicas, 3);
    assert_eq!(s.backend, BackendKind::Process);
    assert_eq!(s.backend.name(), "process");
    assert_eq!(s.port, Some(8080));
    assert_eq!(s.stop_grace_ms, 5_000);
    assert_eq!(s.log_max_bytes, 65536);
    assert_eq!(
        s.revision.command.as_deref(),
        Some("/srv/target/debug/demo-app")
    );
    assert_eq!(s.revision.args, ["--fast"]);
    assert_eq!(s.revision.env["VERSION"], "v1");
    assert_eq!(s.revision.image, None);
    assert_eq!(s.revision.workdir.as_deref(), Some("/srv/app"));
    assert_eq!(
        s.health.http,
        Some(HttpCheck {
            path: "/healthz".into(),
            status: 200
        })
    );
    assert_eq!(s.health.interval, 100);
    assert_eq!(s.guardrails.max_surge, Count::Absolute(1));
    assert_eq!(s.guardrails.min_available, Count::Percent(100));
    assert_eq!(s.policy.name, "rolling");
    let params: Vec<(&str, &str)> = s
        .policy
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("batches", "2"),
            ("min-ready-ms", "2s"),
            ("ratio", "0.5"),
            ("verbose", "true")
        ]
    );
}

#[test]
fn defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.backend, BackendKind::Process);
    assert_eq!(s.port, None);
    assert_eq!(s.stop_grace_ms, 10_000);
    assert_eq!(s.log_max_bytes, 10 * 1024 * 1024);
    assert_eq!(s.revision.command.as_deref(), Some("web-server"));
    assert!(s.revision.args.is_empty() && s.revision.env.is_empty());
    assert_eq!(s.revision.workdir, None);
    assert_eq!(s.health, HealthSpec::default());
    assert_eq!(s.guardrails, GuardrailSpec::default());
    assert_eq!(s.policy, PolicySpec::default());
    assert_eq!(s.policy.name, "rolling");
}

#[test]
fn backends_parse() {
    for (name, kind) in [
        ("docker", BackendKind::Docker),
        ("swarm", BackendKind::Swarm),
    ] {
        let s = parse(&format!(
            "name = \"web\"\nreplicas = 1\nbackend = \"{name}\"\n[revision]\nimage = \"web:v1\"\n"
        ))
        .unwrap();
        assert_eq!(s.backend, kind);
        assert_eq!(s.backend.name(), name);
        assert_eq!(s.revision.command, None);
    }
    let e = err("name = \"web\"\nreplicas = 1\nbackend = \"k8s\"\n");
    assert!(e.contains("line 3") && e.contains("k8s"), "{e}");
}

#[test]
fn relative_paths_become_absolute() {
    let text = "name = \"web\"\nreplicas = 1\n[revision]\ncommand = \"./bin/../bin/web\"\n\
                workdir = \"data\"\n[policy]\nname = \"canary.wasm\"\n";
    let s = parse(text).unwrap();
    assert_eq!(s.revision.command.as_deref(), Some("/srv/app/bin/web"));
    assert_eq!(s.revision.workdir.as_deref(), Some("/srv/app/data"));
    assert_eq!(s.policy.name, "/srv/app/canary.wasm");
    // The stored text carries the absolute paths.
    let stored = s.to_toml();
    assert!(stored.contains("\"/srv/app/bin/web\""), "{stored}");
    assert!(stored.contains("\"/srv/app/canary.wasm\""), "{stored}");

    let text = "name = \"web\"\nreplicas = 1\n[revision]\ncommand = \"/usr/bin/web\"\n\
                [policy]\nname = \"policies/x/p.wasm\"\n";
    let s = parse(text).unwrap();
    assert_eq!(s.revision.command.as_deref(), Some("/usr/bin/web"));
    assert_eq!(s.policy.name, "/srv/app/policies/x/p.wasm");
    // A bare command is looked up in PATH; a bare policy name is built in.
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.revision.command.as_deref(), Some("web-server"));
    assert_eq!(s.policy.name, "rolling");
}

#[test]
fn load_resolves_against_the_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.toml");
    std::fs::write(&path, FULL).unwrap();
    let s = ServiceSpec::load(&path).unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let expected = root.parent().unwrap().join("target/debug/demo-app");
    assert_eq!(
        s.revision.command.as_deref(),
        Some(expected.to_str().unwrap())
    );
    assert_eq!(s.revision.workdir.as_deref(), Some(root.to_str().unwrap()));

    let missing = dir.path().join("nope.toml");
    let e = ServiceSpec::load(&missing).unwrap_err();
    assert!(matches!(e, SpecError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

/// The error names the file, the field and (when given) the line.
fn assert_invalid(text: &str, field: &str, line: Option<usize>, says: &str) {
    let e = parse(text).unwrap_err();
    let SpecError::Invalid { field: f, .. } = &e else {
        panic!("expected Invalid, got {e:?}");
    };
    assert_eq!(f, field);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("web.toml: {field}: ")),
        "{shown}"
    );
    assert!(shown.contains(says), "{shown}");
    if let Some(line) = line {
        assert!(shown.ends_with(&format!("(line {line})")), "{shown}");
    }
}

#[test]
fn validation_errors_name_file_line_and_field() {
    let with = |top: &str, rest: &str| format!("{top}\n[revision]\ncommand = \"app\"\n{rest}");
    for bad in ["Web", "1web", "web_1", "", &"w".repeat(41)] {
        assert_invalid(
            &with(&format!("replicas = 1\nname = {bad:?}"), ""),
            "name",
            Some(2),
            "starting with a letter",
        );
    }
    assert!(
        parse(&with(
            &format!("replicas = 1\nname = \"{}\"", "w".repeat(40)),
            ""
        ))
        .is_ok()
    );
    assert!(parse(&with("replicas = 1\nname = \"a-9\"", "")).is_ok());
    assert_invalid(
        &with("name = \"web\"\nreplicas = 0", ""),
        "replicas",
        Some(2),
        "at least 1",
    );
    assert_invalid(
        &with("name = \"web\"\nreplicas = 1\nport = 0", ""),
        "port",
        Some(3),
        "between 1 and 65535",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1\nport = 8080",
            "[traffic]\nhead-timeout = \"0s\"\n",
        ),
        "traffic.head-timeout",
        Some(7),
        "above 0",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1\nport = 8080",
            "[traffic]\nmax-connections = 0\n",
        ),
        "traffic.max-connections",
        Some(7),
        "at least 1",
    );
    let traffic = parse(&with(
        "name = \"web\"\nreplicas = 1",
        "[traffic]\nidle-timeout = \"5s\"\nmax-connections = 500\n",
    ))
    .unwrap()
    .traffic;
    assert_eq!(
        (
            traffic.idle_timeout,
            traffic.head_timeout,
            traffic.max_connections
        ),
        (5_000, 60_000, 500)
    );
    assert_invalid(
        "name = \"web\"\nreplicas = 1\n[revision]\nimage = \"web:v1\"\n",
        "revision.command",
        None,
        "process backend",
    );
    assert_invalid(
        "name = \"web\"\nreplicas = 1\n[revision]\ncommand = \"\"\n",
        "revision.command",
        Some(4),
        "process backend",
    );
    for backend in ["docker", "swarm"] {
        assert_invalid(
            &with(
                &format!("name = \"web\"\nreplicas = 1\nbackend = \"{backend}\""),
                "",
            ),
            "revision.image",
            None,
            &format!("the {backend} backend"),
        );
    }
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1",
            "[policy]\nparams = { ok = 1, steps = [1, 2] }\n",
        ),
        "policy.params.steps",
        Some(6),
        "got an array",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1",
            "[policy.params]\nok = 1\nnested = { a = 1 }\n",
        ),
        "policy.params.nested",
        Some(7),
        "got a table",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1",
            "[health]\ntimeout = \"0s\"\n",
        ),
        "health.timeout",
        Some(6),
        "more than 0",
    );
    assert_invalid(
        &with("name = \"web\"\nreplicas = 1", "[health]\ninterval = 0\n"),
        "health.interval",
        Some(6),
        "more than 0",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1",
            "[health]\nstart-period = \"0ms\"\n",
        ),
        "health.start-period",
        Some(6),
        "probed 10 ms after it starts",
    );
    assert_invalid(
        &with(
            "name = \"web\"\nreplicas = 1",
            "env = { \"A=B\" = \"x\" }\n",
        ),
        "revision.env.\"A=B\"",
        Some(5),
        "environment variable names",
    );
}

#[test]
fn unknown_field_is_rejected_with_line_and_column() {
    let e = parse("name = \"web\"\nreplicas = 1\nreplika = 2\n").unwrap_err();
    assert!(matches!(e, SpecError::Parse { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.starts_with("web.toml: "), "{e}");
    assert!(e.contains("line 3, column 1"), "{e}");
    assert!(e.contains("unknown field `replika`"), "{e}");

    let e = err("name = \"web\"\nreplicas = 1\n[revision]\ncommand = \"a\"\n  comand = \"b\"\n");
    assert!(e.contains("line 5, column 3"), "{e}");
    assert!(e.contains("unknown field `comand`"), "{e}");
    assert!(e.contains("in `revision.comand`"), "{e}");

    let e = err("name = \"web\"\nreplicas = 1\n[health]\nhttp = { path = \"/\", code = 200 }\n");
    assert!(e.contains("line 4, column 22"), "{e}");
    assert!(e.contains("in `health.http.code`"), "{e}");

    let e = err("name = \"web\"\nreplicas = 1\nbroken = \n");
    assert!(e.starts_with("web.toml: TOML parse error at line 3"), "{e}");
}

#[test]
fn type_errors_name_line_and_field() {
    let e = err("name = \"web\"\nreplicas = \"three\"\n[revision]\ncommand = \"a\"\n");
    assert!(e.starts_with("web.toml: "), "{e}");
    assert!(e.contains("line 2, column 12"), "{e}");
    assert!(e.contains("replicas = \"three\""), "{e}");
    assert!(e.contains("invalid type: string \"three\""), "{e}");
    assert!(e.contains("in `replicas`"), "{e}");

    let e = err("name = \"web\"\nreplicas = 1\n[revision]\nenv = { VERSION = 2 }\n");
    assert!(
        e.contains("line 4") && e.contains("in `revision.env.VERSION`"),
        "{e}"
    );

    let e = err("name = \"web\"\nreplicas = 1\nstop-grace = \"soon\"\n");
    assert!(
        e.contains("line 3") && e.contains("expected a duration"),
        "{e}"
    );

    let e = err("replicas = 1\n");
    assert!(e.contains("missing field `name`"), "{e}");
}

#[test]
fn set_overrides_nested_and_new_keys() {
    let s = parse_sets(
        FULL,
        &[
            ("replicas", "5"),
            ("revision.env.VERSION", "v2"),
            ("revision.env.NEW", "2"),
            ("revision.args", "[\"--slow\", \"-v\"]"),
            ("health.interval", "50ms"),
            ("health.tcp", "true"),
            ("policy.params.max-surge", "2"),
            ("policy.params.min-ready-ms", "5s"),
            ("port", "9090"),
        ],
    )
    .unwrap();
    assert_eq!(s.replicas, 5);
    assert_eq!(s.revision.env["VERSION"], "v2");
    assert_eq!(s.revision.env["NEW"], "2");
    assert_eq!(s.revision.args, ["--slow", "-v"]);
    assert_eq!(s.health.interval, 50);
    assert!(s.health.tcp);
    assert_eq!(s.port, Some(9090));
    assert!(
        s.policy
            .params
            .contains(&("max-surge".to_string(), "2".to_string()))
    );
    assert!(
        s.policy
            .params
            .contains(&("min-ready-ms".to_string(), "5s".to_string()))
    );

    // New tables, quoted strings, and the image of a docker spec.
    let s = parse_sets(
        MINIMAL,
        &[
            ("guardrails.max-surge", "25%"),
            ("revision.image", "\"web:v3\""),
            ("backend", "docker"),
            ("revision.command", "./bin/web"),
        ],
    )
    .unwrap();
    assert_eq!(s.guardrails.max_surge, Count::Percent(25));
    assert_eq!(s.backend, BackendKind::Docker);
    assert_eq!(s.revision.image.as_deref(), Some("web:v3"));
    // In a container the command is a path inside the image: kept as is.
    assert_eq!(s.revision.command.as_deref(), Some("./bin/web"));
}

#[test]
fn bad_sets_name_the_override() {
    let e = set_err(FULL, &[("replicas", "x")]);
    assert!(e.starts_with("--set replicas=x: "), "{e}");
    assert!(e.contains("expected u32"), "{e}");

    let e = set_err(FULL, &[("replicas", "0")]);
    assert_eq!(e, "--set replicas=0: replicas: must be at least 1, got 0");

    let e = set_err(FULL, &[("replicas.count", "2")]);
    assert!(e.starts_with("--set replicas.count=2: "), "{e}");
    assert!(e.contains("`replicas` is an integer, not a table"), "{e}");

    let e = set_err(FULL, &[("replika", "2")]);
    assert!(e.contains("unknown field `replika`"), "{e}");

    let e = set_err(FULL, &[("revision.args", "--fast")]);
    assert!(e.starts_with("--set revision.args=--fast: "), "{e}");

    let e = set_err(FULL, &[("health.http.code", "500")]);
    assert!(e.contains("unknown field `code`"), "{e}");

    let e = set_err(FULL, &[("policy.params.steps", "[1, 2]")]);
    assert!(e.contains("policy.params.steps"), "{e}");

    let e = set_err(FULL, &[("backend", "swarm")]);
    assert!(
        e.starts_with("--set backend=swarm: revision.image: "),
        "{e}"
    );

    let e = set_err(FULL, &[("revision..env", "x")]);
    assert!(e.contains("dotted key"), "{e}");

    // The last override of a key is the one to blame.
    let e = set_err(FULL, &[("replicas", "2"), ("replicas", "-1")]);
    assert!(e.starts_with("--set replicas=-1: "), "{e}");

    // An error in the file is still the file's, located in its text.
    let text = "name = \"web\"\nreplicas = \"three\"\n[revision]\ncommand = \"a\"\n";
    let e = parse_sets(text, &[("port", "80")]).unwrap_err();
    assert!(matches!(e, SpecError::Parse { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("line 2, column 12") && e.contains("in `replicas`"),
        "{e}"
    );
    let e = parse_sets(FULL, &[("port", "80"), ("replicas", "7")]);
    assert_eq!(e.unwrap().port, Some(80));
    let e = parse_sets(MINIMAL, &[("port", "80"), ("name", "Web")]).unwrap_err();
    assert!(e.to_string().starts_with("--set name=Web: name: "), "{e}");
    let e = parse_sets("name = \"Web\"\nreplicas = 1\n", &[("port", "80")]).unwrap_err();
    assert!(
        e.to_string().starts_with("web.toml: name: ") && e.to_string().ends_with("(line 1)"),
        "{e}"
    );
}

#[test]
fn to_toml_round_trips() {
    for spec in [
        parse(FULL).unwrap(),
        parse(MINIMAL).unwrap(),
        parse_sets(
            FULL,
            &[
                ("revision.env.VERSION", "v2"),
                ("policy.params.steps", "3"),
                ("health.exec", "[\"./check\", \"--quick\"]"),
            ],
        )
        .unwrap(),
    ] {
        let text = spec.to_toml();
        let again = ServiceSpec::parse(&text, "stored", Path::new("/elsewhere")).unwrap();
        assert_eq!(again, spec, "{text}");
        assert_eq!(again.to_toml(), text);
        assert!(spec.diff(&again).is_empty());
    }
}

#[test]
fn diff_lists_changed_added_and_removed_keys() {
    let old = parse(FULL).unwrap();
    assert!(old.diff(&old.clone()).is_empty());
    let new = parse_sets(
        FULL,
        &[
            ("revision.env.VERSION", "v2"),
            ("replicas", "5"),
            ("health.tcp", "true"),
        ],
    )
    .unwrap();
    assert_eq!(
        old.diff(&new),
        [
            "+ health.tcp = true",
            "replicas: 3 -> 5",
            "revision.env.VERSION: \"v1\" -> \"v2\"",
        ]
    );
    let trimmed = FULL.replace("args = [\"--fast\"]\n", "");
    let newer = parse(&trimmed).unwrap();
    assert_eq!(old.diff(&newer), ["- revision.args = [\"--fast\"]"]);
    assert_eq!(newer.diff(&old), ["+ revision.args = [\"--fast\"]"]);
}

#[test]
fn demo_example_parses() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.toml");
    let s = ServiceSpec::load(&path).unwrap();
    assert_eq!(s.name, "demo");
    assert_eq!(s.replicas, 3);
    assert_eq!(s.backend, BackendKind::Process);
    assert_eq!(s.revision.env["VERSION"], "v1");
    let root = std::fs::canonicalize(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")).unwrap();
    let command = root.join("target/release/demo-app");
    assert_eq!(
        s.revision.command.as_deref(),
        Some(command.to_str().unwrap())
    );
    assert_eq!(
        s.health.http.as_ref().map(|h| h.path.as_str()),
        Some("/healthz")
    );
    assert_eq!(s.health.interval, 100);
    assert_eq!(s.guardrails.max_surge, Count::Absolute(1));
    assert_eq!(s.guardrails.min_available, Count::Percent(100));
    assert_eq!(s.policy.name, "rolling");
    assert_eq!(
        s.policy.params,
        [("min-ready-ms".to_string(), "1s".to_string())]
    );
}

#[test]
fn log_max_bytes_has_a_floor() {
    let err = ServiceSpec::parse(
        "name = \"web\"\nreplicas = 1\nlog-max-bytes = 10\n[revision]\ncommand = \"x\"\n",
        "web.toml",
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("log-max-bytes: must be at least 65536"),
        "{err}"
    );
    assert!(err.contains("(line 3)"), "{err}");
}

#[test]
fn an_error_never_quotes_a_huge_line_whole() {
    let huge = "x".repeat(1_000_000);
    let cases = [
        // The TOML parser's own message quotes the line.
        format!("name = \"web\"\nreplicas = 2 {huge}\n"),
        // A type error located by the spec parser.
        format!("name = \"web\"\nreplicas = \"{huge}\"\n[revision]\ncommand = \"a\"\n"),
        // A rule broken by a huge value.
        format!("name = \"{huge}\"\nreplicas = 2\n[revision]\ncommand = \"a\"\n"),
    ];
    for text in &cases {
        let message = err(text);
        assert!(message.len() < 2_000, "{} bytes", message.len());
        assert!(message.contains("more characters)"), "{message}");
        assert!(message.starts_with("web.toml: "), "{message}");
    }
    let message = set_err(MINIMAL, &[("replicas", &huge)]);
    assert!(message.len() < 2_000, "{} bytes", message.len());
}
