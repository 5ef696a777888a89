//! The split of a webhook POST into one envelope per entry and change, done on the webhook's hot
//! path. It reads only the envelope structure (object, ids, field, receiving account); message
//! content stays raw JSON, uninterpreted, until the processor.

use crate::domain::{Channel, ChannelAccount};
use crate::queue::MAX_BODY_BYTES;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaObject {
    #[serde(rename = "whatsapp_business_account")]
    WhatsAppBusinessAccount,
    #[serde(rename = "instagram")]
    Instagram,
}

impl MetaObject {
    pub fn channel(self) -> Channel {
        match self {
            Self::WhatsAppBusinessAccount => Channel::WhatsApp,
            Self::Instagram => Channel::Instagram,
        }
    }
}

/// One entry/change of a POST, as queued for the processor.
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    pub request_id: String,
    pub received_at: Timestamp,
    pub object: MetaObject,
    /// `entry.id`: the WhatsApp Business Account or the Instagram professional account.
    pub entry_id: String,
    /// `changes[].field`; None for Instagram `messaging[]` entries.
    pub field: Option<String>,
    /// The account that received the webhook, which decides the tenant.
    pub account: ChannelAccount,
    /// WhatsApp: the change's `value`. Instagram messaging: the whole entry.
    pub payload: Box<RawValue>,
}

/// An envelope as the split writes it: the payload borrowed from the body, so it is copied once,
/// into the queue message. Same fields, same order as `Envelope`.
#[derive(Serialize)]
struct Outgoing<'a> {
    request_id: &'a str,
    received_at: Timestamp,
    object: MetaObject,
    entry_id: &'a str,
    field: Option<&'a str>,
    account: ChannelAccount,
    payload: &'a RawValue,
}

// Debug output may end up in a log line: the payload holds personal data.
impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("request_id", &self.request_id)
            .field("object", &self.object)
            .field("field", &self.field)
            .field("account", &self.account)
            .field("payload_bytes", &self.payload.get().len())
            .finish()
    }
}

/// A part of the body that cannot be processed, with why. Quarantined, never dropped.
#[derive(PartialEq, Eq)]
pub struct Rejected {
    /// Safe to log: a fixed phrase, never payload content.
    pub kind: &'static str,
    /// For the quarantine record: may quote the payload (parser messages do).
    pub reason: String,
    pub raw: String,
}

impl std::fmt::Debug for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejected")
            .field("kind", &self.kind)
            .field("raw_bytes", &self.raw.len())
            .finish()
    }
}

/// A body of which nothing is usable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Unusable {
    /// Safe to log.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Each envelope as JSON, ready for the queue: encoded once, here, where its size is checked.
    pub envelopes: Vec<String>,
    pub rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
struct BodyHead<'a> {
    object: String,
    #[serde(borrow)]
    entry: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct EntryHead<'a> {
    id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    changes: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    messaging: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChangeHead<'a> {
    field: String,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Deserialize)]
struct ValueHead {
    metadata: Option<MetadataHead>,
}

#[derive(Deserialize)]
struct MetadataHead {
    phone_number_id: Option<String>,
}

/// Splits a verified body. `Err` means nothing in it is usable (not JSON, too deep, unknown
/// `object`, no `entry` list); the caller quarantines the whole body.
pub fn split(body: &[u8], request_id: &str, received_at: Timestamp) -> Result<Split, Unusable> {
    match split_well_formed_whatsapp(body, request_id, received_at) {
        Some(split) => Ok(split),
        None => split_part_by_part(body, request_id, received_at),
    }
}

