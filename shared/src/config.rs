//! Configuration, read once from the environment into types. A missing or malformed variable is
//! named in the error, so a bad deployment fails at start-up with a sentence, not at first use.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// Where the stack's public routes are served (`https://host`, no trailing slash): links given
/// to people, such as a privacy request's status page, start with it.
pub const PUBLIC_BASE_URL: &str = "PUBLIC_BASE_URL";

/// A public base URL as configured: http(s), a host, no path, query or trailing slash.
pub fn public_base_url(value: Option<String>) -> Result<String, ConfigError> {
    let v = value
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(PUBLIC_BASE_URL))?;
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| ConfigError::Malformed {
            name: PUBLIC_BASE_URL,
            reason: "must start with https:// or http://".to_owned(),
        })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(ConfigError::Malformed {
            name: PUBLIC_BASE_URL,
            reason: "must be a scheme and a host only, with no path".to_owned(),
        });
    }
    Ok(v)
}

/// The data classes of the design, one table each. The one place that ties a table to its
/// template resource and its environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableKind {
    Conversations,
    OptOuts,
    PrivacyRequests,
    Audit,
    Tenants,
    Quarantine,
    /// The outbound sender's claims and send slots: kept a day.
    Outbox,
}

impl TableKind {
    pub const ALL: [TableKind; 7] = [
        Self::Conversations,
        Self::OptOuts,
        Self::PrivacyRequests,
        Self::Audit,
        Self::Tenants,
        Self::Quarantine,
        Self::Outbox,
    ];

    /// Logical id of the table in template.yaml.
    pub fn logical_id(self) -> &'static str {
        match self {
            Self::Conversations => "ConversationsTable",
            Self::OptOuts => "OptOutsTable",
            Self::PrivacyRequests => "PrivacyRequestsTable",
            Self::Audit => "AuditTable",
            Self::Tenants => "TenantsTable",
            Self::Quarantine => "QuarantineTable",
            Self::Outbox => "OutboxTable",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Self::Conversations => "CONVERSATIONS_TABLE",
            Self::OptOuts => "OPTOUTS_TABLE",
            Self::PrivacyRequests => "PRIVACY_REQUESTS_TABLE",
            Self::Audit => "AUDIT_TABLE",
            Self::Tenants => "TENANTS_TABLE",
            Self::Quarantine => "QUARANTINE_TABLE",
            Self::Outbox => "OUTBOX_TABLE",
        }
    }

    /// Suffix of the table name, after the stack or test prefix.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Conversations => "conversations",
            Self::OptOuts => "optouts",
            Self::PrivacyRequests => "privacy-requests",
            Self::Audit => "audit",
            Self::Tenants => "tenants",
            Self::Quarantine => "quarantine",
            Self::Outbox => "outbox",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub conversations: String,
    pub opt_outs: String,
    pub privacy_requests: String,
    pub audit: String,
    pub tenants: String,
    pub quarantine: String,
    pub outbox: String,
}

impl TableNames {
    /// `<prefix><short name>` for every table: how the local stack and tests name theirs.
    pub fn with_prefix(prefix: &str) -> Self {
        let named = Self::from_fn(|k| Ok::<_, std::convert::Infallible>(format!("{prefix}{}", k.short_name())));
        match named {
            Ok(n) => n,
            Err(never) => match never {},
        }
    }

    pub fn get(&self, kind: TableKind) -> &str {
        match kind {
            TableKind::Conversations => &self.conversations,
            TableKind::OptOuts => &self.opt_outs,
            TableKind::PrivacyRequests => &self.privacy_requests,
            TableKind::Audit => &self.audit,
            TableKind::Tenants => &self.tenants,
            TableKind::Quarantine => &self.quarantine,
            TableKind::Outbox => &self.outbox,
        }
    }

    fn from_fn<E>(mut f: impl FnMut(TableKind) -> Result<String, E>) -> Result<Self, E> {
        Ok(Self {
            conversations: f(TableKind::Conversations)?,
            opt_outs: f(TableKind::OptOuts)?,
            privacy_requests: f(TableKind::PrivacyRequests)?,
            audit: f(TableKind::Audit)?,
            tenants: f(TableKind::Tenants)?,
            quarantine: f(TableKind::Quarantine)?,
            outbox: f(TableKind::Outbox)?,
        })
    }
}

/// Endpoint overrides for emulators; unset in AWS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub sqs: Option<String>,
    pub secretsmanager: Option<String>,
}

/// The queues functions send to, as tables have `TableKind`: the one place that ties a queue to
/// its template resource and the environment variable holding its URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueKind {
    Ingest,
    OptOut,
    Propagation,
    /// The system's own replies (opt-out confirmations, help, privacy status links): their own
    /// queue, so a tenant flooding `TenantOutbound` delays no one's confirmation.
    Outbound,
    /// Approved erasures, for the erasure worker.
    Erasure,
    /// Messages tenants' systems compose (`POST /admin/tenants/{tenant}/messages`).
    TenantOutbound,
}

impl QueueKind {
    pub const ALL: [QueueKind; 6] = [
        Self::Ingest,
        Self::OptOut,
        Self::Propagation,
        Self::Outbound,
        Self::Erasure,
        Self::TenantOutbound,
    ];

