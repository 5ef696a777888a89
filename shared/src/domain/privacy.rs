use super::tenant::TenantId;
use crate::deadline::{Jurisdiction, RequestKind};
use crate::identity::SubjectKey;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub uuid::Uuid);

impl RequestId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    /// The privacy mailbox, through the operator tool or admin API.
    Mailbox,
    /// Meta's data-deletion callback (signed_request).
    MetaCallback,
    /// A report that the person is a minor.
    MinorReport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Received,
    InProgress,
    Completed,
    Rejected,
}

impl RequestStatus {
    pub fn is_open(self) -> bool {
        matches!(self, Self::Received | Self::InProgress)
    }
}

/// A data-subject request. Holds subject keys, never the identifiers the person gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyRequest {
    pub id: RequestId,
    pub kind: RequestKind,
    pub status: RequestStatus,
    pub source: RequestSource,
    pub jurisdiction: Jurisdiction,
    pub tenant: Option<TenantId>,
    pub subject_keys: Vec<SubjectKey>,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    /// Set when the request closes: closed requests are kept for the limitation period.
    pub expires_at: Option<Expiry>,
    /// Optimistic-locking counter: every update must name the version it read.
    pub version: u32,
}
