//! SDK clients, built once per process from the environment's AWS configuration, pointed at an
//! emulator when an endpoint override is configured.

use crate::config::Endpoints;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Attempts per call (first try included) for throttling and transient errors.
pub const SDK_MAX_ATTEMPTS: u32 = 5;

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
        .load()
        .await
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
