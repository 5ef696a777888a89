use super::{MAX_BODY_BYTES, Queue, QueueError, ReceivedMessage, check_characters, check_sizes};
use crate::backoff::Backoff;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Consecutive runs of at most 10 messages and at most 1 MiB in total: SQS's limits on one batch.
fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        if i > start && (i - start == 10 || bytes + body.len() > MAX_BODY_BYTES) {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

fn backend(e: impl std::error::Error + 'static) -> QueueError {
    QueueError::Backend(DisplayErrorContext(e).to_string())
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        check_sizes(bodies)?;
        // Before any chunk goes: a refused body would fail its batch after earlier ones were sent.
        check_characters(bodies)?;
        for chunk in batches(bodies) {
            // Entry ids are positions in the chunk, so failed entries map back to their bodies.
            let mut pending: HashMap<String, &String> =
                chunk.iter().enumerate().map(|(i, b)| (i.to_string(), b)).collect();
            let mut backoff = Backoff::default();
            while !pending.is_empty() {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body.as_str())
                            .build()
                            .map_err(backend)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(backend)?;
                for ok in out.successful() {
                    pending.remove(ok.id());
                }
                let failed: Vec<_> = out
                    .failed()
                    .iter()
                    .map(|f| (f.code().to_owned(), f.sender_fault()))
                    .collect();
                if let Some((code, true)) = failed.iter().find(|(_, sender_fault)| *sender_fault) {
                    return Err(QueueError::Backend(format!("SQS refused a message: {code}")));
                }
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(QueueError::Backend(format!(
                        "{} messages unsent after retries",
                        pending.len()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=10).contains(&max) {
            return Err(QueueError::BadBatchSize);
        }
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(backend)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| ReceivedMessage {
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn pending(&self) -> Result<usize, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(backend)?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |a: A| attrs.get(&a).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        Ok(count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible))
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_total_size() {
        let small: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        assert_eq!(batches(&small).iter().map(|b| b.len()).collect::<Vec<_>>(), [10, 10, 3]);
        let big: Vec<String> = (0..3).map(|_| "x".repeat(600_000)).collect();
        assert_eq!(batches(&big).iter().map(|b| b.len()).collect::<Vec<_>>(), [1, 1, 1]);
        let mixed = vec!["x".repeat(500_000), "y".repeat(500_000), "z".repeat(100_000)];
        assert_eq!(batches(&mixed).iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 1]);
        assert!(batches(&[]).is_empty());
    }
}
