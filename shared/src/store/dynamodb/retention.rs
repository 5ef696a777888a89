//! The retention ports on DynamoDB: each call goes to the adapter of the table it reads or
//! sweeps (their retention methods are reached only from here).

use super::{
    DynamoAuditStore, DynamoConversationStore, DynamoOptOutStore, DynamoPrivacyRequestStore, DynamoQuarantineStore,
    DynamoTenantStore,
};
use crate::compliance::{Job, JobRun};
use crate::domain::{AuditChain, ContactId, PrivacyRequest, QuarantineBucket, TenantId};
use crate::store::{DueContact, Page, PageRequest, RetentionReads, RetentionSweeps, StoreError, SweepOutcome};
use crate::timestamp::Timestamp;
use async_trait::async_trait;

#[derive(Debug)]
pub struct DynamoRetention {
    pub(super) conversations: DynamoConversationStore,
    pub(super) tenants: DynamoTenantStore,
    pub(super) quarantine: DynamoQuarantineStore,
    pub(super) audit: DynamoAuditStore,
    pub(super) requests: DynamoPrivacyRequestStore,
    pub(super) opt_outs: DynamoOptOutStore,
}

#[async_trait]
impl RetentionReads for DynamoRetention {
    async fn contacts_due(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<DueContact>, StoreError> {
        self.conversations.contacts_due(tenant, cutoff, page).await
    }
    async fn oldest_item(&self, tenant: &TenantId) -> Result<Option<Timestamp>, StoreError> {
        self.conversations.oldest_item(tenant).await
    }
    async fn tenant_ids(&self, page: &PageRequest) -> Result<Page<TenantId>, StoreError> {
        self.tenants.tenant_ids(page).await
    }
    async fn last_job_run(&self, job: Job) -> Result<Option<JobRun>, StoreError> {
        self.tenants.last_job_run(job).await
    }
    async fn expiring_buckets(&self) -> Result<Vec<QuarantineBucket>, StoreError> {
        self.quarantine.expiring_buckets().await
    }
    async fn closed_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<PrivacyRequest>, StoreError> {
        self.requests.closed_between(since, until, page).await
    }
    async fn optouts_applied(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<std::collections::BTreeMap<TenantId, u64>, StoreError> {
        let day = crate::audit::utc_day;
        self.opt_outs.optouts_applied(&day(from), &day(to)).await
    }
}

#[async_trait]
impl RetentionSweeps for DynamoRetention {
    async fn sweep_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cutoff: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError> {
        self.conversations
            .sweep_contact(tenant, contact, cutoff, max_items)
            .await
    }
    async fn sweep_quarantine(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError> {
        self.quarantine
            .sweep_quarantine(bucket, expired_by, max_items, false)
            .await
    }
    async fn sweep_audit(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError> {
        self.audit.sweep_audit(chain, expired_by, max_items, false).await
    }
    async fn sweep_closed(&self, expired_by: Timestamp, max_items: usize) -> Result<SweepOutcome, StoreError> {
        self.requests.sweep_closed(expired_by, max_items, false).await
    }
    async fn record_job_run(&self, run: &JobRun) -> Result<(), StoreError> {
        self.tenants.record_job_run(run).await
    }
    async fn quarantine_past_expiry(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<u64, StoreError> {
        Ok(self
            .quarantine
            .sweep_quarantine(bucket, expired_by, max_items, true)
            .await?
            .deleted)
    }
    async fn audit_past_expiry(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
    ) -> Result<u64, StoreError> {
        Ok(self
            .audit
            .sweep_audit(chain, expired_by, max_items, true)
            .await?
            .deleted)
    }
    async fn closed_past_expiry(&self, expired_by: Timestamp, max_items: usize) -> Result<u64, StoreError> {
        Ok(self.requests.sweep_closed(expired_by, max_items, true).await?.deleted)
    }
}
