//! Queue port: at-least-once delivery with a visibility timeout, as SQS gives it. Consumers must
//! be idempotent; the stores make them so.

pub mod embedded;
pub mod sqs;

use async_trait::async_trait;
use std::fmt::Debug;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("message body is {size} bytes; the queue accepts at most {MAX_BODY_BYTES}")]
    TooLarge { size: usize },
    #[error("receive asks for 1 to 10 messages")]
    BadBatchSize,
    #[error("the receipt handle is not current")]
    StaleReceipt,
    #[error("queue backend failed: {0}")]
    Backend(String),
}

/// SQS's maximum message size since January 2026.
pub const MAX_BODY_BYTES: usize = 1_048_576;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// 1 on first delivery.
    pub receive_count: u32,
}

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Sends every body or fails: entries the backend refuses are retried, then reported.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError>;
    /// Up to `max` (1-10) visible messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Acknowledges a message; unacknowledged ones come back after the visibility timeout.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Messages not yet deleted, visible or in flight (approximate on SQS).
    async fn pending(&self) -> Result<usize, QueueError>;
}

pub(crate) fn check_sizes(bodies: &[String]) -> Result<(), QueueError> {
    match bodies.iter().find(|b| b.len() > MAX_BODY_BYTES) {
        Some(b) => Err(QueueError::TooLarge { size: b.len() }),
        None => Ok(()),
    }
}
