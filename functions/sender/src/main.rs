use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::AwsResources;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    let resources = AwsResources::from_env().map_err(|e| format!("init: {e}"))?;
    let handler = sender::build(&resources).map_err(|e| format!("init: {e}"))?;
    resources.warm_up().await;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handler.handle(event.payload).await)
    }))
    .await
}
