use super::tenant::TenantId;
use crate::deadline::{Jurisdiction, RequestKind};
use crate::identity::{IdentifierKind, SubjectKey};
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// A request's id: a digest of its confirmation code, so the public status page finds a request
/// by the code's hash in one read, and the id (which operators see) does not give the code away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub uuid::Uuid);

impl RequestId {
    /// The id of the request a code confirms, for any text: the status page looks up every code
    /// the same way, known or not.
    pub fn for_code(code: &str) -> Self {
        let digest = Sha256::new_with_prefix(b"privacy-request:")
            .chain_update(code.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(uuid::Uuid::from_bytes(bytes))
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the person gets to follow their request on the status page: 128 random bits (or, for
/// Meta's callback, 128 bits of a keyed digest of the signed request), as 32 lowercase hex digits.
/// A bearer secret for the request's status only, which holds no personal data.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfirmationCode(String);

impl fmt::Debug for ConfirmationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmationCode(<redacted>)")
    }
}

impl ConfirmationCode {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&os_random_u64().to_le_bytes());
        }
        Self(hex::encode(bytes))
    }

    /// A code fixed by `input` under `key`: the same signed callback always gets the same code.
    pub fn derived(key: &[u8; 32], input: &[u8]) -> Self {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(input);
        Self(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    /// The code of a tenant's offboarding erasure, fixed by the tenant and the time it was
    /// offboarded: however many cleanup runs open it, it is one request. Anyone who knows both
    /// could read its status page, which shows no personal data.
    pub fn for_offboarding(tenant: &TenantId, terminated_at: Timestamp) -> Self {
        let input = format!("offboarding:{tenant}:{}", terminated_at.unix_millis());
        Self::derived(&[0u8; 32], input.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn request_id(&self) -> RequestId {
        RequestId::for_code(&self.0)
    }
}

/// 64 bits from the operating system's generator (through uuid's v4, which reads it).
fn os_random_u64() -> u64 {
    let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
    hi ^ lo.rotate_left(32)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    /// The privacy mailbox: the person wrote from their address.
    Email,
    /// Entered by an operator (a phone call, a letter, a tenant passing one on).
    Operator,
    /// The person's own WhatsApp number, by a deletion phrase in the chat.
    WhatsApp,
    /// Meta's data-deletion callback (signed_request).
    MetaCallback,
}

impl RequestSource {
    /// A channel that proves who is asking: the request needs no operator's approval.
    pub fn proves_identity(self) -> bool {
        matches!(self, Self::WhatsApp | Self::MetaCallback)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for an operator's decision.
    Received,
    Approved,
    /// The erasure worker has started.
    InProgress,
    Completed,
    Rejected,
}

impl RequestStatus {
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Completed | Self::Rejected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Approved => "approved",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        }
    }
}

/// One identifier of the person, by its subject key only: the request never holds what they gave.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub kind: IdentifierKind,
    pub key: SubjectKey,
}

/// The timeline entry of a reply the outbound sender delivered about a request (its status link).
pub const REPLY_SENT: &str = "reply_sent";

/// Entries other functions append to an open request while its erasure worker holds it: the
/// worker keeps them when its own write conflicts with one (`PrivacyRequest::rebased_on_notes`).
pub const NOTE_EVENTS: &[&str] = &[REPLY_SENT];

/// Something that happened to a request, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// `received`, `approved`, `rejected`, `extended`, `in_progress`, `verified`, `reopened`, `completed`.
    pub event: String,
    /// The principal, or the function, that acted.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where an erasure stands, persisted after every batch so a restarted worker resumes from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureProgress {
    pub started_at: Option<Timestamp>,
    /// Items deleted so far, by table (`conversations`, ...).
    pub erased: BTreeMap<String, u64>,
    /// Contacts whose partitions are gone.
    pub contacts_erased: u64,
}

/// What an erasure did, for the person and the auditor: counts, times and digests of the subject
/// keys, nothing that identifies anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub erased: BTreeMap<String, u64>,
    pub contacts_erased: u64,
    /// SHA-256 of each subject key, so the receipt can be matched to the ledger without holding
    /// the keys themselves.
    pub subject_key_digests: Vec<String>,
    /// True when nothing was stored about the person.
    pub no_data_found: bool,
    /// When a re-query of every index by the subject's keys found nothing left.
    pub verified_at: Option<Timestamp>,
    /// Why something the request names holds nothing here (an e-mail address no contact is
    /// linked to, a Meta app user id).
    pub notes: Vec<String>,
}

