//! One envelope turned into typed events, with no I/O: what Meta said (messages, statuses,
//! identifiers, opt-out signals, tombstones, tenant events) and what could not be read, each with
//! its reason. The processor only applies these to the stores and queues.
//!
//! Events borrow from the envelope: message content stays the raw JSON Meta sent, parsed once,
//! here. Identifiers are kept as Meta sent them; normalizing and keying them is the processor's.

use super::envelope::{Envelope, MetaObject};
use super::{instagram as ig, whatsapp as wa};
use crate::domain::{Channel, ContactId, DeliveryState, Direction, Locale, MetaMessageId, OptOutScope, OptOutSource};
use crate::identity::IdentifierKind;
use crate::optout::command::CommandAction;
use crate::optout::keywords::{self, Action, Decision, TenantKeywords};
use crate::store::keys::{self, edit_id};
use crate::timestamp::Timestamp;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// An identifier as Meta sent it, not yet normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawIdentifier<'a> {
    pub kind: IdentifierKind,
    pub value: Cow<'a, str>,
}

/// The person an event is about, and what it tells about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen<'a> {
    pub contact: ContactId,
    /// WhatsApp profile name, when the change carried one.
    pub profile_name: Option<Cow<'a, str>>,
    /// Every identifier the event carried, the contact's stable id first, without repeats.
    pub identifiers: Vec<RawIdentifier<'a>>,
    /// Meta's event time.
    pub at: Timestamp,
}

/// A detected opt-out, opt-in or help request, to be sent to the opt-out function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOutSignal {
    pub action: CommandAction,
    pub scope: OptOutScope,
    pub source: OptOutSource,
    pub only_while_opted_out: bool,
    pub language: Option<Locale>,
}

#[derive(Debug)]
pub enum Event<'a> {
    /// A message from or to the person (echoes are outbound), to store under `id`. Edits carry
    /// the id from `keys::edit_id`, so deleting the original takes them along.
    Message {
        seen: Seen<'a>,
        id: MetaMessageId,
        direction: Direction,
        kind: Cow<'a, str>,
        content: &'a RawValue,
        /// What the message says about the person's opt-out state, by the tenant's keywords.
        signal: Option<OptOutSignal>,
        /// An opt-out keyword inside a longer message: for a person to review.
        review: bool,
        /// The whole message is a deletion phrase (WhatsApp only), in this language: an erasure
        /// of the sender in this tenant, proven by the channel itself.
        erasure: Option<Locale>,
    },
    /// Delivery progress of an outbound message.
    Status {
        seen: Seen<'a>,
        message_id: MetaMessageId,
        state: DeliveryState,
        detail: &'a RawValue,
        /// A failed status saying the person stopped marketing messages (marketing opt-out).
        signal: Option<OptOutSignal>,
    },
    /// The person unsent or revoked a message: its copy goes, a tombstone stays.
    Unsend { seen: Seen<'a>, message_id: MetaMessageId },
    /// A signal with no message to store: a preference set inside WhatsApp (`user_preferences`,
    /// marketing stop or resume), or a STOP from a known sender in a message without a usable
    /// time or id (rejected beside it), counted at its receipt.
    Preference { seen: Seen<'a>, signal: OptOutSignal },
    /// A template or account notification: no personal data, kept per tenant.
    TenantEvent {
        /// Stable per notification, so a redelivery stores nothing new.
        id: String,
        field: &'a str,
        payload: &'a RawValue,
    },
    /// Well-formed, but nothing here handles it (yet): held as it came.
    Unhandled {
        kind: &'static str,
        /// Safe to log: which field or event kind, never content.
        detail: &'a str,
        raw: &'a str,
    },
    /// Malformed: held with why.
    Rejected {
        /// Safe to log: a fixed phrase.
        kind: &'static str,
        /// May quote the payload (parser messages do): for the quarantine record only.
        detail: String,
        raw: &'a str,
    },
    /// A keyword to review in a message from a known sender that cannot be stored (no usable
    /// time or id): the contact is recorded, and the message waits for a person as it came.
    HeldReview {
        seen: Seen<'a>,
        /// Safe to log: a fixed phrase.
        kind: &'static str,
        raw: &'a str,
    },
    /// An opt-out (or a keyword to review) in a message that cannot be processed: no usable
    /// sender to record it under. Never dropped: it waits for a person, alarmed.
    HeldOptOut {
        /// Safe to log: a fixed phrase.
        kind: &'static str,
        raw: &'a str,
    },
}

/// What the pure parse needs to know about the tenant.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub keywords: &'a TenantKeywords,
}

