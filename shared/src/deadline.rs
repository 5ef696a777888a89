//! Deadline calendars for data-subject requests, one table per jurisdiction (privacy-rules §3),
//! capped by the product's own promise. The strictest clock wins.

use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// The privacy policy: every request is answered within 30 days, whatever the law allows.
pub const POLICY_MAX_DAYS: i64 = 30;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jurisdiction {
    /// Ley 25.326.
    #[default]
    Ar,
    /// GDPR.
    Eu,
    /// LGPD.
    Br,
    /// LFPDPPP.
    Mx,
    /// None of the above: the policy's own 30 days.
    Other,
}

/// What a data-subject request asks for. Access and portability are one kind: the export serves
/// both (a machine-readable copy of everything stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Access,
    Erasure,
    Rectification,
    /// Objection to processing, or consent withdrawn: an opt-out, and erasure if asked. Its
    /// clock is erasure's (suppression).
    Objection,
    /// A report that the person is a minor (policy §10): their data goes.
    MinorReport,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Access,
        RequestKind::Erasure,
        RequestKind::Rectification,
        RequestKind::Objection,
        RequestKind::MinorReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Erasure => "erasure",
            Self::Rectification => "rectification",
            Self::Objection => "objection",
            Self::MinorReport => "minor_report",
        }
    }

    /// Whether carrying the request out erases the person's data.
    pub fn erases(self) -> bool {
        matches!(self, Self::Erasure | Self::MinorReport)
    }
}

/// A minor's data is deleted within 72 hours of the report (policy §10), whatever the law.
pub const MINOR_REPORT_HOURS: i64 = 72;

/// How a law counts its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegalClock {
    CalendarDays(i64),
    /// Argentine business days (días hábiles), ending at midnight Buenos Aires time.
    ArgentineBusinessDays(u32),
    CalendarMonths(u32),
    Hours(i64),
}

pub fn legal_clock(j: Jurisdiction, kind: RequestKind) -> LegalClock {
    use RequestKind::*;
    match (j, kind) {
        (_, MinorReport) => LegalClock::Hours(MINOR_REPORT_HOURS),
        // Art. 14: 10 calendar days for access.
        (Jurisdiction::Ar, Access) => LegalClock::CalendarDays(10),
        // Art. 16: 5 business days to rectify or suppress (the strictest rule we have).
        (Jurisdiction::Ar, Erasure | Rectification | Objection) => LegalClock::ArgentineBusinessDays(5),
        // Art. 12(3): one month.
        (Jurisdiction::Eu, _) => LegalClock::CalendarMonths(1),
        // Art. 19: full statement within 15 days; other rights have no fixed term.
        (Jurisdiction::Br, Access) => LegalClock::CalendarDays(15),
        (Jurisdiction::Br, Erasure | Rectification | Objection) => LegalClock::CalendarDays(POLICY_MAX_DAYS),
        // Art. 32: answer within 20 days.
        (Jurisdiction::Mx, _) => LegalClock::CalendarDays(20),
        (Jurisdiction::Other, _) => LegalClock::CalendarDays(POLICY_MAX_DAYS),
    }
}

/// When a request received at `received_at` must be closed: the earlier of the law and the policy.
pub fn due_at(j: Jurisdiction, kind: RequestKind, received_at: Timestamp) -> Timestamp {
    let legal = match legal_clock(j, kind) {
        LegalClock::CalendarDays(d) => received_at.plus(Duration::days(d)),
        LegalClock::CalendarMonths(m) => received_at.plus_months(m),
        LegalClock::ArgentineBusinessDays(n) => argentine_business_deadline(received_at, n),
        LegalClock::Hours(h) => received_at.plus(Duration::hours(h)),
    };
    legal.min(received_at.plus(Duration::days(POLICY_MAX_DAYS)))
}

