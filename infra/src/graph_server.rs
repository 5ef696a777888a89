//! A Meta Graph API on loopback, for tests and the local stack: it speaks the User Profile route
//! (`GET /{version}/{igsid}?fields=username` with a bearer token) as Meta does, answers from the
//! usernames it is given, fails on request (429, 5xx, with Meta's error bodies), and records every
//! request it receives, so the production client is tested over the wire.

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
}

#[derive(Debug, Default)]
struct Shared {
    token: String,
    usernames: HashMap<String, String>,
    failures: VecDeque<u16>,
    requests: Vec<Recorded>,
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
    });
    if let Some(status) = s.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = if status == StatusCode::TOO_MANY_REQUESTS { 4 } else { 2 };
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

impl GraphServer {
    /// Listens on a free loopback port; requests must carry `token`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let state = AppState::default();
        state.lock().token = token.to_owned();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/{version}/{igsid}", axum::routing::get(profile))
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

    /// The next requests fail with these statuses, in order.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().failures.extend(statuses);
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
}
