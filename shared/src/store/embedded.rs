//! In-process adapters with the semantics of the DynamoDB ones (conditions, expiry filtering,
//! ordering, cursor scoping). They serve the local stack and fast unit tests; the conformance suite
//! runs the same cases against both.

use super::keys;
use super::profile::{self, ProfileState};
use super::{
    AuditStore, ConversationStore, Cursor, DueContact, EraseCursor, OptOutStore, Page, PageRequest,
    PrivacyRequestStore, QuarantineStore, StoreError, Stores, SweepOutcome, TenantStore, WriteOutcome, check_item_size,
};
use super::{OutboxStore, PrincipalStore, RetentionSweeps, TimeRange};
use crate::access::{Principal, PrincipalId};
use crate::audit::{self, ChainHead, ChainLink, Checkpoint};
use crate::clock::SharedClock;
use crate::compliance::{Job, JobRun};
use crate::domain::optout::Expect;
use crate::domain::{
    ApplyOutcome, AuditChain, AuditEvent, ChannelAccount, Contact, ContactId, ContactRef, ContactUpsert, Created,
    Message, MetaMessageId, OptOutRecord, OptOutScope, OptState, PrivacyRequest, QuarantineBucket, QuarantineEntry,
    ReachedContact, RequestId, StatusUpdate, Tenant, TenantEvent, TenantId,
};
use crate::identity::SubjectKey;
use crate::outbound::{Claim, OutboxEntry, OutboxState, Outcome};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Every store, in memory, sharing one clock.
pub fn stores(clock: SharedClock) -> Stores {
    stores_and_sweeps(clock).0
}

/// Every store, and the retention sweeps over the same data (what the cleanup deletes with).
pub fn stores_and_sweeps(clock: SharedClock) -> (Stores, Arc<dyn RetentionSweeps>) {
    let all = stack(clock);
    (all.stores, all.sweeps)
}

/// Every port over one set of in-process data: the stores, the retention sweeps and the
/// sender's outbox (which reads the conversations for its window check).
#[derive(Clone, Debug)]
pub struct EmbeddedStack {
    pub stores: Stores,
    pub sweeps: Arc<dyn RetentionSweeps>,
    pub outbox: Arc<dyn OutboxStore>,
}

pub fn stack(clock: SharedClock) -> EmbeddedStack {
    let outbox_clock = clock.clone();
    let retention = Arc::new(EmbeddedRetention {
        opt_outs: Arc::new(EmbeddedOptOutStore::default()),
        conversations: Arc::new(EmbeddedConversationStore::new(clock.clone())),
        tenants: Arc::new(EmbeddedTenantStore::default()),
        quarantine: Arc::new(EmbeddedQuarantineStore::new(clock.clone())),
        audit: Arc::new(EmbeddedAuditStore::new(clock.clone())),
        requests: Arc::new(EmbeddedPrivacyRequestStore::new(clock)),
    });
    let stores = Stores {
        conversations: retention.conversations.clone(),
        opt_outs: retention.opt_outs.clone(),
        privacy_requests: retention.requests.clone(),
        audit: retention.audit.clone(),
        tenants: retention.tenants.clone(),
        quarantine: retention.quarantine.clone(),
        principals: Arc::new(EmbeddedPrincipalStore::default()),
        retention: retention.clone(),
    };
    let outbox = Arc::new(EmbeddedOutboxStore {
        clock: outbox_clock,
        entries: Mutex::default(),
        slots: Mutex::default(),
        conversations: retention.conversations.clone(),
    });
    EmbeddedStack {
        stores,
        sweeps: retention,
        outbox,
    }
}

/// The retention ports over the embedded stores' own data.
#[derive(Debug)]
pub struct EmbeddedRetention {
    opt_outs: Arc<EmbeddedOptOutStore>,
    conversations: Arc<EmbeddedConversationStore>,
    tenants: Arc<EmbeddedTenantStore>,
    quarantine: Arc<EmbeddedQuarantineStore>,
    audit: Arc<EmbeddedAuditStore>,
    requests: Arc<EmbeddedPrivacyRequestStore>,
}

crate::store::retention_ports!(EmbeddedRetention);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated: every update is a
    // single insert or remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pages over items already sorted by their sort key, as a DynamoDB query would.
fn page_of<T>(sorted: Vec<(String, T)>, page: &PageRequest, scope: &str) -> Result<Page<T>, StoreError> {
    let limit = page.checked_limit()?;
    let after: Option<String> = page.cursor.as_ref().map(|c| c.decode(scope)).transpose()?;
    let mut rest = sorted
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .peekable();
    let mut items = Vec::new();
    let mut last = None;
    while items.len() < limit {
        match rest.next() {
            Some((k, v)) => {
                last = Some(k);
                items.push(v);
            }
            None => break,
        }
    }
    let next = match (rest.peek(), last) {
        (Some(_), Some(k)) => Some(Cursor::encode(scope, &k)?),
        _ => None,
    };
    Ok(Page { items, next })
}

/// One contact's partition, item for item as the DynamoDB adapter stores it.
#[derive(Debug, Default)]
struct ContactState {
    profile: Option<ProfileState>,
    links: BTreeMap<SubjectKey, Expiry>,
    /// By `keys::message_sk`: event order.
    messages: BTreeMap<String, Message>,
    tombstones: BTreeMap<String, (MetaMessageId, Expiry)>,
    gone: BTreeMap<MetaMessageId, Expiry>,
    statuses: BTreeMap<MetaMessageId, StatusUpdate>,
}

