//! One erasure request, end to end on DynamoDB Local and the SQS server: a person who wrote to
//! three tenants over WhatsApp and Instagram, and said STOP to one, asks to be deleted.

use e2e::*;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};

const C_PHONE_NUMBER_ID: &str = "106540352240003";
const UNREGISTERED_PHONE_NUMBER_ID: &str = "106540352248888";
const ANA_WA_ID: &str = "5491123456789";
const ANA_BSUID: &str = "AR.13491208655302741918";
const ANA_IGSID: &str = "7012345678901234";
const BRUNO_WA_ID: &str = "5491166660000";
const ANA_USERNAME: &str = "ana.perez.ok";

/// A loopback Graph API that knows Ana's username and holds tenant B's Instagram token, and a
/// stack that asks it.
async fn stack_with_graph_knowing_ana() -> (local_stack::graph_server::GraphServer, E2e) {
    let env = [(
        "INSTAGRAM_ACCESS_TOKENS",
        json!({ B_INSTAGRAM: GRAPH_TOKEN }).to_string(),
    )];
    let (graph, e) = E2e::with_graph_and(&env).await;
    graph.set_username(ANA_IGSID, ANA_USERNAME);
    (graph, e)
}

fn whatsapp(phone_number_id: &str, wa_id: &str, user_id: Option<&str>, wamid: &str, at: i64, text: &str) -> Vec<u8> {
    let name = if wa_id == ANA_WA_ID {
        "Ana Pérez"
    } else {
        "Bruno Gómez"
    };
    let mut contact = json!({"profile": {"name": name}, "wa_id": wa_id});
    let mut message =
        json!({"from": wa_id, "id": wamid, "timestamp": at.to_string(), "type": "text", "text": {"body": text}});
    if let Some(u) = user_id {
        contact["user_id"] = json!(u);
        message["from_user_id"] = json!(u);
    }
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": phone_number_id},
            "contacts": [contact],
            "messages": [message],
        }}]}],
    }))
    .expect("json")
}

fn instagram(account: &str, sender: &str, mid: &str, at_ms: i64, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "instagram",
        "entry": [{"id": account, "time": at_ms, "messaging": [{
            "sender": {"id": sender}, "recipient": {"id": account}, "timestamp": at_ms,
            "message": {"mid": mid, "text": text},
        }]}],
    }))
    .expect("json")
}

fn key_of(kind: IdentifierKind, raw: &str) -> shared::identity::SubjectKey {
    let secret = SubjectKeySecret::new(E2E_SUBJECT_KEY_SECRET.as_bytes().to_vec()).expect("secret");
    secret.subject_key(&Identifier::parse(kind, raw).expect("identifier"))
}

fn subject_key(kind: IdentifierKind, raw: &str) -> String {
    key_of(kind, raw).to_string()
}

