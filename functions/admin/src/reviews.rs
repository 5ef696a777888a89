//! The opt-out review queue: messages that may be a request to stop but were not acted on (a
//! keyword inside a longer sentence), and opt-outs nothing identifies. An operator reads a
//! tenant's open items with the message text (an audited read) and decides each: `opt_out` with
//! a scope, applied by the opt-out function with source `operator`, or `dismiss`. Items never
//! expire undecided; a decided one is deleted, and the decision stays in the audit trail.

use super::{Admin, AdminError, AuditTarget, Ctx, bad_request, store_error};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::apigw::{self, Request, Response};
use shared::domain::*;
use shared::optout::command::{CommandAction, OptOutCommand};
use shared::seal::{ContactHandle, CursorScope};
use shared::store::PageRequest;
use shared::timestamp::Timestamp;

/// What an operator decides about one review item.
#[derive(Debug)]
enum Decision {
    OptOut { scope: OptOutScope },
    Dismiss,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum DecisionKind {
    OptOut,
    Dismiss,
}

/// The request body as sent: `scope` only goes with `opt_out` (all when left out).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: DecisionKind,
    scope: Option<OptOutScope>,
}

impl TryFrom<DecisionBody> for Decision {
    type Error = AdminError;
    fn try_from(b: DecisionBody) -> Result<Self, AdminError> {
        match (b.decision, b.scope) {
            (DecisionKind::OptOut, scope) => Ok(Decision::OptOut {
                scope: scope.unwrap_or(OptOutScope::All),
            }),
            (DecisionKind::Dismiss, None) => Ok(Decision::Dismiss),
            (DecisionKind::Dismiss, Some(_)) => Err(bad_request("scope", "goes with opt_out only")),
        }
    }
}

const DECISION_SHAPE: &str = r#"{"decision": "opt_out"|"dismiss", "scope": "all"|"marketing"}"#;

#[derive(Serialize)]
struct ReviewView {
    /// `<received ms>.<uuid>`: the item's key, no personal data.
    id: String,
    reason: String,
    received_at: Timestamp,
    waiting_seconds: i64,
    /// The contact's handle, when the item points at a contact.
    contact: Option<ContactHandle>,
    /// The stored message the item points at, while it exists.
    message: Option<Value>,
    /// What came in, for an opt-out nothing identifies: there is no stored message.
    held: Option<Value>,
    /// Whether `opt_out` can be decided: something identifies the sender.
    can_opt_out: bool,
}

/// The pointer a review item holds, if it is one.
fn pointer_of(e: &QuarantineEntry) -> Option<ReviewPointer> {
    serde_json::from_str(&e.envelope).ok()
}

fn review_id(e: &QuarantineEntry) -> String {
    format!("{}.{}", e.received_at.unix_millis(), e.id)
}

fn parse_review_id(id: &str) -> Option<(Timestamp, uuid::Uuid)> {
    let (ms, uuid) = id.split_once('.')?;
    Some((
        Timestamp::from_unix_millis(ms.parse().ok()?),
        uuid::Uuid::parse_str(uuid).ok()?,
    ))
}

/// The contact a review item points at, and the message if it is still stored.
struct Resolved {
    contact: ContactId,
    handle: ContactHandle,
    pointer: ReviewPointer,
    message: Option<Message>,
}

impl Admin {
    fn bucket(tenant: &Tenant) -> QuarantineBucket {
        QuarantineBucket::OptOutReview {
            tenant: tenant.id.clone(),
        }
    }

    /// The contact (and stored message) a pointer names; None when the item is no pointer (a
    /// held opt-out keeps the message as it came) or its contact is gone.
    async fn resolve(&self, tenant: &Tenant, pointer: Option<ReviewPointer>) -> Result<Option<Resolved>, AdminError> {
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let conversations = &self.stores.conversations;
        let found = conversations
            .find_subject(&pointer.subject_key)
            .await
            .map_err(store_error)?;
        let Some(found) = found.into_iter().find(|c| c.tenant == tenant.id) else {
            return Ok(None);
        };
        let message = match (pointer.sent_at, &pointer.message_id) {
            (Some(at), Some(id)) => conversations
                .get_message(&tenant.id, &found.contact, at, id)
                .await
                .map_err(store_error)?,
            _ => None,
        };
        Ok(Some(Resolved {
            handle: self.sealer.contact_handle(&tenant.id, &found.contact),
            contact: found.contact,
            pointer,
            message,
        }))
    }

