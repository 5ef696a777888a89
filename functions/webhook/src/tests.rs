use super::*;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use serde_json::json;
use shared::clock::SettableClock;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{QueueError, ReceivedMessage};
use shared::secrets::{META_APP_SECRET, META_VERIFY_TOKEN, SecretError, SecretValues, StaticSecrets};
use shared::store::PageRequest;
use shared::store::embedded::EmbeddedQuarantineStore;
use shared::timestamp::Timestamp;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SECRET: &str = "app-secret";

fn values(app_secrets: &[&str]) -> SecretValues {
    SecretValues::from_pairs(
        "test-secret",
        [
            (META_APP_SECRET, json!(app_secrets)),
            (META_VERIFY_TOKEN, json!("verify-me")),
        ],
    )
}

struct Fixture {
    webhook: Webhook,
    queue: Arc<EmbeddedQueue>,
    quarantine: Arc<EmbeddedQuarantineStore>,
}

fn fixture() -> Fixture {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let queue = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let quarantine = Arc::new(EmbeddedQuarantineStore::new(clock.clone()));
    let source = Arc::new(StaticSecrets::new(values(&["retired-secret", SECRET])));
    let secrets = AppSecrets::new(
        vec![AppSecret::new("retired-secret"), AppSecret::new(SECRET)],
        source,
        SECRET_REREAD_INTERVAL,
    );
    let webhook = Webhook::new(
        secrets,
        "verify-me".to_owned(),
        queue.clone(),
        quarantine.clone(),
        clock,
    );
    Fixture {
        webhook,
        queue,
        quarantine,
    }
}

fn request(method: Method, query: &[(&str, &str)], body: Option<&[u8]>, signature: Option<String>) -> Request {
    let mut req = ApiGatewayV2httpRequest::default();
    req.raw_path = Some(ROUTE.to_owned());
    req.request_context.http.method = method;
    req.request_context.request_id = Some("req-1".to_owned());
    let map: std::collections::HashMap<String, Vec<String>> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect();
    req.query_string_parameters = map.into();
    if let Some(sig) = signature {
        req.headers
            .insert("x-hub-signature-256", sig.parse().expect("header value"));
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
    request(Method::POST, &[], Some(body), Some(AppSecret::new(SECRET).sign(body)))
}

const TEXT: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"5491123456789","user_id":"AR.13491208655302741918"}],"messages":[{"from":"5491123456789","from_user_id":"AR.13491208655302741918","id":"wamid.A1","timestamp":"1800000000","type":"text","text":{"body":"hola"}}]}}]}]}"#;

async fn quarantined(f: &Fixture) -> Vec<QuarantineEntry> {
    f.quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(100))
        .await
        .expect("list")
        .items
}

#[tokio::test]
async fn verification_echoes_the_challenge_byte_for_byte() {
    let f = fixture();
    let q = [
        ("hub.mode", "subscribe"),
        ("hub.verify_token", "verify-me"),
        ("hub.challenge", "0123-abc_X"),
    ];
    let r = f.webhook.handle(&request(Method::GET, &q, None, None)).await;
    assert_eq!((r.status_code, apigw::body_text(&r)), (200, "0123-abc_X".to_owned()));
}

#[tokio::test]
async fn verification_refuses_wrong_token_or_mode_and_missing_parameters() {
    let f = fixture();
    let wrong_token = [
        ("hub.mode", "subscribe"),
        ("hub.verify_token", "guess"),
        ("hub.challenge", "1"),
    ];
    assert_eq!(
        f.webhook
            .handle(&request(Method::GET, &wrong_token, None, None))
            .await
            .status_code,
        403
    );
    let wrong_mode = [
        ("hub.mode", "unsubscribe"),
        ("hub.verify_token", "verify-me"),
        ("hub.challenge", "1"),
    ];
    assert_eq!(
        f.webhook
            .handle(&request(Method::GET, &wrong_mode, None, None))
            .await
            .status_code,
        403
    );
    let missing = [("hub.mode", "subscribe"), ("hub.verify_token", "verify-me")];
    assert_eq!(
        f.webhook
            .handle(&request(Method::GET, &missing, None, None))
            .await
            .status_code,
        400
    );
}

#[tokio::test]
async fn a_signed_body_is_split_and_enqueued() {
    let f = fixture();
    let r = f.webhook.handle(&signed(TEXT)).await;
    assert_eq!(r.status_code, 200);
    let got = f.queue.receive(10, Duration::ZERO).await.expect("receive");
    assert_eq!(got.len(), 1);
    let env: envelope::Envelope = serde_json::from_str(&got[0].body).expect("envelope");
    assert_eq!(env.account.account_id, "106540352242922");
    assert_eq!(env.request_id, "req-1");
}

