//! Concurrent opt-outs on DynamoDB Local: four handler instances, each with its own client over the
//! same tables, apply a shuffled stream of STOP/START (and marketing preference) commands for one
//! person at once, as concurrent Lambda invocations do. Only the changes that won the store's
//! conditional write may have consequences. Fails, never skips, without `DYNAMODB_ENDPOINT`.

use optout::{OptOutHandler, Outcome};
use shared::clock::{SettableClock, SharedClock};
use shared::config::{Endpoints, TableNames};
use shared::deadline::Jurisdiction;
use shared::domain::{
    Channel, ChannelAccount, ContactId, ContactUpsert, LinkedIdentifier, Locale, OptOutRecord, OptOutScope,
    OptOutSource, OptState, Tenant, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKey, SubjectKeySecret};
use shared::optout::command::{CommandAction, OptOutCommand, OutboundReply, PropagationEvent, ReplyKind};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::dynamodb::CapacityMeter;
use shared::store::{OptOutStore, PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const INSTANCES: usize = 4;
const COMMANDS: usize = 14;
const SEEDS: u64 = 8;
/// Clear of DynamoDB Local's real-time TTL sweeper (contacts expire).
const START: i64 = 2_208_988_800;
/// An error is redelivered by SQS; more than this many for one command is a bug.
const MAX_DELIVERIES: usize = 10;

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"concurrent-optout-secret-concurrent".to_vec()).expect("long enough")
}

fn tenant_id() -> TenantId {
    TenantId::new("tenant-c").expect("valid")
}

struct Backend {
    client_endpoint: Endpoints,
    tables: TableNames,
    clock: SettableClock,
}

impl Backend {
    async fn new() -> Self {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT")
            .expect("DYNAMODB_ENDPOINT is not set: run this with infra/test.sh, which starts DynamoDB Local");
        let client_endpoint = Endpoints {
            dynamodb: Some(endpoint),
            ..Endpoints::default()
        };
        let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &client_endpoint);
        let tables = TableNames::with_prefix(&format!("oc{:016x}", fastrand::u64(..)));
        shared::provision::create_tables(&client, shared::provision::TEMPLATE, &tables)
            .await
            .expect("tables from template.yaml");
        let clock = SettableClock::at(Timestamp::from_unix_seconds(START));
        Self {
            client_endpoint,
            tables,
            clock,
        }
    }

    /// One instance's stores: its own client over the shared tables.
    async fn stores(&self) -> Stores {
        let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &self.client_endpoint);
        let clock: SharedClock = Arc::new(self.clock.clone());
        shared::store::dynamodb::stores(&client, &self.tables, clock, &CapacityMeter::default())
    }
}

/// One person: the contact's stable id (first in every command), the phone the event carried,
/// and a second number linked to the contact only.
struct Person {
    contact: ContactId,
    carried: Vec<SubjectKey>,
    all_keys: Vec<SubjectKey>,
}

async fn person(stores: &Stores, seed: u64) -> Person {
    let contact = ContactId::new(Channel::WhatsApp, format!("AR.{}", 7_000_000_000u64 + seed)).expect("valid");
    let identifiers: Vec<LinkedIdentifier> = [
        (
            IdentifierKind::WhatsAppUserId,
            format!("AR.{}", 7_000_000_000u64 + seed),
        ),
        (IdentifierKind::Phone, format!("+54 9 11 5555-{:04}", seed)),
        (IdentifierKind::Phone, format!("+54 9 11 6666-{:04}", seed)),
    ]
    .into_iter()
    .map(|(kind, raw)| LinkedIdentifier::new(&secret(), Identifier::parse(kind, &raw).expect("valid")))
    .collect();
    let at = Timestamp::from_unix_seconds(START);
    stores
        .conversations
        .upsert_contact(&ContactUpsert {
            tenant: tenant_id(),
            contact: contact.clone(),
            profile_name: None,
            identifiers: identifiers.clone(),
            seen_at: at,
            expires_at: shared::retention::RetentionMonths::MAX.expiry_for(at),
        })
        .await
        .expect("upsert");
    let all_keys: Vec<SubjectKey> = identifiers.into_iter().map(|l| l.subject_key).collect();
    Person {
        contact,
        carried: all_keys[..2].to_vec(),
        all_keys,
    }
}

