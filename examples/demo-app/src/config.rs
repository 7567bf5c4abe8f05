//! Configuration from environment variables.

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Everything the app reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `PORT` (required): TCP port to listen on.
    pub port: u16,
    /// `HOST`: address or name to listen on.
    pub host: String,
    /// `VERSION`: reported in bodies and the `X-Version` header.
    pub version: String,
    /// `ROLLOUT_INSTANCE`: instance id reported by `GET /`.
    pub instance: String,
    /// `CRASH_AT_START`: exit(1) before listening.
    pub crash_at_start: bool,
    /// `READY_AFTER_MS`: `/healthz` answers 503 until this long after start.
    pub ready_after: Duration,
    /// `NEVER_READY`: `/healthz` always answers 503.
    pub never_ready: bool,
    /// `UNHEALTHY_AFTER_MS`: `/healthz` answers 503 from this long after
    /// start on (a release that passes its first checks, then fails).
    pub unhealthy_after: Option<Duration>,
    /// `ERROR_AFTER_MS`: start logging a simulated failure every second.
    pub error_after: Option<Duration>,
    /// `EXIT_AFTER_MS`: exit(1) this long after start.
    pub exit_after: Option<Duration>,
    /// `ERROR_RATE`: share of `/` requests answered with 500, in `0..=1`.
    pub error_rate: f64,
    /// `LATENCY_MS`: delay before answering `/`.
    pub latency: Duration,
    /// `IGNORE_SIGTERM`: SIGTERM does nothing (only SIGKILL stops it).
    pub ignore_sigterm: bool,
    /// `LOG_REQUESTS`: log each request to `/` as it arrives.
    pub log_requests: bool,
}

/// A variable that is missing or holds a value the app cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set (or empty).
    Missing {
        /// Name of the variable.
        variable: &'static str,
        /// What the variable should hold.
        expected: &'static str,
    },
    /// A variable is set to an unusable value.
    Invalid {
        /// Name of the variable.
        variable: &'static str,
        /// The value found, lossily decoded.
        value: String,
        /// What the variable should hold.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { variable, expected } => {
                write!(f, "{variable} is required: set it to {expected}")
            }
            Self::Invalid {
                variable,
                value,
                expected,
            } => write!(f, "invalid {variable}={value:?}: expected {expected}"),
        }
    }
}

const PORT_EXPECTED: &str = "a TCP port (1-65535)";
const TOKEN_EXPECTED: &str = "visible ASCII characters without spaces";
const FLAG_EXPECTED: &str = "1 or 0 (true or false)";
const MILLIS_EXPECTED: &str = "a whole number of milliseconds";
const RATE_EXPECTED: &str = "a number between 0 and 1";

impl Config {
    /// Reads the configuration through `lookup` (`std::env::var_os` in the
    /// binary). Empty variables count as unset.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        Ok(Self {
            port: env.port()?,
            host: env.string("HOST")?.unwrap_or_else(|| "127.0.0.1".into()),
            version: env.token("VERSION")?.unwrap_or_else(|| "v1".into()),
            instance: env
                .token("ROLLOUT_INSTANCE")?
                .unwrap_or_else(|| "demo".into()),
            crash_at_start: env.flag("CRASH_AT_START")?,
            ready_after: env.millis("READY_AFTER_MS")?.unwrap_or_default(),
            never_ready: env.flag("NEVER_READY")?,
            unhealthy_after: env.millis("UNHEALTHY_AFTER_MS")?,
            error_after: env.millis("ERROR_AFTER_MS")?,
            exit_after: env.millis("EXIT_AFTER_MS")?,
            error_rate: env.rate("ERROR_RATE")?,
            latency: env.millis("LATENCY_MS")?.unwrap_or_default(),
            ignore_sigterm: env.flag("IGNORE_SIGTERM")?,
            log_requests: env.flag("LOG_REQUESTS")?,
        })
    }
}

/// Typed access to variables through a lookup function.
struct Env<F>(F);

