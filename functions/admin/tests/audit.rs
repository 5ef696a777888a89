//! No audit, no access: every admin read and change writes its audit event first, registration
//! (which replays held personal data into the tenant) and the events listing included; when the
//! audit store fails, the request is refused with a 503 and nothing is returned or changed.

mod common;

use admin::Admin;
use async_trait::async_trait;
use common::request;
use http::Method;
use serde_json::{Value, json};
use shared::apigw;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditAction, AuditEvent, TenantId};
use shared::identity::SubjectKeySecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::{AuditStore, Page, PageRequest, StoreError, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// An audit store that is down: every append and list fails as a backend would.
#[derive(Debug)]
struct DownAuditStore;

#[async_trait]
impl AuditStore for DownAuditStore {
    async fn append(&self, _: &AuditEvent) -> Result<(), StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
    async fn list(&self, _: &TenantId, _: &PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
}

/// One instant for every test: audit events order by time, then id.
fn clock() -> SharedClock {
    Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)))
}

fn embedded() -> Stores {
    shared::store::embedded::stores(clock())
}

fn admin(stores: &Stores) -> Admin {
    let clock = clock();
    let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let secret = SubjectKeySecret::new(b"audit-test-subject-key-secret-0123456789".to_vec()).expect("long enough");
    Admin::new(stores.clone(), queue(), queue(), clock.clone(), secret)
}

async fn call(admin: &Admin, method: Method, path: &str, body: Option<Value>) -> (i64, Value) {
    let resp = admin.handle(&request(method, path, &[], body)).await;
    let body = serde_json::from_str(&apigw::body_text(&resp)).unwrap_or(Value::Null);
    (resp.status_code, body)
}

fn registration() -> Value {
    json!({"tenant_id": "tenant-a", "name": "A", "whatsapp_phone_number_ids": ["106540352242922"]})
}

#[tokio::test]
async fn registration_and_the_events_listing_are_audited() {
    let stores = embedded();
    let admin = admin(&stores);
    assert_eq!(
        call(&admin, Method::POST, "/admin/tenants", Some(registration()))
            .await
            .0,
        201
    );
    assert_eq!(
        call(&admin, Method::POST, "/admin/tenants", Some(registration()))
            .await
            .0,
        200
    );
    let (status, body) = call(&admin, Method::GET, "/admin/tenants/tenant-a/events", None).await;
    assert_eq!(status, 200, "{body}");

    let tenant = TenantId::new("tenant-a").expect("valid");
    let trail = stores
        .audit
        .list(&tenant, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    // One clock instant for all three: the trail orders ties by event id, so compare as a set.
    let mut seen: Vec<(AuditAction, &str, &str)> = trail
        .iter()
        .map(|e| (e.action, e.reason.as_str(), e.actor.as_str()))
        .collect();
    seen.sort_by_key(|(_, reason, _)| *reason);
    let actor = "arn:aws:iam::000000000000:user/privacy-desk";
    assert_eq!(
        seen,
        [
            (AuditAction::Read, "admin read: tenant events", actor),
            (AuditAction::Change, "tenant registered", actor),
            (AuditAction::Change, "tenant updated", actor),
        ]
    );
}

/// Bad input, in effect: the audit store is down. Every route refuses, and nothing is
/// returned (no contacts, no events) or changed (no tenant registered).
#[tokio::test]
async fn with_the_audit_store_down_nothing_is_read_or_changed() {
    let working = embedded();
    // A tenant registered while the audit store worked, so reads get past the tenant lookup.
    assert_eq!(
        call(&admin(&working), Method::POST, "/admin/tenants", Some(registration()))
            .await
            .0,
        201
    );
    let down = Stores {
        audit: Arc::new(DownAuditStore),
        ..working.clone()
    };
    let admin = admin(&down);
    for path in [
        "/admin/tenants/tenant-a/contacts",
        "/admin/tenants/tenant-a/events",
        "/admin/tenants/tenant-a/optout-reviews",
    ] {
        let (status, body) = call(&admin, Method::GET, path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.get("contacts").is_none() && body.get("events").is_none() && body.get("reviews").is_none());
    }
    let question = json!({"tenant": "tenant-a", "channel": "whatsapp", "id": "5491123456789"});
    let (status, body) = call(&admin, Method::POST, "/admin/contactability", Some(question)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.get("contactable").is_none());

    let other = json!({"tenant_id": "tenant-b", "name": "B", "whatsapp_phone_number_ids": ["106540352249999"]});
    let (status, body) = call(&admin, Method::POST, "/admin/tenants", Some(other)).await;
    assert_eq!(status, 503, "{body}");
    let b = TenantId::new("tenant-b").expect("valid");
    assert_eq!(
        working.tenants.get(&b).await.expect("get"),
        None,
        "not registered unaudited"
    );
}

/// Bad input: a request with no authenticated principal (no IAM authorizer context), on every
/// route. The handler answers 401 itself, before any lookup, and writes nothing, audit included.
#[tokio::test]
async fn no_principal_gets_401_on_every_route_and_nothing_is_written() {
    let stores = embedded();
    let admin = admin(&stores);
    assert_eq!(
        call(&admin, Method::POST, "/admin/tenants", Some(registration()))
            .await
            .0,
        201
    );
    let tenant = TenantId::new("tenant-a").expect("valid");
    let audited = || async {
        stores
            .audit
            .list(&tenant, &PageRequest::first(100))
            .await
            .expect("list")
            .items
            .len()
    };
    let before = audited().await;
    let routes = [
        (Method::POST, "/admin/tenants", Some(registration())),
        (Method::GET, "/admin/tenants/tenant-a/contacts", None),
        (Method::GET, "/admin/tenants/tenant-a/contacts/c_x/messages", None),
        (Method::GET, "/admin/tenants/tenant-a/events", None),
        (
            Method::POST,
            "/admin/contactability",
            Some(json!({"tenant": "tenant-a", "channel": "whatsapp", "id": "5491123456789"})),
        ),
        (Method::GET, "/admin/tenants/tenant-a/optout-reviews", None),
        (
            Method::POST,
            "/admin/tenants/tenant-a/optout-reviews/1.x",
            Some(json!({"decision": "dismiss"})),
        ),
        (Method::GET, "/admin/nowhere", None),
    ];
    for (method, path, body) in routes {
        let mut req = request(method, path, &[], body);
        req.request_context.authorizer = None;
        let resp = admin.handle(&req).await;
        assert_eq!(resp.status_code, 401, "{path}");
    }
    assert_eq!(audited().await, before, "nothing audited, nothing read");
}
