//! Fault injection: every store and queue call the processor and the opt-out function make is
//! counted, and the k-th one fails, for every k over a scenario, in two ways: before it happens
//! (the backend refused) and after (it happened, but the answer was lost, as with a timeout).
//! SQS redelivers what failed until the queues are quiet. Then nothing accepted is lost, nothing
//! is stored twice, the final opt-out state is the newest event's, history holds every change
//! that won, and every winning change had exactly one propagation event and one confirmation
//! (repeats of the same one may go out: the queues are at-least-once, and consumers drop them by
//! the propagation event's `event_id` and the reply's `dedup_key`).

use ::optout::{OptOutHandler, OptOutStores};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use processor::{Processor, ProcessorStores};
use shared::clock::{Clock, SettableClock, SharedClock};
use shared::deadline::Jurisdiction;
use shared::domain::optout::Expect;
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKey, SubjectKeySecret};
use shared::meta::envelope;
use shared::optout::command::{OutboundReply, PropagationEvent, ReplyKind};
use shared::optout::contactability::{self, Purpose};
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::{Queue, QueueError, ReceivedMessage};
use shared::store::*;
use shared::timestamp::{Expiry, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const ACCOUNT: &str = "106540352242922";
const T0: i64 = 1_800_000_000;
const VISIBILITY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The call fails without taking effect.
    Before,
    /// The call takes effect, then reports a failure.
    After,
}

/// Counts calls across every wrapped component; the `fail_at`-th one fails.
#[derive(Debug)]
struct Faults {
    calls: AtomicUsize,
    fail_at: usize,
    mode: Mode,
}

impl Faults {
    fn new(fail_at: usize, mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            fail_at,
            mode,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Runs `op`, failing it as planned when it is the chosen call.
    async fn call<T, E>(&self, op: impl Future<Output = Result<T, E>>, fail: impl FnOnce() -> E) -> Result<T, E> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.fail_at {
            return op.await;
        }
        match self.mode {
            Mode::Before => Err(fail()),
            Mode::After => {
                op.await?;
                Err(fail())
            }
        }
    }
}

fn store_down() -> StoreError {
    StoreError::Backend("injected fault".to_owned())
}

fn queue_down() -> QueueError {
    QueueError::Backend("injected fault".to_owned())
}

#[derive(Debug)]
struct Faulty<T: ?Sized> {
    inner: Arc<T>,
    faults: Arc<Faults>,
}

fn faulty<T: ?Sized>(inner: Arc<T>, faults: &Arc<Faults>) -> Arc<Faulty<T>> {
    Arc::new(Faulty {
        inner,
        faults: faults.clone(),
    })
}

