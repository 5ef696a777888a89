//! The one wiring: what a function's handler is built from. Each function crate has a
//! `build(&impl Resources)`; its Lambda `main.rs` calls it with [`crate::aws::AwsResources`] and the
//! local stack with [`LocalResources`], so the two cannot wire a handler differently. `build` is
//! generic, so a Lambda binary links only the stores, queues and clients its handler asks for.

use crate::clock::SharedClock;
use crate::config::{ConfigError, QueueKind};
use crate::meta::send::TokenSource;
use crate::queue::Queue;
use crate::secrets::{SecretError, SecretSource};
use crate::store::{
    AuditStore, ConversationStore, OptOutStore, OutboxStore, PrincipalStore, PrivacyRequestStore, QuarantineStore,
    RetentionReads, RetentionSweeps, Stores, TenantStore,
};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("no {0:?} queue is configured")]
    NoQueue(QueueKind),
}

/// Everything a handler may be built from.
pub trait Resources: Send + Sync {
    fn clock(&self) -> SharedClock;
    fn conversations(&self) -> Arc<dyn ConversationStore>;
    fn opt_outs(&self) -> Arc<dyn OptOutStore>;
    fn privacy_requests(&self) -> Arc<dyn PrivacyRequestStore>;
    fn audit(&self) -> Arc<dyn AuditStore>;
    fn tenants(&self) -> Arc<dyn TenantStore>;
    fn quarantine(&self) -> Arc<dyn QuarantineStore>;
    fn principals(&self) -> Arc<dyn PrincipalStore>;
    /// The retention sweep's and the report's reads across the tables.
    fn retention(&self) -> Arc<dyn RetentionReads>;
    /// What the retention sweep deletes with: only the cleanup asks for it.
    fn retention_sweeps(&self) -> Arc<dyn RetentionSweeps>;
    fn queue(&self, kind: QueueKind) -> Result<Arc<dyn Queue>, WiringError>;
    fn secrets(&self) -> Result<Arc<dyn SecretSource>, WiringError>;
    /// `https://host` of the public routes, for links given to people.
    fn public_base_url(&self) -> Result<String, WiringError>;
    /// Where the Meta Graph API is (`GRAPH_API_BASE_URL`, else Meta's own).
    fn graph_api_base_url(&self) -> String;
    /// Where the WhatsApp Cloud API is (`WHATSAPP_API_BASE_URL`, else Meta's own).
    fn whatsapp_api_base_url(&self) -> String;
    /// The outbound sender's outbox: only the sender and admin ask for it.
    fn outbox(&self) -> Arc<dyn OutboxStore>;
    /// Tenants' Meta access tokens, by the secret their registration names.
    fn tenant_tokens(&self) -> Arc<dyn TokenSource>;

    /// Every store, for handlers that work across data classes.
    fn stores(&self) -> Stores {
        Stores {
            conversations: self.conversations(),
            opt_outs: self.opt_outs(),
            privacy_requests: self.privacy_requests(),
            audit: self.audit(),
            tenants: self.tenants(),
            quarantine: self.quarantine(),
            principals: self.principals(),
            retention: self.retention(),
        }
    }
}

/// What the local stack and tests hand to `build`: stores and queues already made (embedded or
/// on emulators), and fixed secrets.
#[derive(Clone, Debug)]
pub struct LocalResources {
    pub stores: Stores,
    /// Deletes over the same data as `stores` (`embedded::stores_and_sweeps`, or the DynamoDB
    /// adapters on the emulators).
    pub sweeps: Arc<dyn RetentionSweeps>,
    pub queues: BTreeMap<QueueKind, Arc<dyn Queue>>,
    pub secrets: Arc<dyn SecretSource>,
    pub clock: SharedClock,
    pub public_base_url: String,
    pub graph_api_base_url: String,
    pub whatsapp_api_base_url: String,
    /// Over the same data as `stores` (`embedded::stack`, or the DynamoDB adapters).
    pub outbox: Arc<dyn OutboxStore>,
    pub tenant_tokens: Arc<dyn TokenSource>,
}

impl Resources for LocalResources {
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }
    fn conversations(&self) -> Arc<dyn ConversationStore> {
        self.stores.conversations.clone()
    }
    fn opt_outs(&self) -> Arc<dyn OptOutStore> {
        self.stores.opt_outs.clone()
    }
    fn privacy_requests(&self) -> Arc<dyn PrivacyRequestStore> {
        self.stores.privacy_requests.clone()
    }
    fn audit(&self) -> Arc<dyn AuditStore> {
        self.stores.audit.clone()
    }
    fn tenants(&self) -> Arc<dyn TenantStore> {
        self.stores.tenants.clone()
    }
    fn quarantine(&self) -> Arc<dyn QuarantineStore> {
        self.stores.quarantine.clone()
    }
    fn principals(&self) -> Arc<dyn PrincipalStore> {
        self.stores.principals.clone()
    }
    fn retention(&self) -> Arc<dyn RetentionReads> {
        self.stores.retention.clone()
    }
    fn retention_sweeps(&self) -> Arc<dyn RetentionSweeps> {
        self.sweeps.clone()
    }
    fn queue(&self, kind: QueueKind) -> Result<Arc<dyn Queue>, WiringError> {
        self.queues.get(&kind).cloned().ok_or(WiringError::NoQueue(kind))
    }
    fn secrets(&self) -> Result<Arc<dyn SecretSource>, WiringError> {
        Ok(self.secrets.clone())
    }
    fn public_base_url(&self) -> Result<String, WiringError> {
        Ok(crate::config::public_base_url(Some(self.public_base_url.clone()))?)
    }
    fn graph_api_base_url(&self) -> String {
        self.graph_api_base_url.clone()
    }
    fn whatsapp_api_base_url(&self) -> String {
        self.whatsapp_api_base_url.clone()
    }
    fn outbox(&self) -> Arc<dyn OutboxStore> {
        self.outbox.clone()
    }
    fn tenant_tokens(&self) -> Arc<dyn TokenSource> {
        self.tenant_tokens.clone()
    }
}
