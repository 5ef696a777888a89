//! No personal datum reaches a log line or a panic message of the processor: the fixtures, bodies
//! full of names, phones (in several formats), emails, usernames and texts, and hostile queue
//! bodies (not envelopes, broken payloads, identifiers that do not normalize, unknown accounts,
//! opt-outs nothing identifies), with the opt-out queue refusing and panicking too.
//!
//! Its own test binary: the log capture is the process-wide subscriber and the panic hook is
//! process-wide, so no other test's callsites or threads interfere with what is captured.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use processor::Processor;
use serde_json::{Value, json};
use shared::clock::SettableClock;
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ChannelAccount, Locale, Tenant, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::queue::{Queue, QueueError, ReceivedMessage};
use shared::timestamp::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EVERY_TYPE: &str = include_str!("../../../tests/fixtures/wa_every_type.json");
const STATUSES: &str = include_str!("../../../tests/fixtures/wa_statuses_out_of_order.json");
const UNKNOWN_ACCOUNT: &str = include_str!("../../../tests/fixtures/wa_unknown_account.json");
const INSTAGRAM: &str = include_str!("../../../tests/fixtures/ig_every_event.json");

// ---- The personal data fed in, and every form of it that must not come out. ----

const NAME: &str = "Zoraida Quintanilla";
const PHONE_FORMATS: &[&str] = &[
    "+54 9 11 4729-3816",
    "+5491147293816",
    "5491147293816",
    "011 15 4729-3816",
];
const MX_PHONE: &str = "+52 1 55 8136 2947";
const EMAIL: &str = "Zoraida.Quintanilla@Correo-Ejemplo.com";
const IG_USERNAME: &str = "@Zora.Quinta_99";
const BSUID: &str = "AR.82736450192837465019";
const IGSID: &str = "7088123456789012";
const TEXT: &str = "mi clave del banco es 4417, vivo en Calle Ayacucho 1542";

/// Searched case-insensitively in everything captured: the data above and their normalized forms
/// (E.164 and national digits of the phones, the lower-case email and username).
const MUST_NOT_APPEAR: &[&str] = &[
    "Zoraida",
    "Quintanilla",
    "5491147293816",
    "91147293816",
    "1147293816",
    "4729-3816",
    "47293816",
    "4729 3816",
    "525581362947",
    "5581362947",
    "8136 2947",
    "zoraida.quintanilla@correo-ejemplo.com",
    "correo-ejemplo",
    "zora.quinta_99",
    "Zora.Quinta",
    "AR.8273645",
    "82736450192837465019",
    "7088123456789012",
    "clave del banco",
    "Ayacucho",
];

/// The fixtures' person, searched as written (case matters: "ana" is in ordinary words).
const FIXTURE_DATA: &[&str] = &[
    "Ana",
    "Pérez",
    "5491123456789",
    "+549",
    "AR.1349",
    "7012345678901234",
    "Hola",
    "stock",
    "hola desde IG",
];

// ---- Capture: every tracing event and span at TRACE, as JSON lines, and every panic message. ----

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Capture {
    logs: Captured,
    panics: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    fn install() -> Self {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(move || writer.clone())
            .init();
        let panics = Arc::new(Mutex::new(Vec::new()));
        let recorded = panics.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The whole report: message and location, as the default hook prints it.
            recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(info.to_string());
            previous(info);
        }));
        Self { logs, panics }
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    fn panics(&self) -> Vec<String> {
        self.panics.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Panics recorded so far, then every captured line: no personal datum in any of them.
    fn assert_clean(&self) {
        let panics = self.panics().join("\n");
        let logs = self.logs();
        for (what, text) in [("a panic message", &panics), ("the logs", &logs)] {
            let lower = text.to_lowercase();
            for datum in MUST_NOT_APPEAR {
                assert!(
                    !lower.contains(&datum.to_lowercase()),
                    "{datum:?} leaked into {what}:\n{text}"
                );
            }
            for datum in FIXTURE_DATA {
                assert!(!text.contains(datum), "{datum:?} leaked into {what}:\n{text}");
            }
        }
    }
}

