//! Outbound messages: what the sender is asked to send (a tenant's message or the system's own
//! reply), the rules that decide whether it may leave (the gate), and what the outbox keeps of
//! each send. The rules live here, once; the sender applies them and the admin route checks a
//! tenant's message against them before queueing it.

use crate::domain::{Channel, ContactId, RequestId, TenantId};
use crate::optout::command::{OutboundReply, ReplyKind};
use crate::optout::contactability::{Contactability, Purpose};
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// WhatsApp's customer-service window (and Instagram's standard messaging window): free-form
/// messages only within 24 hours of the person's last message; after it, an approved template.
pub const CUSTOMER_SERVICE_WINDOW: time::Duration = time::Duration::hours(24);

/// How long a claimed dedup key is kept: Meta's send API has no idempotency key, so this is
/// what stops a redelivered command from sending twice. SQS redelivers within minutes (visibility
/// timeout times receive count), well inside it.
pub const CLAIM_KEPT: time::Duration = time::Duration::hours(24);

/// A claim older than this with no outcome was left by an attempt that is no longer running (the
/// sender's own timeout): the message may or may not have left, so it is never sent again
/// automatically. A younger one may still be sending: the command waits for SQS to redeliver it.
pub const STALE_CLAIM_AFTER: time::Duration = time::Duration::seconds(60);

/// Throughput per sending account and second. WhatsApp's default tier for a business phone
/// number is 80 messages per second (Meta raises it to 1,000 on request); Instagram's Send API
/// allows 100 calls per second per professional account for text.
pub fn messages_per_second(channel: Channel) -> u32 {
    match channel {
        Channel::WhatsApp => 80,
        Channel::Instagram => 100,
    }
}

/// The key a tenant gives to make a send idempotent: 1-64 letters, digits, `-`, `_`, `.`, `:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientKey(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "idempotency key must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.', ':', with no run of seven digits (keys are logged and audited: never a phone number)"
)]
pub struct BadClientKey;

impl ClientKey {
    pub fn new(s: impl Into<String>) -> Result<Self, BadClientKey> {
        let s = s.into();
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
            && !crate::access::may_identify(&s);
        if ok { Ok(Self(s)) } else { Err(BadClientKey) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientKey {
    type Error = BadClientKey;
    fn try_from(s: String) -> Result<Self, BadClientKey> {
        Self::new(s)
    }
}

impl From<ClientKey> for String {
    fn from(k: ClientKey) -> String {
        k.0
    }
}

/// The outbox key of one send: a tenant's message by its client key, a system reply by the
/// dedup key its producer derived from the state change. No personal data.
pub fn dedup_key(command: &OutboundCommand) -> String {
    match command {
        OutboundCommand::Reply(r) => format!("reply:{}", r.dedup_key),
        OutboundCommand::Message(m) => format!("msg:{}", m.client_key.as_str()),
    }
}

/// A WhatsApp template's category, as approved by Meta: marketing templates never go to a
/// person who opted out of marketing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

/// What a tenant's message says. Personal data: never logged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        body: String,
    },
    /// An approved template: the only thing that may go outside the 24-hour window.
    Template {
        name: String,
        language: String,
        category: TemplateCategory,
        /// Meta's `components` (parameters), as the tenant gives them.
        #[serde(default)]
        components: serde_json::Value,
    },
    /// Meta's `interactive` object (buttons, lists), as the tenant gives it.
    Interactive {
        interactive: serde_json::Value,
    },
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text { .. } => f.write_str("Text(<redacted>)"),
            Self::Template { name, category, .. } => write!(f, "Template({name}, {category:?})"),
            Self::Interactive { .. } => f.write_str("Interactive(<redacted>)"),
        }
    }
}

/// Longest text body WhatsApp accepts (4,096 characters); Instagram's is 1,000 bytes.
pub const MAX_TEXT_CHARS: usize = 4096;
/// The most a message's content may weigh as JSON (template components, interactive objects):
/// far over what Meta takes, far under SQS's and DynamoDB's limits.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
pub const MAX_INSTAGRAM_TEXT_BYTES: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadContent {
    #[error("text body must be 1-{MAX_TEXT_CHARS} characters")]
    TextLength,
    #[error("an Instagram text must be at most {MAX_INSTAGRAM_TEXT_BYTES} bytes")]
    InstagramTextLength,
    #[error("template name must be 1-512 characters of a-z, 0-9 and '_'")]
    TemplateName,
    #[error("template language must be a locale code such as es_AR or en")]
    TemplateLanguage,
    #[error("template components must be a list")]
    Components,
    #[error("interactive must be an object")]
    Interactive,
    #[error("Instagram messages can only be text")]
    NotOnInstagram,
    #[error("content must be at most {MAX_CONTENT_BYTES} bytes as JSON")]
    TooLarge,
}

