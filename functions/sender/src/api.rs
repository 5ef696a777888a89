//! The outbound routes behind IAM (a bearer token in the local stack), served by their own
//! function so the admin API's binary stays within its size budget. API Gateway sends these paths
//! here, the most specific routes winning over admin's:
//!
//! - `POST /admin/tenants/{tenant}/messages` (`tenant_agent` of the tenant): queues a message to a
//!   contact, named by its handle; idempotent on the `Idempotency-Key` header;
//! - `GET /admin/tenants/{tenant}/messages/{key}`: how that send went (no content);
//! - `GET /admin/outbound/stale` (`platform_admin`): sends that may or may not have left;
//! - `POST /admin/tenants/{tenant}/messages/{key}/resend` (`platform_admin`): after checking
//!   with Meta (WhatsApp Manager) that a stale one did not leave, send it once more.
//!
//! Every call is audited before it is answered, refusals included, as admin's are.

use serde::Serialize;
use shared::access::{self, Permission, PrincipalId};
use shared::apigw::{self, Request, Response};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::{AuditAction, AuditChain, AuditEvent, ContactId, TenantId};
use shared::outbound::{ClientKey, Content, OutboundCommand, OutboxEntry, OutboxState, Refusal, TenantMessage};
use shared::queue::Queue;
use shared::retention::{DEFAULT_AUDIT_RETENTION_MONTHS, audit_expiry};
use shared::seal::{ContactHandle, Sealer};
use shared::store::{AuditStore, OutboxStore, PageRequest, PrincipalStore, StoreError, TenantStore};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether the local stack (API Gateway in AWS) sends this path here.
pub fn serves(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["admin", "tenants", _, "messages", ..] | ["admin", "outbound", ..]
    )
}

#[derive(Debug)]
pub struct OutboundApi {
    principals: Arc<dyn PrincipalStore>,
    tenants: Arc<dyn TenantStore>,
    audit: Arc<dyn AuditStore>,
    outbox: Arc<dyn OutboxStore>,
    tenant_queue: Arc<dyn Queue>,
    replies_queue: Arc<dyn Queue>,
    sealer: Sealer,
    clock: SharedClock,
}

pub async fn build(r: &impl Resources) -> Result<OutboundApi, WiringError> {
    let secret = r.secrets()?.fetch().await?.subject_key_secret()?;
    Ok(OutboundApi {
        principals: r.principals(),
        tenants: r.tenants(),
        audit: r.audit(),
        outbox: r.outbox(),
        tenant_queue: r.queue(QueueKind::TenantOutbound)?,
        replies_queue: r.queue(QueueKind::Outbound)?,
        sealer: Sealer::new(&secret),
        clock: r.clock(),
    })
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{field}: {reason}")]
    BadRequest { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        let status = match &e {
            ApiError::BadRequest { .. } => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
        };
        apigw::error(status, e)
    }
}

fn bad(field: &'static str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        field,
        reason: reason.to_string(),
    }
}

fn unavailable(e: StoreError) -> ApiError {
    tracing::error!(error = %e.log_safe(), "outbound route failed in the store");
    ApiError::Unavailable("storage temporarily unavailable")
}

/// What a caller sees of a send: its state and Meta's answer, never its content.
#[derive(Serialize)]
struct SendView<'a> {
    tenant: &'a TenantId,
    key: &'a str,
    state: OutboxState,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Refusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i64>,
    attempt: u32,
    claimed_at: Timestamp,
    updated_at: Timestamp,
    /// The recipient by handle (a tenant's message) or the kind of system reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<ContactHandle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<shared::optout::command::ReplyKind>,
}

/// The body of `POST /admin/tenants/{tenant}/messages`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// The contact's handle, as the contacts listing gives it.
    to: String,
    content: Content,
}

const SEND_SHAPE: &str = r#"expected {"to": "<contact handle>", "content": {"type": "text", "body": "..."} | {"type": "template", "name", "language", "category": "marketing"|"utility"|"authentication", "components"?} | {"type": "interactive", "interactive": {...}}}"#;

