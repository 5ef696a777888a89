//! Who may call what: every admin route × every role × the caller's own tenant and another one,
//! from the route table (`admin::routes::ROUTES`), so a route added without a row here fails.
//! A refusal is a 403 with a reason, and is audited (principal, route, tenant; no payload) in the
//! tenant's chain, or the platform's when it names no registered tenant.

mod common;

use admin::Admin;
use admin::routes::{ROUTES, Route, RouteId, TenantFrom};
use common::{grant, request_as, tenant_chain, trail};
use http::Method;
use serde_json::{Value, json};
use shared::access::Role;
use shared::apigw;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditAction, AuditChain, AuditEvent};
use shared::identity::SubjectKeySecret;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::Stores;
use shared::timestamp::Timestamp;
use std::sync::Arc;
use std::time::Duration;

const OWN: &str = "tenant-a";
const OTHER: &str = "tenant-b";
const AGENT: &str = "arn:aws:iam::000000000000:user/agent-a";
const OFFICER: &str = "arn:aws:iam::000000000000:user/privacy-officer";
const ADMIN: &str = "arn:aws:iam::000000000000:user/platform-admin";
const AUDITOR: &str = "arn:aws:iam::000000000000:user/auditor";
/// Authenticated by IAM, granted nothing.
const NOBODY: &str = "arn:aws:iam::000000000000:user/nobody";

/// Who may use a route: the matrix the policy's role table gives, written out by hand.
fn allowed(route: RouteId, role: Role, own: bool) -> bool {
    use Role::*;
    use RouteId::*;
    match route {
        RegisterTenant | ListPrincipals | GrantPrincipal | Offboard => role == PlatformAdmin,
        Contacts | Messages | Events => role == TenantAgent && own,
        Contactability | OptOutReviews | DecideOptOutReview => (role == TenantAgent && own) || role == PrivacyOfficer,
        AuditTrail | VerifyAudit => role == Auditor,
        Compliance => matches!(role, Auditor | PrivacyOfficer | PlatformAdmin),
    }
}

/// What an allowed call of `call_route` answers: the fixture's contact handle and review id name
/// nothing, so those routes get past the check to their own 404.
fn allowed_status(route: RouteId) -> i64 {
    match route {
        RouteId::Messages | RouteId::DecideOptOutReview => 404,
        _ => 200,
    }
}

struct Fixture {
    admin: Admin,
    stores: Stores,
}

