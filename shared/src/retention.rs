//! Every retention period the privacy policy promises, in one place (policy §6). Changing a period
//! means changing it here; template.yaml's TTL attributes only say *which* attribute expires.

use crate::timestamp::{Expiry, Timestamp};
use time::Duration;

/// Messages, statuses and contact profiles: at most 24 months from the event; a tenant may choose less.
pub const MAX_MESSAGE_RETENTION_MONTHS: u8 = 24;
/// Technical logs (CloudWatch log groups in template.yaml carry the same number).
pub const LOG_RETENTION_DAYS: u16 = 90;
/// Raw envelopes that could not be processed hold personal data: keep them briefly.
pub const QUARANTINE_RETENTION_DAYS: i64 = 30;
/// Audit events, unless configured otherwise.
pub const DEFAULT_AUDIT_RETENTION_MONTHS: u32 = 24;
/// An audit chain's daily checkpoints outlive the events they vouch for by this much, so the
/// oldest retained events can still be checked against a checkpoint after their neighbours expire.
pub const AUDIT_CHECKPOINT_EXTRA_MONTHS: u32 = 12;
/// Closed privacy requests and their receipts: the limitation period, unless configured otherwise.
pub const DEFAULT_CLOSED_REQUEST_RETENTION_MONTHS: u32 = 60;

/// How long after a tenant is offboarded its conversations are erased, unless the offboarding
/// names another notice period (at most `MAX_OFFBOARDING_NOTICE_DAYS`).
pub const DEFAULT_OFFBOARDING_NOTICE_DAYS: i64 = 30;
pub const MAX_OFFBOARDING_NOTICE_DAYS: i64 = 90;

/// How long after an item's expiry the cleanup leaves it to DynamoDB's TTL, which deletes for
/// free, before deleting it itself (one write unit per item).
pub const SWEEP_GRACE: Duration = Duration::hours(48);

/// The newest event time of a tenant's conversation items the retention sweep deletes now:
/// past retention by more than the grace period, or, when the retention was lowered at
/// `lowered_at`, anything past the new retention that was stored before then (its stored expiry
/// is the old one, so TTL would keep it too long). No grace for those.
pub fn conversation_sweep_cutoff(
    now: Timestamp,
    retention: RetentionMonths,
    lowered_at: Option<Timestamp>,
) -> Timestamp {
    let backstop = retention.floor(now.plus(-SWEEP_GRACE));
    match lowered_at {
        Some(lowered) => backstop.max(lowered.min(retention.floor(now))),
        None => backstop,
    }
}

/// A tenant's chosen message retention, bounded by the policy's maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct RetentionMonths(u8);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("retention_months must be between 1 and {MAX_MESSAGE_RETENTION_MONTHS}, got {0}")]
pub struct RetentionError(pub u8);

impl RetentionMonths {
    pub const MAX: Self = Self(MAX_MESSAGE_RETENTION_MONTHS);

    pub fn new(months: u8) -> Result<Self, RetentionError> {
        if (1..=MAX_MESSAGE_RETENTION_MONTHS).contains(&months) {
            Ok(Self(months))
        } else {
            Err(RetentionError(months))
        }
    }

    pub fn months(self) -> u8 {
        self.0
    }

    /// The newest event time past this retention at `now`: reads hide what is at or before it,
    /// whatever expiry it was stored with, so a lowered retention applies at once.
    pub fn floor(self, now: Timestamp) -> Timestamp {
        now.minus_months(u32::from(self.0))
    }

    /// Expiry of anything derived from an event at `event_time`.
    pub fn expiry_for(self, event_time: Timestamp) -> Expiry {
        Expiry::at(event_time.plus_months(u32::from(self.0)))
    }

    /// Expiry of a contact's profile and identifier links after an event at `event_time`: the
    /// message's expiry rounded up to the next whole step, so the contact outlives its newest
    /// message while its profile is rewritten at most once a step, not on every message.
    pub fn contact_expiry_for(self, event_time: Timestamp) -> Expiry {
        let exact = self.expiry_for(event_time).epoch_seconds();
        let step = CONTACT_EXPIRY_STEP.whole_seconds();
        Expiry::from_epoch_seconds(exact.div_euclid(step) * step + if exact.rem_euclid(step) == 0 { 0 } else { step })
    }
}

