//! The whole system over HTTP: signed Meta webhooks in, stored conversations out, on DynamoDB
//! Local and the SQS server.

use e2e::*;
use serde_json::{Value, json};
use shared::domain::{AuditChain, ChannelAccount, ContactId, DeliveryState, MetaMessageId, QuarantineBucket, TenantId};
use shared::store::{PageRequest, TimeRange};

const ANA: &str = "whatsapp:AR.13491208655302741918";
const CARO: &str = "whatsapp:AR.99887766554433221100";
const IG_PERSON: &str = "instagram:7012345678901234";

/// One POST carrying several bodies' entries: Meta batches up to 1000 updates in one request.
fn merged(names: &[&str]) -> Vec<u8> {
    let mut bodies = names
        .iter()
        .map(|n| serde_json::from_slice::<Value>(&fixture(n)).expect("fixture json"));
    let mut first = bodies.next().expect("at least one");
    for b in bodies {
        let entries = b["entry"].as_array().cloned().unwrap_or_default();
        first["entry"].as_array_mut().expect("entry list").extend(entries);
    }
    serde_json::to_vec(&first).expect("json")
}

const BODIES: &[&str] = &[
    "wa_system_changed_number.json",
    "wa_statuses_out_of_order.json",
    "wa_username_without_phone.json",
    "wa_template_events.json",
    "ig_every_event.json",
    "ig_tenant_b.json",
];

/// Both tenants in one request, then the rest across many; returns once all is processed.
async fn send_every_body(e: &E2e) {
    assert_eq!(
        e.post_webhook(&merged(&["wa_every_type.json", "wa_tenant_b.json"]))
            .await
            .0,
        200
    );
    for name in BODIES {
        assert_eq!(e.post_webhook(&fixture(name)).await.0, 200, "{name}");
    }
    e.drain().await;
}

/// A tenant's contacts as `<channel>:<id>`, sorted: the listing itself is in order of each
/// contact's oldest item.
async fn contact_ids(e: &E2e, tenant: &str) -> Vec<String> {
    let mut ids: Vec<String> = e.contacts(tenant).await.iter().map(contact_key).collect();
    ids.sort();
    ids
}

async fn two_tenants(e: &E2e) {
    assert_eq!(
        e.register("tenant-a", &[A_PHONE_NUMBER_ID, A_WABA], &[A_INSTAGRAM])
            .await
            .0,
        201
    );
    assert_eq!(
        e.register("tenant-b", &[B_PHONE_NUMBER_ID], &[B_INSTAGRAM]).await.0,
        201
    );
}

/// Everything the system shows an operator, for before/after comparisons.
async fn snapshot(e: &E2e) -> Value {
    let mut out = serde_json::Map::new();
    for tenant in ["tenant-a", "tenant-b"] {
        let contacts = e.contacts(tenant).await;
        for c in &contacts {
            let handle = c["contact"].as_str().expect("contact handle").to_owned();
            out.insert(
                format!("{tenant}/{}", contact_key(c)),
                json!({ "contact": c, "messages": e.messages_at(tenant, &handle).await }),
            );
        }
        let (_, events) = e.admin_get(&format!("/admin/tenants/{tenant}/events")).await;
        out.insert(format!("{tenant}/events"), events);
    }
    Value::Object(out)
}

async fn status_of(e: &E2e, tenant: &str, contact: &str, wamid: &str) -> Option<DeliveryState> {
    let (channel, id) = contact.split_once(':').expect("channel:id");
    let channel = if channel == "whatsapp" {
        shared::domain::Channel::WhatsApp
    } else {
        shared::domain::Channel::Instagram
    };
    e.stack
        .stores
        .conversations
        .get_status(
            &TenantId::new(tenant).expect("tenant"),
            &ContactId::new(channel, id).expect("contact"),
            &MetaMessageId::new(wamid).expect("id"),
        )
        .await
        .expect("status read")
        .map(|s| s.state)
}

