//! Exponential backoff with full jitter, for what the SDK's own retries do not cover (unprocessed
//! batch items, SQS batch entries that failed).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    attempt: u32,
    max_attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempt: 0,
            max_attempts: 8,
            base: Duration::from_millis(25),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The default delays, for at most `max_attempts` waits.
    pub fn with_attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            ..Self::default()
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Upper bound of the n-th delay: base * 2^n, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(16)).min(self.cap)
    }

    /// Sleeps before the next attempt; false once the attempts are used up.
    pub async fn wait(&mut self) -> bool {
        if self.attempt >= self.max_attempts {
            return false;
        }
        let ceiling = self.ceiling(self.attempt).as_millis() as u64;
        self.attempt += 1;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=ceiling))).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_then_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(25));
        assert_eq!(b.ceiling(3), Duration::from_millis(200));
        assert_eq!(b.ceiling(10), Duration::from_secs(2));
        assert_eq!(b.ceiling(40), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let mut b = Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            ..Backoff::default()
        };
        let mut waits = 0;
        while b.wait().await {
            waits += 1;
        }
        assert_eq!(waits, 8);
        assert_eq!(b.attempts(), 8);
    }
}
