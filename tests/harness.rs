//! Drives a local stack over HTTP, as Meta and an operator would. Each test gets its own stack on
//! the emulators started by `infra/test.sh`, with fresh tables and queues.

use local_stack::{Emulators, Options, RunningStack};
use serde_json::Value;
use shared::meta::signature::AppSecret;
use std::path::PathBuf;

pub const APP_SECRET: &str = "e2e-app-secret";
pub const ADMIN: &str = "e2e-operator-token-0001";
/// The stack's subject-key secret, so a test can compute the keys it looks for.
pub const E2E_SUBJECT_KEY_SECRET: &str = "e2e-subject-key-secret-0123456789abcdef";
/// The operator the e2e tests act as: every role, on the fixtures' tenants (the access matrix
/// itself is tested route by route in `functions/admin/tests/access.rs`).
pub const OPERATOR: &str = "arn:local:iam::000000000000:user/e2e-operator";

/// The token the loopback Graph API accepts, and what each tenant's secret holds.
pub const GRAPH_TOKEN: &str = "e2e-graph-token";

/// The access-token secret a tenant's registration names (`meta::send::valid_token_secret`).
pub fn token_secret(tenant: &str) -> String {
    format!("e2e/tenants/{tenant}/meta-access-token")
}

/// Tenant A and B's accounts, as the fixtures use them.
pub const A_PHONE_NUMBER_ID: &str = "106540352242922";
pub const A_WABA: &str = "102290129340398";
pub const A_INSTAGRAM: &str = "17841400000001";
pub const B_PHONE_NUMBER_ID: &str = "106540352249999";
pub const B_INSTAGRAM: &str = "17841400009999";

fn emulator(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the suite with infra/test.sh, which starts the emulators"))
}

/// `<channel>:<id>` of a contact in the listing, from its `channel` and `id` fields (its
/// `contact` field is the opaque handle).
pub fn contact_key(c: &Value) -> String {
    format!(
        "{}:{}",
        c["channel"].as_str().unwrap_or_default(),
        c["id"].as_str().unwrap_or_default()
    )
}

#[derive(Debug)]
pub struct E2e {
    pub stack: RunningStack,
    pub http: reqwest::Client,
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn sign(body: &[u8]) -> String {
    AppSecret::new(APP_SECRET).sign(body)
}

impl E2e {
    /// A stack on DynamoDB Local and the SQS server, on a free loopback port.
    pub async fn on_emulators() -> Self {
        Self::on_emulators_with(&[]).await
    }

    /// A stack whose Meta is a loopback Graph API (profile lookups and sends), each fixture tenant
    /// holding a token it accepts.
    pub async fn with_graph() -> (local_stack::graph_server::GraphServer, Self) {
        Self::with_graph_and(&[]).await
    }

    /// `with_graph`, with more environment variables.
    pub async fn with_graph_and(extra: &[(&str, String)]) -> (local_stack::graph_server::GraphServer, Self) {
        let graph = local_stack::graph_server::GraphServer::start(GRAPH_TOKEN)
            .await
            .expect("graph server");
        let tokens: serde_json::Map<String, Value> = ["tenant-a", "tenant-b", "late-tenant"]
            .iter()
            .map(|t| (token_secret(t), Value::from(GRAPH_TOKEN)))
            .collect();
        let mut env = vec![
            ("GRAPH_API_BASE_URL", graph.base_url()),
            ("WHATSAPP_API_BASE_URL", graph.base_url()),
            ("TENANT_ACCESS_TOKENS", Value::Object(tokens).to_string()),
        ];
        env.extend(extra.iter().cloned());
        let e = Self::on_emulators_with(&env).await;
        (graph, e)
    }

    /// The same, with more environment variables for the stack (a Graph API server, say).
    pub async fn on_emulators_with(extra: &[(&str, String)]) -> Self {
        let given = |n: &str| extra.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let env = |n: &str| match n {
            n if given(n).is_some() => given(n),
            "META_APP_SECRET" => Some(APP_SECRET.to_owned()),
            "META_VERIFY_TOKEN" => Some("e2e-verify".to_owned()),
            "LOCAL_PRINCIPALS" => Some(
                serde_json::json!([{
                    "token": ADMIN, "principal": OPERATOR,
                    "roles": ["tenant_agent", "privacy_officer", "platform_admin", "auditor"],
                    "tenants": ["tenant-a", "tenant-b", "late-tenant"],
                }])
                .to_string(),
            ),
            "SUBJECT_KEY_SECRET" => Some(E2E_SUBJECT_KEY_SECRET.to_owned()),
            _ => None,
        };
        let mut options = Options::from_args(["--port".to_owned(), "0".to_owned()], env).expect("options");
        options.emulators = Some(Emulators {
            dynamodb: emulator("DYNAMODB_ENDPOINT"),
            sqs: emulator("SQS_ENDPOINT"),
        });
        let stack = local_stack::start(options)
            .await
            .expect("local stack starts on the emulators");
        Self {
            stack,
            http: local_stack::http_client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.url())
    }

