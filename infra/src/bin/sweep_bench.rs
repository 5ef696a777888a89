//! The sweep cost benchmark (issue 12, not CI): the same 1,000 expired messages (100 contacts
//! with 10 each, 25 months old) among 10,000 and then 100,000 stored items on DynamoDB Local,
//! each in fresh tables; the cleanup's sweep job runs once over each and its read units are
//! metered. Prints both figures and their ratio, and fails (exit 1) if the ratio is over 1.2, if
//! an expired message is left or if a live one went. Run by `infra/bench-sweep.sh`.
//!
//! The data is synthetic; nothing personal is printed.

use serde_json::json;
use shared::clock::{SettableClock, SharedClock};
use shared::compliance::Job;
use shared::config::{Endpoints, TableKind, TableNames};
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ContactId, ContactUpsert, Direction, Locale, Message, MetaMessageId, Tenant, TenantId};
use shared::queue::embedded::EmbeddedQueue;
use shared::retention::RetentionMonths;
use shared::store::dynamodb::CapacityMeter;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: sweep_bench --dynamodb URL [--sizes 10000,100000] [--concurrency N]";
const DUE_CONTACTS: usize = 100;
const EXPIRED_PER_CONTACT: usize = 10;
const PER_CONTACT: usize = 50;
const RATIO_BUDGET: f64 = 1.2;

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1)
}

/// One contact's messages at the given times, written as the processor writes them.
async fn seed_contact(stores: &Stores, tenant: &TenantId, contact: &str, times: Vec<Timestamp>) {
    let contact = ContactId::new(Channel::WhatsApp, contact).expect("valid");
    for (i, at) in times.into_iter().enumerate() {
        let retention = RetentionMonths::MAX;
        let u = ContactUpsert {
            tenant: tenant.clone(),
            contact: contact.clone(),
            profile_name: Some("Cliente".to_owned()),
            identifiers: Vec::new(),
            seen_at: at,
            expires_at: retention.contact_expiry_for(at),
        };
        let m = Message {
            tenant: tenant.clone(),
            contact: contact.clone(),
            id: MetaMessageId::new(format!("wamid.sweep.{}.{i}", contact.stable_id)).expect("valid id"),
            direction: Direction::Inbound,
            sent_at: at,
            kind: "text".to_owned(),
            content: json!({"type": "text", "text": {"body": format!("mensaje {i}")}}),
            expires_at: retention.expiry_for(at),
        };
        stores
            .conversations
            .record_message(&u, &m)
            .await
            .expect("seeding write");
    }
}

struct Figures {
    stored: usize,
    read_units: f64,
    conversation_read_units: f64,
    write_units: f64,
    deleted: u64,
    seconds: f64,
}

