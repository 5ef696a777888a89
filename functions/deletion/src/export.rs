//! Access and portability (policy §7): everything stored about the subject of an access request,
//! across the tenants in its scope, as one JSON document, and its messages as CSV for a
//! spreadsheet. Found the way erasure finds it, through the blind index by the request's subject
//! keys, so it holds the subject's contacts and nothing of anyone else in the same tenant.
//!
//! The export is the person's own data, so it carries plaintext: it is served only to a privacy
//! officer, audited, and never logged.

use serde::Serialize;
use shared::domain::{
    Contact, DeliveryState, Direction, Message, OptOutScope, OptOutSource, OptState, PrivacyRequest, RequestId,
    RequestStatus, StatusUpdate, TenantId,
};
use shared::identity::{IdentifierKind, SubjectKey};
use shared::store::{StoreError, Stores, all_pages};
use shared::timestamp::Timestamp;
use std::collections::BTreeSet;

/// Items per store page while collecting.

#[derive(Debug, Serialize)]
pub struct Export {
    pub request: RequestId,
    pub generated_at: Timestamp,
    /// The tenant the request is limited to; absent: every tenant.
    pub tenant: Option<TenantId>,
    pub contacts: Vec<ContactExport>,
    pub opt_outs: Vec<OptOutExport>,
    pub requests: Vec<RequestSummary>,
}

#[derive(Debug, Serialize)]
pub struct ContactExport {
    pub tenant: TenantId,
    pub channel: shared::domain::Channel,
    pub contact_id: String,
    pub profile_name: Option<String>,
    /// When the person's rectification set `profile_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_rectified_at: Option<Timestamp>,
    pub identifiers: Vec<IdentifierExport>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// When retention deletes the contact if nothing newer arrives.
    pub kept_until: Timestamp,
    pub messages: Vec<MessageExport>,
    pub statuses: Vec<StatusExport>,
}