#[async_trait]
impl ConversationStore for Faulty<dyn ConversationStore> {
    async fn get_contact(&self, t: &TenantId, c: &ContactId) -> Result<Option<Contact>, StoreError> {
        self.faults.call(self.inner.get_contact(t, c), store_down).await
    }
    async fn list_contacts(&self, t: &TenantId, p: &PageRequest) -> Result<Page<Contact>, StoreError> {
        self.faults.call(self.inner.list_contacts(t, p), store_down).await
    }
    async fn upsert_contact(&self, u: &ContactUpsert) -> Result<WriteOutcome, StoreError> {
        self.faults.call(self.inner.upsert_contact(u), store_down).await
    }
    async fn rectify_profile_name(
        &self,
        t: &TenantId,
        c: &ContactId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.faults
            .call(self.inner.rectify_profile_name(t, c, name, at), store_down)
            .await
    }
    async fn put_message(&self, m: &Message) -> Result<WriteOutcome, StoreError> {
        self.faults.call(self.inner.put_message(m), store_down).await
    }
    async fn list_messages(&self, t: &TenantId, c: &ContactId, p: &PageRequest) -> Result<Page<Message>, StoreError> {
        self.faults.call(self.inner.list_messages(t, c, p), store_down).await
    }
    async fn get_message(
        &self,
        t: &TenantId,
        c: &ContactId,
        at: Timestamp,
        id: &MetaMessageId,
    ) -> Result<Option<Message>, StoreError> {
        self.faults.call(self.inner.get_message(t, c, at, id), store_down).await
    }
    async fn delete_message(
        &self,
        t: &TenantId,
        c: &ContactId,
        id: &MetaMessageId,
        e: Expiry,
    ) -> Result<bool, StoreError> {
        self.faults
            .call(self.inner.delete_message(t, c, id, e), store_down)
            .await
    }
    async fn put_status(&self, s: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        self.faults.call(self.inner.put_status(s), store_down).await
    }
    async fn get_status(
        &self,
        t: &TenantId,
        c: &ContactId,
        id: &MetaMessageId,
    ) -> Result<Option<StatusUpdate>, StoreError> {
        self.faults.call(self.inner.get_status(t, c, id), store_down).await
    }
    async fn find_subject(&self, k: &SubjectKey) -> Result<Vec<ContactRef>, StoreError> {
        self.faults.call(self.inner.find_subject(k), store_down).await
    }
    async fn erase_contact_batch(
        &self,
        t: &TenantId,
        c: &ContactId,
        cursor: EraseCursor,
        max: usize,
    ) -> Result<EraseCursor, StoreError> {
        self.faults
            .call(self.inner.erase_contact_batch(t, c, cursor, max), store_down)
            .await
    }
    async fn list_statuses(
        &self,
        t: &TenantId,
        c: &ContactId,
        p: &PageRequest,
    ) -> Result<Page<StatusUpdate>, StoreError> {
        self.faults.call(self.inner.list_statuses(t, c, p), store_down).await
    }
    async fn erasure_reach(&self, k: &SubjectKey) -> Result<Vec<shared::domain::ReachedContact>, StoreError> {
        self.faults.call(self.inner.erasure_reach(k), store_down).await
    }
    async fn record_erasure(&self, k: &SubjectKey, at: Timestamp) -> Result<(), StoreError> {
        self.faults.call(self.inner.record_erasure(k, at), store_down).await
    }
    async fn erased_at(&self, k: &SubjectKey) -> Result<Option<Timestamp>, StoreError> {
        self.faults.call(self.inner.erased_at(k), store_down).await
    }
}

#[async_trait]
impl OptOutStore for Faulty<dyn OptOutStore> {
    async fn apply(&self, r: &OptOutRecord, e: Expect) -> Result<ApplyOutcome, StoreError> {
        self.faults.call(self.inner.apply(r, e), store_down).await
    }
    async fn get(&self, t: &TenantId, k: &SubjectKey, s: OptOutScope) -> Result<Option<OptOutRecord>, StoreError> {
        self.faults.call(self.inner.get(t, k, s), store_down).await
    }
    async fn mark_confirmed(
        &self,
        t: &TenantId,
        k: &SubjectKey,
        s: OptOutScope,
        at: Timestamp,
        state: OptState,
    ) -> Result<(), StoreError> {
        self.faults
            .call(self.inner.mark_confirmed(t, k, s, at, state), store_down)
            .await
    }
    async fn history(&self, t: &TenantId, k: &SubjectKey, p: &PageRequest) -> Result<Page<OptOutRecord>, StoreError> {
        self.faults.call(self.inner.history(t, k, p), store_down).await
    }
}

#[async_trait]
impl TenantStore for Faulty<dyn TenantStore> {
    async fn register(&self, t: &Tenant) -> Result<(), StoreError> {
        self.faults.call(self.inner.register(t), store_down).await
    }
    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.faults.call(self.inner.get(id), store_down).await
    }
    async fn resolve(&self, a: &ChannelAccount) -> Result<Option<TenantId>, StoreError> {
        self.faults.call(self.inner.resolve(a), store_down).await
    }
    async fn record_event(&self, e: &TenantEvent) -> Result<WriteOutcome, StoreError> {
        self.faults.call(self.inner.record_event(e), store_down).await
    }
    async fn list_events(&self, t: &TenantId, p: &PageRequest) -> Result<Page<TenantEvent>, StoreError> {
        self.faults.call(self.inner.list_events(t, p), store_down).await
    }
}