#[tokio::test]
async fn one_erasure_request_leaves_nothing_of_the_person_but_the_suppression_and_the_receipt() {
    // Instagram tells her username to tenant B's account, which is how a request by username
    // reaches her Instagram conversation.
    let (graph, e) = stack_with_graph_knowing_ana().await;
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
    assert_eq!(e.register("late-tenant", &[C_PHONE_NUMBER_ID], &[]).await.0, 201);
    let now = shared::timestamp::Timestamp::parse_rfc3339("2026-12-01T12:00:00Z")
        .expect("time")
        .unix_seconds();
    for body in [
        whatsapp(
            A_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.ANA-A-1",
            now,
            "hola A, soy Ana",
        ),
        whatsapp(
            A_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.ANA-A-2",
            now + 60,
            "STOP",
        ),
        whatsapp(
            B_PHONE_NUMBER_ID,
            ANA_WA_ID,
            None,
            "wamid.ANA-B-1",
            now + 120,
            "hola B, soy Ana",
        ),
        whatsapp(
            C_PHONE_NUMBER_ID,
            ANA_WA_ID,
            None,
            "wamid.ANA-C-1",
            now + 180,
            "hola C, soy Ana",
        ),
        instagram(
            B_INSTAGRAM,
            ANA_IGSID,
            "aWdfANA1",
            (now + 240) * 1000,
            "hola tienda B, soy Ana",
        ),
        whatsapp(
            A_PHONE_NUMBER_ID,
            BRUNO_WA_ID,
            None,
            "wamid.BRUNO-1",
            now + 300,
            "soy Bruno",
        ),
        // To a number no tenant has registered yet: held in quarantine until one does.
        whatsapp(
            UNREGISTERED_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.ANA-X-1",
            now + 360,
            "hola X, soy Ana",
        ),
    ] {
        assert_eq!(e.post_webhook(&body).await.0, 200);
    }
    // An envelope of hers that failed every delivery, as SQS moves it to the dead-letter queue:
    // the dead-letter function moves it on into quarantine.
    let dead = shared::meta::envelope::split(
        &whatsapp(
            B_PHONE_NUMBER_ID,
            ANA_WA_ID,
            None,
            "wamid.ANA-B-DEAD",
            now + 420,
            "hola B otra vez, soy Ana",
        ),
        "dead-letter-test",
        e.stack.clock.now(),
    )
    .expect("split")
    .envelopes;
    e.stack.queues_by_id["IngestDeadLetterQueue"]
        .send_batch(&dead)
        .await
        .expect("dead letter");
    e.drain().await;
    assert_eq!(e.messages("tenant-a", &format!("whatsapp:{ANA_BSUID}")).await.len(), 2);
    let ana_phone = key_of(IdentifierKind::Phone, ANA_WA_ID);
    let held = e.stack.stores.quarantine.find_subject(&ana_phone).await.expect("find");
    assert_eq!(
        held.len(),
        2,
        "the unrouted and the dead-lettered envelope are findable by her phone"
    );
    assert_eq!(
        e.stack
            .stores
            .conversations
            .find_subject(&key_of(IdentifierKind::InstagramUsername, ANA_USERNAME))
            .await
            .expect("find")
            .len(),
        1,
        "her Instagram contact is linked to the username the Graph API gave"
    );
    assert!(
        graph
            .requests()
            .iter()
            .filter(|r| !r.path.ends_with("/messages"))
            .all(|r| r.path.ends_with(ANA_IGSID) && r.authorization == Some(format!("Bearer {GRAPH_TOKEN}"))),
        "{:?}",
        graph.requests()
    );
    assert!(
        held.iter().any(|q| matches!(
            q.bucket,
            shared::domain::QuarantineBucket::DeadLettered {
                source: shared::domain::DeadLetterSource::Ingest
            }
        )),
        "{held:?}"
    );

    let request = json!({
        "kind": "erasure",
        "identifiers": [
            {"type": "phone", "value": "+54 9 11 2345-6789"},
            {"type": "phone", "value": "011 15 2345-6789"},
            {"type": "whatsapp_user_id", "value": ANA_BSUID},
            {"type": "instagram_username", "value": "@Ana.Perez.OK"},
        ],
        "source": "email",
        "jurisdiction": "ar",
    });
    let (status, created) = e.admin_post("/admin/privacy-requests", &request).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["identifiers"].as_array().map(Vec::len),
        Some(3),
        "one phone in two formats"
    );
    let id = created["id"].as_str().expect("id").to_owned();
    let code = created["confirmation_code"].as_str().expect("code").to_owned();
    let (status, approved) = e
        .admin_post(
            &format!("/admin/privacy-requests/{id}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    e.drain().await;

    let (_, done) = e.admin_get(&format!("/admin/privacy-requests/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let receipt = &done["receipt"];
    assert_eq!(receipt["contacts_erased"], 4, "{receipt}");
    assert_eq!(receipt["erased"]["quarantine"], 2, "{receipt}");
    assert!(receipt["verified_at"].is_string(), "{receipt}");
    for (kind, raw) in [
        (IdentifierKind::Phone, ANA_WA_ID),
        (IdentifierKind::WhatsAppUserId, ANA_BSUID),
    ] {
        let left = e
            .stack
            .stores
            .quarantine
            .find_subject(&key_of(kind, raw))
            .await
            .expect("find");
        assert!(left.is_empty(), "a quarantined envelope naming her by {kind:?} is left");
    }

    // Her first message and the Instagram one arrive again (Meta retries, a redrive): from
    // before the erasure, so nothing is stored.
    for body in [
        whatsapp(
            A_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.ANA-A-1",
            now,
            "hola A, soy Ana",
        ),
        instagram(
            B_INSTAGRAM,
            ANA_IGSID,
            "aWdfANA1",
            (now + 240) * 1000,
            "hola tienda B, soy Ana",
        ),
    ] {
        assert_eq!(e.post_webhook(&body).await.0, 200);
    }
    e.drain().await;

    // Every table, scanned: none of Ana's identifiers or words, and her subject keys only in
    // the suppression entry (OptOuts), the request that holds the receipt, and the erasure
    // ledger (its own partitions of the conversations table).
    let is_ledger = |item: &str| item.contains("pk: S(\"ERASED#") || item.contains("\"pk\": S(\"ERASED#");
    let keys = [
        subject_key(IdentifierKind::Phone, ANA_WA_ID),
        subject_key(IdentifierKind::WhatsAppUserId, ANA_BSUID),
        subject_key(IdentifierKind::InstagramId, ANA_IGSID),
        subject_key(IdentifierKind::InstagramUsername, ANA_USERNAME),
    ];
    let tables = e.stack.tables.clone().expect("emulator tables");
    let allowed = [
        tables.get(shared::config::TableKind::OptOuts).to_owned(),
        tables.get(shared::config::TableKind::PrivacyRequests).to_owned(),
    ];
    let items = e.scan_tables().await;
    let mut saw_bruno = false;
    for (table, item) in &items {
        // Phrases, not bare names: base64 in sealed handles could spell a short word by chance.
        for needle in [ANA_WA_ID, ANA_BSUID, ANA_IGSID, ANA_USERNAME, "soy Ana", "Ana P"] {
            assert!(!item.contains(needle), "{needle} left in {table}: {item}");
        }
        for key in &keys {
            assert!(
                !item.contains(key.as_str()) || allowed.contains(table) || is_ledger(item),
                "a subject key of Ana's left in {table}: {item}"
            );
        }
        saw_bruno |= item.contains("soy Bruno");
    }
    assert!(saw_bruno, "another person's message in the same tenant stays");
    assert!(
        items
            .iter()
            .any(|(t, i)| *t == allowed[0] && i.contains(keys[0].as_str())),
        "the suppression entry outlives the erasure"
    );

    // What she writes after the erasure is stored as usual.
    let later = e.stack.clock.now().unix_seconds() + 60;
    let body = whatsapp(
        B_PHONE_NUMBER_ID,
        ANA_WA_ID,
        None,
        "wamid.ANA-B-2",
        later,
        "hola otra vez, soy Ana",
    );
    assert_eq!(e.post_webhook(&body).await.0, 200);
    e.drain().await;
    assert_eq!(e.messages("tenant-b", &format!("whatsapp:{ANA_WA_ID}")).await.len(), 1);

    // Still not to be contacted where she said STOP.
    let c = e
        .contactability("tenant-a", "whatsapp", "+54 9 11 2345-6789", "service")
        .await;
    assert_eq!(c["contactable"], false, "{c}");

    let resp = e
        .http
        .get(format!("{}/privacy/requests/{code}", e.stack.url()))
        .header("accept", "application/json")
        .send()
        .await
        .expect("status page");
    assert_eq!(resp.status().as_u16(), 200);
    let page: Value = resp.json().await.expect("json");
    assert_eq!(page["status"], "completed", "{page}");
    let (status, html) = e.get(&format!("/privacy/requests/{code}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Completada"), "{html}");
    e.stack.stop().await;
    graph.stop().await;
}

#[tokio::test]
async fn a_deletion_phrase_in_the_chat_erases_the_sender_there_and_replies_with_the_status_link() {
    let (graph, e) = E2e::with_graph().await;
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID, A_WABA], &[]).await.0, 201);
    assert_eq!(e.register("tenant-b", &[B_PHONE_NUMBER_ID], &[]).await.0, 201);
    let now = e.stack.clock.now().unix_seconds() - 600;
    for body in [
        whatsapp(
            A_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.CHAT-1",
            now,
            "hola, soy Ana",
        ),
        whatsapp(
            B_PHONE_NUMBER_ID,
            ANA_WA_ID,
            None,
            "wamid.CHAT-B",
            now + 1,
            "hola B, soy Ana",
        ),
        whatsapp(
            A_PHONE_NUMBER_ID,
            ANA_WA_ID,
            Some(ANA_BSUID),
            "wamid.CHAT-2",
            now + 60,
            "BORRAR MIS DATOS",
        ),
    ] {
        assert_eq!(e.post_webhook(&body).await.0, 200);
    }
    e.drain().await;

    // The sender delivered the reply through Meta's API, to the number that asked.
    let sends = graph.sends();
    let reply = sends
        .iter()
        .filter_map(|r| r.body.as_ref())
        .find(|b| {
            b["text"]["body"]
                .as_str()
                .is_some_and(|t| t.contains("/privacy/requests/"))
        })
        .unwrap_or_else(|| panic!("a reply with the status link: {sends:?}"));
    assert_eq!(reply["recipient"], ANA_BSUID);
    assert_eq!(sends.len(), 1, "one reply, however the erasure and the send interleave");
    let text = reply["text"]["body"].as_str().expect("text");
    let link = text.rsplit(' ').next().expect("the link");
    assert!(
        link.starts_with(&format!("{}/privacy/requests/", e.stack.url())),
        "{text}"
    );
    let page: Value = e
        .http
        .get(link)
        .header("accept", "application/json")
        .send()
        .await
        .expect("status page")
        .json()
        .await
        .expect("json");
    assert_eq!(page["status"], "completed", "{page}");
    assert_eq!(page["kind"], "erasure");
    assert!(e.contacts("tenant-a").await.is_empty(), "she is erased where she asked");
    assert_eq!(e.contacts("tenant-b").await.len(), 1, "and only there");
    e.stack.stop().await;
    graph.stop().await;
}

