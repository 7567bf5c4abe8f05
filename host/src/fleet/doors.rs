//! The fleet's membership in its front door (and preview listener): the
//! doors learn every change of the ready set, and stops drain through
//! them.

use std::sync::{Arc, Mutex};

use super::Fleet;
use crate::door::FrontDoor;
use crate::model::InstanceState;
use crate::proxy::Member;

impl Fleet {
    /// Route the service's traffic through `door`: it learns every change
    /// of the ready set, and stops drain through it.
    pub fn attach(&self, door: Arc<FrontDoor>) {
        *locked(&self.front_door) = Some(door);
        self.publish();
    }

    /// The front door of the fleet, if any.
    pub fn front_door(&self) -> Option<Arc<FrontDoor>> {
        locked(&self.front_door).clone()
    }

    /// Route a preview listener's traffic through `door` too.
    pub fn attach_preview(&self, door: Arc<FrontDoor>) {
        *locked(&self.preview) = Some(door);
        self.publish();
    }

    /// The preview listener, if any.
    pub fn preview(&self) -> Option<Arc<FrontDoor>> {
        locked(&self.preview).clone()
    }

    /// Every door in front of the fleet.
    pub(super) fn doors(&self) -> Vec<Arc<FrontDoor>> {
        self.front_door()
            .into_iter()
            .chain(self.preview())
            .collect()
    }

    /// Tell the doors which instances are ready. Under the fleet's lock,
    /// so an older ready set can never overwrite a newer one (lock order:
    /// fleet, then door; the door never calls the fleet). Not until the
    /// fleet knows what an earlier agent left and has probed it: a door
    /// taken over from that agent keeps serving what it was told.
    pub(super) fn publish(&self) {
        let doors = self.doors();
        if doors.is_empty() || !self.settled() {
            return;
        }
        let inner = self.lock();
        if !inner.probed_all() {
            return;
        }
        let members: Vec<Member> = inner
            .instances
            .values()
            .filter(|p| p.state == InstanceState::Ready)
            .map(|p| Member {
                id: p.row.id.clone(),
                revision: p.row.revision.clone(),
                addr: p.addr(),
            })
            .collect();
        for door in doors {
            door.set_members(&members);
        }
    }
}

/// The door in `slot`, even if a panic poisoned its lock.
fn locked(
    slot: &Mutex<Option<Arc<FrontDoor>>>,
) -> std::sync::MutexGuard<'_, Option<Arc<FrontDoor>>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}