/// How far a contact's expiry moves at a time (see `RetentionMonths::contact_expiry_for`).
pub const CONTACT_EXPIRY_STEP: Duration = Duration::days(1);

impl Default for RetentionMonths {
    fn default() -> Self {
        Self::MAX
    }
}

impl TryFrom<u8> for RetentionMonths {
    type Error = RetentionError;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<RetentionMonths> for u8 {
    fn from(r: RetentionMonths) -> u8 {
        r.0
    }
}

pub fn quarantine_expiry(received_at: Timestamp) -> Expiry {
    Expiry::at(received_at.plus(Duration::days(QUARANTINE_RETENTION_DAYS)))
}

pub fn audit_expiry(at: Timestamp, months: u32) -> Expiry {
    Expiry::at(at.plus_months(months))
}

/// When a checkpoint of a chain whose last event expires at `event_expires` may go.
pub fn audit_checkpoint_expiry(event_expires: Expiry) -> Expiry {
    Expiry::at(event_expires.as_timestamp().plus_months(AUDIT_CHECKPOINT_EXTRA_MONTHS))
}

pub fn closed_request_expiry(closed_at: Timestamp, months: u32) -> Expiry {
    Expiry::at(closed_at.plus_months(months))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_bounded_by_the_policy() {
        assert_eq!(RetentionMonths::new(0), Err(RetentionError(0)));
        assert_eq!(RetentionMonths::new(25), Err(RetentionError(25)));
        assert_eq!(RetentionMonths::new(24).map(|r| r.months()), Ok(24));
        assert!(serde_json::from_str::<RetentionMonths>("36").is_err());
    }

    #[test]
    fn message_expiry_is_calendar_months_after_the_event() {
        let event = Timestamp::parse_rfc3339("2026-03-15T12:00:00Z").expect("valid");
        let exp = RetentionMonths::MAX.expiry_for(event);
        assert_eq!(exp.as_timestamp().to_string(), "2028-03-15T12:00:00Z");
    }

    #[test]
    fn the_sweep_leaves_the_grace_period_to_ttl_unless_retention_was_lowered() {
        let now = Timestamp::parse_rfc3339("2028-06-10T00:00:00Z").expect("valid");
        let r24 = RetentionMonths::MAX;
        // Expired more than 48 hours ago: 24 months and 2 days before now.
        assert_eq!(
            conversation_sweep_cutoff(now, r24, None).to_string(),
            "2026-06-08T00:00:00Z"
        );
        // Lowered to 6 months yesterday: everything past the 6 months goes now, no grace.
        let r6 = RetentionMonths::new(6).expect("valid");
        let yesterday = now.plus(-Duration::days(1));
        assert_eq!(
            conversation_sweep_cutoff(now, r6, Some(yesterday)).to_string(),
            "2027-12-10T00:00:00Z"
        );
        // Lowered 10 hours after an event: what came after the change was stored with the new
        // expiry, which TTL honours, so the grace applies to it again.
        let lowered = Timestamp::parse_rfc3339("2027-12-08T10:00:00Z").expect("valid");
        assert_eq!(conversation_sweep_cutoff(now, r6, Some(lowered)), lowered);
        let long_ago = Timestamp::parse_rfc3339("2020-01-01T00:00:00Z").expect("valid");
        assert_eq!(
            conversation_sweep_cutoff(now, r6, Some(long_ago)),
            conversation_sweep_cutoff(now, r6, None)
        );
    }

    #[test]
    fn a_contact_outlives_its_message_by_less_than_a_step() {
        let r = RetentionMonths::MAX;
        let event = Timestamp::parse_rfc3339("2026-03-15T12:00:00Z").expect("valid");
        let contact = r.contact_expiry_for(event);
        assert_eq!(contact.as_timestamp().to_string(), "2028-03-16T00:00:00Z");
        // Every message of the same day gives the same contact expiry: no rewrite.
        let evening = Timestamp::parse_rfc3339("2026-03-15T23:59:59Z").expect("valid");
        assert_eq!(r.contact_expiry_for(evening), contact);
        // An expiry already on a step boundary stays there.
        let midnight = Timestamp::parse_rfc3339("2026-03-15T00:00:00Z").expect("valid");
        assert_eq!(r.contact_expiry_for(midnight), r.expiry_for(midnight));
    }
}
