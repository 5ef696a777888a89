//! Key formats of every table, in one place. Every key that holds tenant data starts with the
//! tenant id, so IAM's `dynamodb:LeadingKeys` can fence a tenant; `#` separates parts, which is why
//! tenant ids, channels and contact ids may not contain it.

use crate::deadline::RequestKind;
use crate::domain::{
    AuditChain, Channel, ChannelAccount, ContactId, MetaMessageId, OptOutScope, OptState, QuarantineBucket, RequestId,
    TenantId,
};
use crate::identity::SubjectKey;
use crate::timestamp::Timestamp;

/// Attribute DynamoDB TTL acts on, in every table (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

// Index names, as declared in template.yaml.
pub const CONTACTS_BY_TENANT_INDEX: &str = "contacts-by-tenant";
pub const OPEN_BY_DUE_INDEX: &str = "open-by-due";
/// Completed erasures by the time they closed (sparse: `erased` is set only on those).
pub const ERASURES_BY_CLOSE_INDEX: &str = "erasures-by-close";
/// Closed requests by the time they closed (sparse: `closed` is set only on those).
pub const CLOSED_BY_CLOSE_INDEX: &str = "closed-by-close";

/// Stale outbox claims by when they were found (sparse: `stale_pk` is set only on those).
pub const STALE_CLAIMS_INDEX: &str = "stale-claims";
/// The one partition of that index.
pub const STALE_PK: &str = "STALE";

/// Outbox: one partition per tenant, one item per dedup key.
pub fn outbox_pk(tenant: &TenantId) -> String {
    format!("{tenant}#OUTBOX")
}

pub fn outbox_sk(dedup_key: &str) -> String {
    format!("OUT#{dedup_key}")
}

/// Send slots of one account, one item per second.
pub fn send_slot_pk(account: &ChannelAccount) -> String {
    format!("RATE#{}#{}", account.channel, account.account_id)
}

/// Every message of a contact from `since` on (the newest first when read backwards).
pub fn messages_from(since: Timestamp) -> (String, String) {
    (
        format!("{MESSAGE_PREFIX}{}", since.sort_key()),
        format!("{MESSAGE_PREFIX}~"),
    )
}

// Conversations: one partition per contact, sorted so that one range holds each item kind:
// messages in event order, statuses, then the contact's head (unsend markers and profile) last.
pub const MESSAGE_PREFIX: &str = "MSG#";
pub const STATUS_PREFIX: &str = "STATUS#";
/// Everything a write needs to know about a contact: one query reads it.
pub const HEAD_PREFIX: &str = "~";
pub const GONE_PREFIX: &str = "~GONE#";
pub const PROFILE_SK: &str = "~PROFILE";

pub fn contact_pk(tenant: &TenantId, contact: &ContactId) -> String {
    format!("{tenant}#{}#{}", contact.channel, contact.stable_id)
}

/// Inverse of `contact_pk`, for link items that carry only keys.
pub fn parse_contact_pk(pk: &str) -> Option<(TenantId, ContactId)> {
    let mut parts = pk.splitn(3, '#');
    let tenant = TenantId::new(parts.next()?).ok()?;
    let channel = match parts.next()? {
        "whatsapp" => Channel::WhatsApp,
        "instagram" => Channel::Instagram,
        _ => return None,
    };
    let contact = ContactId::new(channel, parts.next()?).ok()?;
    Some((tenant, contact))
}

/// Identifier links live in their own partition per subject key, so finding a person across
/// tenants is a query on the table, and writing a link costs one unit (no index copy).
pub fn link_pk(key: &SubjectKey) -> String {
    format!("SUBJ#{key}")
}

/// The erasure ledger: when a subject key's data was erased, one item per key and no expiry, so
/// events from before the erasure (redeliveries, redrives, replays) are not stored again. Its own
/// partition, apart from the key's links, so `find_subject` never reads it.
pub fn erasure_ledger_pk(key: &SubjectKey) -> String {
    format!("ERASED#{key}")
}

