//! What access control and the audit chain add to an admin read, in DynamoDB capacity units
//! (deterministic, so a budget): the grant lookup, the chain head, and the two-item transaction
//! that appends the event and moves the head. Runs on DynamoDB Local (`infra/test.sh`); the
//! figures are in BENCHMARKS.md "Admin request capacity".

mod common;

use admin::Admin;
use common::{grant, request_as};
use http::Method;
use serde_json::json;
use shared::access::Role;
use shared::clock::{SettableClock, SharedClock};
use shared::identity::SubjectKeySecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::dynamodb::{CapacityMeter, Units};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = "arn:aws:iam::000000000000:user/agent";
const ADMIN: &str = "arn:aws:iam::000000000000:user/admin";

#[tokio::test]
async fn an_audited_read_and_a_refusal_stay_within_their_budget() {
    let (client, tables) = common::dynamodb_tables("cap").await;
    let meter = CapacityMeter::default();
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(2_208_988_800)));
    let stores = shared::store::dynamodb::stores(&client, &tables, clock.clone(), &meter);
    let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let secret = SubjectKeySecret::new(b"capacity-test-subject-key-secret-0123456789".to_vec()).expect("long enough");
    grant(&stores, AGENT, &[Role::TenantAgent], &["tenant-a"]).await;
    grant(&stores, ADMIN, &[Role::PlatformAdmin], &[]).await;
    let admin = Admin::new(stores, queue(), queue(), clock, secret);
    for t in ["tenant-a", "tenant-b"] {
        let req = request_as(
            Some(ADMIN),
            Method::POST,
            "/admin/tenants",
            &[],
            Some(json!({"tenant_id": t, "name": t})),
        );
        assert_eq!(admin.handle(&req).await.status_code, 201);
    }
    let cost = |path: &'static str| {
        let (admin, meter) = (&admin, meter.clone());
        async move {
            let before = meter.total();
            let status = admin
                .handle(&request_as(Some(AGENT), Method::GET, path, &[], None))
                .await
                .status_code;
            let after = meter.total();
            (
                status,
                Units {
                    read: after.read - before.read,
                    write: after.write - before.write,
                },
            )
        }
    };
    // A read of the agent's own tenant (no contacts: the listing's own cost is its query).
    let (status, read) = cost("/admin/tenants/tenant-a/contacts").await;
    assert_eq!(status, 200);
    println!("audited read: {read:?}");
    // A refusal: the grant, the tenant (to choose its chain) and the chain's append.
    let (status, refused) = cost("/admin/tenants/tenant-b/contacts").await;
    assert_eq!(status, 403);
    println!("refusal: {refused:?}");
    // The grant (1), the tenant (1), the chain head (1), the contacts query (0.5 when empty); the
    // event and the head in one transaction (2 units per item of up to 1 KB).
    assert!(read.read <= 3.5 && read.write <= 4.0, "audited read {read:?}");
    assert!(refused.read <= 3.0 && refused.write <= 4.0, "refusal {refused:?}");
}
