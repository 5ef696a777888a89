use super::*;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use shared::clock::SettableClock;
use shared::deadline::Jurisdiction;
use shared::identity::IdentifierKind;
use shared::meta::envelope;
use shared::optout::command::{CommandAction, OptOutCommand};
use shared::store::{ConversationStore, EraseCursor, Page, PageRequest};
use std::sync::Arc;

const EVERY_TYPE: &str = include_str!("../../../tests/fixtures/wa_every_type.json");
const STATUSES: &str = include_str!("../../../tests/fixtures/wa_statuses_out_of_order.json");
const UNKNOWN_ACCOUNT: &str = include_str!("../../../tests/fixtures/wa_unknown_account.json");

fn clock() -> SettableClock {
    SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000))
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"processor-test-secret-processor-test".to_vec()).expect("long enough")
}

async fn with_tenant(stores: &Stores) -> TenantId {
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![ChannelAccount::new(Channel::WhatsApp, "106540352242922").expect("valid")],
        retention_months: shared::retention::RetentionMonths::new(6).expect("valid"),
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
        created_at: Timestamp::from_unix_seconds(0),
    };
    stores.tenants.register(&tenant).await.expect("register");
    tenant.id
}

/// The envelopes the webhook would enqueue for a body.
fn envelopes(body: &str) -> Vec<String> {
    let split = envelope::split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(1_800_000_000)).expect("usable");
    split.envelopes
}

fn optout_queue() -> Arc<shared::queue::embedded::EmbeddedQueue> {
    Arc::new(shared::queue::embedded::EmbeddedQueue::new(
        Arc::new(shared::clock::SystemClock),
        std::time::Duration::from_secs(30),
    ))
}

/// A processor on embedded stores with tenant A registered, and the opt-out queue it writes to.
async fn setup() -> (Processor, Stores, TenantId, Arc<shared::queue::embedded::EmbeddedQueue>) {
    let c = clock();
    let stores = shared::store::embedded::stores(Arc::new(c.clone()));
    let tenant = with_tenant(&stores).await;
    let q = optout_queue();
    (
        Processor::new(stores.clone(), secret(), Arc::new(c), q.clone()),
        stores,
        tenant,
        q,
    )
}

/// The tenant's opt-out review queue, first page.
async fn reviews(stores: &Stores, tenant: &TenantId) -> Vec<QuarantineEntry> {
    let bucket = QuarantineBucket::OptOutReview { tenant: tenant.clone() };
    stores
        .quarantine
        .list(&bucket, &PageRequest::first(10))
        .await
        .expect("list")
        .items
}

fn ana() -> ContactId {
    ContactId::new(Channel::WhatsApp, "AR.13491208655302741918").expect("valid")
}

#[tokio::test]
async fn messages_get_the_tenants_retention_and_replays_are_duplicates() {
    let (p, stores, tenant, _) = setup().await;
    let body = &envelopes(EVERY_TYPE)[0];
    let first = p.process(body).await.expect("processed");
    assert_eq!((first.stored, first.duplicates, first.quarantined), (18, 0, 0));
    let replay = p.process(body).await.expect("processed");
    assert_eq!((replay.stored, replay.duplicates), (0, 18));
    let page = stores
        .conversations
        .list_messages(&tenant, &ana(), &PageRequest::first(100))
        .await
        .expect("list");
    let first_message = &page.items[0];
    // Six months from the event, as the tenant chose.
    assert_eq!(
        first_message.expires_at.as_timestamp(),
        first_message.sent_at.plus_months(6)
    );
}