#[async_trait]
impl QuarantineStore for Faulty<dyn QuarantineStore> {
    async fn put(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        self.faults.call(self.inner.put(e), store_down).await
    }
    async fn get(
        &self,
        b: &QuarantineBucket,
        at: Timestamp,
        id: uuid::Uuid,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        self.faults.call(self.inner.get(b, at, id), store_down).await
    }
    async fn list(&self, b: &QuarantineBucket, p: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError> {
        self.faults.call(self.inner.list(b, p), store_down).await
    }
    async fn delete(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        self.faults.call(self.inner.delete(e), store_down).await
    }
    async fn find_subject(&self, k: &SubjectKey) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.faults.call(self.inner.find_subject(k), store_down).await
    }
}

#[async_trait]
impl Queue for Faulty<EmbeddedQueue> {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        self.faults.call(self.inner.send_batch(bodies), queue_down).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn pending(&self) -> Result<usize, QueueError> {
        self.inner.pending().await
    }
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"fault-injection-secret-fault-injection".to_vec()).expect("long enough")
}

fn key(kind: IdentifierKind, raw: &str) -> SubjectKey {
    secret().subject_key(&Identifier::parse(kind, raw).expect("valid"))
}

struct Person {
    phone: &'static str,
    user_id: &'static str,
}

const ANA: Person = Person {
    phone: "5491123456789",
    user_id: "AR.13491208655302741918",
};
const BOB: Person = Person {
    phone: "5491187654321",
    user_id: "AR.99887766554433221100",
};

fn text(p: &Person, id: &str, at: i64, body: &str) -> serde_json::Value {
    serde_json::json!({"from": p.phone, "from_user_id": p.user_id, "id": id, "timestamp": at.to_string(),
        "type": "text", "text": {"body": body}})
}

fn post(messages: serde_json::Value) -> String {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"metadata": {"phone_number_id": ACCOUNT}, "messages": messages}}]}]})
    .to_string()
}

/// Two POSTs: Ana greets and says STOP, Bob says BAJA; later Ana says START and writes again,
/// and a sentence that mentions "baja" goes to review.
fn scenario() -> Vec<String> {
    [
        post(serde_json::json!([
            text(&ANA, "wamid.A1", T0, "hola"),
            text(&ANA, "wamid.A2", T0 + 10, "STOP"),
            text(&BOB, "wamid.B1", T0 + 10, "BAJA"),
        ])),
        post(serde_json::json!([
            text(&ANA, "wamid.A3", T0 + 20, "START"),
            text(&ANA, "wamid.A4", T0 + 30, "no me den de baja, me encantan"),
        ])),
    ]
    .iter()
    .flat_map(|body| {
        envelope::split(body.as_bytes(), "req-faults", Timestamp::from_unix_seconds(T0 + 60))
            .expect("usable")
            .envelopes
    })
    .collect()
}

/// What one run left behind.
#[derive(Debug)]
struct Run {
    calls: usize,
    messages: BTreeMap<&'static str, Vec<String>>,
    contactable: BTreeMap<&'static str, bool>,
    /// Ana's and Bob's primary keys: every history entry (state, Meta time).
    history: BTreeMap<&'static str, Vec<(OptState, Timestamp)>>,
    propagation: Vec<PropagationEvent>,
    replies: Vec<OutboundReply>,
    reviews: usize,
}

fn queue(clock: &SharedClock) -> Arc<EmbeddedQueue> {
    Arc::new(EmbeddedQueue::new(clock.clone(), VISIBILITY))
}

/// Hands what is visible on `from` to `handle` as one SQS batch; deletes what it did not report.
async fn pump<F, Fut>(from: &EmbeddedQueue, handle: F) -> usize
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    let got = from.receive(10, Duration::ZERO).await.expect("receive");
    if got.is_empty() {
        return 0;
    }
    let mut event = SqsEvent::default();
    event.records = got
        .iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = Some(m.message_id.clone());
            r.body = Some(m.body.clone());
            r
        })
        .collect();
    let failed: BTreeSet<String> = handle(event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    for m in &got {
        if !failed.contains(&m.message_id) {
            from.delete(&m.receipt).await.expect("delete");
        }
    }
    got.len()
}

