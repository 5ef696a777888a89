//! No personal datum reaches a log line or a panic message of the admin API: reads of contacts and
//! messages full of names, phones (in several formats), emails, usernames and texts, contactability
//! checks by every form of a phone, replays of held envelopes, and hostile requests (bad JSON,
//! personal data in registration fields, unknown tenants, bad cursors, a phone or an email in the
//! path, the query or the audit reason, no principal), with the ingest queue refusing and
//! panicking too.
//!
//! The admin routes are changing (contacts named by an opaque handle instead of
//! `<channel>:<id>`): every path this test builds comes from `paths`, and a contact's path
//! segment is taken from the listing's `contact` field, whatever its form.
//!
//! Its own test binary: the log capture is the process-wide subscriber and the panic hook is
//! process-wide, so no other test's callsites or threads interfere with what is captured.

mod common;

use admin::Admin;
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription};
use http::Method;
use processor::Processor;
use serde_json::{Value, json};
use shared::apigw::{self, Request};
use shared::clock::{SettableClock, SharedClock};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{Queue, QueueError, ReceivedMessage};
use shared::store::Stores;
use shared::timestamp::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

// ---- Paths: the one place that knows the admin routes. ----

mod paths {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use serde_json::Value;

    pub const TENANTS: &str = "/admin/tenants";
    pub const CONTACTABILITY: &str = "/admin/contactability";

    /// One path segment as a client would send it: percent-encoded.
    pub fn segment(s: &str) -> String {
        utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
    }

    pub fn contacts(tenant: &str) -> String {
        format!("/admin/tenants/{}/contacts", segment(tenant))
    }

    pub fn events(tenant: &str) -> String {
        format!("/admin/tenants/{}/events", segment(tenant))
    }

    /// `contact` is the segment the listing gives (`contact_segment`), or anything hostile.
    pub fn messages(tenant: &str, contact: &str) -> String {
        format!(
            "/admin/tenants/{}/contacts/{}/messages",
            segment(tenant),
            segment(contact)
        )
    }

    /// How a listed contact is named in its messages path: the listing's `contact` field.
    pub fn contact_segment(listed: &Value) -> String {
        listed["contact"]
            .as_str()
            .expect("a listed contact names its path segment")
            .to_owned()
    }

    /// The `<channel>:<id>` form, with the personal identifier in it: what a path must never
    /// need, and what a caller may still try.
    pub fn raw_contact_segment(channel: &str, id: &str) -> String {
        format!("{channel}:{id}")
    }
}

// ---- Requests. ----

fn request(method: Method, path: &str, query: &[(&str, &str)], body: Option<String>) -> Request {
    let mut e = Request::default();
    e.version = Some("2.0".into());
    e.raw_path = Some(path.to_owned());
    e.request_context.http.method = method;
    e.request_context.http.path = Some(path.to_owned());
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        params.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    e.query_string_parameters = params.into();
    let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
    iam.user_arn = Some("arn:aws:iam::000000000000:user/privacy-desk".into());
    let mut auth = ApiGatewayRequestAuthorizer::default();
    auth.iam = Some(iam);
    e.request_context.authorizer = Some(auth);
    e.body = body;
    e
}

fn get(path: &str, query: &[(&str, &str)]) -> Request {
    request(Method::GET, path, query, None)
}

/// A contactability question: the fields as a JSON body.
fn ask(fields: &[(&str, &str)]) -> Request {
    let body: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    request(
        Method::POST,
        paths::CONTACTABILITY,
        &[],
        Some(Value::Object(body).to_string()),
    )
}

async fn call(admin: &Admin, req: &Request) -> (i64, Value) {
    let r = admin.handle(req).await;
    let text = apigw::body_text(&r);
    (r.status_code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

// ---- What the person sent, stored by the processor. ----

const WA_ACCOUNT: &str = "106540352242922";
const LATE_ACCOUNT: &str = "106540352249999";
const IG_ACCOUNT: &str = "17841400000001";
const NOW: i64 = 1_800_000_000;

fn whatsapp_change(account: &str, from: &str, user_id: Option<&str>, messages: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": account},
            "contacts": [{"profile": {"name": NAME}, "wa_id": from, "user_id": user_id}],
            "messages": messages
        }}]}]
    })
    .to_string()
}

