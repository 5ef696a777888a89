use super::*;
use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use shared::clock::SettableClock;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{QueueError, ReceivedMessage};
use shared::store::PageRequest;
use shared::store::embedded::EmbeddedQuarantineStore;
use shared::timestamp::Timestamp;
use std::time::Duration;

const SECRET: &str = "app-secret";

struct Fixture {
    webhook: Webhook,
    queue: Arc<EmbeddedQueue>,
    quarantine: Arc<EmbeddedQuarantineStore>,
}

fn fixture() -> Fixture {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let queue = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let quarantine = Arc::new(EmbeddedQuarantineStore::new(clock.clone()));
    let config = WebhookConfig::from_lookup(|n| match n {
        META_APP_SECRET => Some(format!("retired-secret, {SECRET}")),
        META_VERIFY_TOKEN => Some("verify-me".to_owned()),
        _ => None,
    })
    .expect("config");
    let webhook = Webhook::new(config, queue.clone(), quarantine.clone(), clock);
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
    let webhook = Webhook::new(
        f.webhook.config.clone(),
        Arc::new(RefusingQueue),
        f.quarantine.clone(),
        f.webhook.clock.clone(),
    );
    assert_eq!(webhook.handle(&signed(TEXT)).await.status_code, 500);
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

#[test]
fn config_names_what_is_missing() {
    assert_eq!(
        WebhookConfig::from_lookup(|_| None).err(),
        Some(ConfigError::Missing(META_APP_SECRET))
    );
    let only_secret = |n: &str| (n == META_APP_SECRET).then(|| "s".to_owned());
    assert_eq!(
        WebhookConfig::from_lookup(only_secret).err(),
        Some(ConfigError::Missing(META_VERIFY_TOKEN))
    );
}
