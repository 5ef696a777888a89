//! Retention end to end on DynamoDB Local and the SQS server: the simulated clock moves, the
//! scheduled cleanup runs (`POST /_local/tick`), and what is stored, what is readable and what the
//! compliance report says are checked against the policy's periods.

use e2e::*;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::config::TableKind;
use shared::timestamp::Timestamp;
use time::Duration;

fn whatsapp(wa_id: &str, wamid: &str, at: Timestamp) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": A_WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": A_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Cliente"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": at.unix_seconds().to_string(),
                "type": "text", "text": {"body": "hola"}}],
        }}]}],
    }))
    .expect("json")
}

/// Sends one message, dated by the stack's clock, and waits until it is stored.
async fn message_now(e: &E2e, wa_id: &str, wamid: &str) {
    let (status, body) = e.post_webhook(&whatsapp(wa_id, wamid, e.stack.clock.now())).await;
    assert_eq!(status, 200, "{body}");
    e.drain().await;
}

/// The event times of every message item stored in the conversations table, read by a scan of
/// DynamoDB Local (what is stored, not what reads show).
async fn stored_message_times(e: &E2e) -> Vec<Timestamp> {
    let table = e
        .stack
        .tables
        .as_ref()
        .expect("emulator tables")
        .get(TableKind::Conversations)
        .to_owned();
    e.scan_tables()
        .await
        .into_iter()
        .filter(|(t, _)| *t == table)
        .filter_map(|(_, item)| {
            let at = item.find("S(\"MSG#")? + "S(\"MSG#".len();
            item.get(at..at + 15)?.parse().ok().map(Timestamp::from_unix_millis)
        })
        .collect()
}

async fn compliance(e: &E2e) -> Value {
    let (status, report) = e.admin_get("/admin/compliance").await;
    assert_eq!(status, 200, "{report}");
    report
}

fn figure<'r>(report: &'r Value, figure: &str, tenant: Option<&str>) -> &'r Value {
    report["lines"]
        .as_array()
        .and_then(|lines| {
            lines
                .iter()
                .find(|l| l["figure"] == figure && l["tenant"].as_str() == tenant)
        })
        .unwrap_or_else(|| panic!("no {figure} line for {tenant:?} in {report}"))
}

#[tokio::test]
async fn twenty_five_months_on_no_message_older_than_twenty_four_is_stored_or_readable() {
    let e = E2e::on_emulators().await;
    let start = e.stack.clock.now();
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0, 201);
    message_now(&e, "5491100000001", "wamid.old-1").await;
    message_now(&e, "5491100000001", "wamid.old-2").await;
    e.set_clock(start.plus_months(12)).await;
    message_now(&e, "5491100000002", "wamid.year-1").await;
    assert_eq!(stored_message_times(&e).await.len(), 3);

    let later = start.plus_months(25);
    e.set_clock(later).await;
    // Before the sweep: TTL has not run (DynamoDB Local's clock is not the stack's), reads hide
    // the expired messages already, and the report names what the sweep owes.
    assert_eq!(e.contacts("tenant-a").await.len(), 1, "the expired contact is hidden");
    let before = compliance(&e).await;
    let owed = figure(&before, "contacts_past_expiry", Some("tenant-a"));
    assert_eq!(
        (owed["value"].as_i64(), owed["ok"].as_bool()),
        (Some(1), Some(false)),
        "{before}"
    );
    assert_eq!(before["compliant"], false);

    let run = e.tick("sweep").await;
    assert_eq!(run["complete"], true, "{run}");
    assert_eq!(run["counts"]["ContactsGone"], 1, "{run}");
    // Two messages, the profile and the contact's phone link; and the audit events of the
    // registration, 25 months old (24 months, configurable).
    assert_eq!(run["counts"]["ConversationItemsDeleted"], 4, "{run}");
    assert!(run["counts"]["AuditItemsDeleted"].as_u64() >= Some(1), "{run}");
    let floor = later.minus_months(24);
    let stored = stored_message_times(&e).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored.iter().all(|t| *t > floor), "{stored:?}");
    let left = e.messages("tenant-a", "whatsapp:5491100000002").await;
    assert_eq!(left.len(), 1);

    let report = compliance(&e).await;
    let oldest = figure(&report, "oldest_message_age_days", Some("tenant-a"));
    let (age, limit) = (
        oldest["value"].as_i64().expect("age"),
        oldest["limit"].as_i64().expect("limit"),
    );
    assert!(age <= limit, "oldest message {age} days, limit {limit}: {report}");
    assert_eq!(figure(&report, "contacts_past_expiry", Some("tenant-a"))["value"], 0);
    assert_eq!(figure(&report, "last_sweep_ConversationItemsDeleted", None)["value"], 4);
    let audit = figure(&report, "oldest_audit_event_age_days", None);
    assert!(audit["value"].as_i64() <= audit["limit"].as_i64(), "{report}");
    assert_eq!(report["compliant"], true, "{report}");
    // A second run finds nothing more to do.
    let again = e.tick("sweep").await;
    assert!(again["counts"].get("Deleted").is_none(), "{again}");
    e.stack.stop().await;
}

