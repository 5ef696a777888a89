//! The outbound sender end to end, on DynamoDB Local, the SQS server and the loopback Graph API:
//! what a person who wrote, said STOP and START receives; what a tenant's system can send and is
//! told; Meta throttling, failing and refusing; a crash between the claim and its record.

use async_trait::async_trait;
use e2e::*;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::{Channel, ChannelAccount, ContactId, DeliveryState, MetaMessageId, TenantId};
use shared::outbound::{Claim, OutboundCommand, OutboxEntry, Outcome};
use shared::store::{OutboxStore, Page, PageRequest, StoreError};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ANA_WA_ID: &str = "5491123456789";
const ANA_BSUID: &str = "AR.13491208655302741918";

/// A WhatsApp text from Ana to tenant A, `ago` seconds before the stack's clock.
fn ana_says(e: &E2e, wamid: &str, text: &str, ago: i64) -> Vec<u8> {
    let at = e.stack.clock.now().unix_seconds() - ago;
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": A_WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": A_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ana Pérez"}, "wa_id": ANA_WA_ID, "user_id": ANA_BSUID}],
            "messages": [{"from": ANA_WA_ID, "from_user_id": ANA_BSUID, "id": wamid, "timestamp": at.to_string(),
                "type": "text", "text": {"body": text}}],
        }}]}],
    }))
    .expect("json")
}

/// Meta's status of a message the business sent to Ana.
fn status_of(e: &E2e, wamid: &str, status: &str) -> Vec<u8> {
    let at = e.stack.clock.now().unix_seconds();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": A_WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": A_PHONE_NUMBER_ID},
            "statuses": [{"id": wamid, "status": status, "timestamp": at.to_string(),
                "recipient_id": ANA_WA_ID, "recipient_user_id": ANA_BSUID}],
        }}]}],
    }))
    .expect("json")
}

fn text(body: &str) -> Value {
    json!({"type": "text", "body": body})
}

fn template(name: &str, category: &str) -> Value {
    json!({"type": "template", "name": name, "language": "es_AR", "category": category,
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "4417"}]}]})
}

/// Tenant A registered with its token, and Ana's first message: her handle.
async fn tenant_a_and_ana(e: &E2e) -> String {
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID, A_WABA], &[]).await.0, 201);
    assert_eq!(
        e.post_webhook(&ana_says(e, "wamid.ANA-1", "hola, ¿tienen talle M?", 60))
            .await
            .0,
        200
    );
    e.drain().await;
    e.handle("tenant-a", &format!("whatsapp:{ANA_BSUID}")).await
}

/// Queues a tenant message, waits for the sender, and answers how it went.
async fn send_and_wait(e: &E2e, key: &str, handle: &str, content: Value) -> Value {
    let (status, body) = e.send_message("tenant-a", key, handle, content).await;
    assert_eq!(status, 202, "{body}");
    e.drain().await;
    e.sent("tenant-a", key).await
}

