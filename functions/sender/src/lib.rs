//! The outbound sender: every message that leaves the system goes through here, from the
//! system's replies queue (opt-out confirmations, help, privacy status links) and the tenants'
//! queue (`POST /admin/tenants/{tenant}/messages`, served by `api`).
//!
//! For each command, in order:
//! 1. claim its dedup key in the outbox (a conditional write, kept a day): Meta's send API has
//!    no idempotency key, so a redelivery finds the claim and sends nothing. A claim with no
//!    outcome, older than one attempt can run, is marked stale, counted and listed for an
//!    operator, never sent again on its own;
//! 2. the gate (`shared::outbound::gate`), immediately before sending: contactability for the
//!    content's purpose (the system's answers to the person's own requests excepted) and the
//!    24-hour window for free-form content; a refusal is recorded on the claim;
//! 3. a send slot of the sending account (Meta's throughput per phone number);
//! 4. the send, retried only on answers that say nothing was sent; then the outcome on the
//!    claim, the message in the contact's conversation (a tenant's) or the reply in the privacy
//!    request's timeline (a status link), and a 131050 refusal to the opt-out queue.

pub mod api;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::privacy::REPLY_SENT;
use shared::domain::{
    ContactId, ContactUpsert, Direction, Message, MetaMessageId, OptOutScope, OptOutSource, RequestId, Tenant,
    TimelineEntry,
};
use shared::meta::send::{MessageSender, SendError, SendRequest, TokenSource};
use shared::optout::command::{CommandAction, OptOutCommand};
use shared::optout::contactability::{self, Contactability};
use shared::outbound::{
    Claim, Content, GateInput, OutboundCommand, OutboxEntry, OutboxState, Outcome, Refusal, gate, messages_per_second,
};
use shared::queue::{Queue, QueueError};
use shared::store::{ConversationStore, OptOutStore, OutboxStore, PrivacyRequestStore, StoreError, TenantStore};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;
use std::time::Duration;

/// The metric of sends that may or may not have left (template.yaml alarms on it).
pub const STALE_CLAIMS: &str = "StaleClaims";
/// Who records a system reply in a request's timeline.
pub const ACTOR: &str = "sender";
/// How many times a send slot is asked for (each wait is up to the next second) before the
/// command goes back to SQS.
const SLOT_TRIES: u32 = 3;
/// The longest one command can take: the token's first read (5 s), the send slot (3 s), Meta's
/// three attempts with their backoff (`meta::send`: 3 x 4 s and under 0.1 s), the records around
/// them. A command is not started with less than this left of the invocation: a timeout
/// mid-send would leave a stale claim for an operator; one not started just goes back to SQS.
pub const COMMAND_BUDGET: Duration = Duration::from_secs(23);

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Nothing was sent; SQS delivers the command again later.
    #[error("not sent now, retried later: {0}")]
    Later(String),
}

impl SenderError {
    fn log_safe(&self) -> String {
        match self {
            Self::Store(e) => e.log_safe(),
            other => other.to_string(),
        }
    }
}

/// What one command came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        message_id: String,
    },
    Refused(Refusal),
    /// Meta refused it for good, with its error code.
    Failed(Option<i64>),
    /// Its key was already claimed, and has this outcome (a redelivery).
    Duplicate(OutboxState),
    /// A claim with no outcome was found: the message may have left, so it is listed for an
    /// operator instead of sent again.
    Stale,
}

impl Delivery {
    /// For logs and metrics: never Meta's message id.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::Refused(r) => r.as_str(),
            Self::Failed(_) => "failed",
            Self::Duplicate(_) => "duplicate",
            Self::Stale => "stale",
        }
    }
}

/// The stores the sender uses: built alone in Lambda, so its binary links no other.
#[derive(Clone, Debug)]
pub struct SenderStores {
    pub conversations: Arc<dyn ConversationStore>,
    pub opt_outs: Arc<dyn OptOutStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub privacy_requests: Arc<dyn PrivacyRequestStore>,
    pub outbox: Arc<dyn OutboxStore>,
}