/// Everything one envelope says, in order: per message, then per status (WhatsApp), per
/// preference, per Instagram event. What cannot be read is a `Rejected` beside the rest.
pub fn parse<'a>(envelope: &'a Envelope, cx: Context<'_>) -> Vec<Event<'a>> {
    let mut out = Vec::new();
    let payload: &'a RawValue = &envelope.payload;
    match (envelope.object, envelope.field.as_deref()) {
        (MetaObject::WhatsAppBusinessAccount, Some("messages")) => {
            whatsapp_messages(payload, cx, envelope.received_at, &mut out)
        }
        (MetaObject::WhatsAppBusinessAccount, Some("user_preferences")) => user_preferences(payload, cx, &mut out),
        (MetaObject::WhatsAppBusinessAccount, Some(field)) if wa::TENANT_EVENT_FIELDS.contains(&field) => {
            out.push(tenant_event(&envelope.entry_id, field, payload))
        }
        (MetaObject::Instagram, None) => instagram_entry(payload, cx, envelope.received_at, &mut out),
        (_, field) => out.push(Event::Unhandled {
            kind: "unhandled webhook field",
            detail: field.unwrap_or("entry without messaging"),
            raw: payload.get(),
        }),
    }
    out
}

/// A message that cannot be processed: held for a person when it says stop (or may), else
/// rejected. Fail closed: an unreadable sender must not turn a STOP into nothing.
fn unusable<'a>(detected: (Option<OptOutSignal>, bool), kind: &'static str, raw: &'a RawValue) -> Event<'a> {
    match detected {
        (
            Some(OptOutSignal {
                action: CommandAction::OptOut,
                ..
            }),
            _,
        )
        | (_, true) => Event::HeldOptOut { kind, raw: raw.get() },
        _ => rejected_plain(kind, raw),
    }
}

/// A message from a known sender that cannot be stored (no usable time or id): a STOP in it is
/// acted on at its receipt time (`seen`), and the message is rejected beside it; a keyword to
/// review holds it for a person under the sender's contact.
fn unstorable_from_known<'a>(
    detected: (Option<OptOutSignal>, bool),
    kind: &'static str,
    raw: &'a RawValue,
    seen: impl FnOnce() -> Seen<'a>,
    out: &mut Vec<Event<'a>>,
) -> Event<'a> {
    match detected {
        (Some(signal), _) if signal.action == CommandAction::OptOut => {
            out.push(Event::Preference { seen: seen(), signal });
            rejected_plain(kind, raw)
        }
        (_, true) => Event::HeldReview {
            seen: seen(),
            kind,
            raw: raw.get(),
        },
        _ => rejected_plain(kind, raw),
    }
}

/// A part in a shape the typed reader does not know: held for a person when anything in it may
/// be a STOP (a text that classifies as one or as one to review, or error 131050), else rejected
/// with the reader's reason. Fail closed: a shape Meta changes must not turn STOPs into
/// rejections. Content `serde_json::Value` cannot hold (a number beyond f64, nesting past its
/// limit) cannot be looked into, and is rejected.
fn undecodable<'a>(kind: &'static str, err: serde_json::Error, raw: &'a RawValue, cx: Context<'_>) -> Event<'a> {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(v) if may_say_stop(&v, cx) => Event::HeldOptOut { kind, raw: raw.get() },
        _ => rejected(kind, err, raw),
    }
}

