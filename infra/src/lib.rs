//! The local stack: every route of the system on loopback, with no AWS account. HTTP requests are
//! turned into the same API Gateway events Lambda receives and handed to the same handler code;
//! an in-process pump feeds the ingest queue to the processor as Lambda's SQS event source would.
//! Storage and queues are embedded by default, or DynamoDB Local and an SQS server when given
//! their endpoints (tables and queues then come from template.yaml).

pub mod coldstart;
pub mod graph_server;
pub mod operator;
pub mod principals;
pub mod privacy_cli;

/// An HTTP client builder for the tools and tests: reqwest's TLS is rustls without a built-in
/// provider (the operator CLI reaches deployed APIs over HTTPS), so ring, which the SDK already
/// builds, is installed first.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// [`http_client_builder`] with its defaults.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .unwrap_or_else(|e| unreachable!("a default client always builds: {e}"))
}

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body as LambdaBody;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use http::{HeaderValue, Method, StatusCode};
use principals::LocalPrincipal;
use shared::access::Role;
use shared::apigw::{self, Request};
use shared::clock::{Clock, SettableClock, SharedClock, SystemClock};
use shared::config::{Endpoints, QueueKind, TableNames};
use shared::meta::signature::AppSecret;
use shared::provision::{self, QueueSpec, TEMPLATE};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::sqs::SqsQueue;
use shared::secrets::{self, SecretValues, StaticSecrets};
use shared::store::Stores;
use shared::timestamp::Timestamp;
use shared::wiring::{LocalResources, WiringError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use webhook::Webhook;

/// The local stack's environment variables for the secrets a deployed stack reads from Secrets
/// Manager.
pub const META_APP_SECRET: &str = "META_APP_SECRET";
pub const META_VERIFY_TOKEN: &str = "META_VERIFY_TOKEN";
pub const SUBJECT_KEY_SECRET: &str = "SUBJECT_KEY_SECRET";
/// Tenants' Meta access tokens by secret name, for the sender (see `Options`).
pub const TENANT_ACCESS_TOKENS: &str = "TENANT_ACCESS_TOKENS";
pub const DEFAULT_PORT: u16 = 3000;
/// Lambda's synchronous payload limit: larger requests never reach a function in AWS either.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// How long `POST /_local/drain` waits for the queues to empty: long enough for a 150-message
/// envelope on DynamoDB Local when the machine is busy (2 cores shared with builds), which took
/// past 30 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Printed, never used outside this binary.
const DEV_SECRETS: &[(&str, &str)] = &[
    (META_APP_SECRET, "dev-app-secret"),
    (META_VERIFY_TOKEN, "dev-verify-token"),
    (SUBJECT_KEY_SECRET, "dev-subject-key-secret-for-the-local-stack-only"),
];

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0}")]
    Usage(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("setting up the emulators: {0}")]
    Provision(#[from] provision::ProvisionError),
    #[error("building a handler: {0}")]
    Wiring(#[from] WiringError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Emulator endpoints, when the stack runs on DynamoDB Local and an SQS server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emulators {
    pub dynamodb: String,
    pub sqs: String,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub bind: SocketAddr,
    pub emulators: Option<Emulators>,
    /// Secret values by variable name.
    pub secrets: HashMap<&'static str, String>,
    /// The variables that fell back to a printed development value.
    pub dev_fallbacks: Vec<&'static str>,
    /// Who may call the admin routes, by bearer token (`LOCAL_PRINCIPALS`).
    pub principals: Vec<LocalPrincipal>,
    /// `GRAPH_API_BASE_URL`: where the processor asks Instagram usernames (a loopback test
    /// server, say); Meta's own by default.
    pub graph_api_base_url: String,
    /// `INSTAGRAM_ACCESS_TOKENS`, a JSON object of account id to token; without it no username
    /// is looked up.
    pub instagram_access_tokens: Option<serde_json::Value>,
    /// `WHATSAPP_API_BASE_URL`: where the sender sends WhatsApp messages (a loopback test
    /// server, say); Meta's own by default. Instagram messages go to `graph_api_base_url`.
    pub whatsapp_api_base_url: String,
    /// `TENANT_ACCESS_TOKENS`, a JSON object of secret name (a tenant's `access_token_secret`)
    /// to token: what Secrets Manager holds in AWS. Without it the sender refuses every send
    /// with `no_token`.
    pub tenant_access_tokens: shared::meta::send::StaticTokens,
}

pub fn usage() -> &'static str {
    "usage: cargo run -- [--port N] [--bind ADDRESS] [--dynamodb-endpoint URL --sqs-endpoint URL]\n\
     \n\
     Serves every route on loopback. Storage and queues are in-process unless both emulator\n\
     endpoints are given (tables and queues are then created from template.yaml).\n\
     Secrets: META_APP_SECRET, META_VERIFY_TOKEN, SUBJECT_KEY_SECRET from the environment, or\n\
     printed development values. Admin callers: LOCAL_PRINCIPALS, a JSON list of\n\
     {\"token\", \"principal\", \"roles\", \"tenants\"?}, or one printed development principal per role."
}

