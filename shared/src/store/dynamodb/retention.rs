//! The retention ports on DynamoDB: each call goes to the adapter of the table it reads or
//! sweeps (their retention methods are reached only from here).

use super::{
    DynamoAuditStore, DynamoConversationStore, DynamoOptOutStore, DynamoPrivacyRequestStore, DynamoQuarantineStore,
    DynamoTenantStore,
};

#[derive(Debug)]
pub struct DynamoRetention {
    pub(super) conversations: DynamoConversationStore,
    pub(super) tenants: DynamoTenantStore,
    pub(super) quarantine: DynamoQuarantineStore,
    pub(super) audit: DynamoAuditStore,
    pub(super) requests: DynamoPrivacyRequestStore,
    pub(super) opt_outs: DynamoOptOutStore,
}

crate::store::retention_ports!(DynamoRetention);
