//! An in-process queue with SQS's visibility semantics, timed by the clock port so tests can move
//! time past a visibility timeout instead of sleeping through it.

use super::{Queue, QueueError, ReceivedMessage, check_characters, check_sizes};
use crate::clock::SharedClock;
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug)]
struct Entry {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Timestamp,
    receipt: Option<String>,
}

#[derive(Debug)]
pub struct EmbeddedQueue {
    clock: SharedClock,
    visibility: time::Duration,
    entries: Mutex<VecDeque<Entry>>,
    arrived: Notify,
    redrive: Option<Redrive>,
}

/// SQS's redrive policy: a message received `max_receives` times without being deleted moves to
/// the dead-letter queue instead of being delivered again.
#[derive(Debug)]
struct Redrive {
    dead_letter: Arc<EmbeddedQueue>,
    max_receives: u32,
}

impl EmbeddedQueue {
    pub fn new(clock: SharedClock, visibility: Duration) -> Self {
        Self {
            clock,
            visibility: time::Duration::try_from(visibility).unwrap_or(time::Duration::SECOND * 30),
            entries: Mutex::default(),
            arrived: Notify::new(),
            redrive: None,
        }
    }

    pub fn with_dead_letter(mut self, dead_letter: Arc<EmbeddedQueue>, max_receives: u32) -> Self {
        self.redrive = Some(Redrive {
            dead_letter,
            max_receives: max_receives.max(1),
        });
        self
    }

    /// Messages stored, visible or in flight.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_visible(&self, max: usize) -> Vec<ReceivedMessage> {
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &self.redrive {
            let (dead, live): (VecDeque<Entry>, VecDeque<Entry>) = entries
                .drain(..)
                .partition(|e| e.visible_at <= now && e.receive_count >= r.max_receives);
            *entries = live;
            if !dead.is_empty() {
                r.dead_letter.push(dead.into_iter().map(|e| e.body), now);
            }
        }
        entries
            .iter_mut()
            .filter(|e| e.visible_at <= now)
            .take(max)
            .map(|e| {
                let receipt = uuid::Uuid::new_v4().to_string();
                e.receive_count += 1;
                e.visible_at = now.plus(self.visibility);
                e.receipt = Some(receipt.clone());
                ReceivedMessage {
                    message_id: e.id.clone(),
                    receipt,
                    body: e.body.clone(),
                    receive_count: e.receive_count,
                }
            })
            .collect()
    }
}

impl EmbeddedQueue {
    fn push(&self, bodies: impl IntoIterator<Item = String>, now: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for body in bodies {
            entries.push_back(Entry {
                id: uuid::Uuid::new_v4().to_string(),
                body,
                receive_count: 0,
                visible_at: now,
                receipt: None,
            });
        }
        drop(entries);
        self.arrived.notify_waiters();
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        check_sizes(bodies)?;
        check_characters(bodies)?;
        self.push(bodies.iter().cloned(), self.clock.now());
        Ok(())
    }

    async fn pending(&self) -> Result<usize, QueueError> {
        Ok(self.len())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=10).contains(&max) {
            return Err(QueueError::BadBatchSize);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let got = self.take_visible(max);
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            // Also wake periodically: in-flight messages become visible by the clock, not by a send.
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                arrived,
            )
            .await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.iter().position(|e| e.receipt.as_deref() == Some(receipt)) {
            Some(i) => {
                entries.remove(i);
                Ok(())
            }
            None => Err(QueueError::StaleReceipt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SettableClock;

    #[tokio::test]
    async fn a_body_sqs_would_refuse_is_refused_and_nothing_is_stored() {
        let q = EmbeddedQueue::new(
            Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000))),
            Duration::from_secs(30),
        );
        // Bad input: U+FFFF, a non-character SQS refuses, raw in the second body of the batch.
        let bodies = ["{\"ok\":1}".to_owned(), "{\"text\":\"a\u{FFFF}\"}".to_owned()];
        let err = q.send_batch(&bodies).await.expect_err("refused");
        assert!(
            matches!(err, QueueError::ForbiddenCharacter { index: 1, position: 10 }),
            "{err:?}"
        );
        let said = err.to_string();
        assert!(
            !said.contains("text") && !said.contains('\u{FFFF}'),
            "no body text in: {said}"
        );
        assert!(q.is_empty(), "nothing of the batch is stored");
        // The same text escaped, as the envelope encoding writes it, is accepted.
        let escaped = [crate::queue::escape_for_sqs(bodies[1].clone())];
        q.send_batch(&escaped).await.expect("accepted");
        assert_eq!(q.len(), 1);
    }
}
