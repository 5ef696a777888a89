//! The operator API behind IAM in AWS (a bearer token in the local stack): register tenants and
//! their channel accounts, and read what was stored. Every read of personal data writes an audit
//! event naming the principal, the data and the reason.
//!
//! Nothing personal travels in a URL: contacts are named by their sealed handle (`shared::seal`),
//! and page cursors, which wrap DynamoDB keys holding contact ids, are sealed for their query.

use percent_encoding::percent_decode_str;
use routes::{RouteId, TenantFrom};
use serde::Serialize;
use serde_json::{Map, Value};
use shared::access::{self, Principal, PrincipalId};
use shared::apigw::{self, Request, Response};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::deadline::Jurisdiction;
use shared::domain::*;
use shared::identity::SubjectKeySecret;
use shared::optout::contactability::{self, ContactabilityError, Purpose};
use shared::queue::Queue;
use shared::retention::{DEFAULT_AUDIT_RETENTION_MONTHS, RetentionMonths, audit_expiry};
use shared::seal::{ContactHandle, CursorScope, Sealer};
use shared::store::{Cursor, PageRequest, StoreError, Stores};
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

pub mod principals;
mod reviews;
pub mod routes;
mod trail;

pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Registration claims every account in one DynamoDB transaction (at most 100 actions, and an
/// update may also release as many).
pub const MAX_ACCOUNTS: usize = 45;

#[derive(Debug)]
pub struct Admin {
    stores: Stores,
    ingest: Arc<dyn Queue>,
    /// Operator decisions on opt-out reviews go to the opt-out function, like any STOP.
    optout: Arc<dyn Queue>,
    clock: SharedClock,
    secret: SubjectKeySecret,
    /// Seals contact handles and page cursors, with a key derived from `secret`.
    sealer: Sealer,
}

/// Who is calling and through which route: what every handler and audit event needs.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The caller's full id (a role session included), as the audit trail records it.
    pub actor: String,
    pub route: &'static routes::Route,
}

/// A string field of a JSON object body, if the body is one.
fn body_field(req: &Request, field: &str) -> Option<String> {
    match apigw::json_object(req)?.remove(field)? {
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

pub use apigw::iam_principal as principal;
use shared::retention::{CONTACT_EXPIRY_STEP, DEFAULT_OFFBOARDING_NOTICE_DAYS, MAX_OFFBOARDING_NOTICE_DAYS};

/// What an audited request reads.
enum AuditTarget {
    Contacts,
    /// Named by its handle, so the audit trail holds no personal data.
    Contact(ContactHandle),
    Subject(shared::identity::SubjectKey),
    /// A tenant's open opt-out reviews, message text included.
    OptOutReviews,
    /// A tenant's template and account notifications.
    Events,
    /// A tenant registered (`new`) or updated; held envelopes for its accounts are replayed.
    Registration {
        new: bool,
    },
    /// An operator's decision on one review.
    Decision {
        handle: Option<ContactHandle>,
        subject: Option<shared::identity::SubjectKey>,
        reason: &'static str,
    },
    /// A request the access check refused, with the refusal's reason and, in the platform chain,
    /// the tenant it asked for.
    Denied {
        reason: String,
        asked: Option<String>,
    },
    /// The list of principals and their grants.
    Principals,
    /// A grant given, changed or revoked, described in `detail`.
    Grant {
        detail: String,
    },
    /// An audit chain listed or verified.
    Trail {
        verify: bool,
    },
    /// The compliance report read.
    Compliance,
    /// A tenant offboarded: its accounts released, its conversations to be erased.
    Offboarding,
}

/// The contactability question, as a JSON body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactabilityQuery {
    tenant: String,
    channel: String,
    id: String,
    purpose: Option<String>,
}

const CONTACTABILITY_SHAPE: &str =
    r#"expected {"tenant": "...", "channel": "whatsapp"|"instagram", "id": "...", "purpose"?: "service"|"marketing"}"#;

/// Why an admin request failed; turned into a status and a short, safe message at the edge.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<AdminError> for Response {
    fn from(e: AdminError) -> Response {
        let status = match &e {
            AdminError::BadRequest { .. } => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
            AdminError::Unavailable(_) => 503,
        };
        apigw::error(status, e)
    }
}