pub const ERASURE_LEDGER_SK: &str = "LEDGER";

/// Event time first, so a contact's messages are in order and a redelivery (same time, same id)
/// lands on the same key.
pub fn message_sk(sent_at: Timestamp, id: &MetaMessageId) -> String {
    format!("{MESSAGE_PREFIX}{}#{}", sent_at.sort_key(), id.as_str())
}

/// Marker of a message unsent before its original arrived.
pub fn gone_sk(id: &MetaMessageId) -> String {
    format!("{GONE_PREFIX}{}", id.as_str())
}

/// Edits are stored under their original's id, so deleting the original finds them by prefix.
pub fn edit_id(original: &str, edit: &str) -> String {
    format!("{original}{EDIT_SEPARATOR}{edit}")
}

pub const EDIT_SEPARATOR: &str = "#edit#";

/// Prefix of every edit's id of a message.
pub fn edits_prefix(original: &MetaMessageId) -> String {
    format!("{}{EDIT_SEPARATOR}", original.as_str())
}

/// An Instagram reaction has no id of its own: the message it is on, what it did, and when.
pub fn reaction_id(mid: &str, action: &str, at_ms: i64) -> String {
    format!("{mid}#{action}#{at_ms}")
}

/// An Instagram event without a message id (a postback without `mid`, a referral), by its time.
pub fn event_id(kind: &str, at_ms: i64) -> String {
    format!("{kind}#{at_ms}")
}

/// The message an edit belongs to (itself when it is not an edit).
pub fn original_of(id: &MetaMessageId) -> &str {
    id.as_str().split(EDIT_SEPARATOR).next().unwrap_or(id.as_str())
}

/// The message keys (tombstones and edits among them) of events at or before `cutoff`, both ends
/// included: what the retention sweep deletes, oldest first.
pub fn messages_until(cutoff: Timestamp) -> (String, String) {
    (
        MESSAGE_PREFIX.to_owned(),
        format!("{MESSAGE_PREFIX}{}#~", cutoff.sort_key()),
    )
}

/// The event time a message key starts with.
pub fn message_sk_time(sk: &str) -> Option<Timestamp> {
    let ms = sk.strip_prefix(MESSAGE_PREFIX)?.split('#').next()?;
    ms.parse().ok().map(Timestamp::from_unix_millis)
}

pub fn status_sk(id: &MetaMessageId) -> String {
    format!("{STATUS_PREFIX}{}", id.as_str())
}

// OptOuts: one partition per person and tenant, named by subject key only.
pub const OPTOUT_STATE_PREFIX: &str = "STATE#";
pub const OPTOUT_HISTORY_PREFIX: &str = "HIST#";

pub fn optout_pk(tenant: &TenantId, key: &SubjectKey) -> String {
    format!("{tenant}#{key}")
}

pub fn scope_tag(scope: OptOutScope) -> &'static str {
    match scope {
        OptOutScope::All => "all",
        OptOutScope::Marketing => "marketing",
    }
}

pub fn optout_state_sk(scope: OptOutScope) -> String {
    format!("{OPTOUT_STATE_PREFIX}{}", scope_tag(scope))
}

/// The state is part of the key: a STOP and a START in the same second are both history.
pub fn optout_history_sk(event_at: Timestamp, scope: OptOutScope, state: OptState) -> String {
    let state = match state {
        OptState::OptedIn => "in",
        OptState::OptedOut => "out",
    };
    format!(
        "{OPTOUT_HISTORY_PREFIX}{}#{}#{state}",
        event_at.sort_key(),
        scope_tag(scope)
    )
}

/// One counter per day and tenant of the STOPs applied, in its own partition of the opt-outs
/// table (counts only, no subject key): the compliance report's "opt-outs applied in 30 days".
pub const OPTOUT_STATS_PK: &str = "STATS#applied";

