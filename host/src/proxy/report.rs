//! What a front door reports: a revision's traffic over a window (for the
//! policies' `traffic.stats`) and the Prometheus text of its revisions and
//! connections (for the agent's `/metrics`).

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use super::admission::Admission;
use super::members::Members;
use crate::model::{RevisionId, RevisionStats};

impl Members {
    /// Traffic of `revision` over the last `window`.
    pub(super) fn stats(&self, revision: &str, window: Duration) -> RevisionStats {
        let metrics = self.state().metrics.get(revision).cloned();
        let s = metrics.map(|m| m.summary(window)).unwrap_or_default();
        RevisionStats {
            revision: revision.to_string(),
            requests: s.requests,
            errors: s.errors,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        }
    }

    /// Prometheus text for `service`, whose door on `port` admits its
    /// connections by `admission`, appended to `out`.
    pub(super) fn prometheus(
        &self,
        service: &str,
        port: u16,
        admission: &Admission,
        out: &mut String,
    ) {
        let (metrics, weights, ready) = {
            let state = self.state();
            let mut ready: HashMap<RevisionId, usize> = HashMap::new();
            for u in state.upstreams.values() {
                *ready.entry(u.revision.clone()).or_default() += 1;
            }
            (state.metrics.clone(), state.weights.clone(), ready)
        };
        let mut revisions: Vec<_> = metrics.keys().cloned().collect();
        revisions.sort();
        for r in revisions {
            let labels = format!("service=\"{service}\",revision=\"{r}\"");
            let m = &metrics[&r];
            let t = m.totals();
            let s = m.summary(Duration::from_secs(60));
            let weight = match &weights {
                Some(w) => w.iter().filter(|(x, _)| *x == r).map(|(_, w)| *w).sum(),
                None => ready.get(&r).copied().unwrap_or(0) as u32,
            };
            let _ = writeln!(out, "rollout_requests_total{{{labels}}} {}", t.requests);
            let _ = writeln!(out, "rollout_request_errors_total{{{labels}}} {}", t.errors);
            let _ = writeln!(
                out,
                "rollout_upstream_connect_errors_total{{{labels}}} {}",
                t.connect_errors
            );
            for (q, us) in [("0.5", s.p50_us), ("0.9", s.p90_us), ("0.99", s.p99_us)] {
                let _ = writeln!(
                    out,
                    "rollout_request_latency_seconds{{{labels},quantile=\"{q}\"}} {}",
                    us as f64 / 1e6
                );
            }
            let ready = ready.get(&r).copied().unwrap_or(0);
            let _ = writeln!(out, "rollout_ready_instances{{{labels}}} {ready}");
            let _ = writeln!(out, "rollout_traffic_weight{{{labels}}} {weight}");
        }
        let counts = admission.counts();
        let labels = format!("service=\"{service}\",port=\"{port}\"");
        let _ = writeln!(
            out,
            "rollout_front_door_connections{{{labels}}} {}",
            counts.held
        );
        let _ = writeln!(
            out,
            "rollout_front_door_connections_refused_total{{{labels}}} {}",
            counts.refused
        );
        let _ = writeln!(
            out,
            "rollout_front_door_connections_evicted_total{{{labels}}} {}",
            counts.evicted
        );
    }
}