fn may_say_stop(v: &serde_json::Value, cx: Context<'_>) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => matches!(
            detect(Some(Said::Text(s)), cx),
            (
                Some(OptOutSignal {
                    action: CommandAction::OptOut,
                    ..
                }),
                _
            ) | (_, true)
        ),
        Value::Array(items) => items.iter().any(|i| may_say_stop(i, cx)),
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| (k == "code" && v.as_i64() == Some(wa::MARKETING_STOPPED_ERROR)) || may_say_stop(v, cx)),
        _ => false,
    }
}

fn rejected<'a>(kind: &'static str, detail: impl ToString, raw: &'a RawValue) -> Event<'a> {
    Event::Rejected {
        kind,
        detail: detail.to_string(),
        raw: raw.get(),
    }
}

/// A rejection whose reason is its kind alone.
fn rejected_plain<'a>(kind: &'static str, raw: &'a RawValue) -> Event<'a> {
    Event::Rejected {
        kind,
        detail: String::new(),
        raw: raw.get(),
    }
}

/// A WhatsApp person's identifiers as Meta names them: the user id (the stable key) first, then
/// the phone.
fn whatsapp_ids<'a>(user_id: Option<&Cow<'a, str>>, phone: Option<&Cow<'a, str>>) -> Vec<RawIdentifier<'a>> {
    let mut ids = Vec::with_capacity(2);
    add(&mut ids, IdentifierKind::WhatsAppUserId, user_id);
    add(&mut ids, IdentifierKind::Phone, phone);
    ids
}

/// Adds an identifier unless it is absent or already there.
fn add<'a>(ids: &mut Vec<RawIdentifier<'a>>, kind: IdentifierKind, value: Option<&Cow<'a, str>>) {
    if let Some(value) = value
        && !ids.iter().any(|i| i.kind == kind && i.value == *value)
    {
        ids.push(RawIdentifier {
            kind,
            value: value.clone(),
        });
    }
}

/// The `contacts[]` entry for a person, by the first of `keys` any entry carries as `user_id`
/// or `wa_id`; the last such entry, as a map filled in order would hold.
fn profile<'c, 'a>(contacts: &'c [wa::Contact<'a>], keys: [Option<&Cow<'a, str>>; 2]) -> Option<&'c wa::Contact<'a>> {
    keys.into_iter().flatten().find_map(|k| {
        contacts
            .iter()
            .rev()
            .find(|c| c.user_id.as_ref() == Some(k) || c.wa_id.as_ref() == Some(k))
    })
}

fn profile_name<'a>(contact: Option<&wa::Contact<'a>>) -> Option<Cow<'a, str>> {
    contact.and_then(|c| c.profile.as_ref()).and_then(|p| p.name.clone())
}

/// What in an inbound message may be an opt-out signal.
enum Said<'s> {
    Text(&'s str),
    /// A tapped button or quick reply: its id, and its label when it has one.
    Button {
        id: &'s str,
        label: Option<&'s str>,
    },
}

/// What a message says about the person's opt-out state, by the tenant's keywords: a signal to
/// act on, a keyword inside a longer message to review (`true`), or neither.
fn detect(said: Option<Said<'_>>, cx: Context<'_>) -> (Option<OptOutSignal>, bool) {
    let (decision, source) = match said {
        None => return (None, false),
        Some(Said::Button { id, label }) => (keywords::classify_button(id, label, cx.keywords), OptOutSource::Button),
        Some(Said::Text(text)) => (keywords::classify(text, cx.keywords), OptOutSource::Keyword),
    };
    match decision {
        Decision::None => (None, false),
        Decision::Review => (None, true),
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
            let signal = OptOutSignal {
                action,
                scope: OptOutScope::All,
                source,
                only_while_opted_out,
                language,
            };
            (Some(signal), false)
        }
    }
}

/// A marketing-only opt-out or opt-in Meta reported.
fn marketing(action: CommandAction, source: OptOutSource) -> OptOutSignal {
    OptOutSignal {
        action,
        scope: OptOutScope::Marketing,
        source,
        only_while_opted_out: false,
        language: None,
    }
}

