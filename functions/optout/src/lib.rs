//! The opt-out queue consumer. For each command: apply the new state under every subject key
//! linked to the contact in that tenant, the newest by order time wins; on a real change, publish
//! it for the rest of the system and queue the confirmation reply, then mark the change confirmed.
//! Only the change the store's conditional write of the primary key accepted has consequences, so
//! a change that loses to a concurrent newer one says nothing. A replay (the same Meta event, even
//! with another order time) finds the change already applied and confirmed, and does nothing.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use sha2::{Digest, Sha256};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::optout::Expect;
use shared::domain::{ApplyOutcome, OptOutRecord, OptOutScope, OptState, Tenant};
use shared::identity::SubjectKey;
use shared::optout::command::{OptOutCommand, OutboundReply, PropagationEvent, ReplyKind};
use shared::optout::replies;
use shared::queue::{Queue, QueueError};
use shared::store::{ConversationStore, OptOutStore, StoreError, Stores, TenantStore};
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

/// How many times a command is decided again when another instance changed the state between
/// this one's read and its write; then it fails, and SQS redelivers it.
const ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the opt-out state kept changing under {ATTEMPTS} attempts to apply the command")]
    Contended,
}

impl OptOutError {
    fn log_safe(&self) -> String {
        match self {
            Self::Store(e) => e.log_safe(),
            Self::Queue(e) => e.to_string(),
            Self::Contended => self.to_string(),
        }
    }
}

/// What one command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The state changed: published and confirmed.
    Changed,
    /// Applied, but the person was already in that state: nothing to say.
    Unchanged,
    /// An older or repeated event, or one that lost to a newer change written meanwhile:
    /// nothing changed, nothing said.
    Stale,
    /// YES from someone not opted out, or a command for an unknown tenant.
    Ignored,
    /// A help reply was queued.
    Helped,
}

/// The stores the opt-out function uses: built alone in Lambda, so its binary links no other.
#[derive(Clone, Debug)]
pub struct OptOutStores {
    pub conversations: Arc<dyn ConversationStore>,
    pub opt_outs: Arc<dyn OptOutStore>,
    pub tenants: Arc<dyn TenantStore>,
}

impl From<Stores> for OptOutStores {
    fn from(s: Stores) -> Self {
        Self {
            conversations: s.conversations,
            opt_outs: s.opt_outs,
            tenants: s.tenants,
        }
    }
}

#[derive(Clone, Debug)]
pub struct OptOutHandler {
    stores: OptOutStores,
    propagation: Arc<dyn Queue>,
    outbound: Arc<dyn Queue>,
    clock: SharedClock,
}

/// The opt-out handler from its resources: the stores and the propagation and outbound queues.
pub fn build(r: &impl Resources) -> Result<OptOutHandler, WiringError> {
    let stores = OptOutStores {
        conversations: r.conversations(),
        opt_outs: r.opt_outs(),
        tenants: r.tenants(),
    };
    Ok(OptOutHandler::new(
        stores,
        r.queue(QueueKind::Propagation)?,
        r.queue(QueueKind::Outbound)?,
        r.clock(),
    ))
}