fn store_error(e: StoreError) -> AdminError {
    match e {
        StoreError::BadCursor | StoreError::BadPageSize => bad_request("cursor", e),
        StoreError::AccountTaken { channel, account_id } => AdminError::Conflict(format!(
            "{channel} account {account_id} already belongs to another tenant"
        )),
        other => {
            tracing::error!(error = %other.log_safe(), "admin request failed in the store");
            AdminError::Unavailable("storage temporarily unavailable")
        }
    }
}

fn bad_request(field: &str, reason: impl std::fmt::Display) -> AdminError {
    AdminError::BadRequest {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

#[derive(Serialize)]
struct IdentifierView<'a> {
    kind: shared::identity::IdentifierKind,
    value: &'a str,
}

#[derive(Serialize)]
struct ContactView<'a> {
    /// The path segment that names this contact: its handle, `c_<sealed contact key>`.
    contact: ContactHandle,
    channel: Channel,
    id: &'a str,
    profile_name: Option<&'a str>,
    identifiers: Vec<IdentifierView<'a>>,
    first_seen: shared::timestamp::Timestamp,
    last_seen: shared::timestamp::Timestamp,
    expires_at: shared::timestamp::Timestamp,
}

impl<'a> ContactView<'a> {
    fn new(c: &'a Contact, contact: ContactHandle) -> Self {
        Self {
            contact,
            channel: c.contact.channel,
            id: &c.contact.stable_id,
            profile_name: c.profile_name.as_deref(),
            identifiers: c
                .identifiers
                .iter()
                .map(|l| IdentifierView {
                    kind: l.identifier.kind(),
                    value: l.identifier.value(),
                })
                .collect(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            expires_at: c.expires_at.as_timestamp(),
        }
    }
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: &'a str,
    direction: Direction,
    sent_at: shared::timestamp::Timestamp,
    kind: &'a str,
    content: &'a Value,
    expires_at: shared::timestamp::Timestamp,
}

/// The admin API from its resources: the stores, the ingest queue (replays of held envelopes),
/// the opt-out queue (operator decisions) and the subject-key secret.
pub async fn build(r: &impl Resources) -> Result<Admin, WiringError> {
    let secret = r.secrets()?.fetch().await?.subject_key_secret()?;
    let (ingest, optout) = (r.queue(QueueKind::Ingest)?, r.queue(QueueKind::OptOut)?);
    Ok(Admin::new(r.stores(), ingest, optout, r.clock(), secret))
}

impl Admin {
    pub fn new(
        stores: Stores,
        ingest: Arc<dyn Queue>,
        optout: Arc<dyn Queue>,
        clock: SharedClock,
        secret: SubjectKeySecret,
    ) -> Self {
        Self {
            sealer: Sealer::new(&secret),
            stores,
            ingest,
            optout,
            clock,
            secret,
        }
    }

    pub async fn handle(&self, req: &Request) -> Response {
        let Some(caller) = principal(req) else {
            return apigw::error(401, "an authenticated principal is required");
        };
        let Ok(caller) = PrincipalId::new(caller) else {
            return apigw::error(401, "the authenticated principal is not a valid id");
        };
        let path = apigw::path(req).to_owned();
        // Decoded exactly once: `%2F` becomes a `/` inside one segment, never a separator, and
        // `%252F` stays `%2F`; neither names a tenant, so neither reaches one.
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let matched = match routes::select(&apigw::method(req), &segments) {
            routes::Selected::Route(m) => m,
            routes::Selected::WrongMethod(r) if r.id == RouteId::Contactability => {
                return apigw::error(
                    405,
                    "POST the query as a JSON body: an identifier in a URL ends up in access logs",
                );
            }
            routes::Selected::WrongMethod(r) => {
                return apigw::error(405, format!("{} takes {}", r.pattern, r.method));
            }
            routes::Selected::NoRoute if segments.first() == Some(&"admin") => {
                return apigw::error(404, "no such admin route");
            }
            routes::Selected::NoRoute => return apigw::error(404, "no such route"),
        };
        let ctx = match self.admit(req, caller, &matched).await {
            Ok(ctx) => ctx,
            Err(r) => return r,
        };
        match ctx.route.id {
            RouteId::RegisterTenant => self.register(req, &ctx).await,
            RouteId::Contacts => self.contacts(req, &ctx, matched.param("tenant")).await,
            RouteId::Messages => {
                self.messages(req, &ctx, matched.param("tenant"), matched.param("contact"))
                    .await
            }
            RouteId::Events => self.events(req, &ctx, matched.param("tenant")).await,
            RouteId::Contactability => self.contactability(req, &ctx).await,
            RouteId::OptOutReviews => self.reviews(req, &ctx, matched.param("tenant")).await,
            RouteId::DecideOptOutReview => {
                self.decide(req, &ctx, matched.param("tenant"), matched.param("id"))
                    .await
            }
            RouteId::ListPrincipals => self.list_principals(req, &ctx).await,
            RouteId::GrantPrincipal => self.grant(req, &ctx).await,
            RouteId::AuditTrail => self.audit_trail(req, &ctx).await,
            RouteId::VerifyAudit => self.verify_audit(req, &ctx).await,
            RouteId::Compliance => self.compliance(req, &ctx).await,
            RouteId::Offboard => self.offboard(req, &ctx, matched.param("tenant")).await,
        }
    }