#[derive(Clone, Debug)]
pub struct Sender {
    stores: SenderStores,
    graph: Arc<dyn MessageSender>,
    tokens: Arc<dyn TokenSource>,
    /// A 131050 refusal is a marketing STOP: it goes where every STOP goes.
    optout: Arc<dyn Queue>,
    clock: SharedClock,
}

pub fn build(r: &impl Resources) -> Result<Sender, WiringError> {
    let graph =
        shared::meta::send::GraphSender::new(&r.whatsapp_api_base_url(), &r.graph_api_base_url()).map_err(|e| {
            WiringError::Config(shared::config::ConfigError::Malformed {
                name: shared::meta::send::WHATSAPP_API_BASE_URL,
                reason: e.to_string(),
            })
        })?;
    Ok(Sender::new(
        SenderStores {
            conversations: r.conversations(),
            opt_outs: r.opt_outs(),
            tenants: r.tenants(),
            privacy_requests: r.privacy_requests(),
            outbox: r.outbox(),
        },
        Arc::new(graph),
        r.tenant_tokens(),
        r.queue(QueueKind::OptOut)?,
        r.clock(),
    ))
}

#[derive(Default)]
struct Counts {
    sent: u64,
    refused: u64,
    failed: u64,
    duplicates: u64,
    stale: u64,
    retried: u64,
}

fn failure(message_id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id;
    f
}

impl Sender {
    pub fn new(
        stores: SenderStores,
        graph: Arc<dyn MessageSender>,
        tokens: Arc<dyn TokenSource>,
        optout: Arc<dyn Queue>,
        clock: SharedClock,
    ) -> Self {
        Self {
            stores,
            graph,
            tokens,
            optout,
            clock,
        }
    }

