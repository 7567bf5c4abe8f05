//! How the instances of one revision behave: their script, in milliseconds
//! since each started, and the traffic the revision serves.

/// How instances of one revision behave, in milliseconds since each started.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Ready this long after start; `None` never.
    pub ready_after_ms: Option<u64>,
    /// Crashes this long after start.
    pub fails_after_ms: Option<u64>,
    /// Fails its health check from this long after start (still running).
    pub unhealthy_after_ms: Option<u64>,
    /// Log lines, each written this long after start.
    pub logs: Vec<(u64, String)>,
    /// The first this many instances of the revision crash when they would
    /// become ready.
    pub crash_first: u32,
    /// Probability (0..=1) that a start crashes when it would become ready,
    /// drawn from the fleet's seeded generator.
    pub flaky: f64,
    /// Share of the revision's requests that fail (0..=1); default 0.
    pub error_rate: f64,
    /// The errors begin this long after the revision's first instance
    /// started; `None`: from the start.
    pub errors_after_ms: Option<u64>,
    /// Median latency of a request in ms; default 10.
    pub latency_ms: u64,
    /// 99th percentile latency in ms; default twice the median.
    pub p99_latency_ms: Option<u64>,
}

impl Default for Behaviour {
    /// Never ready, no failures, 10 ms median latency.
    fn default() -> Self {
        Behaviour {
            ready_after_ms: None,
            fails_after_ms: None,
            unhealthy_after_ms: None,
            logs: Vec::new(),
            crash_first: 0,
            flaky: 0.0,
            error_rate: 0.0,
            errors_after_ms: None,
            latency_ms: 10,
            p99_latency_ms: None,
        }
    }
}

impl Behaviour {
    /// Instances become ready `ms` after they start.
    pub fn ready_after(ms: u64) -> Self {
        Behaviour {
            ready_after_ms: Some(ms),
            ..Behaviour::default()
        }
    }

    /// Instances never become ready.
    pub fn never_ready() -> Self {
        Behaviour::default()
    }

    /// Instances crash `ms` after they start.
    pub fn failing_after(mut self, ms: u64) -> Self {
        self.fails_after_ms = Some(ms);
        self
    }

    /// Instances fail their health check from `ms` after they start (a
    /// release that breaks once it runs).
    pub fn unhealthy_after(mut self, ms: u64) -> Self {
        self.unhealthy_after_ms = Some(ms);
        self
    }

    /// The first `n` instances started crash when they would become ready.
    pub fn crashing_first(mut self, n: u32) -> Self {
        self.crash_first = n;
        self
    }

    /// Each start crashes with probability `p` when it would become ready.
    pub fn flaky(mut self, p: f64) -> Self {
        self.flaky = p;
        self
    }

    /// Instances write `line` `ms` after they start.
    pub fn logging(mut self, ms: u64, line: &str) -> Self {
        self.logs.push((ms, line.to_string()));
        self
    }

    /// A share `rate` (0..=1) of the revision's requests fail.
    pub fn erroring(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// The errors of [`Behaviour::erroring`] begin `ms` after the
    /// revision's first instance started (a revision that degrades).
    pub fn erroring_after(mut self, ms: u64) -> Self {
        self.errors_after_ms = Some(ms);
        self
    }

    /// Requests take `ms` (median; the p99 is twice that unless set).
    pub fn latency(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// The 99th percentile of request latency is `ms`.
    pub fn p99_latency(mut self, ms: u64) -> Self {
        self.p99_latency_ms = Some(ms);
        self
    }
}
