//! No access token, message text or phone number reaches a log line or a panic message on the
//! way out: a person writes, a tenant replies (sent, throttled and retried, refused by Meta,
//! refused after STOP, outside the window), Meta stops answering, a tenant's token is wrong, and
//! requests to the outbound routes carry personal data where ids belong. Everything runs in one
//! local stack (embedded store) with the loopback Graph API, all logs captured at TRACE.
//!
//! Its own test binary: the log capture is the process-wide subscriber and the panic hook is
//! process-wide, so no other test's callsites or threads interfere with what is captured.

use e2e::{ADMIN, OPERATOR, sign};
use local_stack::graph_server::GraphServer;
use serde_json::{Value, json};
use shared::clock::Clock;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "EAAGzq81SECRETtokenVALUE";
const WRONG_TOKEN: &str = "EAAGwrongTOKENvalue77";
const NAME: &str = "Zoraida Quintanilla";
const WA_ID: &str = "5491147293816";
const BSUID: &str = "AR.82736450192837465019";
const INBOUND: &str = "mi clave del banco es 4417, vivo en Calle Ayacucho 1542";
const REPLY: &str = "Zoraida, tu pedido sale hoy para Avenida Corrientes 3311";
const PHONE_NUMBER_ID: &str = "106540352242922";
const OTHER_PHONE_NUMBER_ID: &str = "106540352249999";

/// Searched case-insensitively in everything captured.
const MUST_NOT_APPEAR: &[&str] = &[
    TOKEN,
    "SECRETtoken",
    WRONG_TOKEN,
    "Zoraida",
    "Quintanilla",
    "5491147293816",
    "1147293816",
    "47293816",
    "82736450192837465019",
    "clave del banco",
    "Ayacucho",
    "Corrientes",
    "pedido sale hoy",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn secret_name(tenant: &str) -> String {
    format!("logs/tenants/{tenant}/meta-access-token")
}

fn inbound(phone_number_id: &str, wamid: &str, text: &str, at: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5491155550000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": NAME}, "wa_id": WA_ID, "user_id": BSUID}],
            "messages": [{"from": WA_ID, "from_user_id": BSUID, "id": wamid, "timestamp": at.to_string(),
                "type": "text", "text": {"body": text}}],
        }}]}],
    }))
    .expect("json")
}

