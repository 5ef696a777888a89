//! Storage ports, one per data class (and so per table and retention rule), each with a DynamoDB
//! adapter and an embedded one that behave the same; `tests/conformance` holds them to it.
//!
//! Every read hides items whose expiry has passed by the store's clock, because DynamoDB TTL
//! deletes lazily (typically within two days) and an expired message must not be served meanwhile.

pub mod cursor;
pub mod dynamodb;
pub mod embedded;
pub mod keys;
mod profile;

use crate::access::{Principal, PrincipalId};
use crate::audit::{ChainHead, ChainLink, Checkpoint};
use crate::compliance::{Job, JobRun};
use crate::domain::{
    ApplyOutcome, AuditChain, AuditEvent, ChannelAccount, Contact, ContactId, ContactRef, ContactUpsert, Created,
    Message, MetaMessageId, OptOutRecord, OptOutScope, PrivacyRequest, QuarantineBucket, QuarantineEntry,
    ReachedContact, RequestId, StatusUpdate, Tenant, TenantEvent, TenantId,
};
use crate::identity::SubjectKey;
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
pub use cursor::Cursor;
use std::collections::HashMap;
use std::fmt::Debug;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the page cursor does not belong to this query")]
    BadCursor,
    #[error("page size must be between 1 and {MAX_PAGE_SIZE}")]
    BadPageSize,
    #[error("{channel} account {account_id} already belongs to another tenant")]
    AccountTaken {
        channel: crate::domain::Channel,
        account_id: String,
    },
    #[error("the record already exists")]
    AlreadyExists,
    #[error("the record changed since it was read")]
    Conflict,
    #[error("a stored item could not be decoded: {0}")]
    Corrupt(String),
    /// Nothing written: the item would be larger than DynamoDB's item limit. Retrying cannot
    /// help, so callers hold what they tried to store instead.
    #[error("the item is larger than the {MAX_ITEM_BYTES}-byte item limit")]
    TooLarge,
    #[error("storage backend failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// A description safe for logs. Backend failures keep the SDK's message (operations and error
    /// codes, not item contents); a decoding failure may quote the item, so only its kind is kept.
    pub fn log_safe(&self) -> String {
        match self {
            Self::Corrupt(_) => "a stored item could not be decoded".to_owned(),
            other => other.to_string(),
        }
    }
}

pub const MAX_PAGE_SIZE: usize = 100;

/// DynamoDB's item size limit (400 KB). The embedded adapter refuses what DynamoDB would.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// An item's size as DynamoDB counts it: attribute names and values, with a few bytes of
/// overhead per list or map element. Close enough to refuse what DynamoDB refuses; DynamoDB's own
/// refusal is the authority (the DynamoDB adapter maps it to `TooLarge`).
pub(crate) fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    use AttributeValue as V;
    match v {
        V::S(s) => s.len(),
        V::N(n) => n.len().div_ceil(2) + 1,
        V::B(b) => b.as_ref().len(),
        V::Ss(x) => x.iter().map(String::len).sum(),
        V::Ns(x) => x.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        V::Bs(x) => x.iter().map(|b| b.as_ref().len()).sum(),
        V::L(x) => 3 + x.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        V::M(x) => 3 + x.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 1,
    }
}

/// `TooLarge` if `value`, mapped to an item, would be over the limit.
pub(crate) fn check_item_size<T: serde::Serialize>(value: &T) -> Result<(), StoreError> {
    let item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if item_size(&item) > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge);
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        Self { limit, cursor: None }
    }

    pub fn after(limit: usize, cursor: Cursor) -> Self {
        Self {
            limit,
            cursor: Some(cursor),
        }
    }

    pub(crate) fn checked_limit(&self) -> Result<usize, StoreError> {
        if (1..=MAX_PAGE_SIZE).contains(&self.limit) {
            Ok(self.limit)
        } else {
            Err(StoreError::BadPageSize)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next: Option<Cursor>,
}

/// Every item of a paged listing, following its cursors to the end, `MAX_PAGE_SIZE` at a time
/// (bounded listings only: a subject's contacts, open requests, the tenant directory).
pub async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut next = PageRequest::first(MAX_PAGE_SIZE);
    loop {
        let p = page(next).await?;
        out.extend(p.items);
        match p.next {
            Some(c) => next = PageRequest::after(MAX_PAGE_SIZE, c),
            None => return Ok(out),
        }
    }
}

