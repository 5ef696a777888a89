use super::table::{Expr, QuerySpec, Table, Written, from_item, key, n, s, to_item};
use crate::domain::{ApplyOutcome, OptOutRecord, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::SubjectKey;
use crate::store::keys::{self, OPTOUT_HISTORY_PREFIX};
use crate::store::{OptOutStore, Page, PageRequest, StoreError};
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoOptOutStore {
    table: Table,
}

impl DynamoOptOutStore {
    pub(crate) fn new(table: Table) -> Self {
        Self { table }
    }
}

/// Current state (sk `STATE#scope`) and history entries (sk `HIST#time#scope`) share one shape.
/// No expiry: the suppression list is kept while it protects the person.
#[derive(Serialize, Deserialize)]
struct OptOutItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    subject_key: SubjectKey,
    scope: OptOutScope,
    state: OptState,
    source: OptOutSource,
    event_ms: i64,
}

impl OptOutItem {
    fn new(r: &OptOutRecord, sk: String) -> Self {
        Self {
            pk: keys::optout_pk(&r.tenant, &r.subject_key),
            sk,
            tenant: r.tenant.clone(),
            subject_key: r.subject_key.clone(),
            scope: r.scope,
            state: r.state,
            source: r.source,
            event_ms: r.event_at.unix_millis(),
        }
    }

    fn into_record(self) -> OptOutRecord {
        OptOutRecord {
            tenant: self.tenant,
            subject_key: self.subject_key,
            scope: self.scope,
            state: self.state,
            source: self.source,
            event_at: Timestamp::from_unix_millis(self.event_ms),
        }
    }
}

#[async_trait]
impl OptOutStore for DynamoOptOutStore {
    async fn apply(&self, r: &OptOutRecord) -> Result<ApplyOutcome, StoreError> {
        let state = OptOutItem::new(r, keys::optout_state_sk(r.scope));
        let newer = Expr::new("attribute_not_exists(pk) OR event_ms < :e").value(":e", n(r.event_at.unix_millis()));
        let previous = match self.table.put(to_item(&state)?, Some(newer), true).await? {
            Written::ConditionFailed => return Ok(ApplyOutcome::Stale),
            Written::Yes(old) => old.map(from_item::<OptOutItem>).transpose()?.map(|o| o.state),
        };
        let history = OptOutItem::new(r, keys::optout_history_sk(r.event_at, r.scope));
        self.table.put(to_item(&history)?, None, false).await?;
        Ok(ApplyOutcome::Applied { previous })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        scope: OptOutScope,
    ) -> Result<Option<OptOutRecord>, StoreError> {
        let item = self
            .table
            .get(key(keys::optout_pk(tenant, subject), keys::optout_state_sk(scope)))
            .await?;
        Ok(item
            .map(from_item::<OptOutItem>)
            .transpose()?
            .map(OptOutItem::into_record))
    }

    async fn history(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        page: &PageRequest,
    ) -> Result<Page<OptOutRecord>, StoreError> {
        let pk = keys::optout_pk(tenant, subject);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk_prefix: Some(OPTOUT_HISTORY_PREFIX.to_owned()),
            sort_at_most: None,
            hide_expired_at: None,
            scope: format!("optout:{pk}"),
            consistent: true,
        };
        let page = self.table.query_page(&spec, page).await?;
        let items = page
            .items
            .into_iter()
            .map(|i| Ok(from_item::<OptOutItem>(i)?.into_record()))
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next: page.next })
    }
}
