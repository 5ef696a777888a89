//! No personal datum reaches a log line or a panic message of the webhook, whatever the request:
//! signed bodies full of names, phones, emails, usernames and texts, and hostile ones (bad JSON,
//! wrong or malformed signatures, oversized or undecodable bodies, invalid identifiers, a phone in
//! the path or the verification query), with the queue and the quarantine failing too.
//!
//! Its own test binary: the log capture is the process-wide subscriber and the panic hook is
//! process-wide, so no other test's callsites or threads interfere with what is captured.

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use http::Method;
use serde_json::{Value, json};
use shared::apigw::Request;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{QuarantineBucket, QuarantineEntry};
use shared::meta::signature::AppSecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{Queue, QueueError, ReceivedMessage};
use shared::secrets::{META_APP_SECRET, META_VERIFY_TOKEN, SecretValues, StaticSecrets};
use shared::store::embedded::EmbeddedQuarantineStore;
use shared::store::{Page, PageRequest, QuarantineStore, StoreError};
use shared::timestamp::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook::{AppSecrets, MAX_BODY_BYTES, ROUTE, Webhook};

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

// ---- Bodies and requests. ----

const SECRET: &str = "webhook-log-test-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";

fn sign(body: &[u8]) -> String {
    AppSecret::new(SECRET).sign(body)
}

/// A WhatsApp `messages` change from the person, with every kind of personal datum in it.
fn whatsapp_body(phone_number_id: Value, from: &str) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": NAME}, "wa_id": from, "user_id": BSUID}],
            "messages": [
                {"from": from, "from_user_id": BSUID, "id": "wamid.LOG0001", "timestamp": "1800000000",
                 "type": "text", "text": {"body": TEXT}},
                {"from": from, "id": "wamid.LOG0002", "timestamp": "1800000001", "type": "text",
                 "text": {"body": format!("{EMAIL} {IG_USERNAME} {MX_PHONE}")}},
                {"from": from, "id": "wamid.LOG0003", "timestamp": "1800000002", "type": "contacts",
                 "contacts": [{"name": {"formatted_name": NAME, "first_name": "Zoraida"},
                               "phones": [{"phone": MX_PHONE, "wa_id": "525581362947"}],
                               "emails": [{"email": EMAIL}]}]}
            ]
        }}]}]
    })
}

fn instagram_body() -> Value {
    json!({
        "object": "instagram",
        "entry": [{"id": "17841400000001", "time": 1800000500000u64, "messaging": [
            {"sender": {"id": IGSID}, "recipient": {"id": "17841400000001"}, "timestamp": 1800000500000u64,
             "message": {"mid": "aWdfLOG1", "text": format!("{TEXT} {IG_USERNAME} {EMAIL}")}}
        ]}]
    })
}

fn request(method: Method, path: &str, query: &[(&str, &str)], body: Option<&[u8]>, sig: Option<&str>) -> Request {
    let mut req = ApiGatewayV2httpRequest::default();
    req.raw_path = Some(path.to_owned());
    req.request_context.http.method = method;
    req.request_context.request_id = Some("req-log-test".to_owned());
    let map: std::collections::HashMap<String, Vec<String>> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect();
    req.query_string_parameters = map.into();
    if let Some(sig) = sig
        && let Ok(value) = sig.parse()
    {
        req.headers.insert("x-hub-signature-256", value);
    }
    if let Some(b) = body {
        match std::str::from_utf8(b) {
            Ok(text) => req.body = Some(text.to_owned()),
            Err(_) => {
                req.body = Some(base64::engine::general_purpose::STANDARD.encode(b));
                req.is_base64_encoded = true;
            }
        }
    }
    req
}

fn signed(body: &[u8]) -> Request {
    request(Method::POST, ROUTE, &[], Some(body), Some(&sign(body)))
}

// ---- Doubles: a queue and a quarantine that fail, and a queue that panics. ----

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

#[derive(Debug)]
struct BrokenQuarantine;