#[tokio::test]
async fn a_tenant_lowered_to_six_months_keeps_nothing_older_after_a_tick() {
    let e = E2e::on_emulators().await;
    let start = e.stack.clock.now();
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0, 201);
    message_now(&e, "5491100000003", "wamid.eight-months-old").await;
    e.set_clock(start.plus_months(5)).await;
    message_now(&e, "5491100000003", "wamid.three-months-old").await;
    message_now(&e, "5491100000004", "wamid.other-contact").await;
    let now = start.plus_months(8);
    e.set_clock(now).await;
    assert_eq!(
        e.messages("tenant-a", "whatsapp:5491100000003").await.len(),
        2,
        "24 months: both kept"
    );

    let lowered = json!({"tenant_id": "tenant-a", "name": "Tenant tenant-a",
        "whatsapp_phone_number_ids": [A_PHONE_NUMBER_ID], "retention_months": 6});
    let (status, body) = e.admin_post("/admin/tenants", &lowered).await;
    assert_eq!(status, 200, "{body}");
    // Reads honour the new retention at once, before any sweep.
    let readable = e.messages("tenant-a", "whatsapp:5491100000003").await;
    assert_eq!(
        readable.iter().map(|m| m["id"].as_str()).collect::<Vec<_>>(),
        vec![Some("wamid.three-months-old")]
    );
    assert_eq!(stored_message_times(&e).await.len(), 3, "still stored until the sweep");

    // No grace period for what the old retention kept: one tick deletes it.
    let run = e.tick("sweep").await;
    assert_eq!(run["counts"]["ConversationItemsDeleted"], 1, "{run}");
    let floor = now.minus_months(6);
    let stored = stored_message_times(&e).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored.iter().all(|t| *t > floor),
        "nothing older than 6 months: {stored:?}"
    );
    let report = compliance(&e).await;
    assert_eq!(figure(&report, "contacts_past_expiry", Some("tenant-a"))["value"], 0);
    let oldest = figure(&report, "oldest_message_age_days", Some("tenant-a"));
    assert!(oldest["value"].as_i64() <= oldest["limit"].as_i64(), "{report}");
    e.stack.stop().await;
}