// ---- Bodies. ----

const WA_ACCOUNT: &str = "106540352242922";
const IG_ACCOUNT: &str = "17841400000001";

/// A WhatsApp change from the person: `messages` (each given), with their contact card.
fn whatsapp_change(field: &str, from: Value, user_id: Value, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({"display_phone_number": "5491155550000", "phone_number_id": WA_ACCOUNT});
    value["contacts"] = json!([{"profile": {"name": NAME}, "wa_id": from, "user_id": user_id}]);
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": field, "value": value}]}]
    })
}

fn text(id: &str, from: &str, secs: i64, body: &str) -> Value {
    json!({"from": from, "from_user_id": BSUID, "id": id, "timestamp": secs.to_string(), "type": "text",
           "text": {"body": body}})
}

/// Good bodies: every phone format, every kind of datum, opt-outs and their reviews.
fn good_bodies() -> Vec<String> {
    let mut out = Vec::new();
    for (i, phone) in PHONE_FORMATS.iter().enumerate() {
        let secs = 1_800_000_000 + i as i64 * 10;
        let messages = json!([
            text(&format!("wamid.LOG{i}1"), phone, secs, TEXT),
            text(&format!("wamid.LOG{i}2"), phone, secs + 1, &format!("{EMAIL} {IG_USERNAME} {MX_PHONE}")),
            {"from": phone, "id": format!("wamid.LOG{i}3"), "timestamp": (secs + 2).to_string(), "type": "contacts",
             "contacts": [{"name": {"formatted_name": NAME, "first_name": "Zoraida"},
                           "phones": [{"phone": MX_PHONE, "wa_id": "525581362947"}], "emails": [{"email": EMAIL}]}]},
            text(&format!("wamid.LOG{i}4"), phone, secs + 3, "STOP"),
            text(&format!("wamid.LOG{i}5"), phone, secs + 4, &format!("No me den de baja, {NAME}")),
            text(&format!("wamid.LOG{i}6"), phone, secs + 5, "START"),
            {"from": phone, "id": format!("wamid.LOG{i}7"), "timestamp": (secs + 6).to_string(), "type": "button",
             "button": {"payload": "stop_promotions", "text": format!("Stop promotions {NAME}")}}
        ]);
        out.push(whatsapp_change("messages", json!(phone), json!(BSUID), json!({ "messages": messages })).to_string());
    }
    // Keyed by the phone alone: no user id.
    let messages = json!([{"from": PHONE_FORMATS[2], "id": "wamid.LOGP1", "timestamp": "1800000100", "type": "text",
                           "text": {"body": TEXT}}]);
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[2]),
            Value::Null,
            json!({ "messages": messages }),
        )
        .to_string(),
    );
    // Statuses to the person, one failed for a marketing opt-out.
    let statuses = json!([
        {"id": "wamid.OUT1", "status": "delivered", "timestamp": "1800000200", "recipient_id": PHONE_FORMATS[2],
         "recipient_user_id": BSUID},
        {"id": "wamid.OUT2", "status": "failed", "timestamp": "1800000201", "recipient_id": PHONE_FORMATS[2],
         "errors": [{"code": 131050, "title": format!("{NAME} stopped marketing"), "message": EMAIL}]}
    ]);
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[2]),
            json!(BSUID),
            json!({ "statuses": statuses }),
        )
        .to_string(),
    );
    // Meta's user_preferences: marketing stop.
    let prefs = json!({"user_preferences": [{"wa_id": PHONE_FORMATS[2], "user_id": BSUID, "detail": TEXT,
                                            "category": "marketing_messages", "value": "stop", "timestamp": 1800000300}]});
    out.push(whatsapp_change("user_preferences", json!(PHONE_FORMATS[2]), json!(BSUID), prefs).to_string());
    // Instagram: text, username in the text, a STOP.
    out.push(
        json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT, "time": 1800000500000u64, "messaging": [
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000500000u64,
             "message": {"mid": "aWdfLOG1", "text": format!("{TEXT} {IG_USERNAME} {EMAIL}")}},
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000501000u64,
             "message": {"mid": "aWdfLOG2", "text": "STOP"}},
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000502000u64,
             "postback": {"mid": "aWdfLOG3", "title": NAME, "payload": EMAIL}}
        ]}]})
        .to_string(),
    );
    out
}