async fn drain<T: serde::de::DeserializeOwned>(q: &EmbeddedQueue) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        let got = q.receive(10, Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            return out;
        }
        for m in got {
            q.delete(&m.receipt).await.expect("delete");
            out.push(serde_json::from_str(&m.body).expect("decodes"));
        }
    }
}

async fn run(fail_at: usize, mode: Mode) -> Run {
    let clock = SettableClock::at(Timestamp::from_unix_seconds(T0 + 60));
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let stores = shared::store::embedded::stores(shared_clock.clone());
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![ChannelAccount::new(Channel::WhatsApp, ACCOUNT).expect("valid")],
        retention_months: shared::retention::RetentionMonths::new(24).expect("valid"),
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
    let faults = Faults::new(fail_at, mode);
    let wrapped = ProcessorStores {
        conversations: faulty(stores.conversations.clone(), &faults),
        tenants: faulty(stores.tenants.clone(), &faults),
        quarantine: faulty(stores.quarantine.clone(), &faults),
    };
    let (ingest, optout_q, propagation, outbound) = (
        queue(&shared_clock),
        queue(&shared_clock),
        queue(&shared_clock),
        queue(&shared_clock),
    );
    let processor = Processor::new(
        wrapped,
        secret(),
        shared_clock.clone(),
        faulty(optout_q.clone(), &faults),
    );
    let handler = OptOutHandler::new(
        OptOutStores {
            conversations: faulty(stores.conversations.clone(), &faults),
            opt_outs: faulty(stores.opt_outs.clone(), &faults),
            tenants: faulty(stores.tenants.clone(), &faults),
        },
        faulty(propagation.clone(), &faults),
        faulty(outbound.clone(), &faults),
        shared_clock.clone(),
    );
    ingest.send_batch(&scenario()).await.expect("accepted");
    for _ in 0..100 {
        let moved = pump(&ingest, |e| processor.handle(e)).await + pump(&optout_q, |e| handler.handle(e)).await;
        if moved == 0 {
            if ingest.pending().await.expect("pending") + optout_q.pending().await.expect("pending") == 0 {
                break;
            }
            // Something failed and is in flight: SQS shows it again after the visibility timeout.
            clock.set(
                clock
                    .now()
                    .plus(time::Duration::try_from(VISIBILITY).expect("fits") + time::Duration::SECOND),
            );
        }
    }
    let calls = faults.calls();
    let t = &tenant.id;
    let mut messages = BTreeMap::new();
    let mut contactable = BTreeMap::new();
    let mut history = BTreeMap::new();
    for (name, p) in [("ana", &ANA), ("bob", &BOB)] {
        let contact = ContactId::new(Channel::WhatsApp, p.user_id).expect("valid");
        let page = stores
            .conversations
            .list_messages(t, &contact, &PageRequest::first(100))
            .await
            .expect("list");
        messages.insert(name, page.items.iter().map(|m| m.id.as_str().to_owned()).collect());
        let (o, c) = (stores.opt_outs.as_ref(), stores.conversations.as_ref());
        let answer = contactability::check(o, c, &secret(), t, Channel::WhatsApp, p.phone, Purpose::Service)
            .await
            .expect("answered");
        contactable.insert(name, answer.contactable);
        let entries = stores
            .opt_outs
            .history(
                t,
                &key(IdentifierKind::WhatsAppUserId, p.user_id),
                &PageRequest::first(100),
            )
            .await
            .expect("history");
        history.insert(name, entries.items.iter().map(|r| (r.state, r.event_at)).collect());
    }
    let reviews = stores
        .quarantine
        .list(
            &QuarantineBucket::OptOutReview { tenant: t.clone() },
            &PageRequest::first(10),
        )
        .await
        .expect("list")
        .items
        .len();
    Run {
        calls,
        messages,
        contactable,
        history,
        propagation: drain(&propagation).await,
        replies: drain(&outbound).await,
        reviews,
    }
}

