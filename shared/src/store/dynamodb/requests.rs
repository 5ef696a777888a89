use super::table::{Expr, QuerySpec, Table, from_item, from_json, key, n, s, to_item, to_json};
use crate::clock::SharedClock;
use crate::domain::RequestStatus;
use crate::domain::{Created, PrivacyRequest, RequestId};
use crate::store::keys::{
    self, CLOSED_BY_CLOSE_INDEX, CLOSED_MARKER, ERASED_MARKER, ERASURES_BY_CLOSE_INDEX, OPEN_BY_DUE_INDEX, OPEN_MARKER,
    REQUEST_SK,
};
use crate::store::{Page, PageRequest, PrivacyRequestStore, StoreError, SweepOutcome};
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
    /// Present only on completed erasures: the sparse index a replay after a restore reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erased: Option<String>,
    /// Present only on closed requests: the sparse index the report and the sweep read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed_ms: Option<i64>,
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
            erased: (r.status == RequestStatus::Completed && r.erases()).then(|| ERASED_MARKER.to_owned()),
            closed: r.closed_at.map(|_| CLOSED_MARKER.to_owned()),
            closed_ms: r.closed_at.map(|t| t.unix_millis()),
            version: r.version,
            expires_at: r.expires_at,
            request: to_json(r)?,
        })
    }

    fn into_request(self) -> Result<PrivacyRequest, StoreError> {
        from_json(&self.request)
    }
}

/// An open request's claim on one subject: `keys::request_claim_pk`, naming the request.
#[derive(Serialize, Deserialize)]
struct ClaimItem {
    pk: String,
    sk: String,
    request: RequestId,
}

fn claim_pks(r: &PrivacyRequest) -> Vec<String> {
    r.subject_keys()
        .map(|k| keys::request_claim_pk(r.kind, r.tenant.as_ref(), k))
        .collect()
}

#[async_trait]
impl PrivacyRequestStore for DynamoPrivacyRequestStore {
    async fn create(&self, r: &PrivacyRequest) -> Result<Created, StoreError> {
        let absent = || Some(Expr::new("attribute_not_exists(pk)"));
        let claims = if r.status.is_open() { claim_pks(r) } else { Vec::new() };
        let mut actions = vec![self.table.put_action(to_item(&RequestItem::new(r)?)?, absent())?];
        for pk in &claims {
            let claim = ClaimItem {
                pk: pk.clone(),
                sk: REQUEST_SK.to_owned(),
                request: r.id,
            };
            actions.push(self.table.put_action(to_item(&claim)?, absent())?);
        }
        match self.table.transact_retrying_conflicts(actions).await? {
            Ok(()) => Ok(Created::New),
            Err(0) => Ok(Created::Existing(r.id)),
            Err(i) => {
                // The claim that failed names the open request that holds it. Read strongly: the
                // claim was there a moment ago, and if it is gone, that request has just closed.
                let Some(item) = self.table.get(key(&claims[i - 1], REQUEST_SK)).await? else {
                    return Err(StoreError::Conflict);
                };
                Ok(Created::Existing(from_item::<ClaimItem>(item)?.request))
            }
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
        // Only an open request changes: a closed one is final.
        let same_version = Expr::new("version = :v AND attribute_exists(#open)")
            .name("#open", "open")
            .value(":v", n(i64::from(r.version)));
        let mut actions = vec![
            self.table
                .put_action(to_item(&RequestItem::new(&next)?)?, Some(same_version))?,
        ];
        if !next.status.is_open() {
            for pk in claim_pks(&next) {
                actions.push(self.table.delete_action(key(pk, REQUEST_SK))?);
            }
        }
        match self.table.transact_retrying_conflicts(actions).await? {
            Ok(()) => Ok(next),
            Err(_) => Err(StoreError::Conflict),
        }
    }

    async fn open_due_before(&self, until: Timestamp, page: &PageRequest) -> Result<Page<PrivacyRequest>, StoreError> {
        let spec = QuerySpec {
            index: Some(OPEN_BY_DUE_INDEX),
            pk_attr: "open",
            pk: s(OPEN_MARKER),
            sk: None,
            sort_at_most: Some(("due_ms", until.unix_millis())),
            sort_at_least: None,
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

    async fn erasures_closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError> {
        let spec = QuerySpec {
            index: Some(ERASURES_BY_CLOSE_INDEX),
            pk_attr: "erased",
            pk: s(ERASED_MARKER),
            sk: None,
            sort_at_most: Some(("closed_ms", until.unix_millis())),
            sort_at_least: Some(("closed_ms", since.unix_millis())),
            hide_expired_at: Some(self.clock.now()),
            scope: format!("erasures-closed:{}:{}", since.unix_millis(), until.unix_millis()),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| from_item::<RequestItem>(i)?.into_request())
            .await
    }
}

/// Closed requests by closing time, oldest first (an index: eventually consistent).
fn closed_by_close() -> QuerySpec {
    QuerySpec {
        index: Some(CLOSED_BY_CLOSE_INDEX),
        pk_attr: "closed",
        pk: s(CLOSED_MARKER),
        sk: None,
        sort_at_most: None,
        sort_at_least: None,
        hide_expired_at: None,
        scope: String::new(),
        consistent: false,
        filter: None,
        newest_first: false,
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl DynamoPrivacyRequestStore {
    pub(crate) async fn closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError> {
        let spec = QuerySpec {
            sort_at_most: Some(("closed_ms", until.unix_millis())),
            sort_at_least: Some(("closed_ms", since.unix_millis())),
            hide_expired_at: Some(self.clock.now()),
            scope: format!("closed:{}:{}", since.unix_millis(), until.unix_millis()),
            ..closed_by_close()
        };
        self.table
            .query_page(&spec, page, |i| from_item::<RequestItem>(i)?.into_request())
            .await
    }

    pub(crate) async fn sweep_closed(
        &self,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        // Closed oldest first; each expires a fixed period after it closed, so the reads stop at
        // the first one still kept.
        let (items, more) = self.table.query_once(&closed_by_close(), None, Some(max_items)).await?;
        let mut out = SweepOutcome {
            done: more.is_none() && items.len() < max_items,
            ..SweepOutcome::default()
        };
        for item in items {
            let r: RequestItem = from_item(item)?;
            if r.expires_at.is_none_or(|e| e.as_timestamp() > expired_by) {
                out.done = true;
                break;
            }
            out.deleted += if dry {
                1
            } else {
                self.table.delete_counted(key(&r.pk, &r.sk)).await?
            };
        }
        Ok(out)
    }
}