    /// The access check every route goes through, from the route table: the caller's grant, the
    /// tenant the request names, and the permission the route needs. A refusal is audited (no
    /// payload) before the 403; no audit, no answer.
    async fn admit(&self, req: &Request, caller: PrincipalId, m: &routes::Matched<'_>) -> Result<Ctx, Response> {
        if let Some(reason) = apigw::header(req, "x-audit-reason")
            && access::may_identify(reason)
        {
            return Err(bad_request(
                "x-audit-reason",
                "must not hold an e-mail address or a phone number: give a ticket or case reference",
            )
            .into());
        }
        let named: Option<String> = match m.route.tenant {
            TenantFrom::Path => Some(m.param("tenant").to_owned()),
            TenantFrom::Query => apigw::query(req, "tenant").map(str::to_owned),
            TenantFrom::Body(field) => body_field(req, field),
            TenantFrom::NoTenant => None,
        };
        let grant = self.grant_of(&caller).await.map_err(Response::from)?;
        let tenant = named.as_deref().and_then(|t| TenantId::new(t).ok());
        // A caller without the role is refused whatever the body says; one with it but a body
        // naming no tenant gets the 400 that says so, not a refusal it could not act on.
        let role = access::authorize(grant.as_ref(), m.route.permission, None);
        let checked = match (m.route.tenant, &named) {
            (_, _) if matches!(role, Err(access::Denial::NoGrant | access::Denial::MissingRole(_))) => role,
            (TenantFrom::Body(field), None) => {
                return Err(bad_request(field, "required: the tenant this request acts on").into());
            }
            // A name that is no tenant id reaches no tenant: only a role over every tenant passes
            // (and the route then answers 400 for the name).
            _ => access::authorize(grant.as_ref(), m.route.permission, tenant.as_ref()),
        };
        let ctx = Ctx {
            actor: caller.to_string(),
            route: m.route,
        };
        let Err(denial) = checked else {
            return Ok(ctx);
        };
        // A denied attempt on a registered tenant by a principal holding some role is in that
        // tenant's trail. Otherwise it is the platform's: an unknown name creates no chain, and a
        // caller with no grant at all cannot crowd a tenant's chain. There it names the tenant
        // asked for, when the name is a tenant id (anything else could be any text).
        let registered = match (&tenant, &denial) {
            (_, access::Denial::NoGrant) | (None, _) => None,
            (Some(t), _) => match self.stores.tenants.get(t).await {
                Ok(found) => found.map(|_| t.clone()),
                Err(e) => return Err(store_error(e).into()),
            },
        };
        let (chain, asked) = match registered {
            Some(t) => (AuditChain::Tenant(t), None),
            None => (AuditChain::Platform, tenant.as_ref().map(|t| format!("tenant {t}"))),
        };
        let reason = denial.to_string();
        let target = AuditTarget::Denied {
            reason: reason.clone(),
            asked,
        };
        self.audit(chain, &ctx, req, target).await.map_err(Response::from)?;
        tracing::warn!(route = %m.route.name(), reason = %reason, "admin request denied");
        Err(apigw::error(403, reason))
    }

    /// The caller's grant: under its own id, or (a role session) its role's.
    async fn grant_of(&self, caller: &PrincipalId) -> Result<Option<Principal>, AdminError> {
        self.stores.principals.get(&caller.grant_key()).await.map_err(|e| {
            tracing::error!(error = %e.log_safe(), "principal lookup failed");
            AdminError::Unavailable("access check temporarily unavailable")
        })
    }