/// Argentina has had no daylight saving time since 2009.
const BUENOS_AIRES: UtcOffset = match UtcOffset::from_hms(-3, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// National holidays on fixed dates. Movable ones (Carnival, Holy Week, the "trasladables") are
/// left out on purpose: counting a holiday as a business day only makes a deadline earlier.
const ARGENTINE_FIXED_HOLIDAYS: &[(Month, u8)] = &[
    (Month::January, 1),
    (Month::March, 24),
    (Month::April, 2),
    (Month::May, 1),
    (Month::May, 25),
    (Month::June, 20),
    (Month::July, 9),
    (Month::December, 8),
    (Month::December, 25),
];

pub fn is_argentine_business_day(d: Date) -> bool {
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
        && !ARGENTINE_FIXED_HOLIDAYS.contains(&(d.month(), d.day()))
}

/// The end of the n-th business day after the day of receipt, Buenos Aires time.
fn argentine_business_deadline(received_at: Timestamp, n: u32) -> Timestamp {
    let mut day = received_at.to_datetime().to_offset(BUENOS_AIRES).date();
    let mut counted = 0;
    while counted < n {
        day = day.next_day().unwrap_or(day);
        if is_argentine_business_day(day) {
            counted += 1;
        }
    }
    let end = OffsetDateTime::new_in_offset(day, Time::MIDNIGHT, BUENOS_AIRES) + Duration::days(1);
    Timestamp::from(end).plus(Duration::milliseconds(-1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("valid")
    }

    #[test]
    fn argentine_erasure_skips_weekends_and_holidays() {
        // Friday 2026-07-03 15:00 in Buenos Aires. Business days: Mon 6, Tue 7, Wed 8, Fri 10
        // (Thu 9 July is Independence Day), Mon 13.
        let due = due_at(Jurisdiction::Ar, RequestKind::Erasure, ts("2026-07-03T18:00:00Z"));
        assert_eq!(due.to_string(), "2026-07-14T02:59:59.999Z");
    }

    const JURISDICTIONS: [Jurisdiction; 5] = [
        Jurisdiction::Ar,
        Jurisdiction::Eu,
        Jurisdiction::Br,
        Jurisdiction::Mx,
        Jurisdiction::Other,
    ];

    #[test]
    fn argentine_suppression_counts_business_days_across_weekends_and_fixed_holidays() {
        // Each: received (UTC), due (the end of the 5th business day, Buenos Aires midnight).
        let cases = [
            // Monday 2026-03-16 10:00 BA: Tue 17, Wed 18, Thu 19, Fri 20, Mon 23 (24 March is a
            // holiday, but after the fifth day).
            ("2026-03-16T13:00:00Z", "2026-03-24T02:59:59.999Z"),
            // Friday 2026-03-20: Mon 23, Wed 25 (Tue 24 is the Day of Remembrance), Thu 26, Fri 27,
            // Mon 30.
            ("2026-03-20T13:00:00Z", "2026-03-31T02:59:59.999Z"),
            // Saturday 2026-12-19 late at night in BA (Sunday in UTC): the day of receipt is
            // Buenos Aires' Saturday; Mon 21, Tue 22, Wed 23, Thu 24, Sat-Sun skipped, Fri 25 is
            // Christmas, Mon 28.
            ("2026-12-20T02:30:00Z", "2026-12-29T02:59:59.999Z"),
            // New Year: Wed 2026-12-30; Thu 31, Fri 1 January is a holiday, Mon 4, Tue 5, Wed 6,
            // Thu 7.
            ("2026-12-30T15:00:00Z", "2027-01-08T02:59:59.999Z"),
        ];
        for (received, due) in cases {
            for kind in [RequestKind::Erasure, RequestKind::Rectification, RequestKind::Objection] {
                assert_eq!(
                    due_at(Jurisdiction::Ar, kind, ts(received)).to_string(),
                    due,
                    "{kind:?} received {received}"
                );
            }
        }
    }

    #[test]
    fn every_jurisdiction_and_kind_has_its_clock() {
        let received = ts("2026-06-01T12:00:00Z");
        let expected = |j: Jurisdiction, k: RequestKind| -> &'static str {
            use Jurisdiction::*;
            use RequestKind::*;
            match (j, k) {
                (_, MinorReport) => "2026-06-04T12:00:00Z",
                (Ar, Access) => "2026-06-11T12:00:00Z",
                // Mon 1 June BA; Tue 2, Wed 3, Thu 4, Fri 5, Mon 8.
                (Ar, _) => "2026-06-09T02:59:59.999Z",
                (Eu, _) => "2026-07-01T12:00:00Z",
                (Br, Access) => "2026-06-16T12:00:00Z",
                (Br, _) | (Other, _) => "2026-07-01T12:00:00Z",
                (Mx, _) => "2026-06-21T12:00:00Z",
            }
        };
        for j in JURISDICTIONS {
            for k in RequestKind::ALL {
                assert_eq!(due_at(j, k, received).to_string(), expected(j, k), "{j:?} {k:?}");
            }
        }
    }

    #[test]
    fn argentine_access_is_ten_calendar_days() {
        let due = due_at(Jurisdiction::Ar, RequestKind::Access, ts("2026-12-28T10:00:00Z"));
        assert_eq!(due.to_string(), "2027-01-07T10:00:00Z");
    }

    #[test]
    fn the_policy_caps_every_jurisdiction_at_thirty_days() {
        let received = ts("2026-01-01T00:00:00Z");
        for j in JURISDICTIONS {
            for k in RequestKind::ALL {
                assert!(
                    due_at(j, k, received) <= received.plus(Duration::days(POLICY_MAX_DAYS)),
                    "{j:?} {k:?}"
                );
            }
        }
        // GDPR's month is 31 days in January: the policy's 30 days win.
        assert_eq!(
            due_at(Jurisdiction::Eu, RequestKind::Erasure, received).to_string(),
            "2026-01-31T00:00:00Z"
        );
        assert_eq!(
            due_at(Jurisdiction::Mx, RequestKind::Erasure, received).to_string(),
            "2026-01-21T00:00:00Z"
        );
        assert_eq!(
            due_at(Jurisdiction::Br, RequestKind::Access, received).to_string(),
            "2026-01-16T00:00:00Z"
        );
    }
}