impl OutboundApi {
    pub async fn handle(&self, req: &Request) -> Response {
        let path = apigw::path(req).to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = apigw::method(req);
        let (route, permission, tenant) = match (method.as_str(), segments.as_slice()) {
            ("POST", ["admin", "tenants", t, "messages"]) => (
                "POST /admin/tenants/{tenant}/messages",
                Permission::SendMessages,
                Some(*t),
            ),
            ("GET", ["admin", "tenants", t, "messages", _]) => (
                "GET /admin/tenants/{tenant}/messages/{key}",
                Permission::SendMessages,
                Some(*t),
            ),
            ("POST", ["admin", "tenants", t, "messages", _, "resend"]) => (
                "POST /admin/tenants/{tenant}/messages/{key}/resend",
                Permission::ResolveStaleSends,
                Some(*t),
            ),
            ("GET", ["admin", "outbound", "stale"]) => {
                ("GET /admin/outbound/stale", Permission::ResolveStaleSends, None)
            }
            _ if serves(&path) => return apigw::error(405, "no such method on this outbound route"),
            _ => return apigw::error(404, "no such route"),
        };
        let tenant = match tenant.map(TenantId::new).transpose() {
            Ok(t) => t,
            Err(e) => return bad("tenant", e).into(),
        };
        let actor = match self.admit(req, route, permission, tenant.as_ref()).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        let result = match (segments.as_slice(), tenant) {
            (["admin", "tenants", _, "messages"], Some(t)) => self.send(req, &actor, route, &t).await,
            (["admin", "tenants", _, "messages", key], Some(t)) => self.show(req, &actor, route, &t, key).await,
            (["admin", "tenants", _, "messages", key, "resend"], Some(t)) => {
                self.resend(req, &actor, route, &t, key).await
            }
            _ => self.stale(req, &actor, route).await,
        };
        result.unwrap_or_else(Response::from)
    }

    /// The caller's grant for the permission in the tenant; a refusal is audited before the 403.
    async fn admit(
        &self,
        req: &Request,
        route: &'static str,
        permission: Permission,
        tenant: Option<&TenantId>,
    ) -> Result<String, Response> {
        let Some(caller) = apigw::iam_principal(req) else {
            return Err(apigw::error(401, "an authenticated principal is required"));
        };
        let Ok(caller) = PrincipalId::new(caller) else {
            return Err(apigw::error(401, "the authenticated principal is not a valid id"));
        };
        if apigw::header(req, "x-audit-reason").is_some_and(access::may_identify) {
            return Err(bad(
                "x-audit-reason",
                "must not hold an e-mail address or a phone number: give a ticket or case reference",
            )
            .into());
        }
        let grant = self
            .principals
            .get(&caller.grant_key())
            .await
            .map_err(|e| Response::from(unavailable(e)))?;
        let actor = caller.to_string();
        let Err(denial) = access::authorize(grant.as_ref(), permission, tenant) else {
            return Ok(actor);
        };
        let reason = denial.to_string();
        let registered = match tenant {
            Some(t) if !matches!(denial, access::Denial::NoGrant) => {
                self.tenants.get(t).await.map_err(|e| Response::from(unavailable(e)))?
            }
            _ => None,
        };
        let chain = registered.map_or(AuditChain::Platform, |t| AuditChain::Tenant(t.id));
        self.audit(
            chain,
            &actor,
            route,
            AuditAction::Denied,
            None,
            Some(reason.clone()),
            &reason,
            None,
        )
        .await
        .map_err(Response::from)?;
        tracing::warn!(route, reason = %reason, "outbound route denied");
        Err(apigw::error(403, reason))
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        chain: AuditChain,
        actor: &str,
        route: &str,
        action: AuditAction,
        contact: Option<ContactHandle>,
        detail: Option<String>,
        default_reason: &str,
        req: Option<&Request>,
    ) -> Result<(), ApiError> {
        let reason = match (action, req.and_then(|r| apigw::header(r, "x-audit-reason"))) {
            (AuditAction::Denied, _) | (_, None) => default_reason,
            (_, Some(given)) => given,
        };
        let now = self.clock.now();
        let event = AuditEvent {
            id: uuid::Uuid::new_v4(),
            chain,
            at: now,
            actor: actor.to_owned(),
            action,
            route: route.to_owned(),
            contact,
            subject_key: None,
            detail,
            reason: reason.chars().take(200).collect(),
            expires_at: audit_expiry(now, DEFAULT_AUDIT_RETENTION_MONTHS),
        };
        self.audit.append(&event).await.map(|_| ()).map_err(unavailable)
    }