    /// A batch with no time limit (the local stack).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_within(event, Duration::MAX).await
    }

    /// A batch in an invocation with `time_left`: commands it has no time to finish go back to
    /// SQS unstarted.
    pub async fn handle_within(&self, event: SqsEvent, time_left: Duration) -> SqsBatchResponse {
        let (response, counters) = self.handle_counted(event, time_left).await;
        shared::metrics::emit("sender", self.clock.now(), &counters);
        response
    }

    /// `handle_within`, with the counters it emits (CloudWatch metrics; `StaleClaims` is alarmed).
    pub async fn handle_counted(
        &self,
        event: SqsEvent,
        time_left: Duration,
    ) -> (SqsBatchResponse, [(&'static str, u64); 6]) {
        let mut response = SqsBatchResponse::default();
        let mut counts = Counts::default();
        let started = std::time::Instant::now();
        for record in event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            if time_left.saturating_sub(started.elapsed()) < COMMAND_BUDGET {
                counts.retried += 1;
                response.batch_item_failures.push(failure(message_id));
                continue;
            }
            let command: OutboundCommand = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
                Ok(c) => c,
                Err(_) => {
                    // Only our functions write these queues: a body that is no command is a bug,
                    // kept (via the dead-letter queue) in quarantine for a person to see.
                    tracing::error!(%message_id, "malformed outbound command: not a reply nor a tenant message");
                    response.batch_item_failures.push(failure(message_id));
                    continue;
                }
            };
            let key = shared::outbound::dedup_key(&command);
            match self.deliver(&command).await {
                Ok(d) => {
                    match &d {
                        Delivery::Sent { .. } => counts.sent += 1,
                        Delivery::Refused(_) => counts.refused += 1,
                        Delivery::Failed(_) => counts.failed += 1,
                        Delivery::Duplicate(_) => counts.duplicates += 1,
                        Delivery::Stale => counts.stale += 1,
                    }
                    // The kind only: a WhatsApp message id encodes the recipient's number.
                    tracing::info!(%message_id, tenant = %command.tenant(), key = %key, outcome = d.kind(), "outbound command done");
                }
                Err(e) => {
                    counts.retried += 1;
                    tracing::warn!(%message_id, tenant = %command.tenant(), key = %key, error = %e.log_safe(), "outbound command not done; SQS will redeliver it");
                    response.batch_item_failures.push(failure(message_id));
                }
            }
        }
        let counters = [
            ("MessagesSent", counts.sent),
            ("MessagesRefused", counts.refused),
            ("MessagesFailed", counts.failed),
            ("DuplicateCommands", counts.duplicates),
            (STALE_CLAIMS, counts.stale),
            ("SendsRetried", counts.retried),
        ];
        (response, counters)
    }

    /// One command, start to end. An `Err` means nothing was sent and the claim (if any) was
    /// released, or the outcome could not be recorded; either way SQS delivers it again.
    pub async fn deliver(&self, command: &OutboundCommand) -> Result<Delivery, SenderError> {
        let now = self.clock.now();
        let entry = OutboxEntry::claim(command, now);
        let mine = match self.stores.outbox.claim(&entry).await? {
            Claim::Won(mine) => mine,
            Claim::Held(held) => return self.held(command, held, now).await,
        };
        match self.attempt(command, &mine).await {
            Ok(d) => Ok(d),
            Err(Attempt::NotSent(why)) => {
                self.stores
                    .outbox
                    .release(&mine.tenant, &mine.dedup_key, mine.attempt, self.clock.now())
                    .await?;
                Err(SenderError::Later(why))
            }
            Err(Attempt::Unrecorded(e)) => Err(e),
        }
    }

    /// A redelivery, or a concurrent copy: never a second send.
    async fn held(
        &self,
        command: &OutboundCommand,
        held: OutboxEntry,
        now: Timestamp,
    ) -> Result<Delivery, SenderError> {
        // Recorded; what follows the record may not have been written. Only for the same message
        // (a key reused with other content before the first was claimed is not it), and at the
        // recorded time, so the writes land where the first attempt's did.
        let same = held.digest == shared::outbound::command_digest(command);
        match (held.state, &held.message_id, held.error_code) {
            (OutboxState::Sent, Some(message_id), _) if same => {
                if let Some(tenant) = self.stores.tenants.get(&held.tenant).await? {
                    self.after_sent(command, &tenant, message_id, held.updated_at).await?;
                }
            }
            (OutboxState::Failed, _, Some(shared::meta::whatsapp::MARKETING_STOPPED_ERROR)) if same => {
                if let Some(tenant) = self.stores.tenants.get(&held.tenant).await? {
                    let contact = self.stores.conversations.get_contact(&tenant.id, command.to()).await?;
                    self.marketing_stopped(&tenant, command.to(), contact.as_ref(), held.updated_at)
                        .await?;
                }
            }
            _ if !same => {
                tracing::warn!(tenant = %held.tenant, key = %held.dedup_key, "a key used again for another message: the second is not sent");
            }
            _ => {}
        }
        if held.state != OutboxState::Claimed {
            return Ok(Delivery::Duplicate(held.state));
        }
        if !held.is_stale_claim(now) {
            // Another attempt may still be sending: ask again after the visibility timeout.
            return Err(SenderError::Later("another attempt holds the claim".to_owned()));
        }
        if self
            .stores
            .outbox
            .mark_stale(&held.tenant, &held.dedup_key, held.attempt, now)
            .await?
        {
            tracing::error!(tenant = %held.tenant, key = %held.dedup_key, claimed_at = %held.claimed_at, "stale outbound claim: the message may or may not have been sent; listed for an operator");
            Ok(Delivery::Stale)
        } else {
            // Recorded meanwhile by the attempt that held it.
            Ok(Delivery::Duplicate(OutboxState::Claimed))
        }
    }

    async fn attempt(&self, command: &OutboundCommand, mine: &OutboxEntry) -> Result<Delivery, Attempt> {
        let stored = |e: StoreError| Attempt::NotSent(e.log_safe());
        let tenant = match self.stores.tenants.get(command.tenant()).await.map_err(stored)? {
            Some(t) if t.offboarding.is_none() => t,
            _ => return self.refuse(mine, Refusal::NoTenant).await,
        };
        let to = command.to();
        let Some(account) = tenant.accounts.iter().find(|a| a.channel == to.channel).cloned() else {
            return self.refuse(mine, Refusal::NoAccount).await;
        };
        let content = command.content();
        let now = self.clock.now();
        let since = now.plus(-shared::outbound::CUSTOMER_SERVICE_WINDOW);
        let contact = self
            .stores
            .conversations
            .get_contact(&tenant.id, to)
            .await
            .map_err(stored)?;
        let (contactability, answering_at) = match command {
            OutboundCommand::Reply(r) => (
                // The gate lets the person's own answers through whatever their state.
                Contactability {
                    contactable: true,
                    scope: None,
                    since: None,
                    source: None,
                },
                r.answering_at,
            ),
            OutboundCommand::Message(_) => {
                let Some(contact) = &contact else {
                    return self.refuse(mine, Refusal::NoContact).await;
                };
                let keys: Vec<_> = contact.identifiers.iter().map(|l| l.subject_key.clone()).collect();
                let c = contactability::check_keys(
                    self.stores.opt_outs.as_ref(),
                    self.stores.conversations.as_ref(),
                    &tenant.id,
                    &keys,
                    content.purpose(),
                )
                .await
                .map_err(stored)?;
                (c, None)
            }
        };
        let last_inbound = if contact.is_some() {
            self.stores
                .outbox
                .last_inbound(&tenant.id, to, since)
                .await
                .map_err(stored)?
        } else {
            None
        };
        let input = GateInput {
            command,
            contactability: &contactability,
            last_inbound: last_inbound.max(answering_at),
            now,
        };
        if let Err(refusal) = gate(&input) {
            return self.refuse(mine, refusal).await;
        }
        let Some(secret) = &tenant.access_token_secret else {
            return self.refuse(mine, Refusal::NoToken).await;
        };
        let token = match self.tokens.token(secret).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "no access token for the tenant");
                return self.refuse(mine, Refusal::NoToken).await;
            }
        };
        self.send_slot(&account).await?;
        let request = SendRequest {
            channel: to.channel,
            account: &account.account_id,
            to: &to.stable_id,
            content: &content,
        };
        let sent = self.graph.send(&token, &request).await;
        // One time for the record and what follows it, so a redelivery that completes them
        // writes the same items.
        let at = self.clock.now();
        match sent {
            Ok(sent) => {
                // The send's record first: it is what keeps a redelivery from sending again.
                self.finish(
                    mine,
                    Outcome::Sent {
                        message_id: sent.message_id.clone(),
                    },
                    at,
                )
                .await?;
                // Then where it is kept; if that fails, the redelivery finds the send recorded
                // and completes this at the recorded time (both writes are idempotent).
                self.after_sent(command, &tenant, &sent.message_id, at)
                    .await
                    .map_err(Attempt::Unrecorded)?;
                Ok(Delivery::Sent {
                    message_id: sent.message_id,
                })
            }
            Err(e @ SendError::Retryable { .. }) => Err(Attempt::NotSent(e.to_string())),
            // Refused before anything left (the request could not be made).
            Err(e @ SendError::Config(_)) => Err(Attempt::NotSent(e.to_string())),
            Err(SendError::Permanent { code, .. }) => {
                self.finish(mine, Outcome::Failed { code }, at).await?;
                tracing::warn!(tenant = %tenant.id, key = %mine.dedup_key, code = ?code, "Meta refused the message for good");
                if code == Some(shared::meta::whatsapp::MARKETING_STOPPED_ERROR) {
                    // Recorded first: if this fails, the redelivery finds the failure and
                    // queues the STOP again, as the same event.
                    self.marketing_stopped(&tenant, to, contact.as_ref(), at)
                        .await
                        .map_err(Attempt::Unrecorded)?;
                }
                Ok(Delivery::Failed(code))
            }
            Err(e @ SendError::Ambiguous(_)) => {
                // It may have left: the claim stays, and is marked stale for an operator now
                // rather than at the next delivery.
                tracing::error!(tenant = %tenant.id, key = %mine.dedup_key, error = %e, "outbound send ended without an answer");
                let at = self.clock.now();
                self.stores
                    .outbox
                    .mark_stale(&mine.tenant, &mine.dedup_key, mine.attempt, at)
                    .await
                    .map_err(|e| Attempt::Unrecorded(e.into()))?;
                Ok(Delivery::Stale)
            }
        }
    }

    async fn refuse(&self, mine: &OutboxEntry, refusal: Refusal) -> Result<Delivery, Attempt> {
        // Decided before any send: a refusal that cannot be recorded releases the claim.
        if let Err(Attempt::Unrecorded(e)) = self.finish(mine, Outcome::Refused(refusal), self.clock.now()).await {
            return Err(Attempt::NotSent(e.log_safe()));
        }
        tracing::info!(tenant = %mine.tenant, key = %mine.dedup_key, reason = refusal.as_str(), "outbound message refused");
        Ok(Delivery::Refused(refusal))
    }

    /// Records the attempt's outcome. Failing to is an unrecorded outcome: the redelivery will
    /// find the claim and, the message having possibly left, mark it stale.
    async fn finish(&self, mine: &OutboxEntry, outcome: Outcome, at: Timestamp) -> Result<(), Attempt> {
        self.stores
            .outbox
            .finish(&mine.tenant, &mine.dedup_key, mine.attempt, &outcome, at)
            .await
            .map_err(|e| Attempt::Unrecorded(e.into()))?;
        Ok(())
    }

    /// Waits for a send slot of the account within Meta's throughput, up to a few seconds.
    async fn send_slot(&self, account: &shared::domain::ChannelAccount) -> Result<(), Attempt> {
        let limit = messages_per_second(account.channel);
        for _ in 0..SLOT_TRIES {
            let now = self.clock.now();
            let taken = self
                .stores
                .outbox
                .take_send_slot(account, now.unix_seconds(), limit)
                .await
                .map_err(|e| Attempt::NotSent(e.log_safe()))?;
            if taken {
                return Ok(());
            }
            let into_second = now.unix_millis().rem_euclid(1000) as u64;
            tokio::time::sleep(Duration::from_millis(1000 - into_second)).await;
        }
        Err(Attempt::NotSent(
            "the account's send rate is at Meta's limit".to_owned(),
        ))
    }

    /// A tenant's message becomes an outbound message of the contact's conversation, with the
    /// tenant's retention (its statuses attach to it by Meta's id); a reply about a privacy
    /// request goes into the request's timeline, never into the conversation.
    async fn after_sent(
        &self,
        command: &OutboundCommand,
        tenant: &Tenant,
        message_id: &str,
        sent_at: Timestamp,
    ) -> Result<(), SenderError> {
        let (to, content) = (command.to(), command.content());
        match command {
            OutboundCommand::Message(_) => {
                let Ok(id) = MetaMessageId::new(message_id) else {
                    tracing::warn!(tenant = %tenant.id, "Meta's message id is not one we can store; the message is not recorded in the conversation");
                    return Ok(());
                };
                let now = sent_at;
                let upsert = ContactUpsert {
                    tenant: tenant.id.clone(),
                    contact: to.clone(),
                    profile_name: None,
                    identifiers: Vec::new(),
                    seen_at: now,
                    expires_at: tenant.retention_months.contact_expiry_for(now),
                };
                let message = Message {
                    tenant: tenant.id.clone(),
                    contact: to.clone(),
                    id,
                    direction: Direction::Outbound,
                    sent_at: now,
                    kind: content.kind().to_owned(),
                    content: stored_content(&content),
                    expires_at: tenant.retention_months.expiry_for(now),
                };
                self.stores.conversations.record_message(&upsert, &message).await?;
            }
            OutboundCommand::Reply(r) => {
                if let Some(request) = r.request {
                    self.note_in_timeline(request, r.kind).await?;
                }
            }
        }
        Ok(())
    }

    async fn note_in_timeline(
        &self,
        request: RequestId,
        kind: shared::optout::command::ReplyKind,
    ) -> Result<(), SenderError> {
        // The erasure worker writes the request after every batch: conflicts are expected.
        let mut backoff = shared::backoff::Backoff::default();
        loop {
            let Some(mut r) = self.stores.privacy_requests.get(request).await? else {
                return Ok(());
            };
            if r.timeline.iter().any(|e| e.event == REPLY_SENT) {
                return Ok(());
            }
            if !r.status.is_open() {
                // Closed requests are final: the erasure finished before its link was sent. The
                // send stays in the outbox (`reply:<dedup key>`).
                tracing::info!(request = %request, "reply sent after its request closed; not noted in the timeline");
                return Ok(());
            }
            r.timeline.push(TimelineEntry {
                at: self.clock.now(),
                event: REPLY_SENT.to_owned(),
                by: ACTOR.to_owned(),
                reason: Some(format!("{kind:?}")),
            });
            match self.stores.privacy_requests.update(&r).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) if backoff.wait().await => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Meta says the person stopped marketing messages: the same marketing opt-out a failed
    /// status with 131050 gives, through the opt-out function.
    async fn marketing_stopped(
        &self,
        tenant: &Tenant,
        to: &ContactId,
        contact: Option<&shared::domain::Contact>,
        at: Timestamp,
    ) -> Result<(), SenderError> {
        let Some(contact) = contact else {
            return Ok(());
        };
        let mut subject_keys: Vec<_> = contact.identifiers.iter().map(|l| l.subject_key.clone()).collect();
        // The contact's stable id first, as the processor orders them.
        if let Some(i) = contact
            .identifiers
            .iter()
            .position(|l| l.identifier.value() == to.stable_id)
        {
            subject_keys.swap(0, i);
        }
        // The failure's recorded time is the event's identity: queued again, it is a replay.
        let cmd = OptOutCommand {
            tenant: tenant.id.clone(),
            contact: to.clone(),
            subject_keys,
            action: CommandAction::OptOut,
            scope: OptOutScope::Marketing,
            source: OptOutSource::FailedStatus,
            event_at: at,
            order_at: at,
            only_while_opted_out: false,
            language: None,
        };
        let body = shared::queue::to_body(&cmd).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.optout.send_batch(&[body]).await?;
        Ok(())
    }
}

/// How an attempt that holds the claim ended badly.
#[derive(Debug)]
enum Attempt {
    /// Nothing left: release the claim, SQS redelivers.
    NotSent(String),
    /// The message may have left but its outcome is not recorded: the claim stays.
    Unrecorded(SenderError),
}

/// The message as Meta's webhooks show a business's message: its type and that type's object.
fn stored_content(content: &Content) -> serde_json::Value {
    match content {
        Content::Text { body } => serde_json::json!({"type": "text", "text": {"body": body}}),
        Content::Template {
            name,
            language,
            category,
            components,
        } => serde_json::json!({"type": "template", "template": {
            "name": name, "language": {"code": language}, "category": category, "components": components}}),
        Content::Interactive { interactive } => serde_json::json!({"type": "interactive", "interactive": interactive}),
    }
}

#[cfg(test)]
mod tests;
