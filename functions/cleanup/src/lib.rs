//! The scheduled cleanup (DESIGN flow 4). EventBridge Scheduler invokes it hourly with
//! `{"job": "sweep"}` or `{"job": "monitor"}`; the local stack's `POST /_local/tick` runs the same
//! jobs against its simulated clock.
//!
//! - **sweep**: per tenant, the contacts whose oldest item is at or before the tenant's cutoff
//!   (`Tenant::sweep_cutoff`: past retention by more than the grace TTL gets, or outside a lowered
//!   retention) come from one index query, and each is swept in its time-ordered key range. Then
//!   quarantined envelopes, audit events and closed requests whose own expiry passed more than
//!   the grace period ago, each in time order, stopping at the first one kept. Its reads follow
//!   what it deletes, not the tables. An offboarded tenant whose notice ended gets its erasure.
//! - **monitor**: requests due soon and overdue, erasures stuck for an hour (queued again),
//!   opt-out reviews waiting a day, and the compliance report's figures, as metrics.
//!
//! Both are bounded by the time the invocation has left and resumable without a cursor of their
//! own: what a sweep deleted is gone and a swept contact has moved in the index, so the next run
//! starts where this one stopped. Two overlapping runs cannot both count a deletion: DynamoDB
//! returns a deleted item to one of them only.

