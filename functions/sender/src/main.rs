use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::AwsResources;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    let resources = AwsResources::from_env().map_err(|e| format!("init: {e}"))?;
    let handler = sender::build(&resources).map_err(|e| format!("init: {e}"))?;
    resources.warm_up().await;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let time_left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        Ok::<_, Error>(handler.handle_within(event.payload, time_left).await)
    }))
    .await
}
