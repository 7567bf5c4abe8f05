//! The application proper: what each endpoint answers, readiness, and the
//! per-request faults (error rate, latency).

use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::faults::ErrorRate;
use crate::http::{Response, Route, Status};
use crate::log;

/// Shared state of the server; bodies are built once, at start.
#[derive(Debug)]
pub struct App {
    version: String,
    root_body: String,
    version_body: String,
    started: Instant,
    /// `None` when the app never becomes ready.
    ready_after: Option<Duration>,
    /// When `/healthz` starts failing for good, if ever.
    unhealthy_after: Option<Duration>,
    errors: ErrorRate,
    latency: Duration,
    /// Log each request to `/` as it arrives (`LOG_REQUESTS`).
    log_requests: bool,
}

impl App {
    /// Builds the app from its configuration; `started` is the process start.
    pub fn new(config: &Config, started: Instant) -> Self {
        Self {
            version: config.version.clone(),
            root_body: format!("{} {}\n", config.version, config.instance),
            version_body: format!("{}\n", config.version),
            started,
            ready_after: (!config.never_ready).then_some(config.ready_after),
            unhealthy_after: config.unhealthy_after,
            errors: ErrorRate::new(config.error_rate),
            latency: config.latency,
            log_requests: config.log_requests,
        }
    }

    /// The version, for the `X-Version` header.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Answers a request to `route`, sleeping first if `/` has latency.
    pub fn respond(&self, route: Route) -> Response<'_> {
        match route {
            Route::Root => self.root(),
            Route::Version => ok(&self.version_body),
            Route::Healthz => self.health(),
            Route::Unknown => Response {
                status: Status::NotFound,
                body: "not found\n",
            },
        }
    }

    /// `/`: version and instance, subject to latency and the error rate.
    fn root(&self) -> Response<'_> {
        if self.log_requests {
            log::info(format_args!(
                "request for / (LOG_REQUESTS), answered in {} ms",
                self.latency.as_millis()
            ));
        }
        if !self.latency.is_zero() {
            thread::sleep(self.latency);
        }
        if self.errors.next_fails() {
            Response {
                status: Status::InternalServerError,
                body: "error\n",
            }
        } else {
            ok(&self.root_body)
        }
    }

    /// `/healthz`: 200 once ready, 503 before (and after `UNHEALTHY_AFTER_MS`).
    fn health(&self) -> Response<'_> {
        if self.is_unhealthy() {
            Response {
                status: Status::ServiceUnavailable,
                body: "unhealthy\n",
            }
        } else if self.is_ready() {
            ok("ok\n")
        } else {
            Response {
                status: Status::ServiceUnavailable,
                body: "starting\n",
            }
        }
    }

    /// Whether the app has turned unhealthy for good (`UNHEALTHY_AFTER_MS`).
    fn is_unhealthy(&self) -> bool {
        self.unhealthy_after
            .is_some_and(|after| self.started.elapsed() >= after)
    }

    /// Whether the readiness delay has passed (never, with `NEVER_READY`).
    fn is_ready(&self) -> bool {
        self.ready_after
            .is_some_and(|delay| self.started.elapsed() >= delay)
    }
}

/// A 200 response with `body`.
fn ok(body: &str) -> Response<'_> {
    Response {
        status: Status::Ok,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn app(vars: &[(&str, &str)]) -> App {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .chain(&[("PORT", "1")])
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
        .unwrap();
        App::new(&config, Instant::now())
    }

    #[test]
    fn endpoints_answer_version_and_instance() {
        let app = app(&[("VERSION", "v2"), ("ROLLOUT_INSTANCE", "web-1")]);
        assert_eq!(app.respond(Route::Root), ok("v2 web-1\n"));
        assert_eq!(app.respond(Route::Version), ok("v2\n"));
        assert_eq!(app.respond(Route::Healthz), ok("ok\n"));
        assert_eq!(app.respond(Route::Unknown).status, Status::NotFound);
        assert_eq!(app.version(), "v2");
    }

    #[test]
    fn readiness_waits_for_its_delay() {
        let waiting = app(&[("READY_AFTER_MS", "60000")]);
        assert_eq!(
            waiting.respond(Route::Healthz).status,
            Status::ServiceUnavailable
        );
        let never = app(&[("NEVER_READY", "1")]);
        assert_eq!(never.respond(Route::Healthz).body, "starting\n");
    }

    #[test]
    fn health_fails_for_good_after_unhealthy_after() {
        let healthy = app(&[("UNHEALTHY_AFTER_MS", "60000")]);
        assert_eq!(healthy.respond(Route::Healthz), ok("ok\n"));
        let failed = app(&[("UNHEALTHY_AFTER_MS", "0")]);
        let answer = failed.respond(Route::Healthz);
        assert_eq!(answer.status, Status::ServiceUnavailable);
        assert_eq!(answer.body, "unhealthy\n");
        assert_eq!(failed.respond(Route::Root).status, Status::Ok);
    }

    #[test]
    fn error_rate_applies_to_root_only() {
        let app = app(&[("ERROR_RATE", "1")]);
        assert_eq!(app.respond(Route::Version).status, Status::Ok);
        assert_eq!(app.respond(Route::Root).body, "error\n");
    }
}