impl Options {
    pub fn from_args(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, StackError> {
        let mut port = DEFAULT_PORT;
        let mut host: std::net::IpAddr = [127, 0, 0, 1].into();
        let (mut dynamodb, mut sqs) = (None, None);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| StackError::Usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--port" => {
                    port = value()?
                        .parse()
                        .map_err(|_| StackError::Usage("--port takes a number".into()))?
                }
                "--bind" => {
                    host = value()?
                        .parse()
                        .map_err(|_| StackError::Usage("--bind takes an IP address".into()))?
                }
                "--dynamodb-endpoint" => dynamodb = Some(value()?),
                "--sqs-endpoint" => sqs = Some(value()?),
                "-h" | "--help" => return Err(StackError::Usage("help".into())),
                other => return Err(StackError::Usage(format!("unknown argument {other}"))),
            }
        }
        let emulators = match (dynamodb, sqs) {
            (Some(dynamodb), Some(sqs)) => Some(Emulators { dynamodb, sqs }),
            (None, None) => None,
            _ => {
                return Err(StackError::Usage(
                    "give both --dynamodb-endpoint and --sqs-endpoint, or neither".into(),
                ));
            }
        };
        let mut secrets = HashMap::new();
        let mut dev_fallbacks = Vec::new();
        for (name, dev) in DEV_SECRETS {
            match env(name).filter(|v| !v.is_empty()) {
                Some(v) => secrets.insert(*name, v),
                None => {
                    dev_fallbacks.push(*name);
                    secrets.insert(*name, (*dev).to_owned())
                }
            };
        }
        let configured = env(principals::LOCAL_PRINCIPALS).filter(|v| !v.trim().is_empty());
        let principals = principals::parse(configured.as_deref()).map_err(StackError::Config)?;
        if configured.is_none() {
            dev_fallbacks.push(principals::LOCAL_PRINCIPALS);
        }
        let instagram_access_tokens = env("INSTAGRAM_ACCESS_TOKENS")
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                serde_json::from_str(&v)
                    .map_err(|_| StackError::Usage("INSTAGRAM_ACCESS_TOKENS must be a JSON object".into()))
            })
            .transpose()?;
        let tenant_access_tokens = match env(TENANT_ACCESS_TOKENS).filter(|v| !v.trim().is_empty()) {
            None => Default::default(),
            Some(v) => {
                let map: BTreeMap<String, String> = serde_json::from_str(&v).map_err(|_| {
                    StackError::Usage(format!(
                        "{TENANT_ACCESS_TOKENS} must be a JSON object of secret name to token"
                    ))
                })?;
                shared::meta::send::StaticTokens::new(
                    map.into_iter()
                        .map(|(k, t)| (k, shared::meta::graph::GraphToken::new(t))),
                )
            }
        };
        Ok(Self {
            bind: SocketAddr::new(host, port),
            whatsapp_api_base_url: env(shared::meta::send::WHATSAPP_API_BASE_URL)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| shared::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned()),
            tenant_access_tokens,
            emulators,
            secrets,
            dev_fallbacks,
            graph_api_base_url: env(shared::meta::graph::GRAPH_API_BASE_URL)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| shared::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned()),
            instagram_access_tokens,
            principals,
        })
    }
}

