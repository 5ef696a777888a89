//! The ingest-queue consumer. Each SQS record is one envelope (one entry/change of a webhook):
//! route it to its tenant by the receiving account, then store contacts, identifier links,
//! messages and statuses with their expiry, idempotently. What cannot be processed is quarantined
//! with its reason; an envelope for an account no tenant owns waits in quarantine until the
//! tenant is registered. Only store failures are reported back to SQS, so only they are retried.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::meta::envelope::{Envelope, MetaObject};
use shared::meta::{instagram as ig, whatsapp as wa};
use shared::optout::command::{CommandAction, OptOutCommand};
use shared::optout::keywords::{self, Action, Decision, TenantKeywords};
use shared::queue::{Queue, QueueError};
use shared::store::{ConversationStore, QuarantineStore, StoreError, Stores, TenantStore, WriteOutcome};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::collections::HashMap;
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
    pub unrouted: u64,
    pub quarantined: u64,
    pub unhandled: u64,
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
        self.unrouted += o.unrouted;
        self.quarantined += o.quarantined;
        self.unhandled += o.unhandled;
    }

    fn metrics(&self) -> [(&'static str, u64); 10] {
        [
            ("MessagesStored", self.stored),
            ("Duplicates", self.duplicates),
            ("StatusesStored", self.statuses),
            ("MessagesDeleted", self.deleted),
            ("TenantEvents", self.tenant_events),
            ("OptOutCommands", self.optout_commands),
            ("OptOutReviews", self.optout_reviews),
            ("UnroutedEnvelopes", self.unrouted),
            ("ItemsQuarantined", self.quarantined),
            ("Unhandled", self.unhandled),
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
    secret: SubjectKeySecret,
    clock: SharedClock,
    optout_queue: Arc<dyn Queue>,
}

/// What in an inbound message may be an opt-out signal.
enum Signal<'a> {
    Text(&'a str),
    /// A tapped button or quick reply: its id, and its label when it has one.
    Button {
        id: &'a str,
        label: Option<&'a str>,
    },
}

/// Where a bad item came from, for its quarantine entry.
struct Origin<'a> {
    request_id: &'a str,
    received_at: Timestamp,
}

/// The processor from its resources: the stores, the opt-out queue and the subject-key secret.
pub async fn build(r: &impl Resources) -> Result<Processor, WiringError> {
    let secret = r.secrets()?.fetch().await?.subject_key_secret()?;
    shared::phone::prepare();
    keywords::prepare();
    let stores = ProcessorStores {
        conversations: r.conversations(),
        tenants: r.tenants(),
        quarantine: r.quarantine(),
    };
    Ok(Processor::new(stores, secret, r.clock(), r.queue(QueueKind::OptOut)?))
}

impl Processor {
    pub fn new(
        stores: impl Into<ProcessorStores>,
        secret: SubjectKeySecret,
        clock: SharedClock,
        optout_queue: Arc<dyn Queue>,
    ) -> Self {
        Self {
            stores: stores.into(),
            secret,
            clock,
            optout_queue,
        }
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
        let now = self.clock.now();
        let envelope: Envelope = match serde_json::from_str(body) {
            Ok(e) => e,
            Err(e) => {
                let origin = Origin {
                    request_id: "unknown",
                    received_at: now,
                };
                self.reject(&origin, "not an envelope", &e, body, &mut counts).await?;
                return Ok(counts);
            }
        };
        let origin = Origin {
            request_id: &envelope.request_id,
            received_at: envelope.received_at,
        };
        let Some(tenant_id) = self.stores.tenants.resolve(&envelope.account).await? else {
            self.hold_unrouted(&envelope, &origin, body, &mut counts).await?;
            return Ok(counts);
        };
        let Some(tenant) = self.stores.tenants.get(&tenant_id).await? else {
            self.hold_unrouted(&envelope, &origin, body, &mut counts).await?;
            return Ok(counts);
        };
        match (envelope.object, envelope.field.as_deref()) {
            (MetaObject::WhatsAppBusinessAccount, Some("messages")) => {
                self.whatsapp_messages(&tenant, &envelope, &origin, &mut counts).await?
            }
            (MetaObject::WhatsAppBusinessAccount, Some("user_preferences")) => {
                self.user_preferences(&tenant, &envelope, &origin, &mut counts).await?
            }
            (MetaObject::WhatsAppBusinessAccount, Some(field)) if wa::TENANT_EVENT_FIELDS.contains(&field) => {
                self.tenant_event(&tenant, &envelope, field, &origin, &mut counts)
                    .await?
            }
            (MetaObject::Instagram, None) => self.instagram_entry(&tenant, &envelope, &origin, &mut counts).await?,
            (_, field) => {
                let what = field.unwrap_or("entry without messaging");
                self.hold(
                    &origin,
                    QuarantineBucket::Unhandled,
                    "unhandled webhook field",
                    &what,
                    body,
                )
                .await?;
                counts.unhandled += 1;
            }
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
        let entry = QuarantineEntry::new(bucket, reason, raw.to_owned(), origin.received_at);
        self.stores.quarantine.put(&entry).await?;
        Ok(())
    }

    /// Acts on what a message says about the person's opt-out state: a command to the opt-out
    /// queue, a review entry for a keyword inside a longer message, or nothing. Runs on
    /// redeliveries too; the opt-out function ignores what it has already applied.
    #[allow(clippy::too_many_arguments)]
    async fn detect(
        &self,
        tenant: &Tenant,
        contact: &ContactId,
        ids: &[LinkedIdentifier],
        signal: Signal<'_>,
        message_id: &str,
        at: Timestamp,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let extra = TenantKeywords {
            opt_out: tenant.optout_keywords.clone(),
            opt_out_button_ids: tenant.optout_button_ids.clone(),
        };
        let decision = match signal {
            Signal::Button { id, label } => keywords::classify_button(id, label, &extra),
            Signal::Text(text) => keywords::classify(text, &extra),
        };
        let source = match signal {
            Signal::Button { .. } => OptOutSource::Button,
            Signal::Text(_) => OptOutSource::Keyword,
        };
        match decision {
            Decision::None => Ok(()),
            Decision::Review => {
                let pointer = serde_json::json!({ "tenant": tenant.id, "contact": contact, "message_id": message_id });
                self.hold(
                    origin,
                    QuarantineBucket::OptOutReview,
                    "opt-out keyword inside a longer message",
                    &"",
                    &pointer.to_string(),
                )
                .await?;
                counts.optout_reviews += 1;
                Ok(())
            }
            Decision::Act {
                action,
                language,
                only_while_opted_out,
            } => {
                let action = match action {
                    Action::OptOut => CommandAction::OptOut,
                    Action::OptIn => CommandAction::OptIn,
                    Action::Help => CommandAction::Help,
                };
                let command = OptOutCommand {
                    only_while_opted_out,
                    language,
                    ..command(tenant, contact.clone(), ids, action, OptOutScope::All, source, at)
                };
                self.send_command(&command, counts).await
            }
        }
    }

    async fn send_command(&self, command: &OptOutCommand, counts: &mut Counts) -> Result<(), ProcessError> {
        if command.subject_keys.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_string(command).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.optout_queue.send_batch(&[body]).await?;
        counts.optout_commands += 1;
        Ok(())
    }

    fn link(&self, kind: IdentifierKind, raw: Option<&str>, into: &mut Vec<LinkedIdentifier>) {
        if let Some(id) = raw.and_then(|r| Identifier::parse(kind, r).ok()) {
            let linked = LinkedIdentifier::new(&self.secret, id);
            if !into.contains(&linked) {
                into.push(linked);
            }
        }
    }

    async fn upsert(
        &self,
        tenant: &Tenant,
        contact: &ContactId,
        profile_name: Option<String>,
        identifiers: Vec<LinkedIdentifier>,
        at: Timestamp,
    ) -> Result<(), ProcessError> {
        let upsert = ContactUpsert {
            tenant: tenant.id.clone(),
            contact: contact.clone(),
            profile_name,
            identifiers,
            seen_at: at,
            expires_at: tenant.retention_months.expiry_for(at),
        };
        self.stores.conversations.upsert_contact(&upsert).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_message(
        &self,
        tenant: &Tenant,
        contact: &ContactId,
        id: MetaMessageId,
        direction: Direction,
        at: Timestamp,
        kind: &str,
        raw: &RawValue,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let message = Message {
            tenant: tenant.id.clone(),
            contact: contact.clone(),
            id,
            direction,
            sent_at: at,
            kind: kind.to_owned(),
            content: serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
            expires_at: tenant.retention_months.expiry_for(at),
        };
        match self.stores.conversations.put_message(&message).await? {
            WriteOutcome::Written => counts.stored += 1,
            WriteOutcome::Unchanged => counts.duplicates += 1,
        }
        Ok(())
    }

    async fn whatsapp_messages(
        &self,
        tenant: &Tenant,
        env: &Envelope,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let value: wa::MessagesValue = match serde_json::from_str(env.payload.get()) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .reject(origin, "WhatsApp messages value", &e, env.payload.get(), counts)
                    .await;
            }
        };
        let mut profiles: HashMap<&str, &wa::Contact> = HashMap::new();
        for c in &value.contacts {
            for id in [c.user_id.as_deref(), c.wa_id.as_deref()].into_iter().flatten() {
                profiles.insert(id, c);
            }
        }
        for raw in &value.messages {
            self.whatsapp_message(tenant, raw, &profiles, origin, counts).await?;
        }
        for raw in &value.statuses {
            self.whatsapp_status(tenant, raw, &profiles, origin, counts).await?;
        }
        Ok(())
    }

    async fn whatsapp_message(
        &self,
        tenant: &Tenant,
        raw: &RawValue,
        profiles: &HashMap<&str, &wa::Contact>,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let m: wa::Message = match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(e) => {
                return self.reject(origin, "WhatsApp message", &e, raw.get(), counts).await;
            }
        };
        let Some(at) = wa::parse_seconds(&m.timestamp).map(Timestamp::from_unix_seconds) else {
            return self
                .reject(origin, "WhatsApp message: bad timestamp", &"", raw.get(), counts)
                .await;
        };
        let Ok(id) = MetaMessageId::new(m.id.clone()) else {
            return self
                .reject(origin, "WhatsApp message: bad id", &"", raw.get(), counts)
                .await;
        };
        // The business-scoped user id is the stable key; the phone only when Meta sends no BSUID.
        let Some(Ok(contact)) = m
            .from_user_id
            .as_deref()
            .or(m.from.as_deref())
            .map(|s| ContactId::new(Channel::WhatsApp, s))
        else {
            return self
                .reject(origin, "WhatsApp message: no usable sender", &"", raw.get(), counts)
                .await;
        };
        let profile = [m.from_user_id.as_deref(), m.from.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|k| profiles.get(k));
        let mut ids = Vec::new();
        self.link(IdentifierKind::WhatsAppUserId, m.from_user_id.as_deref(), &mut ids);
        self.link(IdentifierKind::Phone, m.from.as_deref(), &mut ids);
        if let Some(p) = profile {
            self.link(IdentifierKind::WhatsAppUserId, p.user_id.as_deref(), &mut ids);
            self.link(IdentifierKind::Phone, p.wa_id.as_deref(), &mut ids);
        }
        // A changed number or user id stays linked to the same contact.
        if let Some(system) = &m.system {
            self.link(IdentifierKind::Phone, system.wa_id.as_deref(), &mut ids);
            self.link(IdentifierKind::WhatsAppUserId, system.user_id.as_deref(), &mut ids);
        }
        let name = profile.and_then(|p| p.profile.as_ref()).and_then(|p| p.name.clone());
        self.upsert(tenant, &contact, name, ids.clone(), at).await?;

        if let Some(revoke) = &m.revoke {
            // The person deleted the message: so do we.
            if let Ok(original) = MetaMessageId::new(revoke.original_message_id.clone()) {
                let tombstone = tenant.retention_months.expiry_for(at);
                self.stores
                    .conversations
                    .delete_message(&tenant.id, &contact, &original, tombstone)
                    .await?;
                counts.deleted += 1;
            }
            return Ok(());
        }
        // An edit is kept under its original, so that deleting the original takes its edits along.
        let id = match &m.edit {
            Some(e) => match MetaMessageId::new(shared::store::keys::edit_id(&e.original_message_id, id.as_str())) {
                Ok(edit_id) => edit_id,
                Err(_) => {
                    return self
                        .reject(origin, "WhatsApp edit: bad original id", &"", raw.get(), counts)
                        .await;
                }
            },
            None => id,
        };
        self.store_message(
            tenant,
            &contact,
            id.clone(),
            Direction::Inbound,
            at,
            &m.kind,
            raw,
            counts,
        )
        .await?;
        let content: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
        let signal = match m.kind.as_str() {
            "text" => content["text"]["body"].as_str().map(Signal::Text),
            "button" => content["button"]["payload"].as_str().map(|id| Signal::Button {
                id,
                label: content["button"]["text"].as_str(),
            }),
            "interactive" => ["button_reply", "list_reply"]
                .iter()
                .find_map(|k| content["interactive"][k]["id"].as_str())
                .map(|id| Signal::Button { id, label: None }),
            _ => None,
        };
        match signal {
            Some(signal) => {
                self.detect(tenant, &contact, &ids, signal, id.as_str(), at, origin, counts)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn whatsapp_status(
        &self,
        tenant: &Tenant,
        raw: &RawValue,
        profiles: &HashMap<&str, &wa::Contact>,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let s: wa::Status = match serde_json::from_str(raw.get()) {
            Ok(s) => s,
            Err(e) => {
                return self.reject(origin, "WhatsApp status", &e, raw.get(), counts).await;
            }
        };
        let state = match s.status.as_str() {
            "sent" => DeliveryState::Sent,
            "delivered" => DeliveryState::Delivered,
            "read" => DeliveryState::Read,
            "played" => DeliveryState::Played,
            "failed" => DeliveryState::Failed,
            _ => {
                return self
                    .reject(origin, "WhatsApp status: unknown status", &"", raw.get(), counts)
                    .await;
            }
        };
        let Some(at) = wa::parse_seconds(&s.timestamp).map(Timestamp::from_unix_seconds) else {
            return self
                .reject(origin, "WhatsApp status: bad timestamp", &"", raw.get(), counts)
                .await;
        };
        let (Ok(message_id), Some(Ok(contact))) = (
            MetaMessageId::new(s.id.clone()),
            s.recipient_user_id
                .as_deref()
                .or(s.recipient_id.as_deref())
                .map(|r| ContactId::new(Channel::WhatsApp, r)),
        ) else {
            return self
                .reject(
                    origin,
                    "WhatsApp status: no usable id or recipient",
                    &"",
                    raw.get(),
                    counts,
                )
                .await;
        };
        let mut ids = Vec::new();
        self.link(IdentifierKind::WhatsAppUserId, s.recipient_user_id.as_deref(), &mut ids);
        self.link(IdentifierKind::Phone, s.recipient_id.as_deref(), &mut ids);
        let profile = [s.recipient_user_id.as_deref(), s.recipient_id.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|k| profiles.get(k));
        let name = profile.and_then(|p| p.profile.as_ref()).and_then(|p| p.name.clone());
        self.upsert(tenant, &contact, name, ids.clone(), at).await?;
        let update_contact = contact.clone();
        let update = StatusUpdate {
            tenant: tenant.id.clone(),
            contact,
            message_id,
            state,
            at,
            detail: serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
            expires_at: tenant.retention_months.expiry_for(at),
        };
        match self.stores.conversations.put_status(&update).await? {
            WriteOutcome::Written => counts.statuses += 1,
            WriteOutcome::Unchanged => counts.duplicates += 1,
        }
        // Error 131050: the person stopped marketing messages inside WhatsApp.
        if state == DeliveryState::Failed && s.errors.iter().any(|e| e.code == Some(wa::MARKETING_STOPPED_ERROR)) {
            let source = OptOutSource::FailedStatus;
            let command = command(
                tenant,
                update_contact,
                &ids,
                CommandAction::OptOut,
                OptOutScope::Marketing,
                source,
                at,
            );
            self.send_command(&command, counts).await?;
        }
        Ok(())
    }

    async fn tenant_event(
        &self,
        tenant: &Tenant,
        env: &Envelope,
        field: &str,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let Ok(payload) = serde_json::from_str(env.payload.get()) else {
            return self
                .reject(
                    origin,
                    "tenant event value is not JSON",
                    &field,
                    env.payload.get(),
                    counts,
                )
                .await;
        };
        let event = TenantEvent {
            tenant: tenant.id.clone(),
            id: digest_hex(&[&env.entry_id, field, env.payload.get()]),
            field: field.to_owned(),
            received_at: env.received_at,
            payload,
        };
        match self.stores.tenants.record_event(&event).await? {
            WriteOutcome::Written => counts.tenant_events += 1,
            WriteOutcome::Unchanged => counts.duplicates += 1,
        }
        Ok(())
    }

    async fn instagram_entry(
        &self,
        tenant: &Tenant,
        env: &Envelope,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let entry: ig::Entry = match serde_json::from_str(env.payload.get()) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .reject(origin, "Instagram entry", &e, env.payload.get(), counts)
                    .await;
            }
        };
        for raw in &entry.messaging {
            self.instagram_event(tenant, &entry.id, raw, origin, counts).await?;
        }
        Ok(())
    }

    async fn instagram_event(
        &self,
        tenant: &Tenant,
        business: &str,
        raw: &RawValue,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let e: ig::Event = match serde_json::from_str(raw.get()) {
            Ok(e) => e,
            Err(err) => {
                return self.reject(origin, "Instagram event", &err, raw.get(), counts).await;
            }
        };
        let Some(at) = ig::timestamp_ms(e.timestamp).map(Timestamp::from_unix_millis) else {
            return self
                .reject(origin, "Instagram event: bad timestamp", &"", raw.get(), counts)
                .await;
        };
        // Echoes (business-sent) reverse sender and recipient: the person is the other side.
        let outbound = e.sender.id == business || e.message.as_ref().is_some_and(|m| m.is_echo);
        let person = if outbound { &e.recipient.id } else { &e.sender.id };
        let Ok(contact) = ContactId::new(Channel::Instagram, person.clone()) else {
            return self
                .reject(origin, "Instagram event: unusable IGSID", &"", raw.get(), counts)
                .await;
        };
        let mut ids = Vec::new();
        self.link(IdentifierKind::InstagramId, Some(person), &mut ids);
        self.upsert(tenant, &contact, None, ids.clone(), at).await?;
        let direction = if outbound {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let ts = at.unix_millis();
        let (id, kind) = if let Some(m) = &e.message {
            if m.is_deleted {
                // The person unsent it: our copy goes too.
                if let Ok(mid) = MetaMessageId::new(m.mid.clone()) {
                    let tombstone = tenant.retention_months.expiry_for(at);
                    self.stores
                        .conversations
                        .delete_message(&tenant.id, &contact, &mid, tombstone)
                        .await?;
                    counts.deleted += 1;
                }
                return Ok(());
            }
            let kind = if !m.attachments.is_empty() {
                "attachment"
            } else if m.quick_reply.is_some() {
                "quick_reply"
            } else if m.text.is_some() {
                "text"
            } else {
                "message"
            };
            (m.mid.clone(), kind)
        } else if let Some(r) = &e.reaction {
            (
                format!("{}#{}#{ts}", r.mid, r.action.as_deref().unwrap_or("react")),
                "reaction",
            )
        } else if let Some(read) = &e.read {
            let Ok(message_id) = MetaMessageId::new(read.mid.clone()) else {
                return self
                    .reject(origin, "Instagram read: bad mid", &"", raw.get(), counts)
                    .await;
            };
            let update = StatusUpdate {
                tenant: tenant.id.clone(),
                contact,
                message_id,
                state: DeliveryState::Read,
                at,
                detail: serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
                expires_at: tenant.retention_months.expiry_for(at),
            };
            match self.stores.conversations.put_status(&update).await? {
                WriteOutcome::Written => counts.statuses += 1,
                WriteOutcome::Unchanged => counts.duplicates += 1,
            }
            return Ok(());
        } else if let Some(p) = &e.postback {
            (p.mid.clone().unwrap_or_else(|| format!("postback#{ts}")), "postback")
        } else if let Some(edit) = &e.message_edit {
            (
                shared::store::keys::edit_id(&edit.mid, &edit.num_edit.unwrap_or_default().to_string()),
                "edit",
            )
        } else if e.referral.is_some() {
            (format!("referral#{ts}"), "referral")
        } else {
            self.hold(
                origin,
                QuarantineBucket::Unhandled,
                "unhandled Instagram event",
                &"",
                raw.get(),
            )
            .await?;
            counts.unhandled += 1;
            return Ok(());
        };
        let Ok(id) = MetaMessageId::new(id) else {
            return self
                .reject(origin, "Instagram event: bad message id", &"", raw.get(), counts)
                .await;
        };
        self.store_message(tenant, &contact, id.clone(), direction, at, kind, raw, counts)
            .await?;
        let inbound_message = e.message.as_ref().filter(|_| !outbound);
        let quick_reply = inbound_message
            .and_then(|m| m.quick_reply.as_ref())
            .and_then(|q| q["payload"].as_str());
        let signal = match (quick_reply, inbound_message.and_then(|m| m.text.as_deref())) {
            (Some(payload), label) => Some(Signal::Button { id: payload, label }),
            (None, Some(text)) => Some(Signal::Text(text)),
            (None, None) => None,
        };
        match signal {
            Some(signal) => {
                self.detect(tenant, &contact, &ids, signal, id.as_str(), at, origin, counts)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Meta's marketing preference: stop or resume marketing messages, set inside WhatsApp.
    async fn user_preferences(
        &self,
        tenant: &Tenant,
        env: &Envelope,
        origin: &Origin<'_>,
        counts: &mut Counts,
    ) -> Result<(), ProcessError> {
        let value: wa::UserPreferencesValue = match serde_json::from_str(env.payload.get()) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .reject(origin, "user_preferences value", &e, env.payload.get(), counts)
                    .await;
            }
        };
        for raw in &value.user_preferences {
            let Ok(p) = serde_json::from_str::<wa::UserPreference>(raw.get()) else {
                self.reject(origin, "user_preferences item", &"", raw.get(), counts)
                    .await?;
                continue;
            };
            let action = match (p.category.as_str(), p.value.as_str()) {
                ("marketing_messages", "stop") => CommandAction::OptOut,
                ("marketing_messages", "resume") => CommandAction::OptIn,
                _ => {
                    self.hold(
                        origin,
                        QuarantineBucket::Unhandled,
                        "unhandled user preference",
                        &"",
                        raw.get(),
                    )
                    .await?;
                    counts.unhandled += 1;
                    continue;
                }
            };
            let (Some(seconds), Some(Ok(contact))) = (
                Some(p.timestamp).filter(|t| wa::PLAUSIBLE_SECONDS.contains(t)),
                p.user_id
                    .as_deref()
                    .or(p.wa_id.as_deref())
                    .map(|id| ContactId::new(Channel::WhatsApp, id)),
            ) else {
                self.reject(
                    origin,
                    "user_preferences item: bad timestamp or person",
                    &"",
                    raw.get(),
                    counts,
                )
                .await?;
                continue;
            };
            let at = Timestamp::from_unix_seconds(seconds);
            let mut ids = Vec::new();
            self.link(IdentifierKind::WhatsAppUserId, p.user_id.as_deref(), &mut ids);
            self.link(IdentifierKind::Phone, p.wa_id.as_deref(), &mut ids);
            self.upsert(tenant, &contact, None, ids.clone(), at).await?;
            let source = OptOutSource::UserPreferences;
            let command = command(tenant, contact, &ids, action, OptOutScope::Marketing, source, at);
            self.send_command(&command, counts).await?;
        }
        Ok(())
    }
}

/// A command for every identifier seen, the contact's stable id first.
fn command(
    tenant: &Tenant,
    contact: ContactId,
    ids: &[LinkedIdentifier],
    action: CommandAction,
    scope: OptOutScope,
    source: OptOutSource,
    at: Timestamp,
) -> OptOutCommand {
    OptOutCommand {
        tenant: tenant.id.clone(),
        contact,
        subject_keys: ids.iter().map(|l| l.subject_key.clone()).collect(),
        action,
        scope,
        source,
        event_at: at,
        only_while_opted_out: false,
        language: None,
    }
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn digest_hex(parts: &[&str]) -> String {
    hex::encode(&digest(parts)[..16])
}

#[cfg(test)]
mod tests;
