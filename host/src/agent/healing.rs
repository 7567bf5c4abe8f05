//! What the fleet manager did and holds back for one service (restarts,
//! the crash-loop backoff), as `rollout status` shows it; the loop itself
//! is [`super::heal`].

/// The delay after the first replacement of a crash loop.
const FIRST_BACKOFF_MS: u64 = 1_000;
/// The longest delay between two replacements.
const MAX_BACKOFF_MS: u64 = 300_000;
/// What the fleet manager did and will do for one service, as `rollout
/// status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Healing {
    /// Instances replaced since the service was first deployed.
    pub restarts: u64,
    /// Why the last one was replaced, if one was.
    pub last_reason: Option<String>,
    /// When, in Unix ms.
    pub last_ms: Option<u64>,
    /// Replacements since the backoff last reset.
    pub failures: u32,
    /// No replacement starts before this Unix ms (0: none is held back).
    pub next_attempt_ms: u64,
    /// Replacements waiting for that time (a crash loop backing off).
    #[serde(default)]
    pub held_back: u32,
}

impl Healing {
    /// The delay before the replacement after `failures` earlier ones.
    pub(super) fn backoff_ms(failures: u32) -> u64 {
        match failures {
            0 => 0,
            n => FIRST_BACKOFF_MS
                .saturating_mul(1u64 << (n - 1).min(20))
                .min(MAX_BACKOFF_MS),
        }
    }

    /// Whether a replacement is held back at `now_ms`.
    pub fn backing_off(&self, now_ms: u64) -> bool {
        self.next_attempt_ms > now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::Healing;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(Healing::backoff_ms).collect();
        assert_eq!(
            delays[..6],
            [0, 1_000, 2_000, 4_000, 8_000, 16_000],
            "{delays:?}"
        );
        assert_eq!(Healing::backoff_ms(10), 300_000);
        assert_eq!(Healing::backoff_ms(u32::MAX), 300_000);
    }
}