#[tokio::test]
async fn after_stop_exactly_one_confirmation_leaves_a_tenant_reply_is_refused_and_start_lets_replies_through() {
    let (graph, e) = E2e::with_graph().await;
    let ana = tenant_a_and_ana(&e).await;

    let first = send_and_wait(&e, "reply-1", &ana, text("¡Sí! Tenemos talle M.")).await;
    assert_eq!(first["state"], "sent", "{first}");
    let sends = graph.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].path, format!("/v23.0/{A_PHONE_NUMBER_ID}/messages"));
    assert_eq!(
        sends[0].authorization.as_deref(),
        Some(format!("Bearer {GRAPH_TOKEN}").as_str())
    );
    assert_eq!(first["message_id"], "wamid.loopback1");
    // Stored in Ana's conversation, and Meta's statuses attach to it.
    let messages = e.messages("tenant-a", &format!("whatsapp:{ANA_BSUID}")).await;
    let out: Vec<&Value> = messages.iter().filter(|m| m["direction"] == "outbound").collect();
    assert_eq!(out.len(), 1, "{messages:?}");
    assert_eq!(out[0]["id"], "wamid.loopback1");
    assert_eq!(
        e.post_webhook(&status_of(&e, "wamid.loopback1", "delivered")).await.0,
        200
    );
    e.drain().await;
    let ana_id = ContactId::new(Channel::WhatsApp, ANA_BSUID).expect("valid");
    let tenant = TenantId::new("tenant-a").expect("valid");
    let status = e
        .stack
        .stores
        .conversations
        .get_status(&tenant, &ana_id, &MetaMessageId::new("wamid.loopback1").expect("valid"))
        .await
        .expect("read")
        .expect("the status is kept");
    assert_eq!(status.state, DeliveryState::Delivered);

    // The same key again: the same send, not a second one; with another message: refused.
    let (status, again) = e
        .send_message("tenant-a", "reply-1", &ana, text("¡Sí! Tenemos talle M."))
        .await;
    assert_eq!((status, again["state"].as_str()), (200, Some("sent")), "{again}");
    let (status, _) = e.send_message("tenant-a", "reply-1", &ana, text("otra cosa")).await;
    assert_eq!(status, 409);
    e.drain().await;
    assert_eq!(graph.sends().len(), 1);

    // STOP: one confirmation reaches Meta, once, whatever SQS redelivers.
    assert_eq!(e.post_webhook(&ana_says(&e, "wamid.ANA-STOP", "STOP", 30)).await.0, 200);
    e.drain().await;
    assert_eq!(e.post_webhook(&ana_says(&e, "wamid.ANA-STOP", "STOP", 30)).await.0, 200);
    e.drain().await;
    let sends = graph.sends();
    assert_eq!(sends.len(), 2, "exactly one confirmation: {sends:?}");
    let confirmation = sends[1].body.clone().expect("body");
    assert_eq!(confirmation["recipient"], ANA_BSUID);
    assert!(
        confirmation["text"]["body"]
            .as_str()
            .is_some_and(|t| t.contains("Tenant tenant-a")),
        "{confirmation}"
    );

    let refused = send_and_wait(&e, "reply-2", &ana, text("¿Te reservamos uno?")).await;
    assert_eq!(
        (refused["state"].as_str(), refused["refusal"].as_str()),
        (Some("refused"), Some("opted_out")),
        "{refused}"
    );
    assert_eq!(graph.sends().len(), 2, "nothing reached Meta");

    assert_eq!(
        e.post_webhook(&ana_says(&e, "wamid.ANA-START", "START", 10)).await.0,
        200
    );
    e.drain().await;
    assert_eq!(graph.sends().len(), 3, "START's confirmation");
    let flowing = send_and_wait(&e, "reply-3", &ana, text("¡Bienvenida de vuelta!")).await;
    assert_eq!(flowing["state"], "sent", "{flowing}");
    assert_eq!(graph.sends().len(), 4);
    e.stack.stop().await;
    graph.stop().await;
}