    async fn register(&self, req: &Request, ctx: &Ctx) -> Response {
        let Some(body) = apigw::json_object(req) else {
            return apigw::error(400, "body must be a JSON object");
        };
        let tenant = match parse_tenant(body, self.clock.now()) {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let existed = match self.stores.tenants.get(&tenant.id).await {
            Ok(t) => t,
            Err(e) => return store_error(e).into(),
        };
        if existed.as_ref().is_some_and(|t| t.offboarding.is_some()) {
            return apigw::error(409, "the tenant is offboarded; its id cannot be registered again");
        }
        let now = self.clock.now();
        // A shorter retention applies to what is already stored: the sweep needs to know since when.
        let retention_lowered_at = match &existed {
            Some(old) if tenant.retention_months < old.retention_months => Some(now),
            Some(old) => old.retention_lowered_at,
            None => None,
        };
        let tenant = Tenant {
            created_at: existed.as_ref().map_or(tenant.created_at, |t| t.created_at),
            retention_lowered_at,
            ..tenant
        };
        // Audited before the write: registering replays held envelopes (personal data) into it.
        let target = AuditTarget::Registration { new: existed.is_none() };
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, target).await {
            return r.into();
        }
        match self.stores.tenants.register(&tenant).await {
            Ok(()) => {}
            Err(StoreError::AccountTaken { channel, account_id }) => {
                return apigw::error(
                    409,
                    format!("{channel} account {account_id} already belongs to another tenant"),
                );
            }
            Err(e) => return store_error(e).into(),
        }
        let replayed = match self.replay_unrouted(&tenant).await {
            Ok(n) => n,
            Err(r) => return r.into(),
        };
        tracing::info!(tenant = %tenant.id, accounts = tenant.accounts.len(), replayed, "tenant registered");
        let mut view = serde_json::to_value(&tenant).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut view {
            m.insert("replayed_envelopes".to_owned(), Value::from(replayed));
        }
        apigw::json(if existed.is_some() { 200 } else { 201 }, &view)
    }

    /// Envelopes that arrived before their account was registered go back on the ingest queue.
    async fn replay_unrouted(&self, tenant: &Tenant) -> Result<usize, AdminError> {
        let mut replayed = 0;
        for account in &tenant.accounts {
            let bucket = QuarantineBucket::Unrouted {
                account: account.clone(),
            };
            loop {
                let page = self
                    .stores
                    .quarantine
                    .list(&bucket, &PageRequest::first(10))
                    .await
                    .map_err(store_error)?;
                if page.items.is_empty() {
                    break;
                }
                // Held envelopes may predate the escaping of characters SQS refuses.
                let bodies: Vec<String> = page
                    .items
                    .iter()
                    .map(|e| shared::queue::escape_for_sqs(e.envelope.clone()))
                    .collect();
                self.ingest.send_batch(&bodies).await.map_err(|e| {
                    tracing::error!(error = %e, "ingest queue refused replayed envelopes");
                    AdminError::Unavailable("ingest queue temporarily unavailable; register again to replay")
                })?;
                for e in &page.items {
                    self.stores.quarantine.delete(e).await.map_err(store_error)?;
                }
                replayed += page.items.len();
            }
        }
        Ok(replayed)
    }

