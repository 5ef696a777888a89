use super::table::{Expr, QuerySpec, SkRange, Table, Written, from_item, from_json, key, s, to_item, to_json};
use crate::compliance::{Job, JobRun};
use crate::domain::{ChannelAccount, Tenant, TenantEvent, TenantId};
use crate::store::keys::{self, ACCOUNT_SK, TENANT_EVENT_PREFIX, TENANT_SK};
use crate::store::{Page, PageRequest, StoreError, TenantStore, WriteOutcome};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug)]
pub struct DynamoTenantStore {
    table: Table,
}

impl DynamoTenantStore {
    pub(crate) fn new(table: Table) -> Self {
        Self { table }
    }
}

#[derive(Serialize, Deserialize)]
struct TenantItem {
    pk: String,
    sk: String,
    tenant: Tenant,
}

/// An account belongs to at most one tenant: the claim item is the uniqueness constraint.
#[derive(Serialize, Deserialize)]
struct ClaimItem {
    pk: String,
    sk: String,
    tenant: TenantId,
}

/// A scheduled job's latest run, as JSON.
#[derive(Serialize, Deserialize)]
struct JobItem {
    pk: String,
    sk: String,
    run: String,
}

#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    event: String,
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[async_trait]
impl TenantStore for DynamoTenantStore {
    async fn register(&self, t: &Tenant) -> Result<(), StoreError> {
        let previous = self.get(&t.id).await?.map(|p| p.accounts).unwrap_or_default();
        let own = HashMap::from([(":t".to_owned(), s(t.id.as_str()))]);
        let tenant_item = TenantItem {
            pk: keys::tenant_pk(&t.id),
            sk: TENANT_SK.to_owned(),
            tenant: t.clone(),
        };
        let mut actions = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table.name)
                        .set_item(Some(to_item(&tenant_item)?))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        ];
        let mut claimed = Vec::new();
        for account in &t.accounts {
            let claim = ClaimItem {
                pk: keys::account_pk(account),
                sk: ACCOUNT_SK.to_owned(),
                tenant: t.id.clone(),
            };
            let put = Put::builder()
                .table_name(&self.table.name)
                .set_item(Some(to_item(&claim)?))
                .condition_expression("attribute_not_exists(pk) OR tenant = :t")
                .set_expression_attribute_values(Some(own.clone()))
                .build()
                .map_err(build_err)?;
            claimed.push(account.clone());
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for released in previous.iter().filter(|a| !t.accounts.contains(a)) {
            let delete = Delete::builder()
                .table_name(&self.table.name)
                .set_key(Some(key(keys::account_pk(released), ACCOUNT_SK)))
                .condition_expression("tenant = :t")
                .set_expression_attribute_values(Some(own.clone()))
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().delete(delete).build());
        }
        // Last, so a failed claim's index still names the claim.
        actions.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table.name)
                        .set_item(Some(key(keys::TENANT_DIRECTORY_PK, t.id.as_str())))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        );
        match self.table.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(i) => match claimed.get(i.wrapping_sub(1)) {
                Some(a) => Err(StoreError::AccountTaken {
                    channel: a.channel,
                    account_id: a.account_id.clone(),
                }),
                None => Err(StoreError::Conflict),
            },
        }
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let item = self.table.get(key(keys::tenant_pk(id), TENANT_SK)).await?;
        Ok(item.map(from_item::<TenantItem>).transpose()?.map(|i| i.tenant))
    }

    async fn resolve(&self, account: &ChannelAccount) -> Result<Option<TenantId>, StoreError> {
        let item = self.table.get(key(keys::account_pk(account), ACCOUNT_SK)).await?;
        Ok(item.map(from_item::<ClaimItem>).transpose()?.map(|c| c.tenant))
    }

    async fn record_event(&self, e: &TenantEvent) -> Result<WriteOutcome, StoreError> {
        let item = EventItem {
            pk: keys::tenant_pk(&e.tenant),
            sk: keys::tenant_event_sk(&e.id),
            event: to_json(e)?,
        };
        match self
            .table
            .put(to_item(&item)?, Some(Expr::new("attribute_not_exists(pk)")), false)
            .await?
        {
            Written::Yes(_) => Ok(WriteOutcome::Written),
            Written::ConditionFailed => Ok(WriteOutcome::Unchanged),
        }
    }

    async fn list_events(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<TenantEvent>, StoreError> {
        let pk = keys::tenant_pk(tenant);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk: Some(SkRange::Prefix(TENANT_EVENT_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: format!("events:{tenant}"),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| {
                let item: EventItem = from_item(i)?;
                from_json(&item.event)
            })
            .await
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl DynamoTenantStore {
    pub(crate) async fn tenant_ids(&self, page: &PageRequest) -> Result<Page<TenantId>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::TENANT_DIRECTORY_PK),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: "tenants".to_owned(),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| {
                let sk = i.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                TenantId::new(sk).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .await
    }

    pub(crate) async fn record_job_run(&self, run: &JobRun) -> Result<(), StoreError> {
        let item = JobItem {
            pk: keys::JOBS_PK.to_owned(),
            sk: run.job.as_str().to_owned(),
            run: to_json(run)?,
        };
        self.table.put(to_item(&item)?, None, false).await.map(|_| ())
    }

    pub(crate) async fn last_job_run(&self, job: Job) -> Result<Option<JobRun>, StoreError> {
        let item = self.table.get(key(keys::JOBS_PK, job.as_str())).await?;
        item.map(|i| from_item::<JobItem>(i).and_then(|j| from_json(&j.run)))
            .transpose()
    }
}
