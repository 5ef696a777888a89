//! Messages on the opt-out, propagation and outbound queues. None carries message text; the
//! propagation event carries subject keys only.

use crate::domain::{ContactId, Locale, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::SubjectKey;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    OptOut,
    OptIn,
    Help,
}

/// What the processor detected in one inbound event, for the opt-out function to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CommandWire")]
pub struct OptOutCommand {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// Subject keys of every identifier the event carried; the contact's stable id first.
    pub subject_keys: Vec<SubjectKey>,
    pub action: CommandAction,
    pub scope: OptOutScope,
    pub source: OptOutSource,
    /// Meta's own event time: the event's identity (history key, confirmation dedup, replay
    /// detection), identical on every redelivery.
    pub event_at: Timestamp,
    /// The time changes are ordered by (newer wins, whatever the arrival order): `event_at`
    /// clamped by the processor to its receipt time plus a small skew, so a payload dated 2099
    /// cannot win against every later change. A retried POST is received again, so two deliveries
    /// of one event can differ here.
    pub order_at: Timestamp,
    /// YES opts in only someone who is opted out.
    pub only_while_opted_out: bool,
    /// The keyword's language, when it tells; else the tenant's locale is used.
    pub language: Option<Locale>,
}

/// The command as read from the queue: one queued by a processor that predates `order_at`
/// orders by its event time, as such commands always did.
#[derive(Deserialize)]
struct CommandWire {
    tenant: TenantId,
    contact: ContactId,
    subject_keys: Vec<SubjectKey>,
    action: CommandAction,
    scope: OptOutScope,
    source: OptOutSource,
    event_at: Timestamp,
    #[serde(default)]
    order_at: Option<Timestamp>,
    only_while_opted_out: bool,
    language: Option<Locale>,
}

impl From<CommandWire> for OptOutCommand {
    fn from(w: CommandWire) -> Self {
        Self {
            order_at: w.order_at.unwrap_or(w.event_at),
            tenant: w.tenant,
            contact: w.contact,
            subject_keys: w.subject_keys,
            action: w.action,
            scope: w.scope,
            source: w.source,
            event_at: w.event_at,
            only_while_opted_out: w.only_while_opted_out,
            language: w.language,
        }
    }
}

impl OptOutCommand {
    pub fn state(&self) -> Option<OptState> {
        match self.action {
            CommandAction::OptOut => Some(OptState::OptedOut),
            CommandAction::OptIn => Some(OptState::OptedIn),
            CommandAction::Help => None,
        }
    }
}

/// Published on the propagation queue for every other part of Socio Virtual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationEvent {
    /// Stable per change (its first subject key, Meta's time, scope and state): the queue is
    /// at-least-once, and a redelivery after a partial failure can publish a change again, so
    /// consumers drop repeats by this id.
    pub event_id: String,
    /// `opted_out` or `opted_in`.
    pub event: OptState,
    pub tenant: TenantId,
    pub subject_keys: Vec<SubjectKey>,
    pub scope: OptOutScope,
    pub source: OptOutSource,
    /// The change's order time: consumers order changes by it (Meta's own time may be far off).
    pub at: Timestamp,
}

/// Why an outbound reply is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    OptOutConfirmation,
    OptInConfirmation,
    Help,
    /// A deletion asked for in the chat was received: the reply carries its status link.
    ErasureReceived,
}

/// A reply for the outbound sender to deliver through the channel's API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub tenant: TenantId,
    pub to: ContactId,
    pub kind: ReplyKind,
    pub language: Locale,
    pub text: String,
    /// Stable per state change, so a sender can drop a duplicate.
    pub dedup_key: String,
    /// The privacy request a status link is about: the sender records the reply in its
    /// timeline, not in the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::domain::RequestId>,
    /// When the person sent the message this answers: the 24-hour window counts from it even
    /// when that message is no longer stored (an erasure asked for in the chat deletes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answering_at: Option<Timestamp>,
}

// The text may quote the tenant's name and a status link: ids and kinds only.
impl std::fmt::Debug for OutboundReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundReply")
            .field("tenant", &self.tenant)
            .field("to", &self.to)
            .field("kind", &self.kind)
            .field("dedup_key", &self.dedup_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_queued_before_order_times_orders_by_its_event_time() {
        let json = r#"{"tenant":"shop","contact":{"channel":"whatsapp","stable_id":"AR.1"},"subject_keys":[],"action":"opt_out",
            "scope":"all","source":"keyword","event_at":"2099-01-01T00:00:00Z","only_while_opted_out":false,
            "language":null}"#;
        let cmd: OptOutCommand = serde_json::from_str(json).expect("an older command still reads");
        assert_eq!(cmd.order_at, cmd.event_at);
        let mut newer = cmd.clone();
        newer.order_at = Timestamp::from_unix_seconds(1_800_000_000);
        let round: OptOutCommand = serde_json::from_str(&serde_json::to_string(&newer).expect("json")).expect("read");
        assert_eq!(round, newer);
    }
}
