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
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
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
        order_at: Timestamp::from_unix_seconds(1_800_000_000 + secs),
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
    yes.order_at = yes.event_at;
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
        order_at: stop.order_at,
        previous: None,
        confirmed: false,
    };
    f.stores.opt_outs.apply(&record, Expect::Any).await.expect("apply");
    assert_eq!(f.handler.apply(&stop).await.expect("redelivery"), Outcome::Changed);
    assert_eq!(drain(&f.outbound).await.len(), 1);
    assert_eq!(f.handler.apply(&stop).await.expect("replay"), Outcome::Stale);
    assert!(drain(&f.outbound).await.is_empty());
}

/// 10,000 random arrival orders (with replays) of STOP, START and marketing-preference events,
/// some dated far in the future (ordered at their receipt, so a retried delivery of one orders
/// later): each ends in the state of its newest event per scope, with exactly one confirmation
/// per real state change and no more.
#[tokio::test]
async fn any_arrival_order_ends_in_the_newest_state_with_one_confirmation_per_change() {
    let mut rng = fastrand::Rng::with_seed(0x50C10);
    let far = Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").expect("valid");
    for ordering in 0..10_000 {
        let f = fixture().await;
        let n = rng.usize(1..=6);
        let events: Vec<OptOutCommand> = (0..n)
            .map(|_| {
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
                let mut cmd = command(action, scope, rng.i64(0..4) * 10);
                if rng.u8(0..4) == 0 {
                    // A wrong clock: ordered at its receipt, which may tie with other events.
                    cmd.event_at = far.plus(time::Duration::seconds(rng.i64(0..3)));
                    cmd.order_at = Timestamp::from_unix_seconds(1_800_000_000 + rng.i64(0..4) * 10);
                }
                cmd
            })
            .collect();
        let mut arrivals: Vec<OptOutCommand> = events.clone();
        for _ in 0..rng.usize(0..3) {
            let mut replay = events[rng.usize(0..n)].clone();
            if replay.event_at >= far {
                // Meta retried the POST: received, and so ordered, later.
                replay.order_at = replay.order_at.plus(time::Duration::seconds(rng.i64(0..3) * 10));
            }
            arrivals.push(replay);
        }
        rng.shuffle(&mut arrivals);

        // The model: per scope, the newest applied event wins; an event already applied (same
        // scope, state and Meta time) is a replay whatever its order time; a change is a state
        // different from the last.
        type Order = (Timestamp, Timestamp, OptState);
        let mut model: std::collections::HashMap<OptOutScope, Order> = Default::default();
        let mut applied = std::collections::HashSet::new();
        let (mut confirmations, mut changes) = (0, 0);
        for cmd in &arrivals {
            let state = cmd.state().expect("stateful");
            let current = model.get(&cmd.scope).copied();
            let order = (cmd.order_at, cmd.event_at, state);
            if !applied.contains(&(cmd.scope, cmd.event_at, state))
                && current.is_none_or(|cur| shared::domain::supersedes(order, cur))
            {
                if current.map_or(OptState::OptedIn, |(_, _, s)| s) != state {
                    changes += 1;
                    if cmd.scope == OptOutScope::All {
                        confirmations += 1;
                    }
                }
                model.insert(cmd.scope, order);
                applied.insert((cmd.scope, cmd.event_at, state));
            }
            f.handler.apply(cmd).await.expect("apply");
        }
        let trace: Vec<String> = arrivals
            .iter()
            .map(|c| {
                format!(
                    "{:?}/{:?}@{}/{}",
                    c.action,
                    c.scope,
                    c.event_at.unix_seconds() - 1_800_000_000,
                    c.order_at.unix_seconds() - 1_800_000_000
                )
            })
            .collect();
        // With every delivery of an event ordered alike, "newest" needs no model.
        let alike = arrivals.iter().all(|a| {
            arrivals
                .iter()
                .all(|b| a.event_at != b.event_at || a.order_at == b.order_at)
        });
        for scope in [OptOutScope::All, OptOutScope::Marketing] {
            let stored = f
                .stores
                .opt_outs
                .get(&f.tenant, &events[0].subject_keys[0], scope)
                .await
                .expect("get")
                .map(|r| (r.order_at, r.event_at, r.state));
            assert_eq!(
                stored,
                model.get(&scope).copied(),
                "ordering {ordering}, scope {scope:?}: {trace:?}"
            );
            if alike {
                let newest = events
                    .iter()
                    .filter(|e| e.scope == scope)
                    .filter_map(|e| e.state().map(|s| (e.order_at, e.event_at, s)))
                    .fold(None, |best, e| match best {
                        Some(b) if !shared::domain::supersedes(e, b) => Some(b),
                        _ => Some(e),
                    });
                assert_eq!(stored, newest, "ordering {ordering}, scope {scope:?}: {trace:?}");
            }
        }
        assert_eq!(
            drain(&f.outbound).await.len(),
            confirmations,
            "ordering {ordering}: confirmations: {trace:?}"
        );
        assert_eq!(
            drain(&f.propagation).await.len(),
            changes,
            "ordering {ordering}: propagated changes: {trace:?}"
        );
    }
}

