use super::tenant::ChannelAccount;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};

/// Why an envelope is held. Unrouted envelopes are re-processed once their account is registered;
/// rejected ones wait for a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "bucket", rename_all = "snake_case")]
pub enum QuarantineBucket {
    Unrouted { account: ChannelAccount },
    Rejected,
}

/// A raw envelope that could not be processed, with the reason. The envelope holds personal data,
/// which is why it expires after a short period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: uuid::Uuid,
    pub bucket: QuarantineBucket,
    pub reason: String,
    pub envelope: String,
    pub received_at: Timestamp,
    pub expires_at: Expiry,
}