fn whatsapp_messages<'a>(payload: &'a RawValue, cx: Context<'_>, received_at: Timestamp, out: &mut Vec<Event<'a>>) {
    let value: wa::MessagesValue<'a> = match serde_json::from_str(payload.get()) {
        Ok(v) => v,
        Err(e) => return out.push(undecodable("WhatsApp messages value", e, payload, cx)),
    };
    out.reserve(value.messages.len() + value.statuses.len());
    for raw in &value.messages {
        whatsapp_message(raw, &value.contacts, cx, received_at, out);
    }
    for raw in &value.statuses {
        let event = whatsapp_status(raw, &value.contacts, cx, received_at, out);
        out.push(event);
    }
}

fn whatsapp_message<'a>(
    raw: &'a RawValue,
    contacts: &[wa::Contact<'a>],
    cx: Context<'_>,
    received_at: Timestamp,
    out: &mut Vec<Event<'a>>,
) {
    if let Some(event) = whatsapp_message_event(raw, contacts, cx, received_at, out) {
        out.push(event);
    }
}

fn whatsapp_message_event<'a>(
    raw: &'a RawValue,
    contacts: &[wa::Contact<'a>],
    cx: Context<'_>,
    received_at: Timestamp,
    out: &mut Vec<Event<'a>>,
) -> Option<Event<'a>> {
    let m: wa::Message<'a> = match serde_json::from_str(raw.get()) {
        Ok(m) => m,
        Err(e) => return Some(undecodable("WhatsApp message", e, raw, cx)),
    };
    // The business-scoped user id is the stable key; the phone when Meta sends no usable BSUID.
    let Some(contact) = [m.from_user_id.as_deref(), m.from.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|s| ContactId::new(Channel::WhatsApp, s).ok())
    else {
        return Some(unusable(
            detect(whatsapp_said(&m), cx),
            "WhatsApp message: no usable sender",
            raw,
        ));
    };
    let (at, id) = match (
        wa::parse_seconds(&m.timestamp).map(Timestamp::from_unix_seconds),
        MetaMessageId::new(m.id.as_ref()),
    ) {
        (Some(at), Ok(id)) => (at, id),
        (at, _) => {
            let kind = if at.is_none() {
                "WhatsApp message: bad timestamp"
            } else {
                "WhatsApp message: bad id"
            };
            let seen = || Seen {
                contact,
                profile_name: None,
                identifiers: whatsapp_ids(m.from_user_id.as_ref(), m.from.as_ref()),
                at: received_at,
            };
            return Some(unstorable_from_known(
                detect(whatsapp_said(&m), cx),
                kind,
                raw,
                seen,
                out,
            ));
        }
    };
    let profile = profile(contacts, [m.from_user_id.as_ref(), m.from.as_ref()]);
    let mut identifiers = whatsapp_ids(m.from_user_id.as_ref(), m.from.as_ref());
    if let Some(p) = profile {
        add(&mut identifiers, IdentifierKind::WhatsAppUserId, p.user_id.as_ref());
        add(&mut identifiers, IdentifierKind::Phone, p.wa_id.as_ref());
    }
    // A changed number or user id stays linked to the same contact.
    if let Some(system) = &m.system {
        add(&mut identifiers, IdentifierKind::Phone, system.wa_id.as_ref());
        add(
            &mut identifiers,
            IdentifierKind::WhatsAppUserId,
            system.user_id.as_ref(),
        );
    }
    let seen = Seen {
        contact,
        profile_name: profile_name(profile),
        identifiers,
        at,
    };
    if let Some(revoke) = &m.revoke {
        // The person deleted the message: so do we. An unusable original id names nothing.
        return MetaMessageId::new(revoke.original_message_id.as_ref())
            .ok()
            .map(|message_id| Event::Unsend { seen, message_id });
    }
    // An edit is kept under its original, so that deleting the original takes its edits along.
    let id = match &m.edit {
        Some(e) => match MetaMessageId::new(edit_id(&e.original_message_id, id.as_str())) {
            Ok(edit_id) => edit_id,
            Err(_) => {
                let detected = detect(whatsapp_said(&m), cx);
                let seen = || Seen {
                    at: received_at,
                    ..seen
                };
                return Some(unstorable_from_known(
                    detected,
                    "WhatsApp edit: bad original id",
                    raw,
                    seen,
                    out,
                ));
            }
        },
        None => id,
    };
    let said = whatsapp_said(&m);
    let erasure = match &said {
        Some(Said::Text(text)) => keywords::classify_erasure(text),
        _ => None,
    };
    let (signal, review) = detect(said, cx);
    Some(Event::Message {
        seen,
        id,
        direction: Direction::Inbound,
        kind: m.kind,
        content: raw,
        signal,
        review,
        erasure,
    })
}

