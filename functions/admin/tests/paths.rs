//! What travels in admin URLs carries no personal data: contacts are named by sealed handles and
//! page cursors are sealed for their query. Runs the handler on the embedded stores.

mod common;

use admin::Admin;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::request;
use http::Method;
use serde_json::{Value, json};
use shared::apigw::{self, Request};
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditAction, Channel, ContactId, ContactUpsert, Direction, LinkedIdentifier, Message};
use shared::domain::{MetaMessageId, TenantId};
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::queue::embedded::EmbeddedQueue;
use shared::retention::RetentionMonths;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// A contact keyed by its phone: what Meta payloads without a user id give.
const PHONE_ID: &str = "5491123456789";
const OTHER_ID: &str = "AR.13491208655302741918";
const IG_ID: &str = "7012345678901234";

struct Fixture {
    admin: Admin,
    stores: Stores,
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"admin-test-subject-key-secret-0123456789".to_vec()).expect("long enough")
}

impl Fixture {
    /// Tenants A and B; A has three contacts (one keyed by a phone, with three messages), B one.
    async fn new() -> Self {
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        let clock: SharedClock = Arc::new(SettableClock::at(now));
        let stores = shared::store::embedded::stores(clock.clone());
        common::grant_operator(&stores).await;
        let ingest = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let f = Self {
            admin: Admin::new(stores.clone(), ingest.clone(), ingest, clock, secret()),
            stores,
        };
        for tenant in ["tenant-a", "tenant-b"] {
            let body = json!({"tenant_id": tenant, "name": tenant});
            let (status, body) = f.call(request(Method::POST, "/admin/tenants", &[], Some(body))).await;
            assert_eq!(status, 201, "{body}");
        }
        let a = [
            (Channel::WhatsApp, PHONE_ID, 3),
            (Channel::WhatsApp, OTHER_ID, 2),
            (Channel::Instagram, IG_ID, 1),
        ];
        for (i, (channel, id, messages)) in a.into_iter().enumerate() {
            for m in 0..messages {
                f.seed("tenant-a", channel, id, now.unix_seconds() - 1000 + i as i64 * 10 + m)
                    .await;
            }
        }
        f.seed("tenant-b", Channel::WhatsApp, PHONE_ID, now.unix_seconds() - 500)
            .await;
        f
    }

    async fn seed(&self, tenant: &str, channel: Channel, id: &str, at: i64) {
        let tenant = TenantId::new(tenant).expect("tenant");
        let contact = ContactId::new(channel, id).expect("contact");
        let kind = match channel {
            Channel::WhatsApp if id.starts_with("AR.") => IdentifierKind::WhatsAppUserId,
            Channel::WhatsApp => IdentifierKind::Phone,
            Channel::Instagram => IdentifierKind::InstagramId,
        };
        let identifier = Identifier::parse(kind, id).expect("identifier");
        let at = Timestamp::from_unix_seconds(at);
        let upsert = ContactUpsert {
            tenant: tenant.clone(),
            contact: contact.clone(),
            profile_name: Some("Ana".to_owned()),
            identifiers: vec![LinkedIdentifier::new(&secret(), identifier)],
            seen_at: at,
            expires_at: RetentionMonths::MAX.contact_expiry_for(at),
        };
        let message = Message {
            tenant,
            contact,
            id: MetaMessageId::new(format!("wamid.{id}.{}", at.unix_seconds())).expect("id"),
            direction: Direction::Inbound,
            sent_at: at,
            kind: "text".to_owned(),
            content: json!({"text": {"body": "hola"}}),
            expires_at: RetentionMonths::MAX.expiry_for(at),
        };
        self.stores
            .conversations
            .record_message(&upsert, &message)
            .await
            .expect("seeded");
    }

    async fn call(&self, req: Request) -> (i64, Value) {
        let resp = self.admin.handle(&req).await;
        let body = serde_json::from_str(&apigw::body_text(&resp)).unwrap_or(Value::Null);
        (resp.status_code, body)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (i64, Value) {
        self.call(request(Method::GET, path, query, None)).await
    }

    /// The listing of a tenant's contacts, all on one page.
    async fn contacts(&self, tenant: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/admin/tenants/{tenant}/contacts"), &[("limit", "100")])
            .await;
        assert_eq!(status, 200, "{body}");
        body["contacts"].as_array().cloned().unwrap_or_default()
    }

    /// The handle the listing gives the contact with this stable id.
    async fn handle(&self, tenant: &str, id: &str) -> String {
        let contacts = self.contacts(tenant).await;
        let c = contacts.iter().find(|c| c["id"] == id).expect("listed");
        c["contact"].as_str().expect("a handle").to_owned()
    }

    async fn messages(&self, tenant: &str, handle: &str, query: &[(&str, &str)]) -> (i64, Value) {
        self.get(&format!("/admin/tenants/{tenant}/contacts/{handle}/messages"), query)
            .await
    }
}

fn refused_cursor(status: i64, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().starts_with("cursor:"),
        "{body}"
    );
}

