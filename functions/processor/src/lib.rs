//! The ingest-queue consumer. Each SQS record is one envelope (one entry/change of a webhook):
//! route it to its tenant by the receiving account, read it into events (`shared::meta::events`,
//! no I/O), then apply them: contacts, identifier links, messages and statuses with their expiry,
//! idempotently; opt-out signals to the opt-out queue. What cannot be processed is quarantined
//! with its reason; an envelope for an account no tenant owns waits in quarantine until the
//! tenant is registered. Only store and queue failures are reported back to SQS, so only they are
//! retried.

pub mod chat_erasure;
pub mod dead_letter;

pub use chat_erasure::ChatErasure;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKey, SubjectKeySecret};
use shared::meta::envelope::Envelope;
use shared::meta::events::{self, Context, Event, OptOutSignal, RawIdentifier, Seen};
use shared::meta::graph::{GraphClient, GraphError, ProfileResolver};
use shared::optout::command::{CommandAction, OptOutCommand};
use shared::optout::keywords::{self, TenantKeywords};
use shared::queue::{Queue, QueueError};
use shared::store::{ConversationStore, QuarantineStore, StoreError, Stores, TenantStore, WriteOutcome};
use shared::tenant_cache::{self, TenantCache};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ProcessError {
    fn log_safe(&self) -> String {
        match self {
            Self::Store(e) => e.log_safe(),
            Self::Queue(e) => e.to_string(),
        }
    }
}

/// What one envelope (or batch) did; emitted as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub stored: u64,
    pub duplicates: u64,
    pub statuses: u64,
    pub deleted: u64,
    pub tenant_events: u64,
    pub optout_commands: u64,
    pub optout_reviews: u64,
    /// Opt-outs nothing identifies (an unusable sender, time or id): held for a person, alarmed.
    pub optouts_held: u64,
    /// Identifiers linked in their raw form because they did not normalize.
    pub raw_identifiers: u64,
    pub unrouted: u64,
    pub quarantined: u64,
    pub unhandled: u64,
    /// Events about a subject erased after they happened: not stored again.
    pub erased: u64,
    /// Erasures asked for with a deletion phrase in the chat.
    pub chat_erasures: u64,
    /// Instagram usernames looked up and linked to their contact.
    pub usernames_linked: u64,
    /// Username lookups that failed; the message was stored without one, the next one asks again.
    pub username_lookups_failed: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.statuses += o.statuses;
        self.deleted += o.deleted;
        self.tenant_events += o.tenant_events;
        self.optout_commands += o.optout_commands;
        self.optout_reviews += o.optout_reviews;
        self.optouts_held += o.optouts_held;
        self.raw_identifiers += o.raw_identifiers;
        self.unrouted += o.unrouted;
        self.quarantined += o.quarantined;
        self.unhandled += o.unhandled;
        self.erased += o.erased;
        self.chat_erasures += o.chat_erasures;
        self.usernames_linked += o.usernames_linked;
        self.username_lookups_failed += o.username_lookups_failed;
    }

    fn metrics(&self) -> [(&'static str, u64); 16] {
        [
            ("MessagesStored", self.stored),
            ("Duplicates", self.duplicates),
            ("StatusesStored", self.statuses),
            ("MessagesDeleted", self.deleted),
            ("TenantEvents", self.tenant_events),
            ("OptOutCommands", self.optout_commands),
            ("OptOutReviews", self.optout_reviews),
            ("OptOutsHeld", self.optouts_held),
            ("RawIdentifiers", self.raw_identifiers),
            ("UnroutedEnvelopes", self.unrouted),
            ("ItemsQuarantined", self.quarantined),
            ("Unhandled", self.unhandled),
            ("ErasedEventsDropped", self.erased),
            ("ChatErasures", self.chat_erasures),
            ("UsernamesLinked", self.usernames_linked),
            ("UsernameLookupsFailed", self.username_lookups_failed),
        ]
    }
}

/// The stores the processor writes: built alone in Lambda, so its binary links no other store.
#[derive(Clone, Debug)]
pub struct ProcessorStores {
    pub conversations: Arc<dyn ConversationStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub quarantine: Arc<dyn QuarantineStore>,
}

