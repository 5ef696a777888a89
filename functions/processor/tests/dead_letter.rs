//! The dead-letter consumer: each queue's failed messages land in quarantine, findable by the
//! people they name, once however often they come; a store that refuses them leaves them in SQS.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use processor::dead_letter::DeadLetters;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{
    Channel, ContactId, DeadLetterSource, Locale, OptOutScope, OptOutSource, QuarantineBucket, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKey, SubjectKeySecret};
use shared::optout::command::{CommandAction, OptOutCommand, OutboundReply, ReplyKind};
use shared::store::PageRequest;
use shared::timestamp::Timestamp;
use std::sync::Arc;

const WA_ID: &str = "5491155550123";
const ACCOUNT: &str = "106540352242922";

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"dead-letter-tests-secret-0123456789abcdef".to_vec()).expect("long enough")
}

fn key(kind: IdentifierKind, raw: &str) -> SubjectKey {
    secret().subject_key(&Identifier::parse(kind, raw).expect("valid"))
}

fn event(bodies: &[String]) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.clone());
            m.attributes
                .insert("SentTimestamp".to_owned(), (1_796_300_000_000 + i as i64).to_string());
            m
        })
        .collect();
    e
}

/// One failed message of each queue that carries personal data, all about the same person, and
/// a body no queue of the system writes.
fn bodies(now: Timestamp) -> Vec<String> {
    let webhook = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{
        "messaging_product":"whatsapp","metadata":{{"display_phone_number":"5491100000000","phone_number_id":"{}"}},
        "contacts":[{{"profile":{{"name":"Ana"}},"wa_id":"{WA_ID}"}}],
        "messages":[{{"from":"{WA_ID}","id":"wamid.DL1","timestamp":"{}","type":"text","text":{{"body":"hola, soy Ana"}}}}]}}}}]}}]}}"#,
        ACCOUNT,
        now.unix_seconds()
    );
    let envelope = shared::meta::envelope::split(webhook.as_bytes(), "req-1", now)
        .expect("split")
        .envelopes
        .remove(0);
    let contact = ContactId::new(Channel::WhatsApp, WA_ID).expect("valid");
    let tenant = TenantId::new("tenant-a").expect("valid");
    let command = OptOutCommand {
        tenant: tenant.clone(),
        contact: contact.clone(),
        subject_keys: vec![key(IdentifierKind::Phone, WA_ID)],
        action: CommandAction::OptOut,
        scope: OptOutScope::All,
        source: OptOutSource::Keyword,
        event_at: now,
        order_at: now,
        only_while_opted_out: false,
        language: None,
    };
    let reply = OutboundReply {
        tenant,
        to: contact,
        kind: ReplyKind::OptOutConfirmation,
        language: Locale::Spanish,
        text: "Listo: no te escribiremos más.".to_owned(),
        dedup_key: "dk-1".to_owned(),
        request: None,
        answering_at: None,
    };
    vec![
        envelope,
        serde_json::to_string(&command).expect("json"),
        serde_json::to_string(&reply).expect("json"),
        format!("not json, mentions {WA_ID}"),
    ]
}

#[tokio::test]
async fn each_queues_dead_letters_land_in_quarantine_findable_by_person_and_once() {
    let now = Timestamp::parse_rfc3339("2026-12-03T12:00:00Z").expect("time");
    let settable = SettableClock::at(now);
    let clock: SharedClock = Arc::new(settable.clone());
    let stores = shared::store::embedded::stores(clock.clone());
    let consumer = DeadLetters::new(stores.quarantine.clone(), secret(), clock);
    let bodies = bodies(now);
    // The same dead letters delivered again a minute later (the consumer's visibility ran out).
    for _ in 0..2 {
        let response = consumer.handle(event(&bodies)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        settable.advance(time::Duration::minutes(1));
    }
    let phone = key(IdentifierKind::Phone, WA_ID);
    let held = stores.quarantine.find_subject(&phone).await.expect("find");
    assert_eq!(
        held.len(),
        3,
        "the envelope, the command and the reply name her; the same bodies again add nothing: {held:?}"
    );
    for (source, body, kept_until_decided) in [
        (DeadLetterSource::Ingest, &bodies[0], false),
        (DeadLetterSource::OptOut, &bodies[1], true),
        (DeadLetterSource::Outbound, &bodies[2], false),
    ] {
        let entry = held
            .iter()
            .find(|q| q.bucket == QuarantineBucket::DeadLettered { source })
            .unwrap_or_else(|| panic!("no {source:?} entry: {held:?}"));
        assert_eq!(&entry.envelope, body, "the body is kept whole, so it can be sent again");
        assert_eq!(
            entry.expires_at.is_none(),
            kept_until_decided,
            "{source:?}: only an unapplied STOP is kept until a person decides"
        );
        let listed = stores
            .quarantine
            .list(&entry.bucket, &PageRequest::first(10))
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1, "{source:?}");
    }
    let rejected = stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(
        rejected.items.len(),
        1,
        "a body no queue writes (not JSON) is held as rejected"
    );
}

#[tokio::test]
async fn a_dead_letter_the_store_refuses_is_reported_and_stays_in_sqs() {
    let now = Timestamp::parse_rfc3339("2026-12-03T12:00:00Z").expect("time");
    let clock: SharedClock = Arc::new(SettableClock::at(now));
    let endpoint =
        std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT is not set: run this with infra/test.sh");
    let endpoints = shared::config::Endpoints {
        dynamodb: Some(endpoint),
        ..Default::default()
    };
    let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    // Tables that were never created: every write fails as with a deleted table.
    let tables = shared::config::TableNames::with_prefix("never-created-");
    let stores = shared::store::dynamodb::stores(&client, &tables, clock.clone(), &Default::default());
    let consumer = DeadLetters::new(stores.quarantine.clone(), secret(), clock);
    let response = consumer.handle(event(&bodies(now))).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m0", "m1", "m2", "m3"]);
}