#[tokio::test]
async fn the_listing_names_contacts_by_a_handle_that_reads_their_messages() {
    let f = Fixture::new().await;
    let contacts = f.contacts("tenant-a").await;
    assert_eq!(contacts.len(), 3);
    for c in &contacts {
        let handle = c["contact"].as_str().expect("a handle");
        let id = c["id"].as_str().expect("the id stays in the body");
        assert!(handle.starts_with("c_"), "{handle}");
        assert!(!handle.contains(id) && !handle.contains(':'), "{handle}");
        assert!(c["channel"].is_string());
    }
    let handle = f.handle("tenant-a", PHONE_ID).await;
    let (status, body) = f.messages("tenant-a", &handle, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(f.handle("tenant-a", PHONE_ID).await, handle, "stable");
    assert_ne!(f.handle("tenant-b", PHONE_ID).await, handle, "per tenant");
}

#[tokio::test]
async fn old_paths_and_foreign_handles_name_no_contact() {
    let f = Fixture::new().await;
    for segment in [
        format!("whatsapp:{PHONE_ID}"),
        format!("whatsapp:{OTHER_ID}"),
        "sms:1".to_owned(),
        "c_".to_owned(),
        "c_AAAA".to_owned(),
        f.handle("tenant-b", PHONE_ID).await,
    ] {
        let (status, body) = f.messages("tenant-a", &segment, &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("no such contact")),
            "{segment}"
        );
    }
    let mut handle = f.handle("tenant-a", PHONE_ID).await.into_bytes();
    let last = handle.len() - 1;
    handle[last] = if handle[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(handle).expect("ascii");
    assert_eq!(f.messages("tenant-a", &tampered, &[]).await.0, 404);
    // A tenant the operator is not assigned to is refused before the handle is looked at.
    let handle = f.handle("tenant-a", PHONE_ID).await;
    assert_eq!(f.messages("nobody", &handle, &[]).await.0, 403);
}

#[tokio::test]
async fn cursors_carry_no_key_and_work_only_on_their_query() {
    let f = Fixture::new().await;
    let (status, first) = f.get("/admin/tenants/tenant-a/contacts", &[("limit", "1")]).await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"].as_str().expect("more contacts").to_owned();
    // The store's own cursor was base64 of a DynamoDB key that holds the contact id.
    let store_page = f
        .stores
        .conversations
        .list_contacts(&TenantId::new("tenant-a").expect("t"), &PageRequest::first(1))
        .await
        .expect("page");
    let store_cursor = store_page.next.expect("store cursor");
    assert_ne!(cursor, store_cursor.token());
    let decoded = URL_SAFE_NO_PAD.decode(&cursor).expect("base64url without padding");
    let text = String::from_utf8_lossy(&decoded);
    for secret_part in [PHONE_ID, OTHER_ID, IG_ID, "tenant-a", "whatsapp"] {
        assert!(
            !cursor.contains(secret_part) && !text.contains(secret_part),
            "{secret_part}"
        );
    }

    // It pages on, in its own query.
    let (status, second) = f
        .get(
            "/admin/tenants/tenant-a/contacts",
            &[("limit", "1"), ("cursor", &cursor)],
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["contacts"][0]["contact"], first["contacts"][0]["contact"]);

    // Anywhere else it is refused: another tenant, the messages route, the events route.
    let (status, body) = f.get("/admin/tenants/tenant-b/contacts", &[("cursor", &cursor)]).await;
    refused_cursor(status, &body);
    let handle = f.handle("tenant-a", PHONE_ID).await;
    let (status, body) = f.messages("tenant-a", &handle, &[("cursor", &cursor)]).await;
    refused_cursor(status, &body);
    let (status, body) = f.get("/admin/tenants/tenant-a/events", &[("cursor", &cursor)]).await;
    refused_cursor(status, &body);

    // A messages cursor pages through its contact only.
    let (status, page) = f.messages("tenant-a", &handle, &[("limit", "1")]).await;
    assert_eq!(status, 200, "{page}");
    let messages_cursor = page["next_cursor"].as_str().expect("more messages").to_owned();
    assert!(!messages_cursor.contains(PHONE_ID));
    let (status, rest) = f
        .messages("tenant-a", &handle, &[("limit", "100"), ("cursor", &messages_cursor)])
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(2));
    let other = f.handle("tenant-a", OTHER_ID).await;
    let (status, body) = f.messages("tenant-a", &other, &[("cursor", &messages_cursor)]).await;
    refused_cursor(status, &body);
    let (status, body) = f
        .get("/admin/tenants/tenant-a/contacts", &[("cursor", &messages_cursor)])
        .await;
    refused_cursor(status, &body);
    // The unsealed store cursor, as this API used to hand out, is no longer taken.
    let (status, body) = f
        .get("/admin/tenants/tenant-a/contacts", &[("cursor", store_cursor.token())])
        .await;
    refused_cursor(status, &body);
}

