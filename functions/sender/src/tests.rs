//! The sender on the embedded stores, with the opt-out function itself applying STOPs and a
//! scripted `MessageSender` standing in for Meta (the production adapter is tested over the wire
//! against infra's loopback Graph API, and end to end in tests/outbound.rs).

use super::*;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use shared::clock::{Clock, SettableClock};
use shared::deadline::Jurisdiction;
use shared::deadline::RequestKind;
use shared::domain::{
    Channel, ChannelAccount, ConfirmationCode, ContactUpsert, LinkedIdentifier, Locale, NewRequest, OptOutScope,
    PrivacyRequest, RequestSource, Subject, TenantId,
};
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::meta::graph::GraphToken;
use shared::meta::send::{Sent, StaticTokens};
use shared::optout::command::{OutboundReply, ReplyKind};
use shared::outbound::{ClientKey, TemplateCategory, TenantMessage};
use shared::queue::embedded::EmbeddedQueue;
use shared::store::PageRequest;
use std::collections::VecDeque;
use std::sync::Mutex;

const SECRET_NAME: &str = "socio-test/tenants/shop/meta-access-token";
const T0: i64 = 1_800_000_000;

/// Meta, scripted: each send takes the next answer (a sent message when none is scripted).
#[derive(Debug, Default)]
struct ScriptedMeta {
    answers: Mutex<VecDeque<Result<Sent, SendError>>>,
    calls: Mutex<Vec<(String, String, Content)>>,
}

impl ScriptedMeta {
    fn answer(&self, a: Result<Sent, SendError>) {
        self.answers.lock().expect("lock").push_back(a);
    }
    fn calls(&self) -> Vec<(String, String, Content)> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl MessageSender for ScriptedMeta {
    async fn send(&self, token: &GraphToken, r: &SendRequest<'_>) -> Result<Sent, SendError> {
        assert_eq!(token, &GraphToken::new("EAA-shop"), "the tenant's own token");
        let mut calls = self.calls.lock().expect("lock");
        calls.push((r.account.to_owned(), r.to.to_owned(), r.content.clone()));
        let n = calls.len();
        self.answers.lock().expect("lock").pop_front().unwrap_or_else(|| {
            Ok(Sent {
                message_id: format!("wamid.test{n}"),
            })
        })
    }
}

struct Fixture {
    sender: Sender,
    meta: Arc<ScriptedMeta>,
    clock: SettableClock,
    stores: shared::store::Stores,
    outbox: Arc<dyn OutboxStore>,
    optout_queue: Arc<EmbeddedQueue>,
    optout: optout::OptOutHandler,
    replies: Arc<EmbeddedQueue>,
    ana: ContactId,
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"sender-test-secret-sender-test-secret".to_vec()).expect("long enough")
}

fn tenant_id() -> TenantId {
    TenantId::new("shop").expect("valid")
}

async fn fixture() -> Fixture {
    let clock = SettableClock::at(Timestamp::from_unix_seconds(T0));
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let stack = shared::store::embedded::stack(shared_clock.clone());
    let tenant = Tenant {
        id: tenant_id(),
        name: "Tienda".to_owned(),
        accounts: vec![ChannelAccount::new(Channel::WhatsApp, "100000000000001").expect("valid")],
        retention_months: shared::retention::RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: Some(SECRET_NAME.to_owned()),
        created_at: Timestamp::from_unix_seconds(0),
    };
    stack.stores.tenants.register(&tenant).await.expect("register");
    let ana = ContactId::new(Channel::WhatsApp, "AR.1000000000000000001").expect("valid");
    let meta = Arc::new(ScriptedMeta::default());
    let optout_queue = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
    let replies = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
    let propagation = Arc::new(EmbeddedQueue::new(shared_clock.clone(), Duration::from_secs(30)));
    let optout = optout::OptOutHandler::new(stack.stores.clone(), propagation, replies.clone(), shared_clock.clone());
    let sender = Sender::new(
        SenderStores {
            conversations: stack.stores.conversations.clone(),
            opt_outs: stack.stores.opt_outs.clone(),
            tenants: stack.stores.tenants.clone(),
            privacy_requests: stack.stores.privacy_requests.clone(),
            outbox: stack.outbox.clone(),
        },
        meta.clone(),
        Arc::new(StaticTokens::new([(
            SECRET_NAME.to_owned(),
            GraphToken::new("EAA-shop"),
        )])),
        optout_queue.clone(),
        shared_clock,
    );
    let f = Fixture {
        sender,
        meta,
        clock,
        stores: stack.stores,
        outbox: stack.outbox,
        optout_queue,
        optout,
        replies,
        ana,
    };
    f.ana_writes(T0 - 60).await;
    f
}