    async fn tenant(&self, tenant: &str) -> Result<Tenant, AdminError> {
        let id = TenantId::new(tenant).map_err(|e| bad_request("tenant", e))?;
        match self.stores.tenants.get(&id).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(AdminError::NotFound("no such tenant")),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Records who reads what, and why, before the read: no audit, no read.
    pub(crate) async fn audit(
        &self,
        chain: AuditChain,
        ctx: &Ctx,
        req: &Request,
        target: AuditTarget,
    ) -> Result<(), AdminError> {
        let mut detail = None;
        let (action, contact, subject_key, default_reason) = match target {
            AuditTarget::Contacts => (AuditAction::Read, None, None, "admin read".to_owned()),
            AuditTarget::Contact(handle) => (AuditAction::Read, Some(handle), None, "admin read".to_owned()),
            AuditTarget::Subject(k) => (AuditAction::Lookup, None, Some(k), "contactability check".to_owned()),
            AuditTarget::OptOutReviews => (AuditAction::Read, None, None, "opt-out review".to_owned()),
            AuditTarget::Events => (AuditAction::Read, None, None, "admin read: tenant events".to_owned()),
            AuditTarget::Registration { new: true } => {
                (AuditAction::Change, None, None, "tenant registered".to_owned())
            }
            AuditTarget::Registration { new: false } => (AuditAction::Change, None, None, "tenant updated".to_owned()),
            AuditTarget::Decision {
                handle,
                subject,
                reason,
            } => (AuditAction::Change, handle, subject, reason.to_owned()),
            // The refusal's own reason: a caller's header cannot restate why it was refused.
            AuditTarget::Denied { reason, asked } => {
                detail = asked;
                (AuditAction::Denied, None, None, reason)
            }
            AuditTarget::Principals => (AuditAction::Read, None, None, "principals listed".to_owned()),
            AuditTarget::Grant { detail: d } => {
                detail = Some(d);
                (AuditAction::Change, None, None, "principal grant changed".to_owned())
            }
            AuditTarget::Trail { verify: false } => (AuditAction::Read, None, None, "audit trail read".to_owned()),
            AuditTarget::Trail { verify: true } => (AuditAction::Read, None, None, "audit trail verified".to_owned()),
            AuditTarget::Compliance => (AuditAction::Read, None, None, "compliance report read".to_owned()),
            AuditTarget::Offboarding => (AuditAction::Change, None, None, "tenant offboarded".to_owned()),
        };
        let reason = match (action, apigw::header(req, "x-audit-reason")) {
            (AuditAction::Denied, _) | (_, None) => default_reason,
            (_, Some(given)) => given.to_owned(),
        };
        let now = self.clock.now();
        let event = AuditEvent {
            id: uuid::Uuid::new_v4(),
            chain,
            at: now,
            actor: ctx.actor.clone(),
            action,
            route: ctx.route.name(),
            contact,
            subject_key,
            detail,
            reason: reason.chars().take(200).collect(),
            expires_at: audit_expiry(now, DEFAULT_AUDIT_RETENTION_MONTHS),
        };
        self.stores.audit.append(&event).await.map(|_| ()).map_err(store_error)
    }

    /// `audit` on the tenant's own chain.
    pub(crate) async fn audit_tenant(
        &self,
        tenant: &Tenant,
        ctx: &Ctx,
        req: &Request,
        target: AuditTarget,
    ) -> Result<(), AdminError> {
        self.audit(AuditChain::Tenant(tenant.id.clone()), ctx, req, target)
            .await
    }

    /// Marks the tenant terminated and releases its accounts; the cleanup erases its
    /// conversations after the notice period (`{"notice_days"?: 0-90}`, default 30).
    async fn offboard(&self, req: &Request, ctx: &Ctx, tenant: &str) -> Response {
        let mut tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let body = match apigw::json_object(req) {
            Some(b) => b,
            None if apigw::body_len(req) == 0 => Map::new(),
            None => return apigw::error(400, "body must be a JSON object (or empty)"),
        };
        let notice = match body.get("notice_days") {
            None | Some(Value::Null) => DEFAULT_OFFBOARDING_NOTICE_DAYS,
            Some(v) => match v.as_i64().filter(|d| (0..=MAX_OFFBOARDING_NOTICE_DAYS).contains(d)) {
                Some(d) => d,
                None => {
                    return bad_request(
                        "notice_days",
                        format!("must be a whole number of days from 0 to {MAX_OFFBOARDING_NOTICE_DAYS}"),
                    )
                    .into();
                }
            },
        };
        if let Some(field) = body.keys().find(|k| *k != "notice_days") {
            return bad_request(field, "unknown field").into();
        }
        if tenant.offboarding.is_some() {
            return AdminError::Conflict("the tenant is already offboarded".to_owned()).into();
        }
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, AuditTarget::Offboarding).await {
            return r.into();
        }
        let now = self.clock.now();
        tenant.offboarding = Some(Offboarding {
            terminated_at: now,
            erase_after: now.plus(time::Duration::days(notice)),
            by: ctx.actor.clone(),
            request: None,
        });
        let released = std::mem::take(&mut tenant.accounts).len();
        if let Err(e) = self.stores.tenants.register(&tenant).await {
            return store_error(e).into();
        }
        tracing::info!(tenant = %tenant.id, released, notice_days = notice, "tenant offboarded");
        apigw::json(200, &tenant)
    }