impl Content {
    /// What a message is for: a marketing template is marketing, anything else service.
    pub fn purpose(&self) -> Purpose {
        match self {
            Self::Template {
                category: TemplateCategory::Marketing,
                ..
            } => Purpose::Marketing,
            _ => Purpose::Service,
        }
    }

    /// Meta's message type, as stored in the conversation.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Template { .. } => "template",
            Self::Interactive { .. } => "interactive",
        }
    }

    /// Free-form content: allowed only inside the customer-service window.
    pub fn free_form(&self) -> bool {
        !matches!(self, Self::Template { .. })
    }

    /// Refuses what Meta would refuse for good, so the tenant hears it at once (400), not as a
    /// failure later.
    pub fn check(&self, channel: Channel) -> Result<(), BadContent> {
        if serde_json::to_vec(self).map_or(true, |v| v.len() > MAX_CONTENT_BYTES) {
            return Err(BadContent::TooLarge);
        }
        match self {
            Self::Text { body } => {
                let chars = body.chars().count();
                if chars == 0 || chars > MAX_TEXT_CHARS || body.trim().is_empty() {
                    return Err(BadContent::TextLength);
                }
                if channel == Channel::Instagram && body.len() > MAX_INSTAGRAM_TEXT_BYTES {
                    return Err(BadContent::InstagramTextLength);
                }
            }
            Self::Template {
                name,
                language,
                components,
                ..
            } => {
                if channel == Channel::Instagram {
                    return Err(BadContent::NotOnInstagram);
                }
                let name_ok = (1..=512).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !name_ok {
                    return Err(BadContent::TemplateName);
                }
                let lang_ok =
                    (2..=8).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
                if !lang_ok {
                    return Err(BadContent::TemplateLanguage);
                }
                if !(components.is_null() || components.is_array()) {
                    return Err(BadContent::Components);
                }
            }
            Self::Interactive { interactive } => {
                if channel == Channel::Instagram {
                    return Err(BadContent::NotOnInstagram);
                }
                if !interactive.is_object() {
                    return Err(BadContent::Interactive);
                }
            }
        }
        Ok(())
    }
}

/// A message a tenant's system composed (`POST /admin/tenants/{tenant}/messages`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantMessage {
    pub tenant: TenantId,
    pub to: ContactId,
    pub client_key: ClientKey,
    pub content: Content,
    /// The principal that asked for it (audited at the route).
    pub requested_by: String,
    pub requested_at: Timestamp,
}

/// A body of the outbound queues: the system's own reply or a tenant's message. The two have
/// disjoint required fields (`kind`/`text` against `client_key`/`content`), so either reads back
/// as what it was, and replies queued before this type existed still read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutboundCommand {
    Reply(OutboundReply),
    Message(TenantMessage),
}

impl OutboundCommand {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Self::Reply(r) => &r.tenant,
            Self::Message(m) => &m.tenant,
        }
    }

    pub fn to(&self) -> &ContactId {
        match self {
            Self::Reply(r) => &r.to,
            Self::Message(m) => &m.to,
        }
    }

    /// The content as sent: a reply is always text.
    pub fn content(&self) -> Content {
        match self {
            Self::Reply(r) => Content::Text { body: r.text.clone() },
            Self::Message(m) => m.content.clone(),
        }
    }

    /// The privacy request a reply is about: recorded in its timeline, never in the
    /// conversation (an erased person's conversation must stay empty).
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Self::Reply(r) => r.request,
            Self::Message(_) => None,
        }
    }
}

/// Why a message was not sent. Recorded in the outbox and counted; carries no personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The person sent STOP (or an operator opted them out) in this tenant.
    OptedOut,
    /// A marketing template to a person who stopped marketing messages.
    MarketingOptedOut,
    /// Free-form content more than 24 hours after the person's last message.
    OutsideWindow,
    /// The tenant is unknown or offboarded.
    NoTenant,
    /// The tenant has no account on the recipient's channel.
    NoAccount,
    /// No access token is configured for the tenant, or it could not be read.
    NoToken,
    /// The tenant has no live contact by that id (erased, expired, never seen).
    NoContact,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::MarketingOptedOut => "marketing_opted_out",
            Self::OutsideWindow => "outside_window",
            Self::NoTenant => "no_tenant",
            Self::NoAccount => "no_account",
            Self::NoToken => "no_token",
            Self::NoContact => "no_contact",
        }
    }
}

