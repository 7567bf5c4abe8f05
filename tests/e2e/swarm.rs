//! What only the swarm backend does: instances are one-replica Swarm
//! services found again by label. The rest of its suite is shared
//! (`on_each_backend!`, the runner contract of `runners/`, and the
//! container-backend tests of `docker.rs`).

use crate::docker::refuses_a_missing_image;
use crate::docker_util::swarm_ready;
use crate::util::{Agent, On};

#[test]
fn a_missing_image_is_refused_before_any_change() {
    if swarm_ready() {
        refuses_a_missing_image(Agent::start_on(On::Swarm));
    }
}