    /// The compliance report, computed now from the stores (`shared::compliance`).
    async fn compliance(&self, req: &Request, ctx: &Ctx) -> Response {
        if let Err(r) = self
            .audit(AuditChain::Platform, ctx, req, AuditTarget::Compliance)
            .await
        {
            return r.into();
        }
        match shared::compliance::report(&self.stores, self.clock.now()).await {
            Ok(report) => apigw::json(200, &report),
            Err(e) => store_error(e).into(),
        }
    }

    async fn contacts(&self, req: &Request, ctx: &Ctx, tenant: &str) -> Response {
        let tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let scope = CursorScope::Contacts(&tenant.id);
        let page = match self.page_request(req, scope) {
            Ok(p) => p,
            Err(r) => return r.into(),
        };
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, AuditTarget::Contacts).await {
            return r.into();
        }
        match self.stores.conversations.list_contacts(&tenant.id, &page).await {
            Ok(p) => {
                let now = self.clock.now();
                // `last_seen` moves once a day at most: a contact is hidden a day after it.
                let contacts: Vec<ContactView<'_>> = p
                    .items
                    .iter()
                    .filter(|c| tenant.retains(c.last_seen.plus(CONTACT_EXPIRY_STEP), now))
                    .map(|c| ContactView::new(c, self.sealer.contact_handle(&tenant.id, &c.contact)))
                    .collect();
                apigw::json(
                    200,
                    &serde_json::json!({ "contacts": contacts, "next_cursor": self.next_cursor(scope, p.next.as_ref()) }),
                )
            }
            Err(e) => store_error(e).into(),
        }
    }

    async fn messages(&self, req: &Request, ctx: &Ctx, tenant: &str, handle: &str) -> Response {
        let tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        // A handle that does not open for this tenant names no contact of it: 404, whether it is
        // altered, another tenant's, or the old `<channel>:<id>` form.
        let Ok((handle, contact)) = self.sealer.open_contact_handle(&tenant.id, handle) else {
            return AdminError::NotFound("no such contact").into();
        };
        let scope = CursorScope::Messages(&tenant.id, &handle);
        let page = match self.page_request(req, scope) {
            Ok(p) => p,
            Err(r) => return r.into(),
        };
        if let Err(r) = self
            .audit_tenant(&tenant, ctx, req, AuditTarget::Contact(handle.clone()))
            .await
        {
            return r.into();
        }
        match self
            .stores
            .conversations
            .list_messages(&tenant.id, &contact, &page)
            .await
        {
            Ok(p) => {
                let now = self.clock.now();
                let messages: Vec<MessageView<'_>> = p
                    .items
                    .iter()
                    .filter(|m| tenant.retains(m.sent_at, now))
                    .map(|m| MessageView {
                        id: m.id.as_str(),
                        direction: m.direction,
                        sent_at: m.sent_at,
                        kind: &m.kind,
                        content: &m.content,
                        expires_at: m.expires_at.as_timestamp(),
                    })
                    .collect();
                apigw::json(
                    200,
                    &serde_json::json!({ "messages": messages, "next_cursor": self.next_cursor(scope, p.next.as_ref()) }),
                )
            }
            Err(e) => store_error(e).into(),
        }
    }