#[tokio::test]
async fn the_operator_cli_answers_an_access_request_from_the_privacy_mailbox() {
    use local_stack::privacy_cli::{self, Output};
    let e = E2e::on_emulators().await;
    assert_eq!(e.register("tenant-a", &[A_PHONE_NUMBER_ID], &[]).await.0, 201);
    let now = e.stack.clock.now().unix_seconds();
    for (wa_id, wamid, text) in [
        (ANA_WA_ID, "wamid.CLI-ANA", "hola, soy Ana"),
        (BRUNO_WA_ID, "wamid.CLI-BRUNO", "soy Bruno"),
    ] {
        let body = whatsapp(A_PHONE_NUMBER_ID, wa_id, None, wamid, now, text);
        assert_eq!(e.post_webhook(&body).await.0, 200);
    }
    e.drain().await;
    let cli = |line: String| {
        let api = e.stack.url();
        async move {
            let mut args = vec![
                "--api".to_owned(),
                api,
                "--token".to_owned(),
                ADMIN.to_owned(),
                "--ticket".to_owned(),
                "MAILBOX-1234".to_owned(),
            ];
            args.extend(line.split_whitespace().map(str::to_owned));
            let inv = privacy_cli::parse(args, |_| None).expect("a valid command line");
            privacy_cli::run(&local_stack::http_client(), &inv, None).await
        }
    };
    let text = |out: Result<Output, String>| match out.expect("the command succeeds") {
        Output::Text(t) => t,
        other => panic!("not text: {other:?}"),
    };
    let created: Value = serde_json::from_str(&text(
        cli("create --kind access --id phone=+54911-2345-6789 --source email --jurisdiction ar".into()).await,
    ))
    .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let listed = text(cli("list".into()).await);
    let row = listed
        .lines()
        .find(|l| l.contains(&id))
        .expect("the new request is listed");
    assert!(
        row.contains(" 9  access") || row.contains(" 10  access"),
        "10 calendar days for access in Argentina: {listed}"
    );

    let early = cli(format!("export {id}")).await.expect_err("not approved yet");
    assert!(early.starts_with("409"), "{early}");
    text(cli(format!("decide {id} approve")).await);
    let Output::Export { bytes, .. } = cli(format!("export {id} --csv")).await.expect("export") else {
        panic!("an export");
    };
    let csv = String::from_utf8(bytes).expect("utf-8");
    assert!(csv.contains("hola, soy Ana"), "{csv}");
    assert!(!csv.contains("soy Bruno"), "another person's message: {csv}");
    let shown: Value = serde_json::from_str(&text(cli(format!("show {id}")).await)).expect("json");
    assert_eq!(shown["status"], "completed", "{shown}");
    assert_eq!(text(cli("list".into()).await), "no open privacy requests");

    // The ticket is what the audit trail records as the reason.
    let (_, trail) = e.admin_get("/admin/audit").await;
    assert!(
        trail["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|l| l["event"]["reason"] == "MAILBOX-1234"
                && l["event"]["route"] == "GET /admin/privacy-requests/{id}/export"),
        "{trail}"
    );
    e.stack.stop().await;
}

