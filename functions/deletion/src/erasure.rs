//! The erasure worker: for an approved request, find every contact of the subject through the
//! blind index (in the request's tenant scope), delete each partition in batches, then re-query
//! every index by the subject's keys and close the request with a receipt only if nothing is left.
//!
//! Before anything is deleted, the erasure ledger records every subject key concerned (the
//! request's, and each contact's links), so events from before the erasure that arrive again are
//! not stored (`ConversationStore::record_erasure`).
//!
//! Progress is stored in the request after every batch, under its version: two workers on one
//! request cannot both write, and a worker killed midway resumes from the store (a partition
//! shrinks as it is erased, and its index links go last, so the index still finds what is left).

use crate::ErasureJob;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use sha2::{Digest, Sha256};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::{
    ContactRef, DeadLetterSource, PrivacyRequest, QuarantineBucket, QuarantineEntry, ReachedContact, Receipt,
    RequestStatus, TimelineEntry,
};
use shared::identity::IdentifierKind;
use shared::identity::SubjectKey;
use shared::queue::{Queue, QueueError};
use shared::store::{
    ConversationStore, EraseCursor, OutboxStore, PrivacyRequestStore, QuarantineStore, RetentionReads, StoreError,
    Stores, all_pages,
};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

/// Items per batch: one BatchWriteItem round trip deletes 25, so a batch is 4 of them.
pub const BATCH_ITEMS: usize = 100;
/// Batches per invocation before the job is handed on to a fresh one (a continuation message),
/// well inside the function's timeout.
pub const DEFAULT_MAX_BATCHES: usize = 400;

/// The table name receipts count the conversation items under.
pub const CONVERSATIONS: &str = "conversations";
/// ... and the quarantined and held envelopes.
pub const QUARANTINE: &str = "quarantine";
/// ... and the stale outbound sends addressed to the person.
pub const OUTBOX: &str = "outbox";

const WORKER: &str = "erasure worker";

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("verification found {0} contacts or quarantined envelopes of the subject left; the request stays open")]
    Unverified(usize),
}

impl ErasureError {
    fn log_safe(&self) -> String {
        match self {
            Self::Store(e) => e.log_safe(),
            other => other.to_string(),
        }
    }
}

/// What one job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Erased, verified, receipted.
    Completed,
    /// Out of batches for this invocation: a continuation was queued.
    Paused,
    /// Nothing to do: unknown, unapproved or already closed.
    Skipped,
}

#[derive(Clone, Debug)]
pub struct ErasureWorker {
    conversations: Arc<dyn ConversationStore>,
    /// An offboarding's reach: every contact of its tenant.
    retention: Arc<dyn RetentionReads>,
    quarantine: Arc<dyn QuarantineStore>,
    requests: Arc<dyn PrivacyRequestStore>,
    queue: Arc<dyn Queue>,
    /// Where a dead-lettered STOP of the person goes before its quarantine entry is erased: the
    /// opt-out must be honoured, not erased with their data.
    optout: Arc<dyn Queue>,
    clock: SharedClock,
    max_batches: usize,
    /// Stale outbound sends addressed to an erased contact keep its message for an operator.
    outbox: Option<Arc<dyn OutboxStore>>,
}

/// The worker from its resources: the conversations and requests stores and its own queue
/// (continuations go back on it).
pub fn build(r: &impl Resources) -> Result<ErasureWorker, WiringError> {
    Ok(ErasureWorker::new(
        &r.stores(),
        r.queue(QueueKind::Erasure)?,
        r.queue(QueueKind::OptOut)?,
        r.clock(),
    )
    .with_outbox(r.outbox()))
}

fn digest(key: &shared::identity::SubjectKey) -> String {
    hex::encode(Sha256::digest(key.as_str().as_bytes()))
}

impl ErasureWorker {
    pub fn new(stores: &Stores, queue: Arc<dyn Queue>, optout: Arc<dyn Queue>, clock: SharedClock) -> Self {
        Self {
            conversations: stores.conversations.clone(),
            retention: stores.retention.clone(),
            quarantine: stores.quarantine.clone(),
            requests: stores.privacy_requests.clone(),
            queue,
            optout,
            clock,
            max_batches: DEFAULT_MAX_BATCHES,
            outbox: None,
        }
    }

    /// Erases the stale outbound sends of each contact too (every deployed worker has one).
    pub fn with_outbox(mut self, outbox: Arc<dyn OutboxStore>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// How many batches one invocation runs before handing the job on.
    pub fn with_max_batches(mut self, n: usize) -> Self {
        self.max_batches = n.max(1);
        self
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let failed = match serde_json::from_str::<ErasureJob>(record.body.as_deref().unwrap_or_default()) {
                Err(_) => {
                    // Only the deletion function writes this queue: a malformed job is a bug,
                    // kept in the dead-letter queue for a person to see.
                    tracing::error!(%message_id, "malformed erasure job");
                    true
                }
                Ok(job) => match self.run(&job).await {
                    Ok(outcome) => {
                        tracing::info!(request = %job.request, ?outcome, "erasure job done");
                        false
                    }
                    Err(e) => {
                        tracing::error!(request = %job.request, error = %e.log_safe(), "erasure job failed; SQS retries it");
                        true
                    }
                },
            };
            if failed {
                let mut f = BatchItemFailure::default();
                f.item_identifier = message_id;
                response.batch_item_failures.push(f);
            }
        }
        response
    }

