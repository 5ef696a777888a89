use super::table::{Expr, QuerySpec, Table, Written, from_item, from_json, key, n, s, to_item, to_json};
use crate::clock::SharedClock;
use crate::domain::{PrivacyRequest, RequestId};
use crate::store::keys::{self, OPEN_BY_DUE_INDEX, OPEN_MARKER, REQUEST_SK};
use crate::store::{Page, PageRequest, PrivacyRequestStore, StoreError};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoPrivacyRequestStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoPrivacyRequestStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

#[derive(Serialize, Deserialize)]
struct RequestItem {
    pk: String,
    sk: String,
    /// Present only while open: the open-by-due index is sparse, so the deadline monitor reads
    /// open requests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open: Option<String>,
    due_ms: i64,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<Expiry>,
    request: String,
}

impl RequestItem {
    fn new(r: &PrivacyRequest) -> Result<Self, StoreError> {
        Ok(Self {
            pk: keys::request_pk(r.id),
            sk: REQUEST_SK.to_owned(),
            open: r.status.is_open().then(|| OPEN_MARKER.to_owned()),
            due_ms: r.due_at.unix_millis(),
            version: r.version,
            expires_at: r.expires_at,
            request: to_json(r)?,
        })
    }

    fn into_request(self) -> Result<PrivacyRequest, StoreError> {
        from_json(&self.request)
    }
}

#[async_trait]
impl PrivacyRequestStore for DynamoPrivacyRequestStore {
    async fn create(&self, r: &PrivacyRequest) -> Result<(), StoreError> {
        let absent = Expr::new("attribute_not_exists(pk)");
        match self
            .table
            .put(to_item(&RequestItem::new(r)?)?, Some(absent), false)
            .await?
        {
            Written::Yes(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::AlreadyExists),
        }
    }

    async fn get(&self, id: RequestId) -> Result<Option<PrivacyRequest>, StoreError> {
        let Some(item) = self.table.get(key(keys::request_pk(id), REQUEST_SK)).await? else {
            return Ok(None);
        };
        let item: RequestItem = from_item(item)?;
        if item.expires_at.is_some_and(|e| e.is_expired(self.clock.now())) {
            return Ok(None);
        }
        item.into_request().map(Some)
    }

    async fn update(&self, r: &PrivacyRequest) -> Result<PrivacyRequest, StoreError> {
        let mut next = r.clone();
        next.version = r.version + 1;
        let same_version = Expr::new("version = :v").value(":v", n(i64::from(r.version)));
        match self
            .table
            .put(to_item(&RequestItem::new(&next)?)?, Some(same_version), false)
            .await?
        {
            Written::Yes(_) => Ok(next),
            Written::ConditionFailed => Err(StoreError::Conflict),
        }
    }

    async fn open_due_before(&self, until: Timestamp, page: &PageRequest) -> Result<Page<PrivacyRequest>, StoreError> {
        let spec = QuerySpec {
            index: Some(OPEN_BY_DUE_INDEX),
            pk_attr: "open",
            pk: s(OPEN_MARKER),
            sk: None,
            sort_at_most: Some(("due_ms", until.unix_millis())),
            hide_expired_at: None,
            scope: format!("open-due:{}", until.unix_millis()),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| from_item::<RequestItem>(i)?.into_request())
            .await
    }
}
