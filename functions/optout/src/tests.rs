use super::*;
use shared::clock::SettableClock;
use shared::deadline::Jurisdiction;
use shared::domain::{
    Channel, ChannelAccount, ContactId, ContactUpsert, LinkedIdentifier, Locale, OptOutSource, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::optout::command::CommandAction;
use shared::optout::contactability::{self, Purpose};
use shared::queue::embedded::EmbeddedQueue;
use shared::timestamp::Timestamp;
use std::time::Duration;

struct Fixture {
    handler: OptOutHandler,
    stores: Stores,
    propagation: Arc<EmbeddedQueue>,
    outbound: Arc<EmbeddedQueue>,
    tenant: TenantId,
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"optout-test-secret-optout-test-secret".to_vec()).expect("long enough")
}

fn key(kind: IdentifierKind, raw: &str) -> SubjectKey {
    secret().subject_key(&Identifier::parse(kind, raw).expect("valid"))
}

fn contact() -> ContactId {
    ContactId::new(Channel::WhatsApp, "AR.555").expect("valid")
}

async fn fixture() -> Fixture {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let stores = shared::store::embedded::stores(clock.clone());
    let tenant = shared::domain::Tenant {
        id: TenantId::new("shop").expect("valid"),
        name: "Tienda".to_owned(),
        accounts: vec![ChannelAccount::new(Channel::WhatsApp, "1").expect("valid")],
        retention_months: shared::retention::RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        created_at: Timestamp::from_unix_seconds(0),
    };
    stores.tenants.register(&tenant).await.expect("register");
    let propagation = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let outbound = Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
    let handler = OptOutHandler::new(stores.clone(), propagation.clone(), outbound.clone(), clock);
    Fixture {
        handler,
        stores,
        propagation,
        outbound,
        tenant: tenant.id,
    }
}