#[tokio::test]
async fn an_unknown_account_is_held_not_dropped() {
    let (p, stores, _, _) = setup().await;
    let counts = p.process(&envelopes(UNKNOWN_ACCOUNT)[0]).await.expect("processed");
    assert_eq!(counts.unrouted, 1);
    let account = ChannelAccount::new(Channel::WhatsApp, "106540352240000").expect("valid");
    let held = stores
        .quarantine
        .list(&QuarantineBucket::Unrouted { account }, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(held.items.len(), 1);
    // Held twice (a redelivery) is still one entry.
    p.process(&envelopes(UNKNOWN_ACCOUNT)[0]).await.expect("processed");
    let account = ChannelAccount::new(Channel::WhatsApp, "106540352240000").expect("valid");
    let held = stores
        .quarantine
        .list(&QuarantineBucket::Unrouted { account }, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(held.items.len(), 1);
}

#[tokio::test]
async fn a_bad_item_is_quarantined_beside_good_ones() {
    let (p, stores, tenant, _) = setup().await;
    let mut body: serde_json::Value = serde_json::from_str(EVERY_TYPE).expect("json");
    let messages = body["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .expect("messages");
    // Bad input: a timestamp that is not a number, a message without id, a status of unknown kind.
    messages[0]["timestamp"] = serde_json::json!("yesterday");
    messages[1].as_object_mut().expect("object").remove("id");
    body["entry"][0]["changes"][0]["value"]["statuses"] = serde_json::json!([{"id": "wamid.X", "status": "teleported", "timestamp": "1800000000", "recipient_id": "5491123456789"}]);
    let counts = p.process(&envelopes(&body.to_string())[0]).await.expect("processed");
    assert_eq!((counts.stored, counts.quarantined, counts.statuses), (16, 3, 0));
    let held = stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(10))
        .await
        .expect("list");
    let mut reasons: Vec<&str> = held.items.iter().map(|q| q.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3);
    assert!(reasons.iter().any(|r| r.contains("bad timestamp")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("missing field `id`")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("unknown status")), "{reasons:?}");
    let stored = stores
        .conversations
        .list_messages(&tenant, &ana(), &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(stored.items.len(), 16);
}

#[tokio::test]
async fn statuses_out_of_order_end_at_the_furthest_state() {
    let (p, stores, tenant, _) = setup().await;
    let counts = p.process(&envelopes(STATUSES)[0]).await.expect("processed");
    assert_eq!(
        (counts.statuses, counts.duplicates),
        (2, 2),
        "read then failed written; sent and delivered were late"
    );
    let id = MetaMessageId::new("wamid.OUT0001").expect("valid");
    let st = stores
        .conversations
        .get_status(&tenant, &ana(), &id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(st.state, DeliveryState::Read);
}

#[tokio::test]
async fn an_unreadable_envelope_is_quarantined_and_acknowledged() {
    let (p, _, _, _) = setup().await;
    // Bad input: an SQS body that is not an envelope.
    let counts = p.process("{\"hello\": 1}").await.expect("not retried");
    assert_eq!(counts.quarantined, 1);
}

/// A conversation store whose backend is down: the processor must report the record, not lose it.
#[derive(Debug)]
struct Unavailable;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend("connection refused".to_owned()))
}

#[async_trait]
impl ConversationStore for Unavailable {
    async fn upsert_contact(&self, _: &ContactUpsert) -> Result<WriteOutcome, StoreError> {
        down()
    }
    async fn rectify_profile_name(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: &str,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        down()
    }
    async fn get_contact(&self, _: &TenantId, _: &ContactId) -> Result<Option<Contact>, StoreError> {
        down()
    }
    async fn list_contacts(&self, _: &TenantId, _: &PageRequest) -> Result<Page<Contact>, StoreError> {
        down()
    }
    async fn put_message(&self, _: &Message) -> Result<WriteOutcome, StoreError> {
        down()
    }
    async fn list_messages(&self, _: &TenantId, _: &ContactId, _: &PageRequest) -> Result<Page<Message>, StoreError> {
        down()
    }
    async fn get_message(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: Timestamp,
        _: &MetaMessageId,
    ) -> Result<Option<Message>, StoreError> {
        down()
    }
    async fn delete_message(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: &MetaMessageId,
        _: shared::timestamp::Expiry,
    ) -> Result<bool, StoreError> {
        down()
    }
    async fn put_status(&self, _: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        down()
    }
    async fn get_status(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: &MetaMessageId,
    ) -> Result<Option<StatusUpdate>, StoreError> {
        down()
    }
    async fn find_subject(&self, _: &shared::identity::SubjectKey) -> Result<Vec<ContactRef>, StoreError> {
        down()
    }
    async fn erase_contact_batch(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: EraseCursor,
        _: usize,
    ) -> Result<EraseCursor, StoreError> {
        down()
    }
    async fn list_statuses(
        &self,
        _: &TenantId,
        _: &ContactId,
        _: &PageRequest,
    ) -> Result<Page<StatusUpdate>, StoreError> {
        down()
    }
    async fn erasure_reach(
        &self,
        _: &shared::identity::SubjectKey,
    ) -> Result<Vec<shared::domain::ReachedContact>, StoreError> {
        down()
    }
    async fn record_erasure(&self, _: &shared::identity::SubjectKey, _: Timestamp) -> Result<(), StoreError> {
        down()
    }
    async fn erased_at(&self, _: &shared::identity::SubjectKey) -> Result<Option<Timestamp>, StoreError> {
        down()
    }
}

#[tokio::test]
async fn a_store_failure_reports_only_that_record_for_redelivery() {
    let c = clock();
    let mut stores = shared::store::embedded::stores(Arc::new(c.clone()));
    with_tenant(&stores).await;
    stores.conversations = Arc::new(Unavailable);
    let p = Processor::new(stores, secret(), Arc::new(c), optout_queue());
    let record = |id: &str, body: String| {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body);
        m
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        record("needs-store", envelopes(EVERY_TYPE)[0].clone()),
        record("held", envelopes(UNKNOWN_ACCOUNT)[0].clone()),
        record("garbage", "not json".to_owned()),
    ];
    let response = p.handle(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["needs-store"]);
}

/// Everything the processor sent to the opt-out queue.
async fn commands(q: &shared::queue::embedded::EmbeddedQueue) -> Vec<OptOutCommand> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(10, std::time::Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            out.push(serde_json::from_str(&m.body).expect("command"));
        }
    }
}