#[async_trait]
impl QuarantineStore for BrokenQuarantine {
    async fn put(&self, _: &QuarantineEntry) -> Result<(), StoreError> {
        Err(StoreError::Backend("quarantine double: unavailable".to_owned()))
    }
    async fn get(
        &self,
        _: &QuarantineBucket,
        _: Timestamp,
        _: uuid::Uuid,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        Err(StoreError::Backend("quarantine double: unavailable".to_owned()))
    }
    async fn list(&self, _: &QuarantineBucket, _: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError> {
        Err(StoreError::Backend("quarantine double: unavailable".to_owned()))
    }
    async fn delete(&self, _: &QuarantineEntry) -> Result<(), StoreError> {
        Err(StoreError::Backend("quarantine double: unavailable".to_owned()))
    }
    async fn find_subject(&self, _: &shared::identity::SubjectKey) -> Result<Vec<QuarantineEntry>, StoreError> {
        Err(StoreError::Backend("quarantine double: unavailable".to_owned()))
    }
}

fn webhook(ingest: Arc<dyn Queue>, quarantine: Arc<dyn QuarantineStore>) -> Webhook {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let values = SecretValues::from_pairs(
        "test-secret",
        [
            (META_APP_SECRET, json!([SECRET])),
            (META_VERIFY_TOKEN, json!("verify-me")),
        ],
    );
    // No wait between re-reads: every mismatch takes the re-read path and its log line.
    let secrets = AppSecrets::new(
        vec![AppSecret::new(SECRET)],
        Arc::new(StaticSecrets::new(values)),
        Duration::ZERO,
    );
    Webhook::new(secrets, "verify-me".to_owned(), ingest, quarantine, clock)
}

#[tokio::test]
async fn no_personal_datum_in_any_log_line_or_panic_message() {
    let capture = Capture::install();
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let queue = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let quarantine = Arc::new(EmbeddedQuarantineStore::new(clock));
    let w = webhook(queue.clone(), quarantine.clone());
    let mut statuses = Vec::new();

    // Good: signed bodies in every phone format, and Instagram.
    for phone in PHONE_FORMATS {
        let body = whatsapp_body(json!(PHONE_NUMBER_ID), phone).to_string();
        statuses.push((
            "good whatsapp",
            w.handle(&signed(body.as_bytes())).await.status_code,
            200,
        ));
    }
    let body = instagram_body().to_string();
    statuses.push((
        "good instagram",
        w.handle(&signed(body.as_bytes())).await.status_code,
        200,
    ));

    // Signed but unusable, in whole or in part: quarantined, answered 200.
    let good = whatsapp_body(json!(PHONE_NUMBER_ID), PHONE_FORMATS[0]).to_string();
    let truncated = &good[..good.len() / 2];
    let wrong_object = json!({"object": NAME, "entry": [{"id": PHONE_FORMATS[1]}]}).to_string();
    let bad_account = whatsapp_body(json!(PHONE_FORMATS[0]), PHONE_FORMATS[1]).to_string();
    let numeric_account = whatsapp_body(json!(5491147293816u64), PHONE_FORMATS[1]).to_string();
    let mut bad_entries = whatsapp_body(json!(PHONE_NUMBER_ID), PHONE_FORMATS[1]);
    bad_entries["entry"].as_array_mut().expect("entries").extend([
        json!(EMAIL),
        json!({"id": EMAIL, "changes": []}),
        json!({"changes": [{"value": TEXT}]}),
    ]);
    let deep = format!("{}\"{NAME} {}\"{}", "[".repeat(300), PHONE_FORMATS[1], "]".repeat(300));
    let mut huge_change = whatsapp_body(json!(PHONE_NUMBER_ID), PHONE_FORMATS[1]);
    huge_change["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] =
        json!(format!("{TEXT} ").repeat(1_100_000 / TEXT.len()));
    let sqs_refused = whatsapp_body(json!(PHONE_NUMBER_ID), PHONE_FORMATS[1])
        .to_string()
        .replace(TEXT, &format!("{TEXT}\u{FFFE}\u{1}"));
    let mut latin1 =
        Vec::from(&b"{\"object\":\"whatsapp_business_account\",\"entry\":[\"Zoraida Quintanilla \xe9\xff"[..]);
    latin1.extend_from_slice(PHONE_FORMATS[1].as_bytes());
    for body in [
        truncated.as_bytes(),
        wrong_object.as_bytes(),
        bad_account.as_bytes(),
        numeric_account.as_bytes(),
        bad_entries.to_string().as_bytes(),
        deep.as_bytes(),
        huge_change.to_string().as_bytes(),
        sqs_refused.as_bytes(),
        &latin1,
        TEXT.as_bytes(),
        b"",
    ] {
        statuses.push(("signed, unusable", w.handle(&signed(body)).await.status_code, 200));
    }

    // Refused before anything is kept: signatures, size, encoding.
    let body = good.as_bytes();
    let cases: Vec<(&str, Request, i64)> = vec![
        ("unsigned", request(Method::POST, ROUTE, &[], Some(body), None), 401),
        (
            "another secret",
            request(
                Method::POST,
                ROUTE,
                &[],
                Some(body),
                Some(&AppSecret::new(NAME).sign(body)),
            ),
            401,
        ),
        (
            "phone as signature",
            request(
                Method::POST,
                ROUTE,
                &[],
                Some(body),
                Some(&format!("sha256={}", PHONE_FORMATS[1])),
            ),
            401,
        ),
        (
            "email as signature",
            request(Method::POST, ROUTE, &[], Some(body), Some(EMAIL)),
            401,
        ),
        (
            "64 hex digits, wrong",
            request(
                Method::POST,
                ROUTE,
                &[],
                Some(body),
                Some(&format!("sha256={}", "5491147293816".repeat(5)[..64].to_owned())),
            ),
            401,
        ),
        (
            "oversized",
            {
                let big = format!("{} ", PHONE_FORMATS[0]).repeat(MAX_BODY_BYTES / PHONE_FORMATS[0].len() + 2);
                request(
                    Method::POST,
                    ROUTE,
                    &[],
                    Some(big.as_bytes()),
                    Some(&sign(big.as_bytes())),
                )
            },
            413,
        ),
        (
            "not base64",
            {
                let mut r = signed(body);
                r.body = Some(format!("{NAME}!!{}", PHONE_FORMATS[0]));
                r.is_base64_encoded = true;
                r
            },
            400,
        ),
        (
            "phone in the path",
            request(
                Method::POST,
                &format!("{ROUTE}/{}", PHONE_FORMATS[1]),
                &[],
                Some(body),
                None,
            ),
            404,
        ),
        (
            "wrong method",
            request(Method::PUT, ROUTE, &[], Some(body), Some(&sign(body))),
            405,
        ),
        (
            "verification with a phone as token",
            request(
                Method::GET,
                ROUTE,
                &[
                    ("hub.mode", "subscribe"),
                    ("hub.verify_token", PHONE_FORMATS[1]),
                    ("hub.challenge", EMAIL),
                ],
                None,
                None,
            ),
            403,
        ),
        (
            "verification, another mode",
            request(
                Method::GET,
                ROUTE,
                &[
                    ("hub.mode", NAME),
                    ("hub.verify_token", "verify-me"),
                    ("hub.challenge", PHONE_FORMATS[0]),
                ],
                None,
                None,
            ),
            403,
        ),
        (
            "verification echoing a phone",
            request(
                Method::GET,
                ROUTE,
                &[
                    ("hub.mode", "subscribe"),
                    ("hub.verify_token", "verify-me"),
                    ("hub.challenge", PHONE_FORMATS[0]),
                ],
                None,
                None,
            ),
            200,
        ),
        (
            "verification, incomplete",
            request(Method::GET, ROUTE, &[("hub.challenge", EMAIL)], None, None),
            400,
        ),
    ];
    for (what, req, want) in cases {
        statuses.push((what, w.handle(&req).await.status_code, want));
    }

    // Our failures: the queue refuses, the quarantine is down (500, Meta retries).
    let refusing = webhook(Arc::new(Refusing { panic: false }), quarantine.clone());
    statuses.push((
        "queue refuses",
        refusing.handle(&signed(good.as_bytes())).await.status_code,
        500,
    ));
    let broken = webhook(queue.clone(), Arc::new(BrokenQuarantine));
    statuses.push((
        "quarantine down",
        broken.handle(&signed(truncated.as_bytes())).await.status_code,
        500,
    ));
    statuses.push((
        "quarantine down, part",
        broken.handle(&signed(bad_account.as_bytes())).await.status_code,
        500,
    ));

    // A panic inside the handler (here the queue's): its message is recorded by the hook.
    let panicking = Arc::new(webhook(Arc::new(Refusing { panic: true }), quarantine.clone()));
    let req = signed(good.as_bytes());
    let task = tokio::spawn(async move { panicking.handle(&req).await.status_code });
    assert!(task.await.is_err(), "the queue double panicked");
    assert!(
        capture.panics().iter().any(|p| p.contains("panicking on purpose")),
        "the panic hook records panics: {:?}",
        capture.panics()
    );

    for (what, got, want) in &statuses {
        assert_eq!(got, want, "{what}");
    }
    // The data did go through: enqueued and quarantined, just never logged.
    assert!(queue.pending().await.expect("pending") >= 5);
    let held = quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(100))
        .await
        .expect("list");
    assert!(held.items.len() >= 8, "{} quarantined", held.items.len());
    let logs = capture.logs();
    for expected in [
        "webhook accepted",
        "webhook part quarantined",
        "webhook signature refused",
        "webhook verification refused",
        "app secrets re-read after a signature mismatch",
        "ingest queue refused the envelopes",
        "quarantine unavailable",
    ] {
        assert!(logs.contains(expected), "{expected:?} was logged:\n{logs}");
    }
    capture.assert_clean();
}