    /// POSTs a body to the webhook with the given signature header (None: no header).
    pub async fn post_webhook_signed_as(&self, body: &[u8], signature: Option<String>) -> (u16, String) {
        let mut req = self
            .http
            .post(self.url("/webhooks/meta"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.send().await.expect("webhook request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    pub async fn post_webhook(&self, body: &[u8]) -> (u16, String) {
        self.post_webhook_signed_as(body, Some(sign(body))).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .expect("admin request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn register(&self, tenant: &str, whatsapp: &[&str], instagram: &[&str]) -> (u16, Value) {
        let body = serde_json::json!({
            "tenant_id": tenant, "name": format!("Tenant {tenant}"),
            "whatsapp_phone_number_ids": whatsapp, "instagram_account_ids": instagram,
            "retention_months": 24, "locale": "es", "access_token_secret": token_secret(tenant),
        });
        self.admin_post("/admin/tenants", &body).await
    }

    /// Waits until the ingest queue is empty: everything sent so far is processed.
    pub async fn drain(&self) {
        let resp = self.http.post(self.url("/_local/drain")).send().await.expect("drain");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "drain: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// `POST /_local/tick`: runs a scheduled cleanup job now, against the stack's clock; the
    /// run it answers with holds the counts the job emitted as metrics.
    pub async fn tick(&self, job: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/_local/tick"))
            .json(&serde_json::json!({ "job": job }))
            .send()
            .await
            .expect("tick");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "tick {job}: {body}");
        body
    }

    /// `POST /_local/clock`: moves the stack's clock (stores, deadlines, retention).
    pub async fn set_clock(&self, now: shared::timestamp::Timestamp) {
        let resp = self
            .http
            .post(self.url("/_local/clock"))
            .json(&serde_json::json!({ "now": now }))
            .send()
            .await
            .expect("clock");
        assert_eq!(resp.status().as_u16(), 200, "set clock");
    }

    pub async fn contacts(&self, tenant: &str) -> Vec<Value> {
        let (status, body) = self
            .admin_get(&format!("/admin/tenants/{tenant}/contacts?limit=100"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["contacts"].as_array().cloned().unwrap_or_default()
    }

    /// `POST /admin/contactability` for one identifier, as an outbound sender would ask.
    pub async fn contactability(&self, tenant: &str, channel: &str, id: &str, purpose: &str) -> Value {
        let question = serde_json::json!({"tenant": tenant, "channel": channel, "id": id, "purpose": purpose});
        let (status, body) = self.admin_post("/admin/contactability", &question).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `POST /admin/tenants/{tenant}/messages` to the contact with `handle`, idempotent on `key`.
    pub async fn send_message(&self, tenant: &str, key: &str, handle: &str, content: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(&format!("/admin/tenants/{tenant}/messages")))
            .bearer_auth(ADMIN)
            .header("idempotency-key", key)
            .json(&serde_json::json!({"to": handle, "content": content}))
            .send()
            .await
            .expect("send request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// How the send `key` went (`GET /admin/tenants/{tenant}/messages/{key}`).
    pub async fn sent(&self, tenant: &str, key: &str) -> Value {
        let (status, body) = self.admin_get(&format!("/admin/tenants/{tenant}/messages/{key}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Everything waiting on a queue nobody in the stack consumes (propagation).
    pub async fn take_all(queue: &std::sync::Arc<dyn shared::queue::Queue>) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = queue
                .receive(10, std::time::Duration::from_millis(300))
                .await
                .expect("receive");
            if got.is_empty() {
                return out;
            }
            for m in got {
                queue.delete(&m.receipt).await.expect("delete");
                out.push(serde_json::from_str(&m.body).expect("json message"));
            }
        }
    }

    /// The handle the contacts listing gives `<channel>:<id>`: paths name contacts by it.
    pub async fn handle(&self, tenant: &str, contact: &str) -> String {
        let contacts = self.contacts(tenant).await;
        let listed = contacts
            .iter()
            .find(|c| contact_key(c) == contact)
            .unwrap_or_else(|| panic!("{contact} is not among {tenant}'s contacts"));
        listed["contact"].as_str().expect("a handle").to_owned()
    }

    /// The messages of `<channel>:<id>`, read through the handle the listing gives it.
    pub async fn messages(&self, tenant: &str, contact: &str) -> Vec<Value> {
        let handle = self.handle(tenant, contact).await;
        self.messages_at(tenant, &handle).await
    }

    /// The messages of the contact with this handle.
    pub async fn messages_at(&self, tenant: &str, handle: &str) -> Vec<Value> {
        let (status, body) = self
            .admin_get(&format!("/admin/tenants/{tenant}/contacts/{handle}/messages?limit=100"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

impl E2e {
    /// Every item of every table the stack created on DynamoDB Local, as `(table, item)` with the
    /// item in the SDK's debug form (which shows every value): what a scan for leftovers reads.
    /// Tests only: no request path scans.
    pub async fn scan_tables(&self) -> Vec<(String, String)> {
        let tables = self.stack.tables.as_ref().expect("a stack on the emulators");
        let endpoints = shared::config::Endpoints {
            dynamodb: Some(emulator("DYNAMODB_ENDPOINT")),
            ..shared::config::Endpoints::default()
        };
        let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
        let mut out = Vec::new();
        for kind in shared::config::TableKind::ALL {
            let name = tables.get(kind).to_owned();
            let mut start = None;
            loop {
                let page = client
                    .scan()
                    .table_name(&name)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .expect("scan");
                for item in page.items() {
                    out.push((name.clone(), format!("{item:?}")));
                }
                start = page.last_evaluated_key().cloned();
                if start.is_none() {
                    break;
                }
            }
        }
        out
    }
}
