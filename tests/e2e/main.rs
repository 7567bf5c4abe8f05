//! End-to-end tests: drive the real `rollout` binary.

/// The shared backend suite: for each test body `fn name(agent: Agent)` of
/// the module, a `#[test]` on each backend, `process::name`,
/// `docker::name` and `swarm::name`, so every backend passes the same
/// tests.
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod process {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::util::Agent::start_on(crate::util::On::Process));
                }
            )*
        }
        mod docker {
            $(
                #[test]
                fn $name() {
                    if crate::docker_util::docker_ready() {
                        super::$name(crate::util::Agent::start_on(crate::util::On::Docker));
                    }
                }
            )*
        }
        mod swarm {
            $(
                #[test]
                fn $name() {
                    if crate::docker_util::swarm_ready() {
                        super::$name(crate::util::Agent::start_on(crate::util::On::Swarm));
                    }
                }
            )*
        }
    };
}

mod abuse;
mod agent;
mod api;
mod docker;
mod docker_util;
mod docs;
mod doors;
mod framing;
mod heal;
mod hostile;
mod preflight;
mod proxy;
mod python;
mod recovery;
mod resume;
mod runners;
mod scenarios;
mod sdk;
mod swarm;
mod util;
