//! Who may call the local stack's admin routes: one bearer token per principal, from
//! `LOCAL_PRINCIPALS` or, without it, one development principal per role. In AWS, IAM
//! authenticates the caller; here the token stands in for it, and the grant is stored in the
//! principals store exactly as the operator CLI stores one in AWS.

use serde::Deserialize;
use shared::access::{Principal, PrincipalId, Role};
use shared::domain::TenantId;
use shared::store::{PrincipalStore, StoreError};
use shared::timestamp::Timestamp;
use std::collections::BTreeSet;

/// The environment variable: a JSON list of `{"token", "principal", "roles", "tenants"?}`.
pub const LOCAL_PRINCIPALS: &str = "LOCAL_PRINCIPALS";

/// The development principals, one per role: printed, never used outside this binary.
const DEV_PRINCIPALS: &[(&str, &str, Role, &[&str])] = &[
    (
        "dev-platform-admin-token",
        "arn:local:iam::000000000000:user/local-platform-admin",
        Role::PlatformAdmin,
        &[],
    ),
    (
        "dev-tenant-agent-token",
        "arn:local:iam::000000000000:user/local-tenant-agent",
        Role::TenantAgent,
        &["demo"],
    ),
    (
        "dev-privacy-officer-token",
        "arn:local:iam::000000000000:user/local-privacy-officer",
        Role::PrivacyOfficer,
        &[],
    ),
    (
        "dev-auditor-token",
        "arn:local:iam::000000000000:user/local-auditor",
        Role::Auditor,
        &[],
    ),
];

/// One configured principal and the token that authenticates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPrincipal {
    pub token: String,
    pub id: PrincipalId,
    pub roles: BTreeSet<Role>,
    pub tenants: BTreeSet<TenantId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: String,
    principal: String,
    roles: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

/// The configured principals; `None` (no variable) gives the development ones.
pub fn parse(config: Option<&str>) -> Result<Vec<LocalPrincipal>, String> {
    let Some(text) = config else {
        return Ok(DEV_PRINCIPALS
            .iter()
            .map(|(token, id, role, tenants)| LocalPrincipal {
                token: (*token).to_owned(),
                id: PrincipalId::new(*id).unwrap_or_else(|_| unreachable!("constant ids are valid")),
                roles: BTreeSet::from([*role]),
                tenants: tenants.iter().filter_map(|t| TenantId::new(*t).ok()).collect(),
            })
            .collect());
    };
    let entries: Vec<Entry> =
        serde_json::from_str(text).map_err(|e| format!("{LOCAL_PRINCIPALS}: not a list of principals: {e}"))?;
    let mut out: Vec<LocalPrincipal> = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let at = |what: String| format!("{LOCAL_PRINCIPALS}[{i}]: {what}");
        if e.token.len() < 16 {
            return Err(at("token: at least 16 characters".into()));
        }
        if out.iter().any(|p| p.token == e.token) {
            return Err(at("token: used twice".into()));
        }
        let id = PrincipalId::new(e.principal).map_err(|err| at(format!("principal: {err}")))?;
        let roles = e
            .roles
            .iter()
            .map(|r| Role::parse(r).ok_or_else(|| at(format!("roles: unknown role {r:?}"))))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let tenants = e
            .tenants
            .iter()
            .map(|t| TenantId::new(t.as_str()).map_err(|err| at(format!("tenants: {err}"))))
            .collect::<Result<BTreeSet<_>, _>>()?;
        out.push(LocalPrincipal {
            token: e.token,
            id,
            roles,
            tenants,
        });
    }
    Ok(out)
}

/// Stores every configured grant, as `platform_admin` or the CLI would.
pub async fn seed(store: &dyn PrincipalStore, principals: &[LocalPrincipal], now: Timestamp) -> Result<(), StoreError> {
    for p in principals {
        let grant = Principal {
            id: p.id.grant_key(),
            roles: p.roles.clone(),
            tenants: p.tenants.clone(),
            granted_at: now,
            granted_by: "local stack configuration".to_owned(),
        };
        store.put(&grant).await?;
    }
    Ok(())
}

/// The principal a bearer token authenticates.
pub fn authenticate<'a>(principals: &'a [LocalPrincipal], token: &str) -> Option<&'a LocalPrincipal> {
    principals.iter().find(|p| p.token == token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_development_principal_per_role() {
        let dev = parse(None).expect("dev principals");
        let roles: BTreeSet<Role> = dev.iter().flat_map(|p| p.roles.iter().copied()).collect();
        assert_eq!(roles, Role::ALL.into_iter().collect());
    }

    #[test]
    fn bad_configuration_names_the_entry_and_field() {
        let bad_role = r#"[{"token": "0123456789abcdef", "principal": "arn:x", "roles": ["root"]}]"#;
        assert!(parse(Some(bad_role)).expect_err("unknown role").contains("[0]: roles"));
        let short = r#"[{"token": "short", "principal": "arn:x", "roles": []}]"#;
        assert!(parse(Some(short)).expect_err("short token").contains("token"));
        assert!(parse(Some("{}")).is_err());
    }
}