impl ContactState {
    fn len(&self) -> usize {
        usize::from(self.profile.is_some())
            + self.links.len()
            + self.messages.len()
            + self.tombstones.len()
            + self.gone.len()
            + self.statuses.len()
    }

    fn live_profile(&self, now: Timestamp) -> Option<&ProfileState> {
        self.profile.as_ref().filter(|p| !p.expires_at.is_expired(now))
    }
}

fn contact_of(pk: &str, p: &ProfileState) -> Option<Contact> {
    let (tenant, contact) = keys::parse_contact_pk(pk)?;
    Some(Contact {
        tenant,
        contact,
        profile_name: p.profile_name.clone(),
        identifiers: p.identifiers.clone(),
        first_seen: p.first_seen,
        last_seen: p.last_seen,
        expires_at: p.expires_at,
        name_rectified_at: p.name_rectified_at,
    })
}

#[derive(Debug)]
pub struct EmbeddedConversationStore {
    clock: SharedClock,
    /// Keyed by the same partition key the DynamoDB adapter uses.
    contacts: Mutex<BTreeMap<String, ContactState>>,
    /// The erasure ledger: when each subject key's data was erased.
    erased: Mutex<BTreeMap<SubjectKey, Timestamp>>,
}

impl EmbeddedConversationStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            contacts: Mutex::default(),
            erased: Mutex::default(),
        }
    }
}