impl OptOutHandler {
    pub fn new(
        stores: impl Into<OptOutStores>,
        propagation: Arc<dyn Queue>,
        outbound: Arc<dyn Queue>,
        clock: SharedClock,
    ) -> Self {
        Self {
            stores: stores.into(),
            propagation,
            outbound,
            clock,
        }
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let (mut changed, mut stale) = (0u64, 0u64);
        // In order: two commands for one person in a batch must not race each other.
        for record in event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let command: OptOutCommand = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
                Ok(c) => c,
                Err(_) => {
                    // Only the processor writes this queue: a malformed command is a bug, kept in
                    // the dead-letter queue for a person to see.
                    tracing::error!(%message_id, "malformed opt-out command");
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = message_id;
                    response.batch_item_failures.push(f);
                    continue;
                }
            };
            match self.apply(&command).await {
                Ok(Outcome::Changed) => changed += 1,
                Ok(Outcome::Stale) => stale += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%message_id, error = %e.log_safe(), "opt-out command failed; SQS will redeliver it");
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = message_id;
                    response.batch_item_failures.push(f);
                }
            }
        }
        shared::metrics::emit(
            "optout",
            self.clock.now(),
            &[("StateChanges", changed), ("StaleCommands", stale)],
        );
        response
    }

    pub async fn apply(&self, cmd: &OptOutCommand) -> Result<Outcome, OptOutError> {
        let Some(tenant) = self.stores.tenants.get(&cmd.tenant).await? else {
            tracing::warn!(tenant = %cmd.tenant, "opt-out command for an unknown tenant");
            return Ok(Outcome::Ignored);
        };
        let Some(primary) = cmd.subject_keys.first().cloned() else {
            return Ok(Outcome::Ignored);
        };
        let Some(state) = cmd.state() else {
            self.reply(
                &tenant,
                cmd,
                ReplyKind::Help,
                format!("help:{}:{}", primary, cmd.event_at.unix_millis()),
            )
            .await?;
            return Ok(Outcome::Helped);
        };
        let keys = self.linked_keys(&tenant, cmd).await?;
        let mut lost = false;
        for _ in 0..ATTEMPTS {
            let existing = self.records(&tenant, &keys, cmd.scope).await?;
            let newest = OptOutRecord::in_force(&existing);
            if cmd.only_while_opted_out {
                let all = if cmd.scope == OptOutScope::All {
                    newest.cloned()
                } else {
                    OptOutRecord::in_force(&self.records(&tenant, &keys, OptOutScope::All).await?).cloned()
                };
                if all.is_none_or(|r| r.state != OptState::OptedOut) {
                    return Ok(Outcome::Ignored);
                }
            }
            let incoming = OptOutRecord {
                tenant: tenant.id.clone(),
                subject_key: primary.clone(),
                scope: cmd.scope,
                state,
                source: cmd.source,
                event_at: cmd.event_at,
                order_at: cmd.order_at,
                // The person's state before this event is the newest record under any identifier.
                previous: newest.map(|r| r.state),
                confirmed: false,
            };
            if let Some(current) = newest.filter(|n| !incoming.supersedes(n)) {
                if lost {
                    tracing::info!(subject = %primary, "opt-out change lost to a newer one written meanwhile");
                }
                return self.settle(&tenant, cmd, &keys, &existing, current, &incoming).await;
            }
            // The primary key's write decides, guarded by the state read there: only the change
            // that wins it has consequences, and the `previous` it records is exact.
            let read = existing.iter().find(|r| r.subject_key == primary).map(|r| r.state);
            match self.stores.opt_outs.apply(&incoming, Expect::State(read)).await? {
                ApplyOutcome::Applied => {
                    self.bring_in_line(&keys, &incoming, &existing).await?;
                    if !incoming.is_change() {
                        return Ok(Outcome::Unchanged);
                    }
                    self.consequences(&tenant, cmd, &keys, &incoming).await?;
                    return Ok(Outcome::Changed);
                }
                ApplyOutcome::Replay => {
                    // An earlier delivery applied this event (its order time may have differed).
                    let existing = self.records(&tenant, &keys, cmd.scope).await?;
                    let Some(current) = OptOutRecord::in_force(&existing) else {
                        return Ok(Outcome::Stale);
                    };
                    return self.settle(&tenant, cmd, &keys, &existing, current, &incoming).await;
                }
                // Another instance wrote in between: read again and decide again.
                ApplyOutcome::Stale => lost = true,
            }
        }
        Err(OptOutError::Contended)
    }

    /// The command did not win: `current` is in force. Every identifier follows it (including
    /// ones linked since); if it is this very event and a delivery died before its consequences
    /// went out, they go out now.
    async fn settle(
        &self,
        tenant: &Tenant,
        cmd: &OptOutCommand,
        keys: &[SubjectKey],
        existing: &[OptOutRecord],
        current: &OptOutRecord,
        incoming: &OptOutRecord,
    ) -> Result<Outcome, OptOutError> {
        self.bring_in_line(keys, current, existing).await?;
        let owed = current.same_event(incoming)
            && current.is_change()
            && !existing.iter().any(|r| r.same_event(incoming) && r.confirmed);
        if !owed {
            return Ok(Outcome::Stale);
        }
        self.consequences(tenant, cmd, keys, current).await?;
        Ok(Outcome::Changed)
    }

    /// The records under `keys`, the primary (first) read last: a winner writes the primary
    /// before the others, so the record in force is then the primary's as read, and the state
    /// the primary write is guarded by is the `previous` it records.
    async fn records(
        &self,
        tenant: &Tenant,
        keys: &[SubjectKey],
        scope: OptOutScope,
    ) -> Result<Vec<OptOutRecord>, OptOutError> {
        let mut out = Vec::new();
        for key in keys.iter().rev() {
            if let Some(r) = self.stores.opt_outs.get(&tenant.id, key, scope).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Copies `record` under every key whose state (as read) it supersedes; the store keeps any
    /// newer one written since.
    async fn bring_in_line(
        &self,
        keys: &[SubjectKey],
        record: &OptOutRecord,
        existing: &[OptOutRecord],
    ) -> Result<(), OptOutError> {
        for key in keys {
            let held = existing.iter().find(|r| &r.subject_key == key);
            if key == &record.subject_key || held.is_some_and(|h| !record.supersedes(h)) {
                continue;
            }
            let copy = OptOutRecord {
                subject_key: key.clone(),
                confirmed: false,
                ..record.clone()
            };
            if self.stores.opt_outs.apply(&copy, Expect::Any).await? == ApplyOutcome::Applied {
                tracing::debug!(subject = %key, "identifier brought in line");
            }
        }
        Ok(())
    }

    /// Publish the change, confirm it to the person, then record that both went out.
    async fn consequences(
        &self,
        tenant: &Tenant,
        cmd: &OptOutCommand,
        keys: &[SubjectKey],
        change: &OptOutRecord,
    ) -> Result<(), OptOutError> {
        let primary = keys.first().map(SubjectKey::as_str).unwrap_or_default();
        let scope = match change.scope {
            OptOutScope::All => "all",
            OptOutScope::Marketing => "marketing",
        };
        let identity = format!(
            "{primary}:{}:{scope}:{}",
            change.event_at.unix_millis(),
            state_tag(change.state)
        );
        let event = PropagationEvent {
            event_id: hex::encode(&Sha256::digest(identity.as_bytes())[..16]),
            event: change.state,
            tenant: tenant.id.clone(),
            subject_keys: keys.to_vec(),
            scope: change.scope,
            source: change.source,
            at: change.order_at,
        };
        let body = shared::queue::to_body(&event).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.propagation.send_batch(&[body]).await?;
        // Meta's marketing preference is set inside WhatsApp itself: the person needs no reply.
        if change.scope == OptOutScope::All {
            let kind = match change.state {
                OptState::OptedOut => ReplyKind::OptOutConfirmation,
                OptState::OptedIn => ReplyKind::OptInConfirmation,
            };
            let dedup = format!(
                "{}:{}:{}",
                keys.first().map(SubjectKey::as_str).unwrap_or_default(),
                change.event_at.unix_millis(),
                state_tag(change.state)
            );
            self.reply(tenant, cmd, kind, dedup).await?;
        }
        for key in keys {
            self.stores
                .opt_outs
                .mark_confirmed(&tenant.id, key, change.scope, change.event_at, change.state)
                .await?;
        }
        tracing::info!(tenant = %tenant.id, state = ?change.state, scope = ?change.scope, "opt-out state changed");
        Ok(())
    }

    /// The command's keys and every identifier linked to the contact in this tenant.
    async fn linked_keys(&self, tenant: &Tenant, cmd: &OptOutCommand) -> Result<Vec<SubjectKey>, OptOutError> {
        let mut keys = cmd.subject_keys.clone();
        if let Some(contact) = self.stores.conversations.get_contact(&tenant.id, &cmd.contact).await? {
            for linked in contact.identifiers {
                if !keys.contains(&linked.subject_key) {
                    keys.push(linked.subject_key);
                }
            }
        }
        Ok(keys)
    }

    async fn reply(
        &self,
        tenant: &Tenant,
        cmd: &OptOutCommand,
        kind: ReplyKind,
        dedup: String,
    ) -> Result<(), OptOutError> {
        let language = cmd.language.unwrap_or(tenant.locale);
        let reply = OutboundReply {
            tenant: tenant.id.clone(),
            to: cmd.contact.clone(),
            kind,
            language,
            text: replies::text(kind, language, &tenant.name),
            dedup_key: hex::encode(&Sha256::digest(dedup.as_bytes())[..16]),
            request: None,
            answering_at: Some(cmd.order_at),
        };
        let body = shared::queue::to_body(&reply).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.outbound.send_batch(&[body]).await?;
        Ok(())
    }
}

fn state_tag(s: OptState) -> &'static str {
    match s {
        OptState::OptedOut => "out",
        OptState::OptedIn => "in",
    }
}

#[cfg(test)]
mod tests;
