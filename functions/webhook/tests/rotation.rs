//! The webhook's secrets on Secrets Manager (moto, started by `infra/test.sh`): a rotated app
//! secret is accepted without a restart, and a missing or malformed secret fails init with a
//! message that names it and never shows its value.

use serde_json::json;
use shared::clock::{SharedClock, SystemClock};
use shared::config::{Endpoints, QueueKind};
use shared::meta::signature::AppSecret;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::secrets::{SecretSource, SecretsManagerSource};
use shared::wiring::LocalResources;
use std::sync::Arc;
use std::time::Duration;
use webhook::AppSecrets;

const OLD: &str = "old-app-secret-value";
const NEW: &str = "new-app-secret-value";

fn client() -> aws_sdk_secretsmanager::Client {
    let url = std::env::var("SECRETSMANAGER_ENDPOINT")
        .expect("SECRETSMANAGER_ENDPOINT is not set: run the suite with infra/test.sh, which starts moto");
    let endpoints = Endpoints {
        secretsmanager: Some(url),
        ..Endpoints::default()
    };
    let sdk = shared::aws::sdk_config_from(|n| std::env::var(n).ok(), true).expect("emulated SDK config");
    shared::aws::secretsmanager(&sdk, &endpoints)
}

async fn create(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    client
        .create_secret()
        .name(format!("rotation-{}", uuid::Uuid::new_v4().simple()))
        .secret_string(value)
        .send()
        .await
        .expect("secret created on moto")
        .arn
        .expect("ARN")
}

fn resources(source: Arc<dyn SecretSource>) -> LocalResources {
    let clock: SharedClock = Arc::new(SystemClock);
    let shared::store::embedded::EmbeddedStack { stores, sweeps, outbox } =
        shared::store::embedded::stack(clock.clone());
    LocalResources {
        stores,
        sweeps,
        queues: [(
            QueueKind::Ingest,
            Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30))) as Arc<dyn Queue>,
        )]
        .into(),
        secrets: source,
        clock,
        public_base_url: "http://127.0.0.1".to_owned(),
        graph_api_base_url: shared::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned(),
        whatsapp_api_base_url: shared::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned(),
        outbox,
        tenant_tokens: Arc::new(shared::meta::send::StaticTokens::default()),
    }
}

#[tokio::test]
async fn a_rotated_app_secret_is_accepted_without_a_restart() {
    let client = client();
    let value = json!({"meta_app_secret": OLD, "meta_verify_token": "verify"}).to_string();
    let arn = create(&client, &value).await;
    let source = Arc::new(SecretsManagerSource::new(client.clone(), &arn, Duration::from_secs(5)));
    let initial = source.fetch().await.expect("read").app_secrets().expect("one secret");
    // No wait between re-reads here; the one-a-minute limit has its own test in the crate.
    let secrets = AppSecrets::new(initial, source.clone(), Duration::ZERO);
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let signed_by = |s: &str| AppSecret::new(s).sign(body);
    assert_eq!(secrets.verify(Some(&signed_by(OLD)), body).await, Ok(()));

    // Rotation: both secrets while Meta switches, as a JSON list (commas are legal in secrets).
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(json!({"meta_app_secret": [OLD, "new,with-comma"], "meta_verify_token": "verify"}).to_string())
        .send()
        .await
        .expect("rotated");
    assert_eq!(secrets.verify(Some(&signed_by("new,with-comma")), body).await, Ok(()));
    assert_eq!(secrets.verify(Some(&signed_by(OLD)), body).await, Ok(()));

    // The old one retired.
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(json!({"meta_app_secret": NEW, "meta_verify_token": "verify"}).to_string())
        .send()
        .await
        .expect("rotated again");
    assert_eq!(secrets.verify(Some(&signed_by(NEW)), body).await, Ok(()));
    assert!(
        secrets.verify(Some(&signed_by(OLD)), body).await.is_err(),
        "retired secret refused"
    );
}

#[tokio::test]
async fn a_missing_or_malformed_secret_fails_init_naming_it_without_its_value() {
    let client = client();
    let cases = [
        // (what the secret holds, what the error must name)
        (json!({"meta_verify_token": "verify"}).to_string(), "meta_app_secret"),
        (
            json!({"meta_app_secret": [NEW, 7], "meta_verify_token": "verify"}).to_string(),
            "meta_app_secret",
        ),
        (json!({"meta_app_secret": NEW}).to_string(), "meta_verify_token"),
        (format!("{NEW} is not JSON"), "not a JSON object"),
    ];
    for (value, named) in cases {
        let arn = create(&client, &value).await;
        let source = Arc::new(SecretsManagerSource::new(client.clone(), &arn, Duration::from_secs(5)));
        let err = webhook::build(&resources(source))
            .await
            .expect_err("init fails")
            .to_string();
        assert!(err.contains(named) && err.contains(&arn), "{value}: {err}");
        assert!(!err.contains(NEW), "the value leaked: {err}");
    }
    let absent = "arn:aws:secretsmanager:us-east-1:123456789012:secret:never-created";
    let source = Arc::new(SecretsManagerSource::new(client, absent, Duration::from_secs(5)));
    let err = webhook::build(&resources(source))
        .await
        .expect_err("init fails")
        .to_string();
    assert!(err.contains(absent) && err.contains("could not be read"), "{err}");
}