#[tokio::test]
async fn a_graph_api_outage_stores_the_message_anyway_and_the_next_one_links_the_username() {
    let (graph, e) = stack_with_graph_knowing_ana().await;
    assert_eq!(
        e.register("tenant-b", &[B_PHONE_NUMBER_ID], &[B_INSTAGRAM]).await.0,
        201
    );
    let username = key_of(IdentifierKind::InstagramUsername, ANA_USERNAME);
    let linked = || async {
        e.stack
            .stores
            .conversations
            .find_subject(&username)
            .await
            .expect("find")
            .len()
    };
    // Instagram's API is down for longer than a lookup's attempts.
    graph.fail_next(&[503, 503, 503]);
    let now_ms = e.stack.clock.now().unix_millis();
    assert_eq!(
        e.post_webhook(&instagram(B_INSTAGRAM, ANA_IGSID, "aWdfOUT1", now_ms, "hola, soy Ana"))
            .await
            .0,
        200
    );
    e.drain().await;
    assert_eq!(
        e.messages("tenant-b", &format!("instagram:{ANA_IGSID}")).await.len(),
        1,
        "the message is stored without the username"
    );
    assert_eq!(linked().await, 0);
    assert_eq!(
        graph.requests().len(),
        3,
        "asked three times, then gave up for this message"
    );

    // Her next message asks again, and this time the username is linked.
    assert_eq!(
        e.post_webhook(&instagram(B_INSTAGRAM, ANA_IGSID, "aWdfOUT2", now_ms + 1000, "¿están?"))
            .await
            .0,
        200
    );
    e.drain().await;
    assert_eq!(linked().await, 1);
    assert_eq!(graph.requests().len(), 4);

    // A third message finds it known: no more lookups.
    assert_eq!(
        e.post_webhook(&instagram(B_INSTAGRAM, ANA_IGSID, "aWdfOUT3", now_ms + 2000, "gracias"))
            .await
            .0,
        200
    );
    e.drain().await;
    assert_eq!(graph.requests().len(), 4, "the username is known to the process");

    // A username nobody here has: the erasure completes with nothing found.
    let (_, created) = e
        .admin_post(
            "/admin/privacy-requests",
            &json!({"kind": "erasure", "source": "email",
                    "identifiers": [{"type": "instagram_username", "value": "someone.else"}]}),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    e.admin_post(
        &format!("/admin/privacy-requests/{id}/decision"),
        &json!({"decision": "approve"}),
    )
    .await;
    e.drain().await;
    let (_, done) = e.admin_get(&format!("/admin/privacy-requests/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["receipt"]["no_data_found"], true, "{done}");
    assert_eq!(linked().await, 1, "Ana is untouched");
    e.stack.stop().await;
    graph.stop().await;
}