impl Fixture {
    fn ana_key(&self) -> shared::identity::SubjectKey {
        secret().subject_key(&Identifier::parse(IdentifierKind::WhatsAppUserId, &self.ana.stable_id).expect("valid"))
    }

    /// Ana writes to the shop at `secs`: the window opens then.
    async fn ana_writes(&self, secs: i64) {
        let at = Timestamp::from_unix_seconds(secs);
        let upsert = ContactUpsert {
            tenant: tenant_id(),
            contact: self.ana.clone(),
            profile_name: Some("Ana".to_owned()),
            identifiers: vec![LinkedIdentifier::new(
                &secret(),
                Identifier::parse(IdentifierKind::WhatsAppUserId, &self.ana.stable_id).expect("valid"),
            )],
            seen_at: at,
            expires_at: shared::retention::RetentionMonths::MAX.contact_expiry_for(at),
        };
        let message = Message {
            tenant: tenant_id(),
            contact: self.ana.clone(),
            id: MetaMessageId::new(format!("wamid.in{secs}")).expect("valid"),
            direction: Direction::Inbound,
            sent_at: at,
            kind: "text".to_owned(),
            content: serde_json::json!({"type": "text", "text": {"body": "Hola"}}),
            expires_at: shared::retention::RetentionMonths::MAX.expiry_for(at),
        };
        self.stores
            .conversations
            .record_message(&upsert, &message)
            .await
            .expect("stored");
    }

    fn message(&self, key: &str, content: Content) -> OutboundCommand {
        OutboundCommand::Message(TenantMessage {
            tenant: tenant_id(),
            to: self.ana.clone(),
            client_key: ClientKey::new(key).expect("valid"),
            content,
            requested_by: "agent".to_owned(),
            requested_at: self.clock.now(),
        })
    }

    /// Ana's STOP (or START), applied by the opt-out function, which queues its confirmation.
    async fn ana_says(&self, action: CommandAction, scope: OptOutScope, secs: i64) {
        let at = Timestamp::from_unix_seconds(secs);
        let cmd = OptOutCommand {
            tenant: tenant_id(),
            contact: self.ana.clone(),
            subject_keys: vec![self.ana_key()],
            action,
            scope,
            source: OptOutSource::Keyword,
            event_at: at,
            order_at: at,
            only_while_opted_out: false,
            language: None,
        };
        self.optout.apply(&cmd).await.expect("applied");
    }

    async fn replies(&self) -> Vec<OutboundCommand> {
        let mut out = Vec::new();
        for m in self.replies.receive(10, Duration::ZERO).await.expect("receive") {
            out.push(serde_json::from_str(&m.body).expect("a command"));
            self.replies.delete(&m.receipt).await.expect("delete");
        }
        out
    }
}

fn text(body: &str) -> Content {
    Content::Text { body: body.to_owned() }
}

#[tokio::test]
async fn a_tenant_reply_is_sent_once_stored_in_the_conversation_and_a_redelivery_sends_nothing() {
    let f = fixture().await;
    let cmd = f.message("order-1", text("Tu pedido salió"));
    let d = f.sender.deliver(&cmd).await.expect("delivered");
    assert_eq!(
        d,
        Delivery::Sent {
            message_id: "wamid.test1".to_owned()
        }
    );
    assert_eq!(f.meta.calls()[0].0, "100000000000001", "sent from the tenant's number");
    assert_eq!(f.meta.calls()[0].1, f.ana.stable_id);
    let stored = f
        .stores
        .conversations
        .list_messages(&tenant_id(), &f.ana, &PageRequest::first(10))
        .await
        .expect("list");
    let out: Vec<_> = stored
        .items
        .iter()
        .filter(|m| m.direction == Direction::Outbound)
        .collect();
    assert_eq!(out.len(), 1, "the tenant's message is in Ana's conversation");
    assert_eq!(out[0].id.as_str(), "wamid.test1", "so its statuses attach to it");
    assert_eq!(out[0].content["text"]["body"], "Tu pedido salió");

    // SQS delivers it again: the claim holds, nothing leaves.
    assert_eq!(
        f.sender.deliver(&cmd).await.expect("redelivered"),
        Delivery::Duplicate(OutboxState::Sent)
    );
    assert_eq!(f.meta.calls().len(), 1);
}

