//! A service's front door (and preview listener): the proxies on its ports,
//! opened or moved when its spec's port or traffic settings change.

use std::sync::Arc;

use super::{AgentError, Result};
use crate::fleet::Fleet;
use crate::proxy::{Door, Proxy};
use crate::spec::ServiceSpec;

/// Put a front door (proxy) on `port` in front of the service's fleet, if
/// its spec has a port and the fleet has none there yet.
pub(super) fn front_door(fleet: &Fleet, spec: &ServiceSpec) -> Result<()> {
    let door = spec.traffic.door();
    let preview = Door {
        sticky: None,
        ..door.clone()
    };
    if let Some(proxy) = open_door(spec, fleet.front_door(), spec.port, door)? {
        fleet.attach(proxy);
    }
    let port = spec.traffic.preview_port;
    if let Some(proxy) = open_door(spec, fleet.preview(), port, preview)? {
        fleet.attach_preview(proxy);
    }
    Ok(())
}

/// A proxy for `spec` on `port`, unless `current` already is one; the new
/// door is open before the old one closes.
fn open_door(
    spec: &ServiceSpec,
    current: Option<Arc<Proxy>>,
    port: Option<u16>,
    door: Door,
) -> Result<Option<Arc<Proxy>>> {
    let Some(port) = port else {
        return Ok(None);
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if let Some(p) = &current
        && p.local_addr() == addr
        && *p.door() == door
    {
        return Ok(None);
    }
    if current.as_ref().is_some_and(|p| p.local_addr() == addr) {
        // Same port, new stickiness or timeouts: the listener must move
        // over.
        current.iter().for_each(|p| p.close());
    }
    let proxy = Proxy::bind(&spec.name, addr, door).map_err(|source| AgentError::FrontDoor {
        service: spec.name.clone(),
        addr,
        source,
    })?;
    if let Some(old) = current.filter(|p| p.local_addr() != addr) {
        old.close();
    }
    Ok(Some(proxy))
}