#[tokio::test]
async fn outside_the_24_hour_window_free_text_is_refused_with_a_reason_and_a_template_is_sent() {
    let (graph, e) = E2e::with_graph().await;
    let ana = tenant_a_and_ana(&e).await;
    e.set_clock(e.stack.clock.now().plus(time::Duration::hours(25))).await;
    let late = send_and_wait(&e, "late-text", &ana, text("¿Seguís interesada?")).await;
    assert_eq!(
        (late["state"].as_str(), late["refusal"].as_str()),
        (Some("refused"), Some("outside_window")),
        "{late}"
    );
    let sent = send_and_wait(&e, "late-template", &ana, template("order_update", "utility")).await;
    assert_eq!(sent["state"], "sent", "{sent}");
    let sends = graph.sends();
    assert_eq!(sends.len(), 1);
    let body = sends[0].body.clone().expect("body");
    assert_eq!(
        (body["type"].as_str(), body["template"]["name"].as_str()),
        (Some("template"), Some("order_update"))
    );

    // Bad input is refused at the door, naming what is wrong, and nothing is queued.
    for (key, to, content, field) in [
        ("", ana.as_str(), text("hola"), "Idempotency-Key"),
        ("bad key!", ana.as_str(), text("hola"), "Idempotency-Key"),
        ("k-1", "c_not-a-handle", text("hola"), "to"),
        ("k-2", ana.as_str(), text(""), "content"),
        (
            "k-3",
            ana.as_str(),
            json!({"type": "template", "name": "Bad Name", "language": "es", "category": "utility"}),
            "content",
        ),
        ("k-4", ana.as_str(), json!({"type": "fax"}), "body"),
    ] {
        let (status, body) = e.send_message("tenant-a", key, to, content).await;
        assert_eq!(status, 400, "{key:?}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|m| m.starts_with(field)),
            "{key:?}: {body}"
        );
    }
    e.drain().await;
    assert_eq!(graph.sends().len(), 1);
    e.stack.stop().await;
    graph.stop().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_a_permanent_refusal_is_not_and_each_is_recorded() {
    let (graph, e) = E2e::with_graph().await;
    let ana = tenant_a_and_ana(&e).await;
    graph.fail_next_with(&[(429, 4), (503, 2)]);
    let sent = send_and_wait(&e, "after-429", &ana, text("hola")).await;
    assert_eq!(sent["state"], "sent", "{sent}");
    assert_eq!(graph.sends().len(), 3, "two refusals, then the send");

    // Undeliverable: asked once, recorded with Meta's code.
    graph.fail_next_with(&[(400, 131026)]);
    let failed = send_and_wait(&e, "undeliverable", &ana, text("hola")).await;
    assert_eq!(
        (failed["state"].as_str(), failed["error_code"].as_i64()),
        (Some("failed"), Some(131026)),
        "{failed}"
    );
    assert_eq!(graph.sends().len(), 4);

    // Marketing stopped inside WhatsApp: recorded, and Ana is opted out of marketing.
    graph.fail_next_with(&[(400, 131050)]);
    let promo = send_and_wait(&e, "promo", &ana, template("promo_navidad", "marketing")).await;
    assert_eq!(promo["error_code"], 131050, "{promo}");
    e.drain().await;
    let marketing = e.contactability("tenant-a", "whatsapp", ANA_BSUID, "marketing").await;
    assert_eq!(
        (marketing["contactable"].as_bool(), marketing["scope"].as_str()),
        (Some(false), Some("marketing")),
        "{marketing}"
    );
    let promo_again = send_and_wait(&e, "promo-2", &ana, template("promo_navidad", "marketing")).await;
    assert_eq!(promo_again["refusal"], "marketing_opted_out", "{promo_again}");
    assert_eq!(graph.sends().len(), 5);
    e.stack.stop().await;
    graph.stop().await;
}

/// The stack's outbox, whose first `finish` fails: the process died after the send, before
/// recording it.
#[derive(Debug)]
struct CrashBeforeRecord {
    inner: Arc<dyn OutboxStore>,
    crashed: AtomicBool,
}

#[async_trait]
impl OutboxStore for CrashBeforeRecord {
    async fn claim(&self, entry: &OutboxEntry) -> Result<Claim, StoreError> {
        self.inner.claim(entry).await
    }
    async fn finish(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        if !self.crashed.swap(true, Ordering::SeqCst) {
            return Err(StoreError::Backend("the process died here".to_owned()));
        }
        self.inner.finish(tenant, key, attempt, outcome, at).await
    }
    async fn release(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        self.inner.release(tenant, key, attempt, at).await
    }
    async fn release_for_resend(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.release_for_resend(tenant, key, attempt, at).await
    }
    async fn mark_stale(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        self.inner.mark_stale(tenant, key, attempt, at).await
    }
    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.inner.get(tenant, key).await
    }
    async fn stale(&self, page: &PageRequest) -> Result<Page<OutboxEntry>, StoreError> {
        self.inner.stale(page).await
    }
    async fn erase_stale(&self, tenant: &TenantId, contact: &ContactId) -> Result<u64, StoreError> {
        self.inner.erase_stale(tenant, contact).await
    }
    async fn take_send_slot(&self, account: &ChannelAccount, second: i64, limit: u32) -> Result<bool, StoreError> {
        self.inner.take_send_slot(account, second, limit).await
    }
    async fn last_inbound(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        since: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.inner.last_inbound(tenant, contact, since).await
    }
}

