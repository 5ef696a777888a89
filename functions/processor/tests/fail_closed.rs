//! Fail closed: for every opt-out keyword and every shape a sender's identifiers can take (valid
//! and invalid phones, user ids in shapes the parser does not know, username-only senders,
//! Instagram ids, ids nothing can key), in whole WhatsApp messages or ones with an unreadable
//! time or id, the STOP ends as an opt-out that contactability honours for the sender's id as
//! Meta sent it whenever anything identifies the sender, and otherwise as a review item counted
//! for the alarm. Never nothing.

use optout::OptOutHandler;
use processor::Processor;
use proptest::prelude::*;
use shared::clock::SettableClock;
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ChannelAccount, ContactId, Locale, QuarantineBucket, Tenant, TenantId};
use shared::identity::SubjectKeySecret;
use shared::meta::envelope;
use shared::optout::contactability::{self, Purpose};
use shared::optout::keywords::OPT_OUT;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const WA_ACCOUNT: &str = "106540352242922";
const IG_ACCOUNT: &str = "17841400000001";
const NOW_SECONDS: i64 = 1_800_000_000;

/// Who wrote: the fields Meta would fill in for that sender.
#[derive(Clone, Debug)]
enum Sender {
    /// `from_user_id` and/or `from` (wa_id) on WhatsApp; None leaves the field out.
    WhatsApp {
        user_id: Option<String>,
        phone: Option<String>,
        username: Option<String>,
    },
    Instagram {
        igsid: String,
    },
}

impl Sender {
    /// The id the sender is known by, as Meta sent it (the user id, else the phone, whichever a
    /// contact can be keyed by): the one an operator would ask about. None: nothing identifies them.
    fn stable_id(&self) -> Option<(Channel, &str)> {
        let usable = |id: &&str| ContactId::new(Channel::WhatsApp, *id).is_ok();
        match self {
            Self::WhatsApp { user_id, phone, .. } => [user_id.as_deref(), phone.as_deref()]
                .into_iter()
                .flatten()
                .find(usable)
                .map(|id| (Channel::WhatsApp, id)),
            Self::Instagram { igsid } => Some((Channel::Instagram, igsid.as_str())).filter(|(_, id)| usable(id)),
        }
    }
}

fn valid_phone() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("5491123456789".to_owned()),
        Just("34600111222".to_owned()),
        Just("5511912345678".to_owned()),
        (1_000_000u32..9_999_999).prop_map(|n| format!("54911{n}0")),
    ]
}

/// Phones the phone library refuses: short codes, unallocated country codes, too long, letters.
fn invalid_phone() -> impl Strategy<Value = String> {
    prop_oneof![
        (10u32..99_999).prop_map(|n| n.to_string()),
        (1_000_000u32..9_999_999).prop_map(|n| format!("999{n}")),
        Just("54911234567890123456".to_owned()),
        "[0-9]{3}[A-Za-z]{2}[0-9]{4}",
    ]
}

fn valid_user_id() -> impl Strategy<Value = String> {
    ("[A-Z]{2}", "[0-9]{10,20}").prop_map(|(cc, n)| format!("{cc}.{n}"))
}

/// Business-scoped user ids in shapes the parser does not know.
fn unknown_user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{2}\\.[0-9]{8}",
        "[A-Z]{3}\\.[0-9]{8}",
        "[A-Z]{2}\\.ENT\\.[A-Z]{2}\\.[0-9]{6}",
        "[A-Z]{2}-[0-9a-f]{12}",
        "[A-Za-z0-9_.:-]{1,40}",
    ]
}

/// Ids no key can be built from: `#` breaks the key format, whitespace and control
/// characters are refused everywhere.
fn unusable_id() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9]{4}#[0-9]{4}", "[0-9]{4} [0-9]{4}", "[0-9]{4}\u{1}[0-9]{2}"]
}

fn sender() -> impl Strategy<Value = Sender> {
    let phone = prop_oneof![valid_phone(), invalid_phone(), unusable_id()];
    let user_id = prop_oneof![valid_user_id(), unknown_user_id(), unusable_id()];
    prop_oneof![
        (proptest::option::of(user_id.clone()), phone.clone()).prop_map(|(user_id, phone)| Sender::WhatsApp {
            user_id,
            phone: Some(phone),
            username: None,
        }),
        // Username users: Meta omits `from` and `wa_id`.
        (user_id, "[a-z][a-z0-9._]{2,20}").prop_map(|(user_id, username)| Sender::WhatsApp {
            user_id: Some(user_id),
            phone: None,
            username: Some(username),
        }),
        prop_oneof!["[0-9]{15,17}", "[0-9a-zA-Z]{5,20}", unusable_id()].prop_map(|igsid| Sender::Instagram { igsid }),
    ]
}

/// A keyword as a person might type it.
fn typed(keyword: &str, style: u8) -> String {
    match style % 3 {
        0 => keyword.to_uppercase(),
        1 => keyword.to_owned(),
        _ => format!("  {}  ", keyword.to_uppercase()),
    }
}