async fn run(dynamo: &aws_sdk_dynamodb::Client, total: usize, concurrency: usize) -> Figures {
    let prefix = format!("sweep-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let tables = TableNames::with_prefix(&prefix);
    shared::provision::create_tables(dynamo, shared::provision::TEMPLATE, &tables)
        .await
        .unwrap_or_else(|e| fail(&format!("creating the tables: {e}")));
    let now = Timestamp::parse_rfc3339("2028-06-01T12:00:00Z").expect("valid");
    let clock = SettableClock::at(now);
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let stores = shared::store::dynamodb::stores(dynamo, &tables, shared_clock.clone(), &CapacityMeter::default());
    let tenant = TenantId::new("bench-sweep").expect("valid");
    stores
        .tenants
        .register(&Tenant {
            id: tenant.clone(),
            name: "Bench".to_owned(),
            accounts: Vec::new(),
            retention_months: RetentionMonths::MAX,
            locale: Locale::Spanish,
            jurisdiction: Jurisdiction::Ar,
            created_at: now,
            optout_keywords: Vec::new(),
            optout_button_ids: Vec::new(),
            retention_lowered_at: None,
            offboarding: None,
            access_token_secret: None,
        })
        .await
        .unwrap_or_else(|e| fail(&format!("registering: {}", e.log_safe())));
    // 100 contacts with 10 messages from 25 months ago and the rest recent; the other contacts'
    // messages are all recent. Every contact holds PER_CONTACT messages.
    let old = now.minus_months(25);
    let recent = now.minus_months(1);
    let contacts = total / PER_CONTACT;
    let mut plans: Vec<(String, Vec<Timestamp>)> = Vec::new();
    for c in 0..contacts {
        let expired = if c < DUE_CONTACTS { EXPIRED_PER_CONTACT } else { 0 };
        let times = (0..PER_CONTACT)
            .map(|i| {
                let base = if i < expired { old } else { recent };
                base.plus(time::Duration::seconds(i as i64))
            })
            .collect();
        plans.push((format!("AR.SWEEP{c:06}"), times));
    }
    let seeding = Instant::now();
    let mut plans = plans.into_iter();
    loop {
        let mut batch = tokio::task::JoinSet::new();
        for (contact, times) in plans.by_ref().take(concurrency) {
            let (stores, tenant) = (stores.clone(), tenant.clone());
            batch.spawn(async move { seed_contact(&stores, &tenant, &contact, times).await });
        }
        if batch.is_empty() {
            break;
        }
        while let Some(done) = batch.join_next().await {
            done.expect("seeding task");
        }
    }
    println!(
        "   seeded {total} messages in {contacts} contacts in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );

    let meter = CapacityMeter::default();
    let metered = shared::store::dynamodb::stores(dynamo, &tables, shared_clock.clone(), &meter);
    let sweeps = shared::store::dynamodb::sweeps(dynamo, &tables, shared_clock.clone(), &meter);
    let erasure = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
    let cleanup = cleanup::Cleanup::new(metered, sweeps, erasure, shared_clock);
    let sweeping = Instant::now();
    let done = cleanup
        .run(Job::Sweep, Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| fail(&format!("the sweep failed: {e}")));
    let seconds = sweeping.elapsed().as_secs_f64();
    if !done.complete {
        fail("the sweep did not finish");
    }
    let deleted = done
        .counts
        .get(cleanup::metric::CONVERSATION_ITEMS_DELETED)
        .copied()
        .unwrap_or(0);
    let expected = (DUE_CONTACTS * EXPIRED_PER_CONTACT) as u64;
    if deleted != expected {
        fail(&format!("the sweep deleted {deleted} items, expected {expected}"));
    }
    // What is left: every live message, no expired one.
    let (mut left, mut expected_left) = (0, 0);
    for c in [0, DUE_CONTACTS - 1, contacts - 1] {
        expected_left += PER_CONTACT - if c < DUE_CONTACTS { EXPIRED_PER_CONTACT } else { 0 };
        let contact = ContactId::new(Channel::WhatsApp, format!("AR.SWEEP{c:06}")).expect("valid");
        let page = stores
            .conversations
            .list_messages(&tenant, &contact, &PageRequest::first(100))
            .await
            .unwrap_or_else(|e| fail(&format!("reading back: {}", e.log_safe())));
        left += page.items.len();
        if page.items.iter().any(|m| m.sent_at < recent) {
            fail("an expired message is still stored");
        }
    }
    if left != expected_left {
        fail(&format!(
            "{left} live messages read back in three contacts, expected {expected_left}"
        ));
    }
    let due = stores
        .retention
        .contacts_due(&tenant, now.minus_months(24), &PageRequest::first(10))
        .await
        .unwrap_or_else(|e| fail(&format!("the index: {}", e.log_safe())));
    if !due.items.is_empty() {
        fail("contacts are still due after the sweep");
    }
    let conversations = meter.units(tables.get(TableKind::Conversations));
    let total_units = meter.total();
    Figures {
        stored: total,
        read_units: total_units.read,
        conversation_read_units: conversations.read,
        write_units: total_units.write,
        deleted,
        seconds,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(endpoint) = flag("--dynamodb") else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let sizes: Vec<usize> = flag("--sizes")
        .unwrap_or_else(|| "10000,100000".to_owned())
        .split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                eprintln!("--sizes takes numbers\n{USAGE}");
                std::process::exit(2)
            })
        })
        .collect();
    if sizes.len() != 2 || sizes.iter().any(|s| *s < DUE_CONTACTS * PER_CONTACT) {
        eprintln!(
            "--sizes takes two sizes of at least {}\n{USAGE}",
            DUE_CONTACTS * PER_CONTACT
        );
        std::process::exit(2);
    }
    let concurrency = flag("--concurrency")
        .and_then(|c| c.parse().ok())
        .unwrap_or(64usize)
        .max(1);
    let endpoints = Endpoints {
        dynamodb: Some(endpoint),
        sqs: None,
        secretsmanager: None,
    };
    let dynamo = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    let mut figures = Vec::new();
    for size in sizes {
        println!(
            "== {size} stored messages, {} of them expired",
            DUE_CONTACTS * EXPIRED_PER_CONTACT
        );
        figures.push(run(&dynamo, size, concurrency).await);
    }
    println!("stored     deleted  read units (conversations)  write units  sweep time");
    for f in &figures {
        println!(
            "{:<10} {:<8} {:<6.1} ({:<6.1})              {:<12.1} {:.2} s",
            f.stored, f.deleted, f.read_units, f.conversation_read_units, f.write_units, f.seconds
        );
    }
    let ratio = figures[1].read_units / figures[0].read_units;
    println!(
        "read units at {} / at {}: {ratio:.3} (budget {RATIO_BUDGET})",
        figures[1].stored, figures[0].stored
    );
    if ratio > RATIO_BUDGET {
        fail(&format!("the sweep's reads grow with the table: ratio {ratio:.3}"));
    }
}