/// Distinct Meta times, some of them far in the future (a wrong clock), each ordered at its
/// receipt as the processor clamps it; distinct order times too, so "newest" is unambiguous.
fn commands(rng: &mut fastrand::Rng, p: &Person) -> Vec<OptOutCommand> {
    let mut offsets: Vec<i64> = (1..=COMMANDS as i64).map(|i| i * 600).collect();
    rng.shuffle(&mut offsets);
    offsets
        .into_iter()
        .enumerate()
        .map(|(i, offset)| {
            let received = Timestamp::from_unix_seconds(START + offset);
            let event_at = if rng.u8(0..5) == 0 {
                Timestamp::parse_rfc3339("2099-01-01T00:00:00Z")
                    .expect("valid")
                    .plus(time::Duration::seconds(i as i64))
            } else {
                received.plus(time::Duration::seconds(-30))
            };
            let scope = if rng.u8(0..4) == 0 {
                OptOutScope::Marketing
            } else {
                OptOutScope::All
            };
            OptOutCommand {
                tenant: tenant_id(),
                contact: p.contact.clone(),
                subject_keys: p.carried.clone(),
                action: if rng.bool() {
                    CommandAction::OptOut
                } else {
                    CommandAction::OptIn
                },
                scope,
                source: match scope {
                    OptOutScope::All => OptOutSource::Keyword,
                    OptOutScope::Marketing => OptOutSource::UserPreferences,
                },
                event_at,
                order_at: event_at.clamped_to_receipt(received),
                only_while_opted_out: false,
                language: None,
            }
        })
        .collect()
}

async fn drain(q: &EmbeddedQueue) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(10, Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            out.push(m.body);
        }
    }
}

async fn history(store: &dyn OptOutStore, key: &SubjectKey) -> Vec<OptOutRecord> {
    let mut out = Vec::new();
    let mut req = PageRequest::first(100);
    loop {
        let page = store.history(&tenant_id(), key, &req).await.expect("history");
        out.extend(page.items);
        match page.next {
            Some(c) => req = PageRequest::after(100, c),
            None => return out,
        }
    }
}

type Order = (Timestamp, Timestamp, OptState);