#[tokio::test]
async fn after_stop_exactly_the_confirmation_goes_tenants_are_refused_and_start_lets_them_through() {
    let f = fixture().await;
    f.ana_says(CommandAction::OptOut, OptOutScope::All, T0 - 30).await;
    let confirmations = f.replies().await;
    assert_eq!(confirmations.len(), 1, "the opt-out function queued one confirmation");
    assert!(matches!(
        f.sender.deliver(&confirmations[0]).await,
        Ok(Delivery::Sent { .. })
    ));
    // A redelivered confirmation is not sent twice.
    assert!(matches!(
        f.sender.deliver(&confirmations[0]).await,
        Ok(Delivery::Duplicate(_))
    ));

    let refused = f.sender.deliver(&f.message("after-stop", text("¿Seguís ahí?"))).await;
    assert_eq!(refused.expect("decided"), Delivery::Refused(Refusal::OptedOut));
    let entry = f
        .outbox
        .get(&tenant_id(), "msg:after-stop")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(
        (entry.state, entry.refusal),
        (OutboxState::Refused, Some(Refusal::OptedOut))
    );
    assert_eq!(f.meta.calls().len(), 1, "only the confirmation reached Meta");

    f.ana_says(CommandAction::OptIn, OptOutScope::All, T0 - 10).await;
    for reply in f.replies().await {
        f.sender.deliver(&reply).await.expect("START's confirmation");
    }
    let again = f
        .sender
        .deliver(&f.message("after-start", text("¡Hola de nuevo!")))
        .await;
    assert!(matches!(again, Ok(Delivery::Sent { .. })), "{again:?}");
}

#[tokio::test]
async fn free_form_outside_24_hours_is_refused_a_template_is_sent_and_a_marketing_one_respects_the_preference() {
    let f = fixture().await;
    f.clock.set(Timestamp::from_unix_seconds(T0 + 25 * 3600));
    assert_eq!(
        f.sender
            .deliver(&f.message("late-text", text("hola")))
            .await
            .expect("decided"),
        Delivery::Refused(Refusal::OutsideWindow)
    );
    let template = |category| Content::Template {
        name: "order_update".into(),
        language: "es_AR".into(),
        category,
        components: serde_json::Value::Null,
    };
    assert!(matches!(
        f.sender
            .deliver(&f.message("late-template", template(TemplateCategory::Utility)))
            .await,
        Ok(Delivery::Sent { .. })
    ));
    f.ana_says(CommandAction::OptOut, OptOutScope::Marketing, T0 + 25 * 3600 - 5)
        .await;
    assert_eq!(
        f.sender
            .deliver(&f.message("promo", template(TemplateCategory::Marketing)))
            .await
            .expect("decided"),
        Delivery::Refused(Refusal::MarketingOptedOut)
    );
    assert!(
        matches!(
            f.sender
                .deliver(&f.message("utility-after-marketing-stop", template(TemplateCategory::Utility)))
                .await,
            Ok(Delivery::Sent { .. })
        ),
        "a marketing stop leaves utility templates"
    );
}