fn command(action: CommandAction, scope: OptOutScope, secs: i64) -> OptOutCommand {
    OptOutCommand {
        tenant: TenantId::new("shop").expect("valid"),
        contact: contact(),
        subject_keys: vec![key(IdentifierKind::WhatsAppUserId, "AR.555")],
        action,
        scope,
        source: if scope == OptOutScope::All {
            OptOutSource::Keyword
        } else {
            OptOutSource::UserPreferences
        },
        event_at: Timestamp::from_unix_seconds(1_800_000_000 + secs),
        only_while_opted_out: false,
        language: None,
    }
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

#[tokio::test]
async fn stop_covers_every_linked_identifier_and_confirms_once() {
    let f = fixture().await;
    // The contact is known by its user id and its phone.
    let links = ["AR.555", "+54 9 11 2345-6789"]
        .iter()
        .zip([IdentifierKind::WhatsAppUserId, IdentifierKind::Phone])
        .map(|(raw, kind)| LinkedIdentifier::new(&secret(), Identifier::parse(kind, raw).expect("valid")))
        .collect();
    let at = Timestamp::from_unix_seconds(1_800_000_000);
    let upsert = ContactUpsert {
        tenant: f.tenant.clone(),
        contact: contact(),
        profile_name: None,
        identifiers: links,
        seen_at: at,
        expires_at: shared::retention::RetentionMonths::MAX.expiry_for(at),
    };
    f.stores.conversations.upsert_contact(&upsert).await.expect("upsert");

    let stop = command(CommandAction::OptOut, OptOutScope::All, 10);
    assert_eq!(f.handler.apply(&stop).await.expect("apply"), Outcome::Changed);
    assert_eq!(
        f.handler.apply(&stop).await.expect("replay"),
        Outcome::Stale,
        "a replay changes nothing"
    );
    for (channel, form) in [
        (Channel::WhatsApp, "011 15 2345-6789"),
        (Channel::WhatsApp, "5491123456789"),
        (Channel::WhatsApp, "AR.555"),
    ] {
        let c = contactability::check(
            f.stores.opt_outs.as_ref(),
            f.stores.conversations.as_ref(),
            &secret(),
            &f.tenant,
            channel,
            form,
            Purpose::Service,
        )
        .await
        .expect("check");
        assert!(!c.contactable, "{form:?} must be blocked");
        assert_eq!(
            (c.scope, c.source),
            (Some(OptOutScope::All), Some(OptOutSource::Keyword))
        );
    }
    let replies = drain(&f.outbound).await;
    assert_eq!(replies.len(), 1, "one confirmation");
    let reply: OutboundReply = serde_json::from_str(&replies[0]).expect("reply");
    assert_eq!(
        (reply.kind, reply.language),
        (ReplyKind::OptOutConfirmation, Locale::Spanish)
    );
    assert!(reply.text.contains("Tienda") && reply.text.contains("ALTA"));
    let events = drain(&f.propagation).await;
    assert_eq!(events.len(), 1);
    let event: PropagationEvent = serde_json::from_str(&events[0]).expect("event");
    assert_eq!((event.event, event.subject_keys.len()), (OptState::OptedOut, 2));
    assert!(
        !events[0].contains("2345") && !events[0].contains("AR.555"),
        "no plaintext identifier is published"
    );

    // A number linked after the STOP (the person changed number) is opted out too.
    let new_number = LinkedIdentifier::new(
        &secret(),
        Identifier::parse(IdentifierKind::Phone, "+54 9 11 3456-7890").expect("valid"),
    );
    let later = ContactUpsert {
        identifiers: vec![new_number],
        seen_at: at.plus(time::Duration::seconds(15)),
        ..upsert
    };
    f.stores.conversations.upsert_contact(&later).await.expect("upsert");
    let c = contactability::check(
        f.stores.opt_outs.as_ref(),
        f.stores.conversations.as_ref(),
        &secret(),
        &f.tenant,
        Channel::WhatsApp,
        "5491134567890",
        Purpose::Service,
    )
    .await
    .expect("check");
    assert!(!c.contactable, "a number linked after the STOP");

    let start = command(CommandAction::OptIn, OptOutScope::All, 20);
    assert_eq!(f.handler.apply(&start).await.expect("apply"), Outcome::Changed);
    let c = contactability::check(
        f.stores.opt_outs.as_ref(),
        f.stores.conversations.as_ref(),
        &secret(),
        &f.tenant,
        Channel::WhatsApp,
        "+5491123456789",
        Purpose::Service,
    )
    .await
    .expect("check");
    assert!(c.contactable);
    assert_eq!(drain(&f.outbound).await.len(), 1);
}

#[tokio::test]
async fn yes_opts_in_only_while_opted_out() {
    let f = fixture().await;
    let mut yes = command(CommandAction::OptIn, OptOutScope::All, 5);
    yes.only_while_opted_out = true;
    assert_eq!(
        f.handler.apply(&yes).await.expect("apply"),
        Outcome::Ignored,
        "an ordinary yes"
    );
    f.handler
        .apply(&command(CommandAction::OptOut, OptOutScope::All, 10))
        .await
        .expect("stop");
    yes.event_at = Timestamp::from_unix_seconds(1_800_000_020);
    assert_eq!(f.handler.apply(&yes).await.expect("apply"), Outcome::Changed);
}

#[tokio::test]
async fn a_marketing_preference_blocks_marketing_only_and_sends_no_reply() {
    let f = fixture().await;
    assert_eq!(
        f.handler
            .apply(&command(CommandAction::OptOut, OptOutScope::Marketing, 1))
            .await
            .expect("apply"),
        Outcome::Changed
    );
    let k = key(IdentifierKind::WhatsAppUserId, "AR.555");
    let service = contactability::check_key(
        f.stores.opt_outs.as_ref(),
        f.stores.conversations.as_ref(),
        &f.tenant,
        &k,
        Purpose::Service,
    )
    .await
    .expect("check");
    let marketing = contactability::check_key(
        f.stores.opt_outs.as_ref(),
        f.stores.conversations.as_ref(),
        &f.tenant,
        &k,
        Purpose::Marketing,
    )
    .await
    .expect("check");
    assert!(service.contactable && !marketing.contactable);
    assert_eq!(marketing.scope, Some(OptOutScope::Marketing));
    assert!(drain(&f.outbound).await.is_empty());
    assert_eq!(drain(&f.propagation).await.len(), 1);
}

#[tokio::test]
async fn help_gets_a_help_reply_in_the_keywords_language() {
    let f = fixture().await;
    let mut help = command(CommandAction::Help, OptOutScope::All, 1);
    help.language = Some(Locale::Portuguese);
    assert_eq!(f.handler.apply(&help).await.expect("apply"), Outcome::Helped);
    let reply: OutboundReply = serde_json::from_str(&drain(&f.outbound).await[0]).expect("reply");
    assert_eq!((reply.kind, reply.language), (ReplyKind::Help, Locale::Portuguese));
}

#[tokio::test]
async fn a_crash_before_confirming_is_finished_by_the_redelivery() {
    let f = fixture().await;
    let stop = command(CommandAction::OptOut, OptOutScope::All, 10);
    // The state was written, then the function died before its confirmation went out.
    let record = OptOutRecord {
        tenant: f.tenant.clone(),
        subject_key: stop.subject_keys[0].clone(),
        scope: OptOutScope::All,
        state: OptState::OptedOut,
        source: OptOutSource::Keyword,
        event_at: stop.event_at,
        previous: None,
        confirmed: false,
    };
    f.stores.opt_outs.apply(&record).await.expect("apply");
    assert_eq!(f.handler.apply(&stop).await.expect("redelivery"), Outcome::Changed);
    assert_eq!(drain(&f.outbound).await.len(), 1);
    assert_eq!(f.handler.apply(&stop).await.expect("replay"), Outcome::Stale);
    assert!(drain(&f.outbound).await.is_empty());
}

/// 10,000 random arrival orders (with replays) of STOP, START and marketing-preference events:
/// each ends in the state of its newest event per scope, with exactly one confirmation per real
/// state change and no more.
#[tokio::test]
async fn any_arrival_order_ends_in_the_newest_state_with_one_confirmation_per_change() {
    let mut rng = fastrand::Rng::with_seed(0x50C10);
    for ordering in 0..10_000 {
        let f = fixture().await;
        let n = rng.usize(1..=6);
        let events: Vec<OptOutCommand> = (0..n)
            .map(|i| {
                let action = if rng.bool() {
                    CommandAction::OptOut
                } else {
                    CommandAction::OptIn
                };
                let scope = if rng.u8(0..4) == 0 {
                    OptOutScope::Marketing
                } else {
                    OptOutScope::All
                };
                // Few distinct seconds, so STOP and START often share one.
                let _ = i;
                command(action, scope, rng.i64(0..4) * 10)
            })
            .collect();
        let mut arrivals: Vec<&OptOutCommand> = events.iter().collect();
        for _ in 0..rng.usize(0..3) {
            arrivals.push(&events[rng.usize(0..n)]);
        }
        rng.shuffle(&mut arrivals);

        // The model: per scope, newest event wins; a change is a state different from the last.
        let mut model: std::collections::HashMap<OptOutScope, (Timestamp, OptState)> = Default::default();
        let (mut confirmations, mut changes) = (0, 0);
        for cmd in &arrivals {
            let state = cmd.state().expect("stateful");
            let current = model.get(&cmd.scope).copied();
            if current.is_none_or(|cur| shared::domain::supersedes((cmd.event_at, state), cur)) {
                if current.map_or(OptState::OptedIn, |(_, s)| s) != state {
                    changes += 1;
                    if cmd.scope == OptOutScope::All {
                        confirmations += 1;
                    }
                }
                model.insert(cmd.scope, (cmd.event_at, state));
            }
            f.handler.apply(cmd).await.expect("apply");
        }
        for scope in [OptOutScope::All, OptOutScope::Marketing] {
            let newest = events
                .iter()
                .filter(|e| e.scope == scope)
                .filter_map(|e| e.state().map(|s| (e.event_at, s)))
                .fold(None, |best, e| match best {
                    Some(b) if !shared::domain::supersedes(e, b) => Some(b),
                    _ => Some(e),
                })
                .map(|(_, s)| s);
            let stored = f
                .stores
                .opt_outs
                .get(&f.tenant, &events[0].subject_keys[0], scope)
                .await
                .expect("get")
                .map(|r| r.state);
            let trace: Vec<String> = arrivals
                .iter()
                .map(|c| {
                    format!(
                        "{:?}/{:?}@{}",
                        c.action,
                        c.scope,
                        c.event_at.unix_seconds() - 1_800_000_000
                    )
                })
                .collect();
            assert_eq!(stored, newest, "ordering {ordering}, scope {scope:?}: {trace:?}");
        }
        assert_eq!(
            drain(&f.outbound).await.len(),
            confirmations,
            "ordering {ordering}: confirmations"
        );
        assert_eq!(
            drain(&f.propagation).await.len(),
            changes,
            "ordering {ordering}: propagated changes"
        );
    }
}