/// A sender over the stack's tables (on DynamoDB Local), queues and Meta, its stores counting
/// capacity on `meter`, its outbox as `outbox` makes it.
async fn sender_over(
    e: &E2e,
    graph: &local_stack::graph_server::GraphServer,
    meter: &shared::store::dynamodb::CapacityMeter,
    outbox: impl FnOnce(Arc<dyn OutboxStore>) -> Arc<dyn OutboxStore>,
) -> sender::Sender {
    let tables = e.stack.tables.clone().expect("tables on DynamoDB Local");
    let endpoints = shared::config::Endpoints {
        dynamodb: Some(std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT")),
        ..Default::default()
    };
    let dynamo = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    let clock: shared::clock::SharedClock = Arc::new(e.stack.clock.clone());
    let stores = shared::store::dynamodb::stores(&dynamo, &tables, clock.clone(), meter);
    sender::Sender::new(
        sender::SenderStores {
            conversations: stores.conversations,
            opt_outs: stores.opt_outs,
            tenants: stores.tenants,
            privacy_requests: stores.privacy_requests,
            outbox: outbox(shared::store::dynamodb::outbox(&dynamo, &tables, clock.clone(), meter)),
        },
        Arc::new(shared::meta::send::GraphSender::new(&graph.base_url(), &graph.base_url()).expect("client")),
        Arc::new(shared::meta::send::StaticTokens::new([(
            token_secret("tenant-a"),
            shared::meta::graph::GraphToken::new(GRAPH_TOKEN),
        )])),
        e.stack.queues[&shared::config::QueueKind::OptOut].clone(),
        clock,
    )
}

fn tenant_text(e: &E2e, key: &str, body: &str) -> OutboundCommand {
    OutboundCommand::Message(shared::outbound::TenantMessage {
        tenant: TenantId::new("tenant-a").expect("valid"),
        to: ContactId::new(Channel::WhatsApp, ANA_BSUID).expect("valid"),
        client_key: shared::outbound::ClientKey::new(key).expect("valid"),
        content: shared::outbound::Content::Text { body: body.to_owned() },
        requested_by: OPERATOR.to_owned(),
        requested_at: e.stack.clock.now(),
    })
}

/// Budgets per command (write units, read units), on DynamoDB Local through the real adapters.
/// Capacity units are deterministic, so the budget is a test; BENCHMARKS.md has the figures.
const SEND_BUDGETS: &[(&str, f64, f64)] = &[
    ("a tenant's text to a known contact, sent", 4.0, 10.0),
    ("the same command redelivered", 2.0, 2.5),
    ("a tenant's text after STOP, refused", 2.0, 9.5),
    ("a system reply (help), sent", 3.0, 3.5),
];

#[tokio::test]
async fn what_one_outbound_message_costs_in_capacity_units_stays_within_budget() {
    let (graph, e) = E2e::with_graph().await;
    let _ana = tenant_a_and_ana(&e).await;
    let meter = shared::store::dynamodb::CapacityMeter::default();
    let metered = sender_over(&e, &graph, &meter, |o| o).await;
    let mut measured = Vec::new();
    let mut measure = |name: &'static str, before: shared::store::dynamodb::Units| {
        let after = meter.total();
        measured.push((name, after.write - before.write, after.read - before.read));
    };
    let before = meter.total();
    let sent = tenant_text(&e, "cost-1", "¿Te reservo el talle M?");
    assert!(matches!(
        metered.deliver(&sent).await,
        Ok(sender::Delivery::Sent { .. })
    ));
    measure(SEND_BUDGETS[0].0, before);
    let before = meter.total();
    assert!(matches!(
        metered.deliver(&sent).await,
        Ok(sender::Delivery::Duplicate(_))
    ));
    measure(SEND_BUDGETS[1].0, before);

    assert_eq!(e.post_webhook(&ana_says(&e, "wamid.COST-STOP", "STOP", 5)).await.0, 200);
    e.drain().await;
    let before = meter.total();
    let refused = tenant_text(&e, "cost-2", "¿Y el azul?");
    assert!(matches!(
        metered.deliver(&refused).await,
        Ok(sender::Delivery::Refused(_))
    ));
    measure(SEND_BUDGETS[2].0, before);

    let reply = OutboundCommand::Reply(shared::optout::command::OutboundReply {
        tenant: TenantId::new("tenant-a").expect("valid"),
        to: ContactId::new(Channel::WhatsApp, ANA_BSUID).expect("valid"),
        kind: shared::optout::command::ReplyKind::Help,
        language: shared::domain::Locale::Spanish,
        text: "Escribí BAJA para no recibir más mensajes.".to_owned(),
        dedup_key: "cost-help".to_owned(),
        request: None,
        answering_at: Some(e.stack.clock.now()),
    });
    let before = meter.total();
    assert!(matches!(
        metered.deliver(&reply).await,
        Ok(sender::Delivery::Sent { .. })
    ));
    measure(SEND_BUDGETS[3].0, before);

    println!("| case | write units | read units | budget (write / read) |");
    println!("| --- | --- | --- | --- |");
    for ((name, write, read), (_, max_write, max_read)) in measured.iter().zip(SEND_BUDGETS) {
        println!("| {name} | {write:.2} | {read:.2} | ≤ {max_write} / ≤ {max_read} |");
    }
    for ((name, write, read), (_, max_write, max_read)) in measured.iter().zip(SEND_BUDGETS) {
        assert!(
            write <= max_write && read <= max_read,
            "{name}: {write} write, {read} read units"
        );
    }
    e.stack.stop().await;
    graph.stop().await;
}