#[tokio::test]
async fn opt_out_signals_become_commands_and_decoys_go_to_review() {
    let (p, stores, tenant, q) = setup().await;
    let message = |i: u32, kind: &str, content: serde_json::Value| {
        let mut m = serde_json::json!({"from": "5491123456789", "from_user_id": "AR.13491208655302741918",
            "id": format!("wamid.SIG{i}"), "timestamp": "1800000000", "type": kind});
        m[kind] = content;
        m
    };
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
    "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [
        message(1, "text", serde_json::json!({"body": "STOP"})),
        message(2, "button", serde_json::json!({"payload": "STOP_PROMOTIONS", "text": "Stop promotions"})),
        message(3, "text", serde_json::json!({"body": "ayuda"})),
        message(4, "text", serde_json::json!({"body": "No me den de baja, me encantan sus promos"})),
        message(5, "text", serde_json::json!({"body": "hola"})),
    ]}}]}]});
    let counts = p.process(&envelopes(&body.to_string())[0]).await.expect("processed");
    assert_eq!((counts.optout_commands, counts.optout_reviews), (3, 1));
    let sent = commands(&q).await;
    let summary: Vec<(CommandAction, OptOutSource)> = sent.iter().map(|c| (c.action, c.source)).collect();
    assert_eq!(
        summary,
        [
            (CommandAction::OptOut, OptOutSource::Keyword),
            (CommandAction::OptOut, OptOutSource::Button),
            (CommandAction::Help, OptOutSource::Keyword)
        ]
    );
    let bsuid = secret()
        .subject_key(&Identifier::parse(IdentifierKind::WhatsAppUserId, "AR.13491208655302741918").expect("valid"));
    let phone = secret().subject_key(&Identifier::parse(IdentifierKind::Phone, "+5491123456789").expect("valid"));
    assert_eq!(
        sent[0].subject_keys,
        vec![bsuid, phone],
        "the stable id's key first, then every other identifier"
    );
    assert_eq!(sent[0].tenant, tenant);

    // A failed status with 131050: the person stopped marketing messages.
    p.process(&envelopes(STATUSES)[0]).await.expect("processed");
    let sent = commands(&q).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].scope, sent[0].source),
        (OptOutScope::Marketing, OptOutSource::FailedStatus)
    );
    let review = reviews(&stores, &tenant).await;
    assert_eq!(review.len(), 1);
    assert!(
        !review[0].envelope.contains("promos"),
        "the review entry points at the message, no copy"
    );

    // Meta retries the POST an hour later: a new receipt time, the same review item.
    let retried = envelope::split(
        body.to_string().as_bytes(),
        "req-2",
        Timestamp::from_unix_seconds(1_800_003_600),
    )
    .expect("usable");
    let counts = p.process(&retried.envelopes[0]).await.expect("processed");
    assert_eq!(counts.duplicates, 5);
    let review = reviews(&stores, &tenant).await;
    assert_eq!(review.len(), 1, "a retry adds no second item to decide");
}

