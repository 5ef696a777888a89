//! DynamoDB capacity per message, on DynamoDB Local through the real adapters: the processor
//! applies signed-webhook envelopes for 100 contacts, and the meter (which counts a failed
//! condition as the unit DynamoDB bills for it) gives the units each case costs. Capacity units
//! are deterministic, so the budget is a test; `infra/bench-capacity.sh` prints the table.

mod common;

use common::{ACCOUNT, START};
use processor::Processor;
use shared::clock::SettableClock;
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::dynamodb::{CapacityMeter, Units};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const CONTACTS: u32 = 100;

/// Budgets per message (write units, read units), from the cost issue's targets.
const BUDGETS: &[(&str, f64, f64)] = &[
    ("first message of a new contact", 5.0, 1.0),
    ("next message of a known contact", 2.0, 0.5),
    ("replay of a stored message", 1.0, 0.5),
    ("status update (delivered, read)", 2.0, 0.5),
    // Not a target of the issue: the price of moving expiry in whole days, once a day per contact.
    ("a known contact's first message of a new day", 5.0, 0.5),
];

fn text_body(contact: u32, n: u32, at: i64) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": ACCOUNT},
            "contacts": [{"profile": {"name": format!("Cliente {contact}")}, "wa_id": wa_id(contact), "user_id": bsuid(contact)}],
            "messages": [{"from": wa_id(contact), "from_user_id": bsuid(contact), "id": format!("wamid.C{contact:05}N{n:03}"),
                "timestamp": at.to_string(), "type": "text",
                "text": {"body": "Hola, ¿tienen el modelo azul en talle M? Gracias"}}]}}]}]
    })
    .to_string()
}

fn status_body(contact: u32, state: &str, at: i64) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": ACCOUNT},
            "statuses": [{"id": format!("wamid.OUT{contact:05}"), "status": state, "timestamp": at.to_string(),
                "recipient_id": wa_id(contact), "recipient_user_id": bsuid(contact),
                "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}}]}}]}]
    })
    .to_string()
}

fn wa_id(contact: u32) -> String {
    format!("54911555{contact:05}")
}

fn bsuid(contact: u32) -> String {
    format!("AR.{}", 13_491_208_655_302_741_000u64 + u64::from(contact))
}

fn envelope_of(body: &str) -> String {
    let split = envelope::split(body.as_bytes(), "req-capacity", Timestamp::from_unix_seconds(START)).expect("usable");
    assert_eq!(split.envelopes.len(), 1, "one change per body");
    split.envelopes.into_iter().next().expect("one envelope")
}

struct Bench {
    processor: Processor,
    meter: CapacityMeter,
}

impl Bench {
    async fn new() -> Self {
        let clock = SettableClock::at(Timestamp::from_unix_seconds(START));
        let meter = CapacityMeter::default();
        let stores = common::dynamodb_stores("cap", Arc::new(clock.clone()), &meter).await;
        common::register_tenant_a(&stores).await;
        let queue = Arc::new(EmbeddedQueue::new(Arc::new(clock.clone()), Duration::from_secs(30)));
        let secret = SubjectKeySecret::new(b"capacity-test-secret-capacity-test".to_vec()).expect("long enough");
        let processor = Processor::new(stores, secret, Arc::new(clock), queue);
        Self { processor, meter }
    }

    /// Units per envelope over one envelope per contact.
    async fn per_message(&self, bodies: impl Fn(u32) -> String) -> Units {
        let before = self.meter.total();
        for c in 0..CONTACTS {
            self.processor
                .process(&envelope_of(&bodies(c)))
                .await
                .expect("processed");
        }
        let after = self.meter.total();
        Units {
            read: (after.read - before.read) / f64::from(CONTACTS),
            write: (after.write - before.write) / f64::from(CONTACTS),
        }
    }
}

#[tokio::test]
async fn capacity_per_message_stays_within_budget() {
    let bench = Bench::new().await;
    // Warm the tenant cache as a running instance has it; its first lookup is not a message's cost.
    bench
        .processor
        .process(&envelope_of(&status_body(CONTACTS + 1, "sent", START)))
        .await
        .expect("processed");

    let first = bench.per_message(|c| text_body(c, 1, START + 10)).await;
    let next = bench.per_message(|c| text_body(c, 2, START + 60)).await;
    let replay = bench.per_message(|c| text_body(c, 2, START + 60)).await;
    let delivered = bench.per_message(|c| status_body(c, "delivered", START + 70)).await;
    let read = bench.per_message(|c| status_body(c, "read", START + 80)).await;
    let status = Units {
        read: (delivered.read + read.read) / 2.0,
        write: (delivered.write + read.write) / 2.0,
    };

    let next_day = bench.per_message(|c| text_body(c, 3, START + 86_400 + 60)).await;

    let measured = [first, next, replay, status, next_day];
    println!("| case | write units | read units | budget (write / read) |");
    println!("| --- | --- | --- | --- |");
    for ((case, w, r), u) in BUDGETS.iter().zip(measured) {
        println!("| {case} | {:.2} | {:.2} | ≤ {w} / ≤ {r} |", u.write, u.read);
    }
    for ((case, w, r), u) in BUDGETS.iter().zip(measured) {
        assert!(
            u.write <= *w && u.read <= *r,
            "{case}: {:.2} write / {:.2} read units per message, budget {w} / {r}",
            u.write,
            u.read
        );
    }
}
