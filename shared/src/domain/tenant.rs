use crate::deadline::Jurisdiction;
use crate::retention::RetentionMonths;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A tenant id: 3-64 lowercase letters, digits and hyphens. It starts every key that holds the
/// tenant's data, so it may not contain the key separator `#`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tenant id must be 3-64 characters of a-z, 0-9 and '-'")]
pub struct BadTenantId;

impl TenantId {
    pub fn new(s: impl Into<String>) -> Result<Self, BadTenantId> {
        let s = s.into();
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(s)) } else { Err(BadTenantId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = BadTenantId;
    fn try_from(s: String) -> Result<Self, BadTenantId> {
        Self::new(s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[serde(rename = "whatsapp")]
    WhatsApp,
    Instagram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhatsApp => "whatsapp",
            Self::Instagram => "instagram",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business account that receives webhooks: a WhatsApp `phone_number_id` or an Instagram
/// account id. Numeric ids assigned by Meta; not personal data. Decoded through `new`, so an
/// envelope from a queue cannot route by an id that registration would refuse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "UncheckedAccount")]
pub struct ChannelAccount {
    pub channel: Channel,
    pub account_id: String,
}

#[derive(Deserialize)]
struct UncheckedAccount {
    channel: Channel,
    account_id: String,
}

impl TryFrom<UncheckedAccount> for ChannelAccount {
    type Error = BadAccountId;
    fn try_from(u: UncheckedAccount) -> Result<Self, BadAccountId> {
        ChannelAccount::new(u.channel, u.account_id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{channel} account id must be 1-32 digits")]
pub struct BadAccountId {
    pub channel: Channel,
}

impl ChannelAccount {
    pub fn new(channel: Channel, account_id: impl Into<String>) -> Result<Self, BadAccountId> {
        let account_id = account_id.into();
        if (1..=32).contains(&account_id.len()) && account_id.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self { channel, account_id })
        } else {
            Err(BadAccountId { channel })
        }
    }
}

/// The language the tenant's replies (opt-out confirmations, status pages) are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "es")]
    Spanish,
    #[serde(rename = "en")]
    English,
    #[serde(rename = "pt")]
    Portuguese,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub accounts: Vec<ChannelAccount>,
    pub retention_months: RetentionMonths,
    pub locale: Locale,
    pub jurisdiction: Jurisdiction,
    pub created_at: Timestamp,
    /// Opt-out keywords the tenant adds to the policy's (shared/src/optout/keywords.rs).
    #[serde(default)]
    pub optout_keywords: Vec<String>,
    /// Button and quick-reply ids that mean "opt out" in the tenant's templates.
    #[serde(default)]
    pub optout_button_ids: Vec<String>,
    /// When `retention_months` was last lowered: the sweep deletes what was stored under the
    /// longer retention at once, without the grace it gives TTL (`retention::conversation_sweep_cutoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_lowered_at: Option<Timestamp>,
    /// Set when the tenant's contract ended (`POST /admin/tenants/{id}/offboard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offboarding: Option<Offboarding>,
    /// The Secrets Manager secret holding the tenant's Meta access token, which the outbound
    /// sender sends with: named by convention (`meta::send::valid_token_secret`), set by a
    /// platform admin; the operator puts the token into it. Without one nothing is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_secret: Option<String>,
}

/// A tenant whose contract ended: its accounts are released at once (what Meta sends for them is
/// held as unrouted, 30 days), and after the notice period the cleanup erases its conversations
/// and opt-out review items through the erasure worker, with a receipt. Its opt-out suppression
/// entries, audit trail and privacy requests stay for their own periods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offboarding {
    pub terminated_at: Timestamp,
    /// When the cleanup opens the erasure.
    pub erase_after: Timestamp,
    pub by: String,
    /// The erasure the cleanup opened (`ConfirmationCode::for_offboarding`), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<super::privacy::RequestId>,
}

impl Tenant {
    /// Whether an item of an event at `event` is within the tenant's retention now. Reads ask
    /// this as well as the stored expiry, so a lowered retention hides older items at once,
    /// before the next sweep deletes them.
    pub fn retains(&self, event: Timestamp, now: Timestamp) -> bool {
        event > self.retention_months.floor(now)
    }

    /// The newest event time of this tenant's conversations the retention sweep deletes now.
    pub fn sweep_cutoff(&self, now: Timestamp) -> Timestamp {
        crate::retention::conversation_sweep_cutoff(now, self.retention_months, self.retention_lowered_at)
    }
}

/// A notification about a tenant's account (template reviews, quality ratings), kept for the
/// tenant. Holds no personal data. `id` is a digest of the notification, so replays are no-ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantEvent {
    pub tenant: TenantId,
    pub id: String,
    pub field: String,
    pub received_at: Timestamp,
    pub payload: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_cannot_break_key_formats() {
        assert!(TenantId::new("acme-01").is_ok());
        for bad in ["ab", "Acme", "acme#1", "a b c", ""] {
            assert_eq!(TenantId::new(bad), Err(BadTenantId), "{bad:?}");
        }
        assert!(serde_json::from_str::<TenantId>("\"x#y-z\"").is_err());
    }

    #[test]
    fn account_ids_are_meta_numeric_ids() {
        assert!(ChannelAccount::new(Channel::WhatsApp, "106540352242922").is_ok());
        assert!(ChannelAccount::new(Channel::Instagram, "17841400000000x").is_err());
        assert!(ChannelAccount::new(Channel::Instagram, "").is_err());
        let decoded = r#"{"channel":"whatsapp","account_id":"1065#40"}"#;
        assert!(
            serde_json::from_str::<ChannelAccount>(decoded).is_err(),
            "decoding checks too"
        );
    }
}