/// A STOP and a START both dated ahead of our clock and received at one instant are clamped to
/// one order time: Meta's own times still tell which came last.
#[tokio::test]
async fn events_clamped_to_one_order_time_keep_metas_order() {
    let f = fixture().await;
    let receipt = Timestamp::from_unix_seconds(1_800_000_000);
    let clamped = |action, secs| {
        let mut cmd = command(action, OptOutScope::All, secs);
        cmd.order_at = cmd.event_at.clamped_to_receipt(receipt);
        cmd
    };
    let (stop, start) = (
        clamped(CommandAction::OptOut, 1000),
        clamped(CommandAction::OptIn, 2000),
    );
    assert_eq!(stop.order_at, start.order_at, "both clamped to the receipt");
    assert_eq!(f.handler.apply(&stop).await.expect("stop"), Outcome::Changed);
    assert_eq!(f.handler.apply(&start).await.expect("start"), Outcome::Changed);
    assert_eq!(state_of(&f).await.map(|r| r.state), Some(OptState::OptedIn));
    assert_eq!(f.handler.apply(&stop).await.expect("replay"), Outcome::Stale);
    assert_eq!(state_of(&f).await.map(|r| r.state), Some(OptState::OptedIn));
}

/// An opt-out store where another instance writes `meanwhile` between this instance's read and
/// its first write: the race two concurrent invocations for one person run.
#[derive(Debug)]
struct Racing {
    inner: Arc<dyn OptOutStore>,
    meanwhile: std::sync::Mutex<Option<OptOutRecord>>,
}

#[async_trait::async_trait]
impl OptOutStore for Racing {
    async fn apply(&self, record: &OptOutRecord, expect: Expect) -> Result<ApplyOutcome, StoreError> {
        let other = self.meanwhile.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(other) = other {
            assert_eq!(self.inner.apply(&other, Expect::Any).await?, ApplyOutcome::Applied);
        }
        self.inner.apply(record, expect).await
    }

    async fn get(&self, t: &TenantId, k: &SubjectKey, s: OptOutScope) -> Result<Option<OptOutRecord>, StoreError> {
        self.inner.get(t, k, s).await
    }

    async fn mark_confirmed(
        &self,
        t: &TenantId,
        k: &SubjectKey,
        s: OptOutScope,
        event_at: Timestamp,
        state: OptState,
    ) -> Result<(), StoreError> {
        self.inner.mark_confirmed(t, k, s, event_at, state).await
    }

    async fn history(
        &self,
        t: &TenantId,
        k: &SubjectKey,
        page: &shared::store::PageRequest,
    ) -> Result<shared::store::Page<OptOutRecord>, StoreError> {
        self.inner.history(t, k, page).await
    }
}

