//! The operator CLI's grants: what `platform_admin` does through `POST /admin/principals`, done
//! with AWS credentials directly on the tables. It is how the first `platform_admin` is granted
//! in a new deployment, and how one is restored if the last was revoked. Every change goes to the
//! platform's audit chain, as the API's does.

use admin::principals::{describe, first_unregistered, parse_grant, revoked};
use shared::access::{Principal, PrincipalId};
use shared::domain::{AuditAction, AuditChain, AuditEvent};
use shared::retention::{DEFAULT_AUDIT_RETENTION_MONTHS, audit_expiry};
use shared::store::{PageRequest, Stores};
use shared::timestamp::Timestamp;

pub const USAGE: &str = "usage: operator [--dynamodb-endpoint URL] --by NAME <command>\n\
     \x20 grant PRINCIPAL_ARN --role ROLE [--role ROLE ...] [--tenant TENANT ...]\n\
     \x20 revoke PRINCIPAL_ARN\n\
     \x20 list\n\
     roles: tenant_agent (needs --tenant), privacy_officer, platform_admin, auditor.\n\
     Tables: TENANTS_TABLE and AUDIT_TABLE (the stack's outputs TenantsTableName, AuditTableName);\n\
     credentials and region from the usual AWS environment. --by names you in the audit trail.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Grant {
        principal: String,
        roles: Vec<String>,
        tenants: Vec<String>,
    },
    Revoke {
        principal: String,
    },
    List,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub dynamodb_endpoint: Option<String>,
    /// Who runs it, as the audit trail records: `operator-cli:<by>`.
    pub by: String,
    pub command: Command,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Invocation, String> {
    let mut args = args.into_iter();
    let (mut endpoint, mut by, mut positional) = (None, None, Vec::new());
    let (mut roles, mut tenants) = (Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dynamodb-endpoint" => endpoint = Some(value()?),
            "--by" => by = Some(value()?),
            "--role" => roles.push(value()?),
            "--tenant" => tenants.push(value()?),
            "-h" | "--help" => return Err("help".into()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => positional.push(a),
        }
    }
    let by = by
        .filter(|b| !b.trim().is_empty())
        .ok_or("--by NAME is required: it names you in the audit trail")?;
    let command = match positional.as_slice() {
        [c, principal] if c == "grant" => Command::Grant {
            principal: principal.clone(),
            roles,
            tenants,
        },
        [c, principal] if c == "revoke" => Command::Revoke {
            principal: principal.clone(),
        },
        [c] if c == "list" => Command::List,
        _ => return Err("expected grant PRINCIPAL, revoke PRINCIPAL or list".into()),
    };
    if matches!(command, Command::Grant { ref roles, .. } if roles.is_empty()) {
        return Err("grant needs at least one --role (revoke removes a grant)".into());
    }
    Ok(Invocation {
        dynamodb_endpoint: endpoint,
        by,
        command,
    })
}

fn change_event(by: &str, command: &str, detail: String, now: Timestamp) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::new_v4(),
        chain: AuditChain::Platform,
        at: now,
        actor: format!("operator-cli:{by}"),
        action: AuditAction::Change,
        route: format!("operator {command}"),
        contact: None,
        subject_key: None,
        detail: Some(detail),
        reason: "principal grant changed".to_owned(),
        expires_at: audit_expiry(now, DEFAULT_AUDIT_RETENTION_MONTHS),
    }
}

/// Runs one command; returns what to print. Audited before the change, like the API.
pub async fn run(stores: &Stores, inv: &Invocation, now: Timestamp) -> Result<String, String> {
    let store_err = |e: shared::store::StoreError| e.log_safe();
    match &inv.command {
        Command::Grant {
            principal,
            roles,
            tenants,
        } => {
            let (id, roles, tenants) = parse_grant(principal, roles, tenants).map_err(|e| e.to_string())?;
            if let Some(t) = first_unregistered(stores, &tenants).await.map_err(store_err)? {
                return Err(format!("tenants: {t} is not a registered tenant"));
            }
            let grant = Principal {
                id,
                roles,
                tenants,
                granted_at: now,
                granted_by: format!("operator-cli:{}", inv.by),
            };
            let detail = describe(&grant);
            stores
                .audit
                .append(&change_event(&inv.by, "grant", detail.clone(), now))
                .await
                .map_err(store_err)?;
            stores.principals.put(&grant).await.map_err(store_err)?;
            Ok(format!("granted {detail}"))
        }
        Command::Revoke { principal } => {
            let id = PrincipalId::new(principal.as_str()).map_err(|e| format!("principal: {e}"))?;
            stores
                .audit
                .append(&change_event(&inv.by, "revoke", revoked(&id), now))
                .await
                .map_err(store_err)?;
            match stores.principals.delete(&id).await.map_err(store_err)? {
                true => Ok(format!("revoked {id}")),
                false => Ok(format!("{id} held no grant")),
            }
        }
        Command::List => {
            let mut out = Vec::new();
            let mut page = PageRequest::first(shared::store::MAX_PAGE_SIZE);
            loop {
                let p = stores.principals.list(&page).await.map_err(store_err)?;
                out.extend(p.items.iter().map(describe));
                match p.next {
                    Some(c) => page = PageRequest::after(shared::store::MAX_PAGE_SIZE, c),
                    None => return Ok(out.join("\n")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::clock::{SettableClock, SharedClock};
    use shared::store::TimeRange;
    use std::sync::Arc;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(
            parse(args("grant arn:x --role auditor"))
                .expect_err("no --by")
                .contains("--by")
        );
        assert!(
            parse(args("--by ana grant arn:x"))
                .expect_err("no role")
                .contains("--role")
        );
        assert!(parse(args("--by ana promote arn:x")).is_err());
        assert!(
            parse(args("--by ana --colour red list"))
                .expect_err("flag")
                .contains("--colour")
        );
    }

    #[tokio::test]
    async fn the_first_platform_admin_is_granted_audited_and_revoked() {
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        let clock: SharedClock = Arc::new(SettableClock::at(now));
        let stores = shared::store::embedded::stores(clock);
        let grant = parse(args("--by ana grant arn:aws:iam::1:role/Ops --role platform_admin")).expect("valid");
        assert_eq!(
            run(&stores, &grant, now).await,
            Ok("granted arn:aws:iam::1:role/Ops: roles [platform_admin], tenants []".to_owned())
        );
        let list = parse(args("--by ana list")).expect("valid");
        assert_eq!(
            run(&stores, &list, now).await.expect("list"),
            "arn:aws:iam::1:role/Ops: roles [platform_admin], tenants []"
        );
        let agent = parse(args("--by ana grant arn:x --role tenant_agent --tenant nowhere")).expect("valid");
        assert!(
            run(&stores, &agent, now)
                .await
                .expect_err("unregistered")
                .contains("nowhere")
        );
        let revoke = parse(args("--by ana revoke arn:aws:iam::1:role/Ops")).expect("valid");
        assert_eq!(
            run(&stores, &revoke, now).await,
            Ok("revoked arn:aws:iam::1:role/Ops".to_owned())
        );
        let trail = stores
            .audit
            .list(&AuditChain::Platform, &TimeRange::ALL, &PageRequest::first(10))
            .await
            .expect("trail");
        let seen: Vec<(&str, Option<&str>)> = trail
            .items
            .iter()
            .map(|l| (l.event.actor.as_str(), l.event.detail.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "operator-cli:ana",
                    Some("arn:aws:iam::1:role/Ops: roles [platform_admin], tenants []")
                ),
                ("operator-cli:ana", Some("arn:aws:iam::1:role/Ops: revoked")),
            ]
        );
    }
}
