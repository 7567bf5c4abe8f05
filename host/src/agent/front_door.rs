//! A service's front door (and preview listener): the door processes on
//! its ports, taken over from an earlier agent, or started, or moved when
//! its spec's port or traffic settings change.

use std::sync::Arc;

use super::{AgentError, Result};
use crate::door::{Doors, FrontDoor, Opened};
use crate::fleet::Fleet;
use crate::proxy::Door;
use crate::spec::ServiceSpec;

/// Put a front door on `port` in front of the service's fleet, if its
/// spec has a port and the fleet has none there yet.
pub(super) fn front_door(doors: &Doors, fleet: &Fleet, spec: &ServiceSpec) -> Result<()> {
    let door = spec.traffic.door();
    let preview = Door {
        sticky: None,
        ..door.clone()
    };
    if let Some(front) = open_door(doors, spec, fleet.front_door(), spec.port, door)? {
        fleet.attach(front);
    }
    let port = spec.traffic.preview_port;
    if let Some(front) = open_door(doors, spec, fleet.preview(), port, preview)? {
        fleet.attach_preview(front);
    }
    Ok(())
}

/// A door for `spec` on `port`, unless `current` already is one; the new
/// door is open before the old one closes.
fn open_door(
    doors: &Doors,
    spec: &ServiceSpec,
    current: Option<Arc<FrontDoor>>,
    port: Option<u16>,
    door: Door,
) -> Result<Option<Arc<FrontDoor>>> {
    let Some(port) = port else {
        return Ok(None);
    };
    let wanted = Opened {
        service: spec.name.clone(),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        door,
    };
    if current.as_ref().is_some_and(|p| *p.opened() == wanted) {
        return Ok(None);
    }
    let addr = wanted.addr;
    if current.as_ref().is_some_and(|p| p.local_addr() == addr) {
        // Same port, new stickiness or timeouts: the listener must move
        // over.
        current.iter().for_each(|p| p.close());
    }
    let front = doors.open(wanted).map_err(|source| AgentError::FrontDoor {
        service: spec.name.clone(),
        addr,
        source,
    })?;
    if let Some(old) = current.filter(|p| p.local_addr() != addr) {
        old.close();
    }
    Ok(Some(front))
}