fn check(run: &Run, what: &str) {
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        run.messages["ana"],
        ids(&["wamid.A1", "wamid.A2", "wamid.A3", "wamid.A4"]),
        "{what}: Ana's messages"
    );
    assert_eq!(run.messages["bob"], ids(&["wamid.B1"]), "{what}: Bob's messages");
    assert_eq!(run.reviews, 1, "{what}: the sentence waits for review, once");
    assert!(run.contactable["ana"], "{what}: Ana's START is her newest event");
    assert!(!run.contactable["bob"], "{what}: Bob stays opted out");
    let stop = (OptState::OptedOut, Timestamp::from_unix_seconds(T0 + 10));
    let start = (OptState::OptedIn, Timestamp::from_unix_seconds(T0 + 20));
    assert_eq!(run.history["bob"], [stop], "{what}: Bob's history");
    // Ana's STOP won only if it was applied before her START: history holds what won, once.
    let ana = &run.history["ana"];
    assert!(
        ana == &[stop, start] || ana == &[start],
        "{what}: Ana's history {ana:?}"
    );
    // Each person's change in force (the last in history, a change unless Ana's START came
    // first, from no record) is announced and confirmed exactly once. An earlier change that a
    // newer one superseded before its consequences went out stays silent: confirming a STOP
    // after the START that followed it would tell the person the opposite of their last word.
    let mut in_force = vec![(stop, Some(key(IdentifierKind::WhatsAppUserId, BOB.user_id)))];
    if ana.len() == 2 {
        in_force.push((start, Some(key(IdentifierKind::WhatsAppUserId, ANA.user_id))));
    }
    // Repeats of a change (a redelivery after a partial failure) carry its `event_id` and are
    // the same event; consumers drop them by it. Distinct ids are distinct changes.
    let mut by_id: BTreeMap<&str, &PropagationEvent> = BTreeMap::new();
    for e in &run.propagation {
        if let Some(first) = by_id.insert(e.event_id.as_str(), e) {
            assert_eq!(first, e, "{what}: two different events share an event_id");
        }
    }
    let announced = by_id.len();
    for ((state, at), primary) in &in_force {
        let of_it = by_id
            .values()
            .filter(|e| (e.event, e.at) == (*state, *at) && e.subject_keys.first() == primary.as_ref())
            .count();
        assert_eq!(
            of_it, 1,
            "{what}: the change in force {state:?} at {at} is announced once: {:?}",
            run.propagation
        );
    }
    // Anything else announced is a change history holds (Ana's STOP, when it went out in time).
    let winners = if ana.len() == 2 { vec![stop, start] } else { vec![stop] };
    for e in &run.propagation {
        assert!(
            winners.contains(&(e.event, e.at)),
            "{what}: {e:?} announces no winning change"
        );
    }
    // Confirmations: the change in force of each person exactly once (by its dedup key); an
    // earlier change at most once, and not if it was superseded before its turn came.
    let confirmations: BTreeSet<&str> = run.replies.iter().map(|r| r.dedup_key.as_str()).collect();
    assert!(
        confirmations.len() <= announced,
        "{what}: a confirmation for a change never announced"
    );
    for ((state, _), person) in [(stop, &BOB), (start, &ANA)].iter().take(in_force.len()) {
        let kind = match state {
            OptState::OptedOut => ReplyKind::OptOutConfirmation,
            OptState::OptedIn => ReplyKind::OptInConfirmation,
        };
        let to_them: BTreeSet<&str> = run
            .replies
            .iter()
            .filter(|r| r.to.stable_id == person.user_id && r.kind == kind)
            .map(|r| r.dedup_key.as_str())
            .collect();
        assert_eq!(
            to_them.len(),
            1,
            "{what}: one {kind:?} to the person for the change in force"
        );
    }
}

async fn sweep(mode: Mode) {
    let reference = run(0, mode).await;
    check(&reference, "without faults");
    assert!(reference.calls > 20, "the scenario makes {} calls", reference.calls);
    // Every call of the fault-free run, and a few more: redeliveries make runs longer.
    for k in 1..=reference.calls + 5 {
        let faulted = run(k, mode).await;
        check(&faulted, &format!("call {k} of {} failing {mode:?}", faulted.calls));
    }
}

#[tokio::test]
async fn every_call_failing_before_it_happens_loses_nothing() {
    sweep(Mode::Before).await;
}

#[tokio::test]
async fn every_call_failing_after_it_happened_loses_nothing() {
    sweep(Mode::After).await;
}