#[tokio::test]
async fn a_tampered_cursor_gets_400() {
    let f = Fixture::new().await;
    let (_, first) = f.get("/admin/tenants/tenant-a/contacts", &[("limit", "1")]).await;
    let cursor = first["next_cursor"].as_str().expect("more contacts").to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&cursor).expect("base64url");
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let bad = URL_SAFE_NO_PAD.encode(bad);
        let (status, body) = f.get("/admin/tenants/tenant-a/contacts", &[("cursor", &bad)]).await;
        refused_cursor(status, &body);
    }
    for bad in ["", "!!!", &cursor[..cursor.len() - 2], &format!("{cursor}AA")] {
        let (status, body) = f.get("/admin/tenants/tenant-a/contacts", &[("cursor", bad)]).await;
        refused_cursor(status, &body);
    }
}

#[tokio::test]
async fn a_messages_read_is_audited_under_the_handle_not_the_id() {
    let f = Fixture::new().await;
    let handle = f.handle("tenant-a", PHONE_ID).await;
    let mut req = request(
        Method::GET,
        &format!("/admin/tenants/tenant-a/contacts/{handle}/messages"),
        &[],
        None,
    );
    req.headers
        .insert("x-audit-reason", http::HeaderValue::from_static("access request 42"));
    assert_eq!(f.admin.handle(&req).await.status_code, 200);
    let audit = common::trail(&f.stores, &common::tenant_chain("tenant-a")).await;
    let read = audit
        .iter()
        .find(|e| e.reason == "access request 42")
        .expect("the read is audited");
    assert_eq!(read.action, AuditAction::Read);
    let contact = read.contact.as_ref().expect("names the contact");
    assert_eq!(contact.as_str(), handle.as_str());
    let stored = serde_json::to_string(&audit).expect("json");
    for personal in [PHONE_ID, OTHER_ID, IG_ID] {
        assert!(!stored.contains(personal), "the audit trail holds {personal}");
    }
}

/// The contactability question names a person (a phone, a username): it travels in the body,
/// and the query-string form is refused without being answered.
#[tokio::test]
async fn contactability_is_asked_in_the_body_never_the_url() {
    let f = Fixture::new().await;
    let question = json!({"tenant": "tenant-a", "channel": "whatsapp", "id": PHONE_ID});
    let (status, body) = f
        .call(request(Method::POST, "/admin/contactability", &[], Some(question)))
        .await;
    assert_eq!((status, &body["contactable"]), (200, &json!(true)), "{body}");

    // Bad input: the old query-string form.
    let query = [("tenant", "tenant-a"), ("channel", "whatsapp"), ("id", PHONE_ID)];
    let (status, body) = f.get("/admin/contactability", &query).await;
    assert_eq!(status, 405, "{body}");
    assert!(body.get("contactable").is_none());

    // Bad input: a field the question does not have; the phone as a number, not a string.
    let extra = json!({"tenant": "tenant-a", "channel": "whatsapp", "id": PHONE_ID, "phone": PHONE_ID});
    let number: i64 = PHONE_ID.parse().expect("digits");
    let as_number = json!({"tenant": "tenant-a", "channel": "whatsapp", "id": number});
    for bad in [extra, as_number] {
        let (status, body) = f
            .call(request(Method::POST, "/admin/contactability", &[], Some(bad)))
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            !body.to_string().contains(PHONE_ID),
            "the refusal does not echo the id: {body}"
        );
    }
}

/// Bad input: encoded tenant segments that try to reach tenant B's data from a path that names
/// tenant A (or names B in a form other than its own). Segments are decoded exactly once and
/// matched whole, so each is refused, and nothing of tenant B comes back.
#[tokio::test]
async fn encoded_segments_cannot_reach_another_tenant() {
    let f = Fixture::new().await;
    let b_contacts = f.contacts("tenant-b").await;
    let b_handle = b_contacts[0]["contact"].as_str().expect("a handle").to_owned();
    for path in [
        "/admin/tenants/tenant-a%2F..%2Ftenant-b/contacts",
        "/admin/tenants/tenant-a%252F..%252Ftenant-b/contacts",
        "/admin/tenants/tenant-b%23/contacts",
        "/admin/tenants/tenant-a%23tenant-b/contacts",
        "/admin/tenants/TENANT-B/contacts",
        "/admin/tenants/Tenant-b/contacts",
        "/admin/tenants/%74enant-b%2F/contacts",
        "/admin/tenants/tenant-a/../tenant-b/contacts",
        "/admin/tenants/tenant-a/%2E%2E/tenant-b/contacts",
        "/admin/tenants/tenant-a%2Fcontacts%2F..%2F..%2Ftenant-b/contacts",
    ] {
        let (status, body) = f.get(path, &[]).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(!body.to_string().contains(&b_handle), "{path} reached tenant B: {body}");
    }
    // Tenant B's handle under tenant A's path names nothing.
    let (status, body) = f.messages("tenant-a", &b_handle, &[]).await;
    assert_eq!(status, 404, "{body}");
}