    /// The contacts the request reaches now: every contact linked to one of its subject keys,
    /// expired or not, in its tenant scope.
    async fn reach(&self, r: &PrivacyRequest) -> Result<Vec<ReachedContact>, StoreError> {
        if r.offboarding {
            return self.tenant_contacts(r).await;
        }
        let mut found = Vec::new();
        for key in r.subject_keys() {
            for c in self.conversations.erasure_reach(key).await? {
                if r.tenant.as_ref().is_none_or(|t| *t == c.contact.tenant) {
                    found.push(c);
                }
            }
        }
        found.sort();
        found.dedup_by(|a, b| a.contact == b.contact);
        Ok(found)
    }

    /// An offboarding's reach: every contact of its tenant, expired or not, by the
    /// contacts-by-tenant index (the profile of each lists its links, which go with it).
    async fn tenant_contacts(&self, r: &PrivacyRequest) -> Result<Vec<ReachedContact>, StoreError> {
        let Some(tenant) = &r.tenant else {
            return Ok(Vec::new());
        };
        let every = Timestamp::from_unix_millis(i64::MAX);
        let retention = &self.retention;
        let due = all_pages(|p| async move { retention.contacts_due(tenant, every, &p).await }).await?;
        Ok(due
            .into_iter()
            .map(|d| ReachedContact {
                contact: ContactRef {
                    tenant: tenant.clone(),
                    contact: d.contact,
                },
                links: Vec::new(),
            })
            .collect())
    }

    /// An offboarding's quarantine: its tenant's opt-out review items (the envelopes Meta sends
    /// for its released accounts are unrouted now, and expire in 30 days).
    async fn tenant_reviews(&self, r: &PrivacyRequest) -> Result<Vec<QuarantineEntry>, StoreError> {
        let Some(tenant) = r.tenant.clone().filter(|_| r.offboarding) else {
            return Ok(Vec::new());
        };
        let bucket = &QuarantineBucket::OptOutReview { tenant };
        let quarantine = &self.quarantine;
        all_pages(|p| async move { quarantine.list(bucket, &p).await }).await
    }

    pub async fn run(&self, job: &ErasureJob) -> Result<Outcome, ErasureError> {
        let Some(mut r) = self.requests.get(job.request).await? else {
            tracing::warn!(request = %job.request, "erasure job for no stored request");
            return Ok(Outcome::Skipped);
        };
        if !r.erases() || !matches!(r.status, RequestStatus::Approved | RequestStatus::InProgress) {
            tracing::warn!(request = %r.id, status = r.status.as_str(), "erasure job for a request not approved");
            return Ok(Outcome::Skipped);
        }
        let now = self.clock.now();
        if r.status == RequestStatus::Approved {
            r.status = RequestStatus::InProgress;
            r.progress.started_at = Some(now);
            r.timeline.push(entry(now, "in_progress", None));
            r = self.save(&r).await?;
        }
        let erased_at = r.progress.started_at.unwrap_or(now);
        // The ledger first, so nothing from before the erasure is stored again while it runs or
        // after: the request's keys, then each contact's own links before its partition goes.
        for key in r.subject_keys() {
            self.conversations.record_erasure(key, erased_at).await?;
        }
        let reached = self.reach(&r).await?;
        // Quarantined and held envelopes that name the person by any key of theirs, before the
        // contacts whose links know the keys the request does not name are gone.
        let mut keys: Vec<&SubjectKey> = r.subject_keys().collect();
        keys.extend(reached.iter().flat_map(|c| c.links.iter()));
        keys.sort();
        keys.dedup();
        let mut held = 0;
        for key in keys {
            for entry in self.quarantine.find_subject(key).await? {
                // An opt-out command that failed every delivery is a STOP not yet honoured: it
                // goes back to the opt-out function (which keeps the suppression by subject key
                // only) before its copy here is erased.
                if entry.bucket
                    == (QuarantineBucket::DeadLettered {
                        source: DeadLetterSource::OptOut,
                    })
                {
                    self.optout.send_batch(std::slice::from_ref(&entry.envelope)).await?;
                }
                self.quarantine.delete(&entry).await?;
                held += 1;
            }
        }
        for entry in self.tenant_reviews(&r).await? {
            self.quarantine.delete(&entry).await?;
            held += 1;
        }
        if held > 0 {
            *r.progress.erased.entry(QUARANTINE.to_owned()).or_default() += held;
            r = self.save(&r).await?;
        }
        let mut batches = 0;
        if let Some(outbox) = &self.outbox {
            let mut sends = 0;
            for ReachedContact { contact, .. } in &reached {
                sends += outbox.erase_stale(&contact.tenant, &contact.contact).await?;
            }
            if sends > 0 {
                *r.progress.erased.entry(OUTBOX.to_owned()).or_default() += sends;
                r = self.save(&r).await?;
            }
        }
        for ReachedContact { contact, links } in reached {
            for link in &links {
                self.conversations.record_erasure(link, erased_at).await?;
            }
            let mut cursor = EraseCursor::default();
            while !cursor.done {
                if batches == self.max_batches {
                    let body = shared::queue::to_body(job).map_err(|e| QueueError::Backend(e.to_string()))?;
                    self.queue.send_batch(&[body]).await?;
                    return Ok(Outcome::Paused);
                }
                let before = cursor.deleted;
                cursor = self
                    .conversations
                    .erase_contact_batch(&contact.tenant, &contact.contact, cursor, BATCH_ITEMS)
                    .await?;
                batches += 1;
                *r.progress.erased.entry(CONVERSATIONS.to_owned()).or_default() += cursor.deleted - before;
                // A contact counts once something of it was deleted (an index entry read just
                // after its partition went names nothing).
                if cursor.done && cursor.deleted > 0 {
                    r.progress.contacts_erased += 1;
                }
                r = self.save(&r).await?;
                // Between batches the runtime may run anything else waiting (and a test may
                // stop the run here, as a timeout or a crash would).
                tokio::task::yield_now().await;
            }
        }
        self.verify_and_close(r).await
    }