/// How the message around the STOP is broken, beside its sender: 0 not, 1 an unreadable
/// timestamp, 2 an unusable message id (WhatsApp).
fn body(sender: &Sender, text: &str, broken: u8) -> String {
    match sender {
        Sender::WhatsApp {
            user_id,
            phone,
            username,
        } => {
            let mut message = serde_json::json!({"id": "wamid.FAILCLOSED1", "timestamp": NOW_SECONDS.to_string(),
                "type": "text", "text": {"body": text}});
            match broken % 3 {
                1 => message["timestamp"] = "yesterday".into(),
                2 => message["id"] = "wamid with space".into(),
                _ => {}
            }
            let mut contact = serde_json::json!({"profile": {"name": "Ana"}});
            if let Some(u) = user_id {
                message["from_user_id"] = u.as_str().into();
                contact["user_id"] = u.as_str().into();
            }
            if let Some(p) = phone {
                message["from"] = p.as_str().into();
                contact["wa_id"] = p.as_str().into();
            }
            if let Some(name) = username {
                contact["profile"]["username"] = name.as_str().into();
            }
            serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                "field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"phone_number_id": WA_ACCOUNT}, "contacts": [contact], "messages": [message]}}]}]})
            .to_string()
        }
        Sender::Instagram { igsid } => serde_json::json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT,
            "time": NOW_SECONDS * 1000, "messaging": [{"sender": {"id": igsid}, "recipient": {"id": IG_ACCOUNT},
            "timestamp": NOW_SECONDS * 1000, "message": {"mid": "aWdfZAG1faXRlbTpGQUlMQ0xPU0VE", "text": text}}]}]})
        .to_string(),
    }
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"fail-closed-secret-fail-closed-secret".to_vec()).expect("long enough")
}

fn queue(clock: &SettableClock) -> Arc<EmbeddedQueue> {
    Arc::new(EmbeddedQueue::new(Arc::new(clock.clone()), Duration::from_secs(30)))
}

async fn tenant(stores: &Stores) -> TenantId {
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![
            ChannelAccount::new(Channel::WhatsApp, WA_ACCOUNT).expect("valid"),
            ChannelAccount::new(Channel::Instagram, IG_ACCOUNT).expect("valid"),
        ],
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
    tenant.id
}

/// What became of one STOP: whether contactability refuses the sender, and what was held.
struct Outcome {
    refused: Option<bool>,
    held: usize,
    alarmed: u64,
}

async fn run(sender: &Sender, text: &str, broken: u8) -> Outcome {
    let clock = SettableClock::at(Timestamp::from_unix_seconds(NOW_SECONDS));
    let stores = shared::store::embedded::stores(Arc::new(clock.clone()));
    let tenant = tenant(&stores).await;
    let optout_queue = queue(&clock);
    let processor = Processor::new(stores.clone(), secret(), Arc::new(clock.clone()), optout_queue.clone());
    let handler = OptOutHandler::new(stores.clone(), queue(&clock), queue(&clock), Arc::new(clock.clone()));
    let received = Timestamp::from_unix_seconds(NOW_SECONDS);
    let mut alarmed = 0;
    for env in envelope::split(body(sender, text, broken).as_bytes(), "req-fail-closed", received)
        .expect("a usable body")
        .envelopes
    {
        alarmed += processor.process(&env).await.expect("processed").optouts_held;
    }
    loop {
        let got = optout_queue.receive(10, Duration::ZERO).await.expect("receive");
        if got.is_empty() {
            break;
        }
        for m in got {
            let cmd = serde_json::from_str(&m.body).expect("a command");
            handler.apply(&cmd).await.expect("applied");
            optout_queue.delete(&m.receipt).await.expect("delete");
        }
    }
    let held = stores
        .quarantine
        .list(
            &QuarantineBucket::OptOutReview { tenant: tenant.clone() },
            &PageRequest::first(10),
        )
        .await
        .expect("list")
        .items
        .len();
    let refused = match sender.stable_id() {
        Some((channel, id)) => {
            let (opt_outs, conversations) = (stores.opt_outs.as_ref(), stores.conversations.as_ref());
            contactability::check(
                opt_outs,
                conversations,
                &secret(),
                &tenant,
                channel,
                id,
                Purpose::Service,
            )
            .await
            .ok()
            .map(|c| !c.contactable)
        }
        None => None,
    };
    Outcome { refused, held, alarmed }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_stop_is_honoured_or_held_for_a_person(
        sender in sender(),
        keyword in proptest::sample::select(OPT_OUT.iter().map(|(k, _)| *k).collect::<Vec<_>>()),
        style in any::<u8>(),
        broken in any::<u8>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let outcome = rt.block_on(run(&sender, &typed(keyword, style), broken));
        let honoured = outcome.refused == Some(true);
        let held_and_alarmed = outcome.held == 1 && outcome.alarmed == 1;
        if sender.stable_id().is_some() {
            // Something identifies the sender: the STOP is applied, never only held.
            prop_assert!(
                honoured && outcome.alarmed == 0,
                "STOP ({keyword:?}) from {sender:?} was not honoured: contactability refused={:?}, held={}, alarmed={}",
                outcome.refused, outcome.held, outcome.alarmed
            );
        } else {
            prop_assert!(
                held_and_alarmed,
                "STOP ({keyword:?}) from {sender:?}, whom nothing identifies, left nothing: held={}, alarmed={}",
                outcome.held, outcome.alarmed
            );
        }
    }
}