#[tokio::test]
async fn a_character_sqs_refuses_does_not_lose_the_post() {
    for bad in ['\u{FFFF}', '\u{FFFE}'] {
        let f = fixture();
        // Bad input: the text message "hola" followed by a raw non-character (U+FFFF, then U+FFFE),
        // valid JSON that SQS refuses; the embedded queue refuses it as SQS does.
        let body = String::from_utf8(TEXT.to_vec())
            .expect("UTF-8")
            .replace(r#""body":"hola""#, &format!(r#""body":"hola{bad}""#));
        assert!(body.contains(bad));
        let r = f.webhook.handle(&signed(body.as_bytes())).await;
        assert_eq!(r.status_code, 200, "U+{:04X}", u32::from(bad));
        let got = f.queue.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert!(shared::queue::sqs_accepts(&got[0].body));
        let env: envelope::Envelope = serde_json::from_str(&got[0].body).expect("envelope");
        let payload: serde_json::Value = serde_json::from_str(env.payload.get()).expect("payload");
        assert_eq!(payload["messages"][0]["text"]["body"], format!("hola{bad}"));
        assert!(quarantined(&f).await.is_empty());
    }
}

#[tokio::test]
async fn base64_bodies_are_verified_over_the_decoded_bytes() {
    let f = fixture();
    let mut req = signed(TEXT);
    req.body = Some(base64::engine::general_purpose::STANDARD.encode(TEXT));
    req.is_base64_encoded = true;
    assert_eq!(f.webhook.handle(&req).await.status_code, 200);
    assert_eq!(f.queue.len(), 1);
}

#[tokio::test]
async fn bad_signatures_get_401_and_enqueue_nothing() {
    let f = fixture();
    let mut tampered = TEXT.to_vec();
    let at = tampered.iter().position(|b| *b == b'h').expect("has an h");
    tampered[at] = b'H';
    let sig = AppSecret::new(SECRET).sign(TEXT);
    let sha1_only = {
        let mut r = request(Method::POST, &[], Some(TEXT), None);
        r.headers.insert(
            "x-hub-signature",
            "sha1=0123456789abcdef0123456789abcdef01234567".parse().expect("h"),
        );
        r
    };
    let cases = [
        (
            "tampered body",
            request(Method::POST, &[], Some(&tampered), Some(sig.clone())),
        ),
        ("missing header", request(Method::POST, &[], Some(TEXT), None)),
        (
            "malformed header",
            request(Method::POST, &[], Some(TEXT), Some("sha256=nothex".to_owned())),
        ),
        ("SHA-1 only", sha1_only),
        (
            "wrong secret",
            request(Method::POST, &[], Some(TEXT), Some(AppSecret::new("other").sign(TEXT))),
        ),
    ];
    for (what, req) in cases {
        assert_eq!(f.webhook.handle(&req).await.status_code, 401, "{what}");
    }
    assert!(f.queue.is_empty());
    assert!(quarantined(&f).await.is_empty());
}

#[tokio::test]
async fn bodies_over_3_mb_get_413_before_parsing() {
    let f = fixture();
    let big = vec![b'x'; MAX_BODY_BYTES + 1];
    let r = f
        .webhook
        .handle(&request(
            Method::POST,
            &[],
            Some(&big),
            Some(AppSecret::new(SECRET).sign(&big)),
        ))
        .await;
    assert_eq!(r.status_code, 413);
    assert!(f.queue.is_empty() && quarantined(&f).await.is_empty());
}

#[tokio::test]
async fn signed_but_unusable_bodies_are_quarantined_with_200() {
    let f = fixture();
    let deep = format!(
        r#"{{"object":"instagram","entry":[{}{}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{not json".to_vec()),
        ("wrong object", br#"{"object":"page","entry":[]}"#.to_vec()),
        ("10,000-deep nesting", deep.into_bytes()),
        ("missing entry", br#"{"object":"instagram"}"#.to_vec()),
    ];
    for (what, body) in &cases {
        let r = f.webhook.handle(&signed(body)).await;
        assert_eq!(r.status_code, 200, "{what}");
    }
    assert!(f.queue.is_empty());
    assert_eq!(quarantined(&f).await.len(), cases.len());
}

#[tokio::test]
async fn a_broken_change_is_quarantined_beside_a_good_one() {
    let f = fixture();
    // Bad input: the second change has no value.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"}}},{"field":"messages"}]}]}"#;
    assert_eq!(f.webhook.handle(&signed(body)).await.status_code, 200);
    assert_eq!(f.queue.len(), 1);
    assert_eq!(quarantined(&f).await.len(), 1);
}

#[derive(Debug)]
struct RefusingQueue;

#[async_trait::async_trait]
impl Queue for RefusingQueue {
    async fn send_batch(&self, _: &[String]) -> Result<(), QueueError> {
        Err(QueueError::Backend("unavailable".to_owned()))
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(vec![])
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn pending(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}

#[tokio::test]
async fn a_refusing_queue_answers_500_so_meta_retries() {
    let f = fixture();
    let secrets = AppSecrets::new(
        vec![AppSecret::new(SECRET)],
        Arc::new(StaticSecrets::new(values(&[SECRET]))),
        SECRET_REREAD_INTERVAL,
    );
    let webhook = Webhook::new(
        secrets,
        "verify-me".to_owned(),
        Arc::new(RefusingQueue),
        f.quarantine.clone(),
        f.webhook.clock.clone(),
    );
    assert_eq!(webhook.handle(&signed(TEXT)).await.status_code, 500);
}

/// A secret whose value the test changes, counting how often it is read.
#[derive(Debug)]
struct Rotating {
    value: std::sync::Mutex<Vec<&'static str>>,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl SecretSource for Rotating {
    async fn fetch(&self) -> Result<SecretValues, SecretError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(values(&self.value.lock().expect("lock")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_is_picked_up_with_at_most_one_reread_a_minute() {
    let source = Arc::new(Rotating {
        value: std::sync::Mutex::new(vec!["first"]),
        reads: AtomicUsize::new(0),
    });
    let secrets = AppSecrets::new(vec![AppSecret::new("first")], source.clone(), SECRET_REREAD_INTERVAL);
    let body = b"{}";
    let by = |s: &str| AppSecret::new(s).sign(body);
    assert_eq!(secrets.verify(Some(&by("first")), body).await, Ok(()));
    *source.value.lock().expect("lock") = vec!["first", "second"];
    // Within a minute of the init read, a mismatch does not re-read.
    assert_eq!(
        secrets.verify(Some(&by("second")), body).await,
        Err(SignatureError::Mismatch)
    );
    assert_eq!(source.reads.load(Ordering::SeqCst), 0);
    tokio::time::advance(SECRET_REREAD_INTERVAL).await;
    assert_eq!(
        secrets.verify(Some(&by("second")), body).await,
        Ok(()),
        "rotation picked up"
    );
    assert_eq!(source.reads.load(Ordering::SeqCst), 1);
    // A flood of forged signatures costs no further read within the minute.
    for _ in 0..100 {
        assert_eq!(
            secrets.verify(Some(&by("forged")), body).await,
            Err(SignatureError::Mismatch)
        );
    }
    assert_eq!(source.reads.load(Ordering::SeqCst), 1);
    // Unsigned or malformed headers never trigger a read.
    tokio::time::advance(SECRET_REREAD_INTERVAL).await;
    assert_eq!(secrets.verify(None, body).await, Err(SignatureError::Missing));
    assert_eq!(
        secrets.verify(Some("sha256=zz"), body).await,
        Err(SignatureError::Malformed)
    );
    assert_eq!(source.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn build_names_the_missing_secret_key() {
    let shared::store::embedded::EmbeddedStack { stores, sweeps, outbox } =
        shared::store::embedded::stack(Arc::new(SettableClock::at(Timestamp::from_unix_seconds(0))));
    let mut stack = shared::wiring::LocalResources {
        stores,
        sweeps,
        queues: [(
            QueueKind::Ingest,
            Arc::new(EmbeddedQueue::new(
                Arc::new(shared::clock::SystemClock),
                Duration::from_secs(30),
            )) as Arc<dyn Queue>,
        )]
        .into(),
        secrets: Arc::new(StaticSecrets::new(SecretValues::from_pairs(
            "s",
            [(META_APP_SECRET, json!("x"))],
        ))),
        clock: Arc::new(shared::clock::SystemClock),
        public_base_url: "http://127.0.0.1".to_owned(),
        graph_api_base_url: shared::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned(),
        whatsapp_api_base_url: shared::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned(),
        outbox,
        tenant_tokens: Arc::new(shared::meta::send::StaticTokens::default()),
    };
    let err = build(&stack).await.expect_err("no verify token");
    assert!(err.to_string().contains(META_VERIFY_TOKEN), "{err}");
    stack.secrets = Arc::new(StaticSecrets::new(values(&[SECRET])));
    assert!(build(&stack).await.is_ok());
    stack.queues.clear();
    assert!(matches!(
        build(&stack).await,
        Err(WiringError::NoQueue(QueueKind::Ingest))
    ));
}

#[tokio::test]
async fn other_routes_and_methods() {
    let f = fixture();
    let mut other = signed(TEXT);
    other.raw_path = Some("/elsewhere".to_owned());
    assert_eq!(f.webhook.handle(&other).await.status_code, 404);
    assert_eq!(
        f.webhook
            .handle(&request(Method::PUT, &[], None, None))
            .await
            .status_code,
        405
    );
}