    fn view<'a>(&self, e: &'a OutboxEntry) -> SendView<'a> {
        // The recipient while the command is kept (claimed, stale); none after the outcome.
        let contact = match &e.command {
            Some(OutboundCommand::Message(m)) => Some(self.sealer.contact_handle(&e.tenant, &m.to)),
            _ => None,
        };
        let reply = e.reply;
        SendView {
            tenant: &e.tenant,
            key: e.dedup_key.strip_prefix("msg:").unwrap_or(&e.dedup_key),
            state: e.state,
            refusal: e.refusal,
            message_id: e.message_id.as_deref(),
            error_code: e.error_code,
            attempt: e.attempt,
            claimed_at: e.claimed_at,
            updated_at: e.updated_at,
            contact,
            reply,
        }
    }

    async fn send(
        &self,
        req: &Request,
        actor: &str,
        route: &'static str,
        tenant: &TenantId,
    ) -> Result<Response, ApiError> {
        let key = apigw::header(req, IDEMPOTENCY_KEY)
            .ok_or_else(|| {
                bad(
                    "Idempotency-Key",
                    "header required: a key of yours that makes a retry safe",
                )
            })
            .and_then(|k| ClientKey::new(k.trim()).map_err(|e| bad("Idempotency-Key", e)))?;
        let bytes = apigw::body_bytes(req).map_err(|_| bad("body", "not valid base64"))?;
        let body: SendBody = serde_json::from_slice(&bytes).map_err(|_| bad("body", SEND_SHAPE))?;
        let registered = self.tenants.get(tenant).await.map_err(unavailable)?;
        let Some(registered) = registered.filter(|t| t.offboarding.is_none()) else {
            return Err(ApiError::NotFound("no such tenant, or it is offboarded"));
        };
        let (handle, to): (ContactHandle, ContactId) =
            self.sealer.open_contact_handle(tenant, &body.to).map_err(|_| {
                bad(
                    "to",
                    "must be a contact handle of this tenant, as the contacts listing gives it",
                )
            })?;
        body.content.check(to.channel).map_err(|e| bad("content", e))?;
        if !registered.accounts.iter().any(|a| a.channel == to.channel) {
            return Err(ApiError::Conflict(format!(
                "the tenant has no {} account to send from",
                to.channel
            )));
        }
        let message = TenantMessage {
            tenant: tenant.clone(),
            to,
            client_key: key.clone(),
            content: body.content,
            requested_by: actor.to_owned(),
            requested_at: self.clock.now(),
        };
        let command = OutboundCommand::Message(message);
        let dedup = shared::outbound::dedup_key(&command);
        // A key already used: the send it named, never a second one.
        if let Some(existing) = self.outbox.get(tenant, &dedup).await.map_err(unavailable)? {
            if existing.digest != shared::outbound::command_digest(&command) {
                return Err(ApiError::Conflict(
                    "this Idempotency-Key was used for another message".to_owned(),
                ));
            }
            return Ok(apigw::json(200, &self.view(&existing)));
        }
        self.audit(
            AuditChain::Tenant(tenant.clone()),
            actor,
            route,
            AuditAction::Change,
            Some(handle.clone()),
            Some(format!("outbound message {} queued", key.as_str())),
            "outbound message",
            Some(req),
        )
        .await?;
        let body =
            shared::queue::to_body(&command).map_err(|_| ApiError::Unavailable("the message could not be queued"))?;
        self.tenant_queue.send_batch(&[body]).await.map_err(|e| {
            tracing::error!(error = %e, "tenant outbound queue refused a message");
            ApiError::Unavailable("outbound queue temporarily unavailable; retry with the same Idempotency-Key")
        })?;
        tracing::info!(%tenant, key = key.as_str(), "outbound message queued");
        Ok(apigw::json(
            202,
            &serde_json::json!({"tenant": tenant, "key": key.as_str(), "state": "queued", "contact": handle}),
        ))
    }

    async fn show(
        &self,
        req: &Request,
        actor: &str,
        route: &'static str,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Response, ApiError> {
        let key = ClientKey::new(key).map_err(|e| bad("key", e))?;
        let dedup = format!("msg:{}", key.as_str());
        let Some(entry) = self.outbox.get(tenant, &dedup).await.map_err(unavailable)? else {
            return Err(ApiError::NotFound(
                "no send by that key in the last 24 hours (not yet taken by the sender, or expired)",
            ));
        };
        self.audit(
            AuditChain::Tenant(tenant.clone()),
            actor,
            route,
            AuditAction::Read,
            None,
            Some(format!("outbound message {}", key.as_str())),
            "outbound message status",
            Some(req),
        )
        .await?;
        Ok(apigw::json(200, &self.view(&entry)))
    }

    async fn stale(&self, req: &Request, actor: &str, route: &'static str) -> Result<Response, ApiError> {
        self.audit(
            AuditChain::Platform,
            actor,
            route,
            AuditAction::Read,
            None,
            None,
            "stale outbound sends",
            Some(req),
        )
        .await?;
        let page = self
            .outbox
            .stale(&PageRequest::first(shared::store::MAX_PAGE_SIZE))
            .await
            .map_err(unavailable)?;
        let items: Vec<SendView<'_>> = page.items.iter().map(|e| self.view(e)).collect();
        Ok(apigw::json(
            200,
            &serde_json::json!({"stale": items, "more": page.next.is_some()}),
        ))
    }

    /// A stale send, released and queued once more: the operator has checked it did not leave.
    async fn resend(
        &self,
        req: &Request,
        actor: &str,
        route: &'static str,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Response, ApiError> {
        // Stale replies are listed under their full key (`reply:...`), tenants' messages by theirs.
        let dedup = if key.starts_with("reply:") {
            key.to_owned()
        } else {
            format!("msg:{}", ClientKey::new(key).map_err(|e| bad("key", e))?.as_str())
        };
        let Some(entry) = self.outbox.get(tenant, &dedup).await.map_err(unavailable)? else {
            return Err(ApiError::NotFound("no send by that key in the last 24 hours"));
        };
        // A stale send, or one released for a resend whose queueing failed (it kept its message).
        let retry = entry.state == OutboxState::Released && entry.command.is_some();
        if entry.state != OutboxState::Stale && !retry {
            return Err(ApiError::Conflict(format!(
                "only a stale send can be resent; this one is {}",
                entry.state.as_str()
            )));
        }
        let Some(command) = &entry.command else {
            return Err(ApiError::Conflict(
                "the send no longer holds its message (its person was erased)".to_owned(),
            ));
        };
        self.audit(
            AuditChain::Tenant(tenant.clone()),
            actor,
            route,
            AuditAction::Change,
            None,
            Some(format!("stale outbound send {dedup} resent")),
            "stale outbound send resent",
            Some(req),
        )
        .await?;
        if !retry
            && !self
                .outbox
                .release_for_resend(tenant, &dedup, entry.attempt, self.clock.now())
                .await
                .map_err(unavailable)?
        {
            return Err(ApiError::Conflict(
                "the send changed meanwhile; read it again".to_owned(),
            ));
        }
        let queue = match command {
            OutboundCommand::Reply(_) => &self.replies_queue,
            OutboundCommand::Message(_) => &self.tenant_queue,
        };
        let body =
            shared::queue::to_body(command).map_err(|_| ApiError::Unavailable("the message could not be queued"))?;
        queue.send_batch(&[body]).await.map_err(|e| {
            tracing::error!(error = %e, "outbound queue refused a resend");
            ApiError::Unavailable("outbound queue temporarily unavailable; resend again")
        })?;
        Ok(apigw::json(
            202,
            &serde_json::json!({"tenant": tenant, "key": key, "state": "queued", "attempt": entry.attempt + 1}),
        ))
    }
}
