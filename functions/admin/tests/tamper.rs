//! The audit trail is tamper-evident on DynamoDB itself: an event altered or deleted behind the
//! API's back (with the table's own write access) is reported by `GET /admin/audit/verify`, with
//! the first event where the chain stops holding. Runs on DynamoDB Local (`infra/test.sh`).

mod common;

use admin::Admin;
use aws_sdk_dynamodb::types::AttributeValue;
use common::{grant, request_as};
use http::Method;
use serde_json::{Value, json};
use shared::access::Role;
use shared::apigw;
use shared::clock::{Clock, SettableClock, SharedClock};
use shared::identity::SubjectKeySecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::dynamodb::CapacityMeter;
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = "arn:aws:iam::000000000000:user/agent";
const AUDITOR: &str = "arn:aws:iam::000000000000:user/auditor";
const ADMIN: &str = "arn:aws:iam::000000000000:user/admin";
/// One tenant per kind of tampering, each chain a registration and five reads.
const TENANTS: [&str; 5] = ["tenant-a", "tenant-b", "tenant-c", "tenant-d", "tenant-e"];

struct Fixture {
    admin: Admin,
    clock: SettableClock,
    client: aws_sdk_dynamodb::Client,
    audit_table: String,
}

impl Fixture {
    async fn new() -> Self {
        let (client, tables) = common::dynamodb_tables("tamper").await;
        // 2040: clear of DynamoDB Local's real-time TTL sweeper.
        let settable = SettableClock::at(Timestamp::from_unix_seconds(2_208_988_800));
        let clock: SharedClock = Arc::new(settable.clone());
        let stores = shared::store::dynamodb::stores(&client, &tables, clock.clone(), &CapacityMeter::default());
        let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let secret = SubjectKeySecret::new(b"tamper-test-subject-key-secret-0123456789".to_vec()).expect("long enough");
        grant(&stores, AGENT, &[Role::TenantAgent], &TENANTS).await;
        grant(&stores, AUDITOR, &[Role::Auditor], &[]).await;
        grant(&stores, ADMIN, &[Role::PlatformAdmin], &[]).await;
        let f = Self {
            admin: Admin::new(stores, queue(), queue(), clock, secret),
            clock: settable,
            client,
            audit_table: tables.audit,
        };
        for t in TENANTS {
            let body = json!({"tenant_id": t, "name": t});
            assert_eq!(
                f.call(ADMIN, "/admin/tenants", &[], Method::POST, Some(body)).await.0,
                201
            );
            // Five reads: events 2 to 6 after the registration.
            for _ in 0..5 {
                let path = format!("/admin/tenants/{t}/contacts");
                assert_eq!(f.call(AGENT, &path, &[], Method::GET, None).await.0, 200);
            }
        }
        f
    }

    async fn call(&self, who: &str, path: &str, q: &[(&str, &str)], m: Method, body: Option<Value>) -> (i64, Value) {
        let resp = self.admin.handle(&request_as(Some(who), m, path, q, body)).await;
        (
            resp.status_code,
            serde_json::from_str(&apigw::body_text(&resp)).unwrap_or(Value::Null),
        )
    }

    async fn verify(&self, tenant: &str) -> Value {
        let (status, v) = self
            .call(AUDITOR, "/admin/audit/verify", &[("tenant", tenant)], Method::GET, None)
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The raw item of event `seq` in a tenant's chain, as DynamoDB holds it.
    async fn delete(&self, item: &std::collections::HashMap<String, AttributeValue>) {
        self.client
            .delete_item()
            .table_name(&self.audit_table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .expect("delete");
    }

    async fn event_item(&self, tenant: &str, seq: u64) -> std::collections::HashMap<String, AttributeValue> {
        let out = self
            .client
            .query()
            .table_name(&self.audit_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :e)")
            .expression_attribute_values(":pk", AttributeValue::S(tenant.to_owned()))
            .expression_attribute_values(":e", AttributeValue::S("E#".to_owned()))
            .send()
            .await
            .expect("query");
        out.items()
            .iter()
            .find(|i| i["sk"].as_s().is_ok_and(|sk| sk.ends_with(&format!("#{seq:020}"))))
            .cloned()
            .unwrap_or_else(|| panic!("event #{seq} of {tenant}"))
    }
}

#[tokio::test]
async fn altering_or_deleting_a_stored_event_is_reported_by_the_verify_route() {
    let f = Fixture::new().await;
    for t in TENANTS {
        let v = f.verify(t).await;
        assert_eq!(v["intact"], true, "{t} untouched: {v}");
    }

    // tenant-a: event #3's reason rewritten in place.
    let mut item = f.event_item("tenant-a", 3).await;
    let link = item["link"]
        .as_s()
        .expect("link")
        .replace("admin read", "nothing to see");
    item.insert("link".to_owned(), AttributeValue::S(link));
    f.client
        .put_item()
        .table_name(&f.audit_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("tamper");
    let v = f.verify("tenant-a").await;
    assert_eq!(
        (&v["intact"], &v["first_break"]["seq"]),
        (&json!(false), &json!(3)),
        "{v}"
    );

    // tenant-b: event #4 deleted.
    let item = f.event_item("tenant-b", 4).await;
    f.delete(&item).await;
    let v = f.verify("tenant-b").await;
    assert_eq!(
        (&v["intact"], &v["first_break"]["seq"]),
        (&json!(false), &json!(4)),
        "{v}"
    );

    // tenant-c: the newest event deleted. The verify route's own audit event comes after it, so
    // the break is in the middle of the chain by the time it is checked.
    let newest = f.verify("tenant-c").await["head_seq"].as_u64().expect("head");
    let item = f.event_item("tenant-c", newest).await;
    f.delete(&item).await;
    let v = f.verify("tenant-c").await;
    assert_eq!(
        (&v["intact"], &v["first_break"]["seq"]),
        (&json!(false), &json!(newest)),
        "{v}"
    );

    // tenant-d: the oldest event (the registration) deleted long before it expires.
    let item = f.event_item("tenant-d", 1).await;
    f.delete(&item).await;
    let v = f.verify("tenant-d").await;
    assert_eq!(
        (&v["intact"], &v["first_break"]["seq"]),
        (&json!(false), &json!(1)),
        "{v}"
    );

    // tenant-e: the chain's head deleted. The next append starts a chain of its own, which the
    // events still stored contradict.
    let mut head = f.event_item("tenant-e", 1).await;
    head.insert("sk".to_owned(), AttributeValue::S("HEAD".to_owned()));
    f.delete(&head).await;
    f.clock.set(f.clock.now().plus(time::Duration::seconds(1)));
    let v = f.verify("tenant-e").await;
    assert_eq!(v["intact"], false, "{v}");
}