#[tokio::test]
async fn a_throttled_send_is_released_for_the_next_delivery_and_nothing_is_lost() {
    let f = fixture().await;
    f.meta.answer(Err(SendError::Retryable {
        status: 429,
        code: Some(130429),
    }));
    let cmd = f.message("busy", text("hola"));
    assert!(matches!(f.sender.deliver(&cmd).await, Err(SenderError::Later(_))));
    let entry = f
        .outbox
        .get(&tenant_id(), "msg:busy")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(entry.state, OutboxState::Released);
    let d = f.sender.deliver(&cmd).await.expect("second delivery");
    assert!(matches!(d, Delivery::Sent { .. }), "{d:?}");
    let entry = f
        .outbox
        .get(&tenant_id(), "msg:busy")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!((entry.state, entry.attempt), (OutboxState::Sent, 2));
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_never_sent_again_but_marked_stale_and_listed() {
    let f = fixture().await;
    let cmd = f.message("crashed", text("hola"));
    // The first attempt claimed, then died before recording anything.
    let first = OutboxEntry::claim(&cmd, f.clock.now());
    assert!(matches!(f.outbox.claim(&first).await.expect("claim"), Claim::Won(_)));
    // Redelivered while that attempt could still be running: back to SQS, nothing sent.
    f.clock.set(f.clock.now().plus(time::Duration::seconds(10)));
    assert!(matches!(f.sender.deliver(&cmd).await, Err(SenderError::Later(_))));
    // Redelivered after it cannot be running any more: stale, listed, still nothing sent.
    f.clock.set(f.clock.now().plus(time::Duration::seconds(170)));
    assert_eq!(f.sender.deliver(&cmd).await.expect("decided"), Delivery::Stale);
    assert!(f.meta.calls().is_empty());
    let stale = f.outbox.stale(&PageRequest::first(10)).await.expect("listed");
    assert_eq!(stale.items.len(), 1);
    assert_eq!(stale.items[0].dedup_key, "msg:crashed");
    assert_eq!(
        f.sender.deliver(&cmd).await.expect("again"),
        Delivery::Duplicate(OutboxState::Stale)
    );

    // No answer from Meta: it may have left; stale at once, never retried.
    f.meta.answer(Err(SendError::Ambiguous("no answer in time".to_owned())));
    assert_eq!(
        f.sender
            .deliver(&f.message("silent", text("hola")))
            .await
            .expect("decided"),
        Delivery::Stale
    );
    assert_eq!(f.meta.calls().len(), 1);
}

#[tokio::test]
async fn meta_refusing_marketing_with_131050_is_a_marketing_stop_and_is_not_retried() {
    let f = fixture().await;
    f.meta.answer(Err(SendError::Permanent {
        status: 400,
        code: Some(131050),
    }));
    let d = f
        .sender
        .deliver(&f.message(
            "promo",
            Content::Template {
                name: "promo".into(),
                language: "es".into(),
                category: TemplateCategory::Marketing,
                components: serde_json::Value::Null,
            },
        ))
        .await
        .expect("decided");
    assert_eq!(d, Delivery::Failed(Some(131050)));
    let queued = f.optout_queue.receive(10, Duration::ZERO).await.expect("receive");
    assert_eq!(queued.len(), 1);
    let cmd: OptOutCommand = serde_json::from_str(&queued[0].body).expect("a command");
    assert_eq!((cmd.action, cmd.scope), (CommandAction::OptOut, OptOutScope::Marketing));
    assert_eq!(cmd.subject_keys, vec![f.ana_key()]);
}

#[tokio::test]
async fn a_status_link_goes_into_the_requests_timeline_not_the_conversation() {
    let f = fixture().await;
    let request = PrivacyRequest::new(NewRequest {
        kind: RequestKind::Erasure,
        source: RequestSource::WhatsApp,
        jurisdiction: Jurisdiction::Ar,
        tenant: Some(tenant_id()),
        subjects: vec![Subject {
            kind: IdentifierKind::WhatsAppUserId,
            key: f.ana_key(),
        }],
        note: None,
        erase: false,
        rectify: None,
        code: ConfirmationCode::random(),
        now: f.clock.now(),
        by: "processor",
    });
    f.stores.privacy_requests.create(&request).await.expect("created");
    let reply = OutboundCommand::Reply(OutboundReply {
        tenant: tenant_id(),
        to: f.ana.clone(),
        kind: ReplyKind::ErasureReceived,
        language: Locale::Spanish,
        text: "Recibimos tu pedido: https://example.test/privacy/requests/x".to_owned(),
        dedup_key: format!("erasure:{}", request.id),
        request: Some(request.id),
        answering_at: Some(f.clock.now()),
    });
    assert!(matches!(f.sender.deliver(&reply).await, Ok(Delivery::Sent { .. })));
    let stored = f
        .stores
        .privacy_requests
        .get(request.id)
        .await
        .expect("read")
        .expect("kept");
    assert!(stored.timeline.iter().any(|e| e.event == "reply_sent" && e.by == ACTOR));
    let messages = f
        .stores
        .conversations
        .list_messages(&tenant_id(), &f.ana, &PageRequest::first(10))
        .await
        .expect("list");
    assert!(messages.items.iter().all(|m| m.direction == Direction::Inbound));
}

#[tokio::test]
async fn no_token_no_contact_and_a_body_that_is_no_command_are_refused_or_reported() {
    let f = fixture().await;
    let mut stranger = f.message("stranger", text("hola"));
    if let OutboundCommand::Message(m) = &mut stranger {
        m.to = ContactId::new(Channel::WhatsApp, "AR.999").expect("valid");
    }
    assert_eq!(
        f.sender.deliver(&stranger).await.expect("decided"),
        Delivery::Refused(Refusal::NoContact)
    );
    let mut tenant = f
        .stores
        .tenants
        .get(&tenant_id())
        .await
        .expect("read")
        .expect("registered");
    tenant.access_token_secret = None;
    f.stores.tenants.register(&tenant).await.expect("updated");
    assert_eq!(
        f.sender
            .deliver(&f.message("tokenless", text("hola")))
            .await
            .expect("decided"),
        Delivery::Refused(Refusal::NoToken)
    );
    assert!(f.meta.calls().is_empty());

    // Bad input: a body that is JSON but neither a reply nor a tenant's message.
    let mut record = SqsMessage::default();
    record.message_id = Some("m-1".to_owned());
    record.body = Some(r#"{"tenant":"shop","text":"hola"}"#.to_owned());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let response = f.sender.handle(event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "m-1");
}

#[tokio::test]
async fn a_stale_claim_raises_the_metric_the_template_alarms_on() {
    let f = fixture().await;
    let cmd = f.message("crashed", text("hola"));
    assert!(matches!(
        f.outbox.claim(&OutboxEntry::claim(&cmd, f.clock.now())).await,
        Ok(Claim::Won(_))
    ));
    f.clock.set(f.clock.now().plus(time::Duration::minutes(3)));
    let mut record = SqsMessage::default();
    record.message_id = Some("m-1".to_owned());
    record.body = Some(serde_json::to_string(&cmd).expect("json"));
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let (response, counters) = f.sender.handle_counted(event, Duration::MAX).await;
    assert!(response.batch_item_failures.is_empty(), "decided: nothing to redeliver");
    assert!(counters.contains(&(STALE_CLAIMS, 1)), "{counters:?}");

    let template: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../template.yaml")).expect("template.yaml parses");
    let alarm = &template["Resources"]["StaleOutboundClaimAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"].as_str(), Some(STALE_CLAIMS));
    assert_eq!(alarm["Namespace"].as_str(), Some(shared::metrics::NAMESPACE));
    assert_eq!(alarm["Dimensions"][0]["Value"].as_str(), Some("sender"));
}

/// The numbers the at-most-once rule rests on, as deployed: an attempt ends (the function's
/// timeout) before its claim counts as stale, and SQS redelivers only after that; the tenants'
/// queue never takes the whole reserved concurrency, so replies always have room.
#[test]
fn the_template_keeps_claims_honest_and_leaves_replies_room() {
    let t: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../template.yaml")).expect("template.yaml parses");
    let r = &t["Resources"];
    let stale = shared::outbound::STALE_CLAIM_AFTER.whole_seconds();
    let timeout = r["SenderFunction"]["Properties"]["Timeout"]
        .as_i64()
        .expect("a timeout");
    assert!(
        timeout < stale,
        "the sender's timeout {timeout} s must be under {stale} s"
    );
    for q in ["OutboundQueue", "TenantOutboundQueue"] {
        let visibility = r[q]["Properties"]["VisibilityTimeout"].as_i64().expect("visibility");
        assert!(visibility >= 6 * timeout && visibility > stale, "{q}: {visibility} s");
    }
    let events = &r["SenderFunction"]["Properties"]["Events"];
    let cap = &events["TenantMessages"]["Properties"]["ScalingConfig"]["MaximumConcurrency"];
    let parameter = match cap {
        serde_yaml::Value::Tagged(t) if t.tag == "!Ref" => t.value.as_str().expect("a parameter name"),
        other => panic!("the tenants' queue is capped by a parameter: {other:?}"),
    };
    let tenants = t["Parameters"][parameter]["Default"].as_i64().expect("a default");
    assert!(
        events["Replies"]["Properties"]["ScalingConfig"].is_null(),
        "replies are not capped"
    );
    let reserved = t["Parameters"]["SenderReservedConcurrency"]["Default"]
        .as_i64()
        .expect("a default");
    assert!(
        tenants + 2 <= reserved,
        "{tenants} of {reserved}: replies keep at least 2"
    );
}

#[tokio::test]
async fn a_command_is_not_started_without_the_time_to_finish_it() {
    let f = fixture().await;
    let cmd = f.message("late-in-the-invocation", text("hola"));
    let mut record = SqsMessage::default();
    record.message_id = Some("m-1".to_owned());
    record.body = Some(serde_json::to_string(&cmd).expect("json"));
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let short = COMMAND_BUDGET - Duration::from_secs(1);
    let (response, _) = f.sender.handle_counted(event, short).await;
    assert_eq!(response.batch_item_failures.len(), 1, "back to SQS, unstarted");
    assert!(f.meta.calls().is_empty());
    assert!(
        f.outbox
            .get(&tenant_id(), "msg:late-in-the-invocation")
            .await
            .expect("read")
            .is_none(),
        "nothing claimed, so its redelivery is sent, not held as stale"
    );
}

#[tokio::test]
async fn a_redelivery_completes_the_first_send_at_its_time_and_a_reused_key_writes_nothing() {
    let f = fixture().await;
    let first = f.message("reused", text("Tu pedido salió"));
    assert!(matches!(f.sender.deliver(&first).await, Ok(Delivery::Sent { .. })));
    f.clock.set(f.clock.now().plus(time::Duration::minutes(5)));
    // The same message again, minutes later: the conversation item is the first one's.
    assert!(matches!(
        f.sender.deliver(&first).await,
        Ok(Delivery::Duplicate(OutboxState::Sent))
    ));
    // The key reused for another message (both queued before the first was claimed).
    let other = f.message("reused", text("Otro texto"));
    assert!(matches!(
        f.sender.deliver(&other).await,
        Ok(Delivery::Duplicate(OutboxState::Sent))
    ));
    let messages = f
        .stores
        .conversations
        .list_messages(&tenant_id(), &f.ana, &PageRequest::first(10))
        .await
        .expect("list");
    let out: Vec<_> = messages
        .items
        .iter()
        .filter(|m| m.direction == Direction::Outbound)
        .collect();
    assert_eq!(out.len(), 1, "one item, at the send's time");
    assert_eq!(out[0].content["text"]["body"], "Tu pedido salió");
    assert_eq!(f.meta.calls().len(), 1);
}

#[tokio::test]
async fn a_request_that_could_not_be_made_releases_the_claim_and_a_131050_stop_is_queued_again_as_one_event() {
    let f = fixture().await;
    f.meta.answer(Err(SendError::Config(
        "the sending account id is not numeric".to_owned(),
    )));
    let cmd = f.message("unmade", text("hola"));
    assert!(matches!(f.sender.deliver(&cmd).await, Err(SenderError::Later(_))));
    let entry = f
        .outbox
        .get(&tenant_id(), "msg:unmade")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(entry.state, OutboxState::Released, "nothing left: not stale");

    f.meta.answer(Err(SendError::Permanent {
        status: 400,
        code: Some(131050),
    }));
    let promo = f.message(
        "promo-again",
        Content::Template {
            name: "promo".into(),
            language: "es".into(),
            category: TemplateCategory::Marketing,
            components: serde_json::Value::Null,
        },
    );
    assert_eq!(
        f.sender.deliver(&promo).await.expect("decided"),
        Delivery::Failed(Some(131050))
    );
    assert_eq!(
        f.sender.deliver(&promo).await.expect("again"),
        Delivery::Duplicate(OutboxState::Failed)
    );
    let queued = f.optout_queue.receive(10, Duration::ZERO).await.expect("receive");
    assert_eq!(queued.len(), 2, "queued again by the redelivery");
    let events: Vec<OptOutCommand> = queued
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("a command"))
        .collect();
    assert_eq!(
        events[0].event_at, events[1].event_at,
        "as the same event: the opt-out function replays it"
    );
}
