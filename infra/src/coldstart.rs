//! Cold-start benchmark: starts a function's release binary under a minimal Lambda Runtime API
//! served on loopback, with the emulators behind a timing proxy, and measures init (process start
//! to the first `/next`), the first invocation and the fifth. Time spent waiting on the emulators
//! is counted by the proxy and reported apart, so what remains is the function's own work.

use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription, ApiGatewayV2httpRequest,
};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use shared::config::{Endpoints, QueueKind, TableKind, TableNames};
use shared::meta::signature::AppSecret;
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use shared::secrets::{self, SecretValues, StaticSecrets};
use shared::wiring::LocalResources;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const INVOCATIONS: usize = 5;
const APP_SECRET: &str = "bench-app-secret";
const SUBJECT_SECRET: &str = "bench-subject-key-secret-0123456789abcdef";
const TENANT: &str = "bench";
/// The admin caller of the bench, granted what its requests need.
const BENCH_PRINCIPAL: &str = "arn:aws:iam::000000000000:user/bench";
const PHONE_NUMBER_ID: &str = "100000000000777";

/// Sums the time requests spend upstream, for every proxy that shares it.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTime(Arc<AtomicU64>);

impl UpstreamTime {
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    spent: UpstreamTime,
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        p.upstream,
        uri.path_and_query().map(|q| q.as_str()).unwrap_or("/")
    );
    let mut req = p.http.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let started = Instant::now();
    let result = async {
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, headers, bytes))
    }
    .await;
    p.spent
        .0
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
    match result {
        Ok((status, headers, bytes)) => {
            let mut out = (status, bytes).into_response();
            for (k, v) in &headers {
                if k != "content-length" && k != "transfer-encoding" {
                    out.headers_mut().insert(k, v.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// A loopback proxy to `upstream`; returns its URL.
pub async fn proxy(upstream: &str, spent: UpstreamTime) -> std::io::Result<String> {
    let state = Proxy {
        upstream: upstream.trim_end_matches('/').to_owned(),
        http: crate::http_client(),
        spent,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(forward).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// What one cold start observed.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub init: Duration,
    pub init_upstream: Duration,
    /// Per invocation: duration and the part of it spent upstream.
    pub invocations: Vec<(Duration, Duration)>,
}

#[derive(Default)]
struct RuntimeState {
    events: VecDeque<String>,
    first_next: Option<Instant>,
    in_flight: Option<(String, Instant, Duration)>,
    done: Vec<(Duration, Duration)>,
    errors: Vec<String>,
    init_upstream: Duration,
}

#[derive(Clone)]
struct Runtime {
    state: Arc<Mutex<RuntimeState>>,
    changed: Arc<Notify>,
    spent: UpstreamTime,
}

impl Runtime {
    fn lock(&self) -> std::sync::MutexGuard<'_, RuntimeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn next(State(rt): State<Runtime>) -> Response {
    let event = {
        let mut s = rt.lock();
        if s.first_next.is_none() {
            s.first_next = Some(Instant::now());
            s.init_upstream = rt.spent.now();
        }
        s.events.pop_front()
    };
    let Some(event) = event else {
        // No more events: hold the request until the process is stopped.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let id = uuid::Uuid::new_v4().to_string();
    rt.lock().in_flight = Some((id.clone(), Instant::now(), rt.spent.now()));
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut resp = event.into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    resp
}

async fn respond(State(rt): State<Runtime>, Path((id, kind)): Path<(String, String)>, body: String) -> StatusCode {
    let now = Instant::now();
    let mut s = rt.lock();
    if let Some((current, at, upstream_at)) = s.in_flight.take()
        && current == id
    {
        s.done.push((now - at, rt.spent.now() - upstream_at));
        if kind == "error" {
            s.errors.push(body);
        }
    }
    drop(s);
    rt.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Runtime>, body: String) -> StatusCode {
    rt.lock().errors.push(format!("init error: {body}"));
    rt.changed.notify_waiters();
    StatusCode::ACCEPTED
}

/// Starts `binary` with `env`, feeds it `events`, and returns what it observed.
pub async fn cold_start(
    binary: &std::path::Path,
    env: &BTreeMap<String, String>,
    events: Vec<String>,
    spent: &UpstreamTime,
) -> Result<Run, String> {
    let expected = events.len();
    let rt = Runtime {
        state: Arc::new(Mutex::new(RuntimeState {
            events: events.into(),
            ..Default::default()
        })),
        changed: Arc::new(Notify::new()),
        spent: spent.clone(),
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", axum::routing::get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/{kind}",
            axum::routing::post(respond),
        )
        .route("/2018-06-01/runtime/init/error", axum::routing::post(init_error))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = spent.now();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notified = rt.changed.notified();
            {
                let s = rt.lock();
                if s.done.len() >= expected || !s.errors.is_empty() {
                    return;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
    let _ = child.start_kill();
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    server.abort();
    let s = rt.lock();
    if !s.errors.is_empty() || waited.is_err() {
        return Err(format!(
            "{}: {:?}; stderr: {}",
            binary.display(),
            s.errors,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let first_next = s.first_next.ok_or("the function never asked for an event")?;
    Ok(Run {
        init: first_next - started,
        init_upstream: s.init_upstream - base,
        invocations: s.done.clone(),
    })
}

/// What the benchmark's functions run on: fresh tables and queues on the emulators, a secret in
/// Secrets Manager, a registered tenant.
#[derive(Debug)]
pub struct Fixture {
    pub env: BTreeMap<String, String>,
    resources: LocalResources,
    optout_queue: Arc<dyn Queue>,
}

fn api_event(method: Method, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> ApiGatewayV2httpRequest {
    let mut e = ApiGatewayV2httpRequest::default();
    e.version = Some("2.0".into());
    e.route_key = Some("$default".into());
    e.raw_path = Some(path.to_owned());
    e.request_context.http.method = method;
    e.request_context.http.path = Some(path.to_owned());
    e.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (k.parse::<http::HeaderName>(), v.parse()) {
            e.headers.insert(k, v);
        }
    }
    let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
    iam.user_arn = Some(BENCH_PRINCIPAL.into());
    let mut auth = ApiGatewayRequestAuthorizer::default();
    auth.iam = Some(iam);
    e.request_context.authorizer = Some(auth);
    e.body = body;
    e
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A signed WhatsApp text from a sender of its own.
fn whatsapp_text(sender: u64, text: &str) -> String {
    let now = shared::clock::Clock::now(&shared::clock::SystemClock).unix_seconds();
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491100000000", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": format!("54911{sender:08}"), "user_id": format!("AR.{sender:019}")}],
            "messages": [{"from": format!("54911{sender:08}"), "from_user_id": format!("AR.{sender:019}"),
                "id": format!("wamid.bench{}", uuid::Uuid::new_v4().simple()),
                "timestamp": now.to_string(), "type": "text", "text": {"body": text}}]
        }}]}]
    })
    .to_string()
}

fn sqs_event(bodies: Vec<String>) -> String {
    let mut event = SqsEvent::default();
    event.records = bodies
        .into_iter()
        .map(|b| {
            let mut m = SqsMessage::default();
            m.message_id = Some(uuid::Uuid::new_v4().to_string());
            m.body = Some(b);
            m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
            m
        })
        .collect();
    json(&event)
}

impl Fixture {
    /// `dynamodb`, `sqs` are the emulators; `dynamodb_proxy`, `moto_proxy` what the functions
    /// are pointed at.
    pub async fn new(dynamodb: &str, sqs: &str, dynamodb_proxy: &str, moto_proxy: &str) -> Result<Self, String> {
        let endpoints = Endpoints {
            dynamodb: Some(dynamodb.to_owned()),
            sqs: Some(sqs.to_owned()),
            secretsmanager: Some(sqs.to_owned()),
        };
        let sdk = shared::aws::sdk_config().await;
        let dynamo = shared::aws::dynamodb(&sdk, &endpoints);
        let sqs_client = shared::aws::sqs(&sdk, &endpoints);
        let prefix = format!("bench-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let tables = TableNames::with_prefix(&prefix);
        let template = shared::provision::TEMPLATE;
        shared::provision::create_tables(&dynamo, template, &tables)
            .await
            .map_err(|e| e.to_string())?;
        let urls = shared::provision::create_queues(&sqs_client, template, &prefix)
            .await
            .map_err(|e| e.to_string())?;
        let values = serde_json::json!({
            secrets::META_APP_SECRET: [APP_SECRET],
            secrets::META_VERIFY_TOKEN: "bench-verify",
            secrets::SUBJECT_KEY_SECRET: SUBJECT_SECRET,
        });
        let arn = shared::aws::secretsmanager(&sdk, &endpoints)
            .create_secret()
            .name(format!("{prefix}secrets"))
            .secret_string(values.to_string())
            .send()
            .await
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())?
            .arn
            .ok_or("no secret ARN")?;

        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for kind in TableKind::ALL {
            env.insert(kind.env_var().into(), tables.get(kind).into());
        }
        let mut queues: BTreeMap<QueueKind, Arc<dyn Queue>> = BTreeMap::new();
        for kind in QueueKind::ALL {
            let url = urls.get(kind.logical_id()).ok_or("queue missing")?;
            env.insert(kind.env_var().into(), url.clone());
            queues.insert(kind, Arc::new(SqsQueue::new(sqs_client.clone(), url.clone())));
        }
        for (k, v) in [
            (secrets::SECRETS_ARN, arn.as_str()),
            ("DYNAMODB_ENDPOINT", dynamodb_proxy),
            ("SQS_ENDPOINT", moto_proxy),
            ("SECRETSMANAGER_ENDPOINT", moto_proxy),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            (shared::config::PUBLIC_BASE_URL, "http://127.0.0.1"),
        ] {
            env.insert(k.into(), v.into());
        }
        let clock: shared::clock::SharedClock = Arc::new(shared::clock::SystemClock);
        let resources = LocalResources {
            stores: shared::store::dynamodb::stores(&dynamo, &tables, clock.clone(), &Default::default()),
            sweeps: shared::store::dynamodb::sweeps(&dynamo, &tables, clock.clone(), &Default::default()),
            queues: queues.clone(),
            secrets: Arc::new(StaticSecrets::new(
                SecretValues::parse("bench", &values.to_string()).map_err(|e| e.to_string())?,
            )),
            outbox: shared::store::dynamodb::outbox(&dynamo, &tables, clock.clone(), &Default::default()),
            clock,
            public_base_url: "http://127.0.0.1".to_owned(),
            graph_api_base_url: shared::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned(),
            whatsapp_api_base_url: shared::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned(),
            tenant_tokens: Arc::new(shared::meta::send::StaticTokens::default()),
        };
        // The bench caller registers the tenant and reads its contacts.
        let bench = shared::access::Principal {
            id: shared::access::PrincipalId::new(BENCH_PRINCIPAL).map_err(|e| e.to_string())?,
            roles: [shared::access::Role::PlatformAdmin, shared::access::Role::TenantAgent].into(),
            tenants: [shared::domain::TenantId::new(TENANT).map_err(|e| e.to_string())?].into(),
            granted_at: shared::clock::Clock::now(&shared::clock::SystemClock),
            granted_by: "coldstart bench".to_owned(),
        };
        resources
            .stores
            .principals
            .put(&bench)
            .await
            .map_err(|e| e.to_string())?;
        let admin = admin::build(&resources).await.map_err(|e| e.to_string())?;
        let registration =
            serde_json::json!({"tenant_id": TENANT, "name": "Bench", "whatsapp_phone_number_ids": [PHONE_NUMBER_ID]});
        let r = admin
            .handle(&api_event(
                Method::POST,
                "/admin/tenants",
                Some(registration.to_string()),
                &[],
            ))
            .await;
        if r.status_code >= 300 {
            return Err(format!("tenant registration answered {}", r.status_code));
        }
        Ok(Self {
            env,
            optout_queue: queues[&QueueKind::OptOut].clone(),
            resources,
        })
    }

    /// `INVOCATIONS` events of equal cost for `function`, from senders numbered from `base`.
    pub async fn events(&self, function: &str, base: u64) -> Result<Vec<String>, String> {
        let senders = base..base + INVOCATIONS as u64;
        let secret = AppSecret::new(APP_SECRET);
        Ok(match function {
            "webhook" => senders
                .map(|s| {
                    let body = whatsapp_text(s, "Hola");
                    let sig = secret.sign(body.as_bytes());
                    json(&api_event(
                        Method::POST,
                        "/webhooks/meta",
                        Some(body),
                        &[
                            ("x-hub-signature-256", sig.as_str()),
                            ("content-type", "application/json"),
                        ],
                    ))
                })
                .collect(),
            "processor" => senders
                .map(|s| sqs_event(envelopes(&whatsapp_text(s, "Hola"))))
                .collect(),
            "optout" => {
                // The processor's own commands for a STOP from each sender.
                let processor = processor::build(&self.resources).await.map_err(|e| e.to_string())?;
                let stops: Vec<String> = senders.flat_map(|s| envelopes(&whatsapp_text(s, "STOP"))).collect();
                let out = processor
                    .handle(serde_json::from_str(&sqs_event(stops)).map_err(|e| e.to_string())?)
                    .await;
                if !out.batch_item_failures.is_empty() {
                    return Err("the processor refused the STOP envelopes".into());
                }
                let mut commands = Vec::new();
                while commands.len() < INVOCATIONS {
                    let got = self
                        .optout_queue
                        .receive(10, Duration::from_secs(1))
                        .await
                        .map_err(|e| e.to_string())?;
                    if got.is_empty() {
                        return Err("the processor sent no opt-out commands".into());
                    }
                    for m in got {
                        self.optout_queue.delete(&m.receipt).await.map_err(|e| e.to_string())?;
                        commands.push(sqs_event(vec![m.body]));
                    }
                }
                commands
            }
            "admin" => senders
                .map(|_| {
                    json(&api_event(
                        Method::GET,
                        &format!("/admin/tenants/{TENANT}/contacts"),
                        None,
                        &[],
                    ))
                })
                .collect(),
            other => return Err(format!("no events for {other}")),
        })
    }
}

fn envelopes(body: &str) -> Vec<String> {
    let now = shared::clock::Clock::now(&shared::clock::SystemClock);
    shared::meta::envelope::split(body.as_bytes(), "bench", now)
        .map(|s| s.envelopes)
        .unwrap_or_default()
}

/// The median of `values`.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
