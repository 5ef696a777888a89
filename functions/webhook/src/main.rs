use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::apigw::Request;
use shared::clock::SystemClock;
use shared::config::Config;
use shared::queue::sqs::SqsQueue;
use std::sync::Arc;
use webhook::{Webhook, WebhookConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let meta = WebhookConfig::from_lookup(|n| std::env::var(n).ok())?;
    let ingest_url = shared::config::queue_url(shared::config::INGEST_QUEUE_URL, |n| std::env::var(n).ok())?;
    let sdk = shared::aws::sdk_config().await;
    let clock = Arc::new(SystemClock);
    let stores = shared::store::dynamodb::stores(
        &shared::aws::dynamodb(&sdk, &config.endpoints),
        &config.tables,
        clock.clone(),
        &Default::default(),
    );
    let ingest = Arc::new(SqsQueue::new(shared::aws::sqs(&sdk, &config.endpoints), ingest_url));
    let webhook = Webhook::new(meta, ingest, stores.quarantine, clock);
    let webhook = &webhook;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| async move {
        Ok::<_, Error>(webhook.handle(&event.payload).await)
    }))
    .await
}
