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
    /// Set by the store when it applies the record: the state this one replaced (None: none).
    #[serde(default)]
    pub previous: Option<OptState>,
    /// Set by the store: whether the change's consequences (propagation, confirmation) were
    /// sent, so a redelivery after a crash can finish them and a replay does not repeat them.
    #[serde(default)]
    pub confirmed: bool,
}

impl OptOutRecord {
    /// Whether applying this record changed the person's state (nobody recorded = opted in).
    pub fn is_change(&self) -> bool {
        self.previous.unwrap_or(OptState::OptedIn) != self.state
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored; `previous` is the state it replaced (None: first record).
    Applied { previous: Option<OptState> },
    /// A newer (or the same) event is already stored; nothing changed.
    Stale,
}
