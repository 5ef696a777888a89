use super::table::{Expr, QuerySpec, Table, Written, from_item, from_json, s, to_item, to_json};
use crate::clock::SharedClock;
use crate::domain::{AuditEvent, TenantId};
use crate::store::keys;
use crate::store::{AuditStore, Page, PageRequest, StoreError};
use crate::timestamp::Expiry;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoAuditStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoAuditStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

#[derive(Serialize, Deserialize)]
struct AuditItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
    event: String,
}

#[async_trait]
impl AuditStore for DynamoAuditStore {
    async fn append(&self, e: &AuditEvent) -> Result<(), StoreError> {
        let item = AuditItem {
            pk: e.tenant.as_str().to_owned(),
            sk: keys::audit_sk(e.at, e.id),
            expires_at: e.expires_at,
            event: to_json(e)?,
        };
        // An audit trail is append-only: the same event id is never overwritten.
        match self
            .table
            .put(to_item(&item)?, Some(Expr::new("attribute_not_exists(pk)")), false)
            .await?
        {
            Written::Yes(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::AlreadyExists),
        }
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(tenant.as_str()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("audit:{tenant}"),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| {
                let item: AuditItem = from_item(i)?;
                from_json(&item.event)
            })
            .await
    }
}