/// System replies that answer the person's own request: they go even after a STOP (the
/// confirmation of that very STOP, the status link of their privacy request, the help they
/// asked for). Nothing a tenant composes is one of them.
pub fn answers_own_request(kind: ReplyKind) -> bool {
    match kind {
        ReplyKind::OptOutConfirmation | ReplyKind::OptInConfirmation | ReplyKind::Help | ReplyKind::ErasureReceived => {
            true
        }
    }
}

/// What the gate knows just before sending.
#[derive(Clone, Debug)]
pub struct GateInput<'a> {
    pub command: &'a OutboundCommand,
    /// `contactability::check` for the recipient and the content's purpose.
    pub contactability: &'a Contactability,
    /// The person's last inbound message within the window, if any.
    pub last_inbound: Option<Timestamp>,
    pub now: Timestamp,
}

/// The gate: may this message leave now?
pub fn gate(input: &GateInput<'_>) -> Result<(), Refusal> {
    let content = input.command.content();
    let own_request = match input.command {
        OutboundCommand::Reply(r) => answers_own_request(r.kind),
        OutboundCommand::Message(_) => false,
    };
    if !own_request && !input.contactability.contactable {
        return Err(match content.purpose() {
            Purpose::Marketing if input.contactability.scope == Some(crate::domain::OptOutScope::Marketing) => {
                Refusal::MarketingOptedOut
            }
            _ => Refusal::OptedOut,
        });
    }
    if content.free_form() && !within_window(input.last_inbound, input.now) {
        return Err(Refusal::OutsideWindow);
    }
    Ok(())
}

/// Whether a free-form message may go at `now` after the person's last message at `last`.
pub fn within_window(last: Option<Timestamp>, now: Timestamp) -> bool {
    last.is_some_and(|at| now < at.plus(CUSTOMER_SERVICE_WINDOW))
}

/// Where one outbox entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Claimed by an attempt that is sending (or died sending).
    Claimed,
    Sent,
    Refused,
    /// Meta refused it for good.
    Failed,
    /// Claimed, with no outcome, by an attempt no longer running: it may or may not have left.
    /// Listed for an operator, never sent again automatically.
    Stale,
    /// Known not to have left (throttled, a server error): the next delivery claims it again.
    Released,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Sent => "sent",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Stale => "stale",
            Self::Released => "released",
        }
    }
}

/// One send's record, kept `CLAIM_KEPT`. While it is claimed or stale it holds the command (the
/// recipient and the message: personal data), so an operator can resend a stale one; an outcome
/// or a release drops it, so what stays for the day holds no personal data. Its `Debug` shows
/// ids and states only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub tenant: TenantId,
    pub dedup_key: String,
    pub state: OutboxState,
    /// Which claim this is (1 for the first); an outcome is recorded only by its own claim.
    pub attempt: u32,
    pub claimed_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<OutboundCommand>,
    /// Of the recipient and the content (`command_digest`): a key used again for another message
    /// is told apart from a retry after the command is dropped.
    pub digest: String,
    /// The kind of system reply, for the listing; None for a tenant's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyKind>,
    /// Meta's message id, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Meta's error code of a failure, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    pub expires_at: Expiry,
}

impl fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("tenant", &self.tenant)
            .field("dedup_key", &self.dedup_key)
            .field("state", &self.state)
            .field("attempt", &self.attempt)
            .field("claimed_at", &self.claimed_at)
            .finish_non_exhaustive()
    }
}

impl OutboxEntry {
    /// A first claim of `command` at `now`.
    pub fn claim(command: &OutboundCommand, now: Timestamp) -> Self {
        Self {
            tenant: command.tenant().clone(),
            dedup_key: dedup_key(command),
            state: OutboxState::Claimed,
            attempt: 1,
            claimed_at: now,
            updated_at: now,
            command: Some(command.clone()),
            digest: command_digest(command),
            reply: match command {
                OutboundCommand::Reply(r) => Some(r.kind),
                OutboundCommand::Message(_) => None,
            },
            message_id: None,
            refusal: None,
            error_code: None,
            expires_at: Expiry::at(now.plus(CLAIM_KEPT)),
        }
    }

