//! Items DynamoDB can never store (over its 400 KB item limit) are quarantined with their reason,
//! not failed back to SQS: a failed envelope would be received five times, fifteen minutes apart,
//! then dead-lettered with everything behind it (the emulator-failure run saw exactly that). The
//! same cases on the embedded stores and on DynamoDB Local through the real adapters.

mod common;

use common::{ACCOUNT, START};
use processor::Processor;
use shared::clock::SettableClock;
use shared::domain::{Channel, ContactId, QuarantineBucket, QuarantineEntry, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    processor: Processor,
    stores: Stores,
    tenant: TenantId,
    optout: Arc<EmbeddedQueue>,
}

async fn setup(on_dynamodb: bool) -> Setup {
    let clock = SettableClock::at(Timestamp::from_unix_seconds(START));
    let stores = if on_dynamodb {
        common::dynamodb_stores("big", Arc::new(clock.clone()), &Default::default()).await
    } else {
        shared::store::embedded::stores(Arc::new(clock.clone()))
    };
    let tenant = common::register_tenant_a(&stores).await;
    let optout = Arc::new(EmbeddedQueue::new(Arc::new(clock.clone()), Duration::from_secs(30)));
    let secret = SubjectKeySecret::new(b"oversize-test-secret-oversize-test".to_vec()).expect("long enough");
    Setup {
        processor: Processor::new(stores.clone(), secret, Arc::new(clock), optout.clone()),
        stores,
        tenant,
        optout,
    }
}

fn text(from: &str, id: &str, body: &str) -> serde_json::Value {
    serde_json::json!({"from": from, "id": id, "timestamp": START.to_string(), "type": "text", "text": {"body": body}})
}

/// One change: `contacts` and `messages` as given.
fn envelope_of(contacts: serde_json::Value, messages: Vec<serde_json::Value>) -> String {
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": ACCOUNT},
            "contacts": contacts, "messages": messages}}]}]
    })
    .to_string();
    let split = envelope::split(body.as_bytes(), "req-oversize", Timestamp::from_unix_seconds(START)).expect("usable");
    assert_eq!(split.envelopes.len(), 1, "one change");
    split.envelopes.into_iter().next().expect("one envelope")
}

async fn rejected(stores: &Stores) -> Vec<QuarantineEntry> {
    stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(100))
        .await
        .expect("list")
        .items
}

async fn stored_ids(s: &Setup, contact: &ContactId) -> Vec<String> {
    let page = s
        .stores
        .conversations
        .list_messages(&s.tenant, contact, &PageRequest::first(100))
        .await
        .expect("list");
    page.items.into_iter().map(|m| m.id.as_str().to_owned()).collect()
}

/// Bad input: a 450 KB text, then an ordinary message and a STOP from the same sender, in one
/// envelope. The text is held with its reason; what follows it is stored and acted on.
async fn an_oversize_message_is_held_and_the_rest_of_its_envelope_goes_on(on_dynamodb: bool) {
    let s = setup(on_dynamodb).await;
    let wa = "5491155550001";
    let env = envelope_of(
        serde_json::json!([{"profile": {"name": "Ana"}, "wa_id": wa}]),
        vec![
            text(wa, "wamid.BIG", &"x".repeat(450 * 1024)),
            text(wa, "wamid.SMALL", "hola, ¿tienen talle M?"),
            text(wa, "wamid.STOP", "STOP"),
        ],
    );
    let counts = s.processor.process(&env).await.expect("not failed back to SQS");
    assert_eq!((counts.stored, counts.quarantined, counts.optout_commands), (2, 1, 1));
    let contact = ContactId::new(Channel::WhatsApp, wa).expect("valid");
    let mut ids = stored_ids(&s, &contact).await;
    ids.sort();
    assert_eq!(ids, ["wamid.SMALL", "wamid.STOP"]);
    let held = rejected(&s.stores).await;
    assert_eq!(held.len(), 1);
    assert!(
        held[0]
            .reason
            .starts_with("message too large to store: the item is larger than"),
        "{}",
        held[0].reason
    );
    assert!(held[0].envelope.contains("xxxx"), "the content is kept");
    let commands = s.optout.receive(10, Duration::ZERO).await.expect("receive");
    assert_eq!(commands.len(), 1, "the STOP behind it is sent");

    // A redelivery adds nothing: the held item is keyed by its content.
    let again = s.processor.process(&env).await.expect("not failed back to SQS");
    assert_eq!((again.stored, again.duplicates), (0, 2));
    assert_eq!(rejected(&s.stores).await.len(), 1);
}

