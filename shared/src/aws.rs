//! SDK clients, built once per process, pointed at an emulator when an endpoint override is
//! configured, and the Lambda side of the wiring ([`AwsResources`]).
//!
//! The SDK configuration is assembled here rather than by `aws-config`'s default chain: in Lambda
//! the credentials and region are always in the environment, and the chain's other providers
//! (profiles, SSO, STS web identity, IMDS) would add megabytes to every binary. TLS is rustls on
//! ring, the smaller of the SDK's two providers.

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError, Endpoints, QueueKind, TableKind};
use crate::queue::Queue;
use crate::queue::sqs::SqsQueue;
use crate::secrets::{FETCH_TIMEOUT, SECRETS_ARN, SecretSource, SecretsManagerSource};
use crate::store::dynamodb::{CapacityMeter, DynamoStores};
use crate::store::{
    AuditStore, ConversationStore, OptOutStore, PrincipalStore, PrivacyRequestStore, QuarantineStore, RetentionReads,
    RetentionSweeps, TenantStore,
};
use crate::wiring::{Resources, WiringError};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::SdkConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Attempts per call (first try included) for throttling and transient errors.
pub const SDK_MAX_ATTEMPTS: u32 = 5;
/// A connection that is not up in this time will not be: fail the attempt and retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most init spends warming connections; warming never fails init.
pub const WARM_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// The roots AWS endpoints chain to (Amazon Root CA 1-4, Starfield Services Root G2). Trusting
/// only these, compiled in, spares init the system store: scanning it was most of a cold start's
/// own work (BENCHMARKS.md "Cold start"), and no endpoint these clients call chains elsewhere.
const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The SDK configuration from the environment: `AWS_REGION` (or `AWS_DEFAULT_REGION`), and the
/// credentials Lambda puts in `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
/// Emulators accept any credentials, so a process pointed only at emulators may have none.
pub fn sdk_config_from(lookup: impl Fn(&str) -> Option<String>, emulated: bool) -> Result<SdkConfig, ConfigError> {
    let var = |n: &str| lookup(n).filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| emulated.then(|| "us-east-1".to_owned()))
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment"),
        _ if emulated => Credentials::new("local", "local", None, None, "emulator"),
        (None, _) => return Err(ConfigError::Missing("AWS_ACCESS_KEY_ID")),
        (Some(_), None) => return Err(ConfigError::Missing("AWS_SECRET_ACCESS_KEY")),
    };
    let trust = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS);
    let tls_context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| ConfigError::Malformed {
            name: "TLS trust store",
            reason: e.to_string(),
        })?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    Ok(SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http)
        .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().unwrap_or_else(|| unreachable!()))
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build())
        .build())
}

/// [`sdk_config_from`] on the process environment, for tests and tools that talk to emulators.
pub async fn sdk_config() -> SdkConfig {
    match sdk_config_from(|n| std::env::var(n).ok(), true) {
        Ok(c) => c,
        Err(e) => unreachable!("an emulated configuration always resolves: {e}"),
    }
}

pub fn dynamodb(sdk: &SdkConfig, endpoints: &Endpoints) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = &endpoints.dynamodb {
        b = b.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

pub fn sqs(sdk: &SdkConfig, endpoints: &Endpoints) -> aws_sdk_sqs::Client {
    let mut b = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(url) = &endpoints.sqs {
        b = b.endpoint_url(url);
    }
    aws_sdk_sqs::Client::from_conf(b.build())
}

pub fn secretsmanager(sdk: &SdkConfig, endpoints: &Endpoints) -> aws_sdk_secretsmanager::Client {
    let mut b = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(url) = &endpoints.secretsmanager {
        b = b.endpoint_url(url);
    }
    aws_sdk_secretsmanager::Client::from_conf(b.build())
}

/// A Lambda function's resources: tables, queues and the secret named by its environment, on
/// clients made on first use. It remembers whether the handler reads the tenants table and the
/// first queue it sends to, so [`Self::warm_up`] opens the connections the function will use.
#[derive(Debug)]
pub struct AwsResources {
    sdk: SdkConfig,
    config: Config,
    lookup: fn(&str) -> Option<String>,
    clock: SharedClock,
    meter: CapacityMeter,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    sqs: OnceLock<aws_sdk_sqs::Client>,
    reads_tenants: AtomicBool,
    first_queue: OnceLock<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl AwsResources {
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_lookup(env)?;
        let emulated = config.endpoints.dynamodb.is_some() || config.endpoints.sqs.is_some();
        let sdk = sdk_config_from(env, emulated)?;
        Ok(Self {
            sdk,
            config,
            lookup: env,
            clock: Arc::new(SystemClock),
            meter: CapacityMeter::default(),
            dynamodb: OnceLock::new(),
            sqs: OnceLock::new(),
            reads_tenants: AtomicBool::new(false),
            first_queue: OnceLock::new(),
        })
    }

    fn dynamo_stores(&self) -> DynamoStores {
        let client = self
            .dynamodb
            .get_or_init(|| dynamodb(&self.sdk, &self.config.endpoints));
        DynamoStores::new(
            client.clone(),
            self.config.tables.clone(),
            self.clock.clone(),
            self.meter.clone(),
        )
    }

    /// Opens the connections the handler will use, and resolves what signing needs, while
    /// Lambda's init phase runs with a CPU boost: one cheap read per client (the other calls reuse
    /// its connection), bounded by [`WARM_UP_TIMEOUT`] in all. A failure is logged and the function starts anyway;
    /// its first real call then pays for the connection.
    pub async fn warm_up(&self) {
        let tenants = self
            .reads_tenants
            .load(Ordering::Relaxed)
            .then(|| self.config.tables.get(TableKind::Tenants));
        let dynamodb = self.dynamodb.get().cloned();
        let sqs = self.sqs.get().cloned();
        let work = async {
            // Every function that reads DynamoDB on its hot path reads the tenants table.
            if let (Some(client), Some(table)) = (&dynamodb, tenants) {
                let probe = client
                    .get_item()
                    .table_name(table)
                    .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(WARM_UP_KEY.to_owned()))
                    .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(WARM_UP_KEY.to_owned()))
                    .projection_expression("pk")
                    .send();
                if let Err(e) = probe.await {
                    tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(e), "DynamoDB warm-up failed");
                }
            }
            if let (Some(client), Some(url)) = (&sqs, self.first_queue.get()) {
                let probe = client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .send();
                if let Err(e) = probe.await {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "SQS warm-up failed");
                }
            }
        };
        if tokio::time::timeout(WARM_UP_TIMEOUT, work).await.is_err() {
            tracing::warn!(timeout = ?WARM_UP_TIMEOUT, "connection warm-up timed out; starting anyway");
        }
    }
}