/// What in a WhatsApp message may be an opt-out signal: its text (an edit's new text), or a
/// tapped button's id.
fn whatsapp_said<'s>(m: &'s wa::Message<'_>) -> Option<Said<'s>> {
    match m.kind.as_ref() {
        "text" => m.text.0.as_ref().and_then(|t| t.body.0.as_deref()).map(Said::Text),
        "edit" => m
            .edit
            .as_ref()
            .and_then(|e| e.message.0.as_ref())
            .and_then(|edited| edited.text.0.as_ref())
            .and_then(|t| t.body.0.as_deref())
            .map(Said::Text),
        "button" => m.button.0.as_ref().and_then(|b| {
            b.payload.0.as_deref().map(|id| Said::Button {
                id,
                label: b.text.0.as_deref(),
            })
        }),
        "interactive" => m
            .interactive
            .0
            .as_ref()
            .and_then(|i| {
                [&i.button_reply, &i.list_reply]
                    .into_iter()
                    .find_map(|r| r.0.as_ref().and_then(|r| r.id.0.as_deref()))
            })
            .map(|id| Said::Button { id, label: None }),
        _ => None,
    }
}

fn whatsapp_status<'a>(
    raw: &'a RawValue,
    contacts: &[wa::Contact<'a>],
    cx: Context<'_>,
    received_at: Timestamp,
    out: &mut Vec<Event<'a>>,
) -> Event<'a> {
    let s: wa::Status<'a> = match serde_json::from_str(raw.get()) {
        Ok(s) => s,
        Err(e) => return undecodable("WhatsApp status", e, raw, cx),
    };
    let state = wa::delivery_state(&s.status);
    // Error 131050: the person stopped marketing messages inside WhatsApp. It is a signal even
    // when the rest of the status is unreadable (an unknown status name, a bad time).
    let stopped = state.is_none_or(|st| st == DeliveryState::Failed)
        && s.errors.iter().any(|e| e.code == Some(wa::MARKETING_STOPPED_ERROR));
    let signal = || stopped.then(|| marketing(CommandAction::OptOut, OptOutSource::FailedStatus));
    let contact = s
        .recipient_user_id
        .as_deref()
        .or(s.recipient_id.as_deref())
        .and_then(|r| ContactId::new(Channel::WhatsApp, r).ok());
    let Some(contact) = contact else {
        return unusable((signal(), false), "WhatsApp status: no usable recipient", raw);
    };
    let identifiers = whatsapp_ids(s.recipient_user_id.as_ref(), s.recipient_id.as_ref());
    let seen_at = |at| Seen {
        contact,
        profile_name: profile_name(profile(
            contacts,
            [s.recipient_user_id.as_ref(), s.recipient_id.as_ref()],
        )),
        identifiers,
        at,
    };
    let checked = (
        state,
        wa::parse_seconds(&s.timestamp).map(Timestamp::from_unix_seconds),
        MetaMessageId::new(s.id.as_ref()),
    );
    let (state, at, message_id) = match checked {
        (Some(state), Some(at), Ok(id)) => (state, at, id),
        (state, at, _) => {
            let kind = match (state, at) {
                (None, _) => "WhatsApp status: unknown status",
                (_, None) => "WhatsApp status: bad timestamp",
                _ => "WhatsApp status: bad id",
            };
            return unstorable_from_known((signal(), false), kind, raw, || seen_at(received_at), out);
        }
    };
    Event::Status {
        seen: seen_at(at),
        message_id,
        state,
        detail: raw,
        signal: signal(),
    }
}