#[async_trait]
impl ConversationStore for EmbeddedConversationStore {
    async fn upsert_contact(&self, u: &ContactUpsert) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now();
        let mut contacts = lock(&self.contacts);
        let state = contacts.entry(keys::contact_pk(&u.tenant, &u.contact)).or_default();
        if state.live_profile(now).is_none()
            && let Some(first) = u.identifiers.first()
            && lock(&self.erased)
                .get(&first.subject_key)
                .is_some_and(|at| u.seen_at <= *at)
        {
            return Ok(WriteOutcome::Erased);
        }
        let Some(mut change) = profile::rewrite(state.live_profile(now), u) else {
            return Ok(WriteOutcome::Unchanged);
        };
        // An expired profile TTL has not removed: its items may still be stored, and the new
        // profile keeps pointing the sweep at them.
        if state.live_profile(now).is_none()
            && let Some(leftover) = state.profile.as_ref().map(|p| p.oldest)
        {
            change.profile.oldest = change.profile.oldest.min(leftover);
        }
        if let Some(contact) = contact_of(&keys::contact_pk(&u.tenant, &u.contact), &change.profile) {
            check_item_size(&contact)?;
        }
        let mut identifiers = change.profile.identifiers.clone();
        identifiers.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        let expires_at = change.profile.expires_at;
        state.profile = Some(ProfileState {
            identifiers,
            ..change.profile
        });
        for link in change.links {
            let e = state.links.entry(link.subject_key).or_insert(expires_at);
            *e = (*e).max(expires_at);
        }
        Ok(if change.forward {
            WriteOutcome::Written
        } else {
            WriteOutcome::Unchanged
        })
    }

    async fn rectify_profile_name(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut contacts = lock(&self.contacts);
        let Some(profile) = contacts
            .get_mut(&keys::contact_pk(tenant, contact))
            .and_then(|s| s.profile.as_mut())
            .filter(|p| !p.expires_at.is_expired(now))
        else {
            return Ok(false);
        };
        profile.profile_name = Some(name.to_owned());
        profile.name_rectified_at = Some(at);
        Ok(true)
    }

    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<Contact>, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(tenant, contact);
        let contacts = lock(&self.contacts);
        Ok(contacts
            .get(&pk)
            .and_then(|s| s.live_profile(now))
            .and_then(|p| contact_of(&pk, p)))
    }

    async fn list_contacts(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Contact>, StoreError> {
        let now = self.clock.now();
        // The DynamoDB index orders a tenant's contacts by their oldest item.
        let mut sorted: Vec<(String, Contact)> = lock(&self.contacts)
            .iter()
            .filter_map(|(pk, s)| s.live_profile(now).map(|p| (pk, p)))
            .filter_map(|(pk, p)| {
                let c = contact_of(pk, p)?;
                (&c.tenant == tenant).then(|| (format!("{}#{pk}", p.oldest.sort_key()), c))
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        page_of(sorted, page, &format!("contacts:{tenant}"))
    }

    async fn put_message(&self, m: &Message) -> Result<WriteOutcome, StoreError> {
        check_item_size(m)?;
        let now = self.clock.now();
        let mut contacts = lock(&self.contacts);
        let state = contacts.entry(keys::contact_pk(&m.tenant, &m.contact)).or_default();
        let original = keys::original_of(&m.id);
        let gone = state
            .gone
            .iter()
            .any(|(id, e)| (id == &m.id || id.as_str() == original) && !e.is_expired(now));
        let sk = keys::message_sk(m.sent_at, &m.id);
        let live_copy = state.messages.get(&sk).is_some_and(|s| !s.expires_at.is_expired(now));
        let tombstoned = state.tombstones.get(&sk).is_some_and(|(_, e)| !e.is_expired(now));
        if gone || live_copy || tombstoned {
            return Ok(WriteOutcome::Unchanged);
        }
        state.tombstones.remove(&sk);
        state.messages.insert(sk, m.clone());
        Ok(WriteOutcome::Written)
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(tenant, contact);
        let sorted: Vec<(String, Message)> = lock(&self.contacts)
            .get(&pk)
            .map(|s| {
                s.messages
                    .iter()
                    .filter(|(_, m)| !m.expires_at.is_expired(now))
                    .map(|(sk, m)| (sk.clone(), m.clone()))
                    .collect()
            })
            .unwrap_or_default();
        page_of(sorted, page, &format!("messages:{pk}"))
    }

    async fn get_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        sent_at: Timestamp,
        message: &MetaMessageId,
    ) -> Result<Option<Message>, StoreError> {
        let now = self.clock.now();
        Ok(lock(&self.contacts)
            .get(&keys::contact_pk(tenant, contact))
            .and_then(|s| s.messages.get(&keys::message_sk(sent_at, message)).cloned())
            .filter(|m| !m.expires_at.is_expired(now)))
    }

    async fn delete_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
        tombstone_expires: Expiry,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut contacts = lock(&self.contacts);
        let state = contacts.entry(keys::contact_pk(tenant, contact)).or_default();
        let edits = keys::edits_prefix(message);
        state.messages.retain(|_, m| !m.id.as_str().starts_with(&edits));
        let stored = state
            .messages
            .iter()
            .find(|(_, m)| m.id == *message)
            .map(|(sk, _)| sk.clone());
        // As in DynamoDB: the marker always, the tombstone where the message was.
        state.gone.insert(message.clone(), tombstone_expires);
        if let Some(sk) = stored {
            let removed = state.messages.remove(&sk);
            state.tombstones.insert(sk, (message.clone(), tombstone_expires));
            return Ok(removed.is_some_and(|m| !m.expires_at.is_expired(now)));
        }
        Ok(false)
    }

    async fn put_status(&self, st: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        check_item_size(st)?;
        let now = self.clock.now();
        let mut contacts = lock(&self.contacts);
        let state = contacts.entry(keys::contact_pk(&st.tenant, &st.contact)).or_default();
        match state.statuses.get(&st.message_id) {
            Some(stored) if stored.state >= st.state && !stored.expires_at.is_expired(now) => {
                Ok(WriteOutcome::Unchanged)
            }
            _ => {
                state.statuses.insert(st.message_id.clone(), st.clone());
                Ok(WriteOutcome::Written)
            }
        }
    }

    async fn get_status(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
    ) -> Result<Option<StatusUpdate>, StoreError> {
        let now = self.clock.now();
        Ok(lock(&self.contacts)
            .get(&keys::contact_pk(tenant, contact))
            .and_then(|s| s.statuses.get(message).cloned())
            .filter(|s| !s.expires_at.is_expired(now)))
    }

    async fn list_statuses(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<StatusUpdate>, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(tenant, contact);
        let sorted: Vec<(String, StatusUpdate)> = lock(&self.contacts)
            .get(&pk)
            .map(|s| {
                s.statuses
                    .iter()
                    .filter(|(_, st)| !st.expires_at.is_expired(now))
                    .map(|(id, st)| (keys::status_sk(id), st.clone()))
                    .collect()
            })
            .unwrap_or_default();
        page_of(sorted, page, &format!("statuses:{pk}"))
    }

    async fn find_subject(&self, key: &SubjectKey) -> Result<Vec<ContactRef>, StoreError> {
        let now = self.clock.now();
        let mut found: Vec<ContactRef> = lock(&self.contacts)
            .iter()
            .filter(|(_, s)| s.links.get(key).is_some_and(|e| !e.is_expired(now)))
            .filter_map(|(pk, _)| keys::parse_contact_pk(pk))
            .map(|(tenant, contact)| ContactRef { tenant, contact })
            .collect();
        found.sort();
        Ok(found)
    }

    async fn erasure_reach(&self, key: &SubjectKey) -> Result<Vec<ReachedContact>, StoreError> {
        let mut found: Vec<ReachedContact> = lock(&self.contacts)
            .iter()
            .filter(|(_, s)| s.links.contains_key(key))
            .filter_map(|(pk, s)| {
                let (tenant, contact) = keys::parse_contact_pk(pk)?;
                Some(ReachedContact {
                    contact: ContactRef { tenant, contact },
                    links: s.links.keys().cloned().collect(),
                })
            })
            .collect();
        found.sort();
        Ok(found)
    }

    async fn record_erasure(&self, key: &SubjectKey, at: Timestamp) -> Result<(), StoreError> {
        let mut erased = lock(&self.erased);
        let e = erased.entry(key.clone()).or_insert(at);
        *e = (*e).max(at);
        Ok(())
    }

    async fn erased_at(&self, key: &SubjectKey) -> Result<Option<Timestamp>, StoreError> {
        Ok(lock(&self.erased).get(key).copied())
    }

    async fn erase_contact_batch(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cursor: EraseCursor,
        max_items: usize,
    ) -> Result<EraseCursor, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let pk = keys::contact_pk(tenant, contact);
        let mut contacts = lock(&self.contacts);
        let Some(state) = contacts.get_mut(&pk) else {
            return Ok(EraseCursor {
                deleted: cursor.deleted,
                done: true,
            });
        };
        let mut deleted = 0;
        // The DynamoDB order: messages (tombstones among them), statuses, unsend markers, then
        // the profile with its links.
        while deleted < max_items {
            let first_message = state.messages.keys().next().cloned();
            let first_tombstone = state.tombstones.keys().next().cloned();
            let removed = match (first_message, first_tombstone) {
                (Some(m), Some(t)) if t < m => state.tombstones.remove(&t).is_some(),
                (Some(m), _) => state.messages.remove(&m).is_some(),
                (None, Some(t)) => state.tombstones.remove(&t).is_some(),
                (None, None) => {
                    if let Some(k) = state.statuses.keys().next().cloned() {
                        state.statuses.remove(&k).is_some()
                    } else if let Some(k) = state.gone.keys().next().cloned() {
                        state.gone.remove(&k).is_some()
                    } else {
                        // The profile and its links go together, as DynamoDB's transaction
                        // does, in a batch with room for all of them (or one of their own).
                        let group = state.links.len() + usize::from(state.profile.is_some());
                        if group == 0 || (deleted > 0 && deleted + group > max_items) {
                            break;
                        }
                        state.links.clear();
                        state.profile = None;
                        deleted += group;
                        break;
                    }
                }
            };
            if !removed {
                break;
            }
            deleted += 1;
        }
        let done = state.len() == 0;
        if done {
            contacts.remove(&pk);
        }
        Ok(EraseCursor {
            deleted: cursor.deleted + deleted as u64,
            done,
        })
    }
}

