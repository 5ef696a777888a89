use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use processor::Processor;
use shared::clock::SystemClock;
use shared::config::{Config, subject_key_secret};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let secret = subject_key_secret(|n| std::env::var(n).ok())?;
    let sdk = shared::aws::sdk_config().await;
    let clock = Arc::new(SystemClock);
    let client = shared::aws::dynamodb(&sdk, &config.endpoints);
    let stores = shared::store::dynamodb::stores(&client, &config.tables, clock.clone(), &Default::default());
    let optout_url = shared::config::queue_url(shared::config::OPTOUT_QUEUE_URL, |n| std::env::var(n).ok())?;
    let optout_queue = Arc::new(shared::queue::sqs::SqsQueue::new(
        shared::aws::sqs(&sdk, &config.endpoints),
        optout_url,
    ));
    let processor = Processor::new(stores, secret, clock, optout_queue);
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(processor.handle(event.payload).await)
    }))
    .await
}
