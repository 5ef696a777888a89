//! The deletion function: data-subject requests (policy §7, DESIGN flow 3). Two entry points
//! share this crate: `deletion` serves HTTP (the privacy officers' `/admin/privacy-requests`
//! routes behind IAM, Meta's data-deletion callback and the public status page) and `erasure`
//! consumes the erasure queue.
//!
//! A request holds subject keys only, never what the person gave; its id is a digest of its
//! confirmation code, which is the person's only handle on it.

pub mod callback;
pub mod erasure;
pub mod export;
pub mod intake;
pub mod status_page;

use serde::Serialize;
use shared::access::{self, Permission, PrincipalId};
use shared::apigw::{self, Request, Response};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::{
    AuditAction, AuditChain, AuditEvent, ConfirmationCode, Created, PrivacyRequest, RequestId, RequestStatus,
    TimelineEntry,
};
use shared::identity::SubjectKeySecret;
use shared::meta::signature::AppSecret;
use shared::queue::Queue;
use shared::retention::{DEFAULT_AUDIT_RETENTION_MONTHS, audit_expiry};
use shared::store::{PageRequest, StoreError, Stores};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

/// Where the status page is served; `status_url` is this under the caller's host.
pub const STATUS_PAGE_PREFIX: &str = "/privacy/requests/";
pub const CALLBACK_ROUTE: &str = "/meta/data-deletion";
pub const ADMIN_PREFIX: &str = "/admin/privacy-requests";

/// Why a request failed; turned into a status and a short, safe message at the edge.
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<DeletionError> for Response {
    fn from(e: DeletionError) -> Response {
        let status = match &e {
            DeletionError::BadRequest { .. } => 400,
            DeletionError::NotFound(_) => 404,
            DeletionError::Conflict(_) => 409,
            DeletionError::Unavailable(_) => 503,
        };
        apigw::error(status, e)
    }
}