/// Each entry and change read on its own, so a bad one is rejected beside the good ones.
fn split_part_by_part(body: &[u8], request_id: &str, received_at: Timestamp) -> Result<Split, Unusable> {
    let head: BodyHead<'_> = serde_json::from_slice(body).map_err(|e| Unusable {
        kind: "body is not a usable webhook",
        detail: e.to_string(),
    })?;
    let object = match head.object.as_str() {
        "whatsapp_business_account" => MetaObject::WhatsAppBusinessAccount,
        "instagram" => MetaObject::Instagram,
        _ => {
            return Err(Unusable {
                kind: "unknown object",
                detail: "object is neither whatsapp_business_account nor instagram".to_owned(),
            });
        }
    };
    let mut split = Split::default();
    let mut parsed_entries = Vec::with_capacity(head.entry.len());
    for (i, entry) in head.entry.iter().enumerate() {
        let reject = |kind: &'static str, detail: String| Rejected {
            kind,
            reason: format!("entry {i}: {kind}{}{detail}", if detail.is_empty() { "" } else { ": " }),
            raw: entry.get().to_owned(),
        };
        let parsed: EntryHead<'_> = match serde_json::from_str(entry.get()) {
            Ok(e) => e,
            Err(e) => {
                split.rejected.push(reject("not an entry object", e.to_string()));
                continue;
            }
        };
        let Some(entry_id) = entry_id(parsed.id) else {
            split.rejected.push(reject("missing id", String::new()));
            continue;
        };
        let entry_account = match ChannelAccount::new(object.channel(), entry_id.clone()) {
            Ok(a) => a,
            Err(e) => {
                split.rejected.push(reject("bad account id", e.to_string()));
                continue;
            }
        };
        let mut changes = Vec::new();
        for (j, change) in parsed.changes.unwrap_or_default().iter().enumerate() {
            let change_reject = |kind: &'static str, detail: String| Rejected {
                kind,
                reason: format!("entry {i} change {j}: {kind}: {detail}"),
                raw: change.get().to_owned(),
            };
            let c: ChangeHead<'_> = match serde_json::from_str(change.get()) {
                Ok(c) => c,
                Err(e) => {
                    split
                        .rejected
                        .push(change_reject("missing field or value", e.to_string()));
                    continue;
                }
            };
            match change_account(object, &entry_account, c.value) {
                Ok(account) => changes.push((c.field, account, c.value)),
                Err(e) => split
                    .rejected
                    .push(change_reject("bad metadata.phone_number_id", e.to_string())),
            }
        }
        let messaging = (object == MetaObject::Instagram && parsed.messaging.is_some()).then_some(*entry);
        parsed_entries.push((entry_id, entry_account, messaging, changes));
    }
    let mut built = Vec::new();
    for (entry_id, entry_account, messaging, changes) in &parsed_entries {
        let envelopes = messaging.map(|entry| (None, entry_account, entry)).into_iter().chain(
            changes
                .iter()
                .map(|(field, account, value)| (Some(field.as_str()), account, *value)),
        );
        for (field, account, payload) in envelopes {
            built.push(Outgoing {
                request_id,
                received_at,
                object,
                entry_id,
                field,
                account: account.clone(),
                payload,
            });
        }
    }
    encode(built, &mut split);
    Ok(split)
}