fn bodies(account: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, phone) in PHONE_FORMATS.iter().enumerate() {
        let user_id = (i == 0).then_some(BSUID);
        let at = NOW - 1000 + i as i64 * 10;
        let messages = json!([
            {"from": phone, "id": format!("wamid.ADM{i}1"), "timestamp": at.to_string(), "type": "text",
             "text": {"body": TEXT}},
            {"from": phone, "id": format!("wamid.ADM{i}2"), "timestamp": (at + 1).to_string(), "type": "text",
             "text": {"body": format!("{EMAIL} {IG_USERNAME} {MX_PHONE}")}},
            {"from": phone, "id": format!("wamid.ADM{i}3"), "timestamp": (at + 2).to_string(), "type": "text",
             "text": {"body": "STOP"}}
        ]);
        out.push(whatsapp_change(account, phone, user_id, messages));
    }
    out.push(
        json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT, "time": 1800000500000u64, "messaging": [
            {"sender": {"id": IGSID}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1799999000000u64,
             "message": {"mid": "aWdfQURNMQ", "text": format!("{TEXT} {IG_USERNAME} {EMAIL}")}}
        ]}]})
        .to_string(),
    );
    out
}

async fn store(stores: &Stores, clock: SharedClock, secret: &SubjectKeySecret, bodies: &[String]) {
    let optouts = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let p = Processor::new(stores.clone(), secret.clone(), clock, optouts);
    for body in bodies {
        let split = envelope::split(body.as_bytes(), "req-1", Timestamp::from_unix_seconds(NOW)).expect("usable");
        for e in split.envelopes {
            p.process(&e).await.expect("processed");
        }
    }
}

// ---- An ingest queue that refuses, one that panics. ----

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

fn registration(tenant: &str, whatsapp: &[&str]) -> String {
    json!({"tenant_id": tenant, "name": "Tienda", "whatsapp_phone_number_ids": whatsapp,
           "instagram_account_ids": if tenant == "tenant-a" { vec![IG_ACCOUNT] } else { Vec::new() },
           "optout_keywords": ["chau zoraida"]})
    .to_string()
}

