//! The compliance report: each retention and deadline promise of the policy as a number read from
//! the stores, with the clause it proves. The admin API serves it (`GET /admin/compliance`) and
//! the cleanup function's monitor emits the same figures as metrics after each run.

use crate::domain::{AuditChain, PrivacyRequest, QuarantineBucket, RequestStatus, TenantId};
use crate::retention::{
    DEFAULT_AUDIT_RETENTION_MONTHS, DEFAULT_CLOSED_REQUEST_RETENTION_MONTHS, QUARANTINE_RETENTION_DAYS, SWEEP_GRACE,
};
use crate::store::{MAX_PAGE_SIZE, PageRequest, StoreError, Stores, TimeRange, all_pages};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::Duration;

/// An open request due within this is reported (and logged, by id) as due soon.
pub const DUE_SOON: Duration = Duration::hours(48);
/// An approved or running erasure with no step for this long is queued again.
pub const STUCK_ERASURE: Duration = Duration::hours(1);
/// An opt-out review item waiting this long raises an alarm: it may be a STOP not yet honoured.
pub const REVIEW_WAIT_ALARM: Duration = Duration::hours(24);
/// The sweep runs hourly: a contact that crossed its cutoff since the last run is not late yet.
/// What the report (and its alarm) counts as past expiry is past the cutoff of this long ago.
pub const SWEEP_SLACK: Duration = Duration::hours(2);
/// The window of the report's "last 30 days" figures.
pub const RECENT: Duration = Duration::days(30);

pub const CLAUSE_MESSAGES: &str = "6. Retention: messages up to 24 months (a tenant may choose less)";
pub const CLAUSE_QUARANTINE: &str = "6. Retention: envelopes that could not be processed, 30 days";
pub const CLAUSE_AUDIT: &str = "6. Retention: the audit trail, 24 months (configurable)";
pub const CLAUSE_REQUESTS: &str = "6. Retention: closed privacy requests, the limitation period (5 years)";
pub const CLAUSE_DEADLINES: &str = "7. Rights: every request answered within its legal deadline";
pub const CLAUSE_OPTOUT: &str = "7. Rights: a STOP is honoured across the whole system";

/// The metric names a run counts (and emits as EMF).
pub mod metric {
    /// Every item deleted, all tables.
    pub const DELETED: &str = "Deleted";
    pub const CONVERSATION_ITEMS_DELETED: &str = "ConversationItemsDeleted";
    pub const QUARANTINE_DELETED: &str = "QuarantineEntriesDeleted";
    pub const AUDIT_DELETED: &str = "AuditItemsDeleted";
    pub const REQUESTS_DELETED: &str = "ClosedRequestsDeleted";
    pub const CONTACTS_SWEPT: &str = "ContactsSwept";
    pub const CONTACTS_GONE: &str = "ContactsGone";
    pub const SWEEP_INCOMPLETE: &str = "SweepIncomplete";
    pub const DUE_SOON: &str = "RequestsDueSoon";
    pub const OVERDUE: &str = "RequestsOverdue";
    pub const REQUEUED: &str = "ErasuresRequeued";
    pub const REVIEWS_WAITING: &str = "OptOutReviewsWaitingOver24h";
    pub const PAST_EXPIRY: &str = "ContactsPastExpiry";
    pub const QUARANTINE_PAST_EXPIRY: &str = "QuarantinePastExpiry";
    pub const AUDIT_PAST_EXPIRY: &str = "AuditPastExpiry";
    pub const REQUESTS_PAST_EXPIRY: &str = "ClosedRequestsPastExpiry";
    /// All four: what the past-expiry alarm watches.
    pub const ITEMS_PAST_EXPIRY: &str = "ItemsPastExpiry";
    pub const REPORT_FAILURES: &str = "ComplianceLinesFailing";
    pub const OFFBOARDINGS: &str = "OffboardingErasuresOpened";
}

/// The cleanup function's jobs; each schedule's input names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Deletes what TTL has not removed past the grace period, and what a lowered retention
    /// leaves outside it.
    Sweep,
    /// Deadlines, stuck erasures, waiting reviews, and the report's figures as metrics.
    Monitor,
}