#[derive(Debug, Default)]
pub struct EmbeddedOptOutStore {
    /// (partition, sort key) as in DynamoDB: current states and history entries.
    items: Mutex<BTreeMap<(String, String), OptOutRecord>>,
    /// STOPs applied, by (day, tenant).
    applied: Mutex<BTreeMap<(String, TenantId), u64>>,
}

/// The retention report's part of this store, reached only through `RetentionReads`.
impl EmbeddedOptOutStore {
    /// STOPs applied per tenant on the UTC days from `from` to `to` (both included).
    pub(crate) async fn optouts_applied(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BTreeMap<TenantId, u64>, StoreError> {
        let (from, to) = (crate::audit::utc_day(from), crate::audit::utc_day(to));
        let mut out = BTreeMap::new();
        for ((day, tenant), n) in lock(&self.applied).iter() {
            if *day >= from && *day <= to {
                *out.entry(tenant.clone()).or_default() += n;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl OptOutStore for EmbeddedOptOutStore {
    /// Both writes under one lock, with the DynamoDB transaction's conditions and outcomes.
    async fn apply(&self, r: &OptOutRecord, expect: Expect) -> Result<ApplyOutcome, StoreError> {
        let pk = keys::optout_pk(&r.tenant, &r.subject_key);
        let mut items = lock(&self.items);
        let history_key = (pk.clone(), keys::optout_history_sk(r.event_at, r.scope, r.state));
        if items.contains_key(&history_key) {
            return Ok(ApplyOutcome::Replay);
        }
        let state_key = (pk, keys::optout_state_sk(r.scope));
        let stored = items.get(&state_key);
        let expected = match expect {
            Expect::Any => true,
            Expect::State(state) => stored.map(|s| s.state) == state,
        };
        if !expected || stored.is_some_and(|s| !r.supersedes(s)) {
            return Ok(ApplyOutcome::Stale);
        }
        let stored = OptOutRecord {
            confirmed: false,
            ..r.clone()
        };
        items.insert(state_key, stored.clone());
        items.insert(history_key, stored);
        if r.state == OptState::OptedOut {
            *lock(&self.applied)
                .entry((crate::audit::utc_day(r.event_at), r.tenant.clone()))
                .or_default() += 1;
        }
        Ok(ApplyOutcome::Applied)
    }

    async fn mark_confirmed(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        scope: OptOutScope,
        event_at: Timestamp,
        state: OptState,
    ) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        if let Some(r) = items.get_mut(&(keys::optout_pk(tenant, key), keys::optout_state_sk(scope)))
            && r.event_at == event_at
            && r.state == state
        {
            r.confirmed = true;
        }
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        scope: OptOutScope,
    ) -> Result<Option<OptOutRecord>, StoreError> {
        Ok(lock(&self.items)
            .get(&(keys::optout_pk(tenant, key), keys::optout_state_sk(scope)))
            .cloned())
    }

    async fn history(
        &self,
        tenant: &TenantId,
        key: &SubjectKey,
        page: &PageRequest,
    ) -> Result<Page<OptOutRecord>, StoreError> {
        let pk = keys::optout_pk(tenant, key);
        let sorted = lock(&self.items)
            .iter()
            .filter(|((p, sk), _)| p == &pk && sk.starts_with(keys::OPTOUT_HISTORY_PREFIX))
            .map(|((_, sk), r)| (sk.clone(), r.clone()))
            .collect();
        page_of(sorted, page, &format!("optout:{pk}"))
    }
}

#[derive(Debug, Default)]
struct RequestState {
    requests: BTreeMap<RequestId, PrivacyRequest>,
    /// `keys::request_claim_pk` of every open request's subjects.
    claims: BTreeMap<String, RequestId>,
}

#[derive(Debug)]
pub struct EmbeddedPrivacyRequestStore {
    clock: SharedClock,
    state: Mutex<RequestState>,
}

impl EmbeddedPrivacyRequestStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            state: Mutex::default(),
        }
    }
}

fn request_claims(r: &PrivacyRequest) -> Vec<String> {
    r.subject_keys()
        .map(|k| keys::request_claim_pk(r.kind, r.tenant.as_ref(), k))
        .collect()
}

#[async_trait]
impl PrivacyRequestStore for EmbeddedPrivacyRequestStore {
    async fn create(&self, r: &PrivacyRequest) -> Result<Created, StoreError> {
        let mut state = lock(&self.state);
        if state.requests.contains_key(&r.id) {
            return Ok(Created::Existing(r.id));
        }
        let claims = if r.status.is_open() {
            request_claims(r)
        } else {
            Vec::new()
        };
        if let Some(existing) = claims.iter().find_map(|c| state.claims.get(c)) {
            return Ok(Created::Existing(*existing));
        }
        for c in claims {
            state.claims.insert(c, r.id);
        }
        state.requests.insert(r.id, r.clone());
        Ok(Created::New)
    }

