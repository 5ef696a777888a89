//! Who may use the outbound routes: each route × each role × the caller's own tenant and another
//! one. A refusal is a 403 with a reason, audited (principal, route; no payload) in the tenant's
//! chain; no principal is a 401 and reaches nothing.

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription};
use http::{HeaderValue, Method};
use serde_json::{Value, json};
use shared::access::{Principal, PrincipalId, Role};
use shared::apigw::{self, Request};
use shared::clock::{SettableClock, SharedClock};
use shared::config::QueueKind;
use shared::domain::{AuditAction, AuditChain, Channel, ChannelAccount, Locale, Tenant, TenantId};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::secrets::{SecretValues, StaticSecrets};
use shared::store::{PageRequest, TimeRange};
use shared::timestamp::Timestamp;
use shared::wiring::LocalResources;
use std::sync::Arc;
use std::time::Duration;

const OWN: &str = "tenant-a";
const OTHER: &str = "tenant-b";
const AGENT: &str = "arn:aws:iam::000000000000:user/agent-a";
const OFFICER: &str = "arn:aws:iam::000000000000:user/privacy-officer";
const ADMIN: &str = "arn:aws:iam::000000000000:user/platform-admin";
const AUDITOR: &str = "arn:aws:iam::000000000000:user/auditor";
const NOBODY: &str = "arn:aws:iam::000000000000:user/nobody";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Send,
    Show,
    Resend,
    Stale,
}

/// The policy's role table for these routes, written out by hand.
fn allowed(route: Route, caller: &str, own: bool) -> bool {
    match route {
        Route::Send | Route::Show => caller == AGENT && own,
        Route::Resend | Route::Stale => caller == ADMIN,
    }
}

fn request(principal: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Request {
    let mut e = Request::default();
    e.version = Some("2.0".into());
    e.raw_path = Some(path.to_owned());
    e.request_context.http.method = method;
    e.request_context.http.path = Some(path.to_owned());
    e.headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
    if let Some(arn) = principal {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.to_owned());
        let mut auth = ApiGatewayRequestAuthorizer::default();
        auth.iam = Some(iam);
        e.request_context.authorizer = Some(auth);
    }
    e.body = body.map(|b| b.to_string());
    e
}

fn call_of(route: Route, tenant: &str) -> (Method, String, Option<Value>) {
    match route {
        Route::Send => (
            Method::POST,
            format!("/admin/tenants/{tenant}/messages"),
            Some(json!({"to": "c_nobody", "content": {"type": "text", "body": "hola"}})),
        ),
        Route::Show => (Method::GET, format!("/admin/tenants/{tenant}/messages/k-1"), None),
        Route::Resend => (
            Method::POST,
            format!("/admin/tenants/{tenant}/messages/k-1/resend"),
            None,
        ),
        Route::Stale => (Method::GET, "/admin/outbound/stale".to_owned(), None),
    }
}

#[tokio::test]
async fn every_outbound_route_admits_exactly_the_roles_the_policy_gives_and_audits_refusals() {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let stack = shared::store::embedded::stack(clock.clone());
    let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30))) as Arc<dyn Queue>;
    let resources = LocalResources {
        stores: stack.stores.clone(),
        sweeps: stack.sweeps.clone(),
        queues: [(QueueKind::TenantOutbound, queue()), (QueueKind::Outbound, queue())].into(),
        secrets: Arc::new(StaticSecrets::new(SecretValues::from_pairs(
            "test",
            [(
                shared::secrets::SUBJECT_KEY_SECRET,
                json!("api-access-test-subject-key-secret-0123456789"),
            )],
        ))),
        clock: clock.clone(),
        public_base_url: "http://127.0.0.1".to_owned(),
        graph_api_base_url: shared::meta::graph::DEFAULT_GRAPH_API_BASE_URL.to_owned(),
        whatsapp_api_base_url: shared::meta::send::DEFAULT_WHATSAPP_API_BASE_URL.to_owned(),
        outbox: stack.outbox.clone(),
        tenant_tokens: Arc::new(shared::meta::send::StaticTokens::default()),
    };
    let api = sender::api::build(&resources).await.expect("built");
    for (id, roles, tenants) in [
        (AGENT, vec![Role::TenantAgent], vec![OWN]),
        (OFFICER, vec![Role::PrivacyOfficer], vec![]),
        (ADMIN, vec![Role::PlatformAdmin], vec![]),
        (AUDITOR, vec![Role::Auditor], vec![]),
    ] {
        let principal = Principal {
            id: PrincipalId::new(id).expect("valid"),
            roles: roles.into_iter().collect(),
            tenants: tenants.into_iter().map(|t| TenantId::new(t).expect("valid")).collect(),
            granted_at: Timestamp::from_unix_seconds(0),
            granted_by: "test".to_owned(),
        };
        stack.stores.principals.put(&principal).await.expect("granted");
    }
    for t in [OWN, OTHER] {
        let tenant = Tenant {
            id: TenantId::new(t).expect("valid"),
            name: t.to_owned(),
            accounts: vec![ChannelAccount::new(Channel::WhatsApp, if t == OWN { "1" } else { "2" }).expect("valid")],
            retention_months: shared::retention::RetentionMonths::MAX,
            locale: Locale::Spanish,
            jurisdiction: shared::deadline::Jurisdiction::Ar,
            created_at: Timestamp::from_unix_seconds(0),
            optout_keywords: Vec::new(),
            optout_button_ids: Vec::new(),
            retention_lowered_at: None,
            offboarding: None,
            access_token_secret: None,
        };
        stack.stores.tenants.register(&tenant).await.expect("registered");
    }

    for route in [Route::Send, Route::Show, Route::Resend, Route::Stale] {
        for caller in [AGENT, OFFICER, ADMIN, AUDITOR, NOBODY] {
            for (tenant, own) in [(OWN, true), (OTHER, false)] {
                let (method, path, body) = call_of(route, tenant);
                let response = api.handle(&request(Some(caller), method, &path, body)).await;
                let status = response.status_code;
                if allowed(route, caller, own) {
                    assert!(
                        status != 403 && status != 401,
                        "{route:?} by {caller} on {tenant}: {status} {}",
                        apigw::body_text(&response)
                    );
                } else {
                    assert_eq!(
                        status,
                        403,
                        "{route:?} by {caller} on {tenant}: {}",
                        apigw::body_text(&response)
                    );
                }
            }
        }
        // Nobody authenticated: nothing reached.
        let (method, path, body) = call_of(route, OWN);
        assert_eq!(api.handle(&request(None, method, &path, body)).await.status_code, 401);
    }

    // The agent's refusals on the other tenant are in that tenant's chain, without the body.
    let trail = stack
        .stores
        .audit
        .list(
            &AuditChain::Tenant(TenantId::new(OTHER).expect("valid")),
            &TimeRange::ALL,
            &PageRequest::first(100),
        )
        .await
        .expect("trail");
    let denied: Vec<_> = trail
        .items
        .iter()
        .filter(|l| l.event.action == AuditAction::Denied && l.event.actor == AGENT)
        .collect();
    assert_eq!(denied.len(), 3, "send, show and resend on tenant-b");
    assert!(denied.iter().all(|l| !format!("{:?}", l.event).contains("hola")));
}