struct App {
    webhook: Webhook,
    outbound: sender::api::OutboundApi,
    admin: admin::Admin,
    deletion: deletion::Deletion,
    cleanup: cleanup::Cleanup,
    clock: SettableClock,
    /// The queues that have a consumer, in flow order (the ingest queue first).
    consumed: Vec<Arc<dyn Queue>>,
    principals: Vec<LocalPrincipal>,
}

#[derive(Debug)]
pub struct RunningStack {
    pub addr: SocketAddr,
    pub clock: SettableClock,
    pub stores: Stores,
    /// Every queue functions send to, by kind.
    pub queues: BTreeMap<QueueKind, Arc<dyn Queue>>,
    /// Every queue of the template, dead-letter queues included, by logical id.
    pub queues_by_id: BTreeMap<String, Arc<dyn Queue>>,
    pub backend: String,
    /// The emulator tables the stack created (None on the embedded store).
    pub tables: Option<TableNames>,
    options: Options,
    /// The first app secret, which the banner's example request is signed with.
    signer: AppSecret,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    pumps: Vec<JoinHandle<()>>,
}

/// The template's queues in memory, each with its dead-letter queue and redrive count.
fn embedded_queues(specs: &BTreeMap<String, QueueSpec>, clock: SharedClock) -> BTreeMap<String, Arc<dyn Queue>> {
    let mut made: BTreeMap<String, Arc<EmbeddedQueue>> = BTreeMap::new();
    let mut order: Vec<&String> = specs.keys().collect();
    order.sort_by_key(|id| specs[*id].redrive.is_some());
    for id in order {
        let spec = &specs[id];
        let mut q = EmbeddedQueue::new(
            clock.clone(),
            Duration::from_secs(u64::from(spec.visibility_timeout_secs)),
        );
        if let Some((dlq, max)) = &spec.redrive
            && let Some(dead) = made.get(dlq)
        {
            q = q.with_dead_letter(dead.clone(), *max);
        }
        made.insert(id.clone(), Arc::new(q));
    }
    made.into_iter().map(|(id, q)| (id, q as Arc<dyn Queue>)).collect()
}

/// A queue consumer, as Lambda's SQS event source invokes it.
type Consumer = Arc<dyn Fn(SqsEvent) -> BatchFuture + Send + Sync>;

/// The SQS-triggered functions the stack runs, by their binary name in template.yaml: adding a
/// function to the stack is one line here.
async fn consumer(binary: &str, r: &LocalResources) -> Result<Consumer, StackError> {
    fn serve<H: Clone + Send + Sync + 'static, F: Future<Output = SqsBatchResponse> + Send + 'static>(
        handler: H,
        call: fn(H, SqsEvent) -> F,
    ) -> Consumer {
        Arc::new(move |event| Box::pin(call(handler.clone(), event)))
    }
    Ok(match binary {
        "processor" => serve(processor::build(r).await?, |h, e| async move { h.handle(e).await }),
        "optout" => serve(optout::build(r)?, |h, e| async move { h.handle(e).await }),
        "erasure" => serve(deletion::erasure::build(r)?, |h, e| async move { h.handle(e).await }),
        "sender" => serve(sender::build(r)?, |h, e| async move { h.handle(e).await }),
        "deadletter" => serve(Arc::new(processor::dead_letter::build(r).await?), |h, e| async move {
            h.handle(e).await
        }),
        other => {
            return Err(StackError::Config(format!(
                "template.yaml has an SQS consumer {other} that the local stack does not run"
            )));
        }
    })
}