impl Fixture {
    async fn new() -> Self {
        let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
        let stores = shared::store::embedded::stores(clock.clone());
        let queue = || Arc::new(EmbeddedQueue::new(clock.clone(), Duration::from_secs(30)));
        let secret = SubjectKeySecret::new(b"access-test-subject-key-secret-0123456789".to_vec()).expect("long enough");
        let admin = Admin::new(stores.clone(), queue(), queue(), clock.clone(), secret);
        grant(&stores, AGENT, &[Role::TenantAgent], &[OWN]).await;
        grant(&stores, OFFICER, &[Role::PrivacyOfficer], &[]).await;
        grant(&stores, ADMIN, &[Role::PlatformAdmin], &[]).await;
        grant(&stores, AUDITOR, &[Role::Auditor], &[]).await;
        let f = Self { admin, stores };
        for t in [OWN, OTHER] {
            let (status, body) = f
                .call(
                    ADMIN,
                    Method::POST,
                    "/admin/tenants",
                    &[],
                    Some(json!({"tenant_id": t, "name": t})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        f
    }

    async fn call(
        &self,
        principal: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (i64, Value) {
        let resp = self
            .admin
            .handle(&request_as(Some(principal), method, path, query, body))
            .await;
        let body = serde_json::from_str(&apigw::body_text(&resp)).unwrap_or(Value::Null);
        (resp.status_code, body)
    }

    /// A request to `route` that acts on `tenant`, with a body of the shape it takes.
    async fn call_route(&self, principal: &str, route: &Route, tenant: &str) -> (i64, Value) {
        let path = route
            .pattern
            .replace("{tenant}", tenant)
            .replace("{contact}", "c_unknown")
            .replace("{id}", "1800000000000.00000000-0000-0000-0000-000000000000");
        let body = match route.id {
            RouteId::RegisterTenant => Some(json!({"tenant_id": tenant, "name": "Renamed"})),
            RouteId::Contactability => Some(json!({"tenant": tenant, "channel": "whatsapp", "id": "5491123456789"})),
            RouteId::DecideOptOutReview => Some(json!({"decision": "dismiss"})),
            RouteId::GrantPrincipal => {
                Some(json!({"principal": "arn:aws:iam::000000000000:user/new", "roles": ["auditor"]}))
            }
            _ => None,
        };
        let query: Vec<(&str, &str)> = match route.tenant {
            TenantFrom::Query => vec![("tenant", tenant)],
            _ => Vec::new(),
        };
        self.call(principal, route.method.clone(), &path, &query, body).await
    }

    async fn denials(&self, chain: &AuditChain) -> Vec<AuditEvent> {
        trail(&self.stores, chain)
            .await
            .into_iter()
            .filter(|e| e.action == AuditAction::Denied)
            .collect()
    }
}

fn principal_of(role: Role) -> &'static str {
    match role {
        Role::TenantAgent => AGENT,
        Role::PrivacyOfficer => OFFICER,
        Role::PlatformAdmin => ADMIN,
        Role::Auditor => AUDITOR,
    }
}

/// The chain a refusal of `route` on `tenant` is audited in.
fn refusal_chain(route: &Route, tenant: &str) -> AuditChain {
    match route.tenant {
        TenantFrom::NoTenant => AuditChain::Platform,
        _ => tenant_chain(tenant),
    }
}

#[tokio::test]
async fn every_route_by_every_role_on_its_own_and_another_tenant() {
    let f = Fixture::new().await;
    let mut checked = 0;
    for route in ROUTES {
        for role in Role::ALL {
            for (tenant, own) in [(OWN, true), (OTHER, false)] {
                let chain = refusal_chain(route, tenant);
                let before = f.denials(&chain).await.len();
                let (status, body) = f.call_route(principal_of(role), route, tenant).await;
                let case = format!("{} as {role} on {tenant}: {status} {body}", route.name());
                let denials = f.denials(&chain).await;
                if allowed(route.id, role, own) {
                    assert_eq!(status, allowed_status(route.id), "{case}");
                    assert_eq!(denials.len(), before, "{case}: nothing denied");
                } else {
                    assert_eq!(status, 403, "{case}");
                    assert!(
                        !body["error"].as_str().unwrap_or_default().is_empty(),
                        "{case}: a reason"
                    );
                    assert_eq!(denials.len(), before + 1, "{case}: the refusal is audited");
                    let d = &denials[before..][0];
                    assert_eq!(
                        (d.actor.as_str(), d.route.as_str()),
                        (principal_of(role), route.name().as_str()),
                        "{case}"
                    );
                    assert!(
                        d.contact.is_none() && d.subject_key.is_none() && d.detail.is_none(),
                        "{case}: no payload"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, ROUTES.len() * 4 * 2);
}

#[tokio::test]
async fn a_principal_with_no_grant_is_refused_everywhere() {
    let f = Fixture::new().await;
    // In the platform's chain: a caller with no grant cannot crowd a tenant's chain.
    for route in ROUTES {
        let before = f.denials(&AuditChain::Platform).await.len();
        let (status, body) = f.call_route(NOBODY, route, OWN).await;
        assert_eq!(status, 403, "{}: {body}", route.name());
        assert_eq!(body["error"], "this principal holds no role", "{}", route.name());
        let denials = f.denials(&AuditChain::Platform).await;
        assert_eq!(denials.len(), before + 1, "{}", route.name());
        let asked = (route.tenant != TenantFrom::NoTenant).then(|| format!("tenant {OWN}"));
        assert_eq!(denials[before].detail, asked, "{}: the tenant asked for", route.name());
    }
}

/// Bad input: a request with no authenticated principal (no IAM authorizer context), on every
/// route. The handler answers 401 itself, before any lookup, and writes nothing, audit included.
#[tokio::test]
async fn no_principal_gets_401_on_every_route_and_nothing_is_written() {
    let f = Fixture::new().await;
    let audited = || async {
        trail(&f.stores, &tenant_chain(OWN)).await.len() + trail(&f.stores, &AuditChain::Platform).await.len()
    };
    let before = audited().await;
    for route in ROUTES {
        let path = route
            .pattern
            .replace("{tenant}", OWN)
            .replace("{contact}", "c_x")
            .replace("{id}", "1.x");
        let resp = f
            .admin
            .handle(&request_as(
                None,
                route.method.clone(),
                &path,
                &[],
                Some(json!({"tenant": OWN})),
            ))
            .await;
        assert_eq!(resp.status_code, 401, "{}", route.name());
    }
    let resp = f
        .admin
        .handle(&request_as(None, Method::GET, "/admin/nowhere", &[], None))
        .await;
    assert_eq!(resp.status_code, 401);
    assert_eq!(audited().await, before, "nothing audited, nothing read");
}

/// A refusal naming a tenant that is not registered (or no tenant id at all) goes to the
/// platform's chain: an unknown name creates no chain of its own.
#[tokio::test]
async fn a_refusal_on_an_unknown_tenant_is_in_the_platform_chain() {
    let f = Fixture::new().await;
    for tenant in ["tenant-zz", "Not A Tenant"] {
        let before = f.denials(&AuditChain::Platform).await.len();
        let (status, _) = f
            .call(
                AGENT,
                Method::GET,
                &format!("/admin/tenants/{tenant}/contacts"),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 403, "{tenant}");
        let denials = f.denials(&AuditChain::Platform).await;
        assert_eq!(denials.len(), before + 1, "{tenant}");
        // A tenant id is named; any other text is not repeated (it could be anything).
        let asked = (tenant == "tenant-zz").then(|| format!("tenant {tenant}"));
        assert_eq!(denials[before].detail, asked, "{tenant}");
    }
    assert!(trail(&f.stores, &tenant_chain("tenant-zz")).await.is_empty());
}

/// Bad input: paths that try to reach tenant B through encoding, for an agent of tenant A. Each
/// segment is decoded exactly once, so none of them names tenant B as A, and none returns B's data.
#[tokio::test]
async fn encoded_segments_cannot_reach_another_tenant() {
    let f = Fixture::new().await;
    let attempts = [
        "/admin/tenants/tenant-a%2F..%2Ftenant-b/contacts",
        "/admin/tenants/tenant-a%252F..%252Ftenant-b/contacts",
        "/admin/tenants/tenant-b%23tenant-a/contacts",
        "/admin/tenants/tenant-a%23/contacts",
        "/admin/tenants/Tenant-B/contacts",
        "/admin/tenants/TENANT-A/contacts",
        "/admin/tenants/%74enant-b/contacts",
        "/admin/tenants/tenant-a/contacts%2F..%2F..%2Ftenant-b%2Fcontacts",
        "/admin/tenants/tenant-b/contacts%2f",
    ];
    for path in attempts {
        let (status, body) = f.call(AGENT, Method::GET, path, &[], None).await;
        assert!([403, 404].contains(&status), "{path}: {status} {body}");
        assert!(body.get("contacts").is_none(), "{path}: {body}");
    }
    // Decoding once is decoding: an encoded letter of the agent's own tenant is that tenant.
    let (status, body) = f
        .call(AGENT, Method::GET, "/admin/tenants/%74enant-a/contacts", &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_grant_takes_effect_at_once_and_a_revocation_too() {
    let f = Fixture::new().await;
    let new = "arn:aws:iam::000000000000:role/AgentsB";
    let session = "arn:aws:sts::000000000000:assumed-role/AgentsB/ana-session";
    let contacts = format!("/admin/tenants/{OTHER}/contacts");
    assert_eq!(f.call(session, Method::GET, &contacts, &[], None).await.0, 403);

    let body = json!({"principal": new, "roles": ["tenant_agent"], "tenants": [OTHER]});
    let (status, granted) = f.call(ADMIN, Method::POST, "/admin/principals", &[], Some(body)).await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["granted_by"], ADMIN);
    // A role session is granted through its role.
    assert_eq!(f.call(session, Method::GET, &contacts, &[], None).await.0, 200);
    assert_eq!(
        f.call(
            session,
            Method::GET,
            &format!("/admin/tenants/{OWN}/contacts"),
            &[],
            None
        )
        .await
        .0,
        403
    );
    let (status, listed) = f.call(ADMIN, Method::GET, "/admin/principals", &[], None).await;
    assert_eq!(status, 200);
    assert!(
        listed["principals"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["id"] == new)),
        "{listed}"
    );

    let revoke = json!({"principal": new, "roles": []});
    let (status, body) = f
        .call(ADMIN, Method::POST, "/admin/principals", &[], Some(revoke))
        .await;
    assert_eq!((status, &body["revoked"]), (200, &json!(true)), "{body}");
    assert_eq!(f.call(session, Method::GET, &contacts, &[], None).await.0, 403);

    // Both changes are in the platform's chain, saying what changed.
    let changes: Vec<String> = trail(&f.stores, &AuditChain::Platform)
        .await
        .into_iter()
        .filter(|e| e.action == AuditAction::Change)
        .filter_map(|e| e.detail)
        .collect();
    assert_eq!(
        changes,
        [
            format!("{new}: roles [tenant_agent], tenants [{OTHER}]"),
            format!("{new}: revoked")
        ]
    );
}

/// Bad input: grants that make no sense, each refused with a 400 naming the field; and a
/// platform_admin removing its own role, refused with a 409.
#[tokio::test]
async fn bad_grants_are_refused_and_nothing_changes() {
    let f = Fixture::new().await;
    let cases = [
        (json!({"principal": "arn:x", "roles": ["root"]}), "roles"),
        (json!({"principal": "has space", "roles": ["auditor"]}), "principal"),
        (json!({"principal": "arn:x", "roles": ["tenant_agent"]}), "tenants"),
        (
            json!({"principal": "arn:x", "roles": ["auditor"], "tenants": [OWN]}),
            "tenants",
        ),
        (
            json!({"principal": "arn:x", "roles": ["tenant_agent"], "tenants": ["tenant-zz"]}),
            "tenants",
        ),
        (
            json!({"principal": "arn:x", "roles": ["auditor"], "colour": "red"}),
            "body",
        ),
        // A role session's name is chosen by whoever assumes the role: its role is granted.
        (
            json!({"principal": "arn:aws:sts::000000000000:assumed-role/Agents/ana", "roles": ["auditor"]}),
            "principal",
        ),
        // Separation of duties.
        (
            json!({"principal": "arn:x", "roles": ["platform_admin", "tenant_agent"], "tenants": [OWN]}),
            "roles",
        ),
        (
            json!({"principal": "arn:x", "roles": ["auditor", "privacy_officer"]}),
            "roles",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = f
            .call(ADMIN, Method::POST, "/admin/principals", &[], Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().starts_with(field),
            "{body}: {answer}"
        );
    }
    // No one changes their own grant: neither dropping platform_admin nor widening it.
    for own in [
        json!({"principal": ADMIN, "roles": ["auditor"]}),
        json!({"principal": ADMIN, "roles": []}),
        json!({"principal": AGENT, "roles": ["tenant_agent"], "tenants": [OWN, OTHER]}),
    ] {
        let caller = if own["principal"] == ADMIN { ADMIN } else { AGENT };
        let (status, answer) = f
            .call(caller, Method::POST, "/admin/principals", &[], Some(own.clone()))
            .await;
        let expected = if caller == ADMIN { 409 } else { 403 };
        assert_eq!(status, expected, "{own}: {answer}");
    }
    assert_eq!(
        f.call(ADMIN, Method::GET, "/admin/principals", &[], None).await.0,
        200,
        "still an admin"
    );
}

#[tokio::test]
async fn an_auditor_lists_a_chain_by_time_and_verifies_it() {
    let f = Fixture::new().await;
    for _ in 0..3 {
        assert_eq!(
            f.call(AGENT, Method::GET, "/admin/tenants/tenant-a/contacts", &[], None)
                .await
                .0,
            200
        );
    }
    let (status, listed) = f
        .call(
            AUDITOR,
            Method::GET,
            "/admin/audit",
            &[("tenant", OWN), ("limit", "2")],
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let events = listed["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1]["prev_hash"], events[0]["hash"],
        "each event carries the previous one's hash"
    );
    let cursor = listed["next_cursor"].as_str().expect("more").to_owned();
    let (status, rest) = f
        .call(
            AUDITOR,
            Method::GET,
            "/admin/audit",
            &[("tenant", OWN), ("cursor", &cursor)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["events"][0]["seq"], 3);

    let (status, none) = f
        .call(
            AUDITOR,
            Method::GET,
            "/admin/audit",
            &[("tenant", OWN), ("to", "2020-01-01T00:00:00Z")],
            None,
        )
        .await;
    assert_eq!(
        (status, none["events"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{none}"
    );
    let (status, bad) = f
        .call(
            AUDITOR,
            Method::GET,
            "/admin/audit",
            &[("tenant", OWN), ("from", "yesterday")],
            None,
        )
        .await;
    assert_eq!(status, 400, "bad input: from is not a time: {bad}");
    let reversed = [
        ("tenant", OWN),
        ("from", "2030-01-02T00:00:00Z"),
        ("to", "2030-01-01T00:00:00Z"),
    ];
    let (status, bad) = f.call(AUDITOR, Method::GET, "/admin/audit", &reversed, None).await;
    assert_eq!(status, 400, "bad input: from after to: {bad}");
    assert_eq!(
        f.call(AUDITOR, Method::GET, "/admin/audit", &[("tenant", "tenant-zz")], None)
            .await
            .0,
        404,
        "an unregistered tenant has no trail"
    );

    for query in [vec![("tenant", OWN)], vec![]] {
        let (status, v) = f.call(AUDITOR, Method::GET, "/admin/audit/verify", &query, None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["intact"], true, "{v}");
        assert!(v["events"].as_u64().unwrap_or_default() >= 1, "{v}");
    }
}

/// Bad input: a contactability question that names no tenant (not JSON, or no `tenant` field).
/// A caller who may ask gets a 400 naming the field; one who may not is refused whatever the body.
#[tokio::test]
async fn a_body_naming_no_tenant_is_a_400_for_those_who_may_ask() {
    let f = Fixture::new().await;
    let no_tenant = json!({"channel": "whatsapp", "id": "5491123456789"});
    for who in [AGENT, OFFICER] {
        let (status, body) = f
            .call(who, Method::POST, "/admin/contactability", &[], Some(no_tenant.clone()))
            .await;
        assert_eq!(status, 400, "{who}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().starts_with("tenant"),
            "{body}"
        );
        let resp = f
            .admin
            .handle(&{
                let mut r = request_as(Some(who), Method::POST, "/admin/contactability", &[], None);
                r.body = Some("not json".to_owned());
                r
            })
            .await;
        assert_eq!(resp.status_code, 400, "{who}: not JSON");
    }
    let (status, _) = f
        .call(AUDITOR, Method::POST, "/admin/contactability", &[], Some(no_tenant))
        .await;
    assert_eq!(status, 403, "an auditor may not ask, whatever the body");
}

/// Bad input: an audit reason that holds an identifier (a phone, an e-mail address). The trail
/// names people by handle only, so the request is refused before anything is read or recorded.
#[tokio::test]
async fn an_audit_reason_holding_an_identifier_is_refused() {
    let f = Fixture::new().await;
    let before = trail(&f.stores, &tenant_chain(OWN)).await.len();
    for reason in ["pedido de +54 9 11 2345-6789", "ana@example.com asked", "5491123456789"] {
        let mut req = request_as(Some(AGENT), Method::GET, "/admin/tenants/tenant-a/contacts", &[], None);
        req.headers.insert("x-audit-reason", reason.parse().expect("header"));
        let resp = f.admin.handle(&req).await;
        assert_eq!(resp.status_code, 400, "{reason}");
        assert!(
            !apigw::body_text(&resp).contains("2345"),
            "the refusal does not echo it"
        );
    }
    assert_eq!(trail(&f.stores, &tenant_chain(OWN)).await.len(), before);
    let mut req = request_as(Some(AGENT), Method::GET, "/admin/tenants/tenant-a/contacts", &[], None);
    req.headers.insert(
        "x-audit-reason",
        "access request 42 (ticket PRIV-118)".parse().expect("header"),
    );
    assert_eq!(f.admin.handle(&req).await.status_code, 200, "a case reference is fine");
}
