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
    /// Meta's event time: the order that counts, whatever order the events arrive in.
    pub event_at: Timestamp,
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

    pub fn supersedes(&self, stored: &OptOutRecord) -> bool {
        supersedes((self.event_at, self.state), (stored.event_at, stored.state))
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

/// Whether an event replaces the stored one: the newer wins; within the same second (WhatsApp's
/// resolution) an opt-out wins, so a STOP and a START sent together leave the person opted out.
pub fn supersedes(new: (Timestamp, OptState), stored: (Timestamp, OptState)) -> bool {
    new.0 > stored.0 || (new.0 == stored.0 && new.1 == OptState::OptedOut && stored.1 == OptState::OptedIn)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored; `previous` is the state it replaced (None: first record).
    Applied { previous: Option<OptState> },
    /// A newer (or the same) event is already stored; nothing changed.
    Stale,
}