pub async fn start(options: Options) -> Result<RunningStack, StackError> {
    let clock = SettableClock::at(SystemClock.now());
    let store_clock: SharedClock = Arc::new(clock.clone());
    // Visibility timeouts are operational, not retention: they run on the wall clock even when
    // the stack's clock is moved.
    let queue_clock: SharedClock = Arc::new(SystemClock);
    let secrets = SecretValues::from_pairs(
        "the local stack's environment",
        [
            (
                secrets::META_APP_SECRET,
                app_secrets_json(&options.secrets[META_APP_SECRET]),
            ),
            (
                secrets::META_VERIFY_TOKEN,
                options.secrets[META_VERIFY_TOKEN].clone().into(),
            ),
            (
                secrets::SUBJECT_KEY_SECRET,
                options.secrets[SUBJECT_KEY_SECRET].clone().into(),
            ),
        ]
        .into_iter()
        .chain(
            options
                .instagram_access_tokens
                .clone()
                .map(|t| (secrets::INSTAGRAM_ACCESS_TOKENS, t)),
        ),
    );

    let specs = provision::queue_specs(TEMPLATE)?;
    let (stores, sweeps, outbox, all_queues, backend, table_names) = match &options.emulators {
        None => {
            let all = shared::store::embedded::stack(store_clock.clone());
            (
                all.stores,
                all.sweeps,
                all.outbox,
                embedded_queues(&specs, queue_clock),
                "embedded store and queues".to_owned(),
                None,
            )
        }
        Some(em) => {
            let endpoints = Endpoints {
                dynamodb: Some(em.dynamodb.clone()),
                sqs: Some(em.sqs.clone()),
                secretsmanager: None,
            };
            let sdk = shared::aws::sdk_config().await;
            let dynamo = shared::aws::dynamodb(&sdk, &endpoints);
            let sqs = shared::aws::sqs(&sdk, &endpoints);
            let prefix = format!("local-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let tables = TableNames::with_prefix(&prefix);
            provision::create_tables(&dynamo, TEMPLATE, &tables).await?;
            let queues = provision::create_queues(&sqs, TEMPLATE, &prefix)
                .await?
                .into_iter()
                .map(|(id, url)| (id, Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>))
                .collect();
            let stores = shared::store::dynamodb::stores(&dynamo, &tables, store_clock.clone(), &Default::default());
            let sweeps = shared::store::dynamodb::sweeps(&dynamo, &tables, store_clock.clone(), &Default::default());
            let outbox = shared::store::dynamodb::outbox(&dynamo, &tables, store_clock.clone(), &Default::default());
            (
                stores,
                sweeps,
                outbox,
                queues,
                format!("DynamoDB at {} and SQS at {} (prefix {prefix})", em.dynamodb, em.sqs),
                Some(tables),
            )
        }
    };
    let mut queues = BTreeMap::new();
    for kind in QueueKind::ALL {
        let q = all_queues
            .get(kind.logical_id())
            .ok_or_else(|| StackError::Config(format!("no queue {} in template.yaml", kind.logical_id())))?;
        queues.insert(kind, q.clone());
    }
    let signer = secrets
        .app_secrets()
        .map_err(WiringError::from)?
        .into_iter()
        .next()
        .ok_or_else(|| StackError::Config("META_APP_SECRET holds no secret".into()))?;
    // Bound first: links the stack gives people (a status page) name its address.
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|source| StackError::Bind {
            addr: options.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StackError::Bind {
        addr: options.bind,
        source,
    })?;
    let resources = LocalResources {
        stores: stores.clone(),
        sweeps,
        queues: queues.clone(),
        secrets: Arc::new(StaticSecrets::new(secrets.clone())),
        clock: store_clock,
        public_base_url: format!("http://{addr}"),
        graph_api_base_url: options.graph_api_base_url.clone(),
        whatsapp_api_base_url: options.whatsapp_api_base_url.clone(),
        outbox,
        tenant_tokens: Arc::new(options.tenant_access_tokens.clone()),
    };

    let mut consumers = provision::consumers(TEMPLATE)?;
    consumers.sort_by_key(|c| QueueKind::from_logical_id(&c.queue));
    let mut pumped = Vec::new();
    for c in &consumers {
        let queue = all_queues
            .get(&c.queue)
            .ok_or_else(|| StackError::Config(format!("{} consumes {}, which is not a queue", c.binary, c.queue)))?;
        pumped.push((queue.clone(), consumer(&c.binary, &resources).await?));
    }
    principals::seed(stores.principals.as_ref(), &options.principals, clock.now())
        .await
        .map_err(|e| StackError::Config(format!("storing the local principals: {e}")))?;
    let app = Arc::new(App {
        webhook: webhook::build(&resources).await?,
        outbound: sender::api::build(&resources).await?,
        admin: admin::build(&resources).await?,
        deletion: deletion::build(&resources).await?,
        cleanup: cleanup::build(&resources)?,
        clock: clock.clone(),
        consumed: pumped.iter().map(|(q, _)| q.clone()).collect(),
        principals: options.principals.clone(),
    });

    let router = axum::Router::new().fallback(route).with_state(app);
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = stop.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "local stack server stopped");
        }
    });
    let pumps = pumped
        .into_iter()
        .map(|(queue, handler)| tokio::spawn(pump(queue, handler)))
        .collect();
    Ok(RunningStack {
        addr,
        clock,
        stores,
        queues,
        queues_by_id: all_queues,
        backend,
        tables: table_names,
        options,
        signer,
        shutdown,
        server,
        pumps,
    })
}