    /// `POST {"tenant", "channel", "id", "purpose"?}`: may this person be contacted? A body, not
    /// a query string: the identifier is a phone number or username.
    async fn contactability(&self, req: &Request, ctx: &Ctx) -> Response {
        let q = match apigw::body_bytes(req).map(|b| serde_json::from_slice::<ContactabilityQuery>(&b)) {
            Ok(Ok(q)) => q,
            // Not the parser's message: it quotes the value, which may be the phone asked about.
            Ok(Err(e)) => {
                let at = format!("line {}, column {}", e.line(), e.column());
                return bad_request("body", format!("{CONTACTABILITY_SHAPE} (at {at})")).into();
            }
            Err(e) => return bad_request("body", e).into(),
        };
        let tenant = match self.tenant(&q.tenant).await {
            Ok(t) => t,
            Err(e) => return e.into(),
        };
        let channel = match q.channel.as_str() {
            "whatsapp" => Channel::WhatsApp,
            "instagram" => Channel::Instagram,
            _ => return bad_request("channel", "must be whatsapp or instagram").into(),
        };
        let purpose = match q.purpose.as_deref() {
            None | Some("service") => Purpose::Service,
            Some("marketing") => Purpose::Marketing,
            Some(_) => return bad_request("purpose", "must be service or marketing").into(),
        };
        let id = q.id.as_str();
        let asked = match contactability::asked(&self.secret, channel, id) {
            Ok(a) => a,
            Err(e) => return bad_request("id", e).into(),
        };
        if let Err(e) = self
            .audit_tenant(&tenant, ctx, req, AuditTarget::Subject(asked.keys[0].clone()))
            .await
        {
            return e.into();
        }
        let (opt_outs, conversations) = (self.stores.opt_outs.as_ref(), self.stores.conversations.as_ref());
        match contactability::check_asked(opt_outs, conversations, &tenant.id, &asked, purpose).await {
            Ok(c) => apigw::json(200, &c),
            Err(ContactabilityError::Identifier(e)) => bad_request("id", e).into(),
            Err(ContactabilityError::Store(e)) => store_error(e).into(),
        }
    }

    async fn events(&self, req: &Request, ctx: &Ctx, tenant: &str) -> Response {
        let tenant = match self.tenant(tenant).await {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let scope = CursorScope::Events(&tenant.id);
        let page = match self.page_request(req, scope) {
            Ok(p) => p,
            Err(r) => return r.into(),
        };
        if let Err(r) = self.audit_tenant(&tenant, ctx, req, AuditTarget::Events).await {
            return r.into();
        }
        match self.stores.tenants.list_events(&tenant.id, &page).await {
            Ok(p) => apigw::json(
                200,
                &serde_json::json!({ "events": p.items, "next_cursor": self.next_cursor(scope, p.next.as_ref()) }),
            ),
            Err(e) => store_error(e).into(),
        }
    }

    /// `?limit=` and `?cursor=`; the cursor must have been issued for this very query.
    fn page_request(&self, req: &Request, scope: CursorScope<'_>) -> Result<PageRequest, AdminError> {
        let limit = match apigw::query(req, "limit") {
            None => DEFAULT_PAGE_SIZE,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=shared::store::MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(bad_request(
                        "limit",
                        format!("must be 1 to {}", shared::store::MAX_PAGE_SIZE),
                    ));
                }
            },
        };
        let cursor = match apigw::query(req, "cursor") {
            None => None,
            Some(token) => Some(
                self.sealer
                    .open_cursor(scope, token)
                    .map_err(|e| bad_request("cursor", e))?,
            ),
        };
        Ok(PageRequest { limit, cursor })
    }

    /// The store's cursor sealed for the query it continues: it wraps DynamoDB keys.
    fn next_cursor(&self, scope: CursorScope<'_>, next: Option<&Cursor>) -> Option<String> {
        next.map(|c| self.sealer.seal_cursor(scope, c))
    }
}

const TENANT_FIELDS: &[&str] = &[
    "tenant_id",
    "name",
    "whatsapp_phone_number_ids",
    "whatsapp_business_account_ids",
    "instagram_account_ids",
    "retention_months",
    "locale",
    "jurisdiction",
    "optout_keywords",
    "optout_button_ids",
    "access_token_secret",
];

