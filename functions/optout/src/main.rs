use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use optout::OptOutHandler;
use shared::clock::SystemClock;
use shared::config::{Config, OUTBOUND_QUEUE_URL, PROPAGATION_QUEUE_URL, queue_url};
use shared::queue::sqs::SqsQueue;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let env = |n: &str| std::env::var(n).ok();
    let propagation_url = queue_url(PROPAGATION_QUEUE_URL, env)?;
    let outbound_url = queue_url(OUTBOUND_QUEUE_URL, env)?;
    let sdk = shared::aws::sdk_config().await;
    let clock = Arc::new(SystemClock);
    let client = shared::aws::dynamodb(&sdk, &config.endpoints);
    let stores = shared::store::dynamodb::stores(&client, &config.tables, clock.clone(), &Default::default());
    let sqs = shared::aws::sqs(&sdk, &config.endpoints);
    let propagation = Arc::new(SqsQueue::new(sqs.clone(), propagation_url));
    let outbound = Arc::new(SqsQueue::new(sqs, outbound_url));
    let handler = OptOutHandler::new(stores, propagation, outbound, clock);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handler.handle(event.payload).await)
    }))
    .await
}