#[tokio::test]
async fn every_payload_type_is_stored_per_tenant_and_replays_change_nothing() {
    let e = E2e::on_emulators().await;
    two_tenants(&e).await;
    send_every_body(&e).await;

    let a_contacts = contact_ids(&e, "tenant-a").await;
    assert_eq!(a_contacts, vec![IG_PERSON.to_owned(), ANA.to_owned(), CARO.to_owned()]);

    // WhatsApp: every documented type, an unknown future one, kept with its raw JSON, in order.
    let ana = e.messages("tenant-a", ANA).await;
    let kinds: Vec<&str> = ana.iter().map(|m| m["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        kinds,
        [
            "text",
            "image",
            "audio",
            "video",
            "document",
            "sticker",
            "location",
            "contacts",
            "interactive",
            "interactive",
            "interactive",
            "button",
            "reaction",
            "order",
            "text",
            "unsupported",
            "poll_vote",
            "edit",
            "system"
        ]
    );
    assert_eq!(ana[0]["content"]["text"]["body"], "Hola, ¿tienen stock? 😀");
    assert_eq!(
        ana[1]["content"]["image"]["sha256"], "qK8x+Pq9tLfMz2c9Yq8ZrQ==",
        "media kept by reference"
    );
    assert_eq!(ana[14]["content"]["referral"]["ctwa_clid"], "clid1");
    assert_eq!(ana[16]["content"]["poll_vote"]["option"], "A");
    assert!(
        ana.iter()
            .all(|m| m["direction"] == "inbound" && m["expires_at"].is_string())
    );

    // Contacts: profile name, both identifiers, and the number Ana changed to.
    let contacts = e.contacts("tenant-a").await;
    let ana_contact = contacts.iter().find(|c| contact_key(c) == ANA).expect("Ana");
    assert_eq!(ana_contact["profile_name"], "Ana Pérez");
    let ids: Vec<String> = ana_contact["identifiers"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| {
            format!(
                "{}={}",
                i["kind"].as_str().unwrap_or_default(),
                i["value"].as_str().unwrap_or_default()
            )
        })
        .collect();
    for want in [
        "phone=+5491123456789",
        "phone=+5491134567890",
        "whatsapp_user_id=AR.13491208655302741918",
    ] {
        assert!(ids.contains(&want.to_owned()), "{want} in {ids:?}");
    }
    // A username user without a phone number is stored by business-scoped id alone.
    let caro = contacts.iter().find(|c| contact_key(c) == CARO).expect("Caro");
    assert_eq!(caro["identifiers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        e.messages("tenant-a", CARO).await[0]["content"]["text"]["body"],
        "sin número"
    );

    // Statuses arrived read, sent, delivered: they stay read. A failure is terminal.
    assert_eq!(
        status_of(&e, "tenant-a", ANA, "wamid.OUT0001").await,
        Some(DeliveryState::Read)
    );
    assert_eq!(
        status_of(&e, "tenant-a", ANA, "wamid.OUT0002").await,
        Some(DeliveryState::Failed)
    );

    // Template notifications are tenant events.
    let (_, events) = e.admin_get("/admin/tenants/tenant-a/events").await;
    let fields: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert_eq!(fields.len(), 2);
    assert!(fields.contains(&"message_template_status_update") && fields.contains(&"message_template_quality_update"));

    // Instagram: messages, the business's echo as outbound, reaction, postback, referral; seen = status.
    let ig = e.messages("tenant-a", IG_PERSON).await;
    let ig_kinds: Vec<(&str, &str)> = ig
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or_default(),
                m["direction"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ig_kinds,
        [
            ("text", "inbound"),
            ("attachment", "inbound"),
            ("quick_reply", "inbound"),
            ("text", "inbound"),
            ("text", "outbound"),
            ("reaction", "inbound"),
            ("postback", "inbound"),
            ("referral", "inbound")
        ]
    );
    assert_eq!(
        status_of(&e, "tenant-a", IG_PERSON, "aWdfZAG1faXRlbToxMDA1").await,
        Some(DeliveryState::Read)
    );

    // Tenant B sees its own messages only; the same person is a separate contact there.
    let b_contacts = contact_ids(&e, "tenant-b").await;
    assert_eq!(b_contacts, vec![IG_PERSON.to_owned(), ANA.to_owned()]);
    let b_ana = e.messages("tenant-b", ANA).await;
    assert_eq!(b_ana.len(), 1);
    assert_eq!(b_ana[0]["content"]["text"]["body"], "Hola tienda B");

    // Replaying every body changes nothing.
    let before = snapshot(&e).await;
    send_every_body(&e).await;
    assert_eq!(snapshot(&e).await, before);

    // Unsend and revoke delete our copy.
    assert_eq!(e.post_webhook(&fixture("wa_revoke.json")).await.0, 200);
    assert_eq!(e.post_webhook(&fixture("ig_unsend.json")).await.0, 200);
    e.drain().await;
    let ana_after = e.messages("tenant-a", ANA).await;
    assert_eq!(ana_after.len(), ana.len() - 1);
    assert!(
        ana_after.iter().all(|m| m["kind"] != "video"),
        "the revoked video is gone"
    );
    let ig_after = e.messages("tenant-a", IG_PERSON).await;
    assert!(
        ig_after.iter().all(|m| m["kind"] != "attachment"),
        "the unsent attachment is gone"
    );
    assert_eq!(ig_after.len(), ig.len() - 1);
    // Meta redelivers the originals after the deletion: they stay deleted.
    assert_eq!(e.post_webhook(&fixture("wa_every_type.json")).await.0, 200);
    assert_eq!(e.post_webhook(&fixture("ig_every_event.json")).await.0, 200);
    e.drain().await;
    assert_eq!(e.messages("tenant-a", ANA).await, ana_after);
    assert_eq!(e.messages("tenant-a", IG_PERSON).await, ig_after);

    // Every admin read above was audited.
    let audit = e
        .stack
        .stores
        .audit
        .list(
            &AuditChain::Tenant(TenantId::new("tenant-a").expect("t")),
            &TimeRange::ALL,
            &PageRequest::first(100),
        )
        .await
        .expect("audit");
    assert!(audit.items.len() >= 10, "{} audit events", audit.items.len());
    assert!(audit.items.iter().all(|a| a.event.actor == OPERATOR));
    // They name contacts by handle: no stable id, no phone number in the audit trail.
    let trail = serde_json::to_string(&audit.items).expect("json");
    for personal in [
        "13491208655302741918",
        "99887766554433221100",
        "7012345678901234",
        "5491123456789",
    ] {
        assert!(!trail.contains(personal), "the audit trail holds {personal}");
    }
    let ana_handle = e.handle("tenant-a", ANA).await;
    assert!(
        audit
            .items
            .iter()
            .any(|a| a.event.contact.as_ref().is_some_and(|c| c.as_str() == ana_handle)),
        "reads of Ana's messages are audited under her handle"
    );
    e.stack.stop().await;
}

#[tokio::test]
async fn a_tampered_body_gets_401_and_stores_nothing() {
    let e = E2e::on_emulators().await;
    two_tenants(&e).await;
    let body = fixture("wa_every_type.json");
    let signature = sign(&body);
    let mut tampered = body.clone();
    let at = tampered.windows(4).position(|w| w == b"Hola").expect("has Hola");
    tampered[at] = b'h';
    assert_eq!(e.post_webhook_signed_as(&tampered, Some(signature)).await.0, 401);
    assert_eq!(e.post_webhook_signed_as(&body, None).await.0, 401, "no signature");
    let sha1_only = format!("sha1={}", "0".repeat(40));
    assert_eq!(
        e.post_webhook_signed_as(&body, Some(sha1_only)).await.0,
        401,
        "SHA-1 only"
    );
    e.drain().await;
    assert!(e.contacts("tenant-a").await.is_empty());
    let rejected = e
        .stack
        .stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(10))
        .await
        .expect("q");
    assert!(rejected.items.is_empty());
    e.stack.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_the_documented_answers_and_lose_nothing() {
    let e = E2e::on_emulators().await;
    two_tenants(&e).await;
    let deep = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{}{}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    // Bad input beside good: a change without `value` and an entry without `id`, next to one valid message.
    let mut mixed: Value = serde_json::from_slice(&fixture("wa_tenant_b.json")).expect("json");
    mixed["entry"]
        .as_array_mut()
        .expect("entries")
        .push(json!({"changes": [{"field": "messages"}]}));
    mixed["entry"][0]["changes"]
        .as_array_mut()
        .expect("changes")
        .push(json!({"field": "messages"}));
    let mut three_mb = br#"{"object":"whatsapp_business_account","entry":["#.to_vec();
    while three_mb.len() < 3 * 1024 * 1024 - 64 {
        three_mb.extend_from_slice(br#"{"id":"1","changes":[{"field":"messages","value":{"text":"x"}}]},"#);
    }
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("3 MB of unterminated JSON", three_mb, 200),
        (
            "invalid JSON",
            b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec(),
            200,
        ),
        ("10,000-deep nesting", deep.into_bytes(), 200),
        ("7 MB body", vec![b' '; 7 * 1024 * 1024], 413),
        (
            "wrong object",
            br#"{"object":"page","entry":[{"id":"1","messaging":[]}]}"#.to_vec(),
            200,
        ),
        (
            "missing fields beside one valid message",
            serde_json::to_vec(&mixed).expect("json"),
            200,
        ),
    ];
    for (what, body, expected) in &cases {
        let (status, text) = e.post_webhook(body).await;
        assert_eq!(status, *expected, "{what}: {text}");
    }
    e.drain().await;
    // The valid message is stored; nothing was invented for tenant A.
    let b = e.messages("tenant-b", ANA).await;
    assert_eq!(b.len(), 1);
    assert!(e.contacts("tenant-a").await.is_empty());
    // Each unusable body or part is held with its reason: 4 whole bodies + 2 parts.
    let held = e
        .stack
        .stores
        .quarantine
        .list(&QuarantineBucket::Rejected, &PageRequest::first(20))
        .await
        .expect("q");
    assert_eq!(
        held.items.len(),
        6,
        "{:?}",
        held.items.iter().map(|q| &q.reason).collect::<Vec<_>>()
    );
    assert!(
        held.items.iter().any(|q| q.envelope.len() > 3 * 1024 * 1024 - 100),
        "the 3 MB body is kept whole"
    );
    e.stack.stop().await;
}

#[tokio::test]
async fn an_unknown_account_is_held_and_processed_once_its_tenant_registers() {
    let e = E2e::on_emulators().await;
    assert_eq!(e.post_webhook(&fixture("wa_unknown_account.json")).await.0, 200);
    e.drain().await;
    let account = ChannelAccount::new(shared::domain::Channel::WhatsApp, "106540352240000").expect("account");
    let bucket = QuarantineBucket::Unrouted { account };
    let held = e
        .stack
        .stores
        .quarantine
        .list(&bucket, &PageRequest::first(10))
        .await
        .expect("q");
    assert_eq!(held.items.len(), 1, "held, not dropped");

    let (status, body) = e.register("late-tenant", &["106540352240000"], &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["replayed_envelopes"], 1);
    e.drain().await;
    let messages = e.messages("late-tenant", ANA).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"]["text"]["body"], "¿Hay alguien?");
    assert!(
        e.stack
            .stores
            .quarantine
            .list(&bucket, &PageRequest::first(10))
            .await
            .expect("q")
            .items
            .is_empty()
    );
    e.stack.stop().await;
}

#[tokio::test]
async fn verification_and_admin_errors_over_http() {
    let e = E2e::on_emulators().await;
    let (status, body) = e
        .get("/webhooks/meta?hub.mode=subscribe&hub.verify_token=e2e-verify&hub.challenge=1158201444")
        .await;
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    assert_eq!(
        e.get("/webhooks/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
            .await
            .0,
        403
    );
    assert_eq!(e.get("/webhooks/meta?hub.mode=subscribe").await.0, 400);

    assert_eq!(e.get("/admin/tenants/a/contacts").await.0, 401, "no bearer token");
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0, 201);
    let (status, body) = e.register("tenant-z", &[A_PHONE_NUMBER_ID], &[]).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = e
        .admin_post(
            "/admin/tenants",
            &json!({"tenant_id": "ok-tenant", "name": "X", "retention_months": 30}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap_or_default().contains("retention_months"),
        "{body}"
    );
    // A tenant the operator is not assigned to is refused before anything is looked up.
    assert_eq!(e.admin_get("/admin/tenants/nobody/contacts").await.0, 403);
    // Contacts are named by handle only: the old `<channel>:<id>` form names nobody.
    for old in ["sms:1", "whatsapp:AR.13491208655302741918", "whatsapp:5491123456789"] {
        assert_eq!(
            e.admin_get(&format!("/admin/tenants/tenant-a/contacts/{old}/messages"))
                .await
                .0,
            404,
            "{old}"
        );
    }
    e.stack.stop().await;
}

#[tokio::test]
async fn large_changes_pass_the_queue_and_unhandled_fields_are_held() {
    let e = E2e::on_emulators().await;
    two_tenants(&e).await;
    // 150 long messages in one change: about 640 KB, past SQS's 256 KiB default message size.
    let text = "¿Tienen stock? ".repeat(260);
    let messages: Vec<Value> = (0..150)
        .map(|i| {
            json!({"from": "5491123456789", "from_user_id": "AR.13491208655302741918", "id": format!("wamid.BIG{i:04}"),
                "timestamp": (1_800_000_000 + i).to_string(), "type": "text", "text": {"body": text}})
        })
        .collect();
    let big = json!({"object": "whatsapp_business_account", "entry": [{"id": A_WABA, "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": A_PHONE_NUMBER_ID}, "messages": messages}}]}]});
    let body = serde_json::to_vec(&big).expect("json");
    assert!(body.len() > 600 * 1024, "{} bytes", body.len());
    assert_eq!(e.post_webhook(&body).await.0, 200);
    // A field this system does not process yet: kept, not dropped.
    let unhandled = json!({"object": "whatsapp_business_account", "entry": [{"id": A_WABA, "changes": [{"field": "smb_app_state_sync",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": A_PHONE_NUMBER_ID}, "state_sync": []}}]}]});
    assert_eq!(
        e.post_webhook(&serde_json::to_vec(&unhandled).expect("json")).await.0,
        200
    );
    e.drain().await;
    assert_eq!(e.messages("tenant-a", ANA).await.len(), 100, "first page");
    let ana = e.handle("tenant-a", ANA).await;
    let (_, page) = e
        .admin_get(&format!("/admin/tenants/tenant-a/contacts/{ana}/messages?limit=100"))
        .await;
    let cursor = page["next_cursor"].as_str().expect("a second page").to_owned();
    assert!(!cursor.contains("13491208655302741918"), "the cursor is sealed");
    let (_, rest) = e
        .admin_get(&format!(
            "/admin/tenants/tenant-a/contacts/{ana}/messages?limit=100&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(50));
    // The cursor pages through Ana's messages only.
    let (status, body) = e
        .admin_get(&format!("/admin/tenants/tenant-a/contacts?cursor={cursor}"))
        .await;
    assert_eq!(status, 400, "{body}");
    let held = e
        .stack
        .stores
        .quarantine
        .list(&QuarantineBucket::Unhandled, &PageRequest::first(10))
        .await
        .expect("q");
    assert_eq!(held.items.len(), 1);
    assert!(held.items[0].reason.contains("smb_app_state_sync"));
    e.stack.stop().await;
}

#[tokio::test]
async fn stop_blocks_every_linked_identifier_and_start_restores_it() {
    let (graph, e) = E2e::with_graph().await;
    two_tenants(&e).await;
    // What the sender delivered through Meta's API since the last look.
    let mut seen = 0;
    let mut replies = || {
        let all = graph.sends();
        let new: Vec<Value> = all[seen..].iter().filter_map(|r| r.body.clone()).collect();
        seen = all.len();
        new
    };
    let propagation = e.stack.queues[&shared::config::QueueKind::Propagation].clone();
    let forms = [
        "+54 9 11 2345-6789",
        "011 15 2345-6789",
        "5491123456789",
        "AR.13491208655302741918",
    ];

    assert_eq!(e.post_webhook(&fixture("wa_stop.json")).await.0, 200);
    e.drain().await;
    for form in forms {
        let c = e.contactability("tenant-a", "whatsapp", form, "service").await;
        assert_eq!(c["contactable"], false, "{form} after STOP: {c}");
        assert_eq!(
            (c["scope"].as_str(), c["source"].as_str()),
            (Some("all"), Some("keyword"))
        );
    }
    assert_eq!(
        e.contactability("tenant-b", "whatsapp", forms[0], "service").await["contactable"],
        true,
        "per tenant"
    );
    let confirmations = replies();
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    let english = shared::optout::replies::text(
        shared::optout::command::ReplyKind::OptOutConfirmation,
        shared::domain::Locale::English,
        "Tenant tenant-a",
    );
    assert_eq!(
        confirmations[0]["text"]["body"],
        english.as_str(),
        "in the STOP's language"
    );
    assert_eq!(confirmations[0]["recipient"], "AR.13491208655302741918");
    let events = E2e::take_all(&propagation).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "opted_out");
    assert!(
        !events[0].to_string().contains("5491123456789"),
        "propagation carries subject keys only"
    );

    // Ana's number change arrives after the STOP: the new number is opted out too.
    assert_eq!(e.post_webhook(&fixture("wa_system_changed_number.json")).await.0, 200);
    e.drain().await;
    let changed = e
        .contactability("tenant-a", "whatsapp", "+54 9 11 3456-7890", "service")
        .await;
    assert_eq!(
        changed["contactable"], false,
        "a number linked after the STOP: {changed}"
    );
    let question = serde_json::json!({"tenant": "tenant-a", "channel": "instagram", "id": "ana.perez"});
    let (status, _) = e.admin_post("/admin/contactability", &question).await;
    assert_eq!(
        status, 400,
        "usernames are not linked yet: refused, not answered contactable"
    );

    // A replay of the STOP: no second confirmation, nothing published.
    assert_eq!(e.post_webhook(&fixture("wa_stop.json")).await.0, 200);
    e.drain().await;
    assert!(replies().is_empty());
    assert!(E2e::take_all(&propagation).await.is_empty());

    assert_eq!(e.post_webhook(&fixture("wa_start.json")).await.0, 200);
    e.drain().await;
    for form in forms {
        assert_eq!(
            e.contactability("tenant-a", "whatsapp", form, "marketing").await["contactable"],
            true,
            "{form} after START"
        );
    }
    let confirmations = replies();
    assert_eq!(confirmations.len(), 1);
    let back = shared::optout::replies::text(
        shared::optout::command::ReplyKind::OptInConfirmation,
        shared::domain::Locale::English,
        "Tenant tenant-a",
    );
    assert_eq!(confirmations[0]["text"]["body"], back.as_str());
    assert_eq!(E2e::take_all(&propagation).await.len(), 1, "opted_in published");
    for name in ["wa_stop.json", "wa_start.json"] {
        assert_eq!(e.post_webhook(&fixture(name)).await.0, 200);
    }
    e.drain().await;
    assert!(replies().is_empty(), "replays of both send nothing");
    assert!(E2e::take_all(&propagation).await.is_empty());
    assert_eq!(
        e.contactability("tenant-a", "whatsapp", forms[1], "service").await["contactable"],
        true,
        "START is newer"
    );

    // A keyword inside a sentence is not acted on; it waits for a person.
    assert_eq!(e.post_webhook(&fixture("wa_decoy.json")).await.0, 200);
    e.drain().await;
    assert_eq!(
        e.contactability("tenant-a", "whatsapp", forms[0], "service").await["contactable"],
        true
    );
    let review = e
        .stack
        .stores
        .quarantine
        .list(
            &QuarantineBucket::OptOutReview {
                tenant: TenantId::new("tenant-a").expect("valid"),
            },
            &PageRequest::first(10),
        )
        .await
        .expect("q");
    assert_eq!(review.items.len(), 1);

    // Meta's marketing preference: marketing blocked, service messages still allowed, no reply.
    assert_eq!(e.post_webhook(&fixture("wa_user_preferences_stop.json")).await.0, 200);
    e.drain().await;
    let marketing = e
        .contactability("tenant-a", "whatsapp", "+54 9 11 5555-7777", "marketing")
        .await;
    assert_eq!(
        (marketing["contactable"].as_bool(), marketing["scope"].as_str()),
        (Some(false), Some("marketing"))
    );
    assert_eq!(marketing["source"], "user_preferences");
    assert_eq!(
        e.contactability("tenant-a", "whatsapp", "AR.55667788990011223344", "service")
            .await["contactable"],
        true
    );
    assert!(replies().is_empty());
    assert_eq!(E2e::take_all(&propagation).await.len(), 1);
    e.stack.stop().await;
    graph.stop().await;
}
