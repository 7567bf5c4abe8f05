//! End-to-end tests: drive the real `rollout` binary.

mod agent;
mod hostile;
mod proxy;
mod python;
mod scenarios;
mod sdk;
mod util;