#[derive(Debug, Serialize)]
pub struct IdentifierExport {
    #[serde(rename = "type")]
    pub kind: IdentifierKind,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct MessageExport {
    pub id: String,
    pub direction: Direction,
    pub sent_at: Timestamp,
    pub kind: String,
    /// The message object as Meta delivered it.
    pub content: serde_json::Value,
    pub kept_until: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct StatusExport {
    pub message_id: String,
    pub state: DeliveryState,
    pub at: Timestamp,
    pub detail: serde_json::Value,
}

/// The person's opt-out state in one tenant, by one of their identifiers, with its history.
#[derive(Debug, Serialize)]
pub struct OptOutExport {
    pub tenant: TenantId,
    pub current: Vec<OptOutChange>,
    pub history: Vec<OptOutChange>,
}

#[derive(Debug, Serialize)]
pub struct OptOutChange {
    pub scope: OptOutScope,
    pub state: OptState,
    pub source: OptOutSource,
    pub at: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct RequestSummary {
    pub id: RequestId,
    pub kind: shared::deadline::RequestKind,
    pub status: RequestStatus,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

fn contact_export(c: Contact, messages: Vec<Message>, statuses: Vec<StatusUpdate>) -> ContactExport {
    ContactExport {
        channel: c.contact.channel,
        contact_id: c.contact.stable_id,
        tenant: c.tenant,
        profile_name: c.profile_name,
        name_rectified_at: c.name_rectified_at,
        identifiers: c
            .identifiers
            .into_iter()
            .map(|l| IdentifierExport {
                kind: l.identifier.kind(),
                value: l.identifier.value().to_owned(),
            })
            .collect(),
        first_seen: c.first_seen,
        last_seen: c.last_seen,
        kept_until: c.expires_at.as_timestamp(),
        messages: messages
            .into_iter()
            .map(|m| MessageExport {
                id: m.id.as_str().to_owned(),
                direction: m.direction,
                sent_at: m.sent_at,
                kind: m.kind,
                content: m.content,
                kept_until: m.expires_at.as_timestamp(),
            })
            .collect(),
        statuses: statuses
            .into_iter()
            .map(|s| StatusExport {
                message_id: s.message_id.as_str().to_owned(),
                state: s.state,
                at: s.at,
                detail: s.detail,
            })
            .collect(),
    }
}

/// Everything live about the request's subject, in its tenant scope.
pub async fn collect(stores: &Stores, r: &PrivacyRequest, now: Timestamp) -> Result<Export, StoreError> {
    let conv = &stores.conversations;
    let found = crate::contacts_in_scope(conv.as_ref(), r).await?;
    // Opt-outs are kept by tenant and subject key: the request's keys in its scope, and every
    // link of every contact found.
    let mut opt_out_keys: BTreeSet<(TenantId, SubjectKey)> = BTreeSet::new();
    if let Some(t) = &r.tenant {
        opt_out_keys.extend(r.subject_keys().map(|k| (t.clone(), k.clone())));
    }
    let mut contacts = Vec::new();
    let mut tenants = std::collections::BTreeMap::new();
    for c in found {
        let Some(contact) = conv.get_contact(&c.tenant, &c.contact).await? else {
            continue;
        };
        if !tenants.contains_key(&c.tenant) {
            tenants.insert(c.tenant.clone(), stores.tenants.get(&c.tenant).await?);
        }
        // What a lowered retention put outside it is not ours to give any more.
        let retains = |at: Timestamp| {
            tenants
                .get(&c.tenant)
                .and_then(Option::as_ref)
                .is_none_or(|t| t.retains(at, now))
        };
        // `last_seen` moves once a day at most: a contact is outside a day after it.
        if !retains(contact.last_seen.plus(shared::retention::CONTACT_EXPIRY_STEP)) {
            continue;
        }
        opt_out_keys.extend(r.subject_keys().map(|k| (c.tenant.clone(), k.clone())));
        opt_out_keys.extend(
            contact
                .identifiers
                .iter()
                .map(|l| (c.tenant.clone(), l.subject_key.clone())),
        );
        let (tenant, id) = (&c.tenant, &c.contact);
        let mut messages = all_pages(|p| async move { conv.list_messages(tenant, id, &p).await }).await?;
        let mut statuses = all_pages(|p| async move { conv.list_statuses(tenant, id, &p).await }).await?;
        messages.retain(|m| retains(m.sent_at));
        statuses.retain(|s| retains(s.at));
        contacts.push(contact_export(contact, messages, statuses));
    }
    let mut opt_outs = Vec::new();
    for (tenant, key) in &opt_out_keys {
        let mut current = Vec::new();
        for scope in [OptOutScope::All, OptOutScope::Marketing] {
            if let Some(rec) = stores.opt_outs.get(tenant, key, scope).await? {
                current.push(OptOutChange {
                    scope: rec.scope,
                    state: rec.state,
                    source: rec.source,
                    at: rec.event_at,
                });
            }
        }
        let history = all_pages(|p| async move { stores.opt_outs.history(tenant, key, &p).await })
            .await?
            .into_iter()
            .map(|rec| OptOutChange {
                scope: rec.scope,
                state: rec.state,
                source: rec.source,
                at: rec.event_at,
            })
            .collect::<Vec<_>>();
        if !current.is_empty() || !history.is_empty() {
            opt_outs.push(OptOutExport {
                tenant: tenant.clone(),
                current,
                history,
            });
        }
    }
    Ok(Export {
        request: r.id,
        generated_at: now,
        tenant: r.tenant.clone(),
        contacts,
        opt_outs,
        requests: vec![RequestSummary {
            id: r.id,
            kind: r.kind,
            status: r.status,
            received_at: r.received_at,
            due_at: r.due_at,
            closed_at: r.closed_at,
        }],
    })
}

/// The text of a message for a reader: WhatsApp's `text.body`, Instagram's `text`, a caption.
fn message_text(content: &serde_json::Value) -> &str {
    let text = content.get("text");
    text.and_then(|t| t.get("body"))
        .or(text)
        .or_else(|| content.pointer("/image/caption"))
        .or_else(|| content.pointer("/video/caption"))
        .or_else(|| content.pointer("/document/caption"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// One CSV field, always quoted. A field a spreadsheet would run as a formula gets a leading
/// apostrophe (OWASP's advice on CSV injection): the export is opened by the person.
fn field(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

pub const CSV_HEADER: &str = "tenant,channel,contact_id,message_id,direction,sent_at,kind,text,content_json";

/// The export's messages, one row each, oldest first per contact (RFC 4180, CRLF line ends).
pub fn messages_csv(export: &Export) -> String {
    let mut out = format!("{CSV_HEADER}\r\n");
    for c in &export.contacts {
        for m in &c.messages {
            let direction = match m.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            };
            let row = [
                c.tenant.as_str(),
                c.channel.as_str(),
                &c.contact_id,
                &m.id,
                direction,
                &m.sent_at.to_string(),
                &m.kind,
                message_text(&m.content),
                &m.content.to_string(),
            ]
            .map(field)
            .join(",");
            out.push_str(&row);
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_quoted_escaped_and_never_formulas() {
        assert_eq!(field("hola"), "\"hola\"");
        assert_eq!(field("dijo \"sí\", y\r\nchau"), "\"dijo \"\"sí\"\", y\r\nchau\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1+2"), "\"'-1+2\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
    }

    #[test]
    fn the_text_is_found_in_each_channels_shape() {
        assert_eq!(message_text(&json!({"text": {"body": "hola"}})), "hola");
        assert_eq!(message_text(&json!({"mid": "m", "text": "hi"})), "hi");
        assert_eq!(message_text(&json!({"image": {"caption": "foto"}})), "foto");
        assert_eq!(message_text(&json!({"sticker": {"id": "1"}})), "");
    }
}