#[tokio::test]
async fn a_redelivery_after_a_crash_between_claim_and_record_sends_nothing_and_the_claim_is_alarmed_and_listed() {
    let (graph, e) = E2e::with_graph().await;
    let _ana = tenant_a_and_ana(&e).await;
    // A sender over the stack's own tables, queues and Meta, whose process dies once.
    let crashing = sender_over(&e, &graph, &Default::default(), |outbox| {
        Arc::new(CrashBeforeRecord {
            inner: outbox,
            crashed: AtomicBool::new(false),
        })
    })
    .await;
    let command = tenant_text(&e, "crash-1", "Tu turno es mañana");
    let event = || {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.message_id = Some("sqs-1".to_owned());
        record.body = Some(serde_json::to_string(&command).expect("json"));
        let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
        event.records = vec![record];
        event
    };
    let (first, _) = crashing.handle_counted(event(), std::time::Duration::MAX).await;
    assert_eq!(
        first.batch_item_failures.len(),
        1,
        "the outcome was not recorded: SQS redelivers"
    );
    assert_eq!(graph.sends().len(), 1, "the message left before the crash");

    // SQS redelivers after the visibility timeout.
    e.set_clock(e.stack.clock.now().plus(time::Duration::minutes(3))).await;
    let (second, counters) = crashing.handle_counted(event(), std::time::Duration::MAX).await;
    assert!(second.batch_item_failures.is_empty());
    assert!(counters.contains(&(sender::STALE_CLAIMS, 1)), "alarmed: {counters:?}");
    assert_eq!(graph.sends().len(), 1, "and was not sent a second time");

    let (status, listed) = e.admin_get("/admin/outbound/stale").await;
    assert_eq!(status, 200, "{listed}");
    let stale = listed["stale"].as_array().expect("a list");
    assert_eq!(stale.len(), 1, "{listed}");
    assert_eq!(
        (stale[0]["tenant"].as_str(), stale[0]["key"].as_str()),
        (Some("tenant-a"), Some("crash-1"))
    );
    assert!(!listed.to_string().contains("mañana"), "no content in the listing");

    // The operator checked with Meta that it did not arrive, and resends it: once more, recorded.
    let (status, body) = e
        .admin_post("/admin/tenants/tenant-a/messages/crash-1/resend", &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    e.drain().await;
    assert_eq!(graph.sends().len(), 2);
    let resent = e.sent("tenant-a", "crash-1").await;
    assert_eq!(
        (resent["state"].as_str(), resent["attempt"].as_u64()),
        (Some("sent"), Some(2)),
        "{resent}"
    );
    let (_, listed) = e.admin_get("/admin/outbound/stale").await;
    assert_eq!(listed["stale"].as_array().map(Vec::len), Some(0));
    let (status, _) = e
        .admin_post("/admin/tenants/tenant-a/messages/crash-1/resend", &json!({}))
        .await;
    assert_eq!(status, 409, "only a stale send can be resent");

    // Another crash leaves a stale send holding a message to Ana; then she asks to be erased:
    // the stale send goes with the rest of her data, counted in the receipt.
    let crashing = sender_over(&e, &graph, &Default::default(), |outbox| {
        Arc::new(CrashBeforeRecord {
            inner: outbox,
            crashed: AtomicBool::new(false),
        })
    })
    .await;
    let second = tenant_text(&e, "crash-2", "Tu turno es el lunes");
    assert!(crashing.deliver(&second).await.is_err());
    e.set_clock(e.stack.clock.now().plus(time::Duration::minutes(3))).await;
    assert_eq!(
        crashing.deliver(&second).await.expect("decided"),
        sender::Delivery::Stale
    );
    let request = json!({"kind": "erasure", "source": "email",
        "identifiers": [{"type": "whatsapp_user_id", "value": ANA_BSUID}]});
    let (status, created) = e.admin_post("/admin/privacy-requests", &request).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, approved) = e
        .admin_post(
            &format!("/admin/privacy-requests/{id}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    e.drain().await;
    let (_, done) = e.admin_get(&format!("/admin/privacy-requests/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["receipt"]["erased"]["outbox"], 1, "{done}");
    // Still listed (it may have reached her), but without her or the message: it cannot be resent.
    let (_, listed) = e.admin_get("/admin/outbound/stale").await;
    let stale = listed["stale"].as_array().cloned().unwrap_or_default();
    assert_eq!(stale.len(), 1, "{listed}");
    assert!(stale[0]["contact"].is_null(), "{listed}");
    let (status, _) = e
        .admin_post("/admin/tenants/tenant-a/messages/crash-2/resend", &json!({}))
        .await;
    assert_eq!(status, 409, "an erased person's message is not sent again");
    assert_eq!(
        graph.sends().len(),
        3,
        "the crashed attempt's copy and the resend of crash-1, and this one's first"
    );
    e.stack.stop().await;
    graph.stop().await;
}
