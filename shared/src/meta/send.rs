//! Sending through Meta's APIs: the WhatsApp Cloud API (`POST /{phone_number_id}/messages`:
//! text, template, interactive) and the Instagram Send API (`POST /{ig_account_id}/messages`:
//! text). The port (`MessageSender`) and its production adapter over HTTPS (rustls), and where
//! each tenant's access token comes from (`TokenSource`).
//!
//! Meta's send API has no idempotency key: a request that may have reached Meta is never
//! repeated here. Only answers that say nothing was sent (429, 5xx, Meta's throttling codes) or a
//! connection that never opened are retried; a timeout after the request went out is
//! `Ambiguous`, and the sender leaves that to an operator. Tokens go in the `Authorization`
//! header only and never into a log line or an error.

use super::graph::{GraphError, GraphToken, allowed_base, https_client};
use crate::backoff::Backoff;
use crate::domain::{Channel, TenantId};
use crate::outbound::Content;
use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the WhatsApp Cloud API is, unless `WHATSAPP_API_BASE_URL` says otherwise (a test server).
pub const DEFAULT_WHATSAPP_API_BASE_URL: &str = "https://graph.facebook.com/v23.0";
pub const WHATSAPP_API_BASE_URL: &str = "WHATSAPP_API_BASE_URL";
/// One request's wait for Meta's answer (Meta answers in well under a second).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// Attempts per send on answers that say nothing was sent.
const ATTEMPTS: u32 = 3;
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Meta's error codes that mean "not now": the generic transient ones (1, 2), the app and
/// account rate limits (4, 17, 32, 613, 80007), WhatsApp's throughput and pair rate limits
/// (130429, 131056), service unavailable (131016, 133004) and "something went wrong" (131000).
pub const RETRYABLE_CODES: &[i64] = &[1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004];

/// Codes that will not change however often the message is sent, whatever the HTTP status:
/// outside the 24-hour window (131047), marketing stopped (131050), undeliverable (131026),
/// recipient not allowed (131030), bad parameters (100, 131008, 131009), a template problem
/// (132000, 132001, 132005, 132012), an invalid token (190).
pub const PERMANENT_CODES: &[i64] = &[
    100, 190, 131008, 131009, 131026, 131030, 131047, 131050, 132000, 132001, 132005, 132012,
];

/// Whether Meta's answer (HTTP status and error code) is worth sending again.
pub fn retryable(status: u16, code: Option<i64>) -> bool {
    if code.is_some_and(|c| PERMANENT_CODES.contains(&c)) {
        return false;
    }
    status == 429 || (500..600).contains(&status) || code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
}

/// Meta's id of a message it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Meta said it did not take the message (throttled, a server error) or no connection opened:
    /// nothing was sent; sending later may work.
    #[error("not sent, worth retrying: HTTP {status}, error code {code:?}")]
    Retryable { status: u16, code: Option<i64> },
    /// Refused for good: sending again changes nothing.
    #[error("refused: HTTP {status}, error code {code:?}")]
    Permanent { status: u16, code: Option<i64> },
    /// The request went out and no answer came: it may or may not have been sent.
    #[error("no answer after the request went out: {0}")]
    Ambiguous(String),
    #[error("send client: {0}")]
    Config(String),
}

/// One message to send, to a recipient's channel id from an account of the tenant.
#[derive(Clone)]
pub struct SendRequest<'a> {
    pub channel: Channel,
    /// The sending account: a WhatsApp phone_number_id or an Instagram account id.
    pub account: &'a str,
    /// The recipient: a WhatsApp business-scoped user id (`CC.<id>`) or wa_id, or an IGSID.
    pub to: &'a str,
    pub content: &'a Content,
}

impl fmt::Debug for SendRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("channel", &self.channel)
            .field("account", &self.account)
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

/// The body Meta's API takes for `request`.
pub fn request_body(request: &SendRequest<'_>) -> Value {
    match request.channel {
        Channel::WhatsApp => {
            // A business-scoped user id (`AR.123...`) goes in `recipient`; a phone number in `to`.
            let mut body = if request.to.contains('.') {
                json!({"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": request.to})
            } else {
                json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": request.to})
            };
            match request.content {
                Content::Text { body: text } => {
                    body["type"] = json!("text");
                    body["text"] = json!({"preview_url": false, "body": text});
                }
                Content::Template {
                    name,
                    language,
                    components,
                    ..
                } => {
                    body["type"] = json!("template");
                    let mut template = json!({"name": name, "language": {"code": language}});
                    if components.is_array() {
                        template["components"] = components.clone();
                    }
                    body["template"] = template;
                }
                Content::Interactive { interactive } => {
                    body["type"] = json!("interactive");
                    body["interactive"] = interactive.clone();
                }
            }
            body
        }
        Channel::Instagram => {
            let text = match request.content {
                Content::Text { body } => body.as_str(),
                // Content::check refuses these for Instagram before they are queued.
                _ => "",
            };
            json!({"recipient": {"id": request.to}, "message": {"text": text}})
        }
    }
}