/// Signed-looking bodies whose parts are wrong in every way a payload can be.
fn hostile_bodies() -> Vec<String> {
    let mut out = Vec::new();
    let wrong_types = json!([
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD1", "timestamp": [NAME, PHONE_FORMATS[1]], "type": "text",
         "text": {"body": TEXT}},
        {"from": PHONE_FORMATS[0], "id": format!("{NAME} {}", PHONE_FORMATS[1]), "timestamp": "1800000000",
         "type": "text", "text": {"body": TEXT}},
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD3", "timestamp": "1800000000", "type": 5491147293816u64,
         "text": {"body": TEXT}},
        {"from": [EMAIL], "id": "wamid.BAD4", "timestamp": "1800000000", "type": "text", "text": {"body": TEXT}},
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD5", "timestamp": "1800000000", "type": "text",
         "text": {"body": {"nested": TEXT}}},
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD6", "timestamp": "99999999999999999999", "type": "text",
         "text": {"body": TEXT}},
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD7", "timestamp": "-5", "type": "text", "text": {"body": "STOP"}},
        // Identifiers that do not normalize: kept raw, logged by kind only.
        {"from": format!("{} ext {NAME}", PHONE_FORMATS[0]), "from_user_id": format!("{BSUID}.{EMAIL}"),
         "id": "wamid.BAD8", "timestamp": "1800000000", "type": "text", "text": {"body": TEXT}},
        // An opt-out from a sender nothing identifies.
        {"id": "wamid.BAD9", "timestamp": "1800000000", "type": "text", "text": {"body": "STOP"}},
        {"from": "", "from_user_id": "", "id": "wamid.BAD10", "timestamp": "1800000000", "type": "text",
         "text": {"body": "baja"}},
        {"from": PHONE_FORMATS[0], "id": "wamid.BAD11", "timestamp": "1800000000", "type": "zoraida_quintanilla",
         "zoraida_quintanilla": {"body": TEXT}},
        "not a message object", NAME, 5491147293816u64
    ]);
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[0]),
            json!(format!("{BSUID} {EMAIL}")),
            json!({"messages": wrong_types}),
        )
        .to_string(),
    );
    let bad_statuses = json!([
        {"id": NAME, "status": EMAIL, "timestamp": "1800000200", "recipient_id": PHONE_FORMATS[0]},
        {"id": "wamid.OUT3", "status": "read", "timestamp": TEXT, "recipient_id": [PHONE_FORMATS[0]]},
        {"id": "wamid.OUT4", "status": "failed", "timestamp": "1800000200", "errors": [{"code": 131050}]}
    ]);
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[0]),
            json!(BSUID),
            json!({"statuses": bad_statuses}),
        )
        .to_string(),
    );
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[0]),
            json!(BSUID),
            json!({"messages": {"from": PHONE_FORMATS[0]}, "statuses": EMAIL}),
        )
        .to_string(),
    );
    out.push(
        whatsapp_change(
            "user_preferences",
            json!(PHONE_FORMATS[0]),
            json!(BSUID),
            json!({"user_preferences": [{"wa_id": EMAIL, "value": NAME, "timestamp": TEXT}, PHONE_FORMATS[1]]}),
        )
        .to_string(),
    );
    // Fields nothing handles, with personal data in them.
    out.push(
        whatsapp_change(
            &format!("{NAME}_field"),
            json!(PHONE_FORMATS[0]),
            json!(BSUID),
            json!({"x": TEXT}),
        )
        .to_string(),
    );
    out.push(
        whatsapp_change(
            "message_template_status_update",
            json!(PHONE_FORMATS[0]),
            json!(BSUID),
            json!({"reason": TEXT}),
        )
        .to_string(),
    );
    // Instagram events of unknown or malformed shape.
    out.push(
        json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT, "messaging": [
            {"sender": {"id": PHONE_FORMATS[1]}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000500000u64,
             "message": {"mid": "aWdfBAD1", "text": TEXT}},
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": NAME, "message": {"text": TEXT}},
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000500000u64,
             "zoraida_event": {"text": TEXT}},
            {"sender": {"username": IG_USERNAME}, "timestamp": 1800000500000u64, "message": {"mid": "aWdfBAD2", "text": "STOP"}},
            EMAIL
        ]}]})
        .to_string(),
    );
    // An oversized text.
    let huge = format!("{TEXT} {NAME} ").repeat(4_000);
    out.push(
        whatsapp_change(
            "messages",
            json!(PHONE_FORMATS[1]),
            json!(BSUID),
            json!({"messages": [text("wamid.HUGE", PHONE_FORMATS[1], 1_800_000_000, &huge)]}),
        )
        .to_string(),
    );
    // The fixtures' personal data, broken (parser errors may quote the payload).
    let mut broken: Value = serde_json::from_str(EVERY_TYPE).expect("json");
    let messages = &mut broken["entry"][0]["changes"][0]["value"]["messages"];
    messages[0]["timestamp"] = json!(["Ana Pérez", "5491123456789"]);
    messages[1]["id"] = json!("Hola Ana 5491123456789");
    messages[2]["type"] = json!(5491123456789u64);
    out.push(broken.to_string());
    out
}

