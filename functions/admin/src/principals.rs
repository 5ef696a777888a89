//! Grants: which principals hold which roles, over which tenants. Managed by `platform_admin`
//! here and by the operator CLI (which bootstraps the first one); every change is in the
//! platform's audit chain.

use crate::{Admin, AdminError, AuditTarget, Ctx, bad_request, store_error};
use serde::Deserialize;
use shared::access::{Principal, PrincipalId, Role};
use shared::apigw::{self, Request, Response};
use shared::domain::{AuditChain, TenantId};
use shared::seal::CursorScope;
use std::collections::BTreeSet;

/// `POST /admin/principals`: the whole grant. No roles revokes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    principal: String,
    roles: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

const GRANT_SHAPE: &str = r#"expected {"principal": "<IAM ARN>", "roles": ["tenant_agent"|"privacy_officer"|"platform_admin"|"auditor", ...], "tenants"?: ["<tenant id>", ...]}"#;

/// A grant as the audit trail describes it.
pub fn describe(p: &Principal) -> String {
    let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
    let tenants: Vec<&str> = p.tenants.iter().map(TenantId::as_str).collect();
    format!(
        "{}: roles [{}], tenants [{}]",
        p.id,
        roles.join(", "),
        tenants.join(", ")
    )
}

/// A revocation as the audit trail describes it.
pub fn revoked(id: &PrincipalId) -> String {
    format!("{id}: revoked")
}

/// The first of `tenants` that is not registered: a grant may only name registered tenants.
pub async fn first_unregistered(
    stores: &shared::store::Stores,
    tenants: &BTreeSet<TenantId>,
) -> Result<Option<TenantId>, shared::store::StoreError> {
    for t in tenants {
        if stores.tenants.get(t).await?.is_none() {
            return Ok(Some(t.clone()));
        }
    }
    Ok(None)
}

/// Roles one principal may not hold together: whoever runs the platform or audits it does not
/// also work tenants' conversations, and an auditor audits only.
fn separation_of_duties(roles: &BTreeSet<Role>) -> Result<(), AdminError> {
    for alone in [Role::PlatformAdmin, Role::Auditor] {
        if roles.contains(&alone) && roles.len() > 1 {
            return Err(bad_request("roles", format!("{alone} is not held with another role")));
        }
    }
    Ok(())
}

/// Checks a requested grant: a user or role (never a role session, whose name its holder
/// chooses), known roles that may go together, tenants only for `tenant_agent` (and then at least
/// one). A role with a path is stored without it, as its sessions name it.
pub fn parse_grant(
    principal: &str,
    roles: &[String],
    tenants: &[String],
) -> Result<(PrincipalId, BTreeSet<Role>, BTreeSet<TenantId>), AdminError> {
    let id = PrincipalId::new(principal).map_err(|e| bad_request("principal", e))?;
    if id.is_role_session() {
        return Err(bad_request(
            "principal",
            "a role session: grant its role (arn:aws:iam::ACCOUNT:role/NAME)",
        ));
    }
    let id = id.for_grant();
    let roles = roles
        .iter()
        .map(|r| Role::parse(r).ok_or_else(|| bad_request("roles", format!("unknown role {r:?}"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let tenants = tenants
        .iter()
        .map(|t| TenantId::new(t.as_str()).map_err(|e| bad_request("tenants", e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    separation_of_duties(&roles)?;
    match (roles.contains(&Role::TenantAgent), tenants.is_empty()) {
        (true, true) => Err(bad_request("tenants", "tenant_agent needs at least one tenant")),
        (false, false) => Err(bad_request("tenants", "tenants apply to tenant_agent only")),
        _ => Ok((id, roles, tenants)),
    }
}

impl Admin {
    pub(crate) async fn list_principals(&self, req: &Request, ctx: &Ctx) -> Response {
        let page = match self.page_request(req, CursorScope::Principals) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        if let Err(e) = self
            .audit(AuditChain::Platform, ctx, req, AuditTarget::Principals)
            .await
        {
            return e.into();
        }
        match self.stores.principals.list(&page).await {
            Ok(p) => apigw::json(
                200,
                &serde_json::json!({
                    "principals": p.items,
                    "next_cursor": self.next_cursor(CursorScope::Principals, p.next.as_ref()),
                }),
            ),
            Err(e) => store_error(e).into(),
        }
    }

    pub(crate) async fn grant(&self, req: &Request, ctx: &Ctx) -> Response {
        let body = match apigw::body_bytes(req).map(|b| serde_json::from_slice::<GrantBody>(&b)) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let at = format!("line {}, column {}", e.line(), e.column());
                return bad_request("body", format!("{GRANT_SHAPE} (at {at})")).into();
            }
            Err(e) => return bad_request("body", e).into(),
        };
        let (id, roles, tenants) = match parse_grant(&body.principal, &body.roles, &body.tenants) {
            Ok(g) => g,
            Err(e) => return e.into(),
        };
        match first_unregistered(&self.stores, &tenants).await {
            Ok(None) => {}
            Ok(Some(t)) => return bad_request("tenants", format!("{t} is not a registered tenant")).into(),
            Err(e) => return store_error(e).into(),
        }
        // No one changes their own grant: not to widen it, not to lock everyone out by dropping
        // the last platform_admin. Another platform_admin, or the operator CLI, can.
        let own = PrincipalId::new(ctx.actor.as_str()).is_ok_and(|me| me.grant_key() == id);
        if own {
            return AdminError::Conflict(
                "a principal cannot change its own grant: another platform_admin or the operator CLI can".into(),
            )
            .into();
        }
        let grant = Principal {
            id,
            roles,
            tenants,
            granted_at: self.clock.now(),
            granted_by: ctx.actor.clone(),
        };
        let detail = if grant.roles.is_empty() {
            revoked(&grant.id)
        } else {
            describe(&grant)
        };
        if let Err(e) = self
            .audit(AuditChain::Platform, ctx, req, AuditTarget::Grant { detail })
            .await
        {
            return e.into();
        }
        if grant.roles.is_empty() {
            return match self.stores.principals.delete(&grant.id).await {
                Ok(revoked) => apigw::json(200, &serde_json::json!({"principal": grant.id, "revoked": revoked})),
                Err(e) => store_error(e).into(),
            };
        }
        match self.stores.principals.put(&grant).await {
            Ok(()) => apigw::json(200, &grant),
            Err(e) => store_error(e).into(),
        }
    }
}
