//! The erasure benchmark (issue 11, not CI): a person with N messages (10,000 by default) across
//! three tenants, a neighbour in the first tenant, on DynamoDB Local; one approved erasure by
//! phone, WhatsApp user id and Instagram id, run by the erasure worker to completion. Prints the
//! seeding and erasure times, the items erased and the capacity consumed, and checks that the
//! request completed verified with every item counted and that the neighbour is untouched (exit 1
//! otherwise). Run by `infra/bench-erasure.sh`, which starts DynamoDB Local.
//!
//! The data is synthetic; nothing personal is printed.

use serde_json::json;
use shared::clock::{SharedClock, SystemClock};
use shared::config::{Endpoints, TableNames};
use shared::domain::{
    Channel, ContactId, ContactUpsert, Direction, LinkedIdentifier, Message, MetaMessageId, RequestStatus, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::queue::embedded::EmbeddedQueue;
use shared::retention::RetentionMonths;
use shared::store::dynamodb::CapacityMeter;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: erasure_bench --dynamodb URL [--messages N] [--concurrency N]";
const PHONE: &str = "+5491155550123";
const BSUID: &str = "AR.1234567890ABCDEF";
const IGSID: &str = "17841400000000001";
const NEIGHBOUR_MESSAGES: usize = 100;

fn link(secret: &SubjectKeySecret, kind: IdentifierKind, raw: &str) -> LinkedIdentifier {
    LinkedIdentifier::new(secret, Identifier::parse(kind, raw).expect("a valid identifier"))
}

/// Stores `count` messages of one contact, `concurrency` at a time.
async fn seed(stores: &Stores, upsert: ContactUpsert, count: usize, concurrency: usize, now: Timestamp) {
    let upsert = Arc::new(upsert);
    let mut next = 0;
    while next < count {
        let mut batch = tokio::task::JoinSet::new();
        for i in next..(next + concurrency).min(count) {
            let (conv, u) = (stores.conversations.clone(), upsert.clone());
            let at = now.plus(time::Duration::milliseconds(i as i64));
            batch.spawn(async move {
                let m = Message {
                    tenant: u.tenant.clone(),
                    contact: u.contact.clone(),
                    id: MetaMessageId::new(format!("wamid.bench.{}.{i}", u.tenant)).expect("valid id"),
                    direction: Direction::Inbound,
                    sent_at: at,
                    kind: "text".to_owned(),
                    content: json!({"type": "text", "text": {"body": format!("mensaje {i} de la persona")}}),
                    expires_at: RetentionMonths::new(24).expect("valid").expiry_for(at),
                };
                conv.record_message(&u, &m).await
            });
        }
        while let Some(done) = batch.join_next().await {
            done.expect("seeding task").expect("seeding write");
        }
        next += concurrency;
    }
}

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1)
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
    let number = |name: &str, default: usize| match flag(name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name} takes a number\n{USAGE}");
            std::process::exit(2)
        }),
    };
    let messages = number("--messages", 10_000).max(3);
    let concurrency = number("--concurrency", 16).max(1);

    let endpoints = Endpoints {
        dynamodb: Some(endpoint.clone()),
        sqs: None,
        secretsmanager: None,
    };
    let sdk = shared::aws::sdk_config().await;
    let dynamo = shared::aws::dynamodb(&sdk, &endpoints);
    let prefix = format!("bench-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let tables = TableNames::with_prefix(&prefix);
    shared::provision::create_tables(&dynamo, shared::provision::TEMPLATE, &tables)
        .await
        .unwrap_or_else(|e| fail(&format!("creating the tables: {e}")));
    let clock: SharedClock = Arc::new(SystemClock);
    let seed_meter = CapacityMeter::default();
    let stores = shared::store::dynamodb::stores(&dynamo, &tables, clock.clone(), &seed_meter);
    let secret = SubjectKeySecret::new(b"erasure-bench-subject-key-secret-0123456789".to_vec()).expect("secret");
    let now = clock.now();
    let tenant = |id: &str| TenantId::new(id).expect("valid tenant id");
    let expires = RetentionMonths::new(24).expect("valid").expiry_for(now);
    let person = [
        (
            tenant("bench-a"),
            ContactId::new(Channel::WhatsApp, BSUID).expect("valid"),
            vec![
                link(&secret, IdentifierKind::WhatsAppUserId, BSUID),
                link(&secret, IdentifierKind::Phone, PHONE),
            ],
        ),
        (
            tenant("bench-b"),
            ContactId::new(Channel::WhatsApp, "5491155550123").expect("valid"),
            vec![link(&secret, IdentifierKind::Phone, PHONE)],
        ),
        (
            tenant("bench-c"),
            ContactId::new(Channel::Instagram, IGSID).expect("valid"),
            vec![link(&secret, IdentifierKind::InstagramId, IGSID)],
        ),
    ];
    let neighbour = ContactUpsert {
        tenant: tenant("bench-a"),
        contact: ContactId::new(Channel::WhatsApp, "AR.NEIGHBOUR000001").expect("valid"),
        profile_name: Some("Neighbour".to_owned()),
        identifiers: vec![link(&secret, IdentifierKind::WhatsAppUserId, "AR.NEIGHBOUR000001")],
        seen_at: now,
        expires_at: expires,
    };

    println!(
        "== seeding {messages} messages of one person across 3 tenants (+{NEIGHBOUR_MESSAGES} of a neighbour), {concurrency} writes at a time"
    );
    let seeding = Instant::now();
    for (i, (t, c, ids)) in person.iter().enumerate() {
        let share = messages / 3 + usize::from(i < messages % 3);
        let upsert = ContactUpsert {
            tenant: t.clone(),
            contact: c.clone(),
            profile_name: Some("Persona".to_owned()),
            identifiers: ids.clone(),
            seen_at: now,
            expires_at: expires,
        };
        seed(&stores, upsert, share, concurrency, now).await;
    }
    seed(&stores, neighbour.clone(), NEIGHBOUR_MESSAGES, concurrency, now).await;
    let seeded_in = seeding.elapsed();

    let mut request = deletion::intake::parse(
        json!({
            "kind": "erasure",
            "source": "operator",
            "identifiers": [
                {"type": "phone", "value": "+54 9 11 5555-0123"},
                {"type": "whatsapp_user_id", "value": BSUID},
                {"type": "instagram_id", "value": IGSID},
            ],
        })
        .as_object()
        .cloned()
        .expect("an object"),
        &secret,
        now,
        "erasure-bench",
    )
    .unwrap_or_else(|e| fail(&format!("the request: {e}")));
    request.status = RequestStatus::Approved;
    stores
        .privacy_requests
        .create(&request)
        .await
        .unwrap_or_else(|e| fail(&format!("storing the request: {}", e.log_safe())));

    let erase_meter = CapacityMeter::default();
    let erase_stores = shared::store::dynamodb::stores(&dynamo, &tables, clock.clone(), &erase_meter);
    let queue = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(300)));
    let optout = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(300)));
    let worker = deletion::erasure::ErasureWorker::new(&erase_stores, queue.clone(), optout, clock.clone());
    let job = deletion::ErasureJob { request: request.id };
    println!("== erasing");
    let erasing = Instant::now();
    let mut runs = 0;
    loop {
        runs += 1;
        match worker.run(&job).await {
            Ok(deletion::erasure::Outcome::Completed) => break,
            Ok(deletion::erasure::Outcome::Paused) => {
                // The continuation it queued: run it, as the next invocation would.
                use shared::queue::Queue;
                let next = queue.receive(1, Duration::ZERO).await.expect("receive");
                for m in next {
                    queue.delete(&m.receipt).await.expect("delete");
                }
            }
            Ok(other) => fail(&format!("the worker answered {other:?}")),
            Err(e) => fail(&format!("the worker failed: {e}")),
        }
    }
    let erased_in = erasing.elapsed();

    let done = stores
        .privacy_requests
        .get(request.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| fail("the request is gone"));
    if done.status != RequestStatus::Completed {
        fail(&format!("the request is {}", done.status.as_str()));
    }
    let receipt = done.receipt.unwrap_or_else(|| fail("no receipt"));
    let links: u64 = person.iter().map(|(_, _, ids)| ids.len() as u64).sum();
    let expected = messages as u64 + 3 + links;
    let erased = receipt
        .erased
        .get(deletion::erasure::CONVERSATIONS)
        .copied()
        .unwrap_or(0);
    if erased != expected || receipt.contacts_erased != 3 || receipt.verified_at.is_none() {
        fail(&format!(
            "the receipt counts {erased} items in {} contacts, expected {expected} in 3, verified {:?}",
            receipt.contacts_erased, receipt.verified_at
        ));
    }
    let kept = stores
        .conversations
        .list_messages(&neighbour.tenant, &neighbour.contact, &PageRequest::first(100))
        .await
        .unwrap_or_else(|e| fail(&format!("reading the neighbour: {}", e.log_safe())));
    if kept.items.len() != NEIGHBOUR_MESSAGES {
        fail(&format!("the neighbour has {} messages left", kept.items.len()));
    }
    let units = erase_meter.total();
    println!("messages of the person       {messages}");
    println!("seeded in                    {:.1} s", seeded_in.as_secs_f64());
    println!(
        "erased in                    {:.2} s ({runs} worker runs), completed and verified",
        erased_in.as_secs_f64()
    );
    println!("items erased (conversations) {erased} ({messages} messages, 3 profiles, {links} links)");
    println!(
        "items per second             {:.0}",
        erased as f64 / erased_in.as_secs_f64()
    );
    println!(
        "capacity of the erasure      {:.1} RCU, {:.1} WCU",
        units.read, units.write
    );
    println!("the neighbour's {NEIGHBOUR_MESSAGES} messages   all kept");
}
