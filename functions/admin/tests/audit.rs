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
use shared::audit::{ChainHead, ChainLink, Checkpoint};
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditAction, AuditChain, AuditEvent, TenantId};
use shared::identity::SubjectKeySecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::{AuditStore, Page, PageRequest, StoreError, Stores, TimeRange};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// An audit store that is down: every append and list fails as a backend would.
#[derive(Debug)]
struct DownAuditStore;

#[async_trait]
impl AuditStore for DownAuditStore {
    async fn append(&self, _: &AuditEvent) -> Result<ChainLink, StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
    async fn list(&self, _: &AuditChain, _: &TimeRange, _: &PageRequest) -> Result<Page<ChainLink>, StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
    async fn head(&self, _: &AuditChain) -> Result<Option<ChainHead>, StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
    async fn checkpoints(&self, _: &AuditChain) -> Result<Vec<Checkpoint>, StoreError> {
        Err(StoreError::Backend("audit store unreachable".to_owned()))
    }
}

/// One instant for every test: audit events order by time, then id.
fn clock() -> SharedClock {
    Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)))
}

async fn embedded() -> Stores {
    let stores = shared::store::embedded::stores(clock());
    common::grant_operator(&stores).await;
    stores
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
    let stores = embedded().await;
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

    let trail = common::trail(&stores, &common::tenant_chain("tenant-a")).await;
    let mut seen: Vec<(AuditAction, &str, &str)> = trail
        .iter()
        .map(|e| (e.action, e.reason.as_str(), e.actor.as_str()))
        .collect();
    seen.sort_by_key(|(_, reason, _)| *reason);
    let actor = common::OPERATOR;
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
    let working = embedded().await;
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
        "/admin/principals",
        "/admin/audit",
        "/admin/audit/verify",
    ] {
        let (status, body) = call(&admin, Method::GET, path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        for field in ["contacts", "events", "reviews", "principals", "intact"] {
            assert!(body.get(field).is_none(), "{path} answered {field} unaudited");
        }
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
    let grant = json!({"principal": "arn:aws:iam::000000000000:user/new", "roles": ["auditor"]});
    let (status, body) = call(&admin, Method::POST, "/admin/principals", Some(grant)).await;
    assert_eq!(status, 503, "{body}");
    let new = shared::access::PrincipalId::new("arn:aws:iam::000000000000:user/new").expect("valid");
    assert_eq!(
        working.principals.get(&new).await.expect("get"),
        None,
        "not granted unaudited"
    );
}

/// A denied attempt is audited too: with the audit store down, the refusal itself is a 503, and
/// the caller learns nothing of why it would have been refused.
#[tokio::test]
async fn a_refusal_that_cannot_be_audited_is_a_503() {
    let working = embedded().await;
    common::grant(
        &working,
        "arn:aws:iam::000000000000:user/agent",
        &[shared::access::Role::TenantAgent],
        &["tenant-a"],
    )
    .await;
    let down = Stores {
        audit: Arc::new(DownAuditStore),
        ..working
    };
    let req = common::request_as(
        Some("arn:aws:iam::000000000000:user/agent"),
        Method::GET,
        "/admin/tenants/tenant-b/contacts",
        &[],
        None,
    );
    let resp = admin(&down).handle(&req).await;
    assert_eq!(resp.status_code, 503, "{}", apigw::body_text(&resp));
}
