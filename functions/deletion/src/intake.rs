//! What a privacy officer sends: a new request and decisions on it, checked field by field so a
//! bad one gets a 400 naming it and nothing is created.

use crate::{DeletionError, bad_request};
use serde_json::{Map, Value};
use shared::deadline::{Jurisdiction, POLICY_MAX_DAYS, RequestKind};
use shared::domain::{
    ConfirmationCode, MAX_PROFILE_NAME_BYTES, PrivacyRequest, Rectification, RequestSource, Subject, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::timestamp::Timestamp;
use time::Duration;

/// A request names at most this many identifiers: each is a claim in the request's one atomic
/// write (DynamoDB allows 100 actions), and no person has more.
pub const MAX_IDENTIFIERS: usize = 20;
pub const MAX_NOTE_CHARS: usize = 500;
pub const MAX_REASON_CHARS: usize = 500;

const FIELDS: &[&str] = &[
    "kind",
    "identifiers",
    "tenant",
    "source",
    "jurisdiction",
    "note",
    "erase",
    "rectify",
];

fn string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, DeletionError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_request(field, "must be a string")),
    }
}

fn parse_kind(s: &str) -> Result<RequestKind, DeletionError> {
    RequestKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
        bad_request(
            "kind",
            "must be erasure, access, rectification, objection or minor_report",
        )
    })
}

/// `{"profile_name": "..."}`: the one profile field a person gives us (Meta sends it) and so the
/// one they can correct. Required for a rectification, refused on any other kind.
fn parse_rectify(value: Option<&Value>, kind: RequestKind) -> Result<Option<Rectification>, DeletionError> {
    let value = match value {
        None | Some(Value::Null) if kind == RequestKind::Rectification => {
            return Err(bad_request(
                "rectify",
                "required for a rectification: {\"profile_name\": \"...\"}",
            ));
        }
        None | Some(Value::Null) => return Ok(None),
        Some(_) if kind != RequestKind::Rectification => {
            return Err(bad_request("rectify", "only a rectification takes it"));
        }
        Some(v) => v,
    };
    let Value::Object(m) = value else {
        return Err(bad_request("rectify", "must be {\"profile_name\": \"...\"}"));
    };
    if let Some(extra) = m.keys().find(|k| *k != "profile_name") {
        return Err(bad_request(
            &format!("rectify.{extra}"),
            "unknown field: only profile_name can be rectified",
        ));
    }
    let Some(Value::String(name)) = m.get("profile_name") else {
        return Err(bad_request("rectify.profile_name", "required: a string"));
    };
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_PROFILE_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(bad_request(
            "rectify.profile_name",
            format!("must be 1-{MAX_PROFILE_NAME_BYTES} bytes of text without control characters"),
        ));
    }
    Ok(Some(Rectification {
        profile_name: name.to_owned(),
    }))
}

fn parse_identifier_kind(s: &str) -> Option<IdentifierKind> {
    Some(match s {
        "email" => IdentifierKind::Email,
        "phone" => IdentifierKind::Phone,
        "whatsapp_user_id" => IdentifierKind::WhatsAppUserId,
        "instagram_username" => IdentifierKind::InstagramUsername,
        "instagram_id" => IdentifierKind::InstagramId,
        "meta_app_user_id" => IdentifierKind::MetaAppUserId,
        _ => return None,
    })
}

