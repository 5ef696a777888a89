//! Who may do what on the admin API, in one place: the roles, what each permits and over which
//! tenants, and the check every route goes through. Principals and their grants are stored
//! (`store::PrincipalStore`); in AWS a principal is the caller's IAM ARN, locally a configured id.

use crate::domain::TenantId;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works one or more tenants' conversations.
    TenantAgent,
    /// Answers the privacy mailbox, in every tenant.
    PrivacyOfficer,
    /// Runs the platform: tenants and principals.
    PlatformAdmin,
    /// Reads the audit trail and nothing else.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::TenantAgent,
        Role::PrivacyOfficer,
        Role::PlatformAdmin,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantAgent => "tenant_agent",
            Self::PrivacyOfficer => "privacy_officer",
            Self::PlatformAdmin => "platform_admin",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// A tenant's contacts, messages and events.
    ReadConversations,
    /// A tenant's opt-out review queue: list and decide.
    WorkOptOutReviews,
    CheckContactability,
    /// Register and update tenants.
    ManageTenants,
    ManagePrincipals,
    ReadAudit,
    /// Data-subject requests: create, read, decide, export. They may span tenants.
    HandlePrivacyRequests,
    /// The compliance report: figures and ids, no personal data.
    ReadCompliance,
    /// End a tenant's contract: its accounts released, its conversations erased after notice.
    OffboardTenants,
    /// Send messages to a tenant's contacts through the outbound sender, and read how they went.
    SendMessages,
    /// List outbound sends that may or may not have left, and resend one after checking.
    ResolveStaleSends,
}

/// Over which tenants a role holds a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Only the tenants the principal is assigned to.
    AssignedTenants,
    Everywhere,
}

/// The role table of the privacy policy (§8): a role holds exactly these permissions.
pub const GRANTS: &[(Role, Permission, Reach)] = &[
    (Role::TenantAgent, Permission::ReadConversations, Reach::AssignedTenants),
    (Role::TenantAgent, Permission::WorkOptOutReviews, Reach::AssignedTenants),
    (
        Role::TenantAgent,
        Permission::CheckContactability,
        Reach::AssignedTenants,
    ),
    (Role::PrivacyOfficer, Permission::WorkOptOutReviews, Reach::Everywhere),
    (Role::PrivacyOfficer, Permission::CheckContactability, Reach::Everywhere),
    (Role::PlatformAdmin, Permission::ManageTenants, Reach::Everywhere),
    (Role::PlatformAdmin, Permission::ManagePrincipals, Reach::Everywhere),
    (Role::PlatformAdmin, Permission::OffboardTenants, Reach::Everywhere),
    (
        Role::PrivacyOfficer,
        Permission::HandlePrivacyRequests,
        Reach::Everywhere,
    ),
    (Role::Auditor, Permission::ReadAudit, Reach::Everywhere),
    (Role::Auditor, Permission::ReadCompliance, Reach::Everywhere),
    (Role::PrivacyOfficer, Permission::ReadCompliance, Reach::Everywhere),
    (Role::PlatformAdmin, Permission::ReadCompliance, Reach::Everywhere),
    (Role::TenantAgent, Permission::SendMessages, Reach::AssignedTenants),
    (Role::PlatformAdmin, Permission::ResolveStaleSends, Reach::Everywhere),
];

/// Whether free text (an audit reason, a request's note) may hold an identifier: an `@` (an e-mail address or a
/// username) or a run of seven or more digits (a phone number, with or without separators).
pub fn may_identify(text: &str) -> bool {
    let mut digits = 0;
    for c in text.chars() {
        match c {
            '@' => return true,
            '0'..='9' => digits += 1,
            ' ' | '-' | '.' | '(' | ')' | '+' => {}
            _ => digits = 0,
        }
        if digits >= 7 {
            return true;
        }
    }
    false
}

/// The roles that hold a permission.
pub fn roles_for(permission: Permission) -> impl Iterator<Item = Role> {
    GRANTS.iter().filter(move |g| g.1 == permission).map(|g| g.0)
}

/// A caller: an IAM principal ARN in AWS, a configured id locally.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrincipalId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a principal is 1-1024 printable characters without spaces (an IAM ARN)")]
pub struct BadPrincipalId;

/// The parts of a role session ARN: `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
fn session_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts::")?;
    let (account, rest) = rest.split_once(':')?;
    let (role, session) = rest.strip_prefix("assumed-role/")?.split_once('/')?;
    let valid = ["aws", "aws-cn", "aws-us-gov"].contains(&partition)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && !session.is_empty()
        && !session.contains('/');
    valid.then_some((partition, account, role))
}

