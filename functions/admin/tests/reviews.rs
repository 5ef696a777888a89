//! The opt-out review queue, end to end on the embedded stores: the processor holds a keyword
//! inside a sentence and a STOP nothing identifies; an operator lists them (audited, with the
//! text and the oldest item's age) and decides; an `opt_out` goes through the opt-out function
//! with source `operator` and contactability honours it.

mod common;

use admin::Admin;
use common::request;
use http::Method;
use optout::OptOutHandler;
use processor::Processor;
use serde_json::{Value, json};
use shared::apigw;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditAction, Channel, OptOutSource, QuarantineBucket, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::optout::contactability::{self, Purpose};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const DECOY: &str = include_str!("../../../tests/fixtures/wa_decoy.json");
const ANA_PHONE: &str = "5491123456789";
const ANA_USER_ID: &str = "AR.13491208655302741918";
const REVIEWS: &str = "/admin/tenants/tenant-a/optout-reviews";

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"review-test-subject-key-secret-0123456789".to_vec()).expect("long enough")
}

struct Fixture {
    admin: Admin,
    stores: Stores,
    clock: SettableClock,
    optout_queue: Arc<EmbeddedQueue>,
}

impl Fixture {
    async fn new() -> Self {
        let clock = SettableClock::at(Timestamp::from_unix_seconds(1_800_003_000));
        let shared_clock: SharedClock = Arc::new(clock.clone());
        let stores = shared::store::embedded::stores(shared_clock.clone());
        common::grant_operator(&stores).await;
        let queue = || Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
        let optout_queue = queue();
        let admin = Admin::new(
            stores.clone(),
            queue(),
            optout_queue.clone(),
            shared_clock.clone(),
            secret(),
        );
        let f = Self {
            admin,
            stores,
            clock,
            optout_queue,
        };
        for (tenant, account) in [("tenant-a", "106540352242922"), ("tenant-b", "106540352249999")] {
            let body = json!({"tenant_id": tenant, "name": tenant, "whatsapp_phone_number_ids": [account]});
            let (status, body) = f.call(Method::POST, "/admin/tenants", Some(body)).await;
            assert_eq!(status, 201, "{body}");
        }
        f
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (i64, Value) {
        let resp = self.admin.handle(&request(method, path, &[], body)).await;
        let body = serde_json::from_str(&apigw::body_text(&resp)).unwrap_or(Value::Null);
        (resp.status_code, body)
    }

    /// Runs a webhook body through the processor, as the ingest queue would.
    async fn ingest(&self, body: &str) {
        let processor = Processor::new(
            self.stores.clone(),
            secret(),
            Arc::new(self.clock.clone()),
            self.optout_queue.clone(),
        );
        use shared::clock::Clock;
        for env in envelope::split(body.as_bytes(), "req-review", self.clock.now())
            .expect("usable")
            .envelopes
        {
            processor.process(&env).await.expect("processed");
        }
    }

    /// Applies what is on the opt-out queue with the opt-out function; returns the commands' sources.
    async fn apply_optouts(&self) -> Vec<OptOutSource> {
        let clock: SharedClock = Arc::new(self.clock.clone());
        let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let handler = OptOutHandler::new(self.stores.clone(), queue(), queue(), clock.clone());
        let mut sources = Vec::new();
        for m in self.optout_queue.receive(10, Duration::ZERO).await.expect("receive") {
            let cmd: shared::optout::command::OptOutCommand = serde_json::from_str(&m.body).expect("command");
            sources.push(cmd.source);
            handler.apply(&cmd).await.expect("applied");
            self.optout_queue.delete(&m.receipt).await.expect("delete");
        }
        sources
    }

    async fn contactable(&self, id: &str) -> Value {
        let (o, c) = (self.stores.opt_outs.as_ref(), self.stores.conversations.as_ref());
        let tenant = TenantId::new("tenant-a").expect("valid");
        let got = contactability::check(o, c, &secret(), &tenant, Channel::WhatsApp, id, Purpose::Service)
            .await
            .expect("answered");
        serde_json::to_value(got).expect("json")
    }
}

fn unidentified_stop() -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [
            {"from": "54911#23456789", "id": "wamid.NOID1", "timestamp": "1800003001", "type": "text", "text": {"body": "BAJA"}}
        ]}}]}]})
    .to_string()
}