/// `META_APP_SECRET` holds one secret, or a JSON list of them while one is rotated.
fn app_secrets_json(value: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(list @ serde_json::Value::Array(_)) => list,
        _ => value.into(),
    }
}

type BatchFuture = Pin<Box<dyn Future<Output = SqsBatchResponse> + Send>>;

/// Lambda's SQS event source, in process: receive a batch, invoke the handler, delete what it did
/// not report as failed. Failed messages come back after the visibility timeout and, after the
/// template's maximum receives, go to the dead-letter queue.
async fn pump(queue: Arc<dyn Queue>, handler: Consumer) {
    loop {
        let received = match queue.receive(10, Duration::from_secs(1)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if received.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = received
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = Some(m.message_id.clone());
                r.receipt_handle = Some(m.receipt.clone());
                r.body = Some(m.body.clone());
                r.attributes
                    .insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
                r
            })
            .collect();
        let response = handler(event).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        for m in received.iter().filter(|m| !failed.contains(&m.message_id)) {
            if let Err(e) = queue.delete(&m.receipt).await {
                tracing::error!(error = %e, "queue delete failed; the message will be processed again");
            }
        }
    }
}

impl RunningStack {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        for p in &self.pumps {
            p.abort();
        }
        let _ = self.server.await;
    }

    /// What a new user needs: where it listens, which dev secrets it uses, and a signed request
    /// to paste.
    pub fn banner(&self) -> String {
        let url = self.url();
        let secret = |n: &str| self.options.secrets.get(n).cloned().unwrap_or_default();
        let now = self.clock.now().unix_seconds();
        let body = sample_webhook(now);
        let signature = self.signer.sign(body.as_bytes());
        let mut out = format!("Socio Virtual local stack on {url} ({})\n", self.backend);
        for name in self
            .options
            .dev_fallbacks
            .iter()
            .filter(|n| **n != principals::LOCAL_PRINCIPALS)
        {
            out.push_str(&format!(
                "  dev secret {name}={} (set {name} to override)\n",
                secret(name)
            ));
        }
        out.push_str("Admin callers (Authorization: Bearer <token>; set LOCAL_PRINCIPALS to configure):\n");
        for p in &self.options.principals {
            let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
            let tenants: Vec<&str> = p.tenants.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!(
                "  {:<16} token {}  ({}{})\n",
                roles.join(","),
                p.token,
                p.id,
                if tenants.is_empty() {
                    String::new()
                } else {
                    format!("; tenants {}", tenants.join(","))
                }
            ));
        }
        let token_of = |role: Role| {
            self.options
                .principals
                .iter()
                .find(|p| p.roles.contains(&role))
                .map_or_else(|| format!("<{role} token>"), |p| p.token.clone())
        };
        let (admin, agent, auditor, officer) = (
            token_of(Role::PlatformAdmin),
            token_of(Role::TenantAgent),
            token_of(Role::Auditor),
            token_of(Role::PrivacyOfficer),
        );
        // Paths name a contact by its sealed handle, which the listing gives; the sample sender's
        // is computed here so the example can be pasted as is.
        let contact = shared::identity::SubjectKeySecret::new(secret(SUBJECT_KEY_SECRET).into_bytes())
            .ok()
            .and_then(|s| {
                let tenant = shared::domain::TenantId::new("demo").ok()?;
                let sender = shared::domain::ContactId::new(shared::domain::Channel::WhatsApp, SAMPLE_USER_ID).ok()?;
                Some(
                    shared::seal::Sealer::new(&s)
                        .contact_handle(&tenant, &sender)
                        .to_string(),
                )
            })
            .unwrap_or_else(|| "<contact from the listing>".to_owned());
        out.push_str(&format!(
            "\nRegister a tenant:\n  curl -s -X POST {url}/admin/tenants -H 'Authorization: Bearer {admin}' \
             -d '{{\"tenant_id\":\"demo\",\"name\":\"Demo\",\"whatsapp_phone_number_ids\":[\"{SAMPLE_PHONE_NUMBER_ID}\"]}}'\n\
             \nSend it a signed WhatsApp message:\n  curl -s -X POST {url}/webhooks/meta -H 'Content-Type: application/json' \
             -H 'X-Hub-Signature-256: {signature}' --data-binary '{body}'\n\
             \nRead it back:\n  curl -s {url}/admin/tenants/demo/contacts -H 'Authorization: Bearer {agent}'\n  \
             curl -s {url}/admin/tenants/demo/contacts/{contact}/messages -H 'Authorization: Bearer {agent}'\n\
             \nReply to the sample sender through the outbound sender (refused as no_token until \
             TENANT_ACCESS_TOKENS holds the tenant's token and WHATSAPP_API_BASE_URL a Graph API, e.g. \
             the loopback one the tests use; register the tenant with its access_token_secret):\n  \
             curl -s -X POST {url}/admin/tenants/demo/messages -H 'Authorization: Bearer {agent}' \
             -H 'Idempotency-Key: demo-reply-1' -d '{{\"to\":\"{contact}\",\"content\":{{\"type\":\"text\",\"body\":\"Hola\"}}}}'\n  \
             curl -s {url}/admin/tenants/demo/messages/demo-reply-1 -H 'Authorization: Bearer {agent}'\n\
             \nCheck the audit trail:\n  curl -s '{url}/admin/audit/verify?tenant=demo' -H 'Authorization: Bearer {auditor}'\n\
             \nAsk for the sample sender's data to be erased (then approve it with POST .../<id>/decision \
             {{\"decision\":\"approve\"}}, and open its status_url):\n  curl -s -X POST {url}/admin/privacy-requests \
             -H 'Authorization: Bearer {officer}' -d '{{\"kind\":\"erasure\",\"source\":\"email\",\
             \"identifiers\":[{{\"type\":\"whatsapp_user_id\",\"value\":\"{SAMPLE_USER_ID}\"}}]}}'\n"
        ));
        out
    }
}