fn newest(records: impl IntoIterator<Item = Order>) -> Option<Order> {
    records.into_iter().fold(None, |best, r| match best {
        Some(b) if !shared::domain::supersedes(r, b) => Some(b),
        _ => Some(r),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_instances_give_consequences_to_winners_only() {
    let backend = Backend::new().await;
    let setup = backend.stores().await;
    setup
        .tenants
        .register(&Tenant {
            id: tenant_id(),
            name: "C".to_owned(),
            accounts: vec![ChannelAccount::new(Channel::WhatsApp, "106540352242999").expect("valid")],
            retention_months: shared::retention::RetentionMonths::MAX,
            locale: Locale::Spanish,
            jurisdiction: Jurisdiction::Ar,
            optout_keywords: Vec::new(),
            optout_button_ids: Vec::new(),
            retention_lowered_at: None,
            offboarding: None,
            access_token_secret: None,
            created_at: Timestamp::from_unix_seconds(START),
        })
        .await
        .expect("register");
    let clock: SharedClock = Arc::new(backend.clock.clone());

    for seed in 0..SEEDS {
        let mut rng = fastrand::Rng::with_seed(0xC0_C0 + seed);
        let p = person(&setup, seed).await;
        let cmds = commands(&mut rng, &p);
        let propagation = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let outbound = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let mut shuffled = cmds.clone();
        rng.shuffle(&mut shuffled);
        let mut tasks = Vec::new();
        for instance in 0..INSTANCES {
            let handler = OptOutHandler::new(
                backend.stores().await,
                propagation.clone(),
                outbound.clone(),
                clock.clone(),
            );
            let mine: Vec<OptOutCommand> = shuffled.iter().skip(instance).step_by(INSTANCES).cloned().collect();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for cmd in mine {
                    let mut deliveries = 0;
                    let outcome = loop {
                        deliveries += 1;
                        match handler.apply(&cmd).await {
                            Ok(o) => break o,
                            // What SQS does with a failed command: deliver it again.
                            Err(e) if deliveries < MAX_DELIVERIES => eprintln!("seed {seed}: redelivered after {e}"),
                            Err(e) => panic!("seed {seed}: {e} after {deliveries} deliveries"),
                        }
                    };
                    outcomes.push((cmd, outcome, deliveries));
                }
                outcomes
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.extend(t.await.expect("instance task"));
        }
        let redelivered = outcomes.iter().any(|(_, _, d)| *d > 1);

        let events: Vec<PropagationEvent> = drain(&propagation)
            .await
            .iter()
            .map(|b| serde_json::from_str(b).expect("event"))
            .collect();
        let replies: Vec<OutboundReply> = drain(&outbound)
            .await
            .iter()
            .map(|b| serde_json::from_str(b).expect("reply"))
            .collect();
        let trace = cmds
            .iter()
            .map(|c| format!("{:?}/{:?}@{}", c.action, c.scope, c.order_at.unix_seconds() - START))
            .collect::<Vec<_>>();
        let ctx = format!("seed {seed}: {trace:?}");

        for scope in [OptOutScope::All, OptOutScope::Marketing] {
            let expected = newest(
                cmds.iter()
                    .filter(|c| c.scope == scope)
                    .filter_map(|c| c.state().map(|s| (c.order_at, c.event_at, s))),
            );
            // Every identifier ends in the newest event by order.
            for key in &p.all_keys {
                let stored = setup
                    .opt_outs
                    .get(&tenant_id(), key, scope)
                    .await
                    .expect("get")
                    .map(|r| (r.order_at, r.event_at, r.state));
                assert_eq!(stored, expected, "{ctx}: final state, {scope:?}, key {key}");
            }

            // The primary key's history is every change that won its conditional write, once.
            let primary: Vec<OptOutRecord> = history(setup.opt_outs.as_ref(), &p.carried[0])
                .await
                .into_iter()
                .filter(|r| r.scope == scope)
                .collect();
            for (i, r) in primary.iter().enumerate() {
                assert!(
                    cmds.iter()
                        .any(|c| c.scope == scope && c.event_at == r.event_at && c.order_at == r.order_at),
                    "{ctx}: history entry {r:?} is one of the commands"
                );
                assert!(
                    !primary[..i].iter().any(|o| o.same_event(r)),
                    "{ctx}: {r:?} is in history once"
                );
            }
            let mut won = primary.clone();
            won.sort_by_key(|r| (r.order_at, r.event_at));
            assert_eq!(
                won.last().map(|r| (r.order_at, r.event_at, r.state)),
                expected,
                "{ctx}: the newest is in history"
            );
            // Winners arrive in increasing order: the state they replaced is the one before them,
            // and the real changes among them are exactly what was announced.
            let mut state = None;
            let mut changes = Vec::new();
            for r in &won {
                assert_eq!(r.previous, state, "{ctx}: {r:?} recorded the state it replaced");
                if state.unwrap_or(OptState::OptedIn) != r.state {
                    changes.push((r.order_at, r.state));
                }
                state = Some(r.state);
            }
            for key in &p.all_keys[1..] {
                let copies = history(setup.opt_outs.as_ref(), key).await;
                for (i, c) in copies.iter().enumerate() {
                    assert!(
                        !copies[..i].iter().any(|o| o.same_event(c)),
                        "{ctx}: copy {c:?} once under key {key}"
                    );
                    assert!(
                        c.scope != scope || won.iter().any(|w| w.same_event(c) && w.order_at == c.order_at),
                        "{ctx}: a copy under key {key} is a change that won the primary key: {c:?}"
                    );
                }
            }

            let mut announced: Vec<&PropagationEvent> = events.iter().filter(|e| e.scope == scope).collect();
            announced.sort_by_key(|e| e.at);
            for e in &announced {
                assert_eq!(e.subject_keys, p.all_keys, "{ctx}: announced under every identifier");
            }
            // (b) no change announced twice.
            for (i, e) in announced.iter().enumerate() {
                assert!(
                    !announced[..i].iter().any(|o| o.at == e.at && o.event == e.event),
                    "{ctx}: {e:?} announced twice"
                );
            }
            if !redelivered {
                assert_eq!(
                    announced.iter().map(|e| (e.at, e.event)).collect::<Vec<_>>(),
                    changes,
                    "{ctx}: {scope:?} announcements are exactly the winners' real changes"
                );
            }
            // (a) the last announcement is the final state (unless the person never left the
            // default, opted in, and nothing was to be said); a later repeat of that state is
            // no change, so it is the newest change, not necessarily the newest event.
            match (announced.last(), expected) {
                (Some(last), Some((at, _, s))) => {
                    assert_eq!(last.event, s, "{ctx}: last announced");
                    assert!(last.at <= at, "{ctx}: nothing announced after the final event");
                }
                (None, Some((_, _, s))) => assert_eq!(s, OptState::OptedIn, "{ctx}: nothing announced"),
                (Some(last), None) => panic!("{ctx}: announced {last:?} with no command"),
                (None, None) => {}
            }
            // Announcements alternate: each says something new.
            for w in announced.windows(2) {
                assert_ne!(
                    w[0].event, w[1].event,
                    "{ctx}: consecutive {scope:?} announcements alternate"
                );
            }
        }

        // (c) one confirmation per announced change of scope All, of its kind.
        let mut all: Vec<&PropagationEvent> = events.iter().filter(|e| e.scope == OptOutScope::All).collect();
        all.sort_by_key(|e| e.at);
        assert_eq!(replies.len(), all.len(), "{ctx}: confirmations");
        let kinds = |state| match state {
            OptState::OptedOut => ReplyKind::OptOutConfirmation,
            OptState::OptedIn => ReplyKind::OptInConfirmation,
        };
        for state in [OptState::OptedOut, OptState::OptedIn] {
            assert_eq!(
                replies.iter().filter(|r| r.kind == kinds(state)).count(),
                all.iter().filter(|e| e.event == state).count(),
                "{ctx}: {state:?} confirmations"
            );
        }
        let changed = outcomes.iter().filter(|(_, o, _)| *o == Outcome::Changed).count();
        if !redelivered {
            assert_eq!(
                changed,
                events.len(),
                "{ctx}: one announcement per command that changed the state"
            );
        }
        let stale = outcomes.iter().filter(|(_, o, _)| *o == Outcome::Stale).count();
        println!(
            "seed {seed}: {} commands, {changed} changed, {stale} stale, {} announced, redelivered: {redelivered}",
            cmds.len(),
            events.len()
        );
    }
}
