//! No personal datum reaches a log line or a panic message of the opt-out function: commands the
//! processor makes from a person's STOP, START, HELP, buttons, preferences and failed statuses
//! (sent from phones in several formats, with names, emails and texts around them), replays, and
//! hostile queue bodies (not commands, commands with personal data where ids belong, unknown
//! tenants, no subject keys), with the outgoing queues refusing and panicking too.
//!
//! Its own test binary: the log capture is the process-wide subscriber and the panic hook is
//! process-wide, so no other test's callsites or threads interfere with what is captured.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use optout::OptOutHandler;
use processor::Processor;
use serde_json::{Value, json};
use shared::clock::{SettableClock, SharedClock};
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ChannelAccount, Locale, Tenant, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{Queue, QueueError, ReceivedMessage};
use shared::store::Stores;
use shared::timestamp::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EVERY_TYPE: &str = include_str!("../../../tests/fixtures/wa_every_type.json");
const STOP: &str = include_str!("../../../tests/fixtures/wa_stop.json");
const START: &str = include_str!("../../../tests/fixtures/wa_start.json");
const PREFERENCES: &str = include_str!("../../../tests/fixtures/wa_user_preferences_stop.json");

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

// ---- Commands, made by the processor from what the person sent. ----

const WA_ACCOUNT: &str = "106540352242922";
const IG_ACCOUNT: &str = "17841400000001";
const NOW: i64 = 1_800_000_000;

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

fn text(id: &str, from: &str, user_id: Option<&str>, secs: i64, body: &str) -> Value {
    let mut m = json!({"from": from, "id": id, "timestamp": secs.to_string(), "type": "text", "text": {"body": body}});
    if let Some(u) = user_id {
        m["from_user_id"] = json!(u);
    }
    m
}

/// What a person sends that the opt-out function acts on, from every phone format.
fn bodies() -> Vec<String> {
    let mut out = vec![
        EVERY_TYPE.to_owned(),
        STOP.to_owned(),
        START.to_owned(),
        PREFERENCES.to_owned(),
    ];
    for (i, phone) in PHONE_FORMATS.iter().enumerate() {
        let at = NOW + i as i64 * 100;
        // With a user id for the first format, keyed by the phone alone for the others.
        let user_id = (i == 0).then_some(BSUID);
        let messages = json!([
            text(&format!("wamid.OPT{i}1"), phone, user_id, at, &format!("STOP {NAME}")),
            text(&format!("wamid.OPT{i}2"), phone, user_id, at + 1, "STOP"),
            text(&format!("wamid.OPT{i}3"), phone, user_id, at + 2, "HELP"),
            text(&format!("wamid.OPT{i}4"), phone, user_id, at + 3, "START"),
            text(&format!("wamid.OPT{i}5"), phone, user_id, at + 4, "YES"),
            text(&format!("wamid.OPT{i}6"), phone, user_id, at + 5, "baja por favor"),
            {"from": phone, "id": format!("wamid.OPT{i}7"), "timestamp": (at + 6).to_string(), "type": "button",
             "button": {"payload": "stop_promotions", "text": format!("Stop promotions {EMAIL}")}},
            text(&format!("wamid.OPT{i}8"), phone, user_id, at + 7, "chau zoraida"),
        ]);
        out.push(
            whatsapp_change(
                "messages",
                json!(phone),
                json!(user_id),
                json!({ "messages": messages }),
            )
            .to_string(),
        );
        let statuses = json!([{"id": format!("wamid.OUT{i}"), "status": "failed", "timestamp": (at + 8).to_string(),
                               "recipient_id": phone, "errors": [{"code": 131050, "title": NAME, "message": EMAIL}]}]);
        out.push(
            whatsapp_change(
                "messages",
                json!(phone),
                json!(user_id),
                json!({ "statuses": statuses }),
            )
            .to_string(),
        );
        let prefs = json!({"user_preferences": [{"wa_id": phone, "detail": TEXT, "category": "marketing_messages",
                                                "value": "stop", "timestamp": at + 9}]});
        out.push(whatsapp_change("user_preferences", json!(phone), json!(user_id), prefs).to_string());
    }
    // A Mexican phone, and Instagram.
    let messages = json!([text("wamid.OPTMX", MX_PHONE, None, NOW + 900, "BAJA")]);
    out.push(
        whatsapp_change(
            "messages",
            json!(MX_PHONE),
            Value::Null,
            json!({ "messages": messages }),
        )
        .to_string(),
    );
    out.push(
        json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT, "time": 1800000500000u64, "messaging": [
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000500000u64,
             "message": {"mid": "aWdfT1BUMQ", "text": "STOP"}},
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1800000501000u64,
             "message": {"mid": "aWdfT1BUMg", "text": "START"}}
        ]}]})
        .to_string(),
    );
    out
}

async fn drain(q: &EmbeddedQueue) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(10, Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            out.push(m.body);
        }
    }
}