pub const SAMPLE_PHONE_NUMBER_ID: &str = "100000000000001";
pub const SAMPLE_USER_ID: &str = "AR.1000000000000000001";

/// A WhatsApp text webhook for the banner's example, timestamped `now` so it is within retention.
pub fn sample_webhook(now: i64) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491100000000", "phone_number_id": SAMPLE_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5491123456789", "user_id": SAMPLE_USER_ID}],
            "messages": [{"from": "5491123456789", "from_user_id": SAMPLE_USER_ID, "id": format!("wamid.local{now}"),
                "timestamp": now.to_string(), "type": "text", "text": {"body": "Hola"}}]
        }}]}]
    })
    .to_string()
}

/// Every request: converted to the API Gateway event, routed like API Gateway routes it.
async fn route(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request larger than Lambda's 6 MB limit");
    };
    let mut event = to_event(&parts, &bytes);
    let path = parts.uri.path();
    let response = if path == webhook::ROUTE {
        app.webhook.handle(&event).await
    } else if path == deletion::CALLBACK_ROUTE || path.starts_with(deletion::STATUS_PAGE_PREFIX) {
        app.deletion.handle(&event).await
    } else if path.starts_with("/admin/") {
        let bearer = apigw::header(&event, "authorization").and_then(|h| h.strip_prefix("Bearer "));
        match bearer.and_then(|t| principals::authenticate(&app.principals, t)) {
            Some(caller) => {
                // What IAM authorization gives the function in AWS: the caller's identity.
                let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
                let mut iam = aws_lambda_events::apigw::ApiGatewayRequestAuthorizerIamDescription::default();
                iam.user_arn = Some(caller.id.to_string());
                authorizer.iam = Some(iam);
                event.request_context.authorizer = Some(authorizer);
                // API Gateway picks the most specific route: the privacy requests' own.
                let privacy =
                    path == deletion::ADMIN_PREFIX || path.starts_with(&format!("{}/", deletion::ADMIN_PREFIX));
                if privacy {
                    app.deletion.handle(&event).await
                } else if sender::api::serves(path) {
                    app.outbound.handle(&event).await
                } else {
                    app.admin.handle(&event).await
                }
            }
            // Without authentication the function is not invoked, as API Gateway's IAM check does.
            None => apigw::error(
                401,
                "Authorization: Bearer <token of a LOCAL_PRINCIPALS principal> required",
            ),
        }
    } else if path == "/_local/clock" && parts.method == Method::POST {
        set_clock(&app, &bytes)
    } else if path == "/_local/tick" && parts.method == Method::POST {
        tick(&app, &bytes).await
    } else if path == "/_local/drain" && parts.method == Method::POST {
        drain(&app).await
    } else {
        apigw::error(404, "no such route")
    };
    from_response(response)
}