/// `YYYY-MM-DD#<tenant>`: a range of days is one query.
pub fn optout_stats_sk(day: &str, tenant: &TenantId) -> String {
    format!("{day}#{tenant}")
}

// PrivacyRequests: not tenant data (a request may span tenants); open ones are indexed by due time.
pub const REQUEST_SK: &str = "REQUEST";
/// Value of the sparse open-requests index key while a request is open.
pub const OPEN_MARKER: &str = "OPEN";
pub const ERASED_MARKER: &str = "ERASED";
pub const CLOSED_MARKER: &str = "CLOSED";

pub fn request_pk(id: RequestId) -> String {
    format!("REQ#{id}")
}

/// An open request's claim on one of its subjects, for its kind and tenant scope (`*`: every
/// tenant): a second request for the same subject finds the first instead of duplicating it.
pub fn request_claim_pk(kind: RequestKind, tenant: Option<&TenantId>, key: &SubjectKey) -> String {
    let scope = tenant.map_or("*", TenantId::as_str);
    format!("CLAIM#{}#{scope}#{key}", kind.as_str())
}

// Audit: a partition per chain. A tenant's starts with its id; the platform's cannot be a tenant
// id (`#`). Events sort by time then number (a chain's times never decrease), checkpoints by day,
// and the head is one item.
pub const AUDIT_EVENT_PREFIX: &str = "E#";
pub const AUDIT_CHECKPOINT_PREFIX: &str = "CP#";
pub const AUDIT_HEAD_SK: &str = "HEAD";
const PLATFORM_CHAIN_PK: &str = "#PLATFORM";

pub fn audit_pk(chain: &AuditChain) -> String {
    match chain {
        AuditChain::Tenant(t) => t.as_str().to_owned(),
        AuditChain::Platform => PLATFORM_CHAIN_PK.to_owned(),
    }
}

pub fn audit_event_sk(at: Timestamp, seq: u64) -> String {
    format!("{AUDIT_EVENT_PREFIX}{}#{seq:020}", at.sort_key())
}

/// The event keys of a time range, both ends included: `(first, last)`.
pub fn audit_event_range(from: Option<Timestamp>, to: Option<Timestamp>) -> (String, String) {
    let from = from.map(Timestamp::sort_key).unwrap_or_default();
    let to = to.map_or_else(|| "~".to_owned(), |t| format!("{}#~", t.sort_key()));
    (
        format!("{AUDIT_EVENT_PREFIX}{from}"),
        format!("{AUDIT_EVENT_PREFIX}{to}"),
    )
}

/// The scope a store cursor of a chain's listing is bound to: the chain and the time range.
pub fn audit_list_scope(chain: &AuditChain, from: Option<Timestamp>, to: Option<Timestamp>) -> String {
    format!(
        "audit:{}:{:?}:{:?}",
        audit_pk(chain),
        from.map(Timestamp::unix_millis),
        to.map(Timestamp::unix_millis)
    )
}

pub fn audit_checkpoint_sk(day: &str) -> String {
    format!("{AUDIT_CHECKPOINT_PREFIX}{day}")
}

// Principals: one partition in the tenants table, one item per principal.
pub const PRINCIPALS_PK: &str = "PRINCIPALS";

// Tenants and the accounts they claim.
pub const TENANT_SK: &str = "TENANT";
pub const ACCOUNT_SK: &str = "ACCOUNT";

/// One item per tenant in this partition (`sk` = the tenant id): the cleanup lists tenants with
/// one query instead of a Scan of the table.
pub const TENANT_DIRECTORY_PK: &str = "TENANTS";

/// The scheduled jobs' progress and last results: one item per job, in the tenants table.
pub const JOBS_PK: &str = "JOBS";

pub fn tenant_pk(id: &TenantId) -> String {
    format!("TENANT#{id}")
}

pub const TENANT_EVENT_PREFIX: &str = "EVENT#";

pub fn tenant_event_sk(id: &str) -> String {
    format!("{TENANT_EVENT_PREFIX}{id}")
}