#[tokio::test]
async fn a_request_a_day_from_its_deadline_is_due_soon_and_past_it_overdue() {
    let e = E2e::on_emulators().await;
    let request = json!({
        "kind": "access",
        "identifiers": [{"type": "phone", "value": "+54 9 11 2345-6789"}],
        "source": "email",
        "jurisdiction": "ar",
    });
    let (status, created) = e.admin_post("/admin/privacy-requests", &request).await;
    assert_eq!(status, 201, "{created}");
    let due = Timestamp::parse_rfc3339(created["due_at"].as_str().expect("due_at")).expect("rfc3339");

    let quiet = e.tick("monitor").await;
    assert!(quiet["counts"].get("RequestsDueSoon").is_none(), "{quiet}");
    assert!(quiet["counts"].get("RequestsOverdue").is_none(), "{quiet}");

    e.set_clock(due.plus(-Duration::days(1))).await;
    let soon = e.tick("monitor").await;
    assert_eq!(soon["counts"]["RequestsDueSoon"], 1, "{soon}");
    assert!(soon["counts"].get("RequestsOverdue").is_none(), "{soon}");
    let report = compliance(&e).await;
    assert_eq!(figure(&report, "requests_due_within_48h", None)["value"], 1);
    assert_eq!(figure(&report, "soonest_due_days_left", None)["value"], 1);

    e.set_clock(due.plus(Duration::hours(1))).await;
    let late = e.tick("monitor").await;
    assert_eq!(late["counts"]["RequestsOverdue"], 1, "{late}");
    let report = compliance(&e).await;
    let overdue = figure(&report, "overdue_requests", None);
    assert_eq!(
        (overdue["value"].as_i64(), overdue["ok"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(report["compliant"], false);

    // A job the function does not know is a clear 400, and runs nothing.
    let resp = e
        .http
        .post(format!("{}/_local/tick", e.stack.url()))
        .json(&json!({"job": "purge"}))
        .send()
        .await
        .expect("tick");
    assert_eq!(resp.status().as_u16(), 400);
    e.stack.stop().await;
}

fn whatsapp_text(wa_id: &str, wamid: &str, at: Timestamp, text: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&whatsapp(wa_id, wamid, at)).expect("json");
    body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = json!(text);
    serde_json::to_vec(&body).expect("json")
}

#[tokio::test]
async fn an_offboarded_tenant_is_erased_after_its_notice_and_keeps_its_suppression_and_audit() {
    let e = E2e::on_emulators().await;
    let start = e.stack.clock.now();
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0, 201);
    message_now(&e, "5491100000005", "wamid.off-1").await;
    // A STOP (applied, kept in the suppression list) and a keyword inside a sentence (held for
    // review) from a second contact.
    for (wamid, text) in [
        ("wamid.off-stop", "STOP"),
        ("wamid.off-review", "quiero que paren, stop ya por favor"),
    ] {
        let (status, _) = e
            .post_webhook(&whatsapp_text("5491100000006", wamid, start, text))
            .await;
        assert_eq!(status, 200);
    }
    e.drain().await;
    let (status, reviews) = e.admin_get("/admin/tenants/tenant-a/optout-reviews").await;
    assert_eq!(
        (status, reviews["reviews"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{reviews}"
    );

    // Bad input first: an unknown field and a notice out of range change nothing.
    for bad in [json!({"notice": 5}), json!({"notice_days": 400}), json!("thirty days")] {
        let (status, body) = e.admin_post("/admin/tenants/tenant-a/offboard", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, off) = e.admin_post("/admin/tenants/tenant-a/offboard", &json!({})).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["accounts"], json!([]), "its accounts are released: {off}");
    let (status, _) = e.admin_post("/admin/tenants/tenant-a/offboard", &json!({})).await;
    assert_eq!(status, 409, "offboarded once");
    assert_eq!(
        e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0,
        409,
        "its id is not reused"
    );

    // During the notice nothing is erased.
    e.set_clock(start.plus(Duration::days(29))).await;
    let early = e.tick("sweep").await;
    assert!(early["counts"].get("OffboardingErasuresOpened").is_none(), "{early}");
    assert_eq!(e.contacts("tenant-a").await.len(), 2);

    e.set_clock(start.plus(Duration::days(31))).await;
    let run = e.tick("sweep").await;
    assert_eq!(run["counts"]["OffboardingErasuresOpened"], 1, "{run}");
    e.drain().await;
    let tenant = e
        .stack
        .stores
        .tenants
        .get(&shared::domain::TenantId::new("tenant-a").expect("valid"))
        .await
        .expect("get")
        .expect("the tenant record is kept");
    let request = tenant
        .offboarding
        .and_then(|o| o.request)
        .expect("the erasure it opened");
    let (status, done) = e.admin_get(&format!("/admin/privacy-requests/{request}")).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    let receipt = &done["receipt"];
    assert_eq!(receipt["contacts_erased"], 2, "{receipt}");
    assert_eq!(receipt["erased"]["quarantine"], 1, "the review item: {receipt}");
    assert!(e.contacts("tenant-a").await.is_empty());
    // A second tick opens nothing more.
    let again = e.tick("sweep").await;
    assert!(again["counts"].get("OffboardingErasuresOpened").is_none(), "{again}");

    let tables = e.stack.tables.as_ref().expect("emulator tables");
    let items = e.scan_tables().await;
    let of = |kind: TableKind| {
        let name = tables.get(kind).to_owned();
        items.iter().filter(move |(t, _)| *t == name).map(|(_, i)| i.as_str())
    };
    assert!(
        of(TableKind::Conversations).all(|i| !i.contains("S(\"tenant-a#")),
        "no conversation item of the tenant is left"
    );
    assert!(
        of(TableKind::OptOuts).any(|i| i.contains("S(\"tenant-a#")),
        "the STOP is kept"
    );
    assert!(
        of(TableKind::Audit).any(|i| i.contains("S(\"tenant-a\")")),
        "the audit trail is kept"
    );
    e.stack.stop().await;
}
