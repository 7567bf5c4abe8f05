//! What only the swarm backend does: instances are one-replica Swarm
//! services found again by label. The rest of its suite is shared
//! (`on_each_backend!`, and the container-backend tests of `docker.rs`).

use crate::docker::{reads_logs_and_removes_strays, refuses_a_missing_image};
use crate::docker_util::{DEMO_IMAGE, docker, swarm_ready};
use crate::proxy::free_port;
use crate::util::{Agent, On};

#[test]
fn a_missing_image_is_refused_before_any_change() {
    if swarm_ready() {
        refuses_a_missing_image(Agent::start_on(On::Swarm));
    }
}

#[test]
fn task_logs_are_read_and_unrecorded_services_removed_on_restart() {
    if !swarm_ready() {
        return;
    }
    reads_logs_and_removes_strays(Agent::start_on(On::Swarm), |labels| {
        let port = format!("PORT={}", free_port());
        let image = format!("{DEMO_IMAGE}:v1");
        let mut args = vec![
            "service",
            "create",
            "-d",
            "-q",
            "--network",
            "host",
            "--restart-condition",
            "none",
            "--env",
            &port,
        ];
        for label in labels {
            args.extend(["--label", label]);
        }
        args.push(&image);
        docker(&args)
    });
}