impl Fixture {
    /// A second handler over the same data whose next write races with `meanwhile`.
    fn racing(&self, meanwhile: OptOutRecord) -> OptOutHandler {
        let racing = Racing {
            inner: self.stores.opt_outs.clone(),
            meanwhile: std::sync::Mutex::new(Some(meanwhile)),
        };
        let stores = Stores {
            opt_outs: Arc::new(racing),
            ..self.stores.clone()
        };
        let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
        OptOutHandler::new(stores, self.propagation.clone(), self.outbound.clone(), clock)
    }
}

/// The record another instance applies for `cmd` (whose consequences it sends itself).
fn applied_elsewhere(cmd: &OptOutCommand, previous: Option<OptState>) -> OptOutRecord {
    OptOutRecord {
        tenant: cmd.tenant.clone(),
        subject_key: cmd.subject_keys[0].clone(),
        scope: cmd.scope,
        state: cmd.state().expect("stateful"),
        source: cmd.source,
        event_at: cmd.event_at,
        order_at: cmd.order_at,
        previous,
        confirmed: false,
    }
}

async fn state_of(f: &Fixture) -> Option<OptOutRecord> {
    f.stores
        .opt_outs
        .get(
            &f.tenant,
            &key(IdentifierKind::WhatsAppUserId, "AR.555"),
            OptOutScope::All,
        )
        .await
        .expect("get")
}

#[tokio::test]
async fn a_start_that_loses_to_a_concurrent_stop_publishes_and_confirms_nothing() {
    let f = fixture().await;
    let start = command(CommandAction::OptIn, OptOutScope::All, 20);
    // Between this instance's read (nothing stored) and its write, another applies a newer STOP.
    let stop = command(CommandAction::OptOut, OptOutScope::All, 30);
    let handler = f.racing(applied_elsewhere(&stop, None));
    assert_eq!(handler.apply(&start).await.expect("apply"), Outcome::Stale);
    assert!(
        drain(&f.propagation).await.is_empty(),
        "no opted_in for a refused START"
    );
    assert!(drain(&f.outbound).await.is_empty(), "no opt-in confirmation");
    let state = state_of(&f).await.expect("stored");
    assert_eq!((state.state, state.event_at), (OptState::OptedOut, stop.event_at));
    let history = f
        .stores
        .opt_outs
        .history(
            &f.tenant,
            &start.subject_keys[0],
            &shared::store::PageRequest::first(10),
        )
        .await
        .expect("history");
    assert_eq!(history.items.len(), 1, "only the STOP is in history");
}

#[tokio::test]
async fn a_change_applied_meanwhile_is_the_previous_state_of_the_next() {
    let f = fixture().await;
    f.handler
        .apply(&command(CommandAction::OptOut, OptOutScope::All, 10))
        .await
        .expect("stop");
    drain(&f.propagation).await;
    drain(&f.outbound).await;
    // This instance reads "opted out"; before it writes its START, another applies an older START
    // (and announces it itself). This one is then no change: nothing published twice.
    let start20 = command(CommandAction::OptIn, OptOutScope::All, 20);
    let start30 = command(CommandAction::OptIn, OptOutScope::All, 30);
    let handler = f.racing(applied_elsewhere(&start20, Some(OptState::OptedOut)));
    assert_eq!(handler.apply(&start30).await.expect("apply"), Outcome::Unchanged);
    assert!(drain(&f.propagation).await.is_empty());
    assert!(drain(&f.outbound).await.is_empty());
    let state = state_of(&f).await.expect("stored");
    assert_eq!(
        (state.state, state.event_at, state.previous),
        (OptState::OptedIn, start30.event_at, Some(OptState::OptedIn)),
        "the newest wins, with the previous state it really replaced"
    );
}