/// Validates a registration body field by field, so the 400 names the field at fault.
fn parse_tenant(mut body: Map<String, Value>, now: shared::timestamp::Timestamp) -> Result<Tenant, AdminError> {
    if let Some(unknown) = body.keys().find(|k| !TENANT_FIELDS.contains(&k.as_str())) {
        return Err(bad_request(unknown, "unknown field"));
    }
    let id = match body.remove("tenant_id") {
        Some(Value::String(s)) => TenantId::new(s).map_err(|e| bad_request("tenant_id", e))?,
        _ => return Err(bad_request("tenant_id", "required string")),
    };
    let name = match body.remove("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_owned(),
        _ => return Err(bad_request("name", "required, 1-200 characters")),
    };
    let mut accounts = Vec::new();
    for (field, channel) in [
        ("whatsapp_phone_number_ids", Channel::WhatsApp),
        ("whatsapp_business_account_ids", Channel::WhatsApp),
        ("instagram_account_ids", Channel::Instagram),
    ] {
        let list = match body.remove(field) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(bad_request(field, "must be a list of id strings")),
        };
        for item in list {
            let Value::String(s) = item else {
                return Err(bad_request(field, "must be a list of id strings"));
            };
            let account = ChannelAccount::new(channel, s).map_err(|e| bad_request(field, e))?;
            if accounts.contains(&account) {
                return Err(bad_request(field, "an id is listed twice"));
            }
            accounts.push(account);
        }
    }
    if accounts.len() > MAX_ACCOUNTS {
        return Err(bad_request(
            "accounts",
            format!("at most {MAX_ACCOUNTS} accounts per tenant"),
        ));
    }
    let retention_months = match body.remove("retention_months") {
        None | Some(Value::Null) => RetentionMonths::MAX,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .and_then(|v| RetentionMonths::new(v).ok())
            .ok_or_else(|| bad_request("retention_months", "must be a whole number from 1 to 24"))?,
        Some(_) => return Err(bad_request("retention_months", "must be a whole number from 1 to 24")),
    };
    let locale = match body.remove("locale") {
        None | Some(Value::Null) => Locale::default(),
        Some(v) => serde_json::from_value(v).map_err(|_| bad_request("locale", "must be es, en or pt"))?,
    };
    let jurisdiction = match body.remove("jurisdiction") {
        None | Some(Value::Null) => Jurisdiction::default(),
        Some(v) => {
            serde_json::from_value(v).map_err(|_| bad_request("jurisdiction", "must be ar, eu, br, mx or other"))?
        }
    };
    let optout_keywords = string_list(&mut body, "optout_keywords")?;
    let optout_button_ids = string_list(&mut body, "optout_button_ids")?;
    let access_token_secret = match body.remove("access_token_secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if shared::meta::send::valid_token_secret(&id, &name) => Some(name),
        Some(_) => {
            return Err(bad_request(
                "access_token_secret",
                format!(
                    "must be the name of the tenant's own secret, ending in {}",
                    shared::meta::send::token_secret_suffix(&id)
                ),
            ));
        }
    };
    Ok(Tenant {
        id,
        name,
        accounts,
        retention_months,
        locale,
        jurisdiction,
        created_at: now,
        optout_keywords,
        optout_button_ids,
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret,
    })
}

/// An optional list of short strings (keywords, button ids).
fn string_list(body: &mut Map<String, Value>, field: &str) -> Result<Vec<String>, AdminError> {
    let items = match body.remove(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad_request(field, "must be a list of strings")),
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) if !s.trim().is_empty() && s.len() <= 64 => Ok(s.trim().to_owned()),
            _ => Err(bad_request(field, "must be a list of strings of 1-64 characters")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Tenant, String> {
        let Value::Object(m) = v else { unreachable!("object") };
        parse_tenant(m, shared::timestamp::Timestamp::from_unix_seconds(0)).map_err(|e| e.to_string())
    }

    #[test]
    fn registration_errors_name_the_field() {
        let ok = serde_json::json!({"tenant_id": "acme", "name": "Acme", "whatsapp_phone_number_ids": ["1"], "retention_months": 12, "locale": "pt"});
        let t = parse(ok.clone()).expect("valid");
        assert_eq!((t.retention_months.months(), t.locale), (12, Locale::Portuguese));
        let cases = [
            ("tenant_id", serde_json::json!({"name": "Acme"})),
            ("tenant_id", serde_json::json!({"tenant_id": "A#B", "name": "Acme"})),
            ("name", serde_json::json!({"tenant_id": "acme", "name": ""})),
            (
                "whatsapp_phone_number_ids",
                serde_json::json!({"tenant_id": "acme", "name": "A", "whatsapp_phone_number_ids": "1"}),
            ),
            (
                "instagram_account_ids",
                serde_json::json!({"tenant_id": "acme", "name": "A", "instagram_account_ids": ["ig-1"]}),
            ),
            (
                "retention_months",
                serde_json::json!({"tenant_id": "acme", "name": "A", "retention_months": 36}),
            ),
            (
                "locale",
                serde_json::json!({"tenant_id": "acme", "name": "A", "locale": "fr"}),
            ),
            (
                "colour",
                serde_json::json!({"tenant_id": "acme", "name": "A", "colour": "red"}),
            ),
        ];
        for (field, body) in cases {
            let err = parse(body).expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
