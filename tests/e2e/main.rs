//! End-to-end tests: drive the real `rollout` binary.

mod hostile;
mod python;
mod scenarios;
mod sdk;
mod util;