    async fn get(&self, id: RequestId) -> Result<Option<PrivacyRequest>, StoreError> {
        let now = self.clock.now();
        Ok(lock(&self.state)
            .requests
            .get(&id)
            .filter(|r| !r.expires_at.is_some_and(|e| e.is_expired(now)))
            .cloned())
    }

    async fn update(&self, r: &PrivacyRequest) -> Result<PrivacyRequest, StoreError> {
        let mut state = lock(&self.state);
        match state.requests.get(&r.id) {
            // A closed request is final: its receipt cannot change, nor its released claims.
            Some(stored) if stored.version == r.version && stored.status.is_open() => {
                let mut next = r.clone();
                next.version += 1;
                if !next.status.is_open() {
                    for c in request_claims(&next) {
                        state.claims.remove(&c);
                    }
                }
                state.requests.insert(r.id, next.clone());
                Ok(next)
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn open_due_before(&self, until: Timestamp, page: &PageRequest) -> Result<Page<PrivacyRequest>, StoreError> {
        let sorted = lock(&self.state)
            .requests
            .values()
            .filter(|r| r.status.is_open() && r.due_at <= until)
            .map(|r| (format!("{}#{}", r.due_at.sort_key(), r.id), r.clone()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        page_of(sorted, page, &format!("open-due:{}", until.unix_millis()))
    }

    async fn erasures_closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError> {
        let now = self.clock.now();
        let sorted = lock(&self.state)
            .requests
            .values()
            .filter(|r| r.status == crate::domain::RequestStatus::Completed && r.erases())
            .filter(|r| !r.expires_at.is_some_and(|e| e.is_expired(now)))
            .filter_map(|r| r.closed_at.filter(|c| (since..=until).contains(c)).map(|c| (c, r)))
            .map(|(c, r)| (format!("{}#{}", c.sort_key(), r.id), r.clone()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        page_of(
            sorted,
            page,
            &format!("erasures-closed:{}:{}", since.unix_millis(), until.unix_millis()),
        )
    }
}

#[derive(Debug, Default)]
struct ChainState {
    /// By `keys::audit_event_sk`: time, then number.
    events: BTreeMap<String, ChainLink>,
    head: Option<ChainHead>,
    checkpoints: BTreeMap<String, Checkpoint>,
}

#[derive(Debug)]
pub struct EmbeddedAuditStore {
    clock: SharedClock,
    chains: Mutex<BTreeMap<AuditChain, ChainState>>,
}

impl EmbeddedAuditStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            chains: Mutex::default(),
        }
    }
}

#[async_trait]
impl AuditStore for EmbeddedAuditStore {
    async fn append(&self, e: &AuditEvent) -> Result<ChainLink, StoreError> {
        let mut chains = lock(&self.chains);
        let state = chains.entry(e.chain.clone()).or_default();
        let next = audit::next(state.head.as_ref(), e);
        let sk = keys::audit_event_sk(next.link.event.at, next.link.seq);
        // As DynamoDB's condition: a stored event is never overwritten (a chain restarted after
        // its head was deleted cannot replace what is there).
        if state.events.contains_key(&sk) {
            return Err(StoreError::Conflict);
        }
        state.events.insert(sk, next.link.clone());
        if let Some(cp) = next.checkpoint {
            state.checkpoints.insert(cp.day.clone(), cp);
        }
        state.head = Some(next.head);
        Ok(next.link)
    }

    async fn list(
        &self,
        chain: &AuditChain,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<ChainLink>, StoreError> {
        let now = self.clock.now();
        let (first, last) = keys::audit_event_range(range.from, range.to);
        let chains = lock(&self.chains);
        let sorted = chains.get(chain).filter(|_| first <= last).map_or_else(Vec::new, |c| {
            c.events
                .range(first..=last)
                .filter(|(_, l)| !l.event.expires_at.is_expired(now))
                .map(|(k, l)| (k.clone(), l.clone()))
                .collect()
        });
        let scope = keys::audit_list_scope(chain, range.from, range.to);
        page_of(sorted, page, &scope)
    }

    async fn head(&self, chain: &AuditChain) -> Result<Option<ChainHead>, StoreError> {
        Ok(lock(&self.chains).get(chain).and_then(|c| c.head.clone()))
    }

    async fn checkpoints(&self, chain: &AuditChain) -> Result<Vec<Checkpoint>, StoreError> {
        let now = self.clock.now();
        Ok(lock(&self.chains).get(chain).map_or_else(Vec::new, |c| {
            c.checkpoints
                .values()
                .filter(|cp| !cp.keep_until.is_expired(now))
                .cloned()
                .collect()
        }))
    }
}

#[derive(Debug, Default)]
pub struct EmbeddedPrincipalStore {
    principals: Mutex<BTreeMap<PrincipalId, Principal>>,
}

#[async_trait]
impl PrincipalStore for EmbeddedPrincipalStore {
    async fn get(&self, id: &PrincipalId) -> Result<Option<Principal>, StoreError> {
        Ok(lock(&self.principals).get(id).cloned())
    }

    async fn put(&self, p: &Principal) -> Result<(), StoreError> {
        lock(&self.principals).insert(p.id.clone(), p.clone());
        Ok(())
    }

    async fn delete(&self, id: &PrincipalId) -> Result<bool, StoreError> {
        Ok(lock(&self.principals).remove(id).is_some())
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Principal>, StoreError> {
        let sorted = lock(&self.principals)
            .iter()
            .map(|(k, p)| (k.as_str().to_owned(), p.clone()))
            .collect();
        page_of(sorted, page, "principals")
    }
}

#[derive(Debug, Default)]
struct TenantState {
    jobs: BTreeMap<Job, JobRun>,
    tenants: BTreeMap<TenantId, Tenant>,
    claims: BTreeMap<ChannelAccount, TenantId>,
    events: BTreeMap<(TenantId, String), TenantEvent>,
}

#[derive(Debug, Default)]
pub struct EmbeddedTenantStore {
    state: Mutex<TenantState>,
}

#[async_trait]
impl TenantStore for EmbeddedTenantStore {
    async fn register(&self, t: &Tenant) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if let Some(a) = t
            .accounts
            .iter()
            .find(|a| st.claims.get(*a).is_some_and(|owner| owner != &t.id))
        {
            return Err(StoreError::AccountTaken {
                channel: a.channel,
                account_id: a.account_id.clone(),
            });
        }
        st.claims.retain(|a, owner| owner != &t.id || t.accounts.contains(a));
        for a in &t.accounts {
            st.claims.insert(a.clone(), t.id.clone());
        }
        st.tenants.insert(t.id.clone(), t.clone());
        Ok(())
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        Ok(lock(&self.state).tenants.get(id).cloned())
    }

    async fn resolve(&self, account: &ChannelAccount) -> Result<Option<TenantId>, StoreError> {
        Ok(lock(&self.state).claims.get(account).cloned())
    }

    async fn record_event(&self, e: &TenantEvent) -> Result<WriteOutcome, StoreError> {
        check_item_size(e)?;
        let mut st = lock(&self.state);
        let k = (e.tenant.clone(), keys::tenant_event_sk(&e.id));
        if st.events.contains_key(&k) {
            return Ok(WriteOutcome::Unchanged);
        }
        st.events.insert(k, e.clone());
        Ok(WriteOutcome::Written)
    }

    async fn list_events(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<TenantEvent>, StoreError> {
        let sorted = lock(&self.state)
            .events
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, sk), e)| (sk.clone(), e.clone()))
            .collect();
        page_of(sorted, page, &format!("events:{tenant}"))
    }
}

#[derive(Debug)]
pub struct EmbeddedQuarantineStore {
    clock: SharedClock,
    entries: Mutex<BTreeMap<(String, String), QuarantineEntry>>,
}

impl EmbeddedQuarantineStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            entries: Mutex::default(),
        }
    }
}

#[async_trait]
impl QuarantineStore for EmbeddedQuarantineStore {
    async fn put(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        let k = (keys::quarantine_pk(&e.bucket), keys::quarantine_sk(e.received_at, e.id));
        lock(&self.entries).insert(k, e.clone());
        Ok(())
    }