/// A body with one WhatsApp text message from Ana, with `extra` merged into the message.
fn ana_says(id: &str, seconds: i64, text: &str, extra: serde_json::Value) -> String {
    let mut m = serde_json::json!({"from": "5491123456789", "from_user_id": "AR.13491208655302741918",
        "id": id, "timestamp": seconds.to_string(), "type": "text", "text": {"body": text}});
    if let (Some(m), serde_json::Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [m]}}]}]})
    .to_string()
}

#[tokio::test]
async fn content_too_deep_to_store_is_quarantined_and_a_corrected_copy_is_stored() {
    let (p, stores, tenant, _) = setup().await;
    // Bad input: a field nested 200 deep, past the JSON parser's limit for a stored value.
    let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = ana_says(
        "wamid.DEEP1",
        1_800_000_000,
        "hola",
        serde_json::json!({"extra": "DEEP"}),
    )
    .replace(r#""DEEP""#, &nested);
    let counts = p.process(&envelopes(&body)[0]).await.expect("processed");
    assert_eq!((counts.stored, counts.quarantined), (0, 1), "held, not stored as null");
    let held = stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(10))
        .await
        .expect("list");
    assert!(
        held.items[0].reason.starts_with("message content cannot be stored"),
        "{}",
        held.items[0].reason
    );
    let corrected = ana_says("wamid.DEEP1", 1_800_000_000, "hola", serde_json::json!({}));
    let counts = p.process(&envelopes(&corrected)[0]).await.expect("processed");
    assert_eq!(counts.stored, 1, "the corrected copy is not blocked");
    let page = stores
        .conversations
        .list_messages(&tenant, &ana(), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert!(!page.items[0].content.is_null());
}

#[tokio::test]
async fn a_future_dated_event_counts_from_its_receipt() {
    let (p, stores, tenant, q) = setup().await;
    // Bad input: a message dated 2099, seventy years after it was received.
    let year_2099 = 4_070_908_800;
    let received = Timestamp::from_unix_seconds(1_800_000_000);
    let counts = p
        .process(&envelopes(&ana_says("wamid.FUTURE1", year_2099, "STOP", serde_json::json!({})))[0])
        .await
        .expect("processed");
    assert_eq!(counts.stored, 1);
    let page = stores
        .conversations
        .list_messages(&tenant, &ana(), &PageRequest::first(10))
        .await
        .expect("list");
    let m = &page.items[0];
    assert_eq!(
        m.sent_at,
        Timestamp::from_unix_seconds(year_2099),
        "Meta's time is kept as data"
    );
    let counted = received.plus(shared::timestamp::MAX_FUTURE_SKEW);
    assert_eq!(
        m.expires_at,
        shared::retention::RetentionMonths::new(6)
            .expect("valid")
            .expiry_for(counted)
    );
    let sent = commands(&q).await;
    assert_eq!(
        sent[0].event_at,
        Timestamp::from_unix_seconds(year_2099),
        "identity: Meta's own time"
    );
    assert_eq!(sent[0].order_at, counted, "ordering: no later than receipt");
    // A later message still updates the profile: the 2099 one did not freeze it.
    let later = ana_says("wamid.LATER1", 1_800_003_600, "hola", serde_json::json!({}));
    let mut body: serde_json::Value = serde_json::from_str(&later).expect("json");
    body["entry"][0]["changes"][0]["value"]["contacts"] =
        serde_json::json!([{"profile": {"name": "Ana María"}, "user_id": "AR.13491208655302741918"}]);
    let split = envelope::split(
        body.to_string().as_bytes(),
        "req-2",
        Timestamp::from_unix_seconds(1_800_003_600),
    )
    .expect("usable");
    p.process(&split.envelopes[0]).await.expect("processed");
    let contact = stores
        .conversations
        .get_contact(&tenant, &ana())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(contact.profile_name.as_deref(), Some("Ana María"));
    assert!(contact.expires_at.as_timestamp() < Timestamp::from_unix_seconds(year_2099));
}

#[tokio::test]
async fn a_stop_from_a_sender_nothing_identifies_is_held_and_alarmed() {
    let (p, stores, tenant, q) = setup().await;
    // Bad input: a sender id with '#', which no key can hold, and no other identifier.
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
    "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [
        {"from": "54911#23456789", "id": "wamid.NOID1", "timestamp": "1800000000", "type": "text", "text": {"body": "BAJA"}},
        {"from": "54911#23456789", "id": "wamid.NOID2", "timestamp": "1800000000", "type": "text", "text": {"body": "hola"}}
    ]}}]}]});
    let counts = p.process(&envelopes(&body.to_string())[0]).await.expect("processed");
    assert_eq!(
        (counts.optouts_held, counts.quarantined),
        (1, 1),
        "the STOP is held; the greeting rejected"
    );
    assert!(commands(&q).await.is_empty());
    let held = reviews(&stores, &tenant).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].reason, "WhatsApp message: no usable sender");
    assert!(
        held[0].envelope.contains("BAJA"),
        "a person needs the message to decide"
    );
}