/// Bad input: a 450 KB profile name. The message is stored, the profile keeps no name, and the
/// name is held in quarantine with its reason.
async fn an_oversize_profile_name_is_held_and_its_message_stored(on_dynamodb: bool) {
    let s = setup(on_dynamodb).await;
    let wa = "5491155550002";
    let name = "N".repeat(450 * 1024);
    let env = envelope_of(
        serde_json::json!([{"profile": {"name": name}, "wa_id": wa}]),
        vec![text(wa, "wamid.NAMED", "hola")],
    );
    let counts = s.processor.process(&env).await.expect("not failed back to SQS");
    assert_eq!((counts.stored, counts.quarantined), (1, 1));
    let contact = ContactId::new(Channel::WhatsApp, wa).expect("valid");
    assert_eq!(stored_ids(&s, &contact).await, ["wamid.NAMED"]);
    let profile = s
        .stores
        .conversations
        .get_contact(&s.tenant, &contact)
        .await
        .expect("get")
        .expect("the contact is stored");
    assert_eq!(profile.profile_name, None);
    let held = rejected(&s.stores).await;
    assert_eq!(held.len(), 1);
    assert!(
        held[0]
            .reason
            .starts_with("profile name too long to keep: 460800 bytes"),
        "{}",
        held[0].reason
    );
    assert_eq!(held[0].envelope, name);
}

/// A name at the bound is kept as it came.
async fn a_name_at_the_bound_is_kept(on_dynamodb: bool) {
    let s = setup(on_dynamodb).await;
    let wa = "5491155550003";
    let name = "ñ".repeat(shared::domain::MAX_PROFILE_NAME_BYTES / 2);
    let env = envelope_of(
        serde_json::json!([{"profile": {"name": name}, "wa_id": wa}]),
        vec![text(wa, "wamid.KEPT", "hola")],
    );
    let counts = s.processor.process(&env).await.expect("processed");
    assert_eq!((counts.stored, counts.quarantined), (1, 0));
    let contact = ContactId::new(Channel::WhatsApp, wa).expect("valid");
    let profile = s
        .stores
        .conversations
        .get_contact(&s.tenant, &contact)
        .await
        .expect("get");
    assert_eq!(profile.and_then(|p| p.profile_name), Some(name));
}

/// A profile stored near the item limit (as one could be before names were bounded) that a new
/// identifier pushes over it: the STOP from that contact still goes out, and nothing is failed
/// back to SQS.
async fn a_stop_goes_out_when_its_contacts_profile_cannot_grow(on_dynamodb: bool) {
    let s = setup(on_dynamodb).await;
    let user = "AR.13491208655302741999";
    let contact = ContactId::new(Channel::WhatsApp, user).expect("valid");
    let secret = SubjectKeySecret::new(b"oversize-test-secret-oversize-test".to_vec()).expect("long enough");
    let link = |kind, raw: &str| {
        shared::domain::LinkedIdentifier::new(&secret, shared::identity::Identifier::parse(kind, raw).expect("valid"))
    };
    // The longest name that still fits, found by trying: the adapters count a few bytes apart.
    let mut size = shared::store::MAX_ITEM_BYTES;
    loop {
        let upsert = shared::domain::ContactUpsert {
            tenant: s.tenant.clone(),
            contact: contact.clone(),
            profile_name: Some("N".repeat(size)),
            identifiers: vec![link(shared::identity::IdentifierKind::WhatsAppUserId, user)],
            seen_at: Timestamp::from_unix_seconds(START - 60),
            expires_at: shared::retention::RetentionMonths::MAX.expiry_for(Timestamp::from_unix_seconds(START - 60)),
        };
        match s.stores.conversations.upsert_contact(&upsert).await {
            Ok(_) => break,
            Err(shared::store::StoreError::TooLarge) => size -= 64,
            Err(e) => panic!("{e}"),
        }
    }
    // Bad input, in effect: the STOP comes with a phone the profile has not linked yet.
    let mut stop = text("5491155550099", "wamid.GROWS", "STOP");
    stop["from_user_id"] = serde_json::json!(user);
    let env = envelope_of(serde_json::json!([]), vec![stop]);
    let counts = s.processor.process(&env).await.expect("not failed back to SQS");
    assert_eq!(counts.optout_commands, 1);
    assert_eq!(s.optout.receive(10, Duration::ZERO).await.expect("receive").len(), 1);
    assert!(
        !rejected(&s.stores).await.is_empty(),
        "what could not be stored is held"
    );

    // The same through a marketing preference set inside WhatsApp (no message to store).
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "user_preferences", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": ACCOUNT},
            "user_preferences": [{"wa_id": "5491155550098", "user_id": user, "category": "marketing_messages",
                "value": "stop", "timestamp": START}]}}]}]
    })
    .to_string();
    let split = envelope::split(body.as_bytes(), "req-pref", Timestamp::from_unix_seconds(START)).expect("usable");
    let counts = s
        .processor
        .process(&split.envelopes[0])
        .await
        .expect("not failed back to SQS");
    assert_eq!(counts.optout_commands, 1);
    assert_eq!(s.optout.receive(10, Duration::ZERO).await.expect("receive").len(), 1);
    let held = rejected(&s.stores).await;
    assert!(
        held.iter().any(|e| e.reason.starts_with("contact too large to store")),
        "{:?}",
        held.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $case() { super::$case(false).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $case() { super::$case(true).await })*
        }
    };
}

on_both!(
    an_oversize_message_is_held_and_the_rest_of_its_envelope_goes_on,
    an_oversize_profile_name_is_held_and_its_message_stored,
    a_name_at_the_bound_is_kept,
    a_stop_goes_out_when_its_contacts_profile_cannot_grow,
);
