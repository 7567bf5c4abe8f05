//! Revisions refused before anything changes: a command that does not
//! exist (process backend), an image the Docker host lacks (docker); and a
//! start that fails past those checks reads as a sentence in the rollout's
//! output, never as a Rust debug form.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::docker_util::docker_ready;
use crate::util::{Agent, On, assert_contains};

/// `rollout run --spec spec` is refused: exit 1, `message` on stderr,
/// nothing recorded or started for `service`.
fn refused(agent: &Agent, spec: &Path, service: &str, message: &str) {
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(&run.stderr, message);
    assert_contains(&run.stderr, "nothing was changed");
    let history = agent.rollout(&["history", service]);
    assert_ne!(history.code, 0, "{history:#?}");
    assert_contains(&history.stderr, &format!("no service {service}"));
    assert!(agent.store().revisions(service).unwrap().is_empty());
    assert!(agent.handles(service).is_empty(), "an instance was started");
}

#[test]
fn a_missing_command_is_refused_before_any_revision() {
    let agent = Agent::start();
    let missing = agent.home.path().join("target/release/demo-app");
    let spec = agent.command_spec("web", &missing, "VERSION = \"v1\"");
    let message = format!(
        "{}: revision.command: {} does not exist",
        spec.display(),
        missing.display()
    );
    refused(&agent, &spec, "web", &message);
}

#[test]
fn a_missing_image_is_refused_naming_the_spec_and_the_field() {
    if !docker_ready() {
        return;
    }
    let agent = Agent::start_on(On::Docker);
    let spec = agent.home.path().join("web.toml");
    let image = "rollout-e2e-absent:v1";
    let text = format!(
        "name = \"web\"\nreplicas = 1\nbackend = \"docker\"\n[revision]\nimage = \"{image}\"\n"
    );
    std::fs::write(&spec, text).unwrap();
    let message = format!(
        "{}: revision.image: image {image} is not on the Docker host",
        spec.display()
    );
    refused(&agent, &spec, "web", &message);
}

#[test]
fn a_start_that_fails_reads_as_a_sentence() {
    let agent = Agent::start();
    // An executable file whose interpreter does not exist: it passes the
    // preflight, and every start fails with ENOENT.
    let program = agent.home.path().join("web");
    std::fs::write(&program, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = agent.command_spec("web", &program, "VERSION = \"v1\"");
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{run:#?}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert_contains(&said, "cannot start web-r1-1");
    for debug in ["EffectError", "Backend(\"", "Some(", "\\\""] {
        assert!(!said.contains(debug), "{debug} in:\n{said}");
    }
}
