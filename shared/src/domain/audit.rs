use super::tenant::TenantId;
use crate::identity::SubjectKey;
use crate::seal::ContactHandle;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Read,
    Export,
    Lookup,
    Change,
    Erase,
}

/// Who touched whose data, when and why. Names the data by contact handle or subject key only,
/// so the trail itself holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: uuid::Uuid,
    pub tenant: TenantId,
    pub at: Timestamp,
    /// The operator, service or API principal that acted.
    pub actor: String,
    pub action: AuditAction,
    /// The contact by its handle, never by the channel's id, which may be a phone number.
    pub contact: Option<ContactHandle>,
    pub subject_key: Option<SubjectKey>,
    pub reason: String,
    pub expires_at: Expiry,
}