/// What a rectification sets. Personal data, held only until the request closes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rectification {
    pub profile_name: String,
}

impl fmt::Debug for Rectification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rectification { profile_name: <redacted> }")
    }
}

/// A data-subject request. Holds subject keys, never the identifiers the person gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyRequest {
    pub id: RequestId,
    pub code: ConfirmationCode,
    pub kind: RequestKind,
    pub status: RequestStatus,
    pub source: RequestSource,
    pub jurisdiction: Jurisdiction,
    /// None: every tenant.
    pub tenant: Option<TenantId>,
    pub subjects: Vec<Subject>,
    /// An operator's note; refused at intake if it may hold an identifier.
    pub note: Option<String>,
    /// An objection that asks for erasure as well (policy §7: "plus erasure if asked").
    #[serde(default)]
    pub erase: bool,
    /// A rectification's new values: the only personal data a request holds, cleared when it
    /// closes, since the contact then holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rectify: Option<Rectification>,
    /// Erases every conversation and opt-out review item of `tenant` (its offboarding), not
    /// one person's: it names no subject.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offboarding: bool,
    /// The completed erasure this one carries out again after a restore; a replay is never
    /// replayed itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<RequestId>,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub timeline: Vec<TimelineEntry>,
    #[serde(default)]
    pub progress: ErasureProgress,
    pub receipt: Option<Receipt>,
    /// Set when the request closes: closed requests are kept for the limitation period.
    pub expires_at: Option<Expiry>,
    /// Optimistic-locking counter: every update must name the version it read.
    pub version: u32,
}

/// Everything a new request is made of, wherever it came from.
#[derive(Debug)]
pub struct NewRequest<'a> {
    pub kind: RequestKind,
    pub source: RequestSource,
    pub jurisdiction: Jurisdiction,
    pub tenant: Option<TenantId>,
    pub subjects: Vec<Subject>,
    pub note: Option<String>,
    /// An objection that asks for erasure too.
    pub erase: bool,
    pub rectify: Option<Rectification>,
    pub code: ConfirmationCode,
    pub now: Timestamp,
    pub by: &'a str,
}

/// What the erasure queue carries: the request to carry out, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureJob {
    pub request: RequestId,
}

impl PrivacyRequest {
    /// A request as it is first stored: due by its jurisdiction's clock, and approved at once when
    /// its channel proves who asked.
    pub fn new(n: NewRequest<'_>) -> PrivacyRequest {
        let mut timeline = vec![TimelineEntry {
            at: n.now,
            event: "received".to_owned(),
            by: n.by.to_owned(),
            reason: None,
        }];
        let status = if n.source.proves_identity() {
            timeline.push(TimelineEntry {
                at: n.now,
                event: "approved".to_owned(),
                by: n.by.to_owned(),
                reason: Some("the channel proves who asked".to_owned()),
            });
            RequestStatus::Approved
        } else {
            RequestStatus::Received
        };
        PrivacyRequest {
            id: n.code.request_id(),
            code: n.code,
            kind: n.kind,
            status,
            source: n.source,
            jurisdiction: n.jurisdiction,
            tenant: n.tenant,
            subjects: n.subjects,
            note: n.note,
            erase: n.erase,
            rectify: n.rectify,
            offboarding: false,
            replay_of: None,
            received_at: n.now,
            due_at: crate::deadline::due_at(n.jurisdiction, n.kind, n.now),
            closed_at: None,
            timeline,
            progress: ErasureProgress::default(),
            receipt: None,
            expires_at: None,
            version: 0,
        }
    }

    /// Closes the request as `status`, by `by`: final from now on, kept for the limitation
    /// period, and without the new values a rectification held (the contacts hold them now, or
    /// nobody does).
    pub fn close(&mut self, status: RequestStatus, at: Timestamp, by: &str, reason: Option<String>) {
        self.status = status;
        self.rectify = None;
        self.closed_at = Some(at);
        self.expires_at = Some(crate::retention::closed_request_expiry(
            at,
            crate::retention::DEFAULT_CLOSED_REQUEST_RETENTION_MONTHS,
        ));
        self.timeline.push(TimelineEntry {
            at,
            event: status.as_str().to_owned(),
            by: by.to_owned(),
            reason,
        });
    }