impl From<Stores> for ProcessorStores {
    fn from(s: Stores) -> Self {
        Self {
            conversations: s.conversations,
            tenants: s.tenants,
            quarantine: s.quarantine,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Processor {
    stores: ProcessorStores,
    /// Which tenant owns a receiving account, for at most `tenant_cache::MAX_AGE`.
    tenants: Arc<TenantCache>,
    secret: SubjectKeySecret,
    clock: SharedClock,
    optout_queue: Arc<dyn Queue>,
    /// Deletion phrases written in the chat; without it (handlers built for other tests) such a
    /// message is stored like any other.
    chat_erasure: Option<ChatErasure>,
    /// Who an Instagram-scoped id is; without it no username is linked.
    usernames: Option<Usernames>,
}

/// The Instagram usernames of the contacts writing, from the Graph API: asked when a contact
/// writes and its username is not known to this process yet, so an erasure by username finds
/// them. Answers are kept for the life of the process (the profile holds the link for good).
#[derive(Clone, Debug)]
struct Usernames {
    resolver: Arc<dyn ProfileResolver>,
    /// (account, Instagram-scoped id) -> username.
    known: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), String>>>,
}

/// Past this many entries the cache starts over, so a long-lived process stays small.
const MAX_KNOWN_USERNAMES: usize = 10_000;

impl Usernames {
    async fn lookup(&self, account: &str, igsid: &str) -> Result<Option<String>, GraphError> {
        let key = (account.to_owned(), igsid.to_owned());
        let cached = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(u) = cached {
            return Ok(Some(u));
        }
        let found = self.resolver.instagram_username(account, igsid).await?;
        if let Some(u) = &found {
            let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if known.len() >= MAX_KNOWN_USERNAMES {
                known.clear();
            }
            known.insert(key, u.clone());
        }
        Ok(found)
    }
}

/// The message a review item is about.
enum Reviewed<'a> {
    /// Stored: the item points at it by Meta's id and time.
    Stored(&'a MetaMessageId, Timestamp),
    /// Not storable (no usable time or id): the item holds it as it came.
    Held(serde_json::Value),
}

/// Where a bad item came from, for its quarantine entry.
struct Origin<'a> {
    request_id: &'a str,
    received_at: Timestamp,
    /// The receiving account, when the envelope was readable.
    account: Option<&'a ChannelAccount>,
}

/// The processor from its resources: the stores, the opt-out queue and the subject-key secret.
pub async fn build(r: &impl Resources) -> Result<Processor, WiringError> {
    let values = r.secrets()?.fetch().await?;
    let secret = values.subject_key_secret()?;
    shared::phone::prepare();
    keywords::prepare();
    let stores = ProcessorStores {
        conversations: r.conversations(),
        tenants: r.tenants(),
        quarantine: r.quarantine(),
    };
    // The opt-out queue first: the warm-up opens the connection to the first queue asked for.
    let optout = r.queue(QueueKind::OptOut)?;
    let chat_erasure = ChatErasure::new(
        r.privacy_requests(),
        r.queue(QueueKind::Erasure)?,
        r.queue(QueueKind::Outbound)?,
        &r.public_base_url()?,
        &secret,
    );
    let processor = Processor::new(stores, secret, r.clock(), optout).with_chat_erasure(chat_erasure);
    // A bad token setting costs the usernames, never the messages: the processor starts anyway.
    let tokens = match values.graph_tokens() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Instagram access tokens unusable; no usernames are looked up");
            return Ok(processor);
        }
    };
    if tokens.is_empty() {
        return Ok(processor);
    }
    match GraphClient::new(&r.graph_api_base_url(), tokens) {
        Ok(graph) => Ok(processor.with_profile_resolver(Arc::new(graph))),
        Err(e) => {
            tracing::error!(error = %e, "Graph API client not configured; no usernames are looked up");
            Ok(processor)
        }
    }
}

impl Processor {
    pub fn new(
        stores: impl Into<ProcessorStores>,
        secret: SubjectKeySecret,
        clock: SharedClock,
        optout_queue: Arc<dyn Queue>,
    ) -> Self {
        let stores = stores.into();
        let tenants = Arc::new(TenantCache::new(
            stores.tenants.clone(),
            clock.clone(),
            tenant_cache::MAX_AGE,
        ));
        Self {
            stores,
            tenants,
            secret,
            clock,
            optout_queue,
            chat_erasure: None,
            usernames: None,
        }
    }

