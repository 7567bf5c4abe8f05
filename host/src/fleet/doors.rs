//! The fleet's membership in its front door (and preview listener): the
//! proxies learn every change of the ready set, and stops drain through
//! them.

use std::sync::{Arc, Mutex};

use super::Fleet;
use crate::model::InstanceState;
use crate::proxy::{Member, Proxy};

impl Fleet {
    /// Route the service's traffic through `proxy`: it learns every change
    /// of the ready set, and stops drain through it.
    pub fn attach(&self, proxy: Arc<Proxy>) {
        *locked(&self.front_door) = Some(proxy);
        self.publish();
    }

    /// The proxy in front of the fleet, if any.
    pub fn front_door(&self) -> Option<Arc<Proxy>> {
        locked(&self.front_door).clone()
    }

    /// Route a preview listener's traffic through `proxy` too.
    pub fn attach_preview(&self, proxy: Arc<Proxy>) {
        *locked(&self.preview) = Some(proxy);
        self.publish();
    }

    /// The preview listener, if any.
    pub fn preview(&self) -> Option<Arc<Proxy>> {
        locked(&self.preview).clone()
    }

    /// Every proxy in front of the fleet.
    pub(super) fn doors(&self) -> Vec<Arc<Proxy>> {
        self.front_door()
            .into_iter()
            .chain(self.preview())
            .collect()
    }

    /// Tell the proxies which instances are ready. Under the fleet's lock,
    /// so an older ready set can never overwrite a newer one (lock order:
    /// fleet, then proxy; the proxy never calls the fleet).
    pub(super) fn publish(&self) {
        let doors = self.doors();
        if doors.is_empty() {
            return;
        }
        let inner = self.lock();
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

/// The proxy in `slot`, even if a panic poisoned its lock.
fn locked(slot: &Mutex<Option<Arc<Proxy>>>) -> std::sync::MutexGuard<'_, Option<Arc<Proxy>>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}