    /// Sets what an attempt ended with, and drops the command.
    pub fn record(&mut self, outcome: &Outcome, at: Timestamp) {
        self.updated_at = at;
        self.command = None;
        match outcome {
            Outcome::Sent { message_id } => {
                self.state = OutboxState::Sent;
                self.message_id = Some(message_id.clone());
            }
            Outcome::Refused(r) => {
                self.state = OutboxState::Refused;
                self.refusal = Some(*r);
            }
            Outcome::Failed { code } => {
                self.state = OutboxState::Failed;
                self.error_code = *code;
            }
        }
    }

    /// A claim with no outcome, old enough that its attempt is no longer running.
    pub fn is_stale_claim(&self, now: Timestamp) -> bool {
        self.state == OutboxState::Claimed && now >= self.claimed_at.plus(STALE_CLAIM_AFTER)
    }

    /// Known not sent: the next delivery claims it again, with the command it carries.
    pub fn release(&mut self, at: Timestamp) {
        self.state = OutboxState::Released;
        self.updated_at = at;
        self.command = None;
    }
}

/// Who a command is for and what it says, as a digest: no personal data, and the same for every
/// delivery of one message (unlike its request time).
pub fn command_digest(command: &OutboundCommand) -> String {
    use sha2::{Digest, Sha256};
    let material = serde_json::json!([command.to(), command.content()]).to_string();
    hex::encode(&Sha256::digest(material.as_bytes())[..16])
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This attempt holds the key: send.
    Won(OutboxEntry),
    /// Another attempt holds or held it: the entry as stored.
    Held(OutboxEntry),
}

