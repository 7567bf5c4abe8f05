//! The agent's Prometheus metrics: per-revision traffic of every front
//! door, instances per revision and state, and instances the fleet
//! manager replaced.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Agent, Result};

impl Agent {
    /// Prometheus text of every service.
    pub fn prometheus(&self) -> Result<String> {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE rollout_requests_total counter");
        let _ = writeln!(out, "# TYPE rollout_request_errors_total counter");
        let _ = writeln!(out, "# TYPE rollout_upstream_connect_errors_total counter");
        let _ = writeln!(out, "# TYPE rollout_request_latency_seconds summary");
        let _ = writeln!(out, "# TYPE rollout_ready_instances gauge");
        let _ = writeln!(out, "# TYPE rollout_traffic_weight gauge");
        let _ = writeln!(out, "# TYPE rollout_instances gauge");
        let _ = writeln!(out, "# TYPE rollout_instance_restarts_total counter");
        for name in self.store.services()? {
            let service = self.service(&name)?;
            let restarts = service.healing().restarts;
            let _ = writeln!(
                out,
                "rollout_instance_restarts_total{{service=\"{name}\"}} {restarts}"
            );
            let fleet = service.fleet.clone();
            if let Some(proxy) = fleet.front_door() {
                proxy.prometheus(&mut out);
            }
            let mut counts: BTreeMap<(String, &str), usize> = BTreeMap::new();
            for i in fleet.list() {
                *counts.entry((i.revision, i.state.name())).or_default() += 1;
            }
            for ((revision, state), n) in counts {
                let _ = writeln!(
                    out,
                    "rollout_instances{{service=\"{name}\",revision=\"{revision}\",state=\"{state}\"}} {n}"
                );
            }
        }
        Ok(out)
    }
}