/// `entry.id`, a string or a number as Meta sends either.
fn entry_id(id: Option<serde_json::Value>) -> Option<String> {
    match id {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// WhatsApp message changes are routed by the receiving phone number; other changes (templates,
/// account events) and Instagram ones by the entry's account.
fn change_account(
    object: MetaObject,
    entry_account: &ChannelAccount,
    value: &RawValue,
) -> Result<ChannelAccount, crate::domain::tenant::BadAccountId> {
    let phone_number_id = match object {
        MetaObject::WhatsAppBusinessAccount => serde_json::from_str::<ValueHead>(value.get())
            .ok()
            .and_then(|v| v.metadata)
            .and_then(|m| m.phone_number_id),
        MetaObject::Instagram => None,
    };
    match phone_number_id {
        Some(id) => ChannelAccount::new(Channel::WhatsApp, id),
        None => Ok(entry_account.clone()),
    }
}

/// An envelope SQS cannot carry is kept in quarantine rather than lost. Characters SQS refuses
/// (U+FFFE, U+FFFF raw in Meta's strings) are escaped, so one of them cannot lose the whole POST;
/// the size is checked after, on what is sent.
fn encode(built: Vec<Outgoing<'_>>, split: &mut Split) {
    for e in built {
        match crate::queue::to_body(&e) {
            Ok(body) if body.len() <= MAX_BODY_BYTES => split.envelopes.push(body),
            _ => split.rejected.push(Rejected {
                kind: "change larger than a queue message",
                reason: format!("entry {} change is larger than a queue message", e.entry_id),
                raw: e.payload.get().to_owned(),
            }),
        }
    }
}

/// The common case in one pass: a WhatsApp body whose every entry and change is well formed.
/// Anything else (a bad part, Instagram) returns None and takes the path that reads each part
/// on its own, so that one bad part cannot spoil its neighbours; both give the same envelopes.
fn split_well_formed_whatsapp(body: &[u8], request_id: &str, received_at: Timestamp) -> Option<Split> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        object: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        entry: Vec<Entry<'a>>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        id: Option<serde_json::Value>,
        #[serde(borrow, default)]
        changes: Option<Vec<ChangeHead<'a>>>,
        /// Read (and ignored) as the other path reads it, so a repeated key fails both alike.
        #[serde(default)]
        #[allow(dead_code)]
        messaging: Option<serde::de::IgnoredAny>,
    }
    // The other path checks the UTF-8 of every part it keeps raw; this one skips strings
    // without looking, so it checks the whole body first.
    let body = std::str::from_utf8(body).ok()?;
    let head: Body<'_> = serde_json::from_str(body).ok()?;
    if head.object != "whatsapp_business_account" {
        return None;
    }
    let object = MetaObject::WhatsAppBusinessAccount;
    let mut parsed = Vec::with_capacity(head.entry.len());
    for entry in head.entry {
        let entry_id = entry_id(entry.id)?;
        let entry_account = ChannelAccount::new(object.channel(), entry_id.clone()).ok()?;
        let mut changes = Vec::new();
        for c in entry.changes.unwrap_or_default() {
            let account = change_account(object, &entry_account, c.value).ok()?;
            changes.push((c.field, account, c.value));
        }
        parsed.push((entry_id, changes));
    }
    let mut built = Vec::new();
    for (entry_id, changes) in &parsed {
        for (field, account, value) in changes {
            built.push(Outgoing {
                request_id,
                received_at,
                object,
                entry_id,
                field: Some(field),
                account: account.clone(),
                payload: value,
            });
        }
    }
    let mut split = Split::default();
    encode(built, &mut split);
    Some(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(s: &Split) -> Vec<Envelope> {
        s.envelopes
            .iter()
            .map(|e| serde_json::from_str(e).expect("an envelope"))
            .collect()
    }

    fn at() -> Timestamp {
        Timestamp::from_unix_seconds(1_700_000_000)
    }

    #[test]
    fn whatsapp_changes_route_by_phone_number_id() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
            {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"messages":[]}},
            {"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":1}}]}]}"#;
        let s = split(body, "req-1", at()).expect("usable");
        assert!(s.rejected.is_empty());
        let envelopes = decoded(&s);
        assert_eq!(envelopes.len(), 2);
        assert_eq!(
            envelopes[0].account,
            ChannelAccount::new(Channel::WhatsApp, "106540352242922").expect("valid")
        );
        assert_eq!(envelopes[0].field.as_deref(), Some("messages"));
        assert_eq!(
            envelopes[1].account,
            ChannelAccount::new(Channel::WhatsApp, "102290129340398").expect("valid")
        );
    }

    #[test]
    fn instagram_entries_route_by_account() {
        let body = br#"{"object":"instagram","entry":[{"id":"17841400000000","time":1700000000000,"messaging":[{"sender":{"id":"1"},"recipient":{"id":"17841400000000"},"timestamp":1700000000000,"message":{"mid":"m1","text":"hi"}}]}]}"#;
        let envelopes = decoded(&split(body, "req-1", at()).expect("usable"));
        assert_eq!(envelopes.len(), 1);
        assert_eq!(envelopes[0].account.channel, Channel::Instagram);
        assert!(envelopes[0].payload.get().contains("\"messaging\""));
    }

    #[test]
    fn broken_parts_are_rejected_beside_good_ones() {
        // Bad input: an entry without id, a change without value, beside one valid change.
        let body = br#"{"object":"whatsapp_business_account","entry":[{"changes":[]},{"id":"1","changes":[{"field":"messages"},{"field":"messages","value":{"metadata":{"phone_number_id":"2"}}}]}]}"#;
        let s = split(body, "r", at()).expect("usable");
        assert_eq!(s.envelopes.len(), 1);
        let reasons: Vec<&str> = s.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].starts_with("entry 0: missing id"), "{reasons:?}");
        assert!(
            reasons[1].starts_with("entry 1 change 0: missing field or value"),
            "{reasons:?}"
        );
    }

    #[test]
    fn the_one_pass_split_gives_what_the_part_by_part_split_gives() {
        let fixtures = [
            include_str!("../../../tests/fixtures/wa_every_type.json"),
            include_str!("../../../tests/fixtures/wa_statuses_out_of_order.json"),
            include_str!("../../../tests/fixtures/wa_template_events.json"),
            include_str!("../../../tests/fixtures/wa_user_preferences_stop.json"),
            include_str!("../../../tests/fixtures/wa_system_changed_number.json"),
            include_str!("../../../tests/fixtures/wa_stop.json"),
        ];
        for body in fixtures {
            let fast = split_well_formed_whatsapp(body.as_bytes(), "r", at()).expect("well formed");
            assert!(!fast.envelopes.is_empty());
            assert_eq!(Ok(fast), split_part_by_part(body.as_bytes(), "r", at()));
        }
        // Bad input: an Instagram body, and a WhatsApp change without value, are not for it.
        let ig = include_str!("../../../tests/fixtures/ig_every_event.json");
        assert_eq!(split_well_formed_whatsapp(ig.as_bytes(), "r", at()), None);
        let broken = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages"}]}]}"#;
        assert_eq!(split_well_formed_whatsapp(broken, "r", at()), None);
        // Bad input: invalid UTF-8 in a field neither path keeps, and a repeated `messaging` key.
        let mut latin1 = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","time":"X","changes":[{"field":"messages","value":{}}]}]}"#.to_vec();
        let x = latin1.iter().position(|b| *b == b'X').expect("marker");
        latin1[x] = 0xFF;
        let twice = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","messaging":[],"messaging":[],"changes":[{"field":"messages","value":{}}]}]}"#;
        for body in [&latin1[..], &twice[..]] {
            assert_eq!(split_well_formed_whatsapp(body, "r", at()), None);
            assert_eq!(split(body, "r", at()), split_part_by_part(body, "r", at()));
        }
    }

    #[test]
    fn characters_sqs_refuses_are_escaped_on_both_paths() {
        for bad in ['\u{FFFF}', '\u{FFFE}'] {
            // Bad input: a non-character SQS refuses, raw in a text message and a profile name.
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Ana{bad}"}},"wa_id":"5491123456789"}}],"messages":[{{"from":"5491123456789","id":"wamid.A1","timestamp":"1800000000","type":"text","text":{{"body":"hola {bad}{bad} chau"}}}}]}}}}]}}]}}"#
            );
            let original: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
            let part = &original["entry"][0]["changes"][0]["value"];
            let fast = split_well_formed_whatsapp(body.as_bytes(), "r", at()).expect("well formed");
            let slow = split_part_by_part(body.as_bytes(), "r", at()).expect("usable");
            for (path, s) in [("one pass", &fast), ("part by part", &slow)] {
                assert!(s.rejected.is_empty(), "{path}");
                assert_eq!(s.envelopes.len(), 1, "{path}");
                assert!(
                    crate::queue::sqs_accepts(&s.envelopes[0]),
                    "{path}: U+{:04X}",
                    u32::from(bad)
                );
                let payload: serde_json::Value =
                    serde_json::from_str(decoded(s)[0].payload.get()).expect("payload JSON");
                assert_eq!(&payload, part, "{path}: the same payload");
            }
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn an_envelope_too_large_once_escaped_is_quarantined() {
        // Bad input: under the queue's limit as sent, twice over it once its U+FFFFs are escaped.
        let text = "\u{FFFF}".repeat(MAX_BODY_BYTES / 3 - 1_000);
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"2"}},"text":"{text}"}}}}]}}]}}"#
        );
        assert!(body.len() < MAX_BODY_BYTES);
        let s = split(body.as_bytes(), "r", at()).expect("usable");
        assert!(s.envelopes.is_empty());
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].kind, "change larger than a queue message");
    }

    #[test]
    fn unusable_bodies_are_errors() {
        assert!(split(b"not json", "r", at()).is_err());
        assert!(split(br#"{"object":"page","entry":[]}"#, "r", at()).is_err());
        assert!(split(br#"{"object":"instagram"}"#, "r", at()).is_err());
        // Bad input: nesting far past serde_json's recursion limit, at the top and inside an entry.
        for depth in [10_000, 1_000_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(split(deep.as_bytes(), "r", at()).is_err(), "{depth}-deep body");
            let inside = format!(r#"{{"object":"instagram","entry":[{deep}]}}"#);
            let s = split(inside.as_bytes(), "r", at()).expect("the body itself is usable");
            assert!(
                s.envelopes.is_empty() && s.rejected.len() == 1,
                "{depth}-deep entry is rejected, not a stack overflow"
            );
        }
    }
}