    /// Writes the worker's change to its request. The sender may append a note (a status link
    /// sent) while the worker holds the request: that conflict keeps the note and writes the
    /// change again. Any other concurrent change fails the job; SQS redelivers it, and the worker
    /// resumes from the store.
    async fn save(&self, r: &PrivacyRequest) -> Result<PrivacyRequest, ErasureError> {
        let mut attempt = r.clone();
        for _ in 0..3 {
            match self.requests.update(&attempt).await {
                Err(StoreError::Conflict) => {
                    let stored = self.requests.get(attempt.id).await?.ok_or(StoreError::Conflict)?;
                    attempt = r.rebased_on_notes(&stored).ok_or(StoreError::Conflict)?;
                }
                other => return Ok(other?),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// Re-queries every index by the subject's keys. Anything left reopens the work (the job
    /// fails and SQS delivers it again); nothing left closes the request with its receipt.
    async fn verify_and_close(&self, mut r: PrivacyRequest) -> Result<Outcome, ErasureError> {
        let now = self.clock.now();
        let left = self.reach(&r).await?.len();
        let mut held = self.tenant_reviews(&r).await?.len();
        for key in r.subject_keys() {
            held += self.quarantine.find_subject(key).await?.len();
        }
        if left + held > 0 {
            r.timeline.push(entry(
                now,
                "reopened",
                Some(format!(
                    "verification found {left} contacts and {held} quarantined envelopes left"
                )),
            ));
            self.save(&r).await?;
            return Err(ErasureError::Unverified(left + held));
        }
        let mut notes = Vec::new();
        if r.subjects.iter().any(|s| s.kind == IdentifierKind::Email) {
            notes.push("email: no contact is linked to an e-mail address; messages reach us by WhatsApp number and Instagram account".to_owned());
        }
        if r.subjects.iter().any(|s| s.kind == IdentifierKind::MetaAppUserId) {
            notes.push("meta_app_user_id: a Meta app-scoped id names a user of the app (a tenant's administrator), about whom nothing is stored".to_owned());
        }
        if r.offboarding {
            notes.push("tenant offboarded: every conversation and opt-out review item of the tenant; its opt-out suppression entries, audit trail and privacy requests are kept for their own periods".to_owned());
        }
        let receipt = Receipt {
            started_at: r.progress.started_at.unwrap_or(now),
            finished_at: now,
            erased: r.progress.erased.clone(),
            contacts_erased: r.progress.contacts_erased,
            subject_key_digests: r.subject_keys().map(digest).collect(),
            no_data_found: r.progress.contacts_erased == 0,
            verified_at: Some(now),
            notes,
        };
        r.receipt = Some(receipt);
        r.timeline.push(entry(now, "verified", None));
        r.close(RequestStatus::Completed, now, WORKER, None);
        self.save(&r).await?;
        Ok(Outcome::Completed)
    }
}

fn entry(at: shared::timestamp::Timestamp, event: &str, reason: Option<String>) -> TimelineEntry {
    TimelineEntry {
        at,
        event: event.to_owned(),
        by: WORKER.to_owned(),
        reason,
    }
}