/// Result of an idempotent write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The same or a newer version is already stored: nothing changed.
    Unchanged,
    /// Nothing stored: the event is about a subject erased after it happened (a redelivery, a
    /// redrive, a replay of an envelope from before the erasure).
    Erased,
}

/// Progress of erasing one contact, safe to persist in a privacy request: it holds counts, no key
/// material (contact keys contain personal identifiers). The partition shrinks as it is erased, so
/// the resume point is always its first remaining item and a restarted worker loses nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EraseCursor {
    /// Items deleted so far, across every batch.
    pub deleted: u64,
    /// True once the partition, index links included, is empty.
    pub done: bool,
}

/// A contact the retention sweep has work in: its oldest item is at or before the cutoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueContact {
    pub contact: ContactId,
    pub oldest: Timestamp,
}

/// What sweeping one contact did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Items this call deleted; one another run deleted first is not counted.
    pub deleted: u64,
    /// False when `max_items` ran out first: call again.
    pub done: bool,
    /// Nothing of the contact was left within retention: its profile and links went too.
    pub contact_gone: bool,
}

#[async_trait]
pub trait ConversationStore: Send + Sync + Debug {
    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<Contact>, StoreError>;
    async fn list_contacts(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Contact>, StoreError>;
    /// Creates or updates a contact's profile and identifier links. The profile is rewritten only
    /// when the event changes it (a new identifier, a new name, a later expiry, an older item),
    /// and `last_seen` moves only then; an event older than the stored profile links its
    /// identifiers without rolling the profile back. Links expire with the profile. A contact the
    /// store does not know is first checked against the erasure ledger (`record_erasure`).
    async fn upsert_contact(&self, upsert: &ContactUpsert) -> Result<WriteOutcome, StoreError>;
    /// Sets a live contact's profile name as a rectification gives it and marks the profile so
    /// that later events keep that name. False when the contact has no live profile.
    async fn rectify_profile_name(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Conditional on the Meta message id and event time: a redelivery returns `Unchanged`, and
    /// so does a message unsent before it arrived.
    async fn put_message(&self, message: &Message) -> Result<WriteOutcome, StoreError>;
    /// What one message does to its contact: `upsert_contact`, then `put_message`, for the cost
    /// of one read of the contact. Returns the message's outcome.
    async fn record_message(&self, upsert: &ContactUpsert, message: &Message) -> Result<WriteOutcome, StoreError> {
        if self.upsert_contact(upsert).await? == WriteOutcome::Erased {
            return Ok(WriteOutcome::Erased);
        }
        self.put_message(message).await
    }
    /// `upsert_contact`, then `put_status`, for the cost of one read of the contact.
    async fn record_status(&self, upsert: &ContactUpsert, status: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        if self.upsert_contact(upsert).await? == WriteOutcome::Erased {
            return Ok(WriteOutcome::Erased);
        }
        self.put_status(status).await
    }
    /// Messages of one contact, oldest first.
    async fn list_messages(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError>;
    /// One live message by its key (Meta's time and id), as a review item points at it.
    async fn get_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        sent_at: Timestamp,
        message: &MetaMessageId,
    ) -> Result<Option<Message>, StoreError>;
    /// Deletes one stored message and its edits (the person unsent or revoked it), leaving a
    /// tombstone until `tombstone_expires` so a redelivery of the original cannot store it again.
    /// False if no live copy was stored.
    async fn delete_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
        tombstone_expires: Expiry,
    ) -> Result<bool, StoreError>;
    /// Applies only if the state moves forward (sent < delivered < read < played < failed).
    async fn put_status(&self, status: &StatusUpdate) -> Result<WriteOutcome, StoreError>;
    async fn get_status(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
    ) -> Result<Option<StatusUpdate>, StoreError>;
    /// Statuses of one contact's outbound messages, by message id.
    async fn list_statuses(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<StatusUpdate>, StoreError>;
    /// Every contact, in any tenant, linked to this subject key: one query on its link partition.
    async fn find_subject(&self, key: &SubjectKey) -> Result<Vec<ContactRef>, StoreError>;
    /// What an erasure by this key reaches: every contact linked to it, in any tenant, expired or
    /// not (TTL removes expired items within days, and until then they are still our copies),
    /// each with the keys of all its links.
    async fn erasure_reach(&self, key: &SubjectKey) -> Result<Vec<ReachedContact>, StoreError>;
    /// Records in the erasure ledger that the key's data was erased at `at` (a later time
    /// replaces an earlier one). From then on an event about a contact the store does not know,
    /// linked first to this key and not newer than `at`, stores nothing (`WriteOutcome::Erased`):
    /// the ledger is read only on that new-contact path, so known contacts pay nothing for it.
    async fn record_erasure(&self, key: &SubjectKey, at: Timestamp) -> Result<(), StoreError>;
    /// When the key's data was last erased.
    async fn erased_at(&self, key: &SubjectKey) -> Result<Option<Timestamp>, StoreError>;
    /// Deletes up to `max_items` items of the contact's partition (profile, messages, statuses,
    /// index links, expired or not) and returns the cursor advanced by what it deleted. The
    /// profile goes last, at once with its index links (in a batch of its own when they do not
    /// fit), so the contact stays findable by each of its keys until nothing of it is left.
    async fn erase_contact_batch(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cursor: EraseCursor,
        max_items: usize,
    ) -> Result<EraseCursor, StoreError>;
}

#[async_trait]
pub trait OptOutStore: Send + Sync + Debug {
    /// Writes the change and its history entry in one atomic write, only if it supersedes the
    /// stored state by order time (and that state is the one `expect`ed) and its event is not in
    /// history yet: a crash cannot leave a change without its consent evidence, and a redelivery
    /// with another order time is still a replay.
    async fn apply(
        &self,
        record: &OptOutRecord,
        expect: crate::domain::optout::Expect,
    ) -> Result<ApplyOutcome, StoreError>;
    async fn get(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        scope: OptOutScope,
    ) -> Result<Option<OptOutRecord>, StoreError>;
    /// Records that the consequences of the change to `state` at Meta's `event_at` were sent. A
    /// no-op if another change has replaced it.
    async fn mark_confirmed(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        scope: OptOutScope,
        event_at: Timestamp,
        state: crate::domain::OptState,
    ) -> Result<(), StoreError>;
    /// Every applied change, by Meta's event time (its key), oldest first.
    async fn history(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        page: &PageRequest,
    ) -> Result<Page<OptOutRecord>, StoreError>;
}

#[async_trait]
pub trait PrivacyRequestStore: Send + Sync + Debug {
    /// Stores the request and its claims on its subjects in one atomic write, unless its id or
    /// an open request of the same kind and tenant scope for one of its subjects exists.
    async fn create(&self, request: &PrivacyRequest) -> Result<Created, StoreError>;
    async fn get(&self, id: RequestId) -> Result<Option<PrivacyRequest>, StoreError>;
    /// Stores `request` with its version bumped, if the stored version is still `request.version`.
    /// Closing a request releases its claims in the same write; a closed request is final
    /// (`Conflict`).
    async fn update(&self, request: &PrivacyRequest) -> Result<PrivacyRequest, StoreError>;
    /// Open requests due at or before `until`, soonest first.
    async fn open_due_before(&self, until: Timestamp, page: &PageRequest) -> Result<Page<PrivacyRequest>, StoreError>;
    /// Completed requests that erased data, closed from `since` to `until` (both included),
    /// oldest first: what a restore of the conversations to `since` brought back.
    async fn erasures_closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError>;
}

/// Event times to list, both ends included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl TimeRange {
    pub const ALL: Self = Self { from: None, to: None };
}

/// The audit trail, one hash chain per tenant and one for the platform (`crate::audit`).
#[async_trait]
pub trait AuditStore: Send + Sync + Debug {
    /// Links the event after its chain's head and writes link and head in one atomic write,
    /// retrying when another writer moved the head first. Returns the link as stored.
    async fn append(&self, event: &AuditEvent) -> Result<ChainLink, StoreError>;
    /// A chain's live events within `range`, oldest first.
    async fn list(
        &self,
        chain: &AuditChain,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<ChainLink>, StoreError>;
    async fn head(&self, chain: &AuditChain) -> Result<Option<ChainHead>, StoreError>;
    /// A chain's live checkpoints, oldest first.
    async fn checkpoints(&self, chain: &AuditChain) -> Result<Vec<Checkpoint>, StoreError>;
}

/// Who may do what: principals by their IAM ARN (or local id), with their roles and tenants.
#[async_trait]
pub trait PrincipalStore: Send + Sync + Debug {
    async fn get(&self, id: &PrincipalId) -> Result<Option<Principal>, StoreError>;
    /// Creates or replaces a principal's grant.
    async fn put(&self, principal: &Principal) -> Result<(), StoreError>;
    /// True if there was a grant to remove.
    async fn delete(&self, id: &PrincipalId) -> Result<bool, StoreError>;
    async fn list(&self, page: &PageRequest) -> Result<Page<Principal>, StoreError>;
}

#[async_trait]
pub trait TenantStore: Send + Sync + Debug {
    /// Creates or updates a tenant and claims its channel accounts; fails without writing anything
    /// if an account belongs to another tenant.
    async fn register(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant that owns a receiving account.
    async fn resolve(&self, account: &ChannelAccount) -> Result<Option<TenantId>, StoreError>;
    /// Idempotent on the event id.
    async fn record_event(&self, event: &TenantEvent) -> Result<WriteOutcome, StoreError>;
    async fn list_events(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<TenantEvent>, StoreError>;
}

#[async_trait]
pub trait QuarantineStore: Send + Sync + Debug {
    async fn put(&self, entry: &QuarantineEntry) -> Result<(), StoreError>;
    /// One live entry by its key.
    async fn get(
        &self,
        bucket: &QuarantineBucket,
        received_at: Timestamp,
        id: uuid::Uuid,
    ) -> Result<Option<QuarantineEntry>, StoreError>;
    /// A bucket's entries, oldest first.
    async fn list(&self, bucket: &QuarantineBucket, page: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError>;
    /// Deletes the entry with its index entries, in one write.
    async fn delete(&self, entry: &QuarantineEntry) -> Result<(), StoreError>;
    /// Every entry naming this person (`QuarantineEntry::subject_keys`), expired or not: what an
    /// erasure must delete.
    async fn find_subject(&self, key: &SubjectKey) -> Result<Vec<QuarantineEntry>, StoreError>;
}

/// What the retention sweep and the compliance report read, apart from the data-class ports: the
/// functions on the message path (processor, webhook, opt-out) link none of it. Every read is a
/// query bounded by what is due or waiting, never a Scan.
#[async_trait]
pub trait RetentionReads: Send + Sync + Debug {
    /// Contacts of the tenant whose oldest item is at or before `cutoff`, oldest first: one query
    /// on the contacts-by-tenant index, so its cost follows what is due, not the table.
    async fn contacts_due(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<DueContact>, StoreError>;
    /// Event time of the tenant's oldest stored item, expired or not (the same index).
    async fn oldest_item(&self, tenant: &TenantId) -> Result<Option<Timestamp>, StoreError>;
    /// Every registered tenant's id, in id order (a directory partition, not a Scan).
    async fn tenant_ids(&self, page: &PageRequest) -> Result<Page<TenantId>, StoreError>;
    async fn last_job_run(&self, job: Job) -> Result<Option<JobRun>, StoreError>;
    /// The quarantine buckets whose entries expire: the fixed ones, and each unrouted account's
    /// that has held an envelope (a directory the store keeps as they are written).
    async fn expiring_buckets(&self) -> Result<Vec<QuarantineBucket>, StoreError>;
    /// Requests closed from `since` to `until` (both included), oldest first (a sparse index of
    /// closed requests by closing time).
    async fn closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError>;
    /// STOPs applied per tenant on the UTC days from `from` to `to` (both included), by Meta's
    /// event time (counters written with each change).
    async fn optouts_applied(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<std::collections::BTreeMap<TenantId, u64>, StoreError>;
}

/// What the retention sweep deletes, each store call bounded by `max_items` and each item counted
/// by the one call that deleted it, so two overlapping sweeps never both count one.
#[async_trait]
pub trait RetentionSweeps: Send + Sync + Debug {
    /// Deletes up to `max_items` of the contact's messages (tombstones and edits too) and statuses
    /// from at or before `cutoff`. Then moves the profile's oldest-item time to what remains or,
    /// with nothing left, deletes the profile with its links and unsend markers.
    async fn sweep_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cutoff: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError>;
    /// Deletes up to `max_items` of the bucket's entries whose expiry is at or before
    /// `expired_by`, oldest first, with their index entries. Entries kept until a person decides
    /// (no expiry) are never swept; the reads stop at the first entry still kept.
    async fn sweep_quarantine(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError>;
    /// Deletes up to `max_items` of the chain's events and checkpoints whose expiry is at or
    /// before `expired_by`, oldest first; the head stays. Events sort by time and expire in that
    /// order, so the reads stop at the first one still kept.
    async fn sweep_audit(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError>;
    /// Deletes up to `max_items` closed requests whose expiry (closing time plus the limitation
    /// period) is at or before `expired_by`, oldest first. Open requests have no expiry.
    async fn sweep_closed(&self, expired_by: Timestamp, max_items: usize) -> Result<SweepOutcome, StoreError>;
    /// Keeps the latest run of a scheduled job (replacing the one before).
    async fn record_job_run(&self, run: &JobRun) -> Result<(), StoreError>;
    /// How many of the bucket's entries (up to `max_items`) a sweep at `expired_by` would
    /// delete: the same reads, no deletes. The monitor's "past expiry, not yet deleted".
    async fn quarantine_past_expiry(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<u64, StoreError>;
    /// The same for a chain's events and checkpoints.
    async fn audit_past_expiry(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<u64, StoreError>;
    /// The same for closed requests past the limitation period.
    async fn closed_past_expiry(&self, expired_by: Timestamp, max_items: usize) -> Result<u64, StoreError>;
}

/// The outbound sender's table (one retention class: a day): claims on dedup keys, so a
/// redelivered command never sends twice; per-account send slots for Meta's throughput; and the
/// one conversation read the gate needs. Only the sender and admin build it.
#[async_trait]
pub trait OutboxStore: Send + Sync + Debug {
    /// Claims the entry's dedup key: `Won` when nothing live is stored under it or the stored
    /// entry was released (the attempt then counts on from it); else `Held`, with what is stored.
    async fn claim(&self, entry: &crate::outbound::OutboxEntry) -> Result<crate::outbound::Claim, StoreError>;
    /// Records how claim `attempt` ended; false when the entry is no longer that claim's.
    async fn finish(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        outcome: &crate::outbound::Outcome,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Claim `attempt` (claimed or stale) is known not to have sent: the next delivery may claim
    /// the key again. False when the entry is no longer that claim's.
    async fn release(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError>;
    /// An operator's resend of stale claim `attempt`: released as `release` does, but keeping
    /// the message, which the resend queues again (and queues again if that fails). False when
    /// it is no longer that stale claim.
    async fn release_for_resend(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Marks claim `attempt` stale, listed for an operator; false when it is no longer claimed.
    async fn mark_stale(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError>;
    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<crate::outbound::OutboxEntry>, StoreError>;
    /// Live stale entries of every tenant, oldest first (a sparse index).
    async fn stale(&self, page: &PageRequest) -> Result<Page<crate::outbound::OutboxEntry>, StoreError>;
    /// Drops the message (recipient and content) from the tenant's stale entries addressed to
    /// `contact`: what an erasure of the contact removes here. The entries stay, so their keys
    /// still hold against a redelivery, and stay listed, but can no longer be resent. Returns how
    /// many it changed.
    async fn erase_stale(&self, tenant: &TenantId, contact: &ContactId) -> Result<u64, StoreError>;
    /// Takes one of `limit` sends of `account` in the epoch second `second`; false when all are
    /// taken.
    async fn take_send_slot(&self, account: &ChannelAccount, second: i64, limit: u32) -> Result<bool, StoreError>;
    /// The time of the contact's newest live inbound message at or after `since`.
    async fn last_inbound(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        since: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError>;
}

/// Both retention ports over a struct of table adapters (`conversations`, `tenants`, `quarantine`,
/// `audit`, `requests`, `opt_outs`), each call to the adapter of the table it reads or sweeps:
/// the DynamoDB and embedded families implement them the same way.
macro_rules! retention_ports {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::RetentionReads for $ty {
            async fn contacts_due(
                &self,
                tenant: &$crate::domain::TenantId,
                cutoff: $crate::timestamp::Timestamp,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::store::DueContact>, $crate::store::StoreError> {
                self.conversations.contacts_due(tenant, cutoff, page).await
            }
            async fn oldest_item(
                &self,
                tenant: &$crate::domain::TenantId,
            ) -> Result<Option<$crate::timestamp::Timestamp>, $crate::store::StoreError> {
                self.conversations.oldest_item(tenant).await
            }
            async fn tenant_ids(
                &self,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::domain::TenantId>, $crate::store::StoreError> {
                self.tenants.tenant_ids(page).await
            }
            async fn last_job_run(
                &self,
                job: $crate::compliance::Job,
            ) -> Result<Option<$crate::compliance::JobRun>, $crate::store::StoreError> {
                self.tenants.last_job_run(job).await
            }
            async fn expiring_buckets(
                &self,
            ) -> Result<Vec<$crate::domain::QuarantineBucket>, $crate::store::StoreError> {
                self.quarantine.expiring_buckets().await
            }
            async fn closed_between(
                &self,
                since: $crate::timestamp::Timestamp,
                until: $crate::timestamp::Timestamp,
                page: &$crate::store::PageRequest,
            ) -> Result<$crate::store::Page<$crate::domain::PrivacyRequest>, $crate::store::StoreError> {
                self.requests.closed_between(since, until, page).await
            }
            async fn optouts_applied(
                &self,
                from: $crate::timestamp::Timestamp,
                to: $crate::timestamp::Timestamp,
            ) -> Result<std::collections::BTreeMap<$crate::domain::TenantId, u64>, $crate::store::StoreError> {
                self.opt_outs.optouts_applied(from, to).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::RetentionSweeps for $ty {
            async fn sweep_contact(
                &self,
                tenant: &$crate::domain::TenantId,
                contact: &$crate::domain::ContactId,
                cutoff: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<$crate::store::SweepOutcome, $crate::store::StoreError> {
                self.conversations
                    .sweep_contact(tenant, contact, cutoff, max_items)
                    .await
            }
            async fn sweep_quarantine(
                &self,
                bucket: &$crate::domain::QuarantineBucket,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<$crate::store::SweepOutcome, $crate::store::StoreError> {
                self.quarantine
                    .sweep_quarantine(bucket, expired_by, max_items, false)
                    .await
            }
            async fn sweep_audit(
                &self,
                chain: &$crate::domain::AuditChain,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<$crate::store::SweepOutcome, $crate::store::StoreError> {
                self.audit.sweep_audit(chain, expired_by, max_items, false).await
            }
            async fn sweep_closed(
                &self,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<$crate::store::SweepOutcome, $crate::store::StoreError> {
                self.requests.sweep_closed(expired_by, max_items, false).await
            }
            async fn record_job_run(&self, run: &$crate::compliance::JobRun) -> Result<(), $crate::store::StoreError> {
                self.tenants.record_job_run(run).await
            }
            async fn quarantine_past_expiry(
                &self,
                bucket: &$crate::domain::QuarantineBucket,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<u64, $crate::store::StoreError> {
                Ok(self
                    .quarantine
                    .sweep_quarantine(bucket, expired_by, max_items, true)
                    .await?
                    .deleted)
            }
            async fn audit_past_expiry(
                &self,
                chain: &$crate::domain::AuditChain,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<u64, $crate::store::StoreError> {
                Ok(self
                    .audit
                    .sweep_audit(chain, expired_by, max_items, true)
                    .await?
                    .deleted)
            }
            async fn closed_past_expiry(
                &self,
                expired_by: $crate::timestamp::Timestamp,
                max_items: usize,
            ) -> Result<u64, $crate::store::StoreError> {
                Ok(self
                    .requests
                    .sweep_closed(expired_by, max_items, true)
                    .await?
                    .deleted)
            }
        }
    };
}
pub(crate) use retention_ports;

/// One adapter of every store, as a function gets them.
#[derive(Clone, Debug)]
pub struct Stores {
    pub conversations: std::sync::Arc<dyn ConversationStore>,
    pub opt_outs: std::sync::Arc<dyn OptOutStore>,
    pub privacy_requests: std::sync::Arc<dyn PrivacyRequestStore>,
    pub audit: std::sync::Arc<dyn AuditStore>,
    pub tenants: std::sync::Arc<dyn TenantStore>,
    pub quarantine: std::sync::Arc<dyn QuarantineStore>,
    /// Kept in the tenants table: who may act on tenants is tenant configuration.
    pub principals: std::sync::Arc<dyn PrincipalStore>,
    /// The retention sweep's and the report's reads, across the tables above.
    pub retention: std::sync::Arc<dyn RetentionReads>,
}
