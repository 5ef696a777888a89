use admin::Admin;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::apigw::Request;
use shared::clock::SystemClock;
use shared::config::Config;
use shared::queue::sqs::SqsQueue;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let ingest_url = shared::config::queue_url(shared::config::INGEST_QUEUE_URL, |n| std::env::var(n).ok())?;
    let sdk = shared::aws::sdk_config().await;
    let clock = Arc::new(SystemClock);
    let client = shared::aws::dynamodb(&sdk, &config.endpoints);
    let stores = shared::store::dynamodb::stores(&client, &config.tables, clock.clone(), &Default::default());
    let ingest = Arc::new(SqsQueue::new(shared::aws::sqs(&sdk, &config.endpoints), ingest_url));
    let secret = shared::config::subject_key_secret(|n| std::env::var(n).ok())?;
    let admin = Admin::new(stores, ingest, clock, secret);
    let admin = &admin;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| async move {
        Ok::<_, Error>(admin.handle(&event.payload).await)
    }))
    .await
}