    async fn get(
        &self,
        bucket: &QuarantineBucket,
        received_at: Timestamp,
        id: uuid::Uuid,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        let now = self.clock.now();
        let k = (keys::quarantine_pk(bucket), keys::quarantine_sk(received_at, id));
        Ok(lock(&self.entries)
            .get(&k)
            .filter(|e| !e.expires_at.is_some_and(|x| x.is_expired(now)))
            .cloned())
    }

    async fn list(&self, bucket: &QuarantineBucket, page: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError> {
        let now = self.clock.now();
        let pk = keys::quarantine_pk(bucket);
        let sorted = lock(&self.entries)
            .iter()
            .filter(|((p, _), e)| p == &pk && !e.expires_at.is_some_and(|x| x.is_expired(now)))
            .map(|((_, sk), e)| (sk.clone(), e.clone()))
            .collect();
        page_of(sorted, page, &format!("quarantine:{pk}"))
    }

    async fn delete(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        lock(&self.entries).remove(&(keys::quarantine_pk(&e.bucket), keys::quarantine_sk(e.received_at, e.id)));
        Ok(())
    }

    async fn find_subject(&self, key: &SubjectKey) -> Result<Vec<QuarantineEntry>, StoreError> {
        Ok(lock(&self.entries)
            .values()
            .filter(|e| e.subject_keys.contains(key))
            .cloned()
            .collect())
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl EmbeddedConversationStore {
    pub(crate) async fn contacts_due(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<DueContact>, StoreError> {
        let mut sorted: Vec<(String, DueContact)> = lock(&self.contacts)
            .iter()
            .filter_map(|(pk, s)| {
                let p = s.profile.as_ref().filter(|p| p.oldest <= cutoff)?;
                let (t, contact) = keys::parse_contact_pk(pk)?;
                (&t == tenant).then(|| {
                    (
                        format!("{}#{pk}", p.oldest.sort_key()),
                        DueContact {
                            contact,
                            oldest: p.oldest,
                        },
                    )
                })
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        page_of(sorted, page, &format!("due:{tenant}:{}", cutoff.unix_millis()))
    }

    pub(crate) async fn oldest_item(&self, tenant: &TenantId) -> Result<Option<Timestamp>, StoreError> {
        let prefix = format!("{tenant}#");
        Ok(lock(&self.contacts)
            .iter()
            .filter(|(pk, _)| pk.starts_with(&prefix))
            .filter_map(|(_, s)| s.profile.as_ref().map(|p| p.oldest))
            .min())
    }

    pub(crate) async fn sweep_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cutoff: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let pk = keys::contact_pk(tenant, contact);
        let (first, last) = keys::messages_until(cutoff);
        let mut contacts = lock(&self.contacts);
        let Some(state) = contacts.get_mut(&pk) else {
            return Ok(SweepOutcome {
                done: true,
                ..SweepOutcome::default()
            });
        };
        // Messages and tombstones share one key range in DynamoDB: oldest first, across both.
        let mut due: Vec<String> = state
            .messages
            .keys()
            .chain(state.tombstones.keys())
            .filter(|k| **k >= first && **k <= last)
            .cloned()
            .collect();
        due.sort();
        let full = due.len() >= max_items;
        let mut out = SweepOutcome::default();
        for k in due.into_iter().take(max_items) {
            let removed = state.messages.remove(&k).is_some() | state.tombstones.remove(&k).is_some();
            out.deleted += u64::from(removed);
        }
        if full {
            return Ok(out);
        }
        let before = state.statuses.len();
        state.statuses.retain(|_, st| st.at > cutoff);
        out.deleted += (before - state.statuses.len()) as u64;
        let remaining = state
            .messages
            .keys()
            .chain(state.tombstones.keys())
            .filter_map(|k| keys::message_sk_time(k))
            .chain(state.statuses.values().map(|st| st.at))
            .min();
        out.done = true;
        let now = self.clock.now();
        match (remaining, state.profile.as_mut()) {
            (_, None) => {}
            (Some(oldest), Some(p)) => p.oldest = p.oldest.max(oldest),
            // Changed by events that store no item: within retention until its last event.
            (None, Some(p)) if p.last_seen > cutoff => p.oldest = p.oldest.max(p.last_seen),
            (None, Some(_)) => {
                out.deleted += (state.links.len() + 1) as u64;
                state.links.clear();
                state.profile = None;
                out.contact_gone = true;
                let before = state.gone.len();
                state.gone.retain(|_, e| !e.is_expired(now));
                out.deleted += (before - state.gone.len()) as u64;
            }
        }
        if state.len() == 0 {
            contacts.remove(&pk);
        }
        Ok(out)
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl EmbeddedTenantStore {
    pub(crate) async fn tenant_ids(&self, page: &PageRequest) -> Result<Page<TenantId>, StoreError> {
        let sorted = lock(&self.state)
            .tenants
            .keys()
            .map(|t| (t.as_str().to_owned(), t.clone()))
            .collect();
        page_of(sorted, page, "tenants")
    }

    pub(crate) async fn record_job_run(&self, run: &JobRun) -> Result<(), StoreError> {
        lock(&self.state).jobs.insert(run.job, run.clone());
        Ok(())
    }

    pub(crate) async fn last_job_run(&self, job: Job) -> Result<Option<JobRun>, StoreError> {
        Ok(lock(&self.state).jobs.get(&job).cloned())
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl EmbeddedQuarantineStore {
    pub(crate) async fn expiring_buckets(&self) -> Result<Vec<QuarantineBucket>, StoreError> {
        let mut buckets: Vec<QuarantineBucket> = crate::domain::EXPIRING_BUCKETS.to_vec();
        for e in lock(&self.entries).values() {
            if matches!(e.bucket, QuarantineBucket::Unrouted { .. }) && !buckets.contains(&e.bucket) {
                buckets.push(e.bucket.clone());
            }
        }
        Ok(buckets)
    }

    pub(crate) async fn sweep_quarantine(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let pk = keys::quarantine_pk(bucket);
        let mut entries = lock(&self.entries);
        let due: Vec<(String, String)> = entries
            .iter()
            .filter(|((p, _), _)| *p == pk)
            .filter(|(_, e)| e.expires_at.is_some())
            .take_while(|(_, e)| e.expires_at.is_some_and(|x| x.as_timestamp() <= expired_by))
            .map(|(k, _)| k.clone())
            .take(max_items + 1)
            .collect();
        let mut out = SweepOutcome {
            done: due.len() <= max_items,
            ..SweepOutcome::default()
        };
        for k in due.iter().take(max_items) {
            out.deleted += u64::from(dry || entries.remove(k).is_some());
        }
        Ok(out)
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl EmbeddedAuditStore {
    pub(crate) async fn sweep_audit(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let mut chains = lock(&self.chains);
        let Some(state) = chains.get_mut(chain) else {
            return Ok(SweepOutcome {
                done: true,
                ..SweepOutcome::default()
            });
        };
        let mut out = SweepOutcome::default();
        let events: Vec<String> = state
            .events
            .iter()
            .take_while(|(_, l)| l.event.expires_at.as_timestamp() <= expired_by)
            .map(|(k, _)| k.clone())
            .take(max_items + 1)
            .collect();
        for k in events.iter().take(max_items) {
            out.deleted += u64::from(dry || state.events.remove(k).is_some());
        }
        if events.len() > max_items {
            return Ok(out);
        }
        let room = max_items - events.len();
        let checkpoints: Vec<String> = state
            .checkpoints
            .iter()
            .take_while(|(_, cp)| cp.keep_until.as_timestamp() <= expired_by)
            .map(|(k, _)| k.clone())
            .take(room + 1)
            .collect();
        for k in checkpoints.iter().take(room) {
            out.deleted += u64::from(dry || state.checkpoints.remove(k).is_some());
        }
        out.done = checkpoints.len() <= room;
        Ok(out)
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl EmbeddedPrivacyRequestStore {
    pub(crate) async fn closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError> {
        let now = self.clock.now();
        let sorted = lock(&self.state)
            .requests
            .values()
            .filter(|r| !r.expires_at.is_some_and(|e| e.is_expired(now)))
            .filter_map(|r| r.closed_at.filter(|c| (since..=until).contains(c)).map(|c| (c, r)))
            .map(|(c, r)| (format!("{}#{}", c.sort_key(), r.id), r.clone()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        page_of(
            sorted,
            page,
            &format!("closed:{}:{}", since.unix_millis(), until.unix_millis()),
        )
    }

    pub(crate) async fn sweep_closed(
        &self,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let mut st = lock(&self.state);
        let mut due: Vec<(Timestamp, RequestId)> = st
            .requests
            .values()
            .filter(|r| r.expires_at.is_some_and(|e| e.as_timestamp() <= expired_by))
            .filter_map(|r| r.closed_at.map(|c| (c, r.id)))
            .collect();
        due.sort();
        let done = due.len() <= max_items;
        let mut out = SweepOutcome {
            done,
            ..SweepOutcome::default()
        };
        for (_, id) in due.into_iter().take(max_items) {
            out.deleted += u64::from(dry || st.requests.remove(&id).is_some());
        }
        Ok(out)
    }
}

/// An outbox entry under its (pk, sk), with when it was found stale (the sparse index's key).
type OutboxSlot = (OutboxEntry, Option<Timestamp>);

/// The sender's outbox in memory; `stale_at` is what the DynamoDB adapter's sparse index holds.
#[derive(Debug)]
pub struct EmbeddedOutboxStore {
    clock: SharedClock,
    entries: Mutex<BTreeMap<(String, String), OutboxSlot>>,
    slots: Mutex<BTreeMap<(String, i64), u32>>,
    conversations: Arc<EmbeddedConversationStore>,
}

impl EmbeddedOutboxStore {
    fn transition(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        from: &[OutboxState],
        change: impl FnOnce(&mut OutboxEntry),
        stale_at: Option<Timestamp>,
    ) -> bool {
        let now = self.clock.now();
        let mut entries = lock(&self.entries);
        match entries.get_mut(&(keys::outbox_pk(tenant), keys::outbox_sk(key))) {
            Some((e, stale)) if !e.expires_at.is_expired(now) && e.attempt == attempt && from.contains(&e.state) => {
                change(e);
                *stale = stale_at;
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl OutboxStore for EmbeddedOutboxStore {
    async fn claim(&self, entry: &OutboxEntry) -> Result<Claim, StoreError> {
        check_item_size(entry)?;
        let now = self.clock.now();
        let mut entries = lock(&self.entries);
        let k = (keys::outbox_pk(&entry.tenant), keys::outbox_sk(&entry.dedup_key));
        let mine = match entries.get(&k) {
            Some((held, _)) if !held.expires_at.is_expired(now) && held.state != OutboxState::Released => {
                return Ok(Claim::Held(held.clone()));
            }
            Some((released, _)) if !released.expires_at.is_expired(now) => {
                let mut mine = entry.clone();
                mine.attempt = released.attempt + 1;
                mine
            }
            _ => entry.clone(),
        };
        entries.insert(k, (mine.clone(), None));
        Ok(Claim::Won(mine))
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed, OutboxState::Stale],
            |e| e.record(outcome, at),
            None,
        ))
    }

    async fn release(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        Ok(self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed, OutboxState::Stale],
            |e| e.release(at),
            None,
        ))
    }

    async fn release_for_resend(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Stale],
            |e| {
                e.state = OutboxState::Released;
                e.updated_at = at;
            },
            None,
        ))
    }

    async fn mark_stale(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        Ok(self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed],
            |e| {
                e.state = OutboxState::Stale;
                e.updated_at = at;
            },
            Some(at),
        ))
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        let now = self.clock.now();
        Ok(lock(&self.entries)
            .get(&(keys::outbox_pk(tenant), keys::outbox_sk(key)))
            .map(|(e, _)| e.clone())
            .filter(|e| !e.expires_at.is_expired(now)))
    }

    async fn stale(&self, page: &PageRequest) -> Result<Page<OutboxEntry>, StoreError> {
        let now = self.clock.now();
        let mut sorted: Vec<(String, OutboxEntry)> = lock(&self.entries)
            .iter()
            .filter_map(|((pk, sk), (e, stale))| {
                let at = (*stale)?;
                (!e.expires_at.is_expired(now)).then(|| (format!("{}#{pk}#{sk}", at.sort_key()), e.clone()))
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        page_of(sorted, page, "stale-claims")
    }

    async fn erase_stale(&self, tenant: &TenantId, contact: &ContactId) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        for (e, stale) in lock(&self.entries).values_mut() {
            let addressed = e.command.as_ref().is_some_and(|c| c.to() == contact);
            if stale.is_some() && e.state == OutboxState::Stale && e.tenant == *tenant && addressed {
                e.command = None;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    async fn take_send_slot(&self, account: &ChannelAccount, second: i64, limit: u32) -> Result<bool, StoreError> {
        let mut slots = lock(&self.slots);
        slots.retain(|(_, s), _| *s >= second - 120);
        let taken = slots.entry((keys::send_slot_pk(account), second)).or_default();
        if *taken >= limit {
            return Ok(false);
        }
        *taken += 1;
        Ok(true)
    }

    async fn last_inbound(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        since: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.conversations.last_inbound(tenant, contact, since))
    }
}

impl EmbeddedConversationStore {
    /// The newest live inbound message's time at or after `since` (tombstones are not messages).
    fn last_inbound(&self, tenant: &TenantId, contact: &ContactId, since: Timestamp) -> Option<Timestamp> {
        let now = self.clock.now();
        let (first, _) = keys::messages_from(since);
        lock(&self.contacts)
            .get(&keys::contact_pk(tenant, contact))
            .and_then(|s| {
                s.messages
                    .range(first..)
                    .rev()
                    .map(|(_, m)| m)
                    .find(|m| m.direction == crate::domain::Direction::Inbound && !m.expires_at.is_expired(now))
                    .map(|m| m.sent_at)
            })
    }
}
