//! Privacy requests end to end on the embedded stores: intake, decisions, access, the worker,
//! the receipt, Meta's callback and the status page.

mod common;

use common::*;
use deletion::erasure::Outcome;
use http::Method;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::domain::{AuditAction, AuditChain, Channel, ContactId, RequestId};
use shared::identity::IdentifierKind;
use shared::meta::signature::AppSecret;
use shared::store::{PageRequest, TimeRange};

async fn create(env: &Env, body: Value) -> (u16, Value) {
    env.call(Some(OFFICER), Method::POST, "/admin/privacy-requests", Some(body))
        .await
}

async fn decide(env: &Env, id: &str, body: Value) -> (u16, Value) {
    env.call(
        Some(OFFICER),
        Method::POST,
        &format!("/admin/privacy-requests/{id}/decision"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn an_emailed_erasure_waits_for_approval_and_has_its_jurisdictions_deadline() {
    let env = Env::new().await;
    let (status, body) = create(&env, ana_erasure()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "received");
    assert_eq!(body["kind"], "erasure");
    // Received Wednesday 2026-12-02 09:00 in Buenos Aires: five business days, with Tuesday
    // 8 December (Immaculate Conception) not one of them, run to the end of Thursday 10 December.
    assert_eq!(body["due_at"], "2026-12-11T02:59:59.999Z", "{body}");
    assert_eq!(body["days_left"], 8);
    let code = body["confirmation_code"].as_str().expect("code");
    assert_eq!(code.len(), 32, "128 bits as hex");
    assert_eq!(
        body["status_url"],
        format!("https://privacy.example.com/privacy/requests/{code}")
    );
    assert_eq!(
        body["identifiers"],
        json!(["phone", "whatsapp_user_id", "instagram_id"])
    );
    assert!(!body.to_string().contains("5555"), "no identifier is echoed: {body}");
    assert_eq!(
        env.queue.pending().await.expect("pending"),
        0,
        "nothing runs before approval"
    );
    // The same person again, with the phone in another format: the open request answers.
    let again = json!({
        "kind": "erasure",
        "identifiers": [{"type": "phone", "value": PHONE}],
        "source": "operator",
    });
    let (status, dup) = create(&env, again).await;
    assert_eq!(status, 200, "{dup}");
    assert_eq!(dup["id"], body["id"]);
    assert_eq!(env.open_requests().await, 1);
}

#[tokio::test]
async fn a_bad_field_is_named_and_nothing_is_created() {
    let env = Env::new().await;
    let with = |k: &str, v: Value| {
        let mut b = ana_erasure();
        b[k] = v;
        b
    };
    let cases = [
        (with("kind", json!("portability")), "kind", "a kind that does not exist"),
        (
            with("kind", json!("rectification")),
            "rectify",
            "a rectification without its new values",
        ),
        (with("erase", json!(true)), "erase", "erase on an erasure"),
        (with("identifiers", json!([])), "identifiers", "no identifier"),
        (
            with("identifiers", json!([{"type": "phone", "value": "12"}])),
            "identifiers[0].value",
            "a phone that is no number",
        ),
        (
            with("identifiers", json!([{"type": "fax", "value": "1"}])),
            "identifiers[0].type",
            "an unknown identifier type",
        ),
        (
            with("source", json!("meta_callback")),
            "source",
            "a source that would skip approval",
        ),
        (
            with("jurisdiction", json!("us")),
            "jurisdiction",
            "an unknown jurisdiction",
        ),
        (
            with("tenant", json!("no-such-tenant")),
            "tenant",
            "an unregistered tenant",
        ),
        (
            with("note", json!("she wrote from ana@example.com")),
            "note",
            "an identifier in the note",
        ),
        (
            with("rectify", json!({"profile_name": "Ana B"})),
            "rectify",
            "new values on an erasure",
        ),
        (
            {
                let mut b = with("kind", json!("rectification"));
                b["rectify"] = json!({"email": "ana@example.com"});
                b
            },
            "rectify.email",
            "a field that cannot be rectified",
        ),
        (
            {
                let mut b = with("kind", json!("rectification"));
                b["rectify"] = json!({"profile_name": "  "});
                b
            },
            "rectify.profile_name",
            "a blank name",
        ),
        (with("colour", json!("red")), "colour", "an unknown field"),
    ];
    for (body, field, what) in cases {
        let (status, answer) = create(&env, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("{field}:")), "{what}: {error}");
        assert!(!error.contains("5555"), "the value is not quoted back: {error}");
    }
    assert_eq!(env.open_requests().await, 0);
}

#[tokio::test]
async fn only_a_privacy_officer_reaches_the_requests_and_refusals_are_audited() {
    let env = Env::new().await;
    let (status, _) = env.call(None, Method::GET, "/admin/privacy-requests", None).await;
    assert_eq!(status, 401);
    let (status, body) = env
        .call(
            Some(AGENT),
            Method::POST,
            "/admin/privacy-requests",
            Some(ana_erasure()),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let trail = env
        .stores
        .audit
        .list(&AuditChain::Platform, &TimeRange::ALL, &PageRequest::first(10))
        .await
        .expect("trail");
    let denied: Vec<_> = trail
        .items
        .iter()
        .filter(|l| l.event.action == AuditAction::Denied)
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].event.actor, AGENT);
    assert_eq!(denied[0].event.route, "POST /admin/privacy-requests");
    assert_eq!(env.open_requests().await, 0);
    let (status, _) = env
        .call(Some(OFFICER), Method::PUT, "/admin/privacy-requests", None)
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn an_approved_erasure_removes_the_person_from_every_tenant_and_only_them() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 5).await;
    let (_, body) = create(&env, ana_erasure()).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let code = body["confirmation_code"].as_str().expect("code").to_owned();
    let (status, approved) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);

    for (kind, raw) in [
        (IdentifierKind::Phone, PHONE),
        (IdentifierKind::WhatsAppUserId, BSUID),
        (IdentifierKind::InstagramId, IGSID),
    ] {
        let found = env
            .stores
            .conversations
            .find_subject(&link(kind, raw).subject_key)
            .await
            .expect("find");
        assert!(found.is_empty(), "{kind:?} still reaches {found:?}");
    }
    let bruno = ContactId::new(Channel::WhatsApp, "AR.BRUNO0000000001").expect("valid");
    let kept = env
        .stores
        .conversations
        .list_messages(&tenant("tenant-a"), &bruno, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(kept.items.len(), 3, "another person's messages in the same tenant stay");

    let (_, done) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let receipt = &done["receipt"];
    // 3 contacts × (5 messages + profile) + 4 identifier links.
    assert_eq!(receipt["erased"]["conversations"], 22, "{receipt}");
    assert_eq!(receipt["contacts_erased"], 3);
    assert_eq!(receipt["no_data_found"], false);
    assert!(receipt["verified_at"].is_string());
    assert_eq!(receipt["subject_key_digests"].as_array().map(Vec::len), Some(3));
    let events: Vec<&str> = done["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events, ["received", "approved", "in_progress", "verified", "completed"]);
    assert!(
        !done.to_string().contains("Ana"),
        "the request holds no personal data: {done}"
    );
    assert_eq!(env.open_requests().await, 0);

    // Events from before the erasure come again (a redelivery, a redrive): nothing is stored.
    // The tenant-b contact is linked by phone only, a key the worker took from its profile.
    let before = env.clock.now().plus(time::Duration::seconds(-10));
    seed_ana_and_bruno(&env.stores, before, 2).await;
    for (kind, raw) in [(IdentifierKind::Phone, PHONE), (IdentifierKind::InstagramId, IGSID)] {
        let found = env
            .stores
            .conversations
            .find_subject(&link(kind, raw).subject_key)
            .await
            .expect("find");
        assert!(found.is_empty(), "a redelivery brought {kind:?} back: {found:?}");
    }
    // What she sends afterwards is stored as usual.
    env.clock.advance(time::Duration::seconds(60));
    seed_ana_and_bruno(&env.stores, env.clock.now(), 1).await;
    let back = env
        .stores
        .conversations
        .find_subject(&link(IdentifierKind::Phone, PHONE).subject_key)
        .await
        .expect("find");
    assert_eq!(back.len(), 2, "{back:?}");

    let page = env
        .call_raw(request(
            None,
            Method::GET,
            &format!("/privacy/requests/{code}"),
            &[],
            &[("accept", "application/json")],
            None,
        ))
        .await;
    let status: Value = serde_json::from_str(&shared::apigw::body_text(&page)).expect("json");
    assert_eq!(status["status"], "completed");
    assert!(status["completed_at"].is_string());
}

#[tokio::test]
async fn a_long_erasure_is_handed_on_in_pieces_and_counts_every_item_once() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 250).await;
    let (_, body) = create(&env, ana_erasure()).await;
    let id = body["id"].as_str().expect("id").to_owned();
    decide(&env, &id, json!({"decision": "approve"})).await;
    let outcomes = env.drain(&env.worker().with_max_batches(2)).await;
    assert!(outcomes.len() > 2, "{outcomes:?}");
    assert!(outcomes[..outcomes.len() - 1].iter().all(|o| *o == Outcome::Paused));
    assert_eq!(outcomes.last(), Some(&Outcome::Completed));
    let (_, done) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(
        done["receipt"]["erased"]["conversations"],
        3 * 251 + 4,
        "{}",
        done["receipt"]
    );
}