#[tokio::test]
async fn no_personal_datum_in_any_log_line_or_panic_message() {
    let capture = Capture::install();
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(NOW)));
    let stores = shared::store::embedded::stores(clock.clone());
    common::grant_operator(&stores).await;
    let secret = SubjectKeySecret::new(b"admin-log-test-secret-admin-log-test-secret".to_vec()).expect("long enough");
    let ingest = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let admin = Admin::new(
        stores.clone(),
        ingest.clone(),
        ingest.clone(),
        clock.clone(),
        secret.clone(),
    );
    let mut statuses: Vec<(String, i64, bool)> = Vec::new();
    let mut expect = |what: &str, status: i64, good: bool| statuses.push((what.to_owned(), status, good));

    // Good: registration, the person's data stored, then read back every way.
    let (s, _) = call(
        &admin,
        &request(
            Method::POST,
            paths::TENANTS,
            &[],
            Some(registration("tenant-a", &[WA_ACCOUNT])),
        ),
    )
    .await;
    expect("register", s, true);
    store(&stores, clock.clone(), &secret, &bodies(WA_ACCOUNT)).await;
    // Envelopes for an account not registered yet: held, then replayed by its registration.
    store(&stores, clock.clone(), &secret, &bodies(LATE_ACCOUNT)).await;
    let (s, body) = call(
        &admin,
        &request(
            Method::POST,
            paths::TENANTS,
            &[],
            Some(registration("tenant-b", &[LATE_ACCOUNT])),
        ),
    )
    .await;
    expect("register with replays", s, true);
    assert!(body["replayed_envelopes"].as_u64().unwrap_or(0) > 0, "{body}");

    let mut contacts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let (s, page) = call(&admin, &get(&paths::contacts("tenant-a"), &query)).await;
        expect("contacts page", s, true);
        contacts.extend(page["contacts"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(contacts.len() >= 3, "{contacts:?}");
    let mut message_cursor = None;
    for c in &contacts {
        let path = paths::messages("tenant-a", &paths::contact_segment(c));
        let reason = format!("pedido de {NAME}, tel {}", PHONE_FORMATS[0]);
        let mut req = get(&path, &[("limit", "1")]);
        req.headers.insert("x-audit-reason", reason.parse().expect("header"));
        let (s, _) = call(&admin, &req).await;
        expect("messages, a name and a phone in the audit reason", s, false);
        let (s, page) = call(&admin, &get(&path, &[("limit", "1")])).await;
        expect("messages", s, true);
        if let Some(next) = page["next_cursor"].as_str() {
            let (s, _) = call(&admin, &get(&path, &[("limit", "1"), ("cursor", next)])).await;
            expect("messages, next page", s, true);
            message_cursor.get_or_insert_with(|| next.to_owned());
        }
    }
    let (s, _) = call(&admin, &get(&paths::events("tenant-a"), &[])).await;
    expect("events", s, true);
    let mut ids: Vec<(&str, &str)> = PHONE_FORMATS.iter().map(|p| ("whatsapp", *p)).collect();
    ids.extend([("whatsapp", MX_PHONE), ("whatsapp", BSUID), ("instagram", IGSID)]);
    for (channel, id) in ids {
        for purpose in ["service", "marketing"] {
            let query = [
                ("tenant", "tenant-a"),
                ("channel", channel),
                ("id", id),
                ("purpose", purpose),
            ];
            let (s, _) = call(&admin, &ask(&query)).await;
            expect("contactability", s, true);
        }
    }

    // Hostile registrations: personal data in every field, bad JSON, an account taken.
    for body in [
        format!("{{\"tenant_id\": \"{NAME}\", \"name\": \"{EMAIL}\""),
        TEXT.to_owned(),
        json!([NAME, EMAIL]).to_string(),
        json!({"tenant_id": EMAIL, "name": NAME}).to_string(),
        json!({"tenant_id": "tenant-c", "name": NAME.repeat(20)}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "whatsapp_phone_number_ids": [PHONE_FORMATS[0]]}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "instagram_account_ids": [IG_USERNAME]}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "optout_keywords": [TEXT.repeat(3)]}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "optout_button_ids": [{"email": EMAIL}]}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "locale": NAME, "jurisdiction": PHONE_FORMATS[1]}).to_string(),
        json!({"tenant_id": "tenant-c", "name": "C", "retention_months": PHONE_FORMATS[2]}).to_string(),
        {
            let mut m = serde_json::Map::new();
            m.insert("tenant_id".to_owned(), json!("tenant-c"));
            m.insert("name".to_owned(), json!("C"));
            m.insert(EMAIL.to_owned(), json!(NAME));
            Value::Object(m).to_string()
        },
        json!({"tenant_id": "tenant-c", "name": "C", "whatsapp_phone_number_ids": [WA_ACCOUNT]}).to_string(),
    ] {
        let (s, _) = call(&admin, &request(Method::POST, paths::TENANTS, &[], Some(body))).await;
        expect("hostile registration", s, false);
    }

    // Hostile reads: unknown tenants, identifiers where ids belong, bad cursors and limits.
    let first = paths::contact_segment(&contacts[0]);
    let sealed_elsewhere = message_cursor.clone().unwrap_or_else(|| "AAAA".to_owned());
    let store_like = {
        use base64::Engine;
        let json = json!({"scope": "contacts:tenant-a", "position": format!("C#whatsapp#{}", PHONE_FORMATS[2])});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    let mut hostile: Vec<Request> = vec![
        get(&paths::contacts("ghost-tenant"), &[]),
        get(&paths::contacts(PHONE_FORMATS[1]), &[]),
        get(&paths::contacts(EMAIL), &[]),
        get(&paths::events(NAME), &[]),
        get(&paths::messages("tenant-b", &first), &[]),
        get(&paths::messages(PHONE_FORMATS[0], &first), &[]),
        get(&paths::messages("ghost-tenant", &first), &[]),
        get(&format!("/admin/{}", PHONE_FORMATS[1]), &[]),
        get(
            &format!("/admin/tenants/tenant-a/contacts/{}", paths::segment(PHONE_FORMATS[0])),
            &[],
        ),
        get(&format!("/admin/tenants/tenant-a/contacts/{}", PHONE_FORMATS[2]), &[]),
        get(&format!("/{}", paths::segment(EMAIL)), &[]),
        request(Method::DELETE, &paths::contacts("tenant-a"), &[], Some(NAME.to_owned())),
        request(
            Method::POST,
            &paths::messages("tenant-a", &first),
            &[],
            Some(TEXT.to_owned()),
        ),
        get(&paths::contacts("tenant-a"), &[("limit", PHONE_FORMATS[2])]),
        get(&paths::contacts("tenant-a"), &[("limit", "0")]),
        get(&paths::contacts("tenant-a"), &[("cursor", PHONE_FORMATS[0])]),
        get(&paths::contacts("tenant-a"), &[("cursor", EMAIL)]),
        get(&paths::contacts("tenant-a"), &[("cursor", &store_like)]),
        get(&paths::contacts("tenant-a"), &[("cursor", &sealed_elsewhere)]),
        get(&paths::contacts("tenant-b"), &[("cursor", &sealed_elsewhere)]),
        get(
            &paths::events("tenant-a"),
            &[("cursor", &format!("{NAME}{}", "A".repeat(5000)))],
        ),
        get(&paths::messages("tenant-a", &first), &[("cursor", &store_like)]),
        ask(&[]),
        request(
            Method::POST,
            paths::CONTACTABILITY,
            &[],
            Some(format!("{{\"id\": \"{NAME}\"")),
        ),
    ];
    for id in PHONE_FORMATS.iter().chain([&MX_PHONE, &EMAIL, &NAME]) {
        hostile.push(get(
            &paths::messages("tenant-a", &paths::raw_contact_segment("sms", id)),
            &[],
        ));
        hostile.push(get(
            &paths::messages("tenant-a", &paths::raw_contact_segment(NAME, id)),
            &[],
        ));
        hostile.push(get(&paths::messages("tenant-a", id), &[]));
        for query in [
            vec![("tenant", "ghost-tenant"), ("channel", "whatsapp"), ("id", *id)],
            vec![("tenant", *id), ("channel", "whatsapp"), ("id", *id)],
            vec![("tenant", "tenant-a"), ("channel", *id), ("id", *id)],
            vec![
                ("tenant", "tenant-a"),
                ("channel", "whatsapp"),
                ("id", *id),
                ("purpose", *id),
            ],
            vec![("channel", "whatsapp"), ("id", *id)],
        ] {
            hostile.push(ask(&query));
        }
        // The old form: the question in the query string.
        hostile.push(get(
            paths::CONTACTABILITY,
            &[("tenant", "tenant-a"), ("channel", "whatsapp"), ("id", *id)],
        ));
    }
    let mut anonymous = get(
        &paths::messages("tenant-a", &paths::raw_contact_segment("whatsapp", PHONE_FORMATS[1])),
        &[],
    );
    anonymous.request_context.authorizer = None;
    hostile.push(anonymous);
    for req in &hostile {
        let (s, _) = call(&admin, req).await;
        expect(
            &format!("hostile {}", req.raw_path.as_deref().unwrap_or_default()),
            s,
            false,
        );
    }
    // Served or refused depending on the form (digits are a valid Instagram id), never logged.
    for id in PHONE_FORMATS.iter().chain([&MX_PHONE, &EMAIL, &NAME]) {
        let query = [("tenant", "tenant-a"), ("channel", "instagram"), ("id", *id)];
        let _ = call(&admin, &ask(&query)).await;
    }
    // The old `<channel>:<id>` form of a stored contact: served or refused, never logged.
    for id in PHONE_FORMATS.iter().chain([&BSUID]) {
        let _ = call(
            &admin,
            &get(
                &paths::messages("tenant-a", &paths::raw_contact_segment("whatsapp", id)),
                &[],
            ),
        )
        .await;
    }
    let _ = call(
        &admin,
        &get(
            &paths::messages("tenant-a", &paths::raw_contact_segment("instagram", IGSID)),
            &[],
        ),
    )
    .await;

    // Replays when the ingest queue refuses (503), then panics.
    store(&stores, clock.clone(), &secret, &bodies("106540352248888")).await;
    let refusing = Admin::new(
        stores.clone(),
        Arc::new(Refusing { panic: false }),
        Arc::new(Refusing { panic: false }),
        clock.clone(),
        secret.clone(),
    );
    let (s, _) = call(
        &refusing,
        &request(
            Method::POST,
            paths::TENANTS,
            &[],
            Some(registration("tenant-d", &["106540352248888"])),
        ),
    )
    .await;
    expect("replay refused", s, false);
    let panicking = Arc::new(Admin::new(
        stores.clone(),
        Arc::new(Refusing { panic: true }),
        Arc::new(Refusing { panic: true }),
        clock,
        secret,
    ));
    let req = request(
        Method::POST,
        paths::TENANTS,
        &[],
        Some(registration("tenant-d", &["106540352248888"])),
    );
    let task = tokio::spawn(async move { panicking.handle(&req).await.status_code });
    assert!(task.await.is_err(), "the queue double panicked");
    assert!(
        capture.panics().iter().any(|p| p.contains("panicking on purpose")),
        "the panic hook records panics: {:?}",
        capture.panics()
    );

    for (what, status, good) in &statuses {
        if *good {
            assert!((200..300).contains(status), "{what}: {status}");
        } else {
            assert!((400..600).contains(status), "{what}: {status}");
        }
    }
    assert!(
        ingest.pending().await.expect("pending") > 0,
        "held envelopes were replayed"
    );
    let logs = capture.logs();
    for expected in ["tenant registered", "ingest queue refused replayed envelopes"] {
        assert!(logs.contains(expected), "{expected:?} was logged:\n{logs}");
    }
    capture.assert_clean();
}