/// Meta's marketing preference: stop or resume marketing messages, set inside WhatsApp.
fn user_preferences<'a>(payload: &'a RawValue, cx: Context<'_>, out: &mut Vec<Event<'a>>) {
    let value: wa::UserPreferencesValue<'a> = match serde_json::from_str(payload.get()) {
        Ok(v) => v,
        Err(e) => return out.push(undecodable("user_preferences value", e, payload, cx)),
    };
    out.extend(value.user_preferences.iter().map(|raw| user_preference(raw, cx)));
}

fn user_preference<'a>(raw: &'a RawValue, cx: Context<'_>) -> Event<'a> {
    let p = match serde_json::from_str::<wa::UserPreference<'_>>(raw.get()) {
        Ok(p) => p,
        Err(e) => return undecodable("user_preferences item", e, raw, cx),
    };
    let action = match (p.category.as_ref(), p.value.as_ref()) {
        ("marketing_messages", "stop") => CommandAction::OptOut,
        ("marketing_messages", "resume") => CommandAction::OptIn,
        _ => {
            return Event::Unhandled {
                kind: "unhandled user preference",
                detail: "",
                raw: raw.get(),
            };
        }
    };
    let (Some(seconds), Some(Ok(contact))) = (
        Some(p.timestamp).filter(|t| wa::PLAUSIBLE_SECONDS.contains(t)),
        p.user_id
            .as_deref()
            .or(p.wa_id.as_deref())
            .map(|id| ContactId::new(Channel::WhatsApp, id)),
    ) else {
        let signal = marketing(action, OptOutSource::UserPreferences);
        return unusable(
            (Some(signal), false),
            "user_preferences item: bad timestamp or person",
            raw,
        );
    };
    let identifiers = whatsapp_ids(p.user_id.as_ref(), p.wa_id.as_ref());
    Event::Preference {
        seen: Seen {
            contact,
            profile_name: None,
            identifiers,
            at: Timestamp::from_unix_seconds(seconds),
        },
        signal: marketing(action, OptOutSource::UserPreferences),
    }
}

fn tenant_event<'a>(entry_id: &str, field: &'a str, payload: &'a RawValue) -> Event<'a> {
    // The same check as reading it into a `serde_json::Value` (a `RawValue` is checked for
    // syntax only), without building one.
    if serde_json::from_str::<wa::ValidJson>(payload.get()).is_err() {
        return rejected("tenant event value is not JSON", field, payload);
    }
    Event::TenantEvent {
        id: digest_hex(&[entry_id, field, payload.get()]),
        field,
        payload,
    }
}

fn instagram_entry<'a>(payload: &'a RawValue, cx: Context<'_>, received_at: Timestamp, out: &mut Vec<Event<'a>>) {
    let entry: ig::Entry<'a> = match serde_json::from_str(payload.get()) {
        Ok(e) => e,
        Err(e) => return out.push(undecodable("Instagram entry", e, payload, cx)),
    };
    out.reserve(entry.messaging.len());
    for raw in &entry.messaging {
        if let Some(event) = instagram_event(&entry.id, raw, cx, received_at, out) {
            out.push(event);
        }
    }
}