#[tokio::test]
async fn a_worker_killed_midway_is_resumed_by_the_next_delivery() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 300).await;
    let (_, body) = create(&env, ana_erasure()).await;
    let id: RequestId = RequestId::parse(body["id"].as_str().expect("id")).expect("id");
    decide(&env, &id.to_string(), json!({"decision": "approve"})).await;
    let worker = env.worker();
    let job = deletion::ErasureJob { request: id };
    // Killed at some point after it started deleting: the future is dropped mid-flight.
    let run = worker.run(&job);
    tokio::pin!(run);
    let mut polls = 0;
    let killed = std::future::poll_fn(|cx| {
        polls += 1;
        match run.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            // The embedded store answers at once; a yield per batch is where a kill lands.
            std::task::Poll::Pending if polls > 3 => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await;
    assert!(killed.is_none(), "the run was cut short");
    let midway = env.stores.privacy_requests.get(id).await.expect("get").expect("stored");
    assert_eq!(midway.status, shared::domain::RequestStatus::InProgress);
    // SQS delivers the job again after the visibility timeout.
    let (event, _) = env.next_event().await.expect("the job is still queued");
    let response = worker.handle(event).await;
    assert!(response.batch_item_failures.is_empty());
    let done = env.stores.privacy_requests.get(id).await.expect("get").expect("stored");
    assert_eq!(done.status, shared::domain::RequestStatus::Completed);
    for raw in [PHONE, BSUID] {
        let kind = if raw == PHONE {
            IdentifierKind::Phone
        } else {
            IdentifierKind::WhatsAppUserId
        };
        assert!(
            env.stores
                .conversations
                .find_subject(&link(kind, raw).subject_key)
                .await
                .expect("find")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn an_erasure_whose_job_was_dead_lettered_midway_is_approved_again_and_completes() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 300).await;
    let (_, body) = create(&env, ana_erasure()).await;
    let id = body["id"].as_str().expect("id").to_owned();
    decide(&env, &id, json!({"decision": "approve"})).await;
    // One invocation gets through two batches and hands on a continuation; that message then
    // fails its five tries and leaves for the dead-letter queue, out of the worker's reach.
    assert_eq!(
        env.run_once(&env.worker().with_max_batches(2)).await,
        Some(Outcome::Paused)
    );
    let (_, receipt) = env.next_event().await.expect("the continuation");
    env.queue.delete(&receipt).await.expect("dead-lettered");
    assert_eq!(env.drain(&env.worker()).await, vec![], "nothing is queued any more");
    let (_, stuck) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(stuck["status"], "in_progress");

    let (status, again) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "approving an erasure in progress re-queues it: {again}");
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    let (_, done) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["receipt"]["erased"]["conversations"],
        3 * 301 + 4,
        "{}",
        done["receipt"]
    );
    // Extending an approved erasure moves its date and queues no second job.
    let (_, body) = create(
        &env,
        json!({"kind": "erasure", "source": "email",
            "identifiers": [{"type": "phone", "value": "+54 9 11 4444-0000"}]}),
    )
    .await;
    let other = body["id"].as_str().expect("id").to_owned();
    decide(&env, &other, json!({"decision": "approve"})).await;
    let (status, extended) = decide(
        &env,
        &other,
        json!({"decision": "extend", "reason": "identity check", "due_at": "2026-12-20T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert_eq!(
        env.drain(&env.worker()).await,
        vec![Outcome::Completed],
        "one job, not two"
    );
}

#[tokio::test]
async fn an_access_export_holds_all_and_only_the_subjects_data_once_approved() {
    let env = Env::new().await;
    let now = env.clock.now();
    seed_ana_and_bruno(&env.stores, now, 3).await;
    // Ana said STOP in tenant-b.
    let stop = shared::domain::OptOutRecord {
        tenant: tenant("tenant-b"),
        subject_key: link(IdentifierKind::Phone, PHONE).subject_key,
        scope: shared::domain::OptOutScope::All,
        state: shared::domain::OptState::OptedOut,
        source: shared::domain::OptOutSource::Keyword,
        event_at: now,
        order_at: now,
        previous: None,
        confirmed: false,
    };
    env.stores
        .opt_outs
        .apply(&stop, shared::domain::optout::Expect::Any)
        .await
        .expect("stop");
    let mut body = ana_erasure();
    body["kind"] = json!("access");
    let (status, created) = create(&env, body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let export_path = format!("/admin/privacy-requests/{id}/export");
    let (status, early) = env.call(Some(OFFICER), Method::GET, &export_path, None).await;
    assert_eq!(status, 409, "no export before approval: {early}");
    let (status, _) = env.call(Some(AGENT), Method::GET, &export_path, None).await;
    assert_eq!(status, 403, "an agent gets no export");

    decide(&env, &id, json!({"decision": "approve"})).await;
    assert!(
        env.drain(&env.worker()).await.is_empty(),
        "an access request queues no erasure"
    );
    let (status, export) = env.call(Some(OFFICER), Method::GET, &export_path, None).await;
    assert_eq!(status, 200, "{export}");
    let contacts = export["contacts"].as_array().expect("contacts");
    let mut tenants: Vec<&str> = contacts
        .iter()
        .map(|c| c["tenant"].as_str().unwrap_or_default())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["tenant-a", "tenant-b", "tenant-c"], "{export}");
    for c in contacts {
        let messages = c["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3, "{c}");
        assert!(
            messages.iter().all(|m| m["content"]["text"]["body"] == "hola, soy Ana"),
            "{c}"
        );
        assert_eq!(c["profile_name"], "Ana");
    }
    let values: Vec<&str> = contacts
        .iter()
        .flat_map(|c| c["identifiers"].as_array().expect("ids").iter())
        .map(|i| i["value"].as_str().unwrap_or_default())
        .collect();
    for v in [PHONE, BSUID, IGSID] {
        assert!(values.contains(&v), "{v} in {values:?}");
    }
    let text = export.to_string();
    for other in ["soy Bruno", "+5491166660000", "AR.BRUNO0000000001"] {
        assert!(!text.contains(other), "Bruno's {other} is not in Ana's export");
    }
    let opt_outs = export["opt_outs"].as_array().expect("opt-outs");
    assert_eq!(opt_outs.len(), 1, "{opt_outs:?}");
    assert_eq!(opt_outs[0]["tenant"], "tenant-b");
    assert_eq!(opt_outs[0]["current"][0]["state"], "opted_out");
    assert_eq!(opt_outs[0]["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(export["requests"][0]["id"], id.as_str());

    let (_, shown) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(shown["status"], "completed", "the first export completes it");
    assert!(
        shown["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .any(|e| e["event"] == "exported")
    );

    let csv = env
        .call_raw(request(
            Some(OFFICER),
            Method::GET,
            &export_path,
            &[("format", "csv")],
            &[],
            None,
        ))
        .await;
    assert_eq!(csv.status_code, 200);
    let csv = shared::apigw::body_text(&csv);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], deletion::export::CSV_HEADER);
    assert_eq!(lines.len(), 1 + 3 * 3, "{csv}");
    assert!(lines[1..].iter().all(|l| l.contains("\"hola, soy Ana\"")), "{csv}");
    assert!(!csv.contains("Bruno"));
    let refused = env
        .call_raw(request(
            Some(OFFICER),
            Method::GET,
            &export_path,
            &[("format", "xml")],
            &[],
            None,
        ))
        .await;
    assert_eq!(refused.status_code, 400, "format=xml is refused");

    // An erasure request has no export.
    let (_, erasure) = create(&env, ana_erasure()).await;
    let (status, _) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{}/export", erasure["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn an_objection_opts_the_person_out_everywhere_in_scope_and_erases_only_if_asked() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 2).await;
    let contactable = |tenant_id: &'static str, kind: IdentifierKind, raw: &'static str| {
        let stores = env.stores.clone();
        async move {
            shared::optout::contactability::check_key(
                stores.opt_outs.as_ref(),
                stores.conversations.as_ref(),
                &tenant(tenant_id),
                &link(kind, raw).subject_key,
                shared::optout::contactability::Purpose::Service,
            )
            .await
            .expect("check")
            .contactable
        }
    };
    let mut body = ana_erasure();
    body["kind"] = json!("objection");
    let (status, created) = create(&env, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(env.apply_opt_outs().await.is_empty(), "nothing before approval");
    let (status, decided) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "completed", "{decided}");
    let applied = env.apply_opt_outs().await;
    assert_eq!(applied.len(), 3, "one opt-out per contact of Ana");
    assert!(
        applied
            .iter()
            .all(|c| c.scope == shared::domain::OptOutScope::All && c.source == shared::domain::OptOutSource::Operator)
    );
    assert!(!contactable("tenant-a", IdentifierKind::Phone, PHONE).await);
    assert!(!contactable("tenant-b", IdentifierKind::Phone, PHONE).await);
    assert!(!contactable("tenant-c", IdentifierKind::InstagramId, IGSID).await);
    assert!(
        contactable("tenant-a", IdentifierKind::Phone, "+5491166660000").await,
        "Bruno still is"
    );
    assert!(env.drain(&env.worker()).await.is_empty(), "no erasure was asked");
    let kept = env
        .stores
        .conversations
        .find_subject(&link(IdentifierKind::Phone, PHONE).subject_key)
        .await
        .expect("find");
    assert_eq!(kept.len(), 2, "her messages stay");

    // With erasure asked, the worker completes it after the opt-outs.
    body["erase"] = json!(true);
    let (status, created) = create(&env, body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, decided) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(decided["status"], "approved", "{decided}");
    assert_eq!(env.apply_opt_outs().await.len(), 3);
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    assert!(
        env.stores
            .conversations
            .find_subject(&link(IdentifierKind::Phone, PHONE).subject_key)
            .await
            .expect("find")
            .is_empty()
    );
    assert!(
        !contactable("tenant-b", IdentifierKind::Phone, PHONE).await,
        "erased and still suppressed"
    );
}

#[tokio::test]
async fn a_rectification_corrects_the_name_in_scope_audits_it_and_later_messages_keep_it() {
    let env = Env::new().await;
    let now = env.clock.now();
    seed_ana_and_bruno(&env.stores, now, 2).await;
    let mut body = ana_erasure();
    body["kind"] = json!("rectification");
    body["tenant"] = json!("tenant-a");
    body["rectify"] = json!({"profile_name": " Ana Bertolini "});
    let (status, created) = create(&env, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "received");
    assert_eq!(created["rectifies"], json!(["profile_name"]));
    assert!(
        !created.to_string().contains("Bertolini"),
        "the view holds no new value: {created}"
    );
    let id = created["id"].as_str().expect("id").to_owned();
    let wa = |id: &str| ContactId::new(Channel::WhatsApp, id).expect("valid");
    let name = |t: &'static str, c: ContactId| {
        let stores = env.stores.clone();
        async move {
            stores
                .conversations
                .get_contact(&tenant(t), &c)
                .await
                .expect("get")
                .expect("stored")
                .profile_name
        }
    };
    assert_eq!(
        name("tenant-a", wa(BSUID)).await.as_deref(),
        Some("Ana"),
        "nothing before approval"
    );

    let (status, decided) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "completed", "{decided}");
    assert_eq!(name("tenant-a", wa(BSUID)).await.as_deref(), Some("Ana Bertolini"));
    assert_eq!(
        name("tenant-b", wa("5491155550123")).await.as_deref(),
        Some("Ana"),
        "outside the request's tenant"
    );
    assert_eq!(
        name("tenant-a", wa("AR.BRUNO0000000001")).await.as_deref(),
        Some("Ana"),
        "Bruno is not the subject"
    );
    let stored = env
        .stores
        .privacy_requests
        .get(RequestId::parse(&id).expect("id"))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(stored.rectify, None, "the closed request forgets the new name");

    // The change is in tenant-a's audit chain, naming the contact by handle only.
    let trail = env
        .stores
        .audit
        .list(
            &AuditChain::Tenant(tenant("tenant-a")),
            &TimeRange::ALL,
            &PageRequest::first(50),
        )
        .await
        .expect("trail");
    let change = trail
        .items
        .iter()
        .map(|l| &l.event)
        .find(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.ends_with("profile name rectified"))
        })
        .expect("the rectification is audited in the tenant's chain");
    assert_eq!(change.action, AuditAction::Change);
    assert!(change.contact.is_some() && !format!("{change:?}").contains("AR.1234"));

    // Her next message carries the name her app shows; the corrected one stays.
    seed_contact(
        &env.stores,
        "tenant-a",
        wa(BSUID),
        vec![link(IdentifierKind::WhatsAppUserId, BSUID)],
        1,
        "otra vez",
        now.plus(time::Duration::hours(1)),
    )
    .await;
    assert_eq!(name("tenant-a", wa(BSUID)).await.as_deref(), Some("Ana Bertolini"));

    // A second rectification of her while one is open, with another name, is refused.
    let mut other = body.clone();
    other["rectify"] = json!({"profile_name": "Ana Other"});
    let (_, pending) = create(&env, {
        let mut b = body.clone();
        b["rectify"] = json!({"profile_name": "Ana María"});
        b
    })
    .await;
    let (status, refused) = create(&env, other).await;
    assert_eq!(status, 409, "{refused}");
    let pending_id = pending["id"].as_str().expect("id").to_owned();
    decide(
        &env,
        &pending_id,
        json!({"decision": "reject", "reason": "asked twice"}),
    )
    .await;
    // A closed rectification is final; a new one for nobody stored completes with no data found.
    let (status, _) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 409);
    body["identifiers"] = json!([{"type": "phone", "value": "+5491177770000"}]);
    let (_, created) = create(&env, body).await;
    let (_, decided) = decide(
        &env,
        created["id"].as_str().expect("id"),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(decided["status"], "completed", "{decided}");
    let rectified = decided["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .find(|e| e["event"] == "rectified")
        .expect("rectified entry");
    assert!(
        rectified["reason"]
            .as_str()
            .expect("reason")
            .starts_with("no data found")
    );
}

#[tokio::test]
async fn erasures_undone_by_a_restore_are_carried_out_again_by_the_replay() {
    let mut env = Env::new().await;
    let before = env.clock.now();
    seed_ana_and_bruno(&env.stores, before, 3).await;
    let (_, created) = create(&env, ana_erasure()).await;
    let id = created["id"].as_str().expect("id").to_owned();
    decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    // An access request completed too: nothing to replay there.
    let mut access = ana_erasure();
    access["kind"] = json!("access");
    let (_, access) = create(&env, access).await;
    let access_id = access["id"].as_str().expect("id").to_owned();
    decide(&env, &access_id, json!({"decision": "approve"})).await;
    env.call(
        Some(OFFICER),
        Method::GET,
        &format!("/admin/privacy-requests/{access_id}/export"),
        None,
    )
    .await;

    // The conversations come back from a backup taken before the erasure, Ana included.
    env.clock.advance(time::Duration::hours(1));
    env.restore_conversations();
    seed_ana_and_bruno(&env.stores, before, 3).await;
    let phone = link(IdentifierKind::Phone, PHONE).subject_key;
    assert_eq!(
        env.stores.conversations.find_subject(&phone).await.expect("find").len(),
        2
    );

    let replay = |body: Value| {
        env.call(
            Some(OFFICER),
            Method::POST,
            "/admin/privacy-requests/replay",
            Some(body),
        )
    };
    for (body, field, what) in [
        (json!({"reason": "INC-1"}), "since", "no restore time"),
        (
            json!({"since": "yesterday", "reason": "INC-1"}),
            "since",
            "a time that is no RFC 3339",
        ),
        (
            json!({"since": "2099-01-01T00:00:00Z", "reason": "INC-1"}),
            "since",
            "a time in the future",
        ),
        (json!({"since": "2026-12-01T00:00:00Z"}), "reason", "no reason"),
    ] {
        let (status, answer) = replay(body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().starts_with(field),
            "{what}: {answer}"
        );
    }
    let (status, answer) = replay(json!({"since": "2026-12-01T00:00:00Z", "reason": "INC-1 restore"})).await;
    assert_eq!(status, 200, "{answer}");
    let replayed = answer["replayed"].as_array().expect("replayed");
    assert_eq!(replayed.len(), 1, "the erasure, not the access request: {answer}");
    assert_eq!(replayed[0]["of"], id.as_str());
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    assert!(
        env.stores
            .conversations
            .find_subject(&phone)
            .await
            .expect("find")
            .is_empty()
    );
    assert!(
        env.stores
            .conversations
            .erased_at(&phone)
            .await
            .expect("ledger")
            .is_some(),
        "the ledger holds her again: redelivered old events stay out"
    );
    let again = replayed[0]["request"].as_str().expect("id");
    let (_, shown) = env
        .call(
            Some(OFFICER),
            Method::GET,
            &format!("/admin/privacy-requests/{again}"),
            None,
        )
        .await;
    assert_eq!(shown["status"], "completed", "{shown}");
    assert!(
        shown["timeline"]
            .to_string()
            .contains(&format!("replay of erasure {id}")),
        "{shown}"
    );
    // Bruno is still there.
    let bruno = link(IdentifierKind::Phone, "+5491166660000").subject_key;
    assert_eq!(
        env.stores.conversations.find_subject(&bruno).await.expect("find").len(),
        1
    );
    // Replaying again from the same backup carries out the original again, never the replay.
    let (_, answer) = replay(json!({"since": "2026-12-01T00:00:00Z", "reason": "INC-1 again"})).await;
    let again = answer["replayed"].as_array().expect("replayed");
    assert_eq!(again.len(), 1, "{answer}");
    assert_eq!(again[0]["of"], id.as_str());
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    // A backup taken after every erasure closed brings nothing back to erase.
    env.clock.advance(time::Duration::minutes(1));
    let (_, answer) = replay(json!({"since": env.clock.now().to_string(), "reason": "INC-2"})).await;
    assert_eq!(answer["replayed"], json!([]), "{answer}");
}

#[tokio::test]
async fn a_dead_lettered_stop_is_honoured_before_the_erasure_deletes_it() {
    let env = Env::new().await;
    seed_ana_and_bruno(&env.stores, env.clock.now(), 1).await;
    // Ana's STOP in tenant-a failed every delivery and was moved into quarantine.
    let command = shared::optout::command::OptOutCommand {
        tenant: tenant("tenant-a"),
        contact: ContactId::new(Channel::WhatsApp, BSUID).expect("valid"),
        subject_keys: vec![
            link(IdentifierKind::WhatsAppUserId, BSUID).subject_key,
            link(IdentifierKind::Phone, PHONE).subject_key,
        ],
        action: shared::optout::command::CommandAction::OptOut,
        scope: shared::domain::OptOutScope::All,
        source: shared::domain::OptOutSource::Keyword,
        event_at: env.clock.now(),
        order_at: env.clock.now(),
        only_while_opted_out: false,
        language: None,
    };
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("dlq-1".to_owned());
    record.body = Some(serde_json::to_string(&command).expect("json"));
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![record];
    let consumer = processor::dead_letter::DeadLetters::new(
        env.stores.quarantine.clone(),
        secret(),
        std::sync::Arc::new(env.clock.clone()),
    );
    assert!(consumer.handle(event).await.batch_item_failures.is_empty());
    let phone = link(IdentifierKind::Phone, PHONE).subject_key;
    assert_eq!(env.stores.quarantine.find_subject(&phone).await.expect("find").len(), 1);

    let (_, created) = create(&env, ana_erasure()).await;
    let id = created["id"].as_str().expect("id").to_owned();
    decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(env.drain(&env.worker()).await, vec![Outcome::Completed]);
    assert!(
        env.stores
            .quarantine
            .find_subject(&phone)
            .await
            .expect("find")
            .is_empty(),
        "its copy is erased with her data"
    );
    // The STOP went back to the opt-out function, which now applies it.
    let applied = env.apply_opt_outs().await;
    assert_eq!(applied, vec![command]);
    let check = shared::optout::contactability::check_key(
        env.stores.opt_outs.as_ref(),
        env.stores.conversations.as_ref(),
        &tenant("tenant-a"),
        &phone,
        shared::optout::contactability::Purpose::Service,
    )
    .await
    .expect("check");
    assert!(!check.contactable, "erased and not to be contacted");
}

#[tokio::test]
async fn decisions_need_reasons_keep_within_the_policy_and_a_closed_request_is_final() {
    let env = Env::new().await;
    let (_, body) = create(&env, ana_erasure()).await;
    let id = body["id"].as_str().expect("id").to_owned();
    for (decision, field) in [
        (json!({"decision": "reject"}), "reason"),
        (json!({"decision": "extend", "reason": "identity check"}), "due_at"),
        (
            json!({"decision": "extend", "reason": "identity check", "due_at": "2027-01-15T00:00:00Z"}),
            "due_at",
        ),
        (json!({"decision": "maybe"}), "decision"),
        (
            json!({"decision": "reject", "reason": "called +54 11 5555 0123"}),
            "reason",
        ),
    ] {
        let (status, answer) = decide(&env, &id, decision.clone()).await;
        assert_eq!(status, 400, "{decision}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().starts_with(field),
            "{answer}"
        );
    }
    let (status, extended) = decide(
        &env,
        &id,
        json!({"decision": "extend", "reason": "waiting for identity check", "due_at": "2026-12-20T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["due_at"], "2026-12-20T00:00:00Z");
    let (status, rejected) = decide(
        &env,
        &id,
        json!({"decision": "reject", "reason": "not the account holder"}),
    )
    .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    let (status, _) = decide(&env, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 409);
    let (status, _) = env
        .call(
            Some(OFFICER),
            Method::GET,
            "/admin/privacy-requests/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

fn callback_body(signed: &str) -> String {
    format!("signed_request={signed}")
}

async fn callback(env: &Env, body: String) -> (u16, Value) {
    let r = env
        .call_raw(request(
            None,
            Method::POST,
            "/meta/data-deletion",
            &[],
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        ))
        .await;
    let text = shared::apigw::body_text(&r);
    (
        r.status_code as u16,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const PAYLOAD: &str =
    r#"{"algorithm":"HMAC-SHA256","expires":1764680000,"issued_at":1764676400,"user_id":"10223344556677"}"#;

#[tokio::test]
async fn metas_callback_opens_an_approved_erasure_and_a_replay_gets_the_same_code() {
    let env = Env::new().await;
    let signed = deletion::callback::sign(&AppSecret::new(APP_SECRET), PAYLOAD);
    let (status, body) = callback(&env, callback_body(&signed)).await;
    assert_eq!(status, 200, "{body}");
    let code = body["confirmation_code"].as_str().expect("code").to_owned();
    assert_eq!(
        body["url"],
        format!("https://privacy.example.com/privacy/requests/{code}")
    );
    let (status, replay) = callback(&env, callback_body(&signed)).await;
    assert_eq!(status, 200);
    assert_eq!(replay["confirmation_code"], code.as_str());
    // Approved at once (Meta signed it): the worker completes it with nothing found. The replay
    // queued the job again (a lost send is retried that way); the second run finds it done.
    assert_eq!(
        env.drain(&env.worker()).await,
        vec![Outcome::Completed, Outcome::Skipped]
    );
    let stored = env
        .stores
        .privacy_requests
        .get(RequestId::for_code(&code))
        .await
        .expect("get")
        .expect("stored");
    let receipt = stored.receipt.expect("receipt");
    assert!(receipt.no_data_found);
    assert!(receipt.notes.iter().any(|n| n.starts_with("meta_app_user_id")));
    let (status, again) = callback(&env, callback_body(&signed)).await;
    assert_eq!(
        (status, again["confirmation_code"].as_str()),
        (200, Some(code.as_str())),
        "after completion too"
    );
    let page = env
        .call_raw(request(
            None,
            Method::GET,
            &format!("/privacy/requests/{code}"),
            &[("lang", "en")],
            &[],
            None,
        ))
        .await;
    let html = shared::apigw::body_text(&page);
    assert!(
        html.contains("Completed") && html.contains("We store no data about the app's users"),
        "{html}"
    );
}

#[tokio::test]
async fn a_callback_with_a_bad_signature_algorithm_or_body_creates_nothing() {
    let env = Env::new().await;
    let forged = deletion::callback::sign(&AppSecret::new("not our secret"), PAYLOAD);
    let md5 = deletion::callback::sign(
        &AppSecret::new(APP_SECRET),
        r#"{"algorithm":"HMAC-MD5","user_id":"10223344556677"}"#,
    );
    let not_digits = deletion::callback::sign(
        &AppSecret::new(APP_SECRET),
        r#"{"algorithm":"HMAC-SHA256","user_id":"abc"}"#,
    );
    for (body, what) in [
        (callback_body(&forged), "a signature by another secret"),
        (callback_body(&md5), "the algorithm HMAC-MD5"),
        (callback_body(&not_digits), "a user id that is no app-scoped id"),
        ("signed_request=nodot".to_owned(), "no signature part"),
        ("{\"signed_request\": 1}".to_owned(), "a JSON body"),
        (String::new(), "an empty body"),
    ] {
        let (status, answer) = callback(&env, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
    }
    assert_eq!(env.open_requests().await, 0);
    assert_eq!(env.queue.pending().await.expect("pending"), 0);
}

#[tokio::test]
async fn the_status_page_speaks_spanish_or_english_and_hides_unknown_codes_the_same_way() {
    let env = Env::new().await;
    let (_, body) = create(&env, ana_erasure()).await;
    let code = body["confirmation_code"].as_str().expect("code").to_owned();
    let path = format!("/privacy/requests/{code}");
    let page = |query: &'static [(&'static str, &'static str)], headers: &'static [(&'static str, &'static str)]| {
        let env = &env;
        let path = path.clone();
        async move {
            let r = env
                .call_raw(request(None, Method::GET, &path, query, headers, None))
                .await;
            (
                r.status_code,
                shared::apigw::body_text(&r),
                r.headers.get("content-type").cloned(),
            )
        }
    };
    let (status, es, ct) = page(&[], &[]).await;
    assert_eq!(status, 200);
    assert!(es.contains("lang=\"es\"") && es.contains("Recibida"), "{es}");
    assert_eq!(ct.expect("content type"), "text/html; charset=utf-8");
    let (_, en, _) = page(&[("lang", "en")], &[]).await;
    assert!(en.contains("lang=\"en\"") && en.contains("Received"), "{en}");
    let (_, en, _) = page(&[], &[("accept-language", "en-GB,en;q=0.9")]).await;
    assert!(en.contains("Received"), "{en}");
    let (_, json_text, _) = page(&[], &[("accept", "application/json")]).await;
    let v: Value = serde_json::from_str(&json_text).expect("json");
    assert_eq!(v["status"], "received");
    assert_eq!(v["kind"], "erasure");
    assert!(v.get("id").is_none() && v.get("identifiers").is_none(), "{v}");

    for unknown in ["0".repeat(32), code[..31].to_owned(), "x".repeat(5000)] {
        let r = env
            .call_raw(request(
                None,
                Method::GET,
                &format!("/privacy/requests/{unknown}"),
                &[],
                &[],
                None,
            ))
            .await;
        assert_eq!(r.status_code, 404);
        assert!(shared::apigw::body_text(&r).contains("Pedido no encontrado"));
    }
}