impl PrincipalId {
    pub fn new(s: impl Into<String>) -> Result<Self, BadPrincipalId> {
        let s = s.into();
        // 1024 bytes: the longest DynamoDB sort key, which a grant is stored under.
        let ok = (1..=1024).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic());
        if ok { Ok(Self(s)) } else { Err(BadPrincipalId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A role session: its name is chosen by whoever assumes the role, so it is never granted.
    pub fn is_role_session(&self) -> bool {
        session_parts(&self.0).is_some()
    }

    /// What a grant is stored under: an IAM role without its path
    /// (`arn:aws:iam::ACCOUNT:role/PATH/ROLE` becomes `.../role/ROLE`), since a role session's
    /// ARN does not carry the path and role names are unique in an account.
    pub fn for_grant(&self) -> PrincipalId {
        let without_path = self.0.split_once(":role/").and_then(|(head, path)| {
            let name = path.rsplit('/').next()?;
            (path.contains('/') && head.starts_with("arn:") && head.contains(":iam::"))
                .then(|| format!("{head}:role/{name}"))
        });
        without_path
            .and_then(|p| Self::new(p).ok())
            .unwrap_or_else(|| self.clone())
    }

    /// The id a caller's grant is stored under. A role session
    /// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) is granted through its role
    /// (`arn:aws:iam::ACCOUNT:role/ROLE`) only: sessions are never granted.
    pub fn grant_key(&self) -> PrincipalId {
        match session_parts(&self.0) {
            Some((partition, account, role)) => {
                Self::new(format!("arn:{partition}:iam::{account}:role/{role}")).unwrap_or_else(|_| self.clone())
            }
            None => self.for_grant(),
        }
    }
}

impl TryFrom<String> for PrincipalId {
    type Error = BadPrincipalId;
    fn try_from(s: String) -> Result<Self, BadPrincipalId> {
        Self::new(s)
    }
}

impl From<PrincipalId> for String {
    fn from(p: PrincipalId) -> String {
        p.0
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A principal's grant: its roles, and the tenants its tenant-scoped roles reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: PrincipalId,
    pub roles: BTreeSet<Role>,
    pub tenants: BTreeSet<TenantId>,
    pub granted_at: Timestamp,
    pub granted_by: String,
}

/// Why a request was refused; the text is the 403's reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("this principal holds no role")]
    NoGrant,
    #[error("requires the role {0}")]
    MissingRole(String),
    #[error("this principal is not assigned to the tenant")]
    OtherTenant,
}

/// The one check: may `principal` use `permission` on `tenant` (None: a route over no tenant)?
pub fn authorize(
    principal: Option<&Principal>,
    permission: Permission,
    tenant: Option<&TenantId>,
) -> Result<(), Denial> {
    let Some(p) = principal.filter(|p| !p.roles.is_empty()) else {
        return Err(Denial::NoGrant);
    };
    let mut held = GRANTS
        .iter()
        .filter(|(role, perm, _)| *perm == permission && p.roles.contains(role))
        .peekable();
    if held.peek().is_none() {
        let needed: Vec<&str> = roles_for(permission).map(Role::as_str).collect();
        return Err(Denial::MissingRole(needed.join(" or ")));
    }
    let reaches = |reach: Reach| match (reach, tenant) {
        (Reach::Everywhere, _) => true,
        (Reach::AssignedTenants, Some(t)) => p.tenants.contains(t),
        (Reach::AssignedTenants, None) => false,
    };
    if held.any(|(_, _, reach)| reaches(*reach)) {
        Ok(())
    } else {
        Err(Denial::OtherTenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role], tenants: &[&str]) -> Principal {
        Principal {
            id: PrincipalId::new("arn:aws:iam::1:user/x").expect("valid"),
            roles: roles.iter().copied().collect(),
            tenants: tenants.iter().map(|t| TenantId::new(*t).expect("valid")).collect(),
            granted_at: Timestamp::from_unix_seconds(0),
            granted_by: "test".into(),
        }
    }

    #[test]
    fn a_tenant_agent_reaches_only_its_tenants() {
        let (acme, other) = (
            TenantId::new("acme").expect("valid"),
            TenantId::new("other").expect("valid"),
        );
        let agent = principal(&[Role::TenantAgent], &["acme"]);
        assert_eq!(
            authorize(Some(&agent), Permission::ReadConversations, Some(&acme)),
            Ok(())
        );
        assert_eq!(
            authorize(Some(&agent), Permission::ReadConversations, Some(&other)),
            Err(Denial::OtherTenant)
        );
        assert!(matches!(
            authorize(Some(&agent), Permission::ReadAudit, None),
            Err(Denial::MissingRole(_))
        ));
        let officer = principal(&[Role::PrivacyOfficer], &[]);
        assert_eq!(
            authorize(Some(&officer), Permission::WorkOptOutReviews, Some(&other)),
            Ok(())
        );
        assert!(authorize(Some(&officer), Permission::ReadConversations, Some(&other)).is_err());
        assert_eq!(authorize(None, Permission::ReadAudit, None), Err(Denial::NoGrant));
        assert_eq!(
            authorize(
                Some(&principal(&[], &["acme"])),
                Permission::ReadConversations,
                Some(&acme)
            ),
            Err(Denial::NoGrant)
        );
    }

    #[test]
    fn a_role_session_is_granted_through_its_role_only() {
        let id = |s: &str| PrincipalId::new(s).expect("valid");
        let session = id("arn:aws:sts::123456789012:assumed-role/PrivacyDesk/ana@example");
        assert!(session.is_role_session());
        assert_eq!(session.grant_key(), id("arn:aws:iam::123456789012:role/PrivacyDesk"));
        let user = id("arn:aws:iam::123456789012:user/ops");
        assert_eq!(user.grant_key(), user);
        assert!(!user.is_role_session());
        // A role with a path (IAM Identity Center's) is granted by its name, as its sessions name it.
        let sso = id("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Agents_1a2b");
        assert_eq!(
            sso.grant_key(),
            id("arn:aws:iam::123456789012:role/AWSReservedSSO_Agents_1a2b")
        );
        // Not a session: a user whose path looks like one, a session of a bad account.
        let lookalike = id("arn:aws:iam::123456789012:user/x:sts::123456789012:assumed-role/Admins/me");
        assert_eq!(lookalike.grant_key(), lookalike);
        assert!(!id("arn:aws:sts::12:assumed-role/Admins/me").is_role_session());
        assert!(PrincipalId::new("has space").is_err() && PrincipalId::new("").is_err());
        assert!(PrincipalId::new("a".repeat(1025)).is_err());
    }
}