    /// Instagram contacts get their username linked, from `resolver`.
    pub fn with_profile_resolver(mut self, resolver: Arc<dyn ProfileResolver>) -> Self {
        self.usernames = Some(Usernames {
            resolver,
            known: Arc::default(),
        });
        self
    }

    /// `upsert` with the Instagram sender's username linked when the Graph API tells it. Never
    /// fails: a lookup that does not answer leaves the message to be stored without it.
    async fn with_username(
        &self,
        mut upsert: ContactUpsert,
        account: &ChannelAccount,
        direction: Direction,
        counts: &mut Counts,
    ) -> ContactUpsert {
        let Some(usernames) = &self.usernames else {
            return upsert;
        };
        let known = upsert
            .identifiers
            .iter()
            .any(|l| l.identifier.kind() == IdentifierKind::InstagramUsername);
        if upsert.contact.channel != Channel::Instagram || direction != Direction::Inbound || known {
            return upsert;
        }
        match usernames.lookup(&account.account_id, &upsert.contact.stable_id).await {
            Ok(Some(name)) => match Identifier::parse(IdentifierKind::InstagramUsername, &name) {
                Ok(id) => {
                    upsert.identifiers.push(LinkedIdentifier::new(&self.secret, id));
                    counts.usernames_linked += 1;
                }
                Err(_) => counts.username_lookups_failed += 1,
            },
            Ok(None) => {}
            Err(GraphError::NoToken) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Instagram username lookup failed; the message is stored without it");
                counts.username_lookups_failed += 1;
            }
        }
        upsert
    }

    /// Deletion phrases in the chat open erasures through `chat`.
    pub fn with_chat_erasure(mut self, chat: ChatErasure) -> Self {
        self.chat_erasure = Some(chat);
        self
    }

    /// One Lambda invocation: every record processed in its own task, so a panic on one record
    /// fails that record only; failed ones are reported for redelivery.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let tasks: Vec<_> = event
            .records
            .into_iter()
            .map(|record| {
                let me = self.clone();
                let message_id = record.message_id.clone().unwrap_or_default();
                let task = tokio::spawn(async move { me.process(record.body.as_deref().unwrap_or_default()).await });
                (message_id, task)
            })
            .collect();
        let mut response = SqsBatchResponse::default();
        let mut total = Counts::default();
        for (message_id, task) in tasks {
            let failed = match task.await {
                Ok(Ok(counts)) => {
                    total.add(counts);
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!(%message_id, error = %e.log_safe(), "envelope failed; SQS will redeliver it");
                    true
                }
                Err(_) => {
                    tracing::error!(%message_id, "envelope processing panicked; SQS will redeliver it");
                    true
                }
            };
            if failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        shared::metrics::emit("processor", self.clock.now(), &total.metrics());
        response
    }

    /// Processes one envelope. `Err` only for failures worth retrying.
    pub async fn process(&self, body: &str) -> Result<Counts, ProcessError> {
        let mut counts = Counts::default();
        let envelope: Envelope = match serde_json::from_str(body) {
            Ok(e) => e,
            Err(e) => {
                let origin = Origin {
                    request_id: "unknown",
                    received_at: self.clock.now(),
                    account: None,
                };
                self.reject(&origin, "not an envelope", &e, body, &mut counts).await?;
                return Ok(counts);
            }
        };
        let origin = Origin {
            request_id: &envelope.request_id,
            received_at: envelope.received_at,
            account: Some(&envelope.account),
        };
        let Some(tenant) = self.tenants.tenant_for(&envelope.account).await? else {
            self.hold_unrouted(&envelope, &origin, body, &mut counts).await?;
            return Ok(counts);
        };
        let keywords = TenantKeywords {
            opt_out: tenant.optout_keywords.clone(),
            opt_out_button_ids: tenant.optout_button_ids.clone(),
        };
        for event in events::parse(&envelope, Context { keywords: &keywords }) {
            self.apply(&tenant, event, &origin, &mut counts).await?;
        }
        tracing::info!(
            request_id = %envelope.request_id,
            tenant = %tenant.id,
            stored = counts.stored,
            duplicates = counts.duplicates,
            statuses = counts.statuses,
            quarantined = counts.quarantined,
            "envelope processed"
        );
        Ok(counts)
    }

    async fn apply(
        &self,
        tenant: &Tenant,
        event: Event<'_>,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let retention = tenant.retention_months;
        match event {
            Event::Message {
                seen,
                id,
                direction,
                kind,
                content,
                signal,
                review,
                erasure,
            } => {
                let mut upsert = self.contact(tenant, &seen, origin, counts).await?;
                if let Some(account) = origin.account {
                    upsert = self.with_username(upsert, account, direction, counts).await;
                }
                match serde_json::from_str(content.get()) {
                    Ok(value) => {
                        let message = Message {
                            tenant: tenant.id.clone(),
                            contact: upsert.contact.clone(),
                            id: id.clone(),
                            direction,
                            sent_at: seen.at,
                            kind: kind.into_owned(),
                            content: value,
                            expires_at: retention.expiry_for(upsert.seen_at),
                        };
                        let written = self.stores.conversations.record_message(&upsert, &message).await;
                        let kind = "message too large to store";
                        match self
                            .stored_or_held(written, origin, kind, content.get(), counts)
                            .await?
                        {
                            Some(WriteOutcome::Written) => counts.stored += 1,
                            Some(WriteOutcome::Unchanged) => counts.duplicates += 1,
                            Some(WriteOutcome::Erased) => counts.erased += 1,
                            None => {}
                        }
                    }
                    // Stored as nothing, it would block a corrected copy (the write is
                    // idempotent by id): held with its reason instead.
                    Err(e) => {
                        self.upsert_or_hold(&upsert, origin, counts).await?;
                        self.reject(origin, "message content cannot be stored", &e, content.get(), counts)
                            .await?;
                    }
                }
                // Signals are acted on for redeliveries too: the opt-out function ignores what
                // it has already applied.
                if review {
                    self.hold_for_review(&upsert, Reviewed::Stored(&id, seen.at), origin, counts)
                        .await?;
                }
                if let Some(signal) = signal {
                    self.send_command(&upsert, signal, seen.at, origin, counts).await?;
                }
                if let Some(language) = erasure {
                    self.chat_erasure(tenant, &upsert, &id, language, origin, counts)
                        .await?;
                }
            }
            Event::Status {
                seen,
                message_id,
                state,
                detail,
                signal,
            } => {
                let upsert = self.contact(tenant, &seen, origin, counts).await?;
                match serde_json::from_str(detail.get()) {
                    Ok(value) => {
                        let status = StatusUpdate {
                            tenant: tenant.id.clone(),
                            contact: upsert.contact.clone(),
                            message_id,
                            state,
                            at: seen.at,
                            detail: value,
                            expires_at: retention.expiry_for(upsert.seen_at),
                        };
                        let written = self.stores.conversations.record_status(&upsert, &status).await;
                        let kind = "status too large to store";
                        match self.stored_or_held(written, origin, kind, detail.get(), counts).await? {
                            Some(WriteOutcome::Written) => counts.statuses += 1,
                            Some(WriteOutcome::Unchanged) => counts.duplicates += 1,
                            Some(WriteOutcome::Erased) => counts.erased += 1,
                            None => {}
                        }
                    }
                    Err(e) => {
                        self.upsert_or_hold(&upsert, origin, counts).await?;
                        self.reject(origin, "status cannot be stored", &e, detail.get(), counts)
                            .await?;
                    }
                }
                if let Some(signal) = signal {
                    self.send_command(&upsert, signal, seen.at, origin, counts).await?;
                }
            }
            Event::Unsend { seen, message_id } => {
                let upsert = self.contact(tenant, &seen, origin, counts).await?;
                self.upsert_or_hold(&upsert, origin, counts).await?;
                // The person deleted the message: so do we, and a tombstone refuses it again.
                let expiry = retention.expiry_for(upsert.seen_at);
                self.stores
                    .conversations
                    .delete_message(&tenant.id, &upsert.contact, &message_id, expiry)
                    .await?;
                counts.deleted += 1;
            }
            Event::Preference { seen, signal } => {
                let upsert = self.contact(tenant, &seen, origin, counts).await?;
                self.upsert_or_hold(&upsert, origin, counts).await?;
                self.send_command(&upsert, signal, seen.at, origin, counts).await?;
            }
            Event::TenantEvent { id, field, payload } => match serde_json::from_str(payload.get()) {
                Ok(value) => {
                    let event = TenantEvent {
                        tenant: tenant.id.clone(),
                        id,
                        field: field.to_owned(),
                        received_at: origin.received_at,
                        payload: value,
                    };
                    let written = self.stores.tenants.record_event(&event).await;
                    let kind = "tenant event too large to store";
                    match self
                        .stored_or_held(written, origin, kind, payload.get(), counts)
                        .await?
                    {
                        Some(WriteOutcome::Written) => counts.tenant_events += 1,
                        Some(WriteOutcome::Unchanged | WriteOutcome::Erased) => counts.duplicates += 1,
                        None => {}
                    }
                }
                Err(e) => {
                    self.reject(origin, "tenant event cannot be stored", &e, payload.get(), counts)
                        .await?
                }
            },
            Event::Unhandled { kind, detail, raw } => {
                self.hold(origin, QuarantineBucket::Unhandled, kind, &detail, raw)
                    .await?;
                counts.unhandled += 1;
            }
            Event::Rejected { kind, detail, raw } => self.reject(origin, kind, &detail, raw, counts).await?,
            Event::HeldOptOut { kind, raw } => self.hold_unidentified(&tenant.id, kind, raw, origin, counts).await?,
            Event::HeldReview { seen, kind, raw } => {
                let upsert = self.contact(tenant, &seen, origin, counts).await?;
                self.upsert_or_hold(&upsert, origin, counts).await?;
                match serde_json::from_str::<serde_json::Value>(raw) {
                    Ok(held) => {
                        self.hold_for_review(&upsert, Reviewed::Held(held), origin, counts)
                            .await?
                    }
                    Err(_) => self.hold_unidentified(&tenant.id, kind, raw, origin, counts).await?,
                }
            }
        }
        Ok(())
    }

    /// The upsert an event makes for its contact: identifiers normalized (kept raw when they do
    /// not normalize, so nothing a STOP came from is dropped) and keyed; the event counted at no
    /// later than its receipt; expiry in whole steps so most messages leave the profile as it is.
    fn upsert(&self, tenant: &Tenant, seen: &Seen<'_>, origin: &Origin<'_>, counts: &mut Counts) -> ContactUpsert {
        let mut identifiers: Vec<LinkedIdentifier> = Vec::with_capacity(seen.identifiers.len());
        for RawIdentifier { kind, value } in &seen.identifiers {
            let Ok(id) = Identifier::parse_or_raw(*kind, value) else {
                continue;
            };
            if id.is_raw() {
                counts.raw_identifiers += 1;
                tracing::warn!(request_id = %origin.request_id, kind = ?kind, "identifier kept in raw form: it does not normalize");
            }
            let linked = LinkedIdentifier::new(&self.secret, id);
            if !identifiers.contains(&linked) {
                identifiers.push(linked);
            }
        }
        let counted_at = seen.at.clamped_to_receipt(origin.received_at);
        ContactUpsert {
            tenant: tenant.id.clone(),
            contact: seen.contact.clone(),
            profile_name: seen.profile_name.as_deref().map(str::to_owned),
            identifiers,
            seen_at: counted_at,
            expires_at: tenant.retention_months.contact_expiry_for(counted_at),
        }
    }

    /// `upsert`, holding a profile name too long to keep in quarantine rather than in the profile.
    async fn contact(
        &self,
        tenant: &Tenant,
        seen: &Seen<'_>,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<ContactUpsert, ProcessError> {
        let mut upsert = self.upsert(tenant, seen, origin, counts);
        if let Some(name) = upsert.profile_name.take_if(|n| n.len() > MAX_PROFILE_NAME_BYTES) {
            let detail = format!(
                "{} bytes, over {MAX_PROFILE_NAME_BYTES}; the profile keeps no name",
                name.len()
            );
            self.reject(origin, "profile name too long to keep", &detail, &name, counts)
                .await?;
        }
        Ok(upsert)
    }

    /// The contact's upsert where nothing else is written with it. A profile too large to store
    /// (one written before names were bounded, grown past the item limit by a new identifier)
    /// is held rather than retried, so the signal that follows still goes out.
    async fn upsert_or_hold(
        &self,
        upsert: &ContactUpsert,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let written = self.stores.conversations.upsert_contact(upsert).await;
        if !matches!(written, Err(StoreError::TooLarge)) {
            written?;
            return Ok(());
        }
        // Names the contact by its subject key only: the profile itself holds personal data.
        let held = serde_json::json!({
            "tenant": upsert.tenant,
            "channel": upsert.contact.channel,
            "subject_key": upsert.identifiers.first().map(|l| &l.subject_key),
        })
        .to_string();
        self.stored_or_held(written, origin, "contact too large to store", &held, counts)
            .await?;
        Ok(())
    }

    /// A write's outcome, or None when the store refused the item for its size: retrying could
    /// never store it, and failing the envelope would hold every event behind it, so what it held
    /// goes to quarantine with the reason.
    async fn stored_or_held(
        &self,
        written: Result<WriteOutcome, StoreError>,
        origin: &Origin<'_>,
        kind: &'static str,
        raw: &str,
        counts: &mut Counts,
    ) -> Result<Option<WriteOutcome>, ProcessError> {
        match written {
            Ok(outcome) => Ok(Some(outcome)),
            Err(e @ StoreError::TooLarge) => {
                let detail = format!("{e} ({} bytes as received)", raw.len());
                self.reject(origin, kind, &detail, raw, counts).await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn hold_unrouted(
        &self,
        env: &Envelope,
        origin: &Origin<'_>,
        body: &str,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        tracing::warn!(
            request_id = %env.request_id,
            channel = %env.account.channel,
            account = %env.account.account_id,
            "no tenant owns the receiving account; envelope held until one registers it"
        );
        let bucket = QuarantineBucket::Unrouted {
            account: env.account.clone(),
        };
        self.hold(origin, bucket, "no tenant owns the receiving account", &"", body)
            .await?;
        counts.unrouted += 1;
        Ok(())
    }

    /// Quarantines a bad item with its reason. Keyed by content, so a redelivery adds nothing.
    /// Only `kind` is logged: `detail` may quote the payload (parser messages do).
    async fn reject(
        &self,
        origin: &Origin<'_>,
        kind: &'static str,
        detail: &(dyn std::fmt::Display + Sync),
        raw: &str,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        self.hold(origin, QuarantineBucket::Rejected, kind, detail, raw).await?;
        counts.quarantined += 1;
        Ok(())
    }

    async fn hold(
        &self,
        origin: &Origin<'_>,
        bucket: QuarantineBucket,
        kind: &'static str,
        detail: &(dyn std::fmt::Display + Sync),
        raw: &str,
    ) -> Result<(), ProcessError> {
        tracing::warn!(request_id = %origin.request_id, kind, "item quarantined");
        let detail = detail.to_string();
        let reason = if detail.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}: {detail}")
        };
        self.hold_naming(origin, bucket, reason, raw, Vec::new()).await
    }

    /// Holds `raw` findable by every person it names, and by `people` (whom it refers to by
    /// subject key only), so an erasure reaches it.
    async fn hold_naming(
        &self,
        origin: &Origin<'_>,
        bucket: QuarantineBucket,
        reason: String,
        raw: &str,
        mut people: Vec<SubjectKey>,
    ) -> Result<(), ProcessError> {
        people.extend(shared::meta::identifiers::subject_keys_in(raw, &self.secret));
        let entry = QuarantineEntry::new(bucket, reason, raw.to_owned(), origin.received_at).naming(people);
        self.stores.quarantine.put(&entry).await?;
        Ok(())
    }

    /// A keyword inside a longer message: a pointer to it (no copy of the text, no plaintext
    /// identifier) for a person to decide on; the message as it came when it could not be stored.
    async fn hold_for_review(
        &self,
        upsert: &ContactUpsert,
        reviewed: Reviewed<'_>,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let Some(subject) = upsert.identifiers.first() else {
            return self.hold_unidentified_upsert(upsert, origin, counts).await;
        };
        let (message_id, sent_at, held) = match reviewed {
            Reviewed::Stored(id, at) => (Some(id.clone()), Some(at), None),
            Reviewed::Held(held) => (None, None, Some(held)),
        };
        let pointer = ReviewPointer {
            tenant: upsert.tenant.clone(),
            subject_key: subject.subject_key.clone(),
            message_id,
            sent_at,
            held,
        };
        let body = serde_json::to_string(&pointer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Keyed by Meta's time, not this receipt: Meta's retry of the POST (received later)
        // finds the same item rather than adding a second one to decide.
        let keyed = Origin {
            request_id: origin.request_id,
            received_at: sent_at.map_or(origin.received_at, |at| at.min(origin.received_at)),
            account: origin.account,
        };
        tracing::warn!(request_id = %origin.request_id, kind = "opt-out keyword inside a longer message", "item quarantined");
        self.hold_naming(
            &keyed,
            QuarantineBucket::OptOutReview {
                tenant: upsert.tenant.clone(),
            },
            "opt-out keyword inside a longer message".to_owned(),
            &body,
            upsert.identifiers.iter().map(|l| l.subject_key.clone()).collect(),
        )
        .await?;
        counts.optout_reviews += 1;
        Ok(())
    }

    /// An opt-out nothing identifies: held as it came, for a person, and counted for the alarm.
    async fn hold_unidentified(
        &self,
        tenant: &TenantId,
        kind: &'static str,
        raw: &str,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        tracing::error!(request_id = %origin.request_id, %tenant, kind, "opt-out from a sender nothing identifies; held for review");
        let bucket = QuarantineBucket::OptOutReview { tenant: tenant.clone() };
        self.hold(origin, bucket, kind, &"", raw).await?;
        counts.optouts_held += 1;
        Ok(())
    }

    /// Only the contact's id is left, and it has no usable form (control characters, size).
    async fn hold_unidentified_upsert(
        &self,
        upsert: &ContactUpsert,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let body = serde_json::json!({ "tenant": upsert.tenant, "channel": upsert.contact.channel }).to_string();
        let kind = "opt-out from a sender with no usable identifier";
        self.hold_unidentified(&upsert.tenant, kind, &body, origin, counts)
            .await
    }

    /// A command for every identifier seen, the contact's stable id first. Ordered by the time
    /// it counts at (`upsert.seen_at`), identified by Meta's own `event_at`.
    /// A deletion phrase from the sender's own number: an erasure of them in this tenant.
    async fn chat_erasure(
        &self,
        tenant: &Tenant,
        upsert: &ContactUpsert,
        message: &MetaMessageId,
        language: Locale,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let Some(chat) = &self.chat_erasure else {
            tracing::warn!(request_id = %origin.request_id, "deletion phrase received, but this processor opens no erasures");
            return Ok(());
        };
        match chat.open(tenant, upsert, message, language, self.clock.now()).await? {
            Some(request) => {
                tracing::info!(request_id = %origin.request_id, request = %request.id, status = request.status.as_str(), "erasure asked for in the chat");
                counts.chat_erasures += 1;
            }
            None => {
                tracing::warn!(request_id = %origin.request_id, "deletion phrase from a sender with no identifier to erase by");
            }
        }
        Ok(())
    }

    async fn send_command(
        &self,
        upsert: &ContactUpsert,
        signal: OptOutSignal,
        event_at: Timestamp,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        if upsert.identifiers.is_empty() {
            if signal.action == CommandAction::OptOut {
                return self.hold_unidentified_upsert(upsert, origin, counts).await;
            }
            return Ok(());
        }
        let command = OptOutCommand {
            tenant: upsert.tenant.clone(),
            contact: upsert.contact.clone(),
            subject_keys: upsert.identifiers.iter().map(|l| l.subject_key.clone()).collect(),
            action: signal.action,
            scope: signal.scope,
            source: signal.source,
            event_at,
            order_at: upsert.seen_at,
            only_while_opted_out: signal.only_while_opted_out,
            language: signal.language,
        };
        let body = shared::queue::to_body(&command).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.optout_queue.send_batch(&[body]).await?;
        counts.optout_commands += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
