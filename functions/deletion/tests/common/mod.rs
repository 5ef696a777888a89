//! What the deletion tests share: the handler and worker on embedded stores and queues, API
//! Gateway requests as a principal sends them, and a person's data spread over tenants.
#![allow(dead_code)]

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use deletion::Deletion;
use deletion::erasure::{ErasureWorker, Outcome};
use http::Method;
use serde_json::{Value, json};
use shared::access::{Principal, PrincipalId, Role};
use shared::apigw::{Request, Response};
use shared::clock::{Clock, SettableClock, SharedClock};
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::meta::signature::AppSecret;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::retention::RetentionMonths;
use shared::store::Stores;
use shared::timestamp::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub const OFFICER: &str = "arn:aws:iam::000000000000:user/privacy-desk";
pub const AGENT: &str = "arn:aws:iam::000000000000:user/agent";
pub const APP_SECRET: &str = "test-app-secret";

pub fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"deletion-tests-secret-deletion-tests-secret".to_vec()).expect("long enough")
}

pub struct Env {
    pub stores: Stores,
    pub clock: SettableClock,
    pub queue: Arc<dyn Queue>,
    /// Where objections queue their opt-outs.
    pub optout: Arc<dyn Queue>,
    pub deletion: Deletion,
}

impl Env {
    pub async fn new() -> Self {
        // A Wednesday, so business-day deadlines are easy to read.
        let clock = SettableClock::at(Timestamp::parse_rfc3339("2026-12-02T12:00:00Z").expect("time"));
        let shared_clock: SharedClock = Arc::new(clock.clone());
        let stores = shared::store::embedded::stores(shared_clock.clone());
        let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
        let optout: Arc<dyn Queue> = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
        let deletion = Deletion::new(
            stores.clone(),
            queue.clone(),
            optout.clone(),
            shared_clock,
            secret(),
            vec![AppSecret::new(APP_SECRET)],
        );
        grant(&stores, OFFICER, &[Role::PrivacyOfficer], &[]).await;
        grant(&stores, AGENT, &[Role::TenantAgent], &["tenant-a"]).await;
        for t in ["tenant-a", "tenant-b", "tenant-c"] {
            register(&stores, t, clock.now()).await;
        }
        Self {
            stores,
            clock,
            queue,
            optout,
            deletion,
        }
    }

    /// The conversations as a restore from a backup leaves them: a table of their own, without
    /// the erasure ledger of anything done since. Every other table is kept.
    pub fn restore_conversations(&mut self) {
        let shared_clock: SharedClock = Arc::new(self.clock.clone());
        self.stores.conversations = Arc::new(shared::store::embedded::EmbeddedConversationStore::new(
            shared_clock.clone(),
        ));
        self.deletion = Deletion::new(
            self.stores.clone(),
            self.queue.clone(),
            self.optout.clone(),
            shared_clock,
            secret(),
            vec![AppSecret::new(APP_SECRET)],
        );
    }

    /// The opt-out function on every command queued, as its event source would run it.
    pub async fn apply_opt_outs(&self) -> Vec<shared::optout::command::OptOutCommand> {
        let shared_clock: SharedClock = Arc::new(self.clock.clone());
        let side = || -> Arc<dyn Queue> { Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30))) };
        let handler = ::optout::OptOutHandler::new(self.stores.clone(), side(), side(), shared_clock.clone());
        let mut applied = Vec::new();
        loop {
            let received = self
                .optout
                .receive(10, Duration::from_millis(0))
                .await
                .expect("receive");
            if received.is_empty() {
                return applied;
            }
            for m in received {
                let cmd: shared::optout::command::OptOutCommand = serde_json::from_str(&m.body).expect("a command");
                handler.apply(&cmd).await.expect("the opt-out applies");
                self.optout.delete(&m.receipt).await.expect("delete");
                applied.push(cmd);
            }
        }
    }

    pub fn worker(&self) -> ErasureWorker {
        ErasureWorker::new(
            &self.stores,
            self.queue.clone(),
            self.optout.clone(),
            Arc::new(self.clock.clone()),
        )
    }

    /// `method path` as `principal` (None: unauthenticated, as the public routes are called).
    pub async fn call(&self, principal: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self
            .call_raw(request(principal, method, path, &[], &[], body.map(|b| b.to_string())))
            .await;
        let status = r.status_code as u16;
        let text = shared::apigw::body_text(&r);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn call_raw(&self, req: Request) -> Response {
        self.deletion.handle(&req).await
    }

    /// Runs the worker on every job queued, as Lambda's event source would, until the queue is
    /// empty; returns what each run did.
    pub async fn drain(&self, worker: &ErasureWorker) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for _ in 0..1000 {
            let Some(outcome) = self.run_once(worker).await else {
                return outcomes;
            };
            outcomes.push(outcome);
        }
        panic!("the erasure queue never emptied");
    }

    /// Runs the worker on the next job queued, if any, and deletes it.
    pub async fn run_once(&self, worker: &ErasureWorker) -> Option<Outcome> {
        let received = self.queue.receive(1, Duration::from_millis(0)).await.expect("receive");
        let m = received.into_iter().next()?;
        let job: deletion::ErasureJob = serde_json::from_str(&m.body).expect("a job");
        let outcome = worker.run(&job).await.expect("erasure job");
        self.queue.delete(&m.receipt).await.expect("delete");
        Some(outcome)
    }

    /// The job queued, as an SQS event (for `handle`).
    pub async fn next_event(&self) -> Option<(SqsEvent, String)> {
        let m = self
            .queue
            .receive(1, Duration::from_millis(0))
            .await
            .expect("receive")
            .into_iter()
            .next()?;
        let mut record = SqsMessage::default();
        record.message_id = Some(m.message_id.clone());
        record.body = Some(m.body.clone());
        let mut event = SqsEvent::default();
        event.records = vec![record];
        Some((event, m.receipt))
    }

    pub async fn open_requests(&self) -> usize {
        let (status, body) = self
            .call(Some(OFFICER), Method::GET, "/admin/privacy-requests", None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["requests"].as_array().expect("list").len()
    }
}

