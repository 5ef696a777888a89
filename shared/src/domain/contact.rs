use super::tenant::{Channel, TenantId};
use crate::identity::{Identifier, SubjectKey, SubjectKeySecret};
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A contact is keyed by its channel's stable id: the WhatsApp business-scoped user id (or the
/// wa_id for payloads that predate it), the Instagram-scoped id. Personal data: never logged.
///
/// Decoding goes through `ContactId::new`: a value from a queue or a store is held to the same
/// rule as one built here, since `#` would break the keys it is placed in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "UncheckedContactId")]
pub struct ContactId {
    pub channel: Channel,
    pub stable_id: String,
}

#[derive(Deserialize)]
struct UncheckedContactId {
    channel: Channel,
    stable_id: String,
}

impl TryFrom<UncheckedContactId> for ContactId {
    type Error = BadContactId;
    fn try_from(u: UncheckedContactId) -> Result<Self, BadContactId> {
        ContactId::new(u.channel, u.stable_id)
    }
}

impl fmt::Debug for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactId({}, <redacted>)", self.channel)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("contact id must be 1-160 characters without '#', whitespace or control characters")]
pub struct BadContactId;

impl ContactId {
    pub fn new(channel: Channel, stable_id: impl Into<String>) -> Result<Self, BadContactId> {
        let stable_id = stable_id.into();
        let ok = (1..=160).contains(&stable_id.len())
            && !stable_id.contains('#')
            && !stable_id.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self { channel, stable_id })
        } else {
            Err(BadContactId)
        }
    }
}

/// A contact in a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContactRef {
    pub tenant: TenantId,
    pub contact: ContactId,
}

/// A contact an erasure reaches, with the subject keys of all its links: each is recorded in the
/// erasure ledger before the contact goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReachedContact {
    pub contact: ContactRef,
    pub links: Vec<SubjectKey>,
}

/// An identifier seen for a contact, with the subject key that finds it across tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentifier {
    pub identifier: Identifier,
    pub subject_key: SubjectKey,
}

impl LinkedIdentifier {
    pub fn new(secret: &SubjectKeySecret, identifier: Identifier) -> Self {
        let subject_key = secret.subject_key(&identifier);
        Self {
            identifier,
            subject_key,
        }
    }
}

/// The longest profile name kept (UTF-8 bytes). Meta's names are a few dozen characters; one
/// much longer would make the profile item too large to store (DynamoDB's 400 KB item limit) and
/// block every later event of the contact, so it is held in quarantine instead of kept.
pub const MAX_PROFILE_NAME_BYTES: usize = 1024;

/// What one event tells us about a contact. Applied only if `seen_at` is not older than what is
/// stored, so a redelivered old event cannot roll a profile back.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactUpsert {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub profile_name: Option<String>,
    pub identifiers: Vec<LinkedIdentifier>,
    pub seen_at: Timestamp,
    pub expires_at: Expiry,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub profile_name: Option<String>,
    pub identifiers: Vec<LinkedIdentifier>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub expires_at: Expiry,
    /// When a rectification request set the profile name: from then on the name Meta sends
    /// with each event no longer replaces it (policy §7, the right to rectify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_rectified_at: Option<Timestamp>,
}

// Debug output may end up in a log line: profile names are personal data.
impl fmt::Debug for ContactUpsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactUpsert")
            .field("tenant", &self.tenant)
            .field("contact", &self.contact)
            .field("profile_name", &self.profile_name.as_ref().map(|_| "<redacted>"))
            .field("identifiers", &self.identifiers)
            .field("seen_at", &self.seen_at)
            .finish()
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("tenant", &self.tenant)
            .field("contact", &self.contact)
            .field("profile_name", &self.profile_name.as_ref().map(|_| "<redacted>"))
            .field("identifiers", &self.identifiers)
            .field("last_seen", &self.last_seen)
            .field("name_rectified_at", &self.name_rectified_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_holds_contact_ids_to_the_same_rule() {
        let ok: ContactId = serde_json::from_str(r#"{"channel":"whatsapp","stable_id":"AR.1"}"#).expect("valid");
        assert_eq!(ok, ContactId::new(Channel::WhatsApp, "AR.1").expect("valid"));
        for bad in [
            r#"{"channel":"whatsapp","stable_id":"AR#1"}"#,
            r#"{"channel":"whatsapp","stable_id":""}"#,
            r#"{"channel":"instagram","stable_id":"1 2"}"#,
            r#"{"channel":"instagram","stable_id":"1\u00012"}"#,
        ] {
            assert!(serde_json::from_str::<ContactId>(bad).is_err(), "{bad} must be refused");
        }
    }
}
