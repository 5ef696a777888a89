use super::tenant::TenantId;
use crate::identity::SubjectKey;
use crate::seal::ContactHandle;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Read,
    Export,
    Lookup,
    Change,
    Erase,
    /// A request the principal's roles or tenants did not allow: nothing was read or changed.
    Denied,
}

/// Which hash chain an event extends. Each tenant's trail is its own chain, so a tenant's
/// auditor can verify it alone; what concerns no single tenant (principal changes, denied
/// attempts naming no registered tenant) is in the platform chain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditChain {
    Tenant(TenantId),
    Platform,
}

impl fmt::Display for AuditChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant(t) => write!(f, "tenant {t}"),
            Self::Platform => f.write_str("platform"),
        }
    }
}

/// Who touched whose data, when and why. Names the data by contact handle or subject key only,
/// so the trail itself holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: uuid::Uuid,
    pub chain: AuditChain,
    pub at: Timestamp,
    /// The operator, service or API principal that acted.
    pub actor: String,
    pub action: AuditAction,
    /// The route by its pattern (`GET /admin/tenants/{tenant}/contacts`), never the raw path.
    pub route: String,
    /// The contact by its handle, never by the channel's id, which may be a phone number.
    pub contact: Option<ContactHandle>,
    pub subject_key: Option<SubjectKey>,
    /// What a change was, when no contact names it: a grant given or revoked.
    pub detail: Option<String>,
    pub reason: String,
    pub expires_at: Expiry,
}
