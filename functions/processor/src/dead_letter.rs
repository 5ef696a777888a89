//! The dead-letter consumer: messages that failed every delivery on a queue carrying personal
//! data (webhook envelopes, opt-out commands, replies) move into quarantine, indexed by the
//! people they name, instead of waiting in SQS where no erasure can find them. Each entry keeps
//! the body whole, so nothing accepted is lost and it can be sent again.
//!
//! The body says which queue it failed on: an envelope, an opt-out command and a reply have
//! disjoint required fields, so no wiring of queue ARNs is needed.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::clock::SharedClock;
use shared::domain::{DeadLetterSource, QuarantineBucket, QuarantineEntry};
use shared::identity::{SubjectKey, SubjectKeySecret};
use shared::meta::envelope::Envelope;
use shared::meta::identifiers::{contact_keys, subject_keys_in};
use shared::optout::command::OptOutCommand;
use shared::outbound::OutboundCommand;
use shared::store::QuarantineStore;
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::sync::Arc;

/// What a dead-lettered body is, and the people it names.
#[derive(Debug, PartialEq, Eq)]
pub struct Classified {
    /// None: a body none of the queues' types reads (a message put there by hand).
    pub source: Option<DeadLetterSource>,
    pub subject_keys: Vec<SubjectKey>,
}

/// Reads a body as each queue's message type in turn; every identifier a JSON body names is
/// collected either way, so a body of no known type is still findable by the people it names.
/// (One that is not JSON names nobody this can find; it is kept 30 days as rejected.)
pub fn classify(body: &str, secret: &SubjectKeySecret) -> Classified {
    let mut keys = subject_keys_in(body, secret);
    let source = if let Ok(cmd) = serde_json::from_str::<OptOutCommand>(body) {
        keys.extend(cmd.subject_keys);
        keys.extend(contact_keys(&cmd.contact, secret));
        Some(DeadLetterSource::OptOut)
    } else if let Ok(outbound) = serde_json::from_str::<OutboundCommand>(body) {
        keys.extend(contact_keys(outbound.to(), secret));
        Some(DeadLetterSource::Outbound)
    } else if serde_json::from_str::<Envelope>(body).is_ok() {
        Some(DeadLetterSource::Ingest)
    } else {
        None
    };
    keys.sort();
    keys.dedup();
    Classified {
        source,
        subject_keys: keys,
    }
}

fn reason(source: Option<DeadLetterSource>) -> &'static str {
    match source {
        Some(DeadLetterSource::Ingest) => "dead-lettered: the processor could not store this envelope after 5 attempts",
        Some(DeadLetterSource::OptOut) => {
            "dead-lettered: the opt-out function could not apply this command after 5 attempts; the STOP is not honoured yet"
        }
        Some(DeadLetterSource::Outbound) => {
            "dead-lettered: this reply or tenant's message could not be delivered after 5 attempts"
        }
        None => "dead-lettered: a message no queue of this system writes",
    }
}

#[derive(Debug)]
pub struct DeadLetters {
    quarantine: Arc<dyn QuarantineStore>,
    secret: SubjectKeySecret,
    clock: SharedClock,
}

pub async fn build(r: &impl Resources) -> Result<DeadLetters, WiringError> {
    let secret = r.secrets()?.fetch().await?.subject_key_secret()?;
    Ok(DeadLetters::new(r.quarantine(), secret, r.clock()))
}

impl DeadLetters {
    pub fn new(quarantine: Arc<dyn QuarantineStore>, secret: SubjectKeySecret, clock: SharedClock) -> Self {
        Self {
            quarantine,
            secret,
            clock,
        }
    }

    /// Each record becomes one entry (the same body again is the same entry); a record the store
    /// refuses is reported failed, so SQS keeps it and tries again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut moved = [0u64; 4];
        for record in event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            // When the message was first sent (SQS keeps it through the move to the dead-letter
            // queue): part of the entry's key, so a redelivery of the dead letter finds the
            // same entry rather than adding one.
            let sent_at = record
                .attributes
                .get("SentTimestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .map_or_else(|| self.clock.now(), Timestamp::from_unix_millis);
            let body = record.body.unwrap_or_default();
            let found = classify(&body, &self.secret);
            let bucket = found
                .source
                .map_or(QuarantineBucket::Rejected, |source| QuarantineBucket::DeadLettered {
                    source,
                });
            let entry =
                QuarantineEntry::new(bucket, reason(found.source).to_owned(), body, sent_at).naming(found.subject_keys);
            let source = found.source.map_or("unknown", DeadLetterSource::as_str);
            match self.quarantine.put(&entry).await {
                Ok(()) => {
                    let slot = match found.source {
                        Some(DeadLetterSource::Ingest) => 0,
                        Some(DeadLetterSource::OptOut) => 1,
                        Some(DeadLetterSource::Outbound) => 2,
                        None => 3,
                    };
                    moved[slot] += 1;
                    tracing::warn!(%message_id, source, entry = %entry.id, "dead letter moved into quarantine");
                }
                Err(e) => {
                    tracing::error!(%message_id, source, error = %e.log_safe(), "dead letter not quarantined; SQS keeps it");
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = message_id;
                    response.batch_item_failures.push(f);
                }
            }
        }
        shared::metrics::emit(
            "deadletter",
            self.clock.now(),
            &[
                ("DeadLettered", moved.iter().sum()),
                ("DeadLetteredEnvelopes", moved[0]),
                ("DeadLetteredOptOuts", moved[1]),
                ("DeadLetteredReplies", moved[2]),
                ("DeadLetteredUnknown", moved[3]),
            ],
        );
        response
    }
}