fn instagram_event<'a>(
    business: &str,
    raw: &'a RawValue,
    cx: Context<'_>,
    received_at: Timestamp,
    out: &mut Vec<Event<'a>>,
) -> Option<Event<'a>> {
    let e: ig::Event<'a> = match serde_json::from_str(raw.get()) {
        Ok(e) => e,
        Err(err) => return Some(undecodable("Instagram event", err, raw, cx)),
    };
    // Echoes (business-sent) reverse sender and recipient: the person is the other side.
    let outbound = e.sender.id == business || e.message.as_ref().is_some_and(|m| m.is_echo);
    let person = if outbound { &e.recipient.id } else { &e.sender.id };
    let Ok(contact) = ContactId::new(Channel::Instagram, person.as_ref()) else {
        return Some(unusable(
            detect(instagram_said(&e, outbound), cx),
            "Instagram event: unusable IGSID",
            raw,
        ));
    };
    let seen_at = |at| Seen {
        contact: contact.clone(),
        profile_name: None,
        identifiers: vec![RawIdentifier {
            kind: IdentifierKind::InstagramId,
            value: person.clone(),
        }],
        at,
    };
    let Some(at) = ig::timestamp_ms(e.timestamp).map(Timestamp::from_unix_millis) else {
        let detected = detect(instagram_said(&e, outbound), cx);
        let seen = || seen_at(received_at);
        return Some(unstorable_from_known(
            detected,
            "Instagram event: bad timestamp",
            raw,
            seen,
            out,
        ));
    };
    let seen = seen_at(at);
    let direction = if outbound {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let ts = at.unix_millis();
    let (id, kind): (Cow<'_, str>, &'static str) = if let Some(m) = &e.message {
        if m.is_deleted {
            // The person unsent it: our copy goes too. An unusable mid names nothing.
            return MetaMessageId::new(m.mid.as_ref())
                .ok()
                .map(|message_id| Event::Unsend { seen, message_id });
        }
        let kind = if m.has_attachments {
            "attachment"
        } else if m.quick_reply.is_some() {
            "quick_reply"
        } else if m.text.is_some() {
            "text"
        } else {
            "message"
        };
        (Cow::Borrowed(m.mid.as_ref()), kind)
    } else if let Some(r) = &e.reaction {
        let action = r.action.as_deref().unwrap_or("react");
        (Cow::Owned(keys::reaction_id(&r.mid, action, ts)), "reaction")
    } else if let Some(read) = &e.read {
        let Ok(message_id) = MetaMessageId::new(read.mid.as_ref()) else {
            return Some(rejected_plain("Instagram read: bad mid", raw));
        };
        return Some(Event::Status {
            seen,
            message_id,
            state: DeliveryState::Read,
            detail: raw,
            signal: None,
        });
    } else if let Some(p) = &e.postback {
        let id = match &p.mid {
            Some(mid) => Cow::Borrowed(mid.as_ref()),
            None => Cow::Owned(keys::event_id("postback", ts)),
        };
        (id, "postback")
    } else if let Some(edit) = &e.message_edit {
        let id = edit_id(&edit.mid, &edit.num_edit.unwrap_or_default().to_string());
        (Cow::Owned(id), "edit")
    } else if e.referral.is_some() {
        (Cow::Owned(keys::event_id("referral", ts)), "referral")
    } else {
        return Some(Event::Unhandled {
            kind: "unhandled Instagram event",
            detail: "",
            raw: raw.get(),
        });
    };
    let Ok(id) = MetaMessageId::new(id) else {
        let detected = detect(instagram_said(&e, outbound), cx);
        let seen = || Seen {
            at: received_at,
            ..seen
        };
        return Some(unstorable_from_known(
            detected,
            "Instagram event: bad message id",
            raw,
            seen,
            out,
        ));
    };
    let (signal, review) = detect(instagram_said(&e, outbound), cx);
    Some(Event::Message {
        seen,
        id,
        direction,
        kind: Cow::Borrowed(kind),
        content: raw,
        signal,
        review,
        erasure: None,
    })
}

/// What in an Instagram event may be an opt-out signal: an inbound message's quick reply or text,
/// or an edit's new text.
fn instagram_said<'s>(e: &'s ig::Event<'_>, outbound: bool) -> Option<Said<'s>> {
    if outbound {
        return None;
    }
    // The message first, as it is stored first; an edit's text when there is no message.
    let Some(inbound_message) = e.message.as_ref() else {
        return e
            .message_edit
            .as_ref()
            .and_then(|edit| edit.text.as_deref())
            .map(Said::Text);
    };
    let quick_reply = inbound_message.quick_reply.as_ref().and_then(|q| q.payload.as_deref());
    let text = inbound_message.text.as_deref();
    match (quick_reply, text) {
        (Some(payload), label) => Some(Said::Button { id: payload, label }),
        (None, Some(text)) => Some(Said::Text(text)),
        (None, None) => None,
    }
}

/// Hex of the first 16 bytes of SHA-256 over each part, length-prefixed: stable per
/// notification, and no two part lists share one.
fn digest_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests;
