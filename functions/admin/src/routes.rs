//! Every admin route, with the permission it needs and where its tenant comes from. The handler
//! checks access from this table before a route's own code runs, so no route can forget it.

use http::Method;
use shared::access::Permission;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteId {
    RegisterTenant,
    Contacts,
    Messages,
    Events,
    Contactability,
    OptOutReviews,
    DecideOptOutReview,
    ListPrincipals,
    GrantPrincipal,
    AuditTrail,
    VerifyAudit,
    Compliance,
    Offboard,
}

/// Where the tenant a request acts on is named: checked before anything is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantFrom {
    /// The `{tenant}` path segment.
    Path,
    /// The JSON body's `field`.
    Body(&'static str),
    /// `?tenant=`; absent means the platform's own records.
    Query,
    /// The route acts on no tenant.
    NoTenant,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub id: RouteId,
    pub method: Method,
    /// Path segments; `{name}` captures one.
    pub pattern: &'static str,
    pub permission: Permission,
    pub tenant: TenantFrom,
}

impl Route {
    /// How audit events and logs name the route: method and pattern, never a raw path.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.pattern)
    }
}

const fn route(
    id: RouteId,
    method: Method,
    pattern: &'static str,
    permission: Permission,
    tenant: TenantFrom,
) -> Route {
    Route {
        id,
        method,
        pattern,
        permission,
        tenant,
    }
}

pub const ROUTES: &[Route] = &[
    route(
        RouteId::RegisterTenant,
        Method::POST,
        "/admin/tenants",
        Permission::ManageTenants,
        TenantFrom::Body("tenant_id"),
    ),
    route(
        RouteId::Contacts,
        Method::GET,
        "/admin/tenants/{tenant}/contacts",
        Permission::ReadConversations,
        TenantFrom::Path,
    ),
    route(
        RouteId::Messages,
        Method::GET,
        "/admin/tenants/{tenant}/contacts/{contact}/messages",
        Permission::ReadConversations,
        TenantFrom::Path,
    ),
    route(
        RouteId::Events,
        Method::GET,
        "/admin/tenants/{tenant}/events",
        Permission::ReadConversations,
        TenantFrom::Path,
    ),
    route(
        RouteId::Contactability,
        Method::POST,
        "/admin/contactability",
        Permission::CheckContactability,
        TenantFrom::Body("tenant"),
    ),
    route(
        RouteId::OptOutReviews,
        Method::GET,
        "/admin/tenants/{tenant}/optout-reviews",
        Permission::WorkOptOutReviews,
        TenantFrom::Path,
    ),
    route(
        RouteId::DecideOptOutReview,
        Method::POST,
        "/admin/tenants/{tenant}/optout-reviews/{id}",
        Permission::WorkOptOutReviews,
        TenantFrom::Path,
    ),
    route(
        RouteId::ListPrincipals,
        Method::GET,
        "/admin/principals",
        Permission::ManagePrincipals,
        TenantFrom::NoTenant,
    ),
    route(
        RouteId::GrantPrincipal,
        Method::POST,
        "/admin/principals",
        Permission::ManagePrincipals,
        TenantFrom::NoTenant,
    ),
    route(
        RouteId::AuditTrail,
        Method::GET,
        "/admin/audit",
        Permission::ReadAudit,
        TenantFrom::Query,
    ),
    route(
        RouteId::VerifyAudit,
        Method::GET,
        "/admin/audit/verify",
        Permission::ReadAudit,
        TenantFrom::Query,
    ),
    route(
        RouteId::Compliance,
        Method::GET,
        "/admin/compliance",
        Permission::ReadCompliance,
        TenantFrom::NoTenant,
    ),
    route(
        RouteId::Offboard,
        Method::POST,
        "/admin/tenants/{tenant}/offboard",
        Permission::OffboardTenants,
        TenantFrom::Path,
    ),
];

/// A matched route and its captured segments.
#[derive(Debug)]
pub struct Matched<'a> {
    pub route: &'static Route,
    params: Vec<(&'static str, &'a str)>,
}

impl Matched<'_> {
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
    }
}

/// What the path and method select.
#[derive(Debug)]
pub enum Selected<'a> {
    Route(Matched<'a>),
    /// The path is a route's, the method is not.
    WrongMethod(&'static Route),
    NoRoute,
}

/// Matches decoded path segments (each decoded exactly once) against the table.
pub fn select<'a>(method: &Method, segments: &[&'a str]) -> Selected<'a> {
    let mut wrong_method = None;
    for r in ROUTES {
        let pattern: Vec<&str> = r.pattern.trim_matches('/').split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits = pattern.iter().zip(segments).all(|(p, s)| match p.strip_prefix('{') {
            Some(name) => {
                params.push((name.trim_end_matches('}'), *s));
                !s.is_empty()
            }
            None => p == s,
        });
        if !fits {
            continue;
        }
        if r.method == method {
            return Selected::Route(Matched { route: r, params });
        }
        wrong_method.get_or_insert(r);
    }
    wrong_method.map_or(Selected::NoRoute, Selected::WrongMethod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_reachable_by_its_own_pattern() {
        for r in ROUTES {
            let segments: Vec<&str> = r
                .pattern
                .trim_matches('/')
                .split('/')
                .map(|s| if s.starts_with('{') { "x-1" } else { s })
                .collect();
            match select(&r.method, &segments) {
                Selected::Route(m) => assert_eq!(m.route.id, r.id, "{}", r.name()),
                other => panic!("{} selects {other:?}", r.name()),
            }
        }
        assert!(matches!(
            select(&Method::GET, &["admin", "contactability"]),
            Selected::WrongMethod(_)
        ));
        assert!(matches!(select(&Method::GET, &["admin", "nothing"]), Selected::NoRoute));
    }
}