pub fn request(
    principal: Option<&str>,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Request {
    let mut e = Request::default();
    e.version = Some("2.0".into());
    e.raw_path = Some(path.to_owned());
    e.request_context.http.method = method;
    e.request_context.http.path = Some(path.to_owned());
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        params.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    e.query_string_parameters = params.into();
    e.headers
        .insert("host", http::HeaderValue::from_static("privacy.example.com"));
    for (k, v) in headers {
        e.headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    if let Some(arn) = principal {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.to_owned());
        let mut auth = ApiGatewayRequestAuthorizer::default();
        auth.iam = Some(iam);
        e.request_context.authorizer = Some(auth);
    }
    e.body = body;
    e
}

pub async fn grant(stores: &Stores, principal: &str, roles: &[Role], tenants: &[&str]) {
    let p = Principal {
        id: PrincipalId::new(principal).expect("valid principal"),
        roles: roles.iter().copied().collect(),
        tenants: tenants.iter().map(|t| tenant(t)).collect(),
        granted_at: Timestamp::from_unix_seconds(0),
        granted_by: "test setup".to_owned(),
    };
    stores.principals.put(&p).await.expect("grant");
}

pub fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant")
}

async fn register(stores: &Stores, id: &str, now: Timestamp) {
    let t = Tenant {
        id: tenant(id),
        name: format!("Tenant {id}"),
        accounts: Vec::new(),
        retention_months: RetentionMonths::new(12).expect("valid"),
        locale: Default::default(),
        jurisdiction: Default::default(),
        created_at: now,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
    };
    stores.tenants.register(&t).await.expect("register");
}

pub fn link(kind: IdentifierKind, raw: &str) -> LinkedIdentifier {
    LinkedIdentifier::new(&secret(), Identifier::parse(kind, raw).expect("valid identifier"))
}

/// Stores a contact linked to `ids` with `messages` messages, each saying `text`.
pub async fn seed_contact(
    stores: &Stores,
    tenant_id: &str,
    contact: ContactId,
    ids: Vec<LinkedIdentifier>,
    messages: usize,
    text: &str,
    now: Timestamp,
) {
    let t = tenant(tenant_id);
    let expires = RetentionMonths::new(12).expect("valid").expiry_for(now);
    let upsert = ContactUpsert {
        tenant: t.clone(),
        contact: contact.clone(),
        profile_name: Some("Ana".to_owned()),
        identifiers: ids,
        seen_at: now,
        expires_at: expires,
    };
    for i in 0..messages {
        let at = now.plus(time::Duration::seconds(i as i64));
        let m = Message {
            tenant: t.clone(),
            contact: contact.clone(),
            id: MetaMessageId::new(format!("wamid.{tenant_id}.{i}")).expect("valid id"),
            direction: Direction::Inbound,
            sent_at: at,
            kind: "text".to_owned(),
            content: json!({"type": "text", "text": {"body": text}}),
            expires_at: RetentionMonths::new(12).expect("valid").expiry_for(at),
        };
        stores
            .conversations
            .record_message(&upsert, &m)
            .await
            .expect("store message");
    }
}

pub const PHONE: &str = "+5491155550123";
pub const PHONE_OTHER_FORMAT: &str = "+54 9 11 5555-0123";
pub const BSUID: &str = "AR.1234567890ABCDEF";
pub const IGSID: &str = "17841400000000001";

/// Ana: WhatsApp in tenant-a (phone and user id) and tenant-b (phone), Instagram in tenant-c.
/// Bruno, another person, writes to tenant-a too.
pub async fn seed_ana_and_bruno(stores: &Stores, now: Timestamp, ana_messages: usize) {
    let wa = |id: &str| ContactId::new(Channel::WhatsApp, id).expect("valid");
    seed_contact(
        stores,
        "tenant-a",
        wa(BSUID),
        vec![
            link(IdentifierKind::WhatsAppUserId, BSUID),
            link(IdentifierKind::Phone, PHONE),
        ],
        ana_messages,
        "hola, soy Ana",
        now,
    )
    .await;
    seed_contact(
        stores,
        "tenant-b",
        wa("5491155550123"),
        vec![link(IdentifierKind::Phone, PHONE)],
        ana_messages,
        "hola, soy Ana",
        now,
    )
    .await;
    seed_contact(
        stores,
        "tenant-c",
        ContactId::new(Channel::Instagram, IGSID).expect("valid"),
        vec![link(IdentifierKind::InstagramId, IGSID)],
        ana_messages,
        "hola, soy Ana",
        now,
    )
    .await;
    seed_contact(
        stores,
        "tenant-a",
        wa("AR.BRUNO0000000001"),
        vec![
            link(IdentifierKind::WhatsAppUserId, "AR.BRUNO0000000001"),
            link(IdentifierKind::Phone, "+5491166660000"),
        ],
        3,
        "soy Bruno",
        now,
    )
    .await;
}

/// An erasure of Ana by phone (in one format), WhatsApp user id and Instagram id.
pub fn ana_erasure() -> Value {
    json!({
        "kind": "erasure",
        "identifiers": [
            {"type": "phone", "value": PHONE_OTHER_FORMAT},
            {"type": "whatsapp_user_id", "value": BSUID},
            {"type": "instagram_id", "value": IGSID},
        ],
        "source": "email",
        "jurisdiction": "ar",
    })
}
