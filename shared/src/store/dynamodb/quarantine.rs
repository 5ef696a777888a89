use super::table::{Item, QuerySpec, Table, from_item, key, s, to_item};
use crate::clock::SharedClock;
use crate::domain::{QuarantineBucket, QuarantineEntry};
use crate::store::keys;
use crate::store::{Page, PageRequest, QuarantineStore, StoreError};
use crate::timestamp::Expiry;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoQuarantineStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoQuarantineStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

#[derive(Serialize, Deserialize)]
struct QuarantineItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
    entry: String,
}

fn entry_key(e: &QuarantineEntry) -> Item {
    key(keys::quarantine_pk(&e.bucket), keys::quarantine_sk(e.received_at, e.id))
}

#[async_trait]
impl QuarantineStore for DynamoQuarantineStore {
    async fn put(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        let item = QuarantineItem {
            pk: keys::quarantine_pk(&e.bucket),
            sk: keys::quarantine_sk(e.received_at, e.id),
            expires_at: e.expires_at,
            entry: serde_json::to_string(e).map_err(|err| StoreError::Corrupt(err.to_string()))?,
        };
        self.table.put(to_item(&item)?, None, false).await?;
        Ok(())
    }

    async fn list(&self, bucket: &QuarantineBucket, page: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError> {
        let pk = keys::quarantine_pk(bucket);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("quarantine:{pk}"),
            consistent: true,
        };
        let page = self.table.query_page(&spec, page).await?;
        let items = page
            .items
            .into_iter()
            .map(|i| {
                let item: QuarantineItem = from_item(i)?;
                serde_json::from_str(&item.entry).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next: page.next })
    }

    async fn delete(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        self.table.delete_keys(vec![entry_key(e)]).await
    }
}