pub(crate) fn bad_request(field: &str, reason: impl std::fmt::Display) -> DeletionError {
    DeletionError::BadRequest {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

pub(crate) fn store_error(e: StoreError) -> DeletionError {
    match e {
        StoreError::BadCursor | StoreError::BadPageSize => bad_request("cursor", e),
        StoreError::Conflict => DeletionError::Conflict("the request changed meanwhile: read it again".to_owned()),
        other => {
            tracing::error!(error = %other.log_safe(), "privacy request failed in the store");
            DeletionError::Unavailable("storage temporarily unavailable")
        }
    }
}

pub use shared::domain::ErasureJob;

/// The contacts the request's subject keys reach, within its tenant scope, each once.
pub(crate) async fn contacts_in_scope(
    conversations: &dyn shared::store::ConversationStore,
    r: &PrivacyRequest,
) -> Result<std::collections::BTreeSet<shared::domain::ContactRef>, StoreError> {
    let mut found = std::collections::BTreeSet::new();
    for key in r.subject_keys() {
        for c in conversations.find_subject(key).await? {
            if r.tenant.as_ref().is_none_or(|t| *t == c.tenant) {
                found.insert(c);
            }
        }
    }
    Ok(found)
}

#[derive(Debug)]
pub struct Deletion {
    stores: Stores,
    erasure: Arc<dyn Queue>,
    /// Objections become opt-outs through the opt-out function, as a STOP would.
    optout: Arc<dyn Queue>,
    clock: SharedClock,
    secret: SubjectKeySecret,
    app_secrets: Vec<AppSecret>,
    /// Keys the codes of Meta's callbacks: the same signed request always gets the same code.
    code_key: [u8; 32],
    /// Names rectified contacts in their tenant's audit chain without their ids.
    sealer: shared::seal::Sealer,
}

/// The HTTP handler from its resources: the stores, the erasure queue, the subject-key secret
/// and the Meta app secrets (the callback is signed with one).
pub async fn build(r: &impl Resources) -> Result<Deletion, WiringError> {
    let secrets = r.secrets()?.fetch().await?;
    Ok(Deletion::new(
        r.stores(),
        r.queue(QueueKind::Erasure)?,
        r.queue(QueueKind::OptOut)?,
        r.clock(),
        secrets.subject_key_secret()?,
        secrets.app_secrets()?,
    ))
}

/// The request as an operator sees it: everything but the subjects' keys, which say nothing to a
/// person and are the join key to every index.
#[derive(Serialize)]
struct RequestView<'a> {
    id: RequestId,
    confirmation_code: &'a str,
    kind: shared::deadline::RequestKind,
    status: RequestStatus,
    source: shared::domain::RequestSource,
    jurisdiction: shared::deadline::Jurisdiction,
    tenant: Option<&'a str>,
    identifiers: Vec<shared::identity::IdentifierKind>,
    /// The fields a rectification sets, without their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rectifies: Vec<&'static str>,
    note: Option<&'a str>,
    received_at: Timestamp,
    due_at: Timestamp,
    /// Whole days until `due_at`, rounded down; negative once it has passed.
    days_left: i64,
    closed_at: Option<Timestamp>,
    status_url: String,
    timeline: &'a [TimelineEntry],
    progress: &'a shared::domain::ErasureProgress,
    receipt: Option<&'a shared::domain::Receipt>,
}

/// `https://host` of the request, as the person will reach the status page.
fn base_url(req: &Request) -> String {
    let host = apigw::header(req, "host")
        .or(req.request_context.domain_name.as_deref())
        .unwrap_or("localhost");
    let scheme = apigw::header(req, "x-forwarded-proto").unwrap_or(
        if host.starts_with("127.") || host.starts_with("localhost") {
            "http"
        } else {
            "https"
        },
    );
    format!("{scheme}://{host}")
}

pub fn status_url(req: &Request, code: &ConfirmationCode) -> String {
    format!("{}{STATUS_PAGE_PREFIX}{}", base_url(req), code.as_str())
}

pub fn days_left(due_at: Timestamp, now: Timestamp) -> i64 {
    (due_at.unix_millis() - now.unix_millis()).div_euclid(86_400_000)
}

impl Deletion {
    pub fn new(
        stores: Stores,
        erasure: Arc<dyn Queue>,
        optout: Arc<dyn Queue>,
        clock: SharedClock,
        secret: SubjectKeySecret,
        app_secrets: Vec<AppSecret>,
    ) -> Self {
        Self {
            code_key: secret.derive_key(b"meta-callback-confirmation-code"),
            sealer: shared::seal::Sealer::new(&secret),
            stores,
            erasure,
            optout,
            clock,
            secret,
            app_secrets,
        }
    }

    pub async fn handle(&self, req: &Request) -> Response {
        let path = apigw::path(req).to_owned();
        let method = apigw::method(req);
        if path == CALLBACK_ROUTE {
            return if method == http::Method::POST {
                self.meta_callback(req).await
            } else {
                apigw::error(405, format!("{CALLBACK_ROUTE} takes POST"))
            };
        }
        if let Some(code) = path.strip_prefix(STATUS_PAGE_PREFIX) {
            return if method == http::Method::GET {
                self.status_page(req, code).await
            } else {
                apigw::error(405, "the status page takes GET")
            };
        }
        let Some(rest) = path.strip_prefix(ADMIN_PREFIX) else {
            return apigw::error(404, "no such route");
        };
        let segments: Vec<&str> = rest.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let route = match (&method, segments.as_slice()) {
            (&http::Method::POST, []) => "POST /admin/privacy-requests",
            (&http::Method::POST, ["replay"]) => "POST /admin/privacy-requests/replay",
            (&http::Method::GET, []) => "GET /admin/privacy-requests",
            (&http::Method::GET, [_]) => "GET /admin/privacy-requests/{id}",
            (&http::Method::POST, [_, "decision"]) => "POST /admin/privacy-requests/{id}/decision",
            (&http::Method::GET, [_, "export"]) => "GET /admin/privacy-requests/{id}/export",
            (_, [] | [_] | [_, "decision" | "export"]) => {
                return apigw::error(405, "method not allowed on this route");
            }
            _ => return apigw::error(404, "no such admin route"),
        };
        let actor = match self.admit(req, route).await {
            Ok(a) => a,
            Err(r) => return r,
        };
        let result = match segments.as_slice() {
            [] if method == http::Method::POST => self.create(req, &actor, route).await,
            [] => self.list_open(req, &actor, route).await,
            ["replay"] if method == http::Method::POST => self.replay(req, &actor, route).await,
            [id] => self.show(req, &actor, route, id).await,
            [id, "export"] => self.export(req, &actor, route, id).await,
            [id, _] => self.decide(req, &actor, route, id).await,
            _ => Err(DeletionError::NotFound("no such admin route")),
        };
        result.unwrap_or_else(Response::from)
    }

    /// The access check of the admin routes: an IAM principal holding `privacy_officer`. A
    /// refusal is audited (no payload) in the platform chain before the 403: requests may span
    /// tenants, so no tenant's chain is theirs.
    async fn admit(&self, req: &Request, route: &'static str) -> Result<String, Response> {
        let Some(caller) = apigw::iam_principal(req) else {
            return Err(apigw::error(401, "an authenticated principal is required"));
        };
        let Ok(caller) = PrincipalId::new(caller) else {
            return Err(apigw::error(401, "the authenticated principal is not a valid id"));
        };
        if apigw::header(req, "x-audit-reason").is_some_and(access::may_identify) {
            return Err(bad_request(
                "x-audit-reason",
                "must not hold an e-mail address or a phone number: give a ticket or case reference",
            )
            .into());
        }
        let grant = self.stores.principals.get(&caller.grant_key()).await.map_err(|e| {
            tracing::error!(error = %e.log_safe(), "principal lookup failed");
            Response::from(DeletionError::Unavailable("access check temporarily unavailable"))
        })?;
        let actor = caller.to_string();
        match access::authorize(grant.as_ref(), Permission::HandlePrivacyRequests, None) {
            Ok(()) => Ok(actor),
            Err(denial) => {
                let reason = denial.to_string();
                self.audit(&actor, route, AuditAction::Denied, None, &reason, None)
                    .await
                    .map_err(Response::from)?;
                tracing::warn!(route, reason = %reason, "privacy request route denied");
                Err(apigw::error(403, reason))
            }
        }
    }

    /// Records who did what to which request, before it is done: no audit, no answer.
    pub(crate) async fn audit(
        &self,
        actor: &str,
        route: &str,
        action: AuditAction,
        request: Option<RequestId>,
        default_reason: &str,
        req: Option<&Request>,
    ) -> Result<(), DeletionError> {
        let detail = request.map(|id| format!("privacy request {id}"));
        self.audit_in(
            AuditChain::Platform,
            None,
            actor,
            route,
            action,
            detail,
            default_reason,
            req,
        )
        .await
    }

    /// An audit event in any chain: a change to one contact goes to its tenant's.
    #[allow(clippy::too_many_arguments)]
    async fn audit_in(
        &self,
        chain: AuditChain,
        contact: Option<shared::seal::ContactHandle>,
        actor: &str,
        route: &str,
        action: AuditAction,
        detail: Option<String>,
        default_reason: &str,
        req: Option<&Request>,
    ) -> Result<(), DeletionError> {
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
        self.stores.audit.append(&event).await.map(|_| ()).map_err(store_error)
    }

    fn view<'a>(&self, req: &Request, r: &'a PrivacyRequest) -> RequestView<'a> {
        RequestView {
            id: r.id,
            confirmation_code: r.code.as_str(),
            kind: r.kind,
            status: r.status,
            source: r.source,
            jurisdiction: r.jurisdiction,
            tenant: r.tenant.as_ref().map(|t| t.as_str()),
            identifiers: r.subjects.iter().map(|s| s.kind).collect(),
            rectifies: r.rectify.iter().map(|_| "profile_name").collect(),
            note: r.note.as_deref(),
            received_at: r.received_at,
            due_at: r.due_at,
            days_left: days_left(r.due_at, self.clock.now()),
            closed_at: r.closed_at,
            status_url: status_url(req, &r.code),
            timeline: &r.timeline,
            progress: &r.progress,
            receipt: r.receipt.as_ref(),
        }
    }

    async fn create(&self, req: &Request, actor: &str, route: &'static str) -> Result<Response, DeletionError> {
        let body = apigw::json_object(req).ok_or_else(|| bad_request("body", "must be a JSON object"))?;
        let now = self.clock.now();
        let request = intake::parse(body, &self.secret, now, actor)?;
        if let Some(t) = &request.tenant {
            match self.stores.tenants.get(t).await.map_err(store_error)? {
                Some(_) => {}
                None => return Err(bad_request("tenant", "no such tenant")),
            }
        }
        self.audit(
            actor,
            route,
            AuditAction::Change,
            Some(request.id),
            "privacy request created",
            Some(req),
        )
        .await?;
        let rectify = request.rectify.clone();
        let (status, stored) = self.open(request).await?;
        // An open rectification of the same person with other values: decide that one first,
        // rather than drop what this one asks.
        if status == 200 && rectify.is_some() && stored.rectify != rectify {
            return Err(DeletionError::Conflict(format!(
                "an open rectification of this person asks for other values ({}): decide it first",
                stored.id
            )));
        }
        tracing::info!(request = %stored.id, kind = stored.kind.as_str(), status = stored.status.as_str(), "privacy request received");
        Ok(apigw::json(status, &self.view(req, &stored)))
    }

    /// Stores a new request (201), or finds the open one it duplicates (200). An approved request
    /// that erases is queued for the worker, again when found: a lost send is retried this way.
    pub(crate) async fn open(&self, request: PrivacyRequest) -> Result<(u16, PrivacyRequest), DeletionError> {
        let (status, stored) = match self
            .stores
            .privacy_requests
            .create(&request)
            .await
            .map_err(store_error)?
        {
            Created::New => (201, request),
            Created::Existing(id) => match self.stores.privacy_requests.get(id).await.map_err(store_error)? {
                Some(existing) => (200, existing),
                None => {
                    return Err(DeletionError::Conflict(
                        "a matching request just closed: send again".to_owned(),
                    ));
                }
            },
        };
        if stored.status == RequestStatus::Approved && stored.erases() {
            self.enqueue(stored.id).await?;
        }
        Ok((status, stored))
    }

    /// An approved objection: an opt-out of scope `all` for every contact of the subject in the
    /// request's scope, queued for the opt-out function (which stores the suppression, tells the
    /// rest of the system and confirms to the person, as for a STOP). Without erasure the request
    /// is then complete; with it, the erasure worker completes it.
    async fn object(&self, mut r: PrivacyRequest, actor: &str) -> Result<PrivacyRequest, DeletionError> {
        let now = self.clock.now();
        let mut commands = Vec::new();
        let reached = contacts_in_scope(self.stores.conversations.as_ref(), &r)
            .await
            .map_err(store_error)?;
        for c in reached {
            let mut keys: Vec<_> = r.subject_keys().cloned().collect();
            if let Some(contact) = self
                .stores
                .conversations
                .get_contact(&c.tenant, &c.contact)
                .await
                .map_err(store_error)?
            {
                keys.extend(contact.identifiers.into_iter().map(|l| l.subject_key));
            }
            keys.sort();
            keys.dedup();
            let command = shared::optout::command::OptOutCommand {
                tenant: c.tenant.clone(),
                contact: c.contact.clone(),
                subject_keys: keys,
                action: shared::optout::command::CommandAction::OptOut,
                scope: shared::domain::OptOutScope::All,
                source: shared::domain::OptOutSource::Operator,
                event_at: now,
                order_at: now,
                only_while_opted_out: false,
                language: None,
            };
            commands.push(command);
        }
        let bodies = commands
            .iter()
            .map(shared::queue::to_body)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| DeletionError::Unavailable("the opt-out could not be encoded"))?;
        for chunk in bodies.chunks(10) {
            self.optout.send_batch(chunk).await.map_err(|e| {
                tracing::error!(error = %e, request = %r.id, "opt-out queue refused the objection");
                DeletionError::Unavailable("opt-out queue temporarily unavailable")
            })?;
        }
        r.timeline.push(TimelineEntry {
            at: now,
            event: "opted_out".to_owned(),
            by: actor.to_owned(),
            reason: Some(format!(
                "opt-out of all messages queued for {} contacts",
                commands.len()
            )),
        });
        if !r.erases() {
            r.close(RequestStatus::Completed, now, actor, None);
        }
        tracing::info!(request = %r.id, contacts = commands.len(), "objection carried out as opt-outs");
        self.stores.privacy_requests.update(&r).await.map_err(store_error)
    }

    /// An approved rectification: the new profile name on every contact of the subject in the
    /// request's scope, each change audited in its tenant's chain, and the request complete. The
    /// request then forgets the name: the contacts hold it.
    async fn rectify(
        &self,
        mut r: PrivacyRequest,
        actor: &str,
        route: &'static str,
        req: &Request,
    ) -> Result<PrivacyRequest, DeletionError> {
        let now = self.clock.now();
        let Some(rectification) = r.rectify.clone() else {
            return Err(DeletionError::Conflict(
                "the rectification holds no new values: open a new request".to_owned(),
            ));
        };
        let contacts = contacts_in_scope(self.stores.conversations.as_ref(), &r)
            .await
            .map_err(store_error)?;
        let mut rectified = 0usize;
        for c in &contacts {
            self.audit_in(
                AuditChain::Tenant(c.tenant.clone()),
                Some(self.sealer.contact_handle(&c.tenant, &c.contact)),
                actor,
                route,
                AuditAction::Change,
                Some(format!("privacy request {}: profile name rectified", r.id)),
                "profile name rectified",
                Some(req),
            )
            .await?;
            if self
                .stores
                .conversations
                .rectify_profile_name(&c.tenant, &c.contact, &rectification.profile_name, now)
                .await
                .map_err(store_error)?
            {
                rectified += 1;
            }
        }
        r.timeline.push(TimelineEntry {
            at: now,
            event: "rectified".to_owned(),
            by: actor.to_owned(),
            reason: Some(if rectified == 0 {
                "no data found: no contact of the subject in scope".to_owned()
            } else {
                format!("profile name rectified on {rectified} contacts")
            }),
        });
        r.close(RequestStatus::Completed, now, actor, None);
        tracing::info!(request = %r.id, contacts = rectified, "rectification carried out");
        self.stores.privacy_requests.update(&r).await.map_err(store_error)
    }

    /// After the conversations were restored from a backup taken at `since`, every erasure
    /// completed since then is undone: its data and its ledger entries are back. Each one is
    /// carried out again as a new approved request for the same subjects and scope (a closed
    /// request is final), which the worker erases, records in the ledger and verifies anew.
    async fn replay(&self, req: &Request, actor: &str, route: &'static str) -> Result<Response, DeletionError> {
        let body = apigw::json_object(req).ok_or_else(|| bad_request("body", "must be a JSON object"))?;
        let (since, reason) = intake::parse_replay(body, self.clock.now())?;
        self.audit(
            actor,
            route,
            AuditAction::Change,
            None,
            "erasures replayed after a restore",
            Some(req),
        )
        .await?;
        let mut replayed = Vec::new();
        let mut page = PageRequest::first(100);
        // Up to now: the replays this call opens, once the worker closes them, are not found.
        let until = self.clock.now();
        loop {
            let found = self
                .stores
                .privacy_requests
                .erasures_closed_between(since, until, &page)
                .await
                .map_err(store_error)?;
            for done in found.items.iter().filter(|r| r.replay_of.is_none()) {
                let mut again = PrivacyRequest::new(shared::domain::NewRequest {
                    kind: done.kind,
                    source: shared::domain::RequestSource::Operator,
                    jurisdiction: done.jurisdiction,
                    tenant: done.tenant.clone(),
                    subjects: done.subjects.clone(),
                    note: None,
                    erase: done.erase,
                    rectify: None,
                    code: ConfirmationCode::random(),
                    now: self.clock.now(),
                    by: actor,
                });
                again.status = RequestStatus::Approved;
                again.replay_of = Some(done.id);
                again.timeline.push(TimelineEntry {
                    at: self.clock.now(),
                    event: "approved".to_owned(),
                    by: actor.to_owned(),
                    reason: Some(format!(
                        "replay of erasure {} after a restore to {since}: {reason}",
                        done.id
                    )),
                });
                let (status, stored) = self.open(again).await?;
                // An open request found instead is reported with its status: one still waiting
                // for a decision erases nothing until it is approved.
                replayed.push(serde_json::json!({
                    "of": done.id,
                    "request": stored.id,
                    "already_open": status == 200,
                    "status": stored.status,
                }));
            }
            match found.next {
                Some(next) => page = PageRequest::after(100, next),
                None => break,
            }
        }
        tracing::info!(count = replayed.len(), "erasures replayed after a restore");
        Ok(apigw::json(
            200,
            &serde_json::json!({ "since": since, "replayed": replayed }),
        ))
    }

    async fn enqueue(&self, id: RequestId) -> Result<(), DeletionError> {
        let body = shared::queue::to_body(&ErasureJob { request: id })
            .map_err(|_| DeletionError::Unavailable("the erasure job could not be encoded"))?;
        self.erasure.send_batch(&[body]).await.map_err(|e| {
            tracing::error!(error = %e, request = %id, "erasure queue refused the job");
            DeletionError::Unavailable("erasure queue temporarily unavailable: approve again to retry")
        })
    }

    async fn list_open(&self, req: &Request, actor: &str, route: &'static str) -> Result<Response, DeletionError> {
        match apigw::query(req, "status") {
            None | Some("open") => {}
            Some(_) => return Err(bad_request("status", "only status=open is listed")),
        }
        let limit = match apigw::query(req, "limit") {
            None => 50,
            Some(l) => l.parse().map_err(|_| bad_request("limit", "must be 1-100"))?,
        };
        let page = match apigw::query(req, "cursor") {
            None => PageRequest::first(limit),
            Some(c) => PageRequest::after(limit, shared::store::Cursor::from_token(c)),
        };
        self.audit(
            actor,
            route,
            AuditAction::Read,
            None,
            "open privacy requests listed",
            Some(req),
        )
        .await?;
        // Every open request: none is due after the end of year 9999.
        let far = Timestamp::from_unix_seconds(253_402_300_799);
        let found = self
            .stores
            .privacy_requests
            .open_due_before(far, &page)
            .await
            .map_err(store_error)?;
        let items: Vec<RequestView> = found.items.iter().map(|r| self.view(req, r)).collect();
        Ok(apigw::json(
            200,
            &serde_json::json!({ "requests": items, "next_cursor": found.next.as_ref().map(|c| c.token()) }),
        ))
    }

    async fn stored(&self, id: &str) -> Result<PrivacyRequest, DeletionError> {
        let id = RequestId::parse(id).ok_or(DeletionError::NotFound("no such privacy request"))?;
        self.stores
            .privacy_requests
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or(DeletionError::NotFound("no such privacy request"))
    }

    async fn show(&self, req: &Request, actor: &str, route: &'static str, id: &str) -> Result<Response, DeletionError> {
        let r = self.stored(id).await?;
        self.audit(
            actor,
            route,
            AuditAction::Read,
            Some(r.id),
            "privacy request read",
            Some(req),
        )
        .await?;
        Ok(apigw::json(200, &self.view(req, &r)))
    }

    /// An access request's export (JSON, or its messages as CSV with `?format=csv` or
    /// `Accept: text/csv`), once approved. The first one completes the request; later ones are
    /// served too, each audited, for as long as the request is kept.
    async fn export(
        &self,
        req: &Request,
        actor: &str,
        route: &'static str,
        id: &str,
    ) -> Result<Response, DeletionError> {
        let mut r = self.stored(id).await?;
        if r.kind != shared::deadline::RequestKind::Access {
            return Err(DeletionError::Conflict(format!(
                "a {} request has no export: only an access request does",
                r.kind.as_str()
            )));
        }
        match r.status {
            RequestStatus::Approved | RequestStatus::InProgress | RequestStatus::Completed => {}
            RequestStatus::Received => {
                return Err(DeletionError::Conflict(
                    "the request is not approved yet: decide it first".to_owned(),
                ));
            }
            RequestStatus::Rejected => return Err(DeletionError::Conflict("the request was rejected".to_owned())),
        }
        let csv = match apigw::query(req, "format") {
            Some("csv") => true,
            Some("json") => false,
            Some(_) => return Err(bad_request("format", "must be json or csv")),
            None => apigw::header(req, "accept").is_some_and(|a| a.contains("text/csv")),
        };
        self.audit(
            actor,
            route,
            AuditAction::Read,
            Some(r.id),
            "privacy request exported",
            Some(req),
        )
        .await?;
        let now = self.clock.now();
        let export = export::collect(&self.stores, &r, now).await.map_err(store_error)?;
        if r.status != RequestStatus::Completed {
            r.timeline.push(TimelineEntry {
                at: now,
                event: "exported".to_owned(),
                by: actor.to_owned(),
                reason: None,
            });
            r.close(RequestStatus::Completed, now, actor, None);
            self.stores.privacy_requests.update(&r).await.map_err(store_error)?;
        }
        tracing::info!(request = %r.id, contacts = export.contacts.len(), csv, "privacy request exported");
        if csv {
            return Ok(apigw::respond(
                200,
                "text/csv; charset=utf-8",
                export::messages_csv(&export),
            ));
        }
        Ok(apigw::json(200, &export))
    }

    async fn decide(
        &self,
        req: &Request,
        actor: &str,
        route: &'static str,
        id: &str,
    ) -> Result<Response, DeletionError> {
        let mut r = self.stored(id).await?;
        let body = apigw::json_object(req).ok_or_else(|| bad_request("body", "must be a JSON object"))?;
        let decision = intake::parse_decision(body, r.received_at, r.due_at)?;
        let now = self.clock.now();
        let entry = |event: &str, reason: Option<String>| TimelineEntry {
            at: now,
            event: event.to_owned(),
            by: actor.to_owned(),
            reason,
        };
        match (&decision, r.status) {
            (_, RequestStatus::Completed | RequestStatus::Rejected) => {
                return Err(DeletionError::Conflict(format!(
                    "the request is {}: it is final",
                    r.status.as_str()
                )));
            }
            (intake::Decision::Approve, RequestStatus::Received) => {
                r.status = RequestStatus::Approved;
                r.timeline.push(entry("approved", None));
            }
            // Approving again re-queues the job: the first send was lost, or the job ran out of
            // tries and went to the dead-letter queue. The worker resumes from the stored
            // progress, and the request's version keeps two runs from both writing.
            // A rectification or objection that failed midway is carried out again: both are
            // idempotent.
            (intake::Decision::Approve, RequestStatus::Approved)
                if !r.erases()
                    && matches!(
                        r.kind,
                        shared::deadline::RequestKind::Rectification | shared::deadline::RequestKind::Objection
                    ) =>
            {
                r.timeline
                    .push(entry("approved", Some("again: carrying it out".to_owned())));
            }
            (intake::Decision::Approve, RequestStatus::Approved | RequestStatus::InProgress) if !r.erases() => {
                return Err(DeletionError::Conflict("the request is already approved".to_owned()));
            }
            (intake::Decision::Approve, RequestStatus::Approved | RequestStatus::InProgress) => {
                self.audit(
                    actor,
                    route,
                    AuditAction::Change,
                    Some(r.id),
                    "privacy request re-queued",
                    Some(req),
                )
                .await?;
                self.enqueue(r.id).await?;
                return Ok(apigw::json(200, &self.view(req, &r)));
            }
            (intake::Decision::Reject { reason }, RequestStatus::Received | RequestStatus::Approved) => {
                r.close(RequestStatus::Rejected, now, actor, Some(reason.clone()));
            }
            (intake::Decision::Reject { .. }, RequestStatus::InProgress) => {
                return Err(DeletionError::Conflict("the erasure is already running".to_owned()));
            }
            (intake::Decision::Extend { due_at, reason }, _) => {
                r.due_at = *due_at;
                r.timeline.push(entry("extended", Some(reason.clone())));
            }
        }
        let approved = decision == intake::Decision::Approve;
        let what = match decision {
            intake::Decision::Approve => "privacy request approved",
            intake::Decision::Reject { .. } => "privacy request rejected",
            intake::Decision::Extend { .. } => "privacy request extended",
        };
        self.audit(actor, route, AuditAction::Change, Some(r.id), what, Some(req))
            .await?;
        let mut stored = self.stores.privacy_requests.update(&r).await.map_err(store_error)?;
        if approved && stored.kind == shared::deadline::RequestKind::Objection {
            stored = self.object(stored, actor).await?;
        }
        if approved && stored.kind == shared::deadline::RequestKind::Rectification {
            stored = self.rectify(stored, actor, route, req).await?;
        }
        // Only an approval starts the worker: an extension of an approved request changes its
        // date, not its work.
        if approved && stored.erases() {
            self.enqueue(stored.id).await?;
        }
        tracing::info!(request = %stored.id, status = stored.status.as_str(), "privacy request decided");
        Ok(apigw::json(200, &self.view(req, &stored)))
    }
}