fn set_clock(app: &App, body: &[u8]) -> apigw::Response {
    #[derive(serde::Deserialize)]
    struct SetClock {
        now: String,
    }
    match serde_json::from_slice::<SetClock>(body).map(|b| Timestamp::parse_rfc3339(&b.now)) {
        Ok(Ok(t)) => {
            app.clock.set(t);
            apigw::json(200, &serde_json::json!({ "now": t }))
        }
        _ => apigw::error(400, "body must be {\"now\": \"<RFC 3339 time>\"}"),
    }
}

/// What EventBridge Scheduler does hourly, now, against the stack's clock: `{"job": "sweep"}` or
/// `{"job": "monitor"}`. Answers with the run (its counts are the metrics it emitted).
async fn tick(app: &App, body: &[u8]) -> apigw::Response {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else {
        return apigw::error(400, "body must be {\"job\": \"sweep\" | \"monitor\"}");
    };
    match app.cleanup.handle(&event, TICK_TIME_LIMIT).await {
        Ok(run) => apigw::json(200, &run),
        Err(e @ cleanup::CleanupError::BadEvent) => apigw::error(400, e),
        Err(e) => apigw::error(503, e),
    }
}

/// A tick gets the cleanup function's own timeout (template.yaml).
const TICK_TIME_LIMIT: Duration = Duration::from_secs(900);