/// Every body on an embedded queue, taken off it.
async fn bodies(q: &shared::queue::embedded::EmbeddedQueue) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(10, std::time::Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            out.push(serde_json::from_str(&m.body).expect("json"));
        }
    }
}

#[tokio::test]
async fn a_deletion_phrase_in_the_chat_opens_an_approved_erasure_and_queues_its_link() {
    let c = clock();
    let stores = shared::store::embedded::stores(Arc::new(c.clone()));
    let tenant = with_tenant(&stores).await;
    let (erasure, outbound) = (optout_queue(), optout_queue());
    let chat = ChatErasure::new(
        stores.privacy_requests.clone(),
        erasure.clone(),
        outbound.clone(),
        "http://127.0.0.1:3000",
        &secret(),
    );
    let p = Processor::new(stores.clone(), secret(), Arc::new(c), optout_queue()).with_chat_erasure(chat);
    let asked = ana_says(
        "wamid.DEL1",
        1_800_000_000,
        "Borrar mis datos, por favor!",
        serde_json::json!({}),
    );
    let counts = p.process(&envelopes(&asked)[0]).await.expect("processed");
    assert_eq!((counts.chat_erasures, counts.optout_commands), (1, 0));

    let far = Timestamp::from_unix_seconds(253_402_300_799);
    let open = stores
        .privacy_requests
        .open_due_before(far, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    assert_eq!(open.len(), 1);
    let r = &open[0];
    assert_eq!(
        (r.kind, r.status, r.source),
        (
            shared::deadline::RequestKind::Erasure,
            RequestStatus::Approved,
            RequestSource::WhatsApp
        )
    );
    assert_eq!(
        r.tenant.as_ref(),
        Some(&tenant),
        "only this tenant: the one she wrote to"
    );
    let bsuid = secret()
        .subject_key(&Identifier::parse(IdentifierKind::WhatsAppUserId, "AR.13491208655302741918").expect("valid"));
    let phone = secret().subject_key(&Identifier::parse(IdentifierKind::Phone, "+5491123456789").expect("valid"));
    let mut keys: Vec<_> = r.subject_keys().cloned().collect();
    keys.sort();
    let mut want = vec![bsuid, phone];
    want.sort();
    assert_eq!(keys, want, "every identifier of the sender");
    let jobs = bodies(&erasure).await;
    assert_eq!(jobs, vec![serde_json::json!({"request": r.id})]);
    let replies = bodies(&outbound).await;
    assert_eq!(replies.len(), 1);
    let link = format!("http://127.0.0.1:3000/privacy/requests/{}", r.code.as_str());
    assert_eq!(replies[0]["kind"], "erasure_received");
    assert_eq!(replies[0]["language"], "es");
    assert!(
        replies[0]["text"].as_str().unwrap_or_default().ends_with(&link),
        "{}",
        replies[0]
    );

    // Meta delivers it again: the same request (and its job, queued again), no second one.
    p.process(&envelopes(&asked)[0]).await.expect("processed");
    let again = stores
        .privacy_requests
        .open_due_before(far, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    assert_eq!(again.len(), 1);
    assert_eq!(bodies(&erasure).await, vec![serde_json::json!({"request": r.id})]);
    assert_eq!(
        bodies(&outbound).await[0]["dedup_key"],
        replies[0]["dedup_key"],
        "the sender drops the repeat"
    );

    // Decoys: a question about it, the phrase inside a longer message, half of it.
    for (i, text) in [
        "¿Cómo hago para borrar mis datos?",
        "quiero borrar mis datos de la tarjeta",
        "borrar",
    ]
    .iter()
    .enumerate()
    {
        let decoy = ana_says(&format!("wamid.DECOY{i}"), 1_800_000_100, text, serde_json::json!({}));
        let counts = p.process(&envelopes(&decoy)[0]).await.expect("processed");
        assert_eq!((counts.chat_erasures, counts.stored), (0, 1), "{text}");
    }
    assert!(bodies(&erasure).await.is_empty());
}