impl Job {
    pub const ALL: [Job; 2] = [Job::Sweep, Job::Monitor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sweep => "sweep",
            Self::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

/// What one run of a job did: counts by name, no identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub job: Job,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// False when the run stopped at its time limit: the next one goes on from what the store
    /// holds (deleted items are gone, swept contacts have moved in the index).
    pub complete: bool,
    pub counts: BTreeMap<String, u64>,
}

/// One figure of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub clause: String,
    /// What is measured, e.g. `oldest_message_age_days`.
    pub figure: String,
    /// The tenant it is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    pub value: i64,
    /// The limit the value is held to, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The promise holds by this figure.
    pub ok: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: Timestamp,
    pub lines: Vec<Line>,
    /// Every line is ok.
    pub compliant: bool,
}

impl Report {
    /// The first line with this figure (and tenant).
    pub fn find(&self, figure: &str, tenant: Option<&TenantId>) -> Option<&Line> {
        self.lines
            .iter()
            .find(|l| l.figure == figure && l.tenant.as_ref() == tenant)
    }
}

fn days(d: Duration) -> i64 {
    d.whole_days()
}

fn since(now: Timestamp, t: Timestamp) -> Duration {
    Duration::milliseconds(now.unix_millis() - t.unix_millis())
}

fn line(
    clause: &'static str,
    figure: &str,
    tenant: Option<&TenantId>,
    value: i64,
    limit: Option<i64>,
    ok: bool,
) -> Line {
    Line {
        clause: clause.to_owned(),
        figure: figure.to_owned(),
        tenant: tenant.cloned(),
        value,
        limit,
        ok,
    }
}

/// Every tenant's id.
pub async fn tenant_ids(stores: &Stores) -> Result<Vec<TenantId>, StoreError> {
    all_pages(|p| async move { stores.retention.tenant_ids(&p).await }).await
}

/// Every audit chain: the platform's and each tenant's.
pub async fn audit_chains(stores: &Stores) -> Result<Vec<AuditChain>, StoreError> {
    let mut chains = vec![AuditChain::Platform];
    chains.extend(tenant_ids(stores).await?.into_iter().map(AuditChain::Tenant));
    Ok(chains)
}

/// Every open privacy request, soonest due first.
pub async fn open_requests(stores: &Stores, now: Timestamp) -> Result<Vec<PrivacyRequest>, StoreError> {
    let until = now.plus_months(1200);
    all_pages(|p| async move { stores.privacy_requests.open_due_before(until, &p).await }).await
}

