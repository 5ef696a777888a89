//! A Meta Graph API on loopback, for tests and the local stack: it speaks the User Profile route
//! (`GET /{version}/{igsid}?fields=username` with a bearer token) and the send routes
//! (`POST /{version}/{account}/messages`, WhatsApp Cloud API and Instagram Send API bodies) as
//! Meta does, answers from the usernames it is given, fails on request (429, 5xx, Meta's error
//! codes, or no answer at all), and records every request it receives, so the production clients
//! are tested over the wire.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API version the server answers under, as Meta's URLs carry one.
pub const VERSION: &str = "v23.0";

/// One request as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    /// The JSON body of a send.
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
struct Shared {
    token: String,
    usernames: HashMap<String, String>,
    /// Scripted answers: an HTTP status and Meta's error code; status 0 answers nothing (the
    /// request hangs past any client's timeout).
    failures: VecDeque<(u16, i64)>,
    requests: Vec<Recorded>,
    sent: u64,
}

#[derive(Clone, Debug, Default)]
struct AppState(Arc<Mutex<Shared>>);

impl AppState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub struct GraphServer {
    addr: SocketAddr,
    state: AppState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn graph_error(status: StatusCode, code: i64, message: &str) -> Response {
    json_response(
        status,
        json!({"error": {"message": message, "type": "OAuthException", "code": code}}),
    )
}

async fn profile(
    State(state): State<AppState>,
    Path((version, igsid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock();
    s.requests.push(Recorded {
        path: format!("/{version}/{igsid}"),
        query: query.clone(),
        authorization: authorization.clone(),
        body: None,
    });
    if let Some((status, code)) = s.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return graph_error(status, code, "scripted failure");
    }
    if version != VERSION {
        return graph_error(StatusCode::BAD_REQUEST, 2635, "unsupported API version");
    }
    if authorization.as_deref() != Some(&format!("Bearer {}", s.token)) {
        return graph_error(StatusCode::BAD_REQUEST, 190, "Invalid OAuth access token");
    }
    if query.as_deref() != Some("fields=username") {
        return graph_error(StatusCode::BAD_REQUEST, 100, "fields must be username");
    }
    match s.usernames.get(&igsid) {
        Some(u) => json_response(StatusCode::OK, json!({"username": u, "id": igsid})),
        None => graph_error(StatusCode::BAD_REQUEST, 100, "Unsupported get request"),
    }
}

/// `POST /{version}/{account}/messages`: WhatsApp's body carries `messaging_product`, Instagram's
/// `recipient.id`; each is answered as its API does.
async fn send(
    State(state): State<AppState>,
    Path((version, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let scripted = {
        let mut s = state.lock();
        s.requests.push(Recorded {
            path: format!("/{version}/{account}/messages"),
            query: None,
            authorization: authorization.clone(),
            body: json.clone(),
        });
        s.failures.pop_front()
    };
    match scripted {
        Some((0, _)) => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return graph_error(StatusCode::GATEWAY_TIMEOUT, 2, "too late");
        }
        Some((status, code)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return graph_error(status, code, "scripted failure");
        }
        None => {}
    }
    let mut s = state.lock();
    if version != VERSION {
        return graph_error(StatusCode::BAD_REQUEST, 2635, "unsupported API version");
    }
    if authorization.as_deref() != Some(&format!("Bearer {}", s.token)) {
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return graph_error(StatusCode::BAD_REQUEST, 100, "the body must be JSON");
    }
    let Some(json) = json else {
        return graph_error(StatusCode::BAD_REQUEST, 100, "the body must be JSON");
    };
    s.sent += 1;
    let n = s.sent;
    if json["messaging_product"] == "whatsapp" {
        let to = json
            .get("to")
            .or_else(|| json.get("recipient"))
            .cloned()
            .unwrap_or_default();
        let kind = json["type"].as_str().unwrap_or_default();
        if !matches!(kind, "text" | "template" | "interactive") || json[kind].is_null() {
            return graph_error(StatusCode::BAD_REQUEST, 100, "type and its object are required");
        }
        json_response(
            StatusCode::OK,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to}], "messages": [{"id": format!("wamid.loopback{n}")}]}),
        )
    } else if json["recipient"]["id"].is_string() && json["message"]["text"].is_string() {
        json_response(
            StatusCode::OK,
            json!({"recipient_id": json["recipient"]["id"], "message_id": format!("mid.loopback{n}")}),
        )
    } else {
        graph_error(StatusCode::BAD_REQUEST, 100, "not a message this API takes")
    }
}

