use super::table::{QuerySpec, Table, Written, from_item, key, s, to_item};
use crate::access::{Principal, PrincipalId};
use crate::store::keys::PRINCIPALS_PK;
use crate::store::{Page, PageRequest, PrincipalStore, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Grants live in the tenants table, one partition for all principals: a lookup is one read and
/// the listing one query.
#[derive(Debug)]
pub struct DynamoPrincipalStore {
    table: Table,
}

impl DynamoPrincipalStore {
    pub(crate) fn new(table: Table) -> Self {
        Self { table }
    }
}

#[derive(Serialize, Deserialize)]
struct PrincipalItem {
    pk: String,
    sk: String,
    principal: Principal,
}

#[async_trait]
impl PrincipalStore for DynamoPrincipalStore {
    async fn get(&self, id: &PrincipalId) -> Result<Option<Principal>, StoreError> {
        let item = self.table.get(key(PRINCIPALS_PK, id.as_str())).await?;
        Ok(item.map(from_item::<PrincipalItem>).transpose()?.map(|i| i.principal))
    }

    async fn put(&self, p: &Principal) -> Result<(), StoreError> {
        let item = PrincipalItem {
            pk: PRINCIPALS_PK.to_owned(),
            sk: p.id.as_str().to_owned(),
            principal: p.clone(),
        };
        self.table.put(to_item(&item)?, None, false).await.map(|_| ())
    }

    async fn delete(&self, id: &PrincipalId) -> Result<bool, StoreError> {
        match self.table.delete(key(PRINCIPALS_PK, id.as_str()), None).await? {
            Written::Yes(old) => Ok(old.is_some()),
            Written::ConditionFailed => Ok(false),
        }
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Principal>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(PRINCIPALS_PK),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: "principals".to_owned(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| from_item::<PrincipalItem>(i).map(|p| p.principal))
            .await
    }
}