/// Queue bodies that are no envelope at all, or an envelope the processor must refuse.
fn hostile_queue_bodies() -> Vec<String> {
    let envelope = |account: Value, payload: Value| {
        json!({"request_id": "req-hostile", "received_at": "2027-01-15T08:00:00Z", "object": "whatsapp_business_account",
               "entry_id": "102290129340398", "field": "messages", "account": account, "payload": payload})
        .to_string()
    };
    let payload = json!({"messages": [text("wamid.Q1", PHONE_FORMATS[1], 1_800_000_000, TEXT)],
                         "contacts": [{"profile": {"name": NAME}, "wa_id": PHONE_FORMATS[1]}]});
    vec![
        String::new(),
        TEXT.to_owned(),
        format!("{{\"request_id\": \"{NAME}\", \"payload\": \"{EMAIL}\""),
        json!({"name": NAME, "phone": PHONE_FORMATS[0], "email": EMAIL}).to_string(),
        envelope(
            json!({"channel": "whatsapp", "account_id": PHONE_FORMATS[0]}),
            payload.clone(),
        ),
        envelope(json!({"channel": NAME, "account_id": WA_ACCOUNT}), payload.clone()),
        envelope(
            json!({"channel": "whatsapp", "account_id": "999999999999999"}),
            payload.clone(),
        ),
        envelope(json!({"channel": "whatsapp", "account_id": WA_ACCOUNT}), json!(TEXT)),
        envelope(
            json!({"channel": "whatsapp", "account_id": WA_ACCOUNT}),
            json!([EMAIL, NAME]),
        ),
        format!("{}{}", "[".repeat(200), PHONE_FORMATS[1]),
    ]
}

// ---- A queue that refuses, one that panics. ----

#[derive(Debug)]
struct Refusing {
    panic: bool,
}

#[async_trait]
impl Queue for Refusing {
    async fn send_batch(&self, _: &[String]) -> Result<(), QueueError> {
        assert!(!self.panic, "queue double: panicking on purpose");
        Err(QueueError::Backend("queue double: refused".to_owned()))
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn pending(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}

fn sqs_event(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("msg-{i}"));
        m.body = Some(body.clone());
        event.records.push(m);
    }
    event
}