use serde::Deserialize;
use shared::clock::SharedClock;
use shared::compliance::{self, DUE_SOON, Job, JobRun, REVIEW_WAIT_ALARM, STUCK_ERASURE};
use shared::config::QueueKind;
use shared::deadline::RequestKind;
use shared::domain::{
    ConfirmationCode, Created, ErasureJob, NewRequest, Offboarding, PrivacyRequest, QuarantineBucket, RequestSource,
    RequestStatus, Tenant, TimelineEntry,
};
use shared::queue::{Queue, QueueError};
use shared::retention::SWEEP_GRACE;
use shared::store::{MAX_PAGE_SIZE, PageRequest, RetentionSweeps, StoreError, Stores, SweepOutcome};
use shared::timestamp::Timestamp;
use shared::wiring::{Resources, WiringError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Items one store call deletes at most, so a contact with a long history is swept in steps that
/// each fit well inside the time left.
pub const SWEEP_STEP: usize = 100;
/// Stop starting new work this long before the invocation's deadline.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(10);

pub use shared::compliance::metric;

/// How the cleanup signs what it does in a request's timeline.
const WHO: &str = "cleanup";

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("the event must be {{\"job\": \"sweep\" | \"monitor\"}}")]
    BadEvent,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl CleanupError {
    /// A description safe for logs (a stored item's contents never).
    pub fn log_safe(&self) -> String {
        match self {
            Self::Store(e) => e.log_safe(),
            other => other.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scheduled {
    job: String,
}

/// The job an event names.
pub fn parse_event(event: &serde_json::Value) -> Result<Job, CleanupError> {
    let s: Scheduled = serde_json::from_value(event.clone()).map_err(|_| CleanupError::BadEvent)?;
    Job::parse(&s.job).ok_or(CleanupError::BadEvent)
}

#[derive(Clone, Debug)]
pub struct Cleanup {
    stores: Stores,
    sweeps: Arc<dyn RetentionSweeps>,
    /// Where stuck erasures go again.
    erasure: Arc<dyn Queue>,
    clock: SharedClock,
}

pub fn build(r: &impl Resources) -> Result<Cleanup, WiringError> {
    Ok(Cleanup::new(
        r.stores(),
        r.retention_sweeps(),
        r.queue(QueueKind::Erasure)?,
        r.clock(),
    ))
}

/// When to stop starting work.
struct Budget(Instant);

impl Budget {
    fn new(time_left: Duration) -> Self {
        Self(Instant::now() + time_left.saturating_sub(SAFETY_MARGIN))
    }

    fn spent(&self) -> bool {
        Instant::now() >= self.0
    }
}

type Counts = BTreeMap<String, u64>;

/// Calls one store's sweep step until it is done (its last outcome) or the budget is spent
/// (None), counting what it deleted under `name` and in the total.
async fn until_done<F, Fut>(
    budget: &Budget,
    counts: &mut Counts,
    name: &str,
    mut step: F,
) -> Result<Option<SweepOutcome>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<SweepOutcome, StoreError>>,
{
    loop {
        if budget.spent() {
            return Ok(None);
        }
        let out = step().await?;
        add(counts, name, out.deleted);
        add(counts, metric::DELETED, out.deleted);
        if out.done {
            return Ok(Some(out));
        }
    }
}

/// Counts only what happened: a run's counts name what it did, as its EMF line does.
fn add(counts: &mut Counts, name: &str, n: u64) {
    if n > 0 {
        *counts.entry(name.to_owned()).or_default() += n;
    }
}

impl Cleanup {
    pub fn new(stores: Stores, sweeps: Arc<dyn RetentionSweeps>, erasure: Arc<dyn Queue>, clock: SharedClock) -> Self {
        Self {
            stores,
            sweeps,
            erasure,
            clock,
        }
    }

    /// A scheduled invocation: the job its input names, within `time_left`.
    pub async fn handle(&self, event: &serde_json::Value, time_left: Duration) -> Result<JobRun, CleanupError> {
        let job = match parse_event(event) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "unusable scheduled event");
                return Err(e);
            }
        };
        self.run(job, time_left).await
    }

    pub async fn run(&self, job: Job, time_left: Duration) -> Result<JobRun, CleanupError> {
        let budget = Budget::new(time_left);
        let started_at = self.clock.now();
        let mut counts = Counts::new();
        let result = match job {
            Job::Sweep => self.sweep(&budget, &mut counts).await,
            Job::Monitor => self.monitor(&mut counts).await,
        };
        let finished_at = self.clock.now();
        let complete = match result {
            Ok(complete) => complete,
            Err(e) => {
                tracing::error!(job = job.as_str(), error = %e.log_safe(), "cleanup job failed; the next run goes on");
                return Err(e);
            }
        };
        let run = JobRun {
            job,
            started_at,
            finished_at,
            complete,
            counts,
        };
        self.sweeps.record_job_run(&run).await?;
        let figures: Vec<(&str, u64)> = run.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        shared::metrics::emit("cleanup", finished_at, &figures);
        tracing::info!(job = job.as_str(), complete, counts = ?run.counts, "cleanup job done");
        Ok(run)
    }

    /// True when every tenant was swept to its cutoff.
    async fn sweep(&self, budget: &Budget, counts: &mut Counts) -> Result<bool, CleanupError> {
        let now = self.clock.now();
        for id in compliance::tenant_ids(&self.stores).await? {
            let Some(tenant) = self.stores.tenants.get(&id).await? else {
                continue;
            };
            if let Some(off) = &tenant.offboarding
                && off.erase_after <= now
            {
                self.open_offboarding(&tenant, off, now, counts).await?;
            }
            if !self.sweep_tenant(&tenant, now, budget, counts).await? {
                return Ok(self.incomplete(counts));
            }
        }
        // The other tables expire by their own rules (shared/src/retention.rs), each item by
        // its stored expiry: what TTL has not removed a grace period after it goes now.
        let expired_by = now.plus(-SWEEP_GRACE);
        let (stores, sweeps) = (&self.stores, &self.sweeps);
        for bucket in stores.retention.expiring_buckets().await? {
            let swept = until_done(budget, counts, metric::QUARANTINE_DELETED, || {
                sweeps.sweep_quarantine(&bucket, expired_by, SWEEP_STEP)
            });
            if swept.await?.is_none() {
                return Ok(self.incomplete(counts));
            }
        }
        let chains = compliance::audit_chains(stores).await?;
        for chain in &chains {
            let swept = until_done(budget, counts, metric::AUDIT_DELETED, || {
                sweeps.sweep_audit(chain, expired_by, SWEEP_STEP)
            });
            if swept.await?.is_none() {
                return Ok(self.incomplete(counts));
            }
        }
        let swept = until_done(budget, counts, metric::REQUESTS_DELETED, || {
            sweeps.sweep_closed(expired_by, SWEEP_STEP)
        });
        if swept.await?.is_none() {
            return Ok(self.incomplete(counts));
        }
        Ok(true)
    }

    fn incomplete(&self, counts: &mut Counts) -> bool {
        add(counts, metric::SWEEP_INCOMPLETE, 1);
        tracing::warn!("sweep stopped at its time limit; the next run goes on");
        false
    }

    /// An offboarded tenant's notice is over: its erasure goes to the erasure worker as an
    /// approved request (receipt and all). Its code is fixed by the tenant and the time it was
    /// offboarded, so overlapping or repeated runs open one request; the tenant then records it.
    async fn open_offboarding(
        &self,
        tenant: &Tenant,
        off: &Offboarding,
        now: Timestamp,
        counts: &mut Counts,
    ) -> Result<(), CleanupError> {
        if off.request.is_some() {
            return Ok(());
        }
        let mut r = PrivacyRequest::new(NewRequest {
            kind: RequestKind::Erasure,
            source: RequestSource::Operator,
            jurisdiction: tenant.jurisdiction,
            tenant: Some(tenant.id.clone()),
            subjects: Vec::new(),
            note: Some("tenant offboarding".to_owned()),
            erase: false,
            rectify: None,
            code: ConfirmationCode::for_offboarding(&tenant.id, off.terminated_at),
            now,
            by: WHO,
        });
        r.offboarding = true;
        r.status = RequestStatus::Approved;
        r.timeline.push(TimelineEntry {
            at: now,
            event: "approved".to_owned(),
            by: WHO.to_owned(),
            reason: Some(format!(
                "the tenant was offboarded at {} by {}; its notice period ended",
                off.terminated_at, off.by
            )),
        });
        // Created by an earlier run that stopped before queueing it: the monitor queues an
        // approved erasure with no step for an hour.
        if self.stores.privacy_requests.create(&r).await? == Created::New {
            let body = shared::queue::to_body(&ErasureJob { request: r.id })
                .map_err(|e| QueueError::Backend(e.to_string()))?;
            self.erasure.send_batch(&[body]).await?;
            add(counts, metric::OFFBOARDINGS, 1);
            tracing::info!(tenant = %tenant.id, request = %r.id, "offboarded tenant's erasure opened");
        }
        let mut opened = tenant.clone();
        opened.offboarding = Some(Offboarding {
            request: Some(r.id),
            ..off.clone()
        });
        self.stores.tenants.register(&opened).await?;
        Ok(())
    }

    async fn sweep_tenant(
        &self,
        tenant: &Tenant,
        now: Timestamp,
        budget: &Budget,
        counts: &mut Counts,
    ) -> Result<bool, CleanupError> {
        let cutoff = tenant.sweep_cutoff(now);
        let (reads, sweeps) = (&self.stores.retention, &self.sweeps);
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let due = reads.contacts_due(&tenant.id, cutoff, &page).await?;
            for c in &due.items {
                let swept = until_done(budget, counts, metric::CONVERSATION_ITEMS_DELETED, || {
                    sweeps.sweep_contact(&tenant.id, &c.contact, cutoff, SWEEP_STEP)
                });
                let Some(out) = swept.await? else {
                    return Ok(false);
                };
                add(counts, metric::CONTACTS_SWEPT, 1);
                add(counts, metric::CONTACTS_GONE, u64::from(out.contact_gone));
            }
            match due.next {
                Some(cursor) => page = PageRequest::after(MAX_PAGE_SIZE, cursor),
                None => return Ok(true),
            }
        }
    }

    async fn monitor(&self, counts: &mut Counts) -> Result<bool, CleanupError> {
        let now = self.clock.now();
        for r in compliance::open_requests(&self.stores, now).await? {
            if r.due_at <= now {
                add(counts, metric::OVERDUE, 1);
                tracing::error!(request = %r.id, kind = r.kind.as_str(), due_at = %r.due_at, "privacy request overdue");
            } else if r.due_at <= now.plus(DUE_SOON) {
                add(counts, metric::DUE_SOON, 1);
                tracing::warn!(request = %r.id, kind = r.kind.as_str(), due_at = %r.due_at, "privacy request due within 48 hours");
            }
            let running = matches!(r.status, RequestStatus::Approved | RequestStatus::InProgress);
            let last_step = r.timeline.last().map_or(r.received_at, |e| e.at);
            if r.erases() && running && last_step <= now.plus(-STUCK_ERASURE) {
                let body = shared::queue::to_body(&ErasureJob { request: r.id })
                    .map_err(|e| QueueError::Backend(e.to_string()))?;
                self.erasure.send_batch(&[body]).await?;
                add(counts, metric::REQUEUED, 1);
                tracing::warn!(request = %r.id, "erasure with no step for an hour queued again");
            }
        }
        for id in compliance::tenant_ids(&self.stores).await? {
            let bucket = QuarantineBucket::OptOutReview { tenant: id.clone() };
            let mut page = PageRequest::first(MAX_PAGE_SIZE);
            loop {
                let p = self.stores.quarantine.list(&bucket, &page).await?;
                // Oldest first: once one is recent enough, the rest are too.
                let waiting = p
                    .items
                    .iter()
                    .take_while(|e| e.received_at <= now.plus(-REVIEW_WAIT_ALARM))
                    .count();
                add(counts, metric::REVIEWS_WAITING, waiting as u64);
                match p.next {
                    Some(c) if waiting == p.items.len() => page = PageRequest::after(MAX_PAGE_SIZE, c),
                    _ => break,
                }
            }
        }
        // What TTL and the sweep have left past expiry in the other tables (the sweep's reads,
        // no deletes), with the slack an hourly sweep needs.
        let expired_by = now.plus(-SWEEP_GRACE).plus(-compliance::SWEEP_SLACK);
        let (stores, sweeps) = (&self.stores, &self.sweeps);
        let mut past = 0;
        for bucket in stores.retention.expiring_buckets().await? {
            let n = sweeps
                .quarantine_past_expiry(&bucket, expired_by, MAX_PAGE_SIZE)
                .await?;
            add(counts, metric::QUARANTINE_PAST_EXPIRY, n);
            past += n;
        }
        let chains = compliance::audit_chains(stores).await?;
        for chain in &chains {
            let n = sweeps.audit_past_expiry(chain, expired_by, MAX_PAGE_SIZE).await?;
            add(counts, metric::AUDIT_PAST_EXPIRY, n);
            past += n;
        }
        let n = sweeps.closed_past_expiry(expired_by, MAX_PAGE_SIZE).await?;
        add(counts, metric::REQUESTS_PAST_EXPIRY, n);
        past += n;
        let report = compliance::report(&self.stores, now).await?;
        let past_expiry: i64 = report
            .lines
            .iter()
            .filter(|l| l.figure == "contacts_past_expiry")
            .map(|l| l.value)
            .sum();
        add(counts, metric::PAST_EXPIRY, past_expiry.max(0) as u64);
        add(counts, metric::ITEMS_PAST_EXPIRY, past + past_expiry.max(0) as u64);
        add(
            counts,
            metric::REPORT_FAILURES,
            report.lines.iter().filter(|l| !l.ok).count() as u64,
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_one_known_job() {
        assert_eq!(parse_event(&serde_json::json!({"job": "sweep"})).ok(), Some(Job::Sweep));
        assert_eq!(
            parse_event(&serde_json::json!({"job": "monitor"})).ok(),
            Some(Job::Monitor)
        );
        // Bad inputs: an unknown job, a missing one, an extra field, not an object.
        for bad in [
            serde_json::json!({"job": "purge"}),
            serde_json::json!({}),
            serde_json::json!({"job": "sweep", "force": true}),
            serde_json::json!("sweep"),
        ] {
            assert!(matches!(parse_event(&bad), Err(CleanupError::BadEvent)), "{bad}");
        }
    }
}