impl<F: Fn(&'static str) -> Option<OsString>> Env<F> {
    /// The variable as UTF-8 text, `None` when unset or empty.
    fn string(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.0)(variable) {
            None => Ok(None),
            Some(raw) if raw.is_empty() => Ok(None),
            Some(raw) => raw
                .into_string()
                .map(Some)
                .map_err(|raw| ConfigError::Invalid {
                    variable,
                    value: raw.to_string_lossy().into_owned(),
                    expected: "UTF-8 text",
                }),
        }
    }

    /// The variable parsed as `T`, or an error saying what was expected.
    fn parsed<T: FromStr>(
        &self,
        variable: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.string(variable)? else {
            return Ok(None);
        };
        match value.parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(_) => Err(invalid(variable, value, expected)),
        }
    }

    /// `PORT`: required, 1-65535.
    fn port(&self) -> Result<u16, ConfigError> {
        match self.parsed::<u16>("PORT", PORT_EXPECTED)? {
            None => Err(ConfigError::Missing {
                variable: "PORT",
                expected: PORT_EXPECTED,
            }),
            Some(0) => Err(invalid("PORT", "0".into(), PORT_EXPECTED)),
            Some(port) => Ok(port),
        }
    }

    /// A value safe to put in a header: visible ASCII, no spaces.
    fn token(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        match self.string(variable)? {
            Some(value) if !value.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(invalid(variable, value, TOKEN_EXPECTED))
            }
            value => Ok(value),
        }
    }

    /// A boolean switch: `1`/`true`/`yes` or `0`/`false`/`no`; unset is off.
    fn flag(&self, variable: &'static str) -> Result<bool, ConfigError> {
        match self.string(variable)?.as_deref() {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("1" | "true" | "yes") => Ok(true),
            Some(other) => Err(invalid(variable, other.into(), FLAG_EXPECTED)),
        }
    }

    /// A duration given in whole milliseconds.
    fn millis(&self, variable: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .parsed::<u64>(variable, MILLIS_EXPECTED)?
            .map(Duration::from_millis))
    }

    /// A share between 0 and 1; unset is 0.
    fn rate(&self, variable: &'static str) -> Result<f64, ConfigError> {
        let rate = self.parsed::<f64>(variable, RATE_EXPECTED)?.unwrap_or(0.0);
        if (0.0..=1.0).contains(&rate) {
            Ok(rate)
        } else {
            Err(invalid(variable, rate.to_string(), RATE_EXPECTED))
        }
    }
}

/// Builds an [`ConfigError::Invalid`].
fn invalid(variable: &'static str, value: String, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        variable,
        value,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn defaults_apply_when_only_port_is_set() {
        let config = config(&[("PORT", "8080")]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.version, "v1");
        assert_eq!(config.instance, "demo");
        assert!(!config.crash_at_start && !config.never_ready && !config.ignore_sigterm);
        assert_eq!(config.ready_after, Duration::ZERO);
        assert_eq!((config.error_after, config.exit_after), (None, None));
        assert_eq!(config.unhealthy_after, None);
        assert_eq!(config.error_rate, 0.0);
    }

    #[test]
    fn faults_are_read() {
        let config = config(&[
            ("PORT", "1"),
            ("READY_AFTER_MS", "300"),
            ("ERROR_RATE", "0.2"),
            ("NEVER_READY", "true"),
            ("EXIT_AFTER_MS", "5"),
            ("UNHEALTHY_AFTER_MS", "1500"),
            ("IGNORE_SIGTERM", "1"),
            ("LOG_REQUESTS", "yes"),
        ])
        .unwrap();
        assert!(config.ignore_sigterm && config.log_requests);
        assert_eq!(config.ready_after, Duration::from_millis(300));
        assert_eq!(config.error_rate, 0.2);
        assert!(config.never_ready);
        assert_eq!(config.exit_after, Some(Duration::from_millis(5)));
        assert_eq!(config.unhealthy_after, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn missing_port_names_the_variable() {
        let error = config(&[]).unwrap_err().to_string();
        assert!(error.starts_with("PORT is required"), "{error}");
        assert!(config(&[("PORT", "")]).is_err());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (variable, value) in [
            ("PORT", "http"),
            ("PORT", "0"),
            ("PORT", "70000"),
            ("VERSION", "v 2"),
            ("CRASH_AT_START", "maybe"),
            ("READY_AFTER_MS", "-1"),
            ("UNHEALTHY_AFTER_MS", "1.5"),
            ("ERROR_RATE", "1.5"),
            ("ERROR_RATE", "NaN"),
        ] {
            let mut vars = vec![("PORT", "8080")];
            vars.retain(|(key, _)| *key != variable);
            vars.push((variable, value));
            let error = config(&vars).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid {variable}=")),
                "{error}"
            );
        }
    }
}
