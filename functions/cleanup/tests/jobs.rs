//! The cleanup's jobs on the embedded stores (the conformance suite holds them to DynamoDB's
//! behaviour; `tests/retention.rs` runs the jobs end to end on the emulators): what the monitor
//! counts and queues, and what a sweep out of time leaves for the next one.

use cleanup::{Cleanup, metric};
use serde_json::json;
use shared::clock::{Clock, SettableClock, SharedClock};
use shared::compliance::Job;
use shared::deadline::{Jurisdiction, RequestKind};
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::retention::RetentionMonths;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    clock: SettableClock,
    stores: Stores,
    erasure: Arc<EmbeddedQueue>,
    cleanup: Cleanup,
}

fn fixture() -> Fixture {
    let clock = SettableClock::at(Timestamp::parse_rfc3339("2027-03-01T10:00:00Z").expect("valid"));
    let shared: SharedClock = Arc::new(clock.clone());
    let (stores, sweeps) = shared::store::embedded::stores_and_sweeps(shared.clone());
    let erasure = Arc::new(EmbeddedQueue::new(shared.clone(), Duration::from_secs(30)));
    let cleanup = Cleanup::new(stores.clone(), sweeps, erasure.clone(), shared);
    Fixture {
        clock,
        stores,
        erasure,
        cleanup,
    }
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: TenantId::new(id).expect("valid"),
        name: id.to_owned(),
        accounts: Vec::new(),
        retention_months: RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        created_at: Timestamp::from_unix_seconds(0),
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
    }
}

fn key(raw: &str) -> Subject {
    let secret = SubjectKeySecret::new(b"cleanup-jobs-test-secret-0123456789".to_vec()).expect("long enough");
    Subject {
        kind: IdentifierKind::Email,
        key: secret.subject_key(&Identifier::parse(IdentifierKind::Email, raw).expect("valid")),
    }
}

fn erasure(now: Timestamp, who: &str) -> PrivacyRequest {
    let mut r = PrivacyRequest::new(NewRequest {
        kind: RequestKind::Erasure,
        source: RequestSource::Email,
        jurisdiction: Jurisdiction::Ar,
        tenant: None,
        subjects: vec![key(who)],
        note: None,
        erase: false,
        rectify: None,
        code: ConfirmationCode::random(),
        now,
        by: "test",
    });
    r.status = RequestStatus::InProgress;
    r
}

#[tokio::test]
async fn an_erasure_with_no_step_for_an_hour_is_queued_again_and_a_running_one_is_not() {
    let f = fixture();
    let start = f.clock.now();
    let stuck = erasure(start, "stuck@example.com");
    f.stores.privacy_requests.create(&stuck).await.expect("create");
    f.clock.set(start.plus(time::Duration::minutes(59)));
    let recent = erasure(f.clock.now(), "running@example.com");
    f.stores.privacy_requests.create(&recent).await.expect("create");
    f.clock.set(start.plus(time::Duration::minutes(61)));
    let run = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(run.counts.get(metric::REQUEUED), Some(&1), "{:?}", run.counts);
    let queued = f.erasure.receive(10, Duration::ZERO).await.expect("receive");
    let jobs: Vec<ErasureJob> = queued
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("a job"))
        .collect();
    assert_eq!(jobs, vec![ErasureJob { request: stuck.id }]);
}

#[tokio::test]
async fn a_review_item_waiting_over_a_day_raises_the_alarm_metric() {
    let f = fixture();
    let acme = tenant("acme");
    f.stores.tenants.register(&acme).await.expect("register");
    let start = f.clock.now();
    let bucket = QuarantineBucket::OptOutReview {
        tenant: acme.id.clone(),
    };
    for (hours, text) in [(0, "old"), (20, "newer")] {
        let e = QuarantineEntry::new(
            bucket.clone(),
            "keyword in a sentence".to_owned(),
            json!({ "text": text }).to_string(),
            start.plus(time::Duration::hours(hours)),
        );
        f.stores.quarantine.put(&e).await.expect("put");
    }
    f.clock.set(start.plus(time::Duration::hours(23)));
    let quiet = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(quiet.counts.get(metric::REVIEWS_WAITING), None);
    f.clock.set(start.plus(time::Duration::hours(25)));
    let run = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(run.counts.get(metric::REVIEWS_WAITING), Some(&1), "only the older one");
    let report = shared::compliance::report(&f.stores, f.clock.now())
        .await
        .expect("report");
    let oldest = report
        .find("oldest_optout_review_hours", Some(&acme.id))
        .expect("a line");
    assert_eq!((oldest.value, oldest.ok), (25, false));
}