/// The report at `now`. Its reads follow what is due or waiting (index queries bounded by the
/// cutoffs), not the size of the tables.
pub async fn report(stores: &Stores, now: Timestamp) -> Result<Report, StoreError> {
    let mut lines = Vec::new();
    let sweep = stores.retention.last_job_run(Job::Sweep).await?;
    let applied = stores.retention.optouts_applied(now.plus(-RECENT), now).await?;
    for id in tenant_ids(stores).await? {
        let Some(tenant) = stores.tenants.get(&id).await? else {
            continue;
        };
        let t = Some(&id);
        let limit = since(now, tenant.retention_months.floor(now));
        let cutoff = tenant.sweep_cutoff(now.plus(-SWEEP_SLACK));
        // Stored items the sweep should already have deleted: past retention beyond the grace
        // period (or outside a lowered retention). Must be none.
        let due = stores
            .retention
            .contacts_due(&id, cutoff, &PageRequest::first(MAX_PAGE_SIZE))
            .await?;
        let due_count = due.items.len() as i64;
        lines.push(line(
            CLAUSE_MESSAGES,
            "contacts_past_expiry",
            t,
            due_count,
            Some(0),
            due_count == 0,
        ));
        if let Some(oldest) = stores.retention.oldest_item(&id).await? {
            let age = since(now, oldest);
            // Within the retention, or awaiting TTL inside the grace period.
            let ok = oldest > cutoff;
            lines.push(line(
                CLAUSE_MESSAGES,
                "oldest_message_age_days",
                t,
                days(age),
                Some(days(limit)),
                ok,
            ));
        }
        let stops = applied.get(&id).copied().unwrap_or(0) as i64;
        lines.push(line(CLAUSE_OPTOUT, "optouts_applied_30d", t, stops, None, true));
        let waiting = stores
            .quarantine
            .list(
                &QuarantineBucket::OptOutReview { tenant: id.clone() },
                &PageRequest::first(MAX_PAGE_SIZE),
            )
            .await?;
        let oldest_review = waiting.items.first().map(|e| since(now, e.received_at));
        lines.push(line(
            CLAUSE_OPTOUT,
            "optout_reviews_waiting",
            t,
            waiting.items.len() as i64,
            None,
            true,
        ));
        if let Some(age) = oldest_review {
            lines.push(line(
                CLAUSE_OPTOUT,
                "oldest_optout_review_hours",
                t,
                age.whole_hours(),
                Some(REVIEW_WAIT_ALARM.whole_hours()),
                age < REVIEW_WAIT_ALARM,
            ));
        }
    }
    match &sweep {
        Some(run) => {
            let hours = since(now, run.finished_at).whole_hours();
            let fresh = hours <= SWEEP_GRACE.whole_hours();
            lines.push(line(
                CLAUSE_MESSAGES,
                "last_sweep_hours_ago",
                None,
                hours,
                Some(SWEEP_GRACE.whole_hours()),
                fresh,
            ));
            // A run out of time leaves work for the next: behind, until one finishes.
            let complete = i64::from(run.complete);
            lines.push(line(
                CLAUSE_MESSAGES,
                "last_sweep_complete",
                None,
                complete,
                Some(1),
                run.complete,
            ));
            for (clause, name) in [
                (CLAUSE_MESSAGES, metric::CONVERSATION_ITEMS_DELETED),
                (CLAUSE_QUARANTINE, metric::QUARANTINE_DELETED),
                (CLAUSE_AUDIT, metric::AUDIT_DELETED),
                (CLAUSE_REQUESTS, metric::REQUESTS_DELETED),
            ] {
                let deleted = run.counts.get(name).copied().unwrap_or(0) as i64;
                lines.push(line(clause, &format!("last_sweep_{name}"), None, deleted, None, true));
            }
        }
        None => lines.push(line(
            CLAUSE_MESSAGES,
            "last_sweep_hours_ago",
            None,
            -1,
            Some(SWEEP_GRACE.whole_hours()),
            false,
        )),
    }
    // The other tables' items past expiry are counted by the monitor (the same reads as a sweep,
    // no deletes): as of its last run.
    if let Some(monitor) = stores.retention.last_job_run(Job::Monitor).await? {
        for (clause, name) in [
            (CLAUSE_QUARANTINE, metric::QUARANTINE_PAST_EXPIRY),
            (CLAUSE_AUDIT, metric::AUDIT_PAST_EXPIRY),
            (CLAUSE_REQUESTS, metric::REQUESTS_PAST_EXPIRY),
        ] {
            let n = monitor.counts.get(name).copied().unwrap_or(0) as i64;
            lines.push(line(clause, &format!("last_monitor_{name}"), None, n, Some(0), n == 0));
        }
    }
    tables_lines(stores, now, &mut lines).await?;
    requests_lines(stores, now, &mut lines).await?;
    let compliant = lines.iter().all(|l| l.ok);
    Ok(Report {
        generated_at: now,
        lines,
        compliant,
    })
}

