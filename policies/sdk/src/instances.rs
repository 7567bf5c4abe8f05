//! Pick instances out of a fleet listing: which are alive, which belong to
//! a revision. Shared by [`crate::strategy`], [`crate::shift`] and
//! [`crate::restore`].

use crate::{Instance, InstanceId, InstanceState};

/// True while an instance runs or may still run (starting, ready, unhealthy).
pub fn alive(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Starting | InstanceState::Ready | InstanceState::Unhealthy
    )
}

/// Ids of the instances, of any revision, that serve nothing but still
/// run or are listed: starting, unhealthy, draining or failed. Stopping
/// them never lowers the ready count.
pub fn not_ready(fleet: &[Instance]) -> Vec<InstanceId> {
    fleet
        .iter()
        .filter(|i| !matches!(i.state, InstanceState::Ready | InstanceState::Stopped))
        .map(|i| i.id.clone())
        .collect()
}

/// Ids of the instances of `revision` whose state matches `keep`.
pub fn ids_of(
    fleet: &[Instance],
    revision: &str,
    keep: impl Fn(InstanceState) -> bool,
) -> Vec<InstanceId> {
    fleet
        .iter()
        .filter(|i| i.revision == revision && keep(i.state))
        .map(|i| i.id.clone())
        .collect()
}
