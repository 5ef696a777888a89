//! Points in time and expiry. Meta sends seconds; DynamoDB TTL wants epoch seconds in a Number;
//! people and APIs want RFC 3339. These types keep the three from being mixed up.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::{Date, Duration, Month, OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// A UTC instant with millisecond precision, serialised as RFC 3339.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn from_unix_seconds(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn parse_rfc3339(text: &str) -> Result<Self, time::error::Parse> {
        Ok(OffsetDateTime::parse(text, &Rfc3339)?.into())
    }

    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.whole_milliseconds() as i64))
    }

    /// Calendar months, clamping the day (31 January + 1 month = 28/29 February), because the
    /// policy promises "24 months", not "730 days".
    pub fn plus_months(self, months: u32) -> Self {
        self.shift_months(months as i32)
    }

    /// The same calendar arithmetic backwards: the earliest event time still within `months` of
    /// this instant is `minus_months(months)` (later than it, to be exact).
    pub fn minus_months(self, months: u32) -> Self {
        self.shift_months(-(months as i32))
    }

    fn shift_months(self, months: i32) -> Self {
        let dt = self.to_datetime();
        let total = dt.year() * 12 + (dt.month() as i32 - 1) + months;
        let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
        let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::December);
        let last_day = time::util::days_in_month(month, year);
        let date = Date::from_calendar_date(year, month, dt.day().min(last_day)).unwrap_or(dt.date());
        date.with_time(dt.time()).assume_offset(UtcOffset::UTC).into()
    }

    /// The time an event counts at for expiry and ordering: Meta's time, but never later than our
    /// receipt of it plus `MAX_FUTURE_SKEW`. Meta's clock can be wrong and a payload can claim any
    /// year up to 2100; unclamped, such an event would keep data for decades and win every later
    /// ordering comparison. Meta's own time stays the event's data and identity (keys that must be
    /// identical on every redelivery), because a retried POST has a new receipt time.
    pub fn clamped_to_receipt(self, received_at: Timestamp) -> Self {
        self.min(received_at.plus(MAX_FUTURE_SKEW))
    }

    /// Sortable text for key suffixes: zero-padded milliseconds.
    pub fn sort_key(self) -> String {
        format!("{:015}", self.0.max(0))
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(dt: OffsetDateTime) -> Self {
        Self((dt.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// How far ahead of our clock an event's own time may be: clocks differ by seconds, not minutes.
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// When an item stops existing for readers. Stored as epoch seconds because that is the only form
/// DynamoDB TTL acts on; every read compares it with the clock, since TTL deletes lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expiry(i64);

impl Expiry {
    pub fn at(t: Timestamp) -> Self {
        // Round up: an item must never vanish before its promised time.
        Self((t.unix_millis() + 999).div_euclid(1000))
    }

    pub fn from_epoch_seconds(s: i64) -> Self {
        Self(s)
    }

    pub fn epoch_seconds(self) -> i64 {
        self.0
    }

    /// Expired once the clock has reached the expiry second.
    pub fn is_expired(self, now: Timestamp) -> bool {
        now.unix_seconds() >= self.0
    }

    pub fn as_timestamp(self) -> Timestamp {
        Timestamp::from_unix_seconds(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_clamp_to_the_end_of_shorter_months() {
        let t = Timestamp::parse_rfc3339("2025-01-31T10:00:00Z").expect("valid");
        assert_eq!(t.plus_months(1).to_string(), "2025-02-28T10:00:00Z");
        assert_eq!(t.plus_months(24).to_string(), "2027-01-31T10:00:00Z");
        assert_eq!(t.minus_months(2).to_string(), "2024-11-30T10:00:00Z");
        assert_eq!(t.plus_months(13).to_string(), "2026-02-28T10:00:00Z");
    }

    #[test]
    fn expiry_rounds_up_and_is_exact_at_the_second() {
        let t = Timestamp::from_unix_millis(10_500);
        let e = Expiry::at(t);
        assert_eq!(e.epoch_seconds(), 11);
        assert!(!e.is_expired(Timestamp::from_unix_millis(10_999)));
        assert!(e.is_expired(Timestamp::from_unix_millis(11_000)));
    }

    #[test]
    fn future_event_times_count_from_receipt() {
        let received = Timestamp::parse_rfc3339("2026-12-01T10:00:00Z").expect("valid");
        let past = Timestamp::parse_rfc3339("2026-11-30T10:00:00Z").expect("valid");
        let skewed = received.plus(Duration::minutes(2));
        let far = Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").expect("valid");
        assert_eq!(past.clamped_to_receipt(received), past);
        assert_eq!(skewed.clamped_to_receipt(received), skewed, "small clock skew is kept");
        assert_eq!(far.clamped_to_receipt(received), received.plus(MAX_FUTURE_SKEW));
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-11-29T07:44:51.123Z").expect("valid");
        let json = serde_json::to_string(&t).expect("serialise");
        assert_eq!(json, "\"2026-11-29T07:44:51.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).expect("parse"), t);
    }
}