    /// This change written again over `stored`, when `stored` differs from what the change was
    /// made from only by notes other functions appended (`NOTE_EVENTS`): the notes are kept,
    /// in time order. None for any other concurrent change, which every other writer records
    /// with a timeline entry of its own.
    pub fn rebased_on_notes(&self, stored: &PrivacyRequest) -> Option<PrivacyRequest> {
        let is_new_note = |e: &TimelineEntry| NOTE_EVENTS.contains(&e.event.as_str()) && !self.timeline.contains(e);
        let notes: Vec<TimelineEntry> = stored.timeline.iter().filter(|e| is_new_note(e)).cloned().collect();
        let rest: Vec<&TimelineEntry> = stored.timeline.iter().filter(|e| !is_new_note(e)).collect();
        let extends = rest.len() <= self.timeline.len() && rest.iter().zip(&self.timeline).all(|(a, b)| *a == b);
        if notes.is_empty() || !extends || !stored.status.is_open() {
            return None;
        }
        let mut merged = self.clone();
        merged.version = stored.version;
        merged.timeline.extend(notes);
        merged.timeline.sort_by_key(|e| e.at);
        Some(merged)
    }

    pub fn subject_keys(&self) -> impl Iterator<Item = &SubjectKey> {
        self.subjects.iter().map(|s| &s.key)
    }

    /// Whether the erasure worker carries this request out.
    pub fn erases(&self) -> bool {
        self.kind.erases() || (self.kind == RequestKind::Objection && self.erase)
    }
}

/// What creating a request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    New,
    /// Nothing written: this request (same id), or an open one of the same kind and scope for one
    /// of the same subjects, is already stored.
    Existing(RequestId),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PrivacyRequest {
        let secret = crate::identity::SubjectKeySecret::new(vec![7u8; 32]).expect("long enough");
        let id = crate::identity::Identifier::parse(IdentifierKind::Phone, "+54 9 11 2345-6789").expect("phone");
        PrivacyRequest::new(NewRequest {
            kind: RequestKind::Erasure,
            source: RequestSource::WhatsApp,
            jurisdiction: Jurisdiction::Ar,
            tenant: None,
            subjects: vec![Subject {
                kind: IdentifierKind::Phone,
                key: secret.subject_key(&id),
            }],
            note: None,
            erase: false,
            rectify: None,
            code: ConfirmationCode::random(),
            now: Timestamp::from_unix_seconds(1_000),
            by: "processor",
        })
    }

    fn at(secs: i64, event: &str, by: &str) -> TimelineEntry {
        TimelineEntry {
            at: Timestamp::from_unix_seconds(secs),
            event: event.to_owned(),
            by: by.to_owned(),
            reason: None,
        }
    }

    #[test]
    fn a_workers_change_keeps_a_note_appended_meanwhile_and_nothing_else() {
        let base = request();
        let mut ours = base.clone();
        ours.timeline.push(at(1_002, "in_progress", "erasure"));
        let mut noted = base.clone();
        noted.version += 1;
        noted.timeline.push(at(1_001, REPLY_SENT, "sender"));
        let merged = ours.rebased_on_notes(&noted).expect("a note only: merged");
        assert_eq!(merged.version, noted.version);
        let events: Vec<&str> = merged.timeline.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events.last().copied(), Some("in_progress"));
        assert!(events.contains(&REPLY_SENT));

        let mut decided = base.clone();
        decided.version += 1;
        decided.timeline.push(at(1_001, "extended", "officer"));
        assert_eq!(
            ours.rebased_on_notes(&decided),
            None,
            "an operator's decision is no note"
        );
        let mut both = noted.clone();
        both.timeline.push(at(1_001, "extended", "officer"));
        assert_eq!(ours.rebased_on_notes(&both), None);
        assert_eq!(ours.rebased_on_notes(&base), None, "no note: a plain conflict");
    }
}