/// Commands as the opt-out function receives them, made by the processor.
async fn commands(stores: &Stores, clock: SharedClock, secret: &SubjectKeySecret) -> Vec<String> {
    let queue = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let p = Processor::new(stores.clone(), secret.clone(), clock, queue.clone());
    for body in bodies() {
        let split = envelope::split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(NOW)).expect("usable");
        for e in split.envelopes {
            p.process(&e).await.expect("processed");
        }
    }
    drain(&queue).await
}

/// Commands altered the ways a bug or a stranger could: personal data where ids belong.
fn hostile(commands: &[String]) -> Vec<String> {
    let mut out = vec![
        String::new(),
        TEXT.to_owned(),
        json!({"name": NAME, "phone": PHONE_FORMATS[0], "email": EMAIL}).to_string(),
        format!("{{\"tenant\": \"tenant-a\", \"contact\": \"{}\"", PHONE_FORMATS[1]),
    ];
    let edits: [(&str, Value); 9] = [
        ("tenant", json!("ghost-tenant")),
        ("tenant", json!(PHONE_FORMATS[1])),
        ("subject_keys", json!([])),
        ("subject_keys", json!([EMAIL, PHONE_FORMATS[2]])),
        ("contact", json!({"channel": "whatsapp", "stable_id": PHONE_FORMATS[2]})),
        ("contact", json!(EMAIL)),
        ("action", json!(NAME)),
        ("event_at", json!(TEXT)),
        ("language", json!(IG_USERNAME)),
    ];
    for c in commands.iter().take(3) {
        let Ok(Value::Object(original)) = serde_json::from_str::<Value>(c) else {
            continue;
        };
        for (field, value) in &edits {
            let mut m = original.clone();
            m.insert((*field).to_owned(), value.clone());
            out.push(Value::Object(m).to_string());
        }
        let mut m = original.clone();
        m.insert("extra".to_owned(), json!({"name": NAME, "email": EMAIL}));
        out.push(Value::Object(m).to_string());
    }
    out
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

fn tenant() -> Tenant {
    Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "Tienda".to_owned(),
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
    }
}

#[tokio::test]
async fn no_personal_datum_in_any_log_line_or_panic_message() {
    let capture = Capture::install();
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(NOW + 3600)));
    let stores = shared::store::embedded::stores(clock.clone());
    stores.tenants.register(&tenant()).await.expect("register");
    let secret = SubjectKeySecret::new(b"optout-log-test-secret-optout-log-test".to_vec()).expect("long enough");
    let made = commands(&stores, clock.clone(), &secret).await;
    assert!(made.len() >= 20, "{} commands", made.len());

    let propagation = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let outbound = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let handler = OptOutHandler::new(stores.clone(), propagation.clone(), outbound.clone(), clock.clone());
    // Applied, then replayed (stale), then in reverse order (newest first).
    let response = handler.handle(sqs_event(&made)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    handler.handle(sqs_event(&made)).await;
    let reversed: Vec<String> = made.iter().rev().cloned().collect();
    handler.handle(sqs_event(&reversed)).await;
    assert!(!drain(&propagation).await.is_empty(), "changes were published");
    assert!(!drain(&outbound).await.is_empty(), "replies were queued");

    // Hostile queue bodies: malformed ones fail (kept in the dead-letter queue), the rest are
    // applied or ignored.
    let response = handler.handle(sqs_event(&hostile(&made))).await;
    assert!(
        !response.batch_item_failures.is_empty(),
        "malformed commands are reported"
    );

    // The outgoing queues refuse (retried), then panic, on a fresh store so every change is new.
    let fresh = shared::store::embedded::stores(clock.clone());
    fresh.tenants.register(&tenant()).await.expect("register");
    let fresh_commands = commands(&fresh, clock.clone(), &secret).await;
    let refusing = OptOutHandler::new(
        fresh.clone(),
        Arc::new(Refusing { panic: false }),
        Arc::new(Refusing { panic: false }),
        clock.clone(),
    );
    let response = refusing.handle(sqs_event(&fresh_commands)).await;
    assert!(!response.batch_item_failures.is_empty(), "a refused change is retried");
    let panicking = Arc::new(OptOutHandler::new(
        fresh,
        Arc::new(Refusing { panic: true }),
        Arc::new(Refusing { panic: true }),
        clock,
    ));
    let event = sqs_event(&fresh_commands);
    let task = tokio::spawn(async move { panicking.handle(event).await });
    assert!(task.await.is_err(), "the queue double panicked");
    assert!(
        capture.panics().iter().any(|p| p.contains("panicking on purpose")),
        "the panic hook records panics: {:?}",
        capture.panics()
    );

    let logs = capture.logs();
    for expected in [
        "opt-out state changed",
        "malformed opt-out command",
        "opt-out command for an unknown tenant",
        "opt-out command failed; SQS will redeliver it",
    ] {
        assert!(logs.contains(expected), "{expected:?} was logged:\n{logs}");
    }
    capture.assert_clean();
}