/// The port: the sender asks it, tests answer it over the wire (infra's loopback Graph API).
#[async_trait]
pub trait MessageSender: Send + Sync + fmt::Debug {
    async fn send(&self, token: &GraphToken, request: &SendRequest<'_>) -> Result<Sent, SendError>;
}

/// The production adapter.
pub struct GraphSender {
    whatsapp_base: String,
    instagram_base: String,
    http: tokio::sync::OnceCell<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>,
}

impl fmt::Debug for GraphSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSender")
            .field("whatsapp_base", &self.whatsapp_base)
            .field("instagram_base", &self.instagram_base)
            .finish()
    }
}

/// An account id as it may go into a path: digits only (Meta's ids are numeric).
fn account_safe(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

impl GraphSender {
    pub fn new(whatsapp_base: &str, instagram_base: &str) -> Result<Self, SendError> {
        let clean = |b: &str| -> Result<String, SendError> {
            let b = b.trim_end_matches('/').to_owned();
            if allowed_base(&b) {
                Ok(b)
            } else {
                Err(SendError::Config(
                    "API base URLs must be https:// (or http:// on loopback for a test server)".to_owned(),
                ))
            }
        };
        Ok(Self {
            whatsapp_base: clean(whatsapp_base)?,
            instagram_base: clean(instagram_base)?,
            http: tokio::sync::OnceCell::new(),
        })
    }

    async fn once(&self, token: &GraphToken, uri: &str, body: &Bytes) -> Result<Sent, SendError> {
        let request = hyper::Request::post(uri)
            .header("authorization", format!("Bearer {}", token.0))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| SendError::Config(e.to_string()))?;
        let http = self
            .http
            .get_or_try_init(|| async { https_client() })
            .await
            .map_err(|e: GraphError| SendError::Config(e.to_string()))?;
        // One wait for the whole exchange, the answer's body included.
        tokio::time::timeout(ATTEMPT_TIMEOUT, exchange(http, request))
            .await
            .unwrap_or_else(|_| Err(SendError::Ambiguous("no answer in time".to_owned())))
    }
}

async fn exchange(
    http: &Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<Sent, SendError> {
    let response = match http.request(request).await {
        // Refused before a byte went out: nothing was sent.
        Err(e) if e.is_connect() => return Err(SendError::Retryable { status: 0, code: None }),
        Err(_) => return Err(SendError::Ambiguous("the connection broke".to_owned())),
        Ok(r) => r,
    };
    let status = response.status().as_u16();
    let bytes = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) if (200..300).contains(&status) => {
            return Err(SendError::Ambiguous("the answer could not be read".to_owned()));
        }
        Err(_) => Bytes::new(),
    };
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if (200..300).contains(&status) {
        // WhatsApp: messages[0].id; Instagram: message_id.
        let id = json["messages"][0]["id"]
            .as_str()
            .or_else(|| json["message_id"].as_str());
        return match id {
            Some(id) if !id.is_empty() => Ok(Sent {
                message_id: id.to_owned(),
            }),
            _ => Err(SendError::Ambiguous("accepted without a message id".to_owned())),
        };
    }
    let code = json["error"]["code"].as_i64();
    if retryable(status, code) {
        Err(SendError::Retryable { status, code })
    } else {
        Err(SendError::Permanent { status, code })
    }
}

#[async_trait]
impl MessageSender for GraphSender {
    async fn send(&self, token: &GraphToken, request: &SendRequest<'_>) -> Result<Sent, SendError> {
        if !account_safe(request.account) {
            return Err(SendError::Config("the sending account id is not numeric".to_owned()));
        }
        let base = match request.channel {
            Channel::WhatsApp => &self.whatsapp_base,
            Channel::Instagram => &self.instagram_base,
        };
        let uri = format!("{base}/{}/messages", request.account);
        let body = Bytes::from(request_body(request).to_string());
        let mut backoff = Backoff::with_attempts(ATTEMPTS - 1);
        loop {
            match self.once(token, &uri, &body).await {
                Err(e @ SendError::Retryable { .. }) => {
                    if !backoff.wait().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

/// Where a tenant's access token is kept: one Secrets Manager secret per tenant, named by
/// convention, so the sender's IAM policy can grant exactly those (`{prefix}/tenants/*`).
pub fn token_secret_suffix(tenant: &TenantId) -> String {
    format!("/tenants/{tenant}/meta-access-token")
}

/// Whether a registration's token reference names this tenant's own secret: one tenant can
/// never point at another's token.
pub fn valid_token_secret(tenant: &TenantId, name: &str) -> bool {
    let suffix = token_secret_suffix(tenant);
    name.len() <= 512
        && name.len() > suffix.len()
        && name.ends_with(&suffix)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-'))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("secret {0} holds no access token")]
    Missing(String),
    #[error("secret {secret} could not be read: {reason}")]
    Unavailable { secret: String, reason: String },
}

/// Tenants' access tokens by secret name.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn token(&self, secret: &str) -> Result<GraphToken, TokenError>;
}

/// A secret's text: `{"access_token": "..."}` or the token itself.
fn parse_token(secret: &str, text: &str) -> Result<GraphToken, TokenError> {
    let token = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map.get("access_token").and_then(Value::as_str).map(str::to_owned),
        Ok(_) => None,
        Err(_) => Some(text.trim().to_owned()),
    };
    match token {
        Some(t) if !t.trim().is_empty() => Ok(GraphToken::new(t)),
        _ => Err(TokenError::Missing(secret.to_owned())),
    }
}

/// Fixed tokens: the local stack's (`TENANT_ACCESS_TOKENS`) and tests'.
#[derive(Clone, Default)]
pub struct StaticTokens(BTreeMap<String, GraphToken>);

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticTokens")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StaticTokens {
    pub fn new(tokens: impl IntoIterator<Item = (String, GraphToken)>) -> Self {
        Self(tokens.into_iter().collect())
    }
}

#[async_trait]
impl TokenSource for StaticTokens {
    async fn token(&self, secret: &str) -> Result<GraphToken, TokenError> {
        self.0
            .get(secret)
            .cloned()
            .ok_or_else(|| TokenError::Missing(secret.to_owned()))
    }
}

/// How long a token read from Secrets Manager is used before it is read again: a rotated token
/// takes effect within this, with no redeploy.
pub const TOKEN_CACHE: Duration = Duration::from_secs(300);

/// Each tenant's secret in Secrets Manager, read at first use and cached.
#[derive(Debug)]
pub struct SecretsManagerTokens {
    client: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, (GraphToken, Instant)>>,
}

impl SecretsManagerTokens {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            client,
            cache: Mutex::default(),
        }
    }
}