/// Waits until every queue with a consumer is empty. A consumer sends what it produces before it
/// deletes its own message, so reading the queues in flow order (ingest first) twice in a row and
/// finding them all empty means nothing is left in between.
async fn drain(app: &App) -> apigw::Response {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let mut empty_passes = 0;
    loop {
        let mut pending = 0;
        for q in &app.consumed {
            match q.pending().await {
                Ok(n) => pending += n,
                Err(e) => return apigw::error(503, e),
            }
        }
        empty_passes = if pending == 0 { empty_passes + 1 } else { 0 };
        if empty_passes == 2 {
            return apigw::json(200, &serde_json::json!({ "drained": true }));
        }
        if tokio::time::Instant::now() >= deadline {
            return apigw::error(504, format!("{pending} messages still queued after {DRAIN_TIMEOUT:?}"));
        }
        if pending > 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn to_event(parts: &http::request::Parts, body: &[u8]) -> Request {
    let mut event = ApiGatewayV2httpRequest::default();
    let query = parts.uri.query().unwrap_or_default();
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        params.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    event.version = Some("2.0".into());
    event.route_key = Some("$default".into());
    event.raw_path = Some(parts.uri.path().to_owned());
    event.raw_query_string = Some(query.to_owned());
    event.query_string_parameters = params.into();
    event.headers = parts.headers.clone();
    event.request_context.stage = Some("$default".into());
    event.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    event.request_context.http.method = parts.method.clone();
    event.request_context.http.path = Some(parts.uri.path().to_owned());
    event.request_context.http.source_ip = Some("127.0.0.1".into());
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event.body = Some(text.to_owned()),
            Err(_) => {
                event.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
                event.is_base64_encoded = true;
            }
        }
    }
    event
}

fn from_response(r: apigw::Response) -> Response {
    let status =
        StatusCode::from_u16(u16::try_from(r.status_code).unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match r.body {
        Some(LambdaBody::Text(t)) if r.is_base64_encoded => {
            Body::from(base64::engine::general_purpose::STANDARD.decode(t).unwrap_or_default())
        }
        Some(LambdaBody::Text(t)) => Body::from(t),
        Some(LambdaBody::Binary(b)) => Body::from(b),
        _ => Body::empty(),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = r.headers;
    out
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut out = Response::new(Body::from(text));
    *out.status_mut() = status;
    out.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_fallbacks() {
        let o = Options::from_args(["--port".to_owned(), "0".to_owned()], |_| None).expect("valid");
        assert_eq!(o.bind.port(), 0);
        assert_eq!(
            o.dev_fallbacks.len(),
            DEV_SECRETS.len() + 1,
            "the secrets and the principals"
        );
        let o = Options::from_args(Vec::new(), |n| (n == META_VERIFY_TOKEN).then(|| "mine".to_owned())).expect("valid");
        assert_eq!(o.secrets[META_VERIFY_TOKEN], "mine");
        assert!(!o.dev_fallbacks.contains(&META_VERIFY_TOKEN));
        let bad = |n: &str| (n == principals::LOCAL_PRINCIPALS).then(|| "[1]".to_owned());
        assert!(
            Options::from_args(Vec::new(), bad).is_err(),
            "LOCAL_PRINCIPALS that is not a list"
        );
        assert!(Options::from_args(["--sqs-endpoint".to_owned(), "http://x".to_owned()], |_| None).is_err());
        assert!(Options::from_args(["--what".to_owned()], |_| None).is_err());
    }
}
