use super::contact::ContactId;
use super::tenant::TenantId;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};

/// Meta's id of a message: a WhatsApp wamid or an Instagram mid. Writes are conditional on it,
/// which is what makes redeliveries harmless.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MetaMessageId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("message id must be 1-512 printable characters")]
pub struct BadMessageId;

impl MetaMessageId {
    pub fn new(s: impl Into<String>) -> Result<Self, BadMessageId> {
        let s = s.into();
        if (1..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(s))
        } else {
            Err(BadMessageId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MetaMessageId {
    type Error = BadMessageId;
    fn try_from(s: String) -> Result<Self, BadMessageId> {
        Self::new(s)
    }
}

impl From<MetaMessageId> for String {
    fn from(m: MetaMessageId) -> String {
        m.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the person to the business.
    Inbound,
    /// From the business (echoes, outbound sends).
    Outbound,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub id: MetaMessageId,
    pub direction: Direction,
    /// Meta's event time.
    pub sent_at: Timestamp,
    /// Meta's type discriminator (`text`, `image`, ..., or an unknown future type).
    pub kind: String,
    /// The message object as Meta sent it: unknown types keep everything.
    pub content: serde_json::Value,
    pub expires_at: Expiry,
}

/// Delivery progress of an outbound message. Ordered: a status never moves backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    /// First play of a voice message: after read.
    Played,
    /// Terminal.
    Failed,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub message_id: MetaMessageId,
    pub state: DeliveryState,
    pub at: Timestamp,
    /// Meta's status object (errors, pricing, conversation) as sent.
    pub detail: serde_json::Value,
    pub expires_at: Expiry,
}

// Debug output may end up in a log line: it names ids and times, never content.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("tenant", &self.tenant)
            .field("contact", &self.contact)
            .field("id", &self.id)
            .field("direction", &self.direction)
            .field("sent_at", &self.sent_at)
            .field("kind", &self.kind)
            .field("content", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl std::fmt::Debug for StatusUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusUpdate")
            .field("tenant", &self.tenant)
            .field("contact", &self.contact)
            .field("message_id", &self.message_id)
            .field("state", &self.state)
            .field("at", &self.at)
            .field("detail", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_states_only_move_forward() {
        use DeliveryState::*;
        assert!(Sent < Delivered && Delivered < Read && Read < Played && Played < Failed);
    }

    #[test]
    fn wamids_keep_base64_characters() {
        assert!(MetaMessageId::new("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=").is_ok());
        assert!(MetaMessageId::new("a+b/c=").is_ok());
        assert!(MetaMessageId::new("has space").is_err());
        assert!(MetaMessageId::new("").is_err());
    }
}