#[tokio::test]
async fn nothing_personal_and_no_token_reaches_a_log_line_on_the_way_out() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .init();
    let panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(info.to_string());
        previous(info);
    }));

    let graph = GraphServer::start(TOKEN).await.expect("graph server");
    let tokens = json!({ secret_name("shop"): TOKEN, secret_name("other"): WRONG_TOKEN }).to_string();
    let principals = json!([{"token": ADMIN, "principal": OPERATOR,
        "roles": ["tenant_agent", "platform_admin", "privacy_officer"], "tenants": ["shop", "other"]}])
    .to_string();
    let env = |n: &str| match n {
        "META_APP_SECRET" => Some(e2e::APP_SECRET.to_owned()),
        "META_VERIFY_TOKEN" => Some("logs-verify".to_owned()),
        "SUBJECT_KEY_SECRET" => Some(e2e::E2E_SUBJECT_KEY_SECRET.to_owned()),
        "LOCAL_PRINCIPALS" => Some(principals.clone()),
        "TENANT_ACCESS_TOKENS" => Some(tokens.clone()),
        "WHATSAPP_API_BASE_URL" | "GRAPH_API_BASE_URL" => Some(graph.base_url()),
        _ => None,
    };
    let options = local_stack::Options::from_args(["--port".to_owned(), "0".to_owned()], env).expect("options");
    let stack = local_stack::start(options).await.expect("stack on the embedded store");
    let url = stack.url();
    let http = local_stack::http_client();
    let post = |path: String, body: Value, key: Option<&str>| {
        let mut req = http.post(format!("{url}{path}")).bearer_auth(ADMIN).json(&body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        async move {
            let resp = req.send().await.expect("request");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let drain = || async {
        let resp = http.post(format!("{url}/_local/drain")).send().await.expect("drain");
        assert_eq!(resp.status().as_u16(), 200);
    };
    let webhook = |body: Vec<u8>| {
        let req = http
            .post(format!("{url}/webhooks/meta"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(&body))
            .body(body);
        async move { req.send().await.expect("webhook").status().as_u16() }
    };
    for (tenant, phone) in [("shop", PHONE_NUMBER_ID), ("other", OTHER_PHONE_NUMBER_ID)] {
        let registration = json!({"tenant_id": tenant, "name": format!("Tienda {tenant}"),
            "whatsapp_phone_number_ids": [phone], "access_token_secret": secret_name(tenant)});
        assert_eq!(post("/admin/tenants".to_owned(), registration, None).await.0, 201);
    }
    let now = stack.clock.now().unix_seconds();
    assert_eq!(
        webhook(inbound(PHONE_NUMBER_ID, "wamid.L1", INBOUND, now - 30)).await,
        200
    );
    assert_eq!(
        webhook(inbound(OTHER_PHONE_NUMBER_ID, "wamid.L2", INBOUND, now - 30)).await,
        200
    );
    drain().await;
    // The one contact each tenant has: its handle, as the listing gives it.
    let handle_in = |tenant: &'static str| {
        let req = http
            .get(format!("{url}/admin/tenants/{tenant}/contacts"))
            .bearer_auth(ADMIN);
        async move {
            let listed: Value = req.send().await.expect("contacts").json().await.expect("json");
            listed["contacts"][0]["contact"].as_str().expect("a handle").to_owned()
        }
    };
    let handle = handle_in("shop").await;
    let other_handle = handle_in("other").await;
    let send = |tenant: &str, key: &str, to: &str, content: Value| {
        post(
            format!("/admin/tenants/{tenant}/messages"),
            json!({"to": to, "content": content}),
            Some(key),
        )
    };
    let text = json!({"type": "text", "body": REPLY});
    let promo = json!({"type": "template", "name": "promo", "language": "es", "category": "marketing",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": NAME}]}]});

    // Sent; throttled then sent; refused by Meta (marketing stopped); no answer at all.
    assert_eq!(send("shop", "l-1", &handle, text.clone()).await.0, 202);
    drain().await;
    graph.fail_next_with(&[(429, 4), (503, 2)]);
    assert_eq!(send("shop", "l-2", &handle, text.clone()).await.0, 202);
    drain().await;
    graph.fail_next_with(&[(400, 131050)]);
    assert_eq!(send("shop", "l-3", &handle, promo.clone()).await.0, 202);
    drain().await;
    graph.fail_next_with(&[(0, 0)]);
    assert_eq!(send("shop", "l-4", &handle, text.clone()).await.0, 202);
    drain().await;
    let listed = http
        .get(format!("{url}/admin/outbound/stale"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("stale")
        .text()
        .await
        .expect("text");
    assert!(listed.contains("l-4"), "the silent send is listed: {listed}");
    // The other tenant's token is wrong.
    assert_eq!(send("other", "l-5", &other_handle, text.clone()).await.0, 202);
    drain().await;
    // STOP: its confirmation, then a refused reply; later, outside the window.
    assert_eq!(
        webhook(inbound(PHONE_NUMBER_ID, "wamid.L3", "STOP", now - 5)).await,
        200
    );
    drain().await;
    assert_eq!(send("shop", "l-6", &handle, text.clone()).await.0, 202);
    drain().await;
    let resp = http
        .post(format!("{url}/_local/clock"))
        .json(&json!({"now": stack.clock.now().plus(time::Duration::hours(30))}))
        .send()
        .await
        .expect("clock");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(send("other", "l-7", &other_handle, text.clone()).await.0, 202);
    drain().await;
    // Bad input carrying personal data where ids belong: refused, not echoed, not logged.
    for (key, to, content) in [
        ("l-8", WA_ID.to_owned(), text.clone()),
        ("l-9", BSUID.to_owned(), text.clone()),
        (
            "l-10",
            handle.clone(),
            json!({"type": "text", "body": 5491147293816_i64}),
        ),
        (NAME, handle.clone(), text.clone()),
    ] {
        let (status, body) = send("shop", key, &to, content).await;
        assert_eq!(status, 400, "{key}: {body}");
        assert!(
            !body.to_string().contains("Zoraida") && !body.to_string().contains(WA_ID),
            "{body}"
        );
    }
    stack.stop().await;
    assert!(
        graph.sends().len() >= 6,
        "the sends really happened: {}",
        graph.sends().len()
    );
    graph.stop().await;

    let captured = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(captured.contains("outbound command done"), "the sender logged its work");
    assert!(captured.contains("stale outbound claim") || captured.contains("ended without an answer"));
    let lower = captured.to_lowercase();
    for needle in MUST_NOT_APPEAR {
        if let Some(at) = lower.find(&needle.to_lowercase()) {
            let from = at.saturating_sub(300);
            panic!(
                "{needle:?} is in the logs: ...{}...",
                &captured[from..(at + 100).min(captured.len())]
            );
        }
    }
    let panics = panics.lock().unwrap_or_else(|p| p.into_inner());
    assert!(panics.is_empty(), "{panics:?}");
}