impl GraphServer {
    /// Listens on a free loopback port; requests must carry `token`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let state = AppState::default();
        state.lock().token = token.to_owned();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/{version}/{igsid}", axum::routing::get(profile))
            .route("/{version}/{account}/messages", axum::routing::post(send))
            .with_state(state.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "loopback Graph API stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown,
            task,
        })
    }

    /// The base URL a client is given: `http://127.0.0.1:PORT/v23.0`.
    pub fn base_url(&self) -> String {
        format!("http://{}/{VERSION}", self.addr)
    }

    pub fn set_username(&self, igsid: &str, username: &str) {
        self.state
            .lock()
            .usernames
            .insert(igsid.to_owned(), username.to_owned());
    }

    /// The next requests fail with these statuses, in order (Meta's code 4 for 429, 2 else).
    pub fn fail_next(&self, statuses: &[u16]) {
        let coded = statuses.iter().map(|&s| (s, if s == 429 { 4 } else { 2 }));
        self.state.lock().failures.extend(coded);
    }

    /// The next requests fail with these statuses and Meta error codes, in order; a status of 0
    /// answers nothing for 30 seconds.
    pub fn fail_next_with(&self, answers: &[(u16, i64)]) {
        self.state.lock().failures.extend(answers);
    }

    /// The sends received (requests to a `/messages` route), in order.
    pub fn sends(&self) -> Vec<Recorded> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/messages"))
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().requests.clone()
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::meta::graph::{GraphClient, GraphError, GraphToken, GraphTokens, ProfileResolver};

    const ACCOUNT: &str = "17841400000001";

    async fn setup() -> (GraphServer, GraphClient) {
        let server = GraphServer::start("tok-123").await.expect("server");
        let client = GraphClient::new(
            &server.base_url(),
            GraphTokens::from([(ACCOUNT.to_owned(), GraphToken::new("tok-123"))]),
        )
        .expect("client");
        (server, client)
    }

    #[tokio::test]
    async fn the_client_asks_the_profile_route_with_the_token_in_a_header_only() {
        let (server, client) = setup().await;
        server.set_username("7012345678901234", "ana.perez");
        assert_eq!(
            client.instagram_username(ACCOUNT, "7012345678901234").await,
            Ok(Some("ana.perez".to_owned()))
        );
        let requests = server.requests();
        assert_eq!(
            requests,
            [Recorded {
                path: "/v23.0/7012345678901234".to_owned(),
                query: Some("fields=username".to_owned()),
                authorization: Some("Bearer tok-123".to_owned()),
                body: None,
            }]
        );
        assert!(!requests[0].query.as_deref().unwrap_or_default().contains("tok-123"));
        server.stop().await;
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_retried_and_a_refusal_is_not() {
        let (server, client) = setup().await;
        server.set_username("7012345678901234", "ana.perez");
        server.fail_next(&[503, 429]);
        assert_eq!(
            client.instagram_username(ACCOUNT, "7012345678901234").await,
            Ok(Some("ana.perez".to_owned())),
            "the third attempt answers"
        );
        assert_eq!(server.requests().len(), 3);

        // Unknown to Instagram (or no consent): asked once.
        let unknown = client.instagram_username(ACCOUNT, "7099999999999999").await;
        assert!(
            matches!(unknown, Err(GraphError::Permanent(ref w)) if w.contains("100")),
            "{unknown:?}"
        );
        assert_eq!(server.requests().len(), 4);

        // Down for longer than the attempts: reported as worth asking again later.
        server.fail_next(&[500, 502, 503]);
        let down = client.instagram_username(ACCOUNT, "7012345678901234").await;
        assert!(matches!(down, Err(GraphError::Retryable(_))), "{down:?}");
        assert_eq!(server.requests().len(), 7);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_and_its_value_is_in_no_error() {
        let server = GraphServer::start("right-token").await.expect("server");
        let client = GraphClient::new(
            &server.base_url(),
            GraphTokens::from([(ACCOUNT.to_owned(), GraphToken::new("wrong-token"))]),
        )
        .expect("client");
        server.set_username("7012345678901234", "ana.perez");
        let refused = client
            .instagram_username(ACCOUNT, "7012345678901234")
            .await
            .expect_err("refused");
        assert!(matches!(refused, GraphError::Permanent(_)), "{refused:?}");
        assert!(!refused.to_string().contains("wrong-token"));
        server.stop().await;
    }

    mod send {
        use super::*;
        use shared::domain::Channel;
        use shared::meta::send::{GraphSender, MessageSender, SendError, SendRequest};
        use shared::outbound::{Content, TemplateCategory};

        const PHONE_NUMBER_ID: &str = "100000000000001";

        async fn setup() -> (GraphServer, GraphSender, GraphToken) {
            let server = GraphServer::start("tok-send").await.expect("server");
            let sender = GraphSender::new(&server.base_url(), &server.base_url()).expect("sender");
            (server, sender, GraphToken::new("tok-send"))
        }

        fn text(body: &str) -> Content {
            Content::Text { body: body.to_owned() }
        }

        fn to<'a>(content: &'a Content) -> SendRequest<'a> {
            SendRequest {
                channel: Channel::WhatsApp,
                account: PHONE_NUMBER_ID,
                to: "AR.1000000000000000001",
                content,
            }
        }

        #[tokio::test]
        async fn a_whatsapp_text_goes_to_the_phone_numbers_route_with_the_token_in_a_header_only() {
            let (server, sender, token) = setup().await;
            let content = text("Hola Ana");
            let sent = sender.send(&token, &to(&content)).await.expect("sent");
            assert!(sent.message_id.starts_with("wamid."), "{sent:?}");
            let sends = server.sends();
            assert_eq!(sends.len(), 1);
            assert_eq!(sends[0].path, format!("/v23.0/{PHONE_NUMBER_ID}/messages"));
            assert_eq!(sends[0].authorization.as_deref(), Some("Bearer tok-send"));
            let body = sends[0].body.clone().expect("a JSON body");
            assert_eq!(body["messaging_product"], "whatsapp");
            assert_eq!(body["recipient"], "AR.1000000000000000001");
            assert_eq!(body["text"]["body"], "Hola Ana");
            assert!(
                !body.to_string().contains("tok-send"),
                "the token is in the header only"
            );

            let template = Content::Template {
                name: "order_update".into(),
                language: "es_AR".into(),
                category: TemplateCategory::Utility,
                components: json!([{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]),
            };
            sender.send(&token, &to(&template)).await.expect("a template is sent");
            let body = server.sends()[1].body.clone().expect("body");
            assert_eq!(body["template"]["name"], "order_update");
            assert_eq!(body["template"]["language"]["code"], "es_AR");
            assert_eq!(body["template"]["components"][0]["parameters"][0]["text"], "42");
            server.stop().await;
        }

        #[tokio::test]
        async fn an_instagram_text_goes_to_the_accounts_route() {
            let (server, sender, token) = setup().await;
            let content = text("Hola");
            let request = SendRequest {
                channel: Channel::Instagram,
                account: "17841400000001",
                to: "7012345678901234",
                content: &content,
            };
            let sent = sender.send(&token, &request).await.expect("sent");
            assert!(sent.message_id.starts_with("mid."), "{sent:?}");
            let sends = server.sends();
            assert_eq!(sends[0].path, "/v23.0/17841400000001/messages");
            assert_eq!(
                sends[0].body,
                Some(json!({"recipient": {"id": "7012345678901234"}, "message": {"text": "Hola"}}))
            );
            server.stop().await;
        }

        #[tokio::test]
        async fn throttling_and_server_errors_are_retried_with_backoff_and_a_permanent_refusal_is_not() {
            let (server, sender, token) = setup().await;
            let content = text("hola");
            // HTTP 429, then Meta's throughput limit (130429) in a 400, then a 503: the fourth
            // answer would be the send, but three attempts is all a send gets.
            server.fail_next_with(&[(429, 4), (400, 130429), (503, 2)]);
            let throttled = sender.send(&token, &to(&content)).await;
            assert_eq!(
                throttled,
                Err(SendError::Retryable {
                    status: 503,
                    code: Some(2)
                })
            );
            assert_eq!(server.sends().len(), 3, "three attempts");

            server.fail_next_with(&[(400, 131056), (500, 1)]);
            assert!(
                sender.send(&token, &to(&content)).await.is_ok(),
                "the third attempt is sent"
            );
            assert_eq!(server.sends().len(), 6);

            // Outside the 24-hour window: asked once, never again.
            server.fail_next_with(&[(400, 131047)]);
            assert_eq!(
                sender.send(&token, &to(&content)).await,
                Err(SendError::Permanent {
                    status: 400,
                    code: Some(131047)
                })
            );
            assert_eq!(server.sends().len(), 7);
            server.stop().await;
        }

        #[tokio::test]
        async fn a_wrong_token_is_refused_for_good_and_no_answer_is_ambiguous_never_retried() {
            let (server, sender, _) = setup().await;
            let content = text("hola");
            let refused = sender
                .send(&GraphToken::new("wrong-token"), &to(&content))
                .await
                .expect_err("refused");
            assert_eq!(
                refused,
                SendError::Permanent {
                    status: 401,
                    code: Some(190)
                }
            );
            assert!(!refused.to_string().contains("wrong-token"));

            server.fail_next_with(&[(0, 0)]);
            let silent = sender.send(&GraphToken::new("tok-send"), &to(&content)).await;
            assert!(matches!(silent, Err(SendError::Ambiguous(_))), "{silent:?}");
            assert_eq!(
                server.sends().len(),
                2,
                "a request that may have been sent is not repeated"
            );
            server.stop().await;
        }
    }
}