/// How one attempt ended, as recorded on its claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent { message_id: String },
    Refused(Refusal),
    Failed { code: Option<i64> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Locale, OptOutScope};

    fn contact() -> ContactId {
        ContactId::new(Channel::WhatsApp, "AR.1").expect("valid")
    }

    fn tenant_text() -> OutboundCommand {
        OutboundCommand::Message(TenantMessage {
            tenant: TenantId::new("shop").expect("valid"),
            to: contact(),
            client_key: ClientKey::new("k-1").expect("valid"),
            content: Content::Text { body: "hola".into() },
            requested_by: "agent".into(),
            requested_at: Timestamp::from_unix_seconds(0),
        })
    }

    fn reply(kind: ReplyKind) -> OutboundCommand {
        OutboundCommand::Reply(OutboundReply {
            tenant: TenantId::new("shop").expect("valid"),
            to: contact(),
            kind,
            language: Locale::Spanish,
            text: "ok".into(),
            dedup_key: "d".into(),
            request: None,
            answering_at: None,
        })
    }

    fn opted_out(scope: OptOutScope) -> Contactability {
        Contactability {
            contactable: false,
            scope: Some(scope),
            since: None,
            source: None,
        }
    }

    const OPEN: Contactability = Contactability {
        contactable: true,
        scope: None,
        since: None,
        source: None,
    };

    #[test]
    fn the_gate_refuses_tenants_after_stop_but_answers_the_persons_own_requests() {
        let now = Timestamp::from_unix_seconds(100_000);
        let recent = Some(Timestamp::from_unix_seconds(99_000));
        let stopped = opted_out(OptOutScope::All);
        let at = |command, contactability, last_inbound| GateInput {
            command,
            contactability,
            last_inbound,
            now,
        };
        let (text, confirmation, link) = (
            tenant_text(),
            reply(ReplyKind::OptOutConfirmation),
            reply(ReplyKind::ErasureReceived),
        );
        assert_eq!(gate(&at(&text, &stopped, recent)), Err(Refusal::OptedOut));
        assert_eq!(gate(&at(&text, &OPEN, recent)), Ok(()));
        assert_eq!(
            gate(&at(&confirmation, &stopped, recent)),
            Ok(()),
            "the confirmation of the STOP itself"
        );
        assert_eq!(gate(&at(&link, &stopped, recent)), Ok(()));
    }

    #[test]
    fn free_form_needs_the_24_hour_window_and_a_template_does_not() {
        let last = Timestamp::from_unix_seconds(1_000_000);
        assert!(within_window(Some(last), last.plus(time::Duration::hours(23))));
        assert!(!within_window(Some(last), last.plus(CUSTOMER_SERVICE_WINDOW)));
        assert!(!within_window(None, last));
        let late = last.plus(time::Duration::hours(25));
        let text = tenant_text();
        let input = GateInput {
            command: &text,
            contactability: &OPEN,
            last_inbound: Some(last),
            now: late,
        };
        assert_eq!(gate(&input), Err(Refusal::OutsideWindow));
        let mut template = tenant_text();
        if let OutboundCommand::Message(m) = &mut template {
            m.content = Content::Template {
                name: "order_update".into(),
                language: "es_AR".into(),
                category: TemplateCategory::Utility,
                components: serde_json::Value::Null,
            };
        }
        let input = GateInput {
            command: &template,
            ..input
        };
        assert_eq!(gate(&input), Ok(()));
    }

    #[test]
    fn a_marketing_template_never_goes_to_a_marketing_opt_out() {
        let mut promo = tenant_text();
        if let OutboundCommand::Message(m) = &mut promo {
            m.content = Content::Template {
                name: "black_friday".into(),
                language: "es".into(),
                category: TemplateCategory::Marketing,
                components: serde_json::json!([]),
            };
        }
        assert_eq!(promo.content().purpose(), Purpose::Marketing);
        let input = GateInput {
            command: &promo,
            contactability: &opted_out(OptOutScope::Marketing),
            last_inbound: None,
            now: Timestamp::from_unix_seconds(0),
        };
        assert_eq!(gate(&input), Err(Refusal::MarketingOptedOut));
    }

    #[test]
    fn a_refusal_reads_the_same_in_logs_and_in_the_api() {
        for r in [
            Refusal::OptedOut,
            Refusal::MarketingOptedOut,
            Refusal::OutsideWindow,
            Refusal::NoTenant,
            Refusal::NoAccount,
            Refusal::NoToken,
            Refusal::NoContact,
        ] {
            assert_eq!(serde_json::to_value(r).expect("json"), r.as_str());
        }
        for s in [
            OutboxState::Claimed,
            OutboxState::Sent,
            OutboxState::Refused,
            OutboxState::Failed,
            OutboxState::Stale,
            OutboxState::Released,
        ] {
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
    }

    #[test]
    fn content_is_checked_against_what_meta_accepts() {
        let text = |s: &str| Content::Text { body: s.to_owned() };
        assert_eq!(
            text("").check(Channel::WhatsApp),
            Err(BadContent::TextLength),
            "empty text"
        );
        assert_eq!(
            text(&"a".repeat(MAX_TEXT_CHARS + 1)).check(Channel::WhatsApp),
            Err(BadContent::TextLength),
            "over 4,096 characters"
        );
        assert_eq!(
            text(&"a".repeat(1001)).check(Channel::Instagram),
            Err(BadContent::InstagramTextLength)
        );
        let template = |name: &str, lang: &str| Content::Template {
            name: name.into(),
            language: lang.into(),
            category: TemplateCategory::Utility,
            components: serde_json::Value::Null,
        };
        assert_eq!(
            template("Bad Name", "es").check(Channel::WhatsApp),
            Err(BadContent::TemplateName)
        );
        assert_eq!(
            template("ok", "e").check(Channel::WhatsApp),
            Err(BadContent::TemplateLanguage)
        );
        assert_eq!(
            template("ok", "es").check(Channel::Instagram),
            Err(BadContent::NotOnInstagram)
        );
        assert!(ClientKey::new("a b").is_err() && ClientKey::new("").is_err() && ClientKey::new("ord-1:2").is_ok());
        assert!(ClientKey::new("5491123456789").is_err(), "a phone number as a key");
        let huge = Content::Interactive {
            interactive: serde_json::json!({"body": {"text": "x".repeat(MAX_CONTENT_BYTES)}}),
        };
        assert_eq!(huge.check(Channel::WhatsApp), Err(BadContent::TooLarge), "over 64 KB");
    }

    #[test]
    fn a_reply_and_a_tenant_message_read_back_as_what_they_were_and_old_replies_still_read() {
        for c in [tenant_text(), reply(ReplyKind::Help)] {
            let back: OutboundCommand = serde_json::from_str(&serde_json::to_string(&c).expect("json")).expect("read");
            assert_eq!(back, c);
        }
        let old = r#"{"tenant":"shop","to":{"channel":"whatsapp","stable_id":"AR.1"},"kind":"help","language":"es","text":"t","dedup_key":"d"}"#;
        assert!(matches!(
            serde_json::from_str::<OutboundCommand>(old),
            Ok(OutboundCommand::Reply(_))
        ));
        assert!(
            !format!("{:?}", tenant_text()).contains("hola"),
            "text is never in Debug"
        );
    }
}
