//! The one clock port. Retention, deadlines and queue visibility all read time from here, so tests
//! and the local stack can move time instead of waiting for it.

use crate::timestamp::Timestamp;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::{Duration, OffsetDateTime};

pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Timestamp;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        OffsetDateTime::now_utc().into()
    }
}

/// A clock that stands still until told otherwise. Clones share the same time.
#[derive(Clone, Debug)]
pub struct SettableClock(Arc<AtomicI64>);

impl SettableClock {
    pub fn at(t: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(t.unix_millis())))
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.unix_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.whole_milliseconds() as i64, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_clock_clones_share_time() {
        let c = SettableClock::at(Timestamp::from_unix_seconds(100));
        let other = c.clone();
        c.advance(Duration::seconds(5));
        assert_eq!(other.now(), Timestamp::from_unix_seconds(105));
        other.set(Timestamp::from_unix_seconds(7));
        assert_eq!(c.now().unix_seconds(), 7);
    }
}