fn parse_subjects(value: Option<&Value>, secret: &SubjectKeySecret) -> Result<Vec<Subject>, DeletionError> {
    let Some(Value::Array(list)) = value else {
        return Err(bad_request("identifiers", "required: a list of {\"type\", \"value\"}"));
    };
    if list.is_empty() || list.len() > MAX_IDENTIFIERS {
        return Err(bad_request(
            "identifiers",
            format!("must hold 1-{MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let mut subjects = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = |f: &str| format!("identifiers[{i}].{f}");
        let Value::Object(m) = item else {
            return Err(bad_request(
                &format!("identifiers[{i}]"),
                "must be {\"type\", \"value\"}",
            ));
        };
        if let Some(extra) = m.keys().find(|k| *k != "type" && *k != "value") {
            return Err(bad_request(&field(extra), "unknown field"));
        }
        let kind = match m.get("type") {
            Some(Value::String(t)) => parse_identifier_kind(t).ok_or_else(|| {
                bad_request(
                    &field("type"),
                    "must be email, phone, whatsapp_user_id, instagram_username, instagram_id or meta_app_user_id",
                )
            })?,
            _ => return Err(bad_request(&field("type"), "required: a string")),
        };
        let Some(Value::String(raw)) = m.get("value") else {
            return Err(bad_request(&field("value"), "required: a string"));
        };
        // The reason names the rule, never the value.
        let id = Identifier::parse(kind, raw).map_err(|e| bad_request(&field("value"), e))?;
        subjects.push(Subject {
            kind,
            key: secret.subject_key(&id),
        });
    }
    // One phone in two formats is one subject.
    subjects.sort();
    subjects.dedup();
    Ok(subjects)
}

/// A new request from the admin API's body. `actor` is recorded as who received it.
pub fn parse(
    body: Map<String, Value>,
    secret: &SubjectKeySecret,
    now: Timestamp,
    actor: &str,
) -> Result<PrivacyRequest, DeletionError> {
    if let Some(extra) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad_request(extra, "unknown field"));
    }
    let kind = parse_kind(string(&body, "kind")?.ok_or_else(|| bad_request("kind", "required"))?)?;
    let subjects = parse_subjects(body.get("identifiers"), secret)?;
    let tenant = string(&body, "tenant")?
        .map(|t| TenantId::new(t).map_err(|e| bad_request("tenant", e)))
        .transpose()?;
    // Requests the chat or Meta's callback opened are theirs to create: a source that proves
    // who asked would skip the operator's approval.
    let source = match string(&body, "source")? {
        Some("email") => RequestSource::Email,
        Some("operator") => RequestSource::Operator,
        Some("whatsapp" | "meta_callback") => {
            return Err(bad_request(
                "source",
                "set by the channel itself: use email or operator",
            ));
        }
        Some(_) => return Err(bad_request("source", "must be email or operator")),
        None => return Err(bad_request("source", "required: email or operator")),
    };
    let jurisdiction = match string(&body, "jurisdiction")? {
        None => Jurisdiction::default(),
        Some(j) => serde_json::from_value(Value::String(j.to_owned()))
            .map_err(|_| bad_request("jurisdiction", "must be ar, eu, br, mx or other"))?,
    };
    let note = string(&body, "note")?.map(str::trim).filter(|n| !n.is_empty());
    if let Some(n) = note {
        if n.chars().count() > MAX_NOTE_CHARS {
            return Err(bad_request("note", format!("at most {MAX_NOTE_CHARS} characters")));
        }
        if shared::access::may_identify(n) {
            return Err(bad_request(
                "note",
                "must not hold an e-mail address or a phone number: the identifiers go in identifiers",
            ));
        }
    }
    let erase = match body.get("erase") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) if kind == RequestKind::Objection => *b,
        Some(Value::Bool(_)) => return Err(bad_request("erase", "only an objection takes it")),
        Some(_) => return Err(bad_request("erase", "must be true or false")),
    };
    let rectify = parse_rectify(body.get("rectify"), kind)?;
    Ok(PrivacyRequest::new(shared::domain::NewRequest {
        kind,
        source,
        jurisdiction,
        tenant,
        subjects,
        note: note.map(str::to_owned),
        erase,
        rectify,
        code: ConfirmationCode::random(),
        now,
        by: actor,
    }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject {
        reason: String,
    },
    /// A later due date, never past the policy's 30 days from receipt.
    Extend {
        due_at: Timestamp,
        reason: String,
    },
}

/// `{"decision": "approve"|"reject"|"extend", "reason"?, "due_at"? (extend)}`.
pub fn parse_decision(
    body: Map<String, Value>,
    received_at: Timestamp,
    due_at: Timestamp,
) -> Result<Decision, DeletionError> {
    if let Some(extra) = body
        .keys()
        .find(|k| !["decision", "reason", "due_at"].contains(&k.as_str()))
    {
        return Err(bad_request(extra, "unknown field"));
    }
    let reason = string(&body, "reason")?.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = reason {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(bad_request("reason", format!("at most {MAX_REASON_CHARS} characters")));
        }
        if shared::access::may_identify(r) {
            return Err(bad_request(
                "reason",
                "must not hold an e-mail address or a phone number",
            ));
        }
    }
    let needs_reason = || {
        reason
            .map(str::to_owned)
            .ok_or_else(|| bad_request("reason", "required to reject or extend"))
    };
    match string(&body, "decision")? {
        Some("approve") => Ok(Decision::Approve),
        Some("reject") => Ok(Decision::Reject {
            reason: needs_reason()?,
        }),
        Some("extend") => {
            let reason = needs_reason()?;
            let Some(text) = string(&body, "due_at")? else {
                return Err(bad_request("due_at", "required to extend: the new due date (RFC 3339)"));
            };
            let new_due =
                Timestamp::parse_rfc3339(text).map_err(|_| bad_request("due_at", "must be an RFC 3339 time"))?;
            let latest = received_at.plus(Duration::days(POLICY_MAX_DAYS));
            if new_due <= due_at {
                return Err(bad_request("due_at", "must be later than the current due date"));
            }
            if new_due > latest {
                return Err(bad_request(
                    "due_at",
                    format!("the policy answers every request within {POLICY_MAX_DAYS} days of receipt"),
                ));
            }
            Ok(Decision::Extend {
                due_at: new_due,
                reason,
            })
        }
        Some(_) => Err(bad_request("decision", "must be approve, reject or extend")),
        None => Err(bad_request("decision", "required: approve, reject or extend")),
    }
}

/// `{"since": "<RFC 3339>", "reason": "..."}`: the time the restored backup was taken, and why
/// (a ticket), both required.
pub fn parse_replay(body: Map<String, Value>, now: Timestamp) -> Result<(Timestamp, String), DeletionError> {
    if let Some(extra) = body.keys().find(|k| !["since", "reason"].contains(&k.as_str())) {
        return Err(bad_request(extra, "unknown field"));
    }
    let since = string(&body, "since")?
        .ok_or_else(|| bad_request("since", "required: when the restored backup was taken (RFC 3339)"))?;
    let since = Timestamp::parse_rfc3339(since).map_err(|_| bad_request("since", "must be an RFC 3339 time"))?;
    if since > now {
        return Err(bad_request("since", "must not be in the future"));
    }
    let reason = string(&body, "reason")?
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad_request("reason", "required: the restore's ticket or case"))?;
    if reason.chars().count() > MAX_REASON_CHARS || shared::access::may_identify(reason) {
        return Err(bad_request(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters, without an e-mail address or a phone number"),
        ));
    }
    Ok((since, reason.to_owned()))
}