pub fn account_pk(account: &ChannelAccount) -> String {
    format!("ACCOUNT#{}#{}", account.channel, account.account_id)
}

// Quarantine: a partition per bucket, sorted by arrival.
pub fn quarantine_pk(bucket: &QuarantineBucket) -> String {
    match bucket {
        QuarantineBucket::Unrouted { account } => format!("UNROUTED#{}#{}", account.channel, account.account_id),
        QuarantineBucket::Rejected => "REJECTED".to_owned(),
        QuarantineBucket::Unhandled => "UNHANDLED".to_owned(),
        QuarantineBucket::OptOutReview { tenant } => format!("OPTOUT_REVIEW#{tenant}"),
        QuarantineBucket::DeadLettered { source } => format!("DEAD_LETTER#{}", source.as_str()),
    }
}

pub fn quarantine_sk(received_at: Timestamp, id: uuid::Uuid) -> String {
    format!("{}#{id}", received_at.sort_key())
}

/// The quarantine table's directory of unrouted accounts' buckets (`sk` = the bucket's `pk`):
/// the sweep finds every bucket that holds expiring entries without a Scan.
pub const QUARANTINE_BUCKETS_PK: &str = "BUCKETS";

/// The partition of a person's index entries in the quarantine table: one item per entry that
/// names them, so an erasure finds their quarantined envelopes without a Scan.
pub fn quarantine_subject_pk(key: &SubjectKey) -> String {
    format!("QSUBJECT#{}", key.as_str())
}

/// An index entry's sort key: the entry's own key, whole.
pub fn quarantine_subject_sk(entry_pk: &str, entry_sk: &str) -> String {
    format!("{entry_pk}#{entry_sk}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_keys_round_trip() {
        let tenant = TenantId::new("acme").expect("valid");
        let contact = ContactId::new(Channel::WhatsApp, "AR.123abc").expect("valid");
        let pk = contact_pk(&tenant, &contact);
        assert_eq!(pk, "acme#whatsapp#AR.123abc");
        assert_eq!(parse_contact_pk(&pk), Some((tenant, contact)));
        assert_eq!(parse_contact_pk("acme#sms#1"), None);
    }

    #[test]
    fn a_partition_sorts_messages_by_time_then_statuses_then_its_head() {
        let id = MetaMessageId::new("wamid.z").expect("valid");
        let early = message_sk(Timestamp::from_unix_seconds(1), &id);
        let late = message_sk(Timestamp::from_unix_seconds(2_000_000_000), &id);
        let mut keys = [
            PROFILE_SK.to_owned(),
            gone_sk(&id),
            status_sk(&id),
            late.clone(),
            early.clone(),
        ];
        keys.sort();
        assert_eq!(keys, [early, late, status_sk(&id), gone_sk(&id), PROFILE_SK.to_owned()]);
        assert!(gone_sk(&id).starts_with(HEAD_PREFIX) && PROFILE_SK.starts_with(HEAD_PREFIX));
    }

    #[test]
    fn the_sweep_range_ends_with_the_cutoff_s_messages() {
        let id = MetaMessageId::new(edit_id("wamid.HBgz-_=", "wamid.e")).expect("valid");
        let cutoff = Timestamp::from_unix_millis(1_000);
        let (first, last) = messages_until(cutoff);
        let at = message_sk(cutoff, &id);
        let after = message_sk(Timestamp::from_unix_millis(1_001), &id);
        assert!(first <= at && at <= last && after > last);
        assert_eq!(message_sk_time(&at), Some(cutoff));
        assert_eq!(message_sk_time(STATUS_PREFIX), None);
    }

    #[test]
    fn an_edit_knows_its_original() {
        let edit = MetaMessageId::new(edit_id("wamid.a", "wamid.b")).expect("valid");
        assert_eq!(original_of(&edit), "wamid.a");
        assert_eq!(original_of(&MetaMessageId::new("wamid.a").expect("valid")), "wamid.a");
    }
}
