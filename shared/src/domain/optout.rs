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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored; `previous` is the state it replaced (None: first record).
    Applied { previous: Option<OptState> },
    /// A newer (or the same) event is already stored; nothing changed.
    Stale,
}
