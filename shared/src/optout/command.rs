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
pub struct OptOutCommand {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// Subject keys of every identifier the event carried; the contact's stable id first.
    pub subject_keys: Vec<SubjectKey>,
    pub action: CommandAction,
    pub scope: OptOutScope,
    pub source: OptOutSource,
    /// Meta's event time: newer events win, whatever the arrival order.
    pub event_at: Timestamp,
    /// YES opts in only someone who is opted out.
    pub only_while_opted_out: bool,
    /// The keyword's language, when it tells; else the tenant's locale is used.
    pub language: Option<Locale>,
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
    /// `opted_out` or `opted_in`.
    pub event: OptState,
    pub tenant: TenantId,
    pub subject_keys: Vec<SubjectKey>,
    pub scope: OptOutScope,
    pub source: OptOutSource,
    pub at: Timestamp,
}

/// Why an outbound reply is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    OptOutConfirmation,
    OptInConfirmation,
    Help,
}

/// A reply for the outbound sender to deliver through the channel's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    pub tenant: TenantId,
    pub to: ContactId,
    pub kind: ReplyKind,
    pub language: Locale,
    pub text: String,
    /// Stable per state change, so a sender can drop a duplicate.
    pub dedup_key: String,
}