#[async_trait]
impl TokenSource for SecretsManagerTokens {
    async fn token(&self, secret: &str) -> Result<GraphToken, TokenError> {
        {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((token, at)) = cache.get(secret)
                && at.elapsed() < TOKEN_CACHE
            {
                return Ok(token.clone());
            }
        }
        let unavailable = |reason: String| TokenError::Unavailable {
            secret: secret.to_owned(),
            reason,
        };
        let call = self.client.get_secret_value().secret_id(secret).send();
        let out = tokio::time::timeout(crate::secrets::FETCH_TIMEOUT, call)
            .await
            .map_err(|_| unavailable("no answer in time".to_owned()))?
            .map_err(|e| unavailable(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
        let token = parse_token(secret, out.secret_string().unwrap_or_default())?;
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(secret.to_owned(), (token.clone(), Instant::now()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_retry_and_what_will_not_change_does_not() {
        assert!(retryable(429, None));
        assert!(retryable(503, None));
        assert!(retryable(400, Some(130429)), "throughput limit");
        assert!(retryable(400, Some(131056)), "pair rate limit");
        assert!(!retryable(400, Some(131047)), "outside the 24-hour window");
        assert!(!retryable(400, Some(131050)), "marketing stopped");
        assert!(!retryable(400, Some(131026)), "undeliverable");
        assert!(!retryable(500, Some(131047)), "a permanent code wins over the status");
        assert!(!retryable(400, None));
    }

    #[test]
    fn a_tenant_may_reference_only_its_own_token_secret() {
        let shop = TenantId::new("shop").expect("valid");
        assert!(valid_token_secret(&shop, "socio-prod/tenants/shop/meta-access-token"));
        assert!(!valid_token_secret(&shop, "socio-prod/tenants/other/meta-access-token"));
        assert!(
            !valid_token_secret(&shop, "/tenants/shop/meta-access-token"),
            "no prefix"
        );
        assert!(!valid_token_secret(&shop, "a b/tenants/shop/meta-access-token"));
    }

    #[test]
    fn a_secret_holds_the_token_as_json_or_plain_and_its_value_is_in_no_error() {
        assert_eq!(
            parse_token("s", r#"{"access_token":"EAA1"}"#),
            Ok(GraphToken::new("EAA1"))
        );
        assert_eq!(parse_token("s", "EAA2\n"), Ok(GraphToken::new("EAA2")));
        let e = parse_token("s", r#"{"token":"EAA3"}"#).expect_err("no access_token");
        assert!(!e.to_string().contains("EAA3"));
    }

    #[test]
    fn bodies_follow_each_api() {
        let text = Content::Text { body: "hola".into() };
        let wa = request_body(&SendRequest {
            channel: Channel::WhatsApp,
            account: "1",
            to: "AR.123",
            content: &text,
        });
        assert_eq!(wa["recipient"], "AR.123");
        assert_eq!(wa["text"]["body"], "hola");
        let phone = request_body(&SendRequest {
            channel: Channel::WhatsApp,
            account: "1",
            to: "5491123456789",
            content: &text,
        });
        assert_eq!(phone["to"], "5491123456789");
        let ig = request_body(&SendRequest {
            channel: Channel::Instagram,
            account: "1",
            to: "7012345678901234",
            content: &text,
        });
        assert_eq!(
            ig,
            json!({"recipient": {"id": "7012345678901234"}, "message": {"text": "hola"}})
        );
    }
}