/// A STOP whose payload says 2099, ordered at its receipt (plus the skew) as the processor
/// clamps it, then a START an hour later.
fn stop_dated_2099() -> OptOutCommand {
    let mut stop = command(CommandAction::OptOut, OptOutScope::All, 0);
    stop.event_at = Timestamp::parse_rfc3339("2099-06-01T00:00:00Z").expect("valid");
    stop.order_at = stop
        .event_at
        .clamped_to_receipt(Timestamp::from_unix_seconds(1_800_000_000));
    stop
}

#[tokio::test]
async fn a_stop_dated_2099_does_not_freeze_the_state_and_its_replay_sends_nothing() {
    let f = fixture().await;
    let stop = stop_dated_2099();
    assert_eq!(
        stop.order_at,
        Timestamp::from_unix_seconds(1_800_000_000).plus(shared::timestamp::MAX_FUTURE_SKEW)
    );
    assert_eq!(f.handler.apply(&stop).await.expect("stop"), Outcome::Changed);
    assert_eq!(drain(&f.outbound).await.len(), 1);
    assert_eq!(drain(&f.propagation).await.len(), 1);

    let start = command(CommandAction::OptIn, OptOutScope::All, 3600);
    assert_eq!(f.handler.apply(&start).await.expect("start"), Outcome::Changed);
    let replies = drain(&f.outbound).await;
    assert_eq!(replies.len(), 1, "one confirmation");
    let reply: OutboundReply = serde_json::from_str(&replies[0]).expect("reply");
    assert_eq!(reply.kind, ReplyKind::OptInConfirmation);
    let events = drain(&f.propagation).await;
    let event: PropagationEvent = serde_json::from_str(&events[0]).expect("event");
    assert_eq!(
        (events.len(), event.event, event.at),
        (1, OptState::OptedIn, start.order_at)
    );

    // Meta retries the STOP's POST two hours later: received later, so ordered later.
    let mut replay = stop.clone();
    replay.order_at = Timestamp::from_unix_seconds(1_800_000_000 + 7200).plus(shared::timestamp::MAX_FUTURE_SKEW);
    assert_eq!(f.handler.apply(&replay).await.expect("replay"), Outcome::Stale);
    assert!(drain(&f.outbound).await.is_empty(), "a replay sends nothing");
    assert!(drain(&f.propagation).await.is_empty());
    let c = contactability::check_key(
        f.stores.opt_outs.as_ref(),
        f.stores.conversations.as_ref(),
        &f.tenant,
        &stop.subject_keys[0],
        Purpose::Service,
    )
    .await
    .expect("check");
    assert!(c.contactable, "still opted in");
    assert_eq!(c.since, Some(start.event_at));
}

#[tokio::test]
async fn a_crashed_delivery_finished_by_a_redelivery_received_later_confirms_under_the_same_dedup_key() {
    let normal = fixture().await;
    let stop = stop_dated_2099();
    normal.handler.apply(&stop).await.expect("stop");
    let first: OutboundReply = serde_json::from_str(&drain(&normal.outbound).await[0]).expect("reply");

    let f = fixture().await;
    // The state was written, then the function died before its consequences went out.
    f.stores
        .opt_outs
        .apply(&applied_elsewhere(&stop, None), Expect::Any)
        .await
        .expect("apply");
    let mut redelivery = stop.clone();
    redelivery.order_at = stop.order_at.plus(time::Duration::hours(2));
    assert_eq!(
        f.handler.apply(&redelivery).await.expect("redelivery"),
        Outcome::Changed
    );
    let owed: OutboundReply = serde_json::from_str(&drain(&f.outbound).await[0]).expect("reply");
    assert_eq!(
        owed.dedup_key, first.dedup_key,
        "keyed by Meta's time, not the order time"
    );
    let event: PropagationEvent = serde_json::from_str(&drain(&f.propagation).await[0]).expect("event");
    assert_eq!(
        event.at, stop.order_at,
        "announced at the order time it was applied with"
    );
    assert_eq!(f.handler.apply(&redelivery).await.expect("replay"), Outcome::Stale);
    assert!(drain(&f.outbound).await.is_empty() && drain(&f.propagation).await.is_empty());
}
