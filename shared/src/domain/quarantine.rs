use super::message::MetaMessageId;
use super::tenant::{ChannelAccount, TenantId};
use crate::identity::SubjectKey;
use crate::retention::quarantine_expiry;
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why an envelope is held. Unrouted envelopes are re-processed once their account is registered;
/// rejected ones wait for a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "bucket", rename_all = "snake_case")]
pub enum QuarantineBucket {
    Unrouted {
        account: ChannelAccount,
    },
    /// Unusable: not JSON, missing fields, values out of range.
    Rejected,
    /// Valid, but of a kind this system does not process yet (a webhook field, an event type).
    Unhandled,
    /// An opt-out keyword inside a longer message, or an opt-out nothing identifies: not acted
    /// on; a person decides. One per tenant, so its operators see only theirs. An entry points at
    /// the stored message instead of copying it when there is one.
    OptOutReview {
        tenant: TenantId,
    },
    /// A message that failed every delivery on one of the queues that carry personal data,
    /// moved here by the dead-letter consumer so an erasure finds it by person.
    DeadLettered {
        source: DeadLetterSource,
    },
}

/// The buckets of a fixed name whose entries expire (unrouted ones are per account, found in
/// the store's directory); reviews and dead-lettered STOPs wait for a person instead.
pub const EXPIRING_BUCKETS: [QuarantineBucket; 4] = [
    QuarantineBucket::Rejected,
    QuarantineBucket::Unhandled,
    QuarantineBucket::DeadLettered {
        source: DeadLetterSource::Ingest,
    },
    QuarantineBucket::DeadLettered {
        source: DeadLetterSource::Outbound,
    },
];

/// The queue a dead-lettered message failed on: what the message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterSource {
    /// A webhook envelope the processor could not store.
    Ingest,
    /// An opt-out command the opt-out function could not apply: a STOP not yet honoured.
    OptOut,
    /// A reply the sender could not deliver.
    Outbound,
}

impl DeadLetterSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::OptOut => "optout",
            Self::Outbound => "outbound",
        }
    }
}

/// What an opt-out review item holds about a known sender: the subject key of the contact's
/// stable id (no plaintext identifier), and where the stored message is (no copy of the text).
/// A message that could not be stored (no usable time or id) is held as it came instead, so the
/// operator can still read it and opt the sender out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewPointer {
    pub tenant: TenantId,
    pub subject_key: SubjectKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MetaMessageId>,
    /// Meta's time of the message: with the id, its key in the contact's partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<serde_json::Value>,
}

/// A raw envelope that could not be processed, with the reason. The envelope holds personal data,
/// which is why it expires after a short period; an opt-out review or a dead-lettered opt-out
/// command never expires undecided, since dropping it would drop a possible STOP.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: uuid::Uuid,
    pub bucket: QuarantineBucket,
    pub reason: String,
    pub envelope: String,
    pub received_at: Timestamp,
    /// None: kept until a person decides.
    pub expires_at: Option<Expiry>,
    /// The people the envelope names, so an erasure finds the entry by person (the store indexes
    /// the entry under each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_keys: Vec<SubjectKey>,
}

impl QuarantineEntry {
    /// An entry with the quarantine's retention, keyed by its reason and content, so holding the
    /// same thing again at the same time (a redelivery) stores it once.
    pub fn new(bucket: QuarantineBucket, reason: String, envelope: String, received_at: Timestamp) -> Self {
        let mut h = Sha256::new();
        for part in [reason.as_bytes(), envelope.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self {
            id: uuid::Uuid::from_bytes(id),
            expires_at: match bucket {
                QuarantineBucket::OptOutReview { .. }
                | QuarantineBucket::DeadLettered {
                    source: DeadLetterSource::OptOut,
                } => None,
                _ => Some(quarantine_expiry(received_at)),
            },
            bucket,
            reason,
            envelope,
            received_at,
            subject_keys: Vec::new(),
        }
    }

    /// The entry, findable by these people's keys.
    pub fn naming(mut self, mut keys: Vec<SubjectKey>) -> Self {
        keys.sort();
        keys.dedup();
        self.subject_keys = keys;
        self
    }
}

// Debug output may end up in a log line: the envelope holds personal data.
impl std::fmt::Debug for QuarantineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuarantineEntry")
            .field("id", &self.id)
            .field("bucket", &self.bucket)
            .field("envelope_bytes", &self.envelope.len())
            .field("received_at", &self.received_at)
            .finish()
    }
}