#[tokio::test]
async fn logs_carry_no_personal_data() {
    let capture = Capture::install();

    let clock = SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000));
    let stores = shared::store::embedded::stores(Arc::new(clock.clone()));
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![
            ChannelAccount::new(Channel::WhatsApp, WA_ACCOUNT).expect("valid"),
            ChannelAccount::new(Channel::Instagram, IG_ACCOUNT).expect("valid"),
        ],
        retention_months: shared::retention::RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: vec!["chau zoraida".to_owned()],
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
        created_at: Timestamp::from_unix_seconds(0),
    };
    stores.tenants.register(&tenant).await.expect("register");
    let secret = SubjectKeySecret::new(b"processor-test-secret-processor-test".to_vec()).expect("long enough");
    let optout_queue = Arc::new(shared::queue::embedded::EmbeddedQueue::new(
        Arc::new(shared::clock::SystemClock),
        Duration::from_secs(30),
    ));
    let p = Processor::new(
        stores.clone(),
        secret.clone(),
        Arc::new(clock.clone()),
        optout_queue.clone(),
    );

    // Good items, bad items (parser errors may quote the payload) and an unrouted envelope, each
    // as the webhook splits it.
    let mut bodies = vec![
        EVERY_TYPE.to_owned(),
        STATUSES.to_owned(),
        UNKNOWN_ACCOUNT.to_owned(),
        INSTAGRAM.to_owned(),
    ];
    bodies.extend(good_bodies());
    bodies.extend(hostile_bodies());
    let mut envelopes = Vec::new();
    for body in &bodies {
        let split =
            envelope::split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(1_800_000_000)).expect("usable");
        envelopes.extend(split.envelopes);
    }
    for e in &envelopes {
        p.process(e).await.expect("processed");
    }
    // Queue bodies the webhook would never write.
    for body in hostile_queue_bodies() {
        p.process(&body).await.expect("processed");
    }
    // The same through the batch entry point, duplicates and garbage mixed in.
    let mut batch = envelopes.clone();
    batch.extend(hostile_queue_bodies());
    let response = p.handle(sqs_event(&batch)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "only store and queue failures are retried"
    );
    assert!(
        optout_queue.pending().await.expect("pending") > 0,
        "opt-out commands were sent"
    );

    // The opt-out queue refuses (retried), then panics (the task's panic is caught and logged).
    let stops: Vec<String> = good_bodies()
        .iter()
        .flat_map(|b| {
            envelope::split(b.as_bytes(), "req-2", Timestamp::from_unix_seconds(1_800_000_000))
                .expect("usable")
                .envelopes
        })
        .collect();
    let refusing = Processor::new(
        stores.clone(),
        secret.clone(),
        Arc::new(clock.clone()),
        Arc::new(Refusing { panic: false }),
    );
    let response = refusing.handle(sqs_event(&stops)).await;
    assert!(!response.batch_item_failures.is_empty(), "a refused command is retried");
    let panicking = Processor::new(stores, secret, Arc::new(clock), Arc::new(Refusing { panic: true }));
    let response = panicking.handle(sqs_event(&stops)).await;
    assert!(
        !response.batch_item_failures.is_empty(),
        "a panicked envelope is retried"
    );
    assert!(
        capture.panics().iter().any(|p| p.contains("panicking on purpose")),
        "the panic hook records the task's panic: {:?}",
        capture.panics()
    );

    let logs = capture.logs();
    for expected in [
        "item quarantined",
        "envelope processed",
        "no tenant owns the receiving account",
        "envelope failed; SQS will redeliver it",
        "envelope processing panicked",
    ] {
        assert!(logs.contains(expected), "{expected:?} was logged: {logs}");
    }
    capture.assert_clean();
}
