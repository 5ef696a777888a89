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

#[derive(Debug, Default)]
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
    let mut built = Vec::new();
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
        let entry_id = match parsed.id {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                split.rejected.push(reject("missing id", String::new()));
                continue;
            }
        };
        let base = |field: Option<String>, account: ChannelAccount, payload: &RawValue| Envelope {
            request_id: request_id.to_owned(),
            received_at,
            object,
            entry_id: entry_id.clone(),
            field,
            account,
            payload: payload.to_owned(),
        };
        let entry_account = match ChannelAccount::new(object.channel(), entry_id.clone()) {
            Ok(a) => a,
            Err(e) => {
                split.rejected.push(reject("bad account id", e.to_string()));
                continue;
            }
        };
        if object == MetaObject::Instagram && parsed.messaging.is_some() {
            built.push(base(None, entry_account.clone(), entry));
        }
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
            // WhatsApp message changes are routed by the receiving phone number; other changes
            // (templates, account events) by the business account.
            let phone_number_id = match object {
                MetaObject::WhatsAppBusinessAccount => serde_json::from_str::<ValueHead>(c.value.get())
                    .ok()
                    .and_then(|v| v.metadata)
                    .and_then(|m| m.phone_number_id),
                MetaObject::Instagram => None,
            };
            let account = match phone_number_id.map(|id| ChannelAccount::new(Channel::WhatsApp, id)) {
                Some(Ok(a)) => a,
                Some(Err(e)) => {
                    split
                        .rejected
                        .push(change_reject("bad metadata.phone_number_id", e.to_string()));
                    continue;
                }
                None => entry_account.clone(),
            };
            built.push(base(Some(c.field), account, c.value));
        }
    }
    // An envelope SQS cannot carry is kept in quarantine rather than lost.
    for e in built {
        match serde_json::to_string(&e) {
            Ok(body) if body.len() <= MAX_BODY_BYTES => split.envelopes.push(body),
            _ => split.rejected.push(Rejected {
                kind: "change larger than a queue message",
                reason: format!("entry {} change is larger than a queue message", e.entry_id),
                raw: e.payload.get().to_owned(),
            }),
        }
    }
    Ok(split)
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
