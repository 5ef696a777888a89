//! The start of a Meta Graph API client (issue 11; the outbound sender extends it): the
//! profile-resolver port and its production adapter, which asks Instagram's User Profile API for
//! the username behind an Instagram-scoped id. Instagram's webhooks carry only that id, while a
//! person asks to be deleted by their username: linking the username when a contact writes is
//! what lets an erasure by username find them.
//!
//! HTTPS over rustls on ring, trusting the system's roots (Meta's endpoints do not chain to the
//! Amazon roots the SDK clients trust). They are read at the first lookup, not at init: reading
//! the store is most of a cold start's own work, and most envelopes are not Instagram messages.
//! Tokens go in the `Authorization` header, never in the URL, and never into a log line or an
//! error.

use crate::backoff::Backoff;
use async_trait::async_trait;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Where the User Profile API is, unless `GRAPH_API_BASE_URL` says otherwise (a test server).
pub const DEFAULT_GRAPH_API_BASE_URL: &str = "https://graph.instagram.com/v23.0";
pub const GRAPH_API_BASE_URL: &str = "GRAPH_API_BASE_URL";
/// The whole lookup, retries included: a message waits for it at most this long.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts per lookup on throttling and server errors.
const ATTEMPTS: u32 = 3;
/// No profile answer is near this; a bigger one is refused unread.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Instagram usernames are at most 30 characters.
const MAX_USERNAME_CHARS: usize = 30;

/// An access token for one Instagram professional account. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphToken(pub(crate) String);

impl GraphToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl fmt::Debug for GraphToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GraphToken(<redacted>)")
    }
}

/// Tokens by the Instagram account id they act for.
pub type GraphTokens = BTreeMap<String, GraphToken>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Throttled, a server error, a timeout or no connection: worth asking again later.
    #[error("Graph API unavailable: {0}")]
    Retryable(String),
    /// Refused for good (no consent, a blocked user, an unknown id): asking again changes nothing.
    #[error("Graph API refused the lookup: {0}")]
    Permanent(String),
    #[error("no Graph API token for this account")]
    NoToken,
    #[error("Graph API client: {0}")]
    Config(String),
}

/// Who an Instagram-scoped id is. The port: the processor asks it, tests answer it over the wire.
#[async_trait]
pub trait ProfileResolver: Send + Sync + fmt::Debug {
    /// The username of `igsid` as seen by the account `account` (its token is the one asked
    /// with); None when the profile has none.
    async fn instagram_username(&self, account: &str, igsid: &str) -> Result<Option<String>, GraphError>;
}

/// The production adapter: `GET {base}/{igsid}?fields=username`.
pub struct GraphClient {
    base: String,
    tokens: GraphTokens,
    http: tokio::sync::OnceCell<Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base)
            .field("accounts", &self.tokens.len())
            .finish()
    }
}

/// An HTTPS client over rustls on ring that trusts the system's roots (Meta's endpoints do not
/// chain to the Amazon roots the SDK clients trust); plain HTTP is let through for `allowed_base`'s
/// loopback test servers only.
pub(crate) fn https_client<B>() -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, B>, GraphError>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(GraphError::Config(
            "no trusted root certificates on this system".to_owned(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| GraphError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Plain HTTP only to this machine: a token never crosses a network in clear.
pub(crate) fn allowed_base(base: &str) -> bool {
    base.starts_with("https://") || base.starts_with("http://127.0.0.1:") || base.starts_with("http://localhost:")
}

/// An Instagram-scoped id as it may go into a path: digits (and the letters of test ids), no
/// separators.
fn path_safe(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl GraphClient {
    pub fn new(base: &str, tokens: GraphTokens) -> Result<Self, GraphError> {
        let base = base.trim_end_matches('/').to_owned();
        if !allowed_base(&base) {
            return Err(GraphError::Config(format!(
                "{GRAPH_API_BASE_URL} must be https:// (or http:// on loopback for a test server)"
            )));
        }
        Ok(Self {
            base,
            tokens,
            http: tokio::sync::OnceCell::new(),
        })
    }

    async fn once(&self, token: &GraphToken, igsid: &str) -> Result<Option<String>, GraphError> {
        let uri = format!("{}/{igsid}?fields=username", self.base);
        let request = hyper::Request::get(&uri)
            .header("authorization", format!("Bearer {}", token.0))
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| GraphError::Config(e.to_string()))?;
        let http = self.http.get_or_try_init(|| async { https_client() }).await?;
        let response = http
            .request(request)
            .await
            .map_err(|e| GraphError::Retryable(format!("request failed: {e}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| GraphError::Retryable("the answer could not be read".to_owned()))?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_success() {
            return match json.get("username") {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(u)) if !u.is_empty() && u.chars().count() <= MAX_USERNAME_CHARS => {
                    Ok(Some(u.clone()))
                }
                Some(_) => Err(GraphError::Permanent(
                    "the username is not one Instagram allows".to_owned(),
                )),
            };
        }
        // Meta's error codes: 4, 17, 32, 613 are rate limits; 1 and 2 are transient.
        let code = json["error"]["code"].as_i64();
        let what = format!("HTTP {}, error code {}", status.as_u16(), code.unwrap_or(0));
        if status.as_u16() == 429 || status.is_server_error() || matches!(code, Some(1 | 2 | 4 | 17 | 32 | 613)) {
            Err(GraphError::Retryable(what))
        } else {
            Err(GraphError::Permanent(what))
        }
    }
}

#[async_trait]
impl ProfileResolver for GraphClient {
    async fn instagram_username(&self, account: &str, igsid: &str) -> Result<Option<String>, GraphError> {
        let token = self.tokens.get(account).ok_or(GraphError::NoToken)?;
        if !path_safe(igsid) {
            return Err(GraphError::Permanent("not an Instagram-scoped id".to_owned()));
        }
        let attempts = async {
            let mut backoff = Backoff::with_attempts(ATTEMPTS - 1);
            loop {
                match self.once(token, igsid).await {
                    Err(GraphError::Retryable(why)) => {
                        if !backoff.wait().await {
                            return Err(GraphError::Retryable(why));
                        }
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, attempts)
            .await
            .unwrap_or_else(|_| Err(GraphError::Retryable("timed out".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_printed_and_clear_text_goes_to_loopback_only() {
        let token = GraphToken::new("EAAG-secret-token");
        assert!(!format!("{token:?}").contains("secret"));
        let client = GraphClient::new(
            "https://graph.instagram.com/v23.0/",
            GraphTokens::from([("17841400000000".to_owned(), token)]),
        )
        .expect("client");
        assert!(!format!("{client:?}").contains("secret"));
        assert!(matches!(
            GraphClient::new("http://graph.instagram.com", GraphTokens::new()),
            Err(GraphError::Config(_))
        ));
        assert!(GraphClient::new("http://127.0.0.1:9/v23.0", GraphTokens::new()).is_ok());
    }

    #[tokio::test]
    async fn an_account_without_a_token_or_an_id_that_is_no_id_asks_nothing() {
        let client = GraphClient::new(
            "http://127.0.0.1:9",
            GraphTokens::from([("1".to_owned(), GraphToken::new("t"))]),
        )
        .expect("client");
        assert_eq!(client.instagram_username("2", "123").await, Err(GraphError::NoToken));
        assert!(matches!(
            client.instagram_username("1", "../me").await,
            Err(GraphError::Permanent(_))
        ));
    }
}