/// A key no item has: `#` never starts a tenant id, so the probe reads nothing.
const WARM_UP_KEY: &str = "#warm-up";

impl Resources for AwsResources {
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }
    fn conversations(&self) -> Arc<dyn ConversationStore> {
        self.dynamo_stores().conversations()
    }
    fn opt_outs(&self) -> Arc<dyn OptOutStore> {
        self.dynamo_stores().opt_outs()
    }
    fn privacy_requests(&self) -> Arc<dyn PrivacyRequestStore> {
        self.dynamo_stores().privacy_requests()
    }
    fn audit(&self) -> Arc<dyn AuditStore> {
        self.dynamo_stores().audit()
    }
    fn tenants(&self) -> Arc<dyn TenantStore> {
        self.reads_tenants.store(true, Ordering::Relaxed);
        self.dynamo_stores().tenants()
    }
    fn quarantine(&self) -> Arc<dyn QuarantineStore> {
        self.dynamo_stores().quarantine()
    }
    fn principals(&self) -> Arc<dyn PrincipalStore> {
        self.dynamo_stores().principals()
    }
    fn retention(&self) -> Arc<dyn RetentionReads> {
        self.dynamo_stores().retention()
    }
    fn retention_sweeps(&self) -> Arc<dyn RetentionSweeps> {
        self.dynamo_stores().retention()
    }

    fn queue(&self, kind: QueueKind) -> Result<Arc<dyn Queue>, WiringError> {
        let url = kind.url(self.lookup)?;
        let _ = self.first_queue.set(url.clone());
        let client = self.sqs.get_or_init(|| sqs(&self.sdk, &self.config.endpoints));
        Ok(Arc::new(SqsQueue::new(client.clone(), url)))
    }

    fn secrets(&self) -> Result<Arc<dyn SecretSource>, WiringError> {
        let arn = (self.lookup)(SECRETS_ARN)
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing(SECRETS_ARN))?;
        let client = secretsmanager(&self.sdk, &self.config.endpoints);
        Ok(Arc::new(SecretsManagerSource::new(client, arn, FETCH_TIMEOUT)))
    }

    fn public_base_url(&self) -> Result<String, WiringError> {
        Ok(crate::config::public_base_url((self.lookup)(
            crate::config::PUBLIC_BASE_URL,
        ))?)
    }
    fn graph_api_base_url(&self) -> String {
        (self.lookup)(crate::meta::graph::GRAPH_API_BASE_URL)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| crate::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned())
    }
    fn whatsapp_api_base_url(&self) -> String {
        (self.lookup)(crate::meta::send::WHATSAPP_API_BASE_URL)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| crate::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned())
    }
    fn outbox(&self) -> Arc<dyn crate::store::OutboxStore> {
        self.dynamo_stores().outbox()
    }
    fn tenant_tokens(&self) -> Arc<dyn crate::meta::send::TokenSource> {
        Arc::new(crate::meta::send::SecretsManagerTokens::new(secretsmanager(
            &self.sdk,
            &self.config.endpoints,
        )))
    }
}
