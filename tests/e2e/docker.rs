//! The Docker harness itself: the demo-app images and the cleanup of an
//! agent's containers, checked with the docker CLI alone.

use rollout::spec::{BackendKind, ServiceSpec};

use crate::docker_util::{DEMO_IMAGE, V3_ERROR_AFTER_MS, demo_images, docker, docker_ready};
use crate::proxy::free_port;
use crate::util::{Agent, On, assert_contains, http_get};

/// Removes the container when dropped, even if the test fails.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

/// `docker run -d --network host` of `image` with `PORT=port` and
/// `labels`, removed when the guard drops.
fn run_container(image: &str, port: u16, labels: &[String]) -> Container {
    let port = format!("PORT={port}");
    let mut args = vec!["run", "-d", "--network", "host", "-e", &port];
    for label in labels {
        args.extend(["--label", label]);
    }
    args.push(image);
    Container(docker(&args))
}

/// GET `http://addr/path`, retried for up to 5 s while the app starts.
fn get_when_up(addr: &str, path: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    http_get(addr, path)
}

#[test]
fn a_container_on_this_machine_is_signalled_through_its_process() {
    use rollout::backend::docker::process::Direct;
    if !docker_ready() {
        return;
    }
    let container = run_container(&format!("{}:v1", demo_images()), free_port(), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().unwrap();
        let direct = Direct::default();
        assert!(
            !direct
                .signal(&docker, "no-such-container", libc::SIGKILL)
                .await,
            "a container that does not exist is left to the API"
        );
        assert_eq!(direct.end(None), None, "nothing signalled yet");
        // demo-app is PID 1 here, without a handler: from outside its PID
        // namespace only SIGKILL reaches it.
        assert!(
            direct.signal(&docker, &container.0, libc::SIGKILL).await,
            "the container's process was not reached through a pidfd"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while direct.end(None).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "its exit was not seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let watched = Some("killed by signal 9 (SIGKILL)".to_string());
        assert_eq!(
            direct.end(watched.clone()),
            watched,
            "the wait endpoint's word wins"
        );
    });
    // Docker sees the same end.
    assert_eq!(docker(&["wait", &container.0]), "137");
}

#[test]
fn images_serve_their_version() {
    if !docker_ready() {
        return;
    }
    let repository = demo_images();
    let port = free_port();
    let container = run_container(&format!("{repository}:v1"), port, &[]);
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(get_when_up(&addr, "/healthz").trim(), "ok");
    assert_contains(&get_when_up(&addr, "/"), "v1");
    drop(container);

    // The other tags differ only in their environment.
    let env = |tag: &str| {
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            &format!("{repository}:{tag}"),
        ])
    };
    assert_contains(&env("v2"), "\"VERSION=v2\"");
    let v3 = env("v3");
    assert_contains(&v3, "\"VERSION=v3\"");
    assert_contains(&v3, &format!("\"ERROR_AFTER_MS={V3_ERROR_AFTER_MS}\""));
}

#[test]
fn a_docker_spec_parses_and_a_dropped_agent_removes_its_containers() {
    if !docker_ready() {
        return;
    }
    let agent = Agent::start();
    let spec = ServiceSpec::load(&agent.docker_spec("web", "v2", r#", ERROR_RATE = "0.5""#))
        .expect("the docker spec parses");
    assert_eq!(spec.backend, BackendKind::Docker);
    assert_eq!(spec.revision.image.as_deref(), Some("rollout-e2e-demo:v2"));
    assert_eq!(spec.revision.command, None);
    assert_eq!(
        spec.revision.env.get("ERROR_RATE").map(String::as_str),
        Some("0.5")
    );
    assert!(
        !spec.revision.env.contains_key("VERSION"),
        "the image sets it"
    );

    // One container of this agent's home, one of another home.
    let home = agent.home.path().to_path_buf();
    let image = format!("{DEMO_IMAGE}:v1");
    let ours = run_container(
        &image,
        free_port(),
        &[format!("rollout.home={}", home.display())],
    );
    let theirs = run_container(&image, free_port(), &["rollout.home=/elsewhere".into()]);
    drop(agent);
    let left = |id: &str| docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")]);
    assert_eq!(left(&ours.0), "", "the agent's container survived its drop");
    assert_eq!(
        left(&theirs.0),
        theirs.0,
        "another home's container was removed"
    );
}

#[test]
fn a_missing_image_is_refused_before_any_change() {
    if docker_ready() {
        refuses_a_missing_image(Agent::start_on(On::Docker));
    }
}

/// On a container backend, a revision whose image the Docker host lacks
/// is refused, and nothing is recorded or started.
pub fn refuses_a_missing_image(agent: Agent) {
    let spec = agent.spec("web", "no-such-tag", "");
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(
        &run.stderr,
        &format!("image {DEMO_IMAGE}:no-such-tag is not on the Docker host"),
    );
    assert_contains(&agent.rollout(&["status"]).stdout, "no services yet");
    assert!(agent.handles("web").is_empty());
}

#[test]
fn a_service_keeps_the_backend_it_was_deployed_on() {
    if !docker_ready() {
        return;
    }
    let mut agent = Agent::start_on(On::Process);
    let on_processes = agent.spec("web", "v1", "");
    assert_eq!(
        agent
            .rollout(&["run", "--spec", on_processes.to_str().unwrap()])
            .code,
        0
    );
    agent.on = On::Docker;
    let in_containers = agent.spec("web", "v2", "");
    let run = agent.rollout(&["run", "--spec", in_containers.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(&run.stderr, "web runs on the process backend");
    assert!(agent.handles("web").is_empty(), "a container was started");
}