    /// `GET /admin/tenants/{tenant}/optout-reviews`: open items, oldest first, with the age of
    /// the oldest waiting one.
    pub(crate) async fn reviews(&self, req: &Request, ctx: &Ctx, tenant: &str) -> Response {
        let tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let scope = CursorScope::OptOutReviews(&tenant.id);
        let page = match self.page_request(req, scope) {
            Ok(p) => p,
            Err(r) => return r.into(),
        };
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, AuditTarget::OptOutReviews).await {
            return r.into();
        }
        let bucket = Self::bucket(&tenant);
        let (oldest, listed) = match (
            self.stores.quarantine.list(&bucket, &PageRequest::first(1)).await,
            self.stores.quarantine.list(&bucket, &page).await,
        ) {
            (Ok(o), Ok(l)) => (o, l),
            (Err(e), _) | (_, Err(e)) => return store_error(e).into(),
        };
        let now = self.clock.now();
        let waiting = |e: &QuarantineEntry| (now.unix_millis() - e.received_at.unix_millis()).max(0) / 1000;
        let mut views = Vec::with_capacity(listed.items.len());
        for entry in &listed.items {
            let pointer = pointer_of(entry);
            // What came as it came: a held opt-out, or a known sender's message that could not
            // be stored.
            let held = match &pointer {
                Some(p) => p.held.clone(),
                None => serde_json::from_str(&entry.envelope).ok(),
            };
            let resolved = match self.resolve(&tenant, pointer).await {
                Ok(r) => r,
                Err(r) => return r.into(),
            };
            views.push(ReviewView {
                id: review_id(entry),
                reason: entry.reason.clone(),
                received_at: entry.received_at,
                waiting_seconds: waiting(entry),
                can_opt_out: resolved.is_some(),
                contact: resolved.as_ref().map(|r| r.handle.clone()),
                message: resolved.and_then(|r| r.message).map(
                    |m| serde_json::json!({"id": m.id, "sent_at": m.sent_at, "kind": m.kind, "content": m.content}),
                ),
                held,
            });
        }
        apigw::json(
            200,
            &serde_json::json!({
                "reviews": views,
                "oldest_waiting_seconds": oldest.items.first().map(waiting),
                "next_cursor": self.next_cursor(scope, listed.next.as_ref()),
            }),
        )
    }

    /// `POST /admin/tenants/{tenant}/optout-reviews/{id}` with `{"decision": "opt_out", "scope":
    /// "all"|"marketing"}` or `{"decision": "dismiss"}`.
    pub(crate) async fn decide(&self, req: &Request, ctx: &Ctx, tenant: &str, id: &str) -> Response {
        let tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let body = match apigw::body_bytes(req).map(|b| serde_json::from_slice::<DecisionBody>(&b)) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return bad_request("decision", format!("{DECISION_SHAPE}: {e}")).into(),
            Err(e) => return bad_request("body", e).into(),
        };
        let decision = match Decision::try_from(body) {
            Ok(d) => d,
            Err(r) => return r.into(),
        };
        let Some((received_at, uuid)) = parse_review_id(id) else {
            return AdminError::NotFound("no such review item").into();
        };
        let entry = match self
            .stores
            .quarantine
            .get(&Self::bucket(&tenant), received_at, uuid)
            .await
        {
            Ok(Some(e)) => e,
            Ok(None) => return AdminError::NotFound("no such review item").into(),
            Err(e) => return store_error(e).into(),
        };
        let resolved = match self.resolve(&tenant, pointer_of(&entry)).await {
            Ok(r) => r,
            Err(r) => return r.into(),
        };
        let (reason, scope) = match (&decision, &resolved) {
            (Decision::Dismiss, _) => ("opt-out review dismissed", None),
            (Decision::OptOut { scope }, Some(_)) => ("opt-out review decided: opt out", Some(*scope)),
            (Decision::OptOut { .. }, None) => {
                return AdminError::Conflict(
                    "nothing identifies this sender (or the contact is gone): the item can only be dismissed"
                        .to_owned(),
                )
                .into();
            }
        };
        let target = AuditTarget::Decision {
            handle: resolved.as_ref().map(|r| r.handle.clone()),
            subject: resolved.as_ref().map(|r| r.pointer.subject_key.clone()),
            reason,
        };
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, target).await {
            return r.into();
        }
        if let (Some(scope), Some(r)) = (scope, &resolved) {
            let now = self.clock.now();
            let command = OptOutCommand {
                tenant: tenant.id.clone(),
                contact: r.contact.clone(),
                subject_keys: vec![r.pointer.subject_key.clone()],
                action: CommandAction::OptOut,
                scope,
                source: OptOutSource::Operator,
                event_at: now,
                order_at: now,
                only_while_opted_out: false,
                language: None,
            };
            let sent = match shared::queue::to_body(&command) {
                Ok(body) => self.optout.send_batch(&[body]).await,
                Err(e) => Err(shared::queue::QueueError::Backend(e.to_string())),
            };
            if let Err(e) = sent {
                tracing::error!(error = %e, "opt-out queue refused an operator decision");
                return AdminError::Unavailable("opt-out queue temporarily unavailable; decide again").into();
            }
        }
        if let Err(e) = self.stores.quarantine.delete(&entry).await {
            return store_error(e).into();
        }
        tracing::info!(tenant = %tenant.id, review = %id, opt_out = scope.is_some(), "opt-out review decided");
        apigw::json(
            200,
            &serde_json::json!({"id": id, "decision": if scope.is_some() { "opt_out" } else { "dismiss" }, "scope": scope}),
        )
    }
}
