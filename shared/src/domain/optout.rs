use super::tenant::TenantId;
use crate::identity::SubjectKey;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// What an opt-out covers: STOP covers everything; Meta's marketing preference only marketing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutScope {
    All,
    Marketing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptState {
    OptedOut,
    OptedIn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutSource {
    Keyword,
    Button,
    UserPreferences,
    FailedStatus,
    Operator,
}

/// One opt-out state change of a person in a tenant, held by subject key only: it carries no
/// plaintext identifier, so it can outlive the erasure of the person's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutRecord {
    pub tenant: TenantId,
    pub subject_key: SubjectKey,
    pub scope: OptOutScope,
    pub state: OptState,
    pub source: OptOutSource,
    /// Meta's own event time: the event's identity (history key, confirmation dedup, replay
    /// detection), identical on every redelivery, and the `since` people are told.
    pub event_at: Timestamp,
    /// The time changes are ordered by: `event_at` clamped to our receipt (plus a small skew), so
    /// a wrong clock in Meta's payload cannot freeze the state. Two deliveries of one event can
    /// carry different order times, so it never identifies the event.
    pub order_at: Timestamp,
    /// The person's state before this change, across all their identifiers (None: never
    /// recorded), as the caller computed it; stored so a redelivery can tell a change from none.
    #[serde(default)]
    pub previous: Option<OptState>,
    /// Set by the store: whether the change's consequences (propagation, confirmation) were
    /// sent, so a redelivery after a crash can finish them and a replay does not repeat them.
    #[serde(default)]
    pub confirmed: bool,
}

impl OptOutRecord {
    /// Whether this record changed the person's state (nobody recorded = opted in).
    pub fn is_change(&self) -> bool {
        self.previous.unwrap_or(OptState::OptedIn) != self.state
    }

    /// Whether this change replaces the stored one, by order time.
    pub fn supersedes(&self, stored: &OptOutRecord) -> bool {
        supersedes(
            (self.order_at, self.event_at, self.state),
            (stored.order_at, stored.event_at, stored.state),
        )
    }

    /// Whether both are the same Meta event (a redelivery), whatever order time each was given.
    pub fn same_event(&self, other: &OptOutRecord) -> bool {
        self.scope == other.scope && self.state == other.state && self.event_at == other.event_at
    }

    /// The record in force among a person's records (one per identifier): the one that
    /// supersedes the others.
    pub fn in_force(records: &[OptOutRecord]) -> Option<&OptOutRecord> {
        records.iter().fold(None, |best: Option<&OptOutRecord>, r| match best {
            Some(b) if !r.supersedes(b) => Some(b),
            _ => Some(r),
        })
    }
}

/// Whether an event replaces the stored one, given (order time, Meta's time, state) of each: the
/// newer by order wins; at the same order time (two events clamped to one receipt) Meta's own time
/// still tells their order; at the same instant of both (WhatsApp's resolution is a second) an
/// opt-out wins, so a STOP and a START sent together leave the person opted out.
pub fn supersedes(new: (Timestamp, Timestamp, OptState), stored: (Timestamp, Timestamp, OptState)) -> bool {
    let (new_at, stored_at) = ((new.0, new.1), (stored.0, stored.1));
    new_at > stored_at || (new_at == stored_at && new.2 == OptState::OptedOut && stored.2 == OptState::OptedIn)
}

/// What a write of a change may replace under the key it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any state the change supersedes: bringing an identifier in line with the record in force.
    Any,
    /// Only this state, as the caller read it (None: no record), so that the `previous` the change
    /// records is exact even when another instance wrote in between.
    State(Option<OptState>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The state and its history entry were written, together.
    Applied,
    /// Nothing written: a change at least as new (by order) is stored, or the state is no longer
    /// the one expected.
    Stale,
    /// Nothing written: this event (scope, state, Meta's time) is already in history, so this is a
    /// redelivery, perhaps with another order time.
    Replay,
}