#[tokio::test]
async fn a_sweep_out_of_time_stops_and_the_next_one_finishes_without_repeating() {
    let f = fixture();
    let acme = tenant("acme");
    f.stores.tenants.register(&acme).await.expect("register");
    let now = f.clock.now();
    let old = now.minus_months(25);
    let contact = ContactId::new(Channel::WhatsApp, "AR.CLEANUP1").expect("valid");
    for i in 0..3 {
        let at = old.plus(time::Duration::seconds(i));
        let u = ContactUpsert {
            tenant: acme.id.clone(),
            contact: contact.clone(),
            profile_name: None,
            identifiers: Vec::new(),
            seen_at: at,
            expires_at: RetentionMonths::MAX.contact_expiry_for(at),
        };
        let m = Message {
            tenant: acme.id.clone(),
            contact: contact.clone(),
            id: MetaMessageId::new(format!("wamid.c{i}")).expect("valid"),
            direction: Direction::Inbound,
            sent_at: at,
            kind: "text".to_owned(),
            content: json!({"type": "text"}),
            expires_at: RetentionMonths::MAX.expiry_for(at),
        };
        f.stores.conversations.record_message(&u, &m).await.expect("store");
    }
    // No time left (less than the safety margin): nothing is started, the run says so.
    let cut = f.cleanup.run(Job::Sweep, Duration::from_secs(1)).await.expect("sweep");
    assert!(!cut.complete);
    assert_eq!(cut.counts.get(metric::SWEEP_INCOMPLETE), Some(&1));
    assert_eq!(cut.counts.get(metric::DELETED), None);
    let last = f
        .stores
        .retention
        .last_job_run(Job::Sweep)
        .await
        .expect("get")
        .expect("kept");
    assert!(!last.complete, "the incomplete run is what the report sees");
    let full = f.cleanup.run(Job::Sweep, Duration::from_secs(60)).await.expect("sweep");
    assert!(full.complete);
    // Three messages and the profile (the contact has no links).
    assert_eq!(
        full.counts.get(metric::CONVERSATION_ITEMS_DELETED),
        Some(&4),
        "{:?}",
        full.counts
    );
    let again = f.cleanup.run(Job::Sweep, Duration::from_secs(60)).await.expect("sweep");
    assert_eq!(again.counts.get(metric::DELETED), None, "nothing is deleted twice");
    // Nothing of the contact is stored any more, expired or not.
    assert_eq!(f.stores.retention.oldest_item(&acme.id).await.expect("oldest"), None);
    let every = Timestamp::from_unix_millis(i64::MAX);
    let due = f
        .stores
        .retention
        .contacts_due(&acme.id, every, &PageRequest::first(10))
        .await;
    assert!(due.expect("due").items.is_empty());
}

#[tokio::test]
async fn an_unusable_schedule_input_is_a_clear_error_and_runs_nothing() {
    let f = fixture();
    for bad in [json!({"job": "purge"}), json!({"job": 1}), json!(null)] {
        let err = f
            .cleanup
            .handle(&bad, Duration::from_secs(60))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("sweep"), "{bad}: {err}");
    }
    assert_eq!(f.stores.retention.last_job_run(Job::Sweep).await.expect("get"), None);
}

#[tokio::test]
async fn the_monitor_counts_what_is_past_expiry_in_every_table_until_the_sweep_takes_it() {
    let f = fixture();
    let start = f.clock.now();
    let held = QuarantineEntry::new(
        QuarantineBucket::Rejected,
        "not JSON".to_owned(),
        "{oops".to_owned(),
        start,
    );
    f.stores.quarantine.put(&held).await.expect("put");
    // 30 days of quarantine, 48 hours of grace, 2 hours of slack: not late yet at 32 days.
    f.clock.set(start.plus(time::Duration::days(32)));
    let early = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(
        early.counts.get(metric::QUARANTINE_PAST_EXPIRY),
        None,
        "{:?}",
        early.counts
    );
    f.clock.set(start.plus(time::Duration::days(33)));
    let late = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(
        late.counts.get(metric::QUARANTINE_PAST_EXPIRY),
        Some(&1),
        "{:?}",
        late.counts
    );
    assert_eq!(late.counts.get(metric::ITEMS_PAST_EXPIRY), Some(&1));
    let report = shared::compliance::report(&f.stores, f.clock.now())
        .await
        .expect("report");
    let line = report.find("last_monitor_QuarantinePastExpiry", None).expect("a line");
    assert_eq!((line.value, line.ok), (1, false));
    let swept = f.cleanup.run(Job::Sweep, Duration::from_secs(60)).await.expect("sweep");
    assert_eq!(swept.counts.get(metric::QUARANTINE_DELETED), Some(&1));
    let after = f
        .cleanup
        .run(Job::Monitor, Duration::from_secs(60))
        .await
        .expect("monitor");
    assert_eq!(after.counts.get(metric::ITEMS_PAST_EXPIRY), None, "{:?}", after.counts);
}