/// The oldest live item of the other tables with an expiry, against its limit. The sweep deletes
/// what TTL leaves past the grace period, so an age past the limit means it is not running.
async fn tables_lines(stores: &Stores, now: Timestamp, lines: &mut Vec<Line>) -> Result<(), StoreError> {
    let first = PageRequest::first(1);
    let mut oldest_envelope: Option<Timestamp> = None;
    for bucket in stores.retention.expiring_buckets().await? {
        if let Some(e) = stores.quarantine.list(&bucket, &first).await?.items.first() {
            oldest_envelope = Some(oldest_envelope.map_or(e.received_at, |o| o.min(e.received_at)));
        }
    }
    let grace = days(SWEEP_GRACE);
    if let Some(t) = oldest_envelope {
        let age = days(since(now, t));
        lines.push(line(
            CLAUSE_QUARANTINE,
            "oldest_envelope_age_days",
            None,
            age,
            Some(QUARANTINE_RETENTION_DAYS),
            age <= QUARANTINE_RETENTION_DAYS + grace,
        ));
    }
    let audit_limit = days(since(now, now.minus_months(DEFAULT_AUDIT_RETENTION_MONTHS)));
    for chain in audit_chains(stores).await? {
        if let Some(l) = stores.audit.list(&chain, &TimeRange::ALL, &first).await?.items.first() {
            let age = days(since(now, l.event.at));
            let tenant = match &chain {
                AuditChain::Tenant(t) => Some(t),
                AuditChain::Platform => None,
            };
            lines.push(line(
                CLAUSE_AUDIT,
                "oldest_audit_event_age_days",
                tenant,
                age,
                Some(audit_limit),
                age <= audit_limit + grace,
            ));
        }
    }
    let epoch = Timestamp::from_unix_millis(0);
    if let Some(r) = stores.retention.closed_between(epoch, now, &first).await?.items.first()
        && let Some(closed) = r.closed_at
    {
        let limit = days(since(now, now.minus_months(DEFAULT_CLOSED_REQUEST_RETENTION_MONTHS)));
        let age = days(since(now, closed));
        lines.push(line(
            CLAUSE_REQUESTS,
            "oldest_closed_request_age_days",
            None,
            age,
            Some(limit),
            age <= limit + grace,
        ));
    }
    Ok(())
}

async fn requests_lines(stores: &Stores, now: Timestamp, lines: &mut Vec<Line>) -> Result<(), StoreError> {
    let open = open_requests(stores, now).await?;
    let mut by_kind: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in &open {
        *by_kind.entry((r.kind.as_str(), r.status.as_str())).or_default() += 1;
    }
    for ((kind, status), n) in by_kind {
        lines.push(line(
            CLAUSE_DEADLINES,
            &format!("open_{kind}_{status}"),
            None,
            n,
            None,
            true,
        ));
    }
    let overdue = open.iter().filter(|r| r.due_at <= now).count() as i64;
    lines.push(line(
        CLAUSE_DEADLINES,
        "overdue_requests",
        None,
        overdue,
        Some(0),
        overdue == 0,
    ));
    let due_soon = open
        .iter()
        .filter(|r| r.due_at > now && r.due_at <= now.plus(DUE_SOON))
        .count() as i64;
    lines.push(line(
        CLAUSE_DEADLINES,
        "requests_due_within_48h",
        None,
        due_soon,
        None,
        true,
    ));
    if let Some(soonest) = open.iter().map(|r| r.due_at).min() {
        let left = since(soonest, now).whole_days();
        lines.push(line(
            CLAUSE_DEADLINES,
            "soonest_due_days_left",
            None,
            left,
            None,
            soonest > now,
        ));
    }
    // Requests completed in the last 30 days (the index of closed requests): how long they took.
    let since_30d = now.plus(-RECENT);
    let closed = all_pages(|p| async move { stores.retention.closed_between(since_30d, now, &p).await }).await?;
    let mut took: Vec<i64> = closed
        .iter()
        .filter(|r| r.status == RequestStatus::Completed)
        .filter_map(|r| r.closed_at.map(|c| since(c, r.received_at).whole_hours()))
        .collect();
    took.sort_unstable();
    lines.push(line(
        CLAUSE_DEADLINES,
        "completed_30d",
        None,
        took.len() as i64,
        None,
        true,
    ));
    if let (Some(max), Some(median)) = (took.last(), took.get(took.len() / 2)) {
        lines.push(line(
            CLAUSE_DEADLINES,
            "median_hours_to_complete",
            None,
            *median,
            None,
            true,
        ));
        lines.push(line(CLAUSE_DEADLINES, "max_hours_to_complete", None, *max, None, true));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::MAX_MESSAGE_RETENTION_MONTHS;

    #[test]
    fn jobs_parse_by_name() {
        for j in Job::ALL {
            assert_eq!(Job::parse(j.as_str()), Some(j));
        }
        assert_eq!(Job::parse("purge"), None);
        assert!(CLAUSE_MESSAGES.contains(&MAX_MESSAGE_RETENTION_MONTHS.to_string()));
    }
}