#[tokio::test]
async fn operators_see_and_decide_the_review_queue() {
    let f = Fixture::new().await;
    f.ingest(DECOY).await;
    f.clock.advance(time::Duration::seconds(10));
    f.ingest(&unidentified_stop()).await;
    assert!(f.apply_optouts().await.is_empty(), "neither was acted on");
    let bucket = QuarantineBucket::OptOutReview {
        tenant: TenantId::new("tenant-a").expect("valid"),
    };
    let stored = f
        .stores
        .quarantine
        .list(&bucket, &PageRequest::first(10))
        .await
        .expect("list");
    for item in &stored.items {
        assert!(item.expires_at.is_none(), "an undecided review never expires");
    }
    assert!(
        !stored.items[0].envelope.contains(ANA_PHONE) && !stored.items[0].envelope.contains(ANA_USER_ID),
        "the pointer holds no plaintext identifier"
    );

    f.clock.advance(time::Duration::hours(2));
    let (status, listed) = f.call(Method::GET, REVIEWS, None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["oldest_waiting_seconds"], 2 * 3600 + 10);
    let reviews = listed["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 2);
    let (decoy, held) = (&reviews[0], &reviews[1]);
    assert_eq!(decoy["can_opt_out"], true, "{listed}");
    assert!(
        decoy["contact"].as_str().is_some_and(|h| h.starts_with("c_")),
        "{decoy}"
    );
    assert_eq!(
        decoy["message"]["content"]["text"]["body"], "No me den de baja, me encantan sus promos",
        "the operator reads the text"
    );
    assert_eq!(held["can_opt_out"], false);
    assert_eq!(
        held["held"]["text"]["body"], "BAJA",
        "a held opt-out shows the message as it came"
    );
    assert_eq!(
        f.call(Method::GET, "/admin/tenants/tenant-b/optout-reviews", None)
            .await
            .1["reviews"],
        json!([])
    );

    // Bad input: an unknown decision, a scope that is no scope, an extra field, a scope on a
    // dismissal, no body.
    let decoy_path = format!("{REVIEWS}/{}", decoy["id"].as_str().expect("id"));
    for bad in [
        json!({"decision": "maybe"}),
        json!({"decision": "opt_out", "scope": "everything"}),
        json!({"decision": "dismiss", "note": "x"}),
        json!({"decision": "dismiss", "scope": "all"}),
    ] {
        assert_eq!(
            f.call(Method::POST, &decoy_path, Some(bad.clone())).await.0,
            400,
            "{bad}"
        );
    }
    assert_eq!(f.call(Method::POST, &decoy_path, None).await.0, 400, "no body");
    // Bad input: ids that name no item of this tenant.
    let other_tenant = decoy_path.replace("tenant-a", "tenant-b");
    for path in [
        format!("{REVIEWS}/nonsense"),
        format!("{REVIEWS}/1.not-a-uuid"),
        other_tenant,
    ] {
        let (status, _) = f.call(Method::POST, &path, Some(json!({"decision": "dismiss"}))).await;
        assert_eq!(status, 404, "{path}");
    }
    let held_path = format!("{REVIEWS}/{}", held["id"].as_str().expect("id"));
    let (status, body) = f
        .call(Method::POST, &held_path, Some(json!({"decision": "opt_out"})))
        .await;
    assert_eq!(status, 409, "nothing to opt out: {body}");

    assert_eq!(f.contactable(ANA_PHONE).await["contactable"], true);
    let (status, body) = f
        .call(
            Method::POST,
            &decoy_path,
            Some(json!({"decision": "opt_out", "scope": "all"})),
        )
        .await;
    assert_eq!((status, body["decision"].as_str()), (200, Some("opt_out")), "{body}");
    assert_eq!(f.apply_optouts().await, [OptOutSource::Operator]);
    let answer = f.contactable(ANA_PHONE).await;
    assert_eq!(
        (answer["contactable"].as_bool(), answer["source"].as_str()),
        (Some(false), Some("operator"))
    );
    let (status, _) = f
        .call(Method::POST, &held_path, Some(json!({"decision": "dismiss"})))
        .await;
    assert_eq!(status, 200);
    assert!(f.apply_optouts().await.is_empty(), "a dismissal sends nothing");
    let (_, after) = f.call(Method::GET, REVIEWS, None).await;
    assert_eq!(
        (after["reviews"].clone(), after["oldest_waiting_seconds"].clone()),
        (json!([]), Value::Null)
    );
    assert_eq!(
        f.call(Method::POST, &decoy_path, Some(json!({"decision": "dismiss"})))
            .await
            .0,
        404,
        "decided once"
    );

    let audit = common::trail(&f.stores, &common::tenant_chain("tenant-a")).await;
    let reasons: Vec<(AuditAction, &str)> = audit.iter().map(|e| (e.action, e.reason.as_str())).collect();
    assert!(reasons.contains(&(AuditAction::Read, "opt-out review")), "{reasons:?}");
    assert!(
        reasons.contains(&(AuditAction::Change, "opt-out review decided: opt out")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(AuditAction::Change, "opt-out review dismissed")),
        "{reasons:?}"
    );
    let trail = serde_json::to_string(&audit).expect("json");
    assert!(
        !trail.contains(ANA_PHONE) && !trail.contains(ANA_USER_ID),
        "the audit trail holds no identifier"
    );
}

/// A keyword to review from a known sender whose message cannot be stored (bad input: the
/// timestamp is "yesterday"): the item shows the message as it came and can still be decided
/// `opt_out`, which contactability then honours.
#[tokio::test]
async fn a_known_senders_unstorable_message_can_still_be_opted_out() {
    let f = Fixture::new().await;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
    "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [
        {"from": ANA_PHONE, "from_user_id": ANA_USER_ID, "id": "wamid.BROKEN1", "timestamp": "yesterday",
         "type": "text", "text": {"body": "no quiero recibir más mensajes"}}
    ]}}]}]})
    .to_string();
    f.ingest(&body).await;
    assert!(
        f.apply_optouts().await.is_empty(),
        "a keyword to review is not acted on"
    );
    let (status, listed) = f.call(Method::GET, REVIEWS, None).await;
    assert_eq!(status, 200, "{listed}");
    let reviews = listed["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 1, "{listed}");
    let item = &reviews[0];
    assert_eq!(item["can_opt_out"], true, "{item}");
    assert_eq!(item["held"]["text"]["body"], "no quiero recibir más mensajes");
    assert_eq!(item["message"], Value::Null, "nothing stored to point at");

    let path = format!("{REVIEWS}/{}", item["id"].as_str().expect("id"));
    let (status, body) = f
        .call(
            Method::POST,
            &path,
            Some(json!({"decision": "opt_out", "scope": "all"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.apply_optouts().await, [OptOutSource::Operator]);
    assert_eq!(f.contactable(ANA_USER_ID).await["contactable"], false);
    assert_eq!(
        f.contactable(ANA_PHONE).await["contactable"],
        false,
        "every identifier of the contact"
    );
}