    /// Logical id of the queue in template.yaml.
    pub fn logical_id(self) -> &'static str {
        match self {
            Self::Ingest => "IngestQueue",
            Self::OptOut => "OptOutQueue",
            Self::Propagation => "PropagationQueue",
            Self::Outbound => "OutboundQueue",
            Self::Erasure => "ErasureQueue",
            Self::TenantOutbound => "TenantOutboundQueue",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Self::Ingest => "INGEST_QUEUE_URL",
            Self::OptOut => "OPTOUT_QUEUE_URL",
            Self::Propagation => "PROPAGATION_QUEUE_URL",
            Self::Outbound => "OUTBOUND_QUEUE_URL",
            Self::Erasure => "ERASURE_QUEUE_URL",
            Self::TenantOutbound => "TENANT_OUTBOUND_QUEUE_URL",
        }
    }

    pub fn from_logical_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.logical_id() == id)
    }

    /// The queue's URL from its variable.
    pub fn url(self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        queue_url(self.env_var(), lookup)
    }
}

fn queue_url(name: &'static str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    match lookup(name).filter(|v| !v.is_empty()) {
        Some(v) if v.starts_with("http://") || v.starts_with("https://") => Ok(v),
        Some(_) => Err(ConfigError::Malformed {
            name,
            reason: "must be a queue URL".to_owned(),
        }),
        None => Err(ConfigError::Missing(name)),
    }
}

pub const DYNAMODB_ENDPOINT: &str = "DYNAMODB_ENDPOINT";
pub const SQS_ENDPOINT: &str = "SQS_ENDPOINT";
pub const SECRETSMANAGER_ENDPOINT: &str = "SECRETSMANAGER_ENDPOINT";

/// What every function needs: where the data lives.
#[derive(Clone, Debug)]
pub struct Config {
    pub tables: TableNames,
    pub endpoints: Endpoints,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| -> Result<String, ConfigError> {
            match lookup(name) {
                Some(v) if !v.trim().is_empty() => Ok(v),
                _ => Err(ConfigError::Missing(name)),
            }
        };
        let tables = TableNames::from_fn(|k| {
            let name = required(k.env_var())?;
            table_name(&name).map_err(|reason| ConfigError::Malformed {
                name: k.env_var(),
                reason,
            })?;
            Ok(name)
        })?;
        let endpoint = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name).filter(|v| !v.is_empty()) {
                Some(v) if v.starts_with("http://") || v.starts_with("https://") => Ok(Some(v)),
                Some(_) => Err(ConfigError::Malformed {
                    name,
                    reason: "must start with http:// or https://".to_owned(),
                }),
                None => Ok(None),
            }
        };
        Ok(Self {
            tables,
            endpoints: Endpoints {
                dynamodb: endpoint(DYNAMODB_ENDPOINT)?,
                sqs: endpoint(SQS_ENDPOINT)?,
                secretsmanager: endpoint(SECRETSMANAGER_ENDPOINT)?,
            },
        })
    }
}

/// DynamoDB's rule: 3-255 characters of letters, digits, `_`, `-`, `.`.
fn table_name(name: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("a table name is 3-255 characters of letters, digits, '_', '-' and '.'".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn full_env() -> HashMap<&'static str, String> {
        let env: HashMap<&'static str, String> = TableKind::ALL
            .iter()
            .map(|k| (k.env_var(), format!("sv-{}", k.short_name())))
            .collect();
        env
    }

    fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|n| env.get(n).cloned())
    }

    #[test]
    fn queue_kinds_match_the_template() {
        let specs = crate::provision::queue_specs(crate::provision::TEMPLATE).expect("template");
        for kind in QueueKind::ALL {
            assert!(specs.contains_key(kind.logical_id()), "{kind:?}");
            assert_eq!(QueueKind::from_logical_id(kind.logical_id()), Some(kind));
        }
        assert_eq!(QueueKind::from_logical_id("IngestDeadLetterQueue"), None);
        let env = |n: &str| (n == "OPTOUT_QUEUE_URL").then(|| "queue".to_owned());
        assert!(matches!(QueueKind::OptOut.url(env), Err(ConfigError::Malformed { .. })));
        assert_eq!(
            QueueKind::Ingest.url(env),
            Err(ConfigError::Missing("INGEST_QUEUE_URL"))
        );
    }

    #[test]
    fn a_complete_environment_loads() {
        let c = load(&full_env()).expect("complete");
        assert_eq!(c.tables, TableNames::with_prefix("sv-"));
        assert_eq!(c.endpoints, Endpoints::default());
    }

    #[test]
    fn errors_name_the_variable() {
        let mut env = full_env();
        env.remove("AUDIT_TABLE");
        assert_eq!(load(&env).err(), Some(ConfigError::Missing("AUDIT_TABLE")));

        let mut env = full_env();
        env.insert("TENANTS_TABLE", "a b".into());
        assert!(matches!(
            load(&env),
            Err(ConfigError::Malformed {
                name: "TENANTS_TABLE",
                ..
            })
        ));

        let mut env = full_env();
        env.insert(DYNAMODB_ENDPOINT, "localhost:8000".into());
        assert!(matches!(
            load(&env),
            Err(ConfigError::Malformed {
                name: DYNAMODB_ENDPOINT,
                ..
            })
        ));
    }
}

#[cfg(test)]
mod public_base_url_tests {
    use super::*;

    #[test]
    fn a_public_base_url_is_a_scheme_and_a_host() {
        let ok = |v: &str| public_base_url(Some(v.to_owned()));
        assert_eq!(
            ok("https://abc.execute-api.sa-east-1.amazonaws.com").ok().as_deref(),
            Some("https://abc.execute-api.sa-east-1.amazonaws.com")
        );
        assert!(ok("http://127.0.0.1:3000").is_ok());
        for bad in [
            "",
            "abc.example.com",
            "https://",
            "https://a.example.com/",
            "https://a.example.com/x",
            "ftp://a",
        ] {
            assert!(ok(bad).is_err(), "{bad:?} is refused");
        }
        assert!(matches!(
            public_base_url(None),
            Err(ConfigError::Missing(PUBLIC_BASE_URL))
        ));
    }
}
