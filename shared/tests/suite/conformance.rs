//! The same cases against every adapter family. Each case names the behaviour a caller relies on.

use crate::support::Harness;
use serde_json::json;
use shared::clock::Clock;
use shared::deadline::{self, Jurisdiction, RequestKind};
use shared::domain::*;
use shared::identity::{Identifier, IdentifierKind, SubjectKeySecret};
use shared::queue::Queue;
use shared::retention::RetentionMonths;
use shared::store::{EraseCursor, Page, PageRequest, StoreError, WriteOutcome};
use shared::timestamp::{Expiry, Timestamp};
use std::sync::Arc;
use time::Duration;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $case() { super::$case(crate::support::Harness::embedded().await).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $case() { super::$case(crate::support::Harness::dynamodb().await).await })*
        }
    };
}

conformance!(
    message_write_is_idempotent,
    status_never_moves_backwards,
    expired_items_are_invisible_while_still_stored,
    pagination_goes_past_one_page,
    tenant_scoped_queries_never_return_another_tenant,
    subject_is_found_across_tenants_through_the_blind_index,
    erasure_resumes_from_a_persisted_cursor_after_a_restart,
    erasure_reaches_a_contact_that_expired_but_is_not_yet_removed,
    statuses_of_a_contact_are_listed_in_pages,
    the_erasure_ledger_keeps_older_events_of_an_erased_subject_out,
    contact_upsert_merges_identifiers_and_keeps_the_newest_profile,
    a_rectified_profile_name_outlasts_the_name_later_events_carry,
    opt_out_keeps_the_newest_event_whatever_the_arrival_order,
    opt_out_history_is_complete_after_every_applied_change,
    opt_out_replay_writes_no_second_history_entry,
    opt_out_state_and_history_agree,
    privacy_requests_lock_optimistically_and_index_open_deadlines,
    an_account_belongs_to_one_tenant,
    audit_chains_link_every_event_and_verify,
    principal_grants_are_read_back_replaced_and_revoked,
    quarantine_lists_by_bucket_and_expires,
    quarantine_entries_are_found_by_the_people_they_name,
    opt_out_reviews_are_per_tenant_and_never_expire_undecided,
    an_unsent_message_is_deleted,
    a_message_is_read_back_by_its_key,
    tenant_events_are_idempotent,
    a_message_unsent_before_it_arrives_is_refused_when_it_comes,
    recording_a_message_upserts_its_contact_and_stores_it_once,
    a_profile_moves_only_when_an_event_changes_it,
    links_live_as_long_as_their_contact,
    nothing_of_an_unsent_message_comes_back,
    items_over_the_item_limit_are_refused_and_nothing_is_written,
    the_sweep_deletes_what_is_past_its_cutoff_and_moves_the_contact_on,
    the_sweep_works_in_bounded_steps,
    a_contact_back_after_its_profile_expired_is_still_due_for_its_old_items,
    the_quarantine_sweep_deletes_expired_entries_and_never_one_waiting_for_a_person,
    the_audit_sweep_deletes_expired_events_and_the_chain_still_verifies,
    closed_requests_are_swept_after_their_limitation_period_and_open_ones_never,
    applied_stops_are_counted_once_per_tenant_and_day,
    a_contact_whose_last_event_stored_no_item_keeps_its_profile_until_that_event_is_past,
    tenants_are_listed_and_the_last_run_of_each_job_kept,
    an_outbound_key_is_claimed_once_and_a_released_one_again,
    only_the_claim_that_holds_a_key_records_its_outcome,
    stale_claims_are_listed_until_resolved,
    send_slots_stop_at_the_limit_within_a_second,
    the_window_read_finds_the_newest_inbound_message_only,
    an_erasure_forgets_the_message_of_stale_sends_to_the_contact_only,
);

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("valid tenant id")
}

fn wa_contact(id: &str) -> ContactId {
    ContactId::new(Channel::WhatsApp, id).expect("valid contact id")
}

fn secret() -> SubjectKeySecret {
    SubjectKeySecret::new(b"conformance-secret-conformance-secret".to_vec()).expect("long enough")
}

fn link(kind: IdentifierKind, raw: &str) -> LinkedIdentifier {
    LinkedIdentifier::new(&secret(), Identifier::parse(kind, raw).expect("valid identifier"))
}

fn months24(t: Timestamp) -> Expiry {
    RetentionMonths::MAX.expiry_for(t)
}

fn message(t: &TenantId, c: &ContactId, id: &str, at: Timestamp, body: &str) -> Message {
    Message {
        tenant: t.clone(),
        contact: c.clone(),
        id: MetaMessageId::new(id).expect("valid id"),
        direction: Direction::Inbound,
        sent_at: at,
        kind: "text".to_owned(),
        content: json!({"type": "text", "text": {"body": body}}),
        expires_at: months24(at),
    }
}

fn upsert(t: &TenantId, c: &ContactId, name: Option<&str>, ids: Vec<LinkedIdentifier>, at: Timestamp) -> ContactUpsert {
    ContactUpsert {
        tenant: t.clone(),
        contact: c.clone(),
        profile_name: name.map(str::to_owned),
        identifiers: ids,
        seen_at: at,
        expires_at: months24(at),
    }
}

fn status(t: &TenantId, c: &ContactId, id: &str, state: DeliveryState, at: Timestamp) -> StatusUpdate {
    StatusUpdate {
        tenant: t.clone(),
        contact: c.clone(),
        message_id: MetaMessageId::new(id).expect("valid id"),
        state,
        at,
        detail: json!({"status": format!("{state:?}").to_lowercase()}),
        expires_at: months24(at),
    }
}

/// Follows cursors to the end, as a caller would, and returns everything in order.
async fn collect_all<T, F, Fut>(page_size: usize, mut fetch: F) -> (Vec<T>, usize)
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut req = PageRequest::first(page_size);
    let mut pages = 0;
    loop {
        let page = fetch(req.clone()).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= page_size, "a page holds at most its size");
        out.extend(page.items);
        match page.next {
            Some(c) => req = PageRequest::after(page_size, c),
            None => return (out, pages),
        }
        assert!(pages < 1000, "pagination does not terminate");
    }
}

async fn message_write_is_idempotent(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1001"), h.clock.now());
    let first = message(&t, &c, "wamid.HBgLNTQ5MTE=", now, "hola");
    assert_eq!(conv.put_message(&first).await.expect("write"), WriteOutcome::Written);
    // A redelivery (same Meta id) with different content must not replace what was stored.
    let replay = message(&t, &c, "wamid.HBgLNTQ5MTE=", now, "tampered replay");
    assert_eq!(conv.put_message(&replay).await.expect("write"), WriteOutcome::Unchanged);
    let page = conv.list_messages(&t, &c, &PageRequest::first(10)).await.expect("list");
    assert_eq!(page.items, vec![first]);
}

async fn status_never_moves_backwards(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1002"), h.clock.now());
    let id = "wamid.out1";
    use DeliveryState::*;
    assert_eq!(
        conv.put_status(&status(&t, &c, id, Read, now)).await.expect("w"),
        WriteOutcome::Written
    );
    for late in [Delivered, Sent, Read] {
        assert_eq!(
            conv.put_status(&status(&t, &c, id, late, now)).await.expect("w"),
            WriteOutcome::Unchanged,
            "{late:?}"
        );
    }
    let mid = MetaMessageId::new(id).expect("valid");
    assert_eq!(
        conv.get_status(&t, &c, &mid).await.expect("get").map(|s| s.state),
        Some(Read)
    );
    assert_eq!(
        conv.put_status(&status(&t, &c, id, Failed, now)).await.expect("w"),
        WriteOutcome::Written
    );
    assert_eq!(
        conv.put_status(&status(&t, &c, id, Played, now)).await.expect("w"),
        WriteOutcome::Unchanged
    );
    assert_eq!(
        conv.get_status(&t, &c, &mid).await.expect("get").map(|s| s.state),
        Some(Failed)
    );
}

async fn expired_items_are_invisible_while_still_stored(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1003"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0003");
    let hour = Expiry::at(now.plus(Duration::hours(1)));
    let mut m = message(&t, &c, "wamid.exp1", now, "short-lived");
    m.expires_at = hour;
    let mut u = upsert(&t, &c, Some("Ana"), vec![phone.clone()], now);
    u.expires_at = hour;
    let mut st = status(&t, &c, "wamid.exp1", DeliveryState::Sent, now);
    st.expires_at = hour;
    conv.upsert_contact(&u).await.expect("upsert");
    conv.put_message(&m).await.expect("message");
    conv.put_status(&st).await.expect("status");
    assert_eq!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    h.clock.advance(Duration::minutes(59));
    assert!(
        conv.get_contact(&t, &c).await.expect("get").is_some(),
        "not yet expired"
    );

    h.clock.advance(Duration::minutes(1));
    assert_eq!(conv.get_contact(&t, &c).await.expect("get"), None);
    assert!(
        conv.list_contacts(&t, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(conv.find_subject(&phone.subject_key).await.expect("find").is_empty());
    assert_eq!(conv.get_status(&t, &c, &m.id).await.expect("get"), None);

    if let crate::support::Backend::Dynamo { client, tables, .. } = &h.backend {
        let raw = client
            .get_item()
            .table_name(&tables.conversations)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(shared::store::keys::contact_pk(&t, &c)),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(shared::store::keys::message_sk(m.sent_at, &m.id)),
            )
            .send()
            .await
            .expect("raw get");
        assert!(
            raw.item.is_some(),
            "the expired message is still in the table, only hidden"
        );
    }
    // Still stored: the erasure sweep finds and deletes all four (profile, link, message, status).
    let done = conv
        .erase_contact_batch(&t, &c, EraseCursor::default(), 100)
        .await
        .expect("erase");
    assert_eq!(done, EraseCursor { deleted: 4, done: true });

    // An expired leftover does not block a new write under the same Meta id.
    let mut again = message(&t, &c, "wamid.exp1", h.clock.now(), "new");
    again.expires_at = months24(h.clock.now());
    assert_eq!(conv.put_message(&again).await.expect("write"), WriteOutcome::Written);
}

async fn pagination_goes_past_one_page(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, start) = (tenant("acme"), wa_contact("AR.1004"), h.clock.now());
    // Written out of order; read back in event order.
    for i in (0..25i64).rev() {
        let m = message(&t, &c, &format!("wamid.p{i:02}"), start.plus(Duration::seconds(i)), "x");
        conv.put_message(&m).await.expect("write");
    }
    let (all, pages) = collect_all(7, |req| {
        let (conv, t, c) = (conv.clone(), t.clone(), c.clone());
        async move { conv.list_messages(&t, &c, &req).await }
    })
    .await;
    let ids: Vec<String> = all.iter().map(|m| m.id.as_str().to_owned()).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("wamid.p{i:02}")).collect();
    assert_eq!(ids, expected);
    assert!(pages >= 4, "25 items at 7 a page take at least 4 pages, took {pages}");

    for i in 0..12 {
        conv.upsert_contact(&upsert(&t, &wa_contact(&format!("AR.20{i:02}")), None, vec![], start))
            .await
            .expect("upsert");
    }
    let (contacts, _) = collect_all(5, |req| {
        let (conv, t) = (conv.clone(), t.clone());
        async move { conv.list_contacts(&t, &req).await }
    })
    .await;
    assert_eq!(contacts.len(), 12);
    assert!(matches!(
        conv.list_contacts(&t, &PageRequest::first(0)).await,
        Err(StoreError::BadPageSize)
    ));
}

async fn tenant_scoped_queries_never_return_another_tenant(h: Harness) {
    let conv = &h.stores.conversations;
    let (a, b, now) = (tenant("tenant-a"), tenant("tenant-b"), h.clock.now());
    // The same person writes to both businesses: same stable id, different tenants.
    let c = wa_contact("AR.777");
    for i in 0..6 {
        conv.put_message(&message(
            &a,
            &c,
            &format!("wamid.a{i}"),
            now.plus(Duration::seconds(i)),
            "to A",
        ))
        .await
        .expect("w");
        conv.put_message(&message(
            &b,
            &c,
            &format!("wamid.b{i}"),
            now.plus(Duration::seconds(i)),
            "to B",
        ))
        .await
        .expect("w");
    }
    conv.upsert_contact(&upsert(&a, &c, Some("Ana"), vec![], now))
        .await
        .expect("upsert");
    conv.upsert_contact(&upsert(&b, &wa_contact("AR.888"), Some("Beto"), vec![], now))
        .await
        .expect("upsert");

    let page = conv.list_messages(&a, &c, &PageRequest::first(4)).await.expect("list");
    assert!(
        page.items
            .iter()
            .all(|m| m.tenant == a && m.id.as_str().starts_with("wamid.a"))
    );
    // A cursor issued for tenant A's listing is refused on tenant B's.
    let cursor = page.next.expect("more pages");
    let cross = conv.list_messages(&b, &c, &PageRequest::after(4, cursor)).await;
    assert!(matches!(cross, Err(StoreError::BadCursor)), "{cross:?}");

    let contacts_a = conv.list_contacts(&a, &PageRequest::first(100)).await.expect("list");
    assert_eq!(
        contacts_a.items.iter().map(|c| c.tenant.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    assert_eq!(
        conv.get_contact(&b, &c).await.expect("get"),
        None,
        "B never saw a profile for this contact"
    );
}

async fn subject_is_found_across_tenants_through_the_blind_index(h: Harness) {
    let conv = &h.stores.conversations;
    let (a, b, now) = (tenant("shop-a"), tenant("shop-b"), h.clock.now());
    // One person: WhatsApp to A (wa_id form), Instagram to B with the phone typed another way.
    let wa = wa_contact("AR.42");
    let ig = ContactId::new(Channel::Instagram, "17841400000042").expect("valid");
    let by_wa_id = link(IdentifierKind::Phone, "5491123456789");
    let typed = link(IdentifierKind::Phone, "011 15 2345-6789");
    assert_eq!(
        by_wa_id.subject_key, typed.subject_key,
        "normalization makes the forms meet"
    );
    conv.upsert_contact(&upsert(
        &a,
        &wa,
        None,
        vec![by_wa_id.clone(), link(IdentifierKind::WhatsAppUserId, "AR.42")],
        now,
    ))
    .await
    .expect("upsert");
    conv.upsert_contact(&upsert(
        &b,
        &ig,
        None,
        vec![typed.clone(), link(IdentifierKind::InstagramId, "17841400000042")],
        now,
    ))
    .await
    .expect("upsert");
    let other = wa_contact("AR.43");
    conv.upsert_contact(&upsert(
        &a,
        &other,
        None,
        vec![link(IdentifierKind::Phone, "+54 9 11 2345-6780")],
        now,
    ))
    .await
    .expect("upsert");

    let found = conv.find_subject(&typed.subject_key).await.expect("find");
    assert_eq!(
        found,
        vec![
            ContactRef {
                tenant: a.clone(),
                contact: wa.clone()
            },
            ContactRef {
                tenant: b.clone(),
                contact: ig.clone()
            }
        ]
    );
    let by_email = link(IdentifierKind::Email, "nobody@example.com");
    assert!(conv.find_subject(&by_email.subject_key).await.expect("find").is_empty());
}

async fn statuses_of_a_contact_are_listed_in_pages(h: Harness) {
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1010"), h.clock.now());
    let conv = &h.stores.conversations;
    for (id, state) in [
        ("wamid.s1", DeliveryState::Read),
        ("wamid.s0", DeliveryState::Delivered),
    ] {
        conv.put_status(&status(&t, &c, id, state, now)).await.expect("w");
    }
    conv.put_status(&status(
        &t,
        &wa_contact("AR.1011"),
        "wamid.s2",
        DeliveryState::Sent,
        now,
    ))
    .await
    .expect("another contact's");
    let first = conv.list_statuses(&t, &c, &PageRequest::first(1)).await.expect("list");
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].message_id.as_str(), "wamid.s0");
    let next = first.next.expect("a second page");
    let second = conv
        .list_statuses(&t, &c, &PageRequest::after(1, next))
        .await
        .expect("list");
    assert_eq!(second.items.len(), 1);
    assert_eq!(
        (second.items[0].message_id.as_str(), second.items[0].state),
        ("wamid.s1", DeliveryState::Read)
    );
    if let Some(more) = second.next {
        let rest = conv
            .list_statuses(&t, &c, &PageRequest::after(1, more))
            .await
            .expect("list");
        assert!(rest.items.is_empty(), "only this contact's two statuses");
    }
}

async fn erasure_reaches_a_contact_that_expired_but_is_not_yet_removed(h: Harness) {
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1009"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0009");
    let user_id = link(IdentifierKind::WhatsAppUserId, "AR.1009");
    let conv = &h.stores.conversations;
    conv.upsert_contact(&upsert(&t, &c, Some("Ana"), vec![phone.clone(), user_id.clone()], now))
        .await
        .expect("upsert");
    conv.put_message(&message(&t, &c, "wamid.x0", now, "hola"))
        .await
        .expect("w");
    // Past the retention period, before TTL has swept it: reads no longer see it, erasure must.
    h.clock.advance(Duration::days(31 * 25));
    assert!(conv.find_subject(&phone.subject_key).await.expect("find").is_empty());
    let reached = conv.erasure_reach(&phone.subject_key).await.expect("reach");
    let mut want = vec![phone.subject_key.clone(), user_id.subject_key.clone()];
    want.sort();
    let mut links = reached.first().map(|r| r.links.clone()).unwrap_or_default();
    links.sort();
    assert_eq!(reached.len(), 1, "the expired contact is reached");
    assert_eq!(
        reached[0].contact,
        ContactRef {
            tenant: t.clone(),
            contact: c.clone()
        }
    );
    assert_eq!(links, want, "with every one of its links");
    let mut cursor = EraseCursor::default();
    while !cursor.done {
        cursor = conv.erase_contact_batch(&t, &c, cursor, 100).await.expect("batch");
    }
    assert_eq!(cursor.deleted, 4, "profile, message and two links");
    assert!(
        conv.erasure_reach(&user_id.subject_key)
            .await
            .expect("reach")
            .is_empty()
    );
}

async fn erasure_resumes_from_a_persisted_cursor_after_a_restart(h: Harness) {
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1005"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0005");
    let user_id = link(IdentifierKind::WhatsAppUserId, "AR.1005");
    let conv = &h.stores.conversations;
    conv.upsert_contact(&upsert(&t, &c, Some("Ana"), vec![phone.clone(), user_id.clone()], now))
        .await
        .expect("upsert");
    for i in 0..9 {
        conv.put_message(&message(
            &t,
            &c,
            &format!("wamid.e{i}"),
            now.plus(Duration::seconds(i)),
            "x",
        ))
        .await
        .expect("w");
    }
    for i in 0..2 {
        conv.put_status(&status(&t, &c, &format!("wamid.o{i}"), DeliveryState::Delivered, now))
            .await
            .expect("w");
    }
    // A neighbour in the same tenant must survive.
    let neighbour = wa_contact("AR.1006");
    conv.put_message(&message(&t, &neighbour, "wamid.n0", now, "keep me"))
        .await
        .expect("w");
    let total = 1 + 2 + 9 + 2;

    let first = conv
        .erase_contact_batch(&t, &c, EraseCursor::default(), 4)
        .await
        .expect("batch");
    assert_eq!(
        first,
        EraseCursor {
            deleted: 4,
            done: false
        }
    );
    let persisted = serde_json::to_string(&first).expect("cursor serializes");

    // The worker dies here; a new process picks the cursor up from the request record.
    let restarted = h.restarted().await;
    let mut cursor: EraseCursor = serde_json::from_str(&persisted).expect("cursor parses");
    let mut batches = 1;
    while !cursor.done {
        cursor = restarted
            .conversations
            .erase_contact_batch(&t, &c, cursor, 4)
            .await
            .expect("batch");
        batches += 1;
        assert!(batches <= total, "erasure does not progress");
        if !cursor.done {
            // A worker stopping here finds the contact again by either key, or it would be
            // left half erased.
            for key in [&phone.subject_key, &user_id.subject_key] {
                let found = restarted.conversations.find_subject(key).await.expect("find");
                assert_eq!(
                    found.len(),
                    1,
                    "after batch {batches} a key no longer finds the contact"
                );
            }
        }
    }
    assert_eq!(batches, 4, "4, 4 and 3 items, then the profile with its 2 links");
    assert_eq!(cursor.deleted, total as u64);
    assert_eq!(restarted.conversations.get_contact(&t, &c).await.expect("get"), None);
    assert!(
        restarted
            .conversations
            .list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        restarted
            .conversations
            .find_subject(&phone.subject_key)
            .await
            .expect("find")
            .is_empty()
    );
    let kept = restarted
        .conversations
        .list_messages(&t, &neighbour, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(kept.items.len(), 1);
    // Erasing what is already gone is a no-op that reports done.
    let again = restarted
        .conversations
        .erase_contact_batch(&t, &c, EraseCursor::default(), 4)
        .await
        .expect("batch");
    assert_eq!(again, EraseCursor { deleted: 0, done: true });
}

async fn the_erasure_ledger_keeps_older_events_of_an_erased_subject_out(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.7001"), h.clock.now());
    let ids = || {
        vec![
            link(IdentifierKind::WhatsAppUserId, "AR.7001"),
            link(IdentifierKind::Phone, "+5491170010000"),
        ]
    };
    let key = ids()[0].subject_key.clone();
    assert_eq!(conv.erased_at(&key).await.expect("read"), None);
    conv.record_erasure(&key, now).await.expect("ledger");
    conv.record_erasure(&key, now.plus(Duration::seconds(-60)))
        .await
        .expect("an earlier one");
    assert_eq!(
        conv.erased_at(&key).await.expect("read"),
        Some(now),
        "the later erasure stands"
    );

    // A redelivery of a message from before the erasure: nothing of it is stored.
    let before = now.plus(Duration::seconds(-5));
    let old = message(&t, &c, "wamid.before", before, "from before");
    assert_eq!(
        conv.record_message(&upsert(&t, &c, Some("Ana"), ids(), before), &old)
            .await
            .expect("record"),
        WriteOutcome::Erased
    );
    assert_eq!(conv.get_contact(&t, &c).await.expect("get"), None);
    assert!(
        conv.find_subject(&key).await.expect("find").is_empty(),
        "no link either"
    );
    let status_before = status(&t, &c, "wamid.before", DeliveryState::Read, before);
    assert_eq!(
        conv.record_status(&upsert(&t, &c, None, ids(), before), &status_before)
            .await
            .expect("status"),
        WriteOutcome::Erased
    );

    // A message the person sends afterwards is stored as usual.
    let after = now.plus(Duration::seconds(5));
    let new = message(&t, &c, "wamid.after", after, "after");
    assert_eq!(
        conv.record_message(&upsert(&t, &c, None, ids(), after), &new)
            .await
            .expect("record"),
        WriteOutcome::Written
    );
    let page = conv.list_messages(&t, &c, &PageRequest::first(10)).await.expect("list");
    assert_eq!(page.items, vec![new]);
    assert!(
        conv.find_subject(&key)
            .await
            .expect("find")
            .iter()
            .any(|r| r.contact == c)
    );
}

async fn contact_upsert_merges_identifiers_and_keeps_the_newest_profile(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1007"), h.clock.now());
    let bsuid = link(IdentifierKind::WhatsAppUserId, "AR.1007");
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0007");
    let later = now.plus(Duration::minutes(5));
    assert_eq!(
        conv.upsert_contact(&upsert(&t, &c, Some("Ana"), vec![bsuid.clone()], later))
            .await
            .expect("u"),
        WriteOutcome::Written
    );
    // An older event arrives late: its identifier is linked, its profile name is not applied.
    let stale = upsert(&t, &c, Some("Old name"), vec![phone.clone()], now);
    assert_eq!(conv.upsert_contact(&stale).await.expect("u"), WriteOutcome::Unchanged);
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(got.profile_name.as_deref(), Some("Ana"));
    assert_eq!(got.last_seen, later);
    assert_eq!(got.identifiers.len(), 2);
    assert!(got.identifiers.contains(&bsuid) && got.identifiers.contains(&phone));
    assert_eq!(conv.find_subject(&phone.subject_key).await.expect("find").len(), 1);
    // Replaying the same identifiers adds nothing.
    conv.upsert_contact(&upsert(&t, &c, None, vec![bsuid.clone(), phone.clone()], later))
        .await
        .expect("u");
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(got.identifiers.len(), 2);
    assert_eq!(
        got.profile_name.as_deref(),
        Some("Ana"),
        "an event without a name keeps the name"
    );
}

async fn a_rectified_profile_name_outlasts_the_name_later_events_carry(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1008"), h.clock.now());
    let bsuid = link(IdentifierKind::WhatsAppUserId, "AR.1008");
    assert!(
        !conv
            .rectify_profile_name(&t, &c, "Ana Bertolini", now)
            .await
            .expect("rectify"),
        "no contact, nothing rectified"
    );
    conv.upsert_contact(&upsert(&t, &c, Some("Ana B"), vec![bsuid.clone()], now))
        .await
        .expect("u");
    assert!(
        conv.rectify_profile_name(&t, &c, "Ana Bertolini", now)
            .await
            .expect("rectify")
    );
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(
        (got.profile_name.as_deref(), got.name_rectified_at),
        (Some("Ana Bertolini"), Some(now))
    );
    // Her app still sends the old name with every message; a new identifier is still linked.
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0008");
    let later = now.plus(Duration::minutes(5));
    conv.upsert_contact(&upsert(&t, &c, Some("Ana B"), vec![bsuid, phone.clone()], later))
        .await
        .expect("u");
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(got.profile_name.as_deref(), Some("Ana Bertolini"));
    assert!(got.identifiers.contains(&phone));
    assert_eq!(got.last_seen, later);
    assert_eq!(
        conv.list_contacts(&t, &PageRequest::first(10))
            .await
            .expect("list")
            .items[0]
            .profile_name
            .as_deref(),
        Some("Ana Bertolini")
    );
}

/// An opt-out record of one person in a tenant; `order_at` is the time changes are ordered by.
fn opt_out(
    t: &TenantId,
    key: &shared::identity::SubjectKey,
    scope: OptOutScope,
    state: OptState,
    event_at: Timestamp,
    order_at: Timestamp,
    previous: Option<OptState>,
) -> OptOutRecord {
    OptOutRecord {
        tenant: t.clone(),
        subject_key: key.clone(),
        scope,
        state,
        source: OptOutSource::Keyword,
        event_at,
        order_at,
        previous,
        confirmed: false,
    }
}

async fn opt_out_history(
    store: &Arc<dyn shared::store::OptOutStore>,
    t: &TenantId,
    key: &shared::identity::SubjectKey,
) -> Vec<OptOutRecord> {
    collect_all(7, |req| async move { store.history(t, key, &req).await })
        .await
        .0
}

async fn opt_out_keeps_the_newest_event_whatever_the_arrival_order(h: Harness) {
    use shared::domain::optout::Expect;
    let store = &h.stores.opt_outs;
    let (t, now) = (tenant("acme"), h.clock.now());
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-0008").subject_key;
    let record = |state, secs: i64, previous| {
        let at = now.plus(Duration::seconds(secs));
        opt_out(&t, &key, OptOutScope::All, state, at, at, previous)
    };
    use OptState::*;
    let stop20 = record(OptedOut, 20, None);
    assert_eq!(
        store.apply(&stop20, Expect::Any).await.expect("apply"),
        ApplyOutcome::Applied
    );
    // START sent before the STOP but delivered after it: stale.
    assert_eq!(
        store
            .apply(&record(OptedIn, 10, None), Expect::Any)
            .await
            .expect("apply"),
        ApplyOutcome::Stale
    );
    // Redelivery of the same STOP: its history entry is there, nothing added.
    assert_eq!(
        store.apply(&stop20, Expect::Any).await.expect("apply"),
        ApplyOutcome::Replay
    );
    // A START in the same second as the STOP: the opt-out wins the tie.
    assert_eq!(
        store
            .apply(&record(OptedIn, 20, Some(OptedOut)), Expect::Any)
            .await
            .expect("apply"),
        ApplyOutcome::Stale
    );
    let current = store
        .get(&t, &key, OptOutScope::All)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (current.state, current.previous, current.confirmed),
        (OptedOut, None, false)
    );
    assert_eq!(
        store.get(&t, &key, OptOutScope::Marketing).await.expect("get"),
        None,
        "scopes are separate"
    );
    // Confirming an older event, or another state at the same time, does nothing; confirming the
    // current one sticks.
    let confirmed = || async {
        store
            .get(&t, &key, OptOutScope::All)
            .await
            .expect("get")
            .expect("stored")
            .confirmed
    };
    store
        .mark_confirmed(&t, &key, OptOutScope::All, now.plus(Duration::seconds(10)), OptedOut)
        .await
        .expect("mark");
    store
        .mark_confirmed(&t, &key, OptOutScope::All, now.plus(Duration::seconds(20)), OptedIn)
        .await
        .expect("mark");
    assert!(!confirmed().await);
    store
        .mark_confirmed(&t, &key, OptOutScope::All, now.plus(Duration::seconds(20)), OptedOut)
        .await
        .expect("mark");
    assert!(confirmed().await);

    assert_eq!(
        store
            .apply(&record(OptedIn, 30, Some(OptedOut)), Expect::Any)
            .await
            .expect("apply"),
        ApplyOutcome::Applied
    );
    let after = store
        .get(&t, &key, OptOutScope::All)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (after.previous, after.confirmed),
        (Some(OptedOut), false),
        "the caller's previous is kept"
    );
    assert!(after.is_change());
    // A STOP in the same second as that START wins the tie.
    assert_eq!(
        store
            .apply(&record(OptedOut, 30, Some(OptedIn)), Expect::Any)
            .await
            .expect("apply"),
        ApplyOutcome::Applied
    );
    let history = opt_out_history(store, &t, &key).await;
    assert_eq!(
        history.iter().map(|r| r.state).collect::<Vec<_>>(),
        vec![OptedOut, OptedIn, OptedOut]
    );
    assert!(
        store
            .get(&tenant("other"), &key, OptOutScope::All)
            .await
            .expect("get")
            .is_none(),
        "per tenant"
    );

    // Events clamped to one order time (dated ahead of the clock, received together): Meta's own
    // time still orders them, then the opt-out wins a full tie.
    let order = now.plus(Duration::seconds(100));
    let clamped = |state, secs: i64| {
        opt_out(
            &t,
            &key,
            OptOutScope::All,
            state,
            now.plus(Duration::seconds(secs)),
            order,
            None,
        )
    };
    for (r, expected) in [
        (clamped(OptedIn, 500), ApplyOutcome::Applied),
        (clamped(OptedOut, 400), ApplyOutcome::Stale),
        (clamped(OptedOut, 600), ApplyOutcome::Applied),
        (clamped(OptedIn, 600), ApplyOutcome::Stale),
    ] {
        assert_eq!(
            store.apply(&r, Expect::Any).await.expect("apply"),
            expected,
            "{:?} at {}",
            r.state,
            r.event_at
        );
    }
    let current = store
        .get(&t, &key, OptOutScope::All)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (current.state, current.event_at),
        (OptedOut, now.plus(Duration::seconds(600)))
    );
}

/// Every change the store accepts is in history at once (the consent evidence), exactly once,
/// and nothing it refuses is: 60 changes in a random order, both scopes, ties and repeats.
async fn opt_out_history_is_complete_after_every_applied_change(h: Harness) {
    use shared::domain::optout::Expect;
    let store = &h.stores.opt_outs;
    let (t, now) = (tenant("acme"), h.clock.now());
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-0010").subject_key;
    let mut rng = fastrand::Rng::with_seed(0x0F7_0C7);
    let mut applied: Vec<OptOutRecord> = Vec::new();
    for i in 0..60 {
        let state = if rng.bool() {
            OptState::OptedOut
        } else {
            OptState::OptedIn
        };
        let scope = if rng.u8(0..3) == 0 {
            OptOutScope::Marketing
        } else {
            OptOutScope::All
        };
        let event_at = now.plus(Duration::seconds(rng.i64(0..25)));
        // Order times as the processor gives them: Meta's time, or less when it was clamped.
        let order_at = event_at.plus(Duration::seconds(-rng.i64(0..2)));
        let r = opt_out(&t, &key, scope, state, event_at, order_at, None);
        let stored = store.get(&t, &key, scope).await.expect("get");
        let in_history = applied.iter().any(|a| a.same_event(&r));
        let outcome = store.apply(&r, Expect::Any).await.expect("apply");
        let expected = if in_history {
            ApplyOutcome::Replay
        } else if stored.is_none_or(|s| r.supersedes(&s)) {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Stale
        };
        assert_eq!(
            outcome, expected,
            "change {i}: {state:?}/{scope:?} at {event_at}, order {order_at}"
        );
        if outcome == ApplyOutcome::Applied {
            applied.push(r);
        }
        let history = opt_out_history(store, &t, &key).await;
        assert_eq!(
            history.len(),
            applied.len(),
            "change {i}: one history entry per applied change"
        );
        for a in &applied {
            let found: Vec<_> = history.iter().filter(|e| e.same_event(a)).collect();
            assert_eq!(found.len(), 1, "change {i}: applied {a:?} is in history once");
            assert_eq!(
                (found[0].order_at, found[0].source, found[0].previous),
                (a.order_at, a.source, a.previous)
            );
        }
    }
    assert!(applied.len() > 5, "the stream applies a fair share of its changes");
}

/// A redelivery is the same Meta event, whatever order time it was given: a STOP dated 2099
/// (ordered at its receipt) comes back with a later order time and writes nothing, while a START
/// received an hour after the STOP still wins.
async fn opt_out_replay_writes_no_second_history_entry(h: Harness) {
    use shared::domain::optout::Expect;
    let store = &h.stores.opt_outs;
    let (t, now) = (tenant("acme"), h.clock.now());
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-0011").subject_key;
    let far = Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").expect("valid");
    let all = OptOutScope::All;
    let stop = opt_out(
        &t,
        &key,
        all,
        OptState::OptedOut,
        far,
        now.plus(Duration::minutes(5)),
        None,
    );
    assert_eq!(
        store.apply(&stop, Expect::Any).await.expect("apply"),
        ApplyOutcome::Applied
    );
    let later = |mins| OptOutRecord {
        order_at: now.plus(Duration::minutes(mins)),
        ..stop.clone()
    };
    assert_eq!(
        store.apply(&stop, Expect::Any).await.expect("apply"),
        ApplyOutcome::Replay,
        "the same delivery again"
    );
    assert_eq!(
        store.apply(&later(30), Expect::Any).await.expect("apply"),
        ApplyOutcome::Replay,
        "a retried POST: received later, so ordered later, but the same event"
    );
    let start_at = now.plus(Duration::hours(1));
    let start = opt_out(
        &t,
        &key,
        all,
        OptState::OptedIn,
        start_at,
        start_at,
        Some(OptState::OptedOut),
    );
    assert_eq!(
        store
            .apply(&start, Expect::State(Some(OptState::OptedOut)))
            .await
            .expect("apply"),
        ApplyOutcome::Applied,
        "a START an hour later wins over a STOP dated 2099"
    );
    assert_eq!(
        store.apply(&later(180), Expect::Any).await.expect("apply"),
        ApplyOutcome::Replay,
        "a replay ordered after the START does not undo it"
    );
    let current = store.get(&t, &key, all).await.expect("get").expect("stored");
    assert_eq!((current.state, current.event_at), (OptState::OptedIn, start_at));
    let history = opt_out_history(store, &t, &key).await;
    assert_eq!(
        history
            .iter()
            .map(|r| (r.state, r.event_at, r.order_at))
            .collect::<Vec<_>>(),
        vec![
            (OptState::OptedIn, start_at, start_at),
            (OptState::OptedOut, far, now.plus(Duration::minutes(5)))
        ],
        "one entry per event, keyed by Meta's time, holding the order time it was applied with"
    );
}

/// The state is the history entry that supersedes every other one, field for field; a write
/// whose expected state moved meanwhile writes neither.
async fn opt_out_state_and_history_agree(h: Harness) {
    use OptState::*;
    use shared::domain::optout::Expect;
    let store = &h.stores.opt_outs;
    let (t, now) = (tenant("acme"), h.clock.now());
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-0012").subject_key;
    let at = |secs: i64| now.plus(Duration::seconds(secs));
    let all = OptOutScope::All;
    let changes = [
        (
            Expect::State(None),
            opt_out(&t, &key, all, OptedOut, at(10), at(10), None),
        ),
        (
            Expect::State(Some(OptedOut)),
            opt_out(&t, &key, all, OptedIn, at(20), at(20), Some(OptedOut)),
        ),
        (
            Expect::State(Some(OptedIn)),
            opt_out(&t, &key, all, OptedOut, at(40), at(30), Some(OptedIn)),
        ),
    ];
    for (expect, r) in &changes {
        assert_eq!(store.apply(r, *expect).await.expect("apply"), ApplyOutcome::Applied);
    }
    // Another instance read the state before the last change: its guarded writes fail whole.
    let late = opt_out(&t, &key, all, OptedIn, at(50), at(50), Some(OptedIn));
    assert_eq!(
        store.apply(&late, Expect::State(Some(OptedIn))).await.expect("apply"),
        ApplyOutcome::Stale,
        "the state moved to opted out since it was read"
    );
    assert_eq!(
        store.apply(&late, Expect::State(None)).await.expect("apply"),
        ApplyOutcome::Stale,
        "there is a record since"
    );
    let history = opt_out_history(store, &t, &key).await;
    assert_eq!(history.len(), 3, "a refused write leaves no history");
    let state = store.get(&t, &key, all).await.expect("get").expect("stored");
    let newest = OptOutRecord::in_force(&history).expect("history");
    assert_eq!(
        OptOutRecord {
            confirmed: false,
            ..state.clone()
        },
        *newest
    );
    assert_eq!((state.event_at, state.order_at), (at(40), at(30)), "both times kept");

    // Then the guarded write with the state read now wins, and both agree again.
    let fresh = OptOutRecord {
        previous: Some(OptedOut),
        ..late
    };
    assert_eq!(
        store.apply(&fresh, Expect::State(Some(OptedOut))).await.expect("apply"),
        ApplyOutcome::Applied
    );
    let history = opt_out_history(store, &t, &key).await;
    let state = store.get(&t, &key, all).await.expect("get").expect("stored");
    assert_eq!(OptOutRecord::in_force(&history), Some(&state));

    // An item stored before order times were kept orders by its event time.
    if let crate::support::Backend::Dynamo { client, tables, .. } = &h.backend {
        use aws_sdk_dynamodb::types::AttributeValue::{Bool, N, S};
        let old_key = link(IdentifierKind::Phone, "+54 9 11 5555-0013").subject_key;
        client
            .put_item()
            .table_name(&tables.opt_outs)
            .item("pk", S(shared::store::keys::optout_pk(&t, &old_key)))
            .item("sk", S(shared::store::keys::optout_state_sk(all)))
            .item("tenant", S(t.as_str().to_owned()))
            .item("subject_key", S(old_key.as_str().to_owned()))
            .item("scope", S("all".to_owned()))
            .item("state", S("opted_out".to_owned()))
            .item("source", S("keyword".to_owned()))
            .item("event_ms", N(at(60).unix_millis().to_string()))
            .item("previous_state", S("none".to_owned()))
            .item("confirmed", Bool(true))
            .send()
            .await
            .expect("raw put");
        let old = store.get(&t, &old_key, all).await.expect("get").expect("stored");
        assert_eq!(old.order_at, old.event_at);
        let before = opt_out(&t, &old_key, all, OptedIn, at(59), at(59), Some(OptedOut));
        assert_eq!(
            store.apply(&before, Expect::Any).await.expect("apply"),
            ApplyOutcome::Stale
        );
        let tie = opt_out(&t, &old_key, all, OptedIn, at(60), at(60), Some(OptedOut));
        assert_eq!(
            store.apply(&tie, Expect::Any).await.expect("apply"),
            ApplyOutcome::Stale
        );
        let after = opt_out(&t, &old_key, all, OptedIn, at(61), at(61), Some(OptedOut));
        assert_eq!(
            store.apply(&after, Expect::State(Some(OptedOut))).await.expect("apply"),
            ApplyOutcome::Applied
        );
    }
}

async fn privacy_requests_lock_optimistically_and_index_open_deadlines(h: Harness) {
    let store = &h.stores.privacy_requests;
    let now = h.clock.now();
    let ana = Subject {
        kind: IdentifierKind::Email,
        key: link(IdentifierKind::Email, "ana@example.com").subject_key,
    };
    let request = |kind, j, subjects: Vec<Subject>| {
        let received_at = now;
        let code = ConfirmationCode::random();
        PrivacyRequest {
            id: code.request_id(),
            code,
            kind,
            status: RequestStatus::Received,
            source: RequestSource::Email,
            jurisdiction: j,
            tenant: None,
            subjects,
            note: None,
            erase: false,
            rectify: None,
            offboarding: false,
            replay_of: None,
            received_at,
            due_at: deadline::due_at(j, kind, received_at),
            closed_at: None,
            timeline: Vec::new(),
            progress: ErasureProgress::default(),
            receipt: None,
            expires_at: None,
            version: 0,
        }
    };
    let erase_ar = request(RequestKind::Erasure, Jurisdiction::Ar, vec![ana.clone()]);
    let access_eu = request(RequestKind::Access, Jurisdiction::Eu, vec![ana.clone()]);
    assert_eq!(store.create(&erase_ar).await.expect("create"), Created::New);
    assert_eq!(
        store.create(&access_eu).await.expect("create"),
        Created::New,
        "another kind for the same person is another request"
    );
    assert_eq!(
        store.create(&erase_ar).await.expect("create"),
        Created::Existing(erase_ar.id),
        "the same id again"
    );
    // A second erasure for the same person (with one more identifier) finds the open one.
    let bob = Subject {
        kind: IdentifierKind::Phone,
        key: link(IdentifierKind::Phone, "+5491155550000").subject_key,
    };
    let again = request(RequestKind::Erasure, Jurisdiction::Ar, vec![bob.clone(), ana.clone()]);
    assert_eq!(
        store.create(&again).await.expect("create"),
        Created::Existing(erase_ar.id)
    );
    assert_eq!(
        store.get(again.id).await.expect("get"),
        None,
        "nothing of the duplicate stored"
    );
    let mut one_tenant = request(RequestKind::Erasure, Jurisdiction::Ar, vec![ana.clone()]);
    one_tenant.tenant = Some(tenant("acme"));
    assert_eq!(
        store.create(&one_tenant).await.expect("create"),
        Created::New,
        "a request scoped to one tenant is not one for every tenant"
    );

    let mut working = erase_ar.clone();
    working.status = RequestStatus::InProgress;
    let working = store.update(&working).await.expect("update");
    assert_eq!(working.version, 1);
    // A second worker still holding version 0 loses.
    let mut rival = erase_ar.clone();
    rival.status = RequestStatus::Rejected;
    assert!(matches!(store.update(&rival).await, Err(StoreError::Conflict)));
    assert_eq!(store.get(erase_ar.id).await.expect("get"), Some(working.clone()));

    // Due within 10 days: the Argentine erasures (5 business days), not the GDPR access (1 month).
    let soon = store
        .open_due_before(now.plus(Duration::days(10)), &PageRequest::first(10))
        .await
        .expect("due");
    let mut soon_ids: Vec<RequestId> = soon.items.iter().map(|r| r.id).collect();
    soon_ids.sort();
    let mut expected = vec![erase_ar.id, one_tenant.id];
    expected.sort();
    assert_eq!(soon_ids, expected);
    let all_open = store
        .open_due_before(now.plus(Duration::days(60)), &PageRequest::first(10))
        .await
        .expect("due");
    assert_eq!(all_open.items.last().map(|r| r.id), Some(access_eu.id), "soonest first");

    let mut closed = working;
    closed.status = RequestStatus::Completed;
    closed.closed_at = Some(now);
    closed.expires_at = Some(shared::retention::closed_request_expiry(now, 60));
    let closed = store.update(&closed).await.expect("close");
    let open = store
        .open_due_before(now.plus(Duration::days(60)), &PageRequest::first(10))
        .await
        .expect("due");
    assert!(
        !open.items.iter().any(|r| r.id == erase_ar.id),
        "closed requests leave the index"
    );
    let mut after_close = closed.clone();
    after_close.note = Some("changed".to_owned());
    assert!(
        matches!(store.update(&after_close).await, Err(StoreError::Conflict)),
        "a closed request is final"
    );
    // Its claim is released: the person may ask again.
    assert_eq!(store.create(&again).await.expect("create"), Created::New);

    // What a restore to a time before it would bring back: completed erasures closed since then,
    // oldest first; not an open one, not a completed access request, not one closed before.
    let mut access_done = store.get(access_eu.id).await.expect("get").expect("stored");
    access_done.status = RequestStatus::Completed;
    access_done.closed_at = Some(now);
    store.update(&access_done).await.expect("close");
    let mut later = store.get(one_tenant.id).await.expect("get").expect("stored");
    later.status = RequestStatus::Completed;
    later.closed_at = Some(now.plus(Duration::hours(2)));
    store.update(&later).await.expect("close");
    let since = |t: Timestamp| {
        let store = store.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(1);
            loop {
                let got = store
                    .erasures_closed_between(t, now.plus(Duration::hours(3)), &page)
                    .await
                    .expect("since");
                ids.extend(got.items.iter().map(|r| r.id));
                match got.next {
                    Some(next) => page = PageRequest::after(1, next),
                    None => return ids,
                }
            }
        }
    };
    assert_eq!(
        since(now.plus(Duration::hours(-1))).await,
        vec![erase_ar.id, one_tenant.id]
    );
    assert_eq!(since(now.plus(Duration::hours(1))).await, vec![one_tenant.id]);
    assert!(
        store
            .erasures_closed_between(
                now.plus(Duration::hours(-1)),
                now.plus(Duration::hours(1)),
                &PageRequest::first(10)
            )
            .await
            .expect("between")
            .items
            .iter()
            .all(|r| r.id == erase_ar.id),
        "one closed after the upper end is left out"
    );
    h.clock.advance(Duration::days(366 * 5 + 2));
    assert_eq!(
        store.get(erase_ar.id).await.expect("get"),
        None,
        "closed requests expire after the limitation period"
    );
}

async fn an_account_belongs_to_one_tenant(h: Harness) {
    let store = &h.stores.tenants;
    let wa = |id: &str| ChannelAccount::new(Channel::WhatsApp, id).expect("valid");
    let make = |id: &str, accounts: Vec<ChannelAccount>| Tenant {
        id: tenant(id),
        name: format!("Tenant {id}"),
        accounts,
        retention_months: RetentionMonths::new(12).expect("valid"),
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
        created_at: h.clock.now(),
    };
    let a = make(
        "acme",
        vec![
            wa("1001"),
            ChannelAccount::new(Channel::Instagram, "1784").expect("valid"),
        ],
    );
    store.register(&a).await.expect("register");
    assert_eq!(store.get(&a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(store.resolve(&wa("1001")).await.expect("resolve"), Some(a.id.clone()));

    let b = make("beta", vec![wa("2002"), wa("1001")]);
    match store.register(&b).await {
        Err(StoreError::AccountTaken {
            channel: Channel::WhatsApp,
            account_id,
        }) => assert_eq!(account_id, "1001"),
        other => panic!("expected AccountTaken, got {other:?}"),
    }
    assert_eq!(
        store.get(&b.id).await.expect("get"),
        None,
        "a refused registration writes nothing"
    );
    assert_eq!(store.resolve(&wa("2002")).await.expect("resolve"), None);

    // Re-registering is idempotent, and an account dropped by its tenant becomes free.
    store.register(&a).await.expect("idempotent");
    store.register(&make("acme", vec![wa("1001")])).await.expect("update");
    assert_eq!(
        store
            .resolve(&ChannelAccount::new(Channel::Instagram, "1784").expect("valid"))
            .await
            .expect("r"),
        None
    );
    assert_eq!(store.resolve(&wa("1001")).await.expect("resolve"), Some(a.id.clone()));
}

async fn audit_chains_link_every_event_and_verify(h: Harness) {
    use shared::audit::{GENESIS, verify};
    use shared::store::TimeRange;
    let store = &h.stores.audit;
    let t = tenant("acme");
    let chain = AuditChain::Tenant(t.clone());
    let start = h.clock.now();
    let event = |chain: &AuditChain, at: Timestamp, expires_at: Expiry| AuditEvent {
        id: uuid::Uuid::new_v4(),
        chain: chain.clone(),
        at,
        actor: "operator:privacy-desk".to_owned(),
        action: AuditAction::Read,
        route: "GET /admin/tenants/{tenant}/contacts".to_owned(),
        contact: Some(shared::seal::Sealer::new(&secret()).contact_handle(&t, &wa_contact("AR.1009"))),
        subject_key: None,
        detail: None,
        reason: "privacy request".to_owned(),
        expires_at,
    };
    let soon = Expiry::at(start.plus(Duration::hours(40)));
    let first = store.append(&event(&chain, start, soon)).await.expect("append");
    assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
    // A writer whose clock is behind cannot put an event before the head.
    let second = store
        .append(&event(&chain, start.plus(Duration::seconds(-5)), soon))
        .await
        .expect("append");
    assert_eq!(
        (second.seq, &second.prev_hash, second.event.at),
        (2, &first.hash, start)
    );
    store
        .append(&event(&AuditChain::Platform, start, soon))
        .await
        .expect("platform chain");
    h.clock.set(start.plus(Duration::hours(30)));
    let later = h.clock.now();
    let third = store
        .append(&event(&chain, later, shared::retention::audit_expiry(later, 24)))
        .await
        .expect("append");
    assert_eq!(third.seq, 3);
    let checkpoints = store.checkpoints(&chain).await.expect("checkpoints");
    assert_eq!(checkpoints.len(), 1, "the first day was closed by the next day's event");
    assert_eq!((checkpoints[0].seq, &checkpoints[0].hash), (2, &second.hash));

    // Concurrent writers each get their own number and the chain stays whole.
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (store, e) = (
            store.clone(),
            event(&chain, later, shared::retention::audit_expiry(later, 24)),
        );
        writers.spawn(async move { store.append(&e).await.map(|l| l.seq) });
    }
    let mut seqs: Vec<u64> = writers
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("append"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (4..=9).collect::<Vec<_>>());

    let all = store
        .list(&chain, &TimeRange::ALL, &PageRequest::first(4))
        .await
        .expect("list");
    assert_eq!(all.items.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(all.next.is_some());
    let day_one = TimeRange {
        from: Some(start),
        to: Some(start.plus(Duration::hours(1))),
    };
    let listed = store
        .list(&chain, &day_one, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![first.clone(), second.clone()]);
    let v = verify(store.as_ref(), &chain, &h.clock).await.expect("verify");
    assert!(v.intact, "{v:?}");
    assert_eq!((v.events, v.head_seq), (9, Some(9)));
    assert!(
        store
            .list(
                &AuditChain::Tenant(tenant("other")),
                &TimeRange::ALL,
                &PageRequest::first(10)
            )
            .await
            .expect("list")
            .items
            .is_empty()
    );

    // Once the first day's events have expired, they are gone from reads and the chain still
    // verifies from the oldest event retained.
    h.clock.set(start.plus(Duration::hours(50)));
    let v = verify(store.as_ref(), &chain, &h.clock).await.expect("verify");
    assert!(v.intact, "{v:?}");
    assert_eq!((v.from_seq, v.events), (Some(3), 7));
}

async fn principal_grants_are_read_back_replaced_and_revoked(h: Harness) {
    use shared::access::{Principal, PrincipalId, Role};
    let store = &h.stores.principals;
    let id = PrincipalId::new("arn:aws:iam::123456789012:role/Agents").expect("valid");
    let grant = |roles: &[Role], tenants: &[&str]| Principal {
        id: id.clone(),
        roles: roles.iter().copied().collect(),
        tenants: tenants.iter().map(|t| tenant(t)).collect(),
        granted_at: h.clock.now(),
        granted_by: "arn:aws:iam::123456789012:user/root-admin".to_owned(),
    };
    assert_eq!(store.get(&id).await.expect("get"), None);
    store.put(&grant(&[Role::TenantAgent], &["acme"])).await.expect("put");
    let replaced = grant(&[Role::TenantAgent, Role::Auditor], &["acme", "globex"]);
    store.put(&replaced).await.expect("put");
    assert_eq!(store.get(&id).await.expect("get"), Some(replaced.clone()));
    let listed = store.list(&PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items, vec![replaced]);
    assert!(store.delete(&id).await.expect("delete"));
    assert!(!store.delete(&id).await.expect("delete again"));
    assert_eq!(store.get(&id).await.expect("get"), None);
}

async fn quarantine_entries_are_found_by_the_people_they_name(h: Harness) {
    let store = &h.stores.quarantine;
    let now = h.clock.now();
    let (ana, bruno, nobody) = (
        link(IdentifierKind::Phone, "+5491155550123").subject_key,
        link(IdentifierKind::WhatsAppUserId, "AR.BRUNO0000000001").subject_key,
        link(IdentifierKind::Phone, "+5491177770000").subject_key,
    );
    let unrouted = QuarantineBucket::Unrouted {
        account: ChannelAccount::new(Channel::WhatsApp, "556").expect("valid"),
    };
    let both = QuarantineEntry::new(unrouted.clone(), "no tenant".to_owned(), "{\"a\":1}".to_owned(), now)
        .naming(vec![ana.clone(), bruno.clone()]);
    let only_ana = QuarantineEntry::new(
        QuarantineBucket::Rejected,
        "bad".to_owned(),
        "{\"b\":2}".to_owned(),
        now,
    )
    .naming(vec![ana.clone()]);
    let anonymous = QuarantineEntry::new(QuarantineBucket::Rejected, "bad".to_owned(), "not json".to_owned(), now);
    for e in [&both, &only_ana, &anonymous] {
        store.put(e).await.expect("put");
    }
    let ids = |found: Vec<QuarantineEntry>| {
        let mut ids: Vec<uuid::Uuid> = found.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids
    };
    let mut want = vec![both.id, only_ana.id];
    want.sort();
    assert_eq!(ids(store.find_subject(&ana).await.expect("find")), want);
    assert_eq!(ids(store.find_subject(&bruno).await.expect("find")), vec![both.id]);
    assert!(store.find_subject(&nobody).await.expect("find").is_empty());
    // The index entries are not entries of any bucket.
    let listed = store.list(&unrouted, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].subject_keys.len(), 2, "the entry keeps whom it names");

    store.delete(&both).await.expect("delete");
    assert_eq!(ids(store.find_subject(&ana).await.expect("find")), vec![only_ana.id]);
    assert!(
        store.find_subject(&bruno).await.expect("find").is_empty(),
        "its index entries went with it"
    );
    // Past its expiry, before TTL removes it, an erasure still finds it.
    h.clock.advance(Duration::days(60));
    assert!(
        store
            .get(&QuarantineBucket::Rejected, now, only_ana.id)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(ids(store.find_subject(&ana).await.expect("find")), vec![only_ana.id]);
}

async fn quarantine_lists_by_bucket_and_expires(h: Harness) {
    let store = &h.stores.quarantine;
    let now = h.clock.now();
    let unrouted = QuarantineBucket::Unrouted {
        account: ChannelAccount::new(Channel::WhatsApp, "555").expect("valid"),
    };
    let entry = |bucket: &QuarantineBucket, secs: i64| QuarantineEntry {
        id: uuid::Uuid::new_v4(),
        bucket: bucket.clone(),
        reason: "no tenant owns this account".to_owned(),
        envelope: r#"{"object":"whatsapp_business_account"}"#.to_owned(),
        received_at: now.plus(Duration::seconds(secs)),
        expires_at: Some(shared::retention::quarantine_expiry(now)),
        subject_keys: Vec::new(),
    };
    let (e1, e2, rejected) = (
        entry(&unrouted, 1),
        entry(&unrouted, 2),
        entry(&QuarantineBucket::Rejected, 0),
    );
    for e in [&e2, &e1, &rejected] {
        store.put(e).await.expect("put");
    }
    let listed = store.list(&unrouted, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items, vec![e1.clone(), e2.clone()]);
    store.delete(&e1).await.expect("delete");
    assert_eq!(
        store
            .list(&unrouted, &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![e2]
    );
    h.clock
        .advance(Duration::days(shared::retention::QUARANTINE_RETENTION_DAYS));
    assert!(
        store
            .list(&unrouted, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        store
            .list(&QuarantineBucket::Rejected, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

async fn opt_out_reviews_are_per_tenant_and_never_expire_undecided(h: Harness) {
    let store = &h.stores.quarantine;
    let now = h.clock.now();
    let (a, b) = (
        QuarantineBucket::OptOutReview { tenant: tenant("acme") },
        QuarantineBucket::OptOutReview { tenant: tenant("bolt") },
    );
    let held = QuarantineEntry::new(
        a.clone(),
        "opt-out keyword inside a longer message".to_owned(),
        "{}".to_owned(),
        now,
    );
    assert_eq!(held.expires_at, None, "a review waits for a person");
    store.put(&held).await.expect("put");
    assert_eq!(store.get(&a, now, held.id).await.expect("get"), Some(held.clone()));
    assert_eq!(
        store.get(&b, now, held.id).await.expect("get"),
        None,
        "another tenant's bucket"
    );
    h.clock.advance(Duration::days(400));
    let listed = store.list(&a, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items, vec![held.clone()], "still there after 400 days");
    assert!(
        store
            .list(&b, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    store.delete(&held).await.expect("decided");
    assert!(
        store
            .list(&a, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

async fn a_message_is_read_back_by_its_key(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1011"), h.clock.now());
    let m = message(&t, &c, "wamid.KEY1", now, "hola");
    conv.put_message(&m).await.expect("put");
    let id = MetaMessageId::new("wamid.KEY1").expect("valid");
    assert_eq!(conv.get_message(&t, &c, now, &id).await.expect("get"), Some(m.clone()));
    let elsewhere = [
        (tenant("bolt"), c.clone(), now),
        (t.clone(), wa_contact("AR.1012"), now),
        (t.clone(), c.clone(), now.plus(Duration::seconds(1))),
    ];
    for (t2, c2, at) in &elsewhere {
        assert_eq!(conv.get_message(t2, c2, *at, &id).await.expect("get"), None);
    }
    conv.delete_message(&t, &c, &id, months24(now)).await.expect("unsend");
    assert_eq!(
        conv.get_message(&t, &c, now, &id).await.expect("get"),
        None,
        "a tombstone is no message"
    );
}

async fn an_unsent_message_is_deleted(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1010"), h.clock.now());
    let (keep, gone) = (
        message(&t, &c, "mid.keep", now, "a"),
        message(&t, &c, "mid.gone", now, "b"),
    );
    let edit_id = shared::store::keys::edit_id("mid.gone", "wamid.edit1");
    let edit = message(&t, &c, &edit_id, now.plus(Duration::seconds(1)), "b, edited");
    for m in [&keep, &gone, &edit] {
        conv.put_message(m).await.expect("w");
    }
    let tombstone = months24(now);
    assert!(conv.delete_message(&t, &c, &gone.id, tombstone).await.expect("delete"));
    assert!(
        !conv.delete_message(&t, &c, &gone.id, tombstone).await.expect("delete"),
        "already gone"
    );
    assert!(
        !conv
            .delete_message(&tenant("other"), &c, &keep.id, tombstone)
            .await
            .expect("delete"),
        "another tenant's copy"
    );
    let left = conv.list_messages(&t, &c, &PageRequest::first(10)).await.expect("list");
    assert_eq!(left.items, vec![keep.clone()], "the message and its edit are gone");
    // Meta redelivers the original after the unsend: it stays deleted.
    assert_eq!(conv.put_message(&gone).await.expect("w"), WriteOutcome::Unchanged);
    assert_eq!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![keep]
    );
}

async fn tenant_events_are_idempotent(h: Harness) {
    let store = &h.stores.tenants;
    let event = |id: &str| TenantEvent {
        tenant: tenant("acme"),
        id: id.to_owned(),
        field: "message_template_status_update".to_owned(),
        received_at: h.clock.now(),
        payload: json!({"event": "APPROVED", "message_template_id": 1}),
    };
    assert_eq!(
        store.record_event(&event("e1")).await.expect("w"),
        WriteOutcome::Written
    );
    assert_eq!(
        store.record_event(&event("e1")).await.expect("w"),
        WriteOutcome::Unchanged
    );
    assert_eq!(
        store.record_event(&event("e2")).await.expect("w"),
        WriteOutcome::Written
    );
    let listed = store
        .list_events(&tenant("acme"), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![event("e1"), event("e2")]);
    assert!(
        store
            .list_events(&tenant("other"), &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// Queue conformance: the embedded queue moves time with the clock, SQS with the wall clock.
mod queue {
    use super::*;
    use crate::support;
    use shared::queue::embedded::EmbeddedQueue;
    use shared::queue::sqs::SqsQueue;
    use std::time::Duration as StdDuration;

    const VISIBILITY: StdDuration = StdDuration::from_secs(1);

    #[tokio::test]
    async fn embedded_redelivers_after_visibility_timeout() {
        let clock = support::test_clock();
        let q = EmbeddedQueue::new(Arc::new(clock.clone()), VISIBILITY);
        redelivers_after_visibility_timeout(&q, || {
            clock.advance(Duration::milliseconds(1100));
            async {}
        })
        .await;
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn sqs_redelivers_after_visibility_timeout() {
        let client = support::sqs_client().await;
        let out = client
            .create_queue()
            .queue_name(support::unique("q"))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                VISIBILITY.as_secs().to_string(),
            )
            .send()
            .await
            .expect("queue created");
        let q = SqsQueue::new(client, out.queue_url().expect("queue url"));
        redelivers_after_visibility_timeout(&q, || tokio::time::sleep(VISIBILITY + StdDuration::from_millis(600)))
            .await;
    }

    #[tokio::test]
    async fn embedded_moves_to_the_dead_letter_queue_after_max_receives() {
        let clock = support::test_clock();
        let dlq = Arc::new(EmbeddedQueue::new(Arc::new(clock.clone()), VISIBILITY));
        let q = EmbeddedQueue::new(Arc::new(clock.clone()), VISIBILITY).with_dead_letter(dlq.clone(), 2);
        dead_letters_after_max_receives(&q, dlq.as_ref(), || {
            clock.advance(Duration::milliseconds(1100));
            async {}
        })
        .await;
    }

    #[tokio::test]
    async fn sqs_moves_to_the_dead_letter_queue_after_max_receives() {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let client = support::sqs_client().await;
        let dlq_url = client
            .create_queue()
            .queue_name(support::unique("dlq"))
            .send()
            .await
            .expect("dlq")
            .queue_url
            .expect("url");
        let arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .expect("attrs");
        let arn = arn.attributes.and_then(|mut a| a.remove(&A::QueueArn)).expect("arn");
        let url = client
            .create_queue()
            .queue_name(support::unique("q"))
            .attributes(A::VisibilityTimeout, VISIBILITY.as_secs().to_string())
            .attributes(
                A::RedrivePolicy,
                json!({"deadLetterTargetArn": arn, "maxReceiveCount": 2}).to_string(),
            )
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let q = SqsQueue::new(client.clone(), url);
        let dlq = SqsQueue::new(client, dlq_url);
        dead_letters_after_max_receives(&q, &dlq, || {
            tokio::time::sleep(VISIBILITY + StdDuration::from_millis(600))
        })
        .await;
    }

    async fn dead_letters_after_max_receives<F, Fut>(q: &dyn Queue, dlq: &dyn Queue, mut let_visibility_lapse: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        q.send_batch(&["poison".to_owned()]).await.expect("send");
        for attempt in 1..=2 {
            let got = q.receive(10, StdDuration::from_secs(2)).await.expect("receive");
            assert_eq!(got.len(), 1, "attempt {attempt}");
            assert_eq!(got[0].receive_count, attempt);
            let_visibility_lapse().await;
        }
        assert!(
            q.receive(10, StdDuration::from_secs(1))
                .await
                .expect("receive")
                .is_empty(),
            "moved after 2 receives"
        );
        assert_eq!(q.pending().await.expect("pending"), 0);
        let dead = dlq.receive(10, StdDuration::from_secs(2)).await.expect("receive");
        assert_eq!(dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["poison"]);
    }

    async fn redelivers_after_visibility_timeout<F, Fut>(q: &dyn Queue, mut let_visibility_lapse: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let bodies: Vec<String> = (0..12).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        q.send_batch(&bodies).await.expect("send 12 (two SQS batches)");
        let mut received = Vec::new();
        while received.len() < 12 {
            let got = q.receive(10, StdDuration::from_secs(1)).await.expect("receive");
            assert!(!got.is_empty(), "all 12 messages arrive, got {}", received.len());
            received.extend(got);
        }
        assert!(received.iter().all(|m| m.receive_count == 1));
        let mut sent = bodies.clone();
        sent.sort();
        let mut got: Vec<String> = received.iter().map(|m| m.body.clone()).collect();
        got.sort();
        assert_eq!(got, sent);
        // Acknowledge all but one; the unacknowledged one comes back once its visibility lapses.
        let (kept, acked) = received.split_first().expect("non-empty");
        for m in acked {
            q.delete(&m.receipt).await.expect("delete");
        }
        assert!(
            q.receive(10, StdDuration::ZERO).await.expect("receive").is_empty(),
            "in flight, invisible"
        );
        let_visibility_lapse().await;
        let again = q.receive(10, StdDuration::from_secs(2)).await.expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].body.as_str(), again[0].receive_count),
            (kept.body.as_str(), 2)
        );
        q.delete(&again[0].receipt).await.expect("delete");
        let_visibility_lapse().await;
        assert!(
            q.receive(10, StdDuration::ZERO).await.expect("receive").is_empty(),
            "deleted for good"
        );
        assert!(matches!(
            q.send_batch(&["x".repeat(shared::queue::MAX_BODY_BYTES + 1)]).await,
            Err(shared::queue::QueueError::TooLarge { .. })
        ));
        assert!(matches!(
            q.receive(0, StdDuration::ZERO).await,
            Err(shared::queue::QueueError::BadBatchSize)
        ));
    }
}

async fn a_message_unsent_before_it_arrives_is_refused_when_it_comes(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1011"), h.clock.now());
    let original = message(&t, &c, "mid.late", now, "sent, then unsent");
    // The unsend is delivered first (Meta retried the original after a failure).
    assert!(
        !conv
            .delete_message(&t, &c, &original.id, months24(now))
            .await
            .expect("delete"),
        "nothing was stored yet"
    );
    assert_eq!(conv.put_message(&original).await.expect("w"), WriteOutcome::Unchanged);
    let edit = message(
        &t,
        &c,
        &shared::store::keys::edit_id("mid.late", "mid.e1"),
        now,
        "edited",
    );
    assert_eq!(
        conv.record_message(&upsert(&t, &c, None, vec![], now), &edit)
            .await
            .expect("w"),
        WriteOutcome::Unchanged,
        "an edit of an unsent message is refused too"
    );
    assert!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // Other messages of the contact are stored as usual.
    let other = message(&t, &c, "mid.other", now, "hola");
    assert_eq!(conv.put_message(&other).await.expect("w"), WriteOutcome::Written);
}

async fn recording_a_message_upserts_its_contact_and_stores_it_once(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1012"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0012");
    let u = upsert(&t, &c, Some("Ana"), vec![phone.clone()], now);
    let m = message(&t, &c, "wamid.rec1", now, "hola");
    assert_eq!(conv.record_message(&u, &m).await.expect("w"), WriteOutcome::Written);
    assert_eq!(
        conv.record_message(&u, &m).await.expect("w"),
        WriteOutcome::Unchanged,
        "a replay"
    );
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(
        (got.profile_name.as_deref(), got.identifiers.clone()),
        (Some("Ana"), vec![phone.clone()])
    );
    assert_eq!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![m]
    );
    let st = status(&t, &c, "wamid.out9", DeliveryState::Delivered, now);
    assert_eq!(conv.record_status(&u, &st).await.expect("w"), WriteOutcome::Written);
    assert_eq!(conv.record_status(&u, &st).await.expect("w"), WriteOutcome::Unchanged);
    assert_eq!(conv.find_subject(&phone.subject_key).await.expect("find").len(), 1);
}

async fn a_profile_moves_only_when_an_event_changes_it(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1013"), h.clock.now());
    let step = Expiry::at(now.plus(Duration::days(30)));
    let mut first = upsert(&t, &c, Some("Ana"), vec![], now);
    first.expires_at = step;
    conv.upsert_contact(&first).await.expect("u");
    // An hour later, nothing new (same name, same expiry step): the profile stays as it was.
    let mut same = upsert(&t, &c, Some("Ana"), vec![], now.plus(Duration::hours(1)));
    same.expires_at = step;
    assert_eq!(conv.upsert_contact(&same).await.expect("u"), WriteOutcome::Unchanged);
    assert_eq!(
        conv.get_contact(&t, &c).await.expect("get").expect("stored").last_seen,
        now
    );
    // A new name moves it.
    let mut renamed = upsert(&t, &c, Some("Ana María"), vec![], now.plus(Duration::hours(2)));
    renamed.expires_at = step;
    assert_eq!(conv.upsert_contact(&renamed).await.expect("u"), WriteOutcome::Written);
    let got = conv.get_contact(&t, &c).await.expect("get").expect("stored");
    assert_eq!(
        (got.profile_name.as_deref(), got.last_seen),
        (Some("Ana María"), now.plus(Duration::hours(2)))
    );
    // A later expiry moves it, and the contact then outlives that expiry's message.
    let later = upsert(&t, &c, None, vec![], now.plus(Duration::days(1)));
    assert_eq!(conv.upsert_contact(&later).await.expect("u"), WriteOutcome::Written);
    assert_eq!(
        conv.get_contact(&t, &c).await.expect("get").expect("stored").expires_at,
        later.expires_at
    );
}

async fn links_live_as_long_as_their_contact(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1014"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-0014");
    let mut first = upsert(&t, &c, None, vec![phone.clone()], now);
    first.expires_at = Expiry::at(now.plus(Duration::days(1)));
    conv.upsert_contact(&first).await.expect("u");
    // A later event that does not mention the phone still carries its link along.
    let mut later = upsert(&t, &c, None, vec![], now.plus(Duration::hours(12)));
    later.expires_at = Expiry::at(now.plus(Duration::days(3)));
    conv.upsert_contact(&later).await.expect("u");
    h.clock.advance(Duration::days(2));
    assert_eq!(
        conv.find_subject(&phone.subject_key).await.expect("find"),
        vec![ContactRef {
            tenant: t.clone(),
            contact: c.clone()
        }]
    );
    h.clock.advance(Duration::days(1));
    assert!(
        conv.find_subject(&phone.subject_key).await.expect("find").is_empty(),
        "gone with the contact"
    );
    assert_eq!(conv.get_contact(&t, &c).await.expect("get"), None);
}

async fn nothing_of_an_unsent_message_comes_back(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1015"), h.clock.now());
    let original = message(&t, &c, "mid.back", now, "sent, then unsent");
    conv.put_message(&original).await.expect("w");
    assert!(
        conv.delete_message(&t, &c, &original.id, months24(now))
            .await
            .expect("delete")
    );
    // Meta redelivers it under another event time, or an edit of it arrives late.
    let mut retimed = original.clone();
    retimed.sent_at = now.plus(Duration::seconds(1));
    assert_eq!(conv.put_message(&retimed).await.expect("w"), WriteOutcome::Unchanged);
    let edit = message(
        &t,
        &c,
        &shared::store::keys::edit_id("mid.back", "mid.e2"),
        now,
        "edited",
    );
    assert_eq!(
        conv.record_message(&upsert(&t, &c, None, vec![], now), &edit)
            .await
            .expect("w"),
        WriteOutcome::Unchanged
    );
    assert!(
        conv.list_messages(&t, &c, &PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// DynamoDB refuses an item over 400 KB whatever is retried; both adapters say so as `TooLarge`
/// (the processor quarantines on it) and write nothing, not part of a record.
async fn items_over_the_item_limit_are_refused_and_nothing_is_written(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("acme"), wa_contact("AR.1020"), h.clock.now());
    let huge = "x".repeat(450 * 1024);
    let big_but_fits = "y".repeat(300 * 1024);

    let oversize = message(&t, &c, "wamid.BIG1", now, &huge);
    assert!(
        matches!(conv.put_message(&oversize).await, Err(StoreError::TooLarge)),
        "a 450 KB text"
    );
    let fits = message(&t, &c, "wamid.BIG2", now, &big_but_fits);
    assert_eq!(
        conv.put_message(&fits).await.expect("a 300 KB text fits"),
        WriteOutcome::Written
    );
    let listed = conv.list_messages(&t, &c, &PageRequest::first(10)).await.expect("list");
    assert_eq!(listed.items, vec![fits], "only the one that fits");

    let mut st = status(&t, &c, "wamid.out1", DeliveryState::Delivered, now);
    st.detail = json!({"status": "delivered", "errors": [{"title": huge}]});
    assert!(
        matches!(conv.put_status(&st).await, Err(StoreError::TooLarge)),
        "a 450 KB status detail"
    );
    let id = MetaMessageId::new("wamid.out1").expect("valid");
    assert_eq!(conv.get_status(&t, &c, &id).await.expect("get"), None);

    let other = wa_contact("AR.1021");
    let named = upsert(
        &t,
        &other,
        Some(&huge),
        vec![link(IdentifierKind::Phone, "+54 9 11 5555-0021")],
        now,
    );
    assert!(
        matches!(conv.upsert_contact(&named).await, Err(StoreError::TooLarge)),
        "a 450 KB profile name"
    );
    assert_eq!(
        conv.get_contact(&t, &other).await.expect("get"),
        None,
        "no profile written"
    );

    // Recording: the contact is written, the oversize message is not.
    let third = wa_contact("AR.1022");
    let u = upsert(&t, &third, Some("Ana"), vec![], now);
    let m = message(&t, &third, "wamid.BIG3", now, &huge);
    assert!(matches!(conv.record_message(&u, &m).await, Err(StoreError::TooLarge)));
    assert!(
        conv.get_contact(&t, &third).await.expect("get").is_some(),
        "the contact is stored"
    );
    let listed = conv
        .list_messages(&t, &third, &PageRequest::first(10))
        .await
        .expect("list");
    assert!(listed.items.is_empty(), "the message is not");

    let event = TenantEvent {
        tenant: t.clone(),
        id: "e-big".to_owned(),
        field: "message_template_status_update".to_owned(),
        received_at: now,
        payload: json!({"event": "APPROVED", "reason": huge}),
    };
    assert!(
        matches!(h.stores.tenants.record_event(&event).await, Err(StoreError::TooLarge)),
        "a 450 KB tenant event"
    );
    let events = h
        .stores
        .tenants
        .list_events(&t, &PageRequest::first(10))
        .await
        .expect("list");
    assert!(events.items.is_empty());
}

async fn the_sweep_deletes_what_is_past_its_cutoff_and_moves_the_contact_on(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, now) = (tenant("sweep-a"), h.clock.now());
    let (a, b) = (wa_contact("AR.2001"), wa_contact("AR.2002"));
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-2001");
    let day = |d: i64| now.plus(Duration::days(d));
    for (d, id) in [(0, "wamid.s0"), (1, "wamid.s1"), (10, "wamid.s10")] {
        let u = upsert(&t, &a, Some("Ana"), vec![phone.clone()], day(d));
        conv.record_message(&u, &message(&t, &a, id, day(d), "hola"))
            .await
            .expect("w");
    }
    let u = upsert(&t, &a, None, vec![], day(0));
    conv.record_status(&u, &status(&t, &a, "wamid.out0", DeliveryState::Read, day(0)))
        .await
        .expect("w");
    let ub = upsert(&t, &b, None, vec![], day(20));
    conv.record_message(&ub, &message(&t, &b, "wamid.b20", day(20), "hola"))
        .await
        .expect("w");
    // Only the contact with something at or before the cutoff is due, with its oldest item.
    let due = h
        .stores
        .retention
        .contacts_due(&t, day(5), &PageRequest::first(10))
        .await
        .expect("due");
    assert_eq!(
        due.items.iter().map(|d| (&d.contact, d.oldest)).collect::<Vec<_>>(),
        vec![(&a, day(0))]
    );
    assert_eq!(h.stores.retention.oldest_item(&t).await.expect("oldest"), Some(day(0)));
    // Two messages and the status go; the contact stays, with its oldest item moved on.
    let out = h.sweeps.sweep_contact(&t, &a, day(5), 100).await.expect("sweep");
    assert_eq!((out.deleted, out.done, out.contact_gone), (3, true, false));
    let left = conv
        .list_messages(&t, &a, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    assert_eq!(
        left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["wamid.s10"]
    );
    assert_eq!(
        conv.list_statuses(&t, &a, &PageRequest::first(10))
            .await
            .expect("st")
            .items,
        vec![]
    );
    assert!(
        h.stores
            .retention
            .contacts_due(&t, day(5), &PageRequest::first(10))
            .await
            .expect("due")
            .items
            .is_empty()
    );
    assert_eq!(h.stores.retention.oldest_item(&t).await.expect("oldest"), Some(day(10)));
    // A second, overlapping sweep of the same contact finds nothing to count.
    let again = h.sweeps.sweep_contact(&t, &a, day(5), 100).await.expect("sweep");
    assert_eq!((again.deleted, again.done), (0, true));
    // Past everything of contact a: its profile and its link go too, and b is due after it.
    let due = h
        .stores
        .retention
        .contacts_due(&t, day(30), &PageRequest::first(10))
        .await
        .expect("due");
    assert_eq!(due.items.iter().map(|d| &d.contact).collect::<Vec<_>>(), vec![&a, &b]);
    let out = h.sweeps.sweep_contact(&t, &a, day(30), 100).await.expect("sweep");
    assert_eq!(
        (out.deleted, out.done, out.contact_gone),
        (3, true, true),
        "a message, the profile, its link"
    );
    assert_eq!(conv.get_contact(&t, &a).await.expect("get"), None);
    assert!(conv.find_subject(&phone.subject_key).await.expect("find").is_empty());
    assert_eq!(h.stores.retention.oldest_item(&t).await.expect("oldest"), Some(day(20)));
}

async fn the_sweep_works_in_bounded_steps(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("sweep-b"), wa_contact("AR.2003"), h.clock.now());
    for i in 0..5 {
        let at = now.plus(Duration::minutes(i));
        let u = upsert(&t, &c, None, vec![], at);
        conv.record_message(&u, &message(&t, &c, &format!("wamid.step{i}"), at, "x"))
            .await
            .expect("w");
    }
    let keep = now.plus(Duration::days(1));
    let u = upsert(&t, &c, None, vec![], keep);
    conv.record_message(&u, &message(&t, &c, "wamid.keep", keep, "x"))
        .await
        .expect("w");
    let cutoff = now.plus(Duration::hours(1));
    let mut steps = Vec::new();
    loop {
        let out = h.sweeps.sweep_contact(&t, &c, cutoff, 2).await.expect("sweep");
        steps.push(out.deleted);
        if out.done {
            break;
        }
    }
    assert_eq!(steps.iter().sum::<u64>(), 5, "steps {steps:?}");
    assert!(
        steps.iter().all(|n| *n <= 2),
        "no step deletes more than asked: {steps:?}"
    );
    let left = conv
        .list_messages(&t, &c, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    assert_eq!(
        left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["wamid.keep"]
    );
    assert!(matches!(
        h.sweeps.sweep_contact(&t, &c, cutoff, 0).await,
        Err(StoreError::BadPageSize)
    ));
}

async fn tenants_are_listed_and_the_last_run_of_each_job_kept(h: Harness) {
    use shared::compliance::{Job, JobRun};
    let tenants = &h.stores.tenants;
    let now = h.clock.now();
    let make = |id: &str| Tenant {
        id: tenant(id),
        name: format!("Tenant {id}"),
        accounts: Vec::new(),
        retention_months: RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
        created_at: now,
    };
    // Registered twice: listed once.
    for id in ["list-b", "list-a", "list-a"] {
        tenants.register(&make(id)).await.expect("register");
    }
    let retention = &h.stores.retention;
    let (ids, _) = collect_all(1, |p| async move { retention.tenant_ids(&p).await }).await;
    let ids: Vec<&str> = ids
        .iter()
        .map(TenantId::as_str)
        .filter(|i| i.starts_with("list-"))
        .collect();
    assert_eq!(ids, vec!["list-a", "list-b"]);
    assert_eq!(h.stores.retention.last_job_run(Job::Sweep).await.expect("get"), None);
    for n in [1, 2] {
        let run = JobRun {
            job: Job::Sweep,
            started_at: now,
            finished_at: now.plus(Duration::seconds(n)),
            complete: n == 2,
            counts: [("Deleted".to_owned(), n as u64)].into(),
        };
        h.sweeps.record_job_run(&run).await.expect("record");
    }
    let last = h
        .stores
        .retention
        .last_job_run(Job::Sweep)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((last.complete, last.counts.get("Deleted")), (true, Some(&2)));
    assert_eq!(h.stores.retention.last_job_run(Job::Monitor).await.expect("get"), None);
}

async fn a_contact_back_after_its_profile_expired_is_still_due_for_its_old_items(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, then) = (tenant("sweep-c"), wa_contact("AR.2004"), h.clock.now());
    let u = upsert(&t, &c, Some("Ana"), vec![], then);
    conv.record_message(&u, &message(&t, &c, "wamid.then", then, "x"))
        .await
        .expect("w");
    // 25 months on, the profile and the message have expired, and TTL has not removed them.
    let now = then.plus_months(25);
    h.clock.set(now);
    let u = upsert(&t, &c, Some("Ana"), vec![], now);
    conv.record_message(&u, &message(&t, &c, "wamid.now", now, "x"))
        .await
        .expect("w");
    assert!(conv.get_contact(&t, &c).await.expect("get").is_some(), "a new profile");
    // The new profile still points the sweep at the old message.
    let due = h
        .stores
        .retention
        .contacts_due(&t, then.plus(Duration::days(1)), &PageRequest::first(10))
        .await
        .expect("due");
    assert_eq!(due.items.iter().map(|d| d.oldest).collect::<Vec<_>>(), vec![then]);
    let out = h
        .sweeps
        .sweep_contact(&t, &c, then.plus(Duration::days(1)), 100)
        .await
        .expect("sweep");
    assert_eq!((out.deleted, out.contact_gone), (1, false));
    let left = conv
        .list_messages(&t, &c, &PageRequest::first(10))
        .await
        .expect("list")
        .items;
    assert_eq!(
        left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["wamid.now"]
    );
}

async fn the_quarantine_sweep_deletes_expired_entries_and_never_one_waiting_for_a_person(h: Harness) {
    let store = &h.stores.quarantine;
    let now = h.clock.now();
    let unrouted = QuarantineBucket::Unrouted {
        account: ChannelAccount::new(Channel::WhatsApp, "777").expect("valid"),
    };
    let review = QuarantineBucket::OptOutReview { tenant: tenant("acme") };
    let stop = QuarantineBucket::DeadLettered {
        source: DeadLetterSource::OptOut,
    };
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-3001").subject_key;
    let entry = |bucket: &QuarantineBucket, days: i64, body: &str| {
        QuarantineEntry::new(
            bucket.clone(),
            "held".to_owned(),
            body.to_owned(),
            now.plus(Duration::days(days)),
        )
        .naming(vec![key.clone()])
    };
    let (old, new) = (entry(&unrouted, 0, "old"), entry(&unrouted, 40, "new"));
    let (waiting, held_stop) = (entry(&review, 0, "review"), entry(&stop, 0, "stop"));
    for e in [&old, &new, &waiting, &held_stop] {
        store.put(e).await.expect("put");
    }
    let buckets = h.stores.retention.expiring_buckets().await.expect("buckets");
    assert!(
        buckets.contains(&unrouted) && buckets.contains(&QuarantineBucket::Rejected),
        "{buckets:?}"
    );
    assert!(!buckets.contains(&review) && !buckets.contains(&stop), "{buckets:?}");
    // 31 days on, the first envelope's 30 days are over: counted without a delete, then swept.
    let expired_by = now.plus(Duration::days(31));
    for _ in 0..2 {
        let dry = h.sweeps.quarantine_past_expiry(&unrouted, expired_by, 100).await;
        assert_eq!(dry.expect("count"), 1, "counting deletes nothing");
    }
    let out = h
        .sweeps
        .sweep_quarantine(&unrouted, expired_by, 100)
        .await
        .expect("sweep");
    assert_eq!((out.deleted, out.done), (1, true));
    let found: Vec<String> = store
        .find_subject(&key)
        .await
        .expect("find")
        .into_iter()
        .map(|e| e.envelope)
        .collect();
    assert_eq!(found.len(), 3, "its index entry went with it: {found:?}");
    assert!(!found.contains(&"old".to_owned()));
    assert_eq!(
        h.sweeps
            .sweep_quarantine(&unrouted, expired_by, 100)
            .await
            .expect("sweep")
            .deleted,
        0,
        "counted once"
    );
    // Whatever the date, an entry waiting for a person stays.
    let far = now.plus_months(120);
    for bucket in [&review, &stop] {
        assert_eq!(
            h.sweeps
                .sweep_quarantine(bucket, far, 100)
                .await
                .expect("sweep")
                .deleted,
            0
        );
    }
    // In bounded steps.
    for i in 0..3 {
        store
            .put(&entry(&QuarantineBucket::Rejected, 0, &format!("bad {i}")))
            .await
            .expect("put");
    }
    let first = h
        .sweeps
        .sweep_quarantine(&QuarantineBucket::Rejected, expired_by, 2)
        .await
        .expect("sweep");
    assert_eq!((first.deleted, first.done), (2, false));
    let rest = h
        .sweeps
        .sweep_quarantine(&QuarantineBucket::Rejected, expired_by, 2)
        .await
        .expect("sweep");
    assert_eq!((rest.deleted, rest.done), (1, true));
}

async fn the_audit_sweep_deletes_expired_events_and_the_chain_still_verifies(h: Harness) {
    use shared::audit::verify;
    use shared::store::TimeRange;
    let store = &h.stores.audit;
    let t = tenant("sweep-audit");
    let chain = AuditChain::Tenant(t.clone());
    let start = h.clock.now();
    let event = |at: Timestamp, expires_at: Expiry| AuditEvent {
        id: uuid::Uuid::new_v4(),
        chain: chain.clone(),
        at,
        actor: "operator:privacy-desk".to_owned(),
        action: AuditAction::Read,
        route: "GET /admin/tenants/{tenant}/contacts".to_owned(),
        contact: None,
        subject_key: None,
        detail: None,
        reason: "audit sweep".to_owned(),
        expires_at,
    };
    let soon = Expiry::at(start.plus(Duration::hours(40)));
    for i in 0..3 {
        store
            .append(&event(start.plus(Duration::seconds(i)), soon))
            .await
            .expect("append");
    }
    let later = start.plus(Duration::days(1));
    store
        .append(&event(later, Expiry::at(later.plus_months(24))))
        .await
        .expect("append");
    let expired_by = start.plus(Duration::hours(41));
    let dry = h.sweeps.audit_past_expiry(&chain, expired_by, 100).await;
    assert_eq!(dry.expect("count"), 3);
    let first = h.sweeps.sweep_audit(&chain, expired_by, 2).await.expect("sweep");
    assert_eq!((first.deleted, first.done), (2, false), "bounded steps");
    let rest = h.sweeps.sweep_audit(&chain, expired_by, 100).await.expect("sweep");
    assert_eq!(
        (rest.deleted, rest.done),
        (1, true),
        "the kept event and its checkpoints stay"
    );
    assert_eq!(
        h.sweeps
            .sweep_audit(&chain, expired_by, 100)
            .await
            .expect("sweep")
            .deleted,
        0
    );
    let dry = h.sweeps.audit_past_expiry(&chain, expired_by, 100).await;
    assert_eq!(dry.expect("count"), 0);
    h.clock.set(expired_by);
    let left = store
        .list(&chain, &TimeRange::ALL, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(left.items.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![4]);
    assert!(store.head(&chain).await.expect("head").is_some(), "the head stays");
    let v = verify(store.as_ref(), &chain, &h.clock).await.expect("verify");
    assert!(v.intact, "expired events are not a break: {v:?}");
}

async fn closed_requests_are_swept_after_their_limitation_period_and_open_ones_never(h: Harness) {
    let store = &h.stores.privacy_requests;
    let now = h.clock.now();
    let new = |kind: RequestKind| {
        let key = link(IdentifierKind::Email, &format!("{}@example.com", kind.as_str())).subject_key;
        PrivacyRequest::new(NewRequest {
            kind,
            source: RequestSource::Email,
            jurisdiction: Jurisdiction::Ar,
            tenant: None,
            subjects: vec![Subject {
                kind: IdentifierKind::Email,
                key,
            }],
            note: None,
            erase: false,
            rectify: None,
            code: ConfirmationCode::random(),
            now,
            by: "conformance",
        })
    };
    let (closed, open) = (new(RequestKind::Access), new(RequestKind::Erasure));
    for r in [&closed, &open] {
        assert_eq!(store.create(r).await.expect("create"), Created::New);
    }
    let mut done = store.get(closed.id).await.expect("get").expect("stored");
    done.close(RequestStatus::Completed, now, "conformance", None);
    store.update(&done).await.expect("close");
    let recent = h
        .stores
        .retention
        .closed_between(now.plus(Duration::days(-1)), now, &PageRequest::first(10))
        .await
        .expect("closed");
    assert_eq!(recent.items.iter().map(|r| r.id).collect::<Vec<_>>(), vec![closed.id]);
    let limitation = now.plus_months(shared::retention::DEFAULT_CLOSED_REQUEST_RETENTION_MONTHS);
    let early = h
        .sweeps
        .sweep_closed(limitation.plus(Duration::days(-1)), 100)
        .await
        .expect("sweep");
    assert_eq!((early.deleted, early.done), (0, true));
    let dry = h.sweeps.closed_past_expiry(limitation, 100).await;
    assert_eq!(dry.expect("count"), 1);
    let out = h.sweeps.sweep_closed(limitation, 100).await.expect("sweep");
    assert_eq!((out.deleted, out.done), (1, true));
    assert_eq!(store.get(closed.id).await.expect("get"), None);
    let dry = h.sweeps.closed_past_expiry(limitation, 100).await;
    assert_eq!(dry.expect("count"), 0);
    assert!(
        store.get(open.id).await.expect("get").is_some(),
        "an open request has no expiry"
    );
    assert_eq!(
        h.sweeps
            .sweep_closed(limitation.plus_months(1200), 100)
            .await
            .expect("sweep")
            .deleted,
        0
    );
}

async fn applied_stops_are_counted_once_per_tenant_and_day(h: Harness) {
    use shared::domain::optout::Expect;
    let store = &h.stores.opt_outs;
    let now = h.clock.now();
    let (a, b) = (tenant("count-a"), tenant("count-b"));
    let key = link(IdentifierKind::Phone, "+54 9 11 5555-4001").subject_key;
    let stop = |t: &TenantId, at: Timestamp, previous| {
        opt_out(t, &key, OptOutScope::All, OptState::OptedOut, at, at, previous)
    };
    assert_eq!(
        store.apply(&stop(&a, now, None), Expect::Any).await.expect("apply"),
        ApplyOutcome::Applied
    );
    // A replay and a START are not STOPs applied; a second STOP after the START is.
    assert_eq!(
        store.apply(&stop(&a, now, None), Expect::Any).await.expect("apply"),
        ApplyOutcome::Replay
    );
    let later = now.plus(Duration::minutes(1));
    let start = opt_out(
        &a,
        &key,
        OptOutScope::All,
        OptState::OptedIn,
        later,
        later,
        Some(OptState::OptedOut),
    );
    assert_eq!(
        store.apply(&start, Expect::Any).await.expect("apply"),
        ApplyOutcome::Applied
    );
    let again = now.plus(Duration::minutes(2));
    store
        .apply(&stop(&a, again, Some(OptState::OptedIn)), Expect::Any)
        .await
        .expect("apply");
    store.apply(&stop(&b, now, None), Expect::Any).await.expect("apply");
    let counted = h
        .stores
        .retention
        .optouts_applied(now.plus(Duration::days(-30)), now.plus(Duration::days(1)))
        .await
        .expect("count");
    assert_eq!(counted.get(&a), Some(&2), "{counted:?}");
    assert_eq!(counted.get(&b), Some(&1), "{counted:?}");
    let before = h
        .stores
        .retention
        .optouts_applied(now.plus(Duration::days(-30)), now.plus(Duration::days(-1)))
        .await
        .expect("count");
    assert!(before.is_empty(), "{before:?}");
}

async fn a_contact_whose_last_event_stored_no_item_keeps_its_profile_until_that_event_is_past(h: Harness) {
    let conv = &h.stores.conversations;
    let (t, c, now) = (tenant("sweep-d"), wa_contact("AR.2005"), h.clock.now());
    let phone = link(IdentifierKind::Phone, "+54 9 11 5555-2005");
    let u = upsert(&t, &c, Some("Ana"), vec![phone.clone()], now);
    conv.record_message(&u, &message(&t, &c, "wamid.d0", now, "x"))
        .await
        .expect("w");
    // Ten days later an event that changes the profile and stores no item (a preference, say).
    let later = now.plus(Duration::days(10));
    conv.upsert_contact(&upsert(&t, &c, Some("Ana María"), vec![phone.clone()], later))
        .await
        .expect("u");
    let cutoff = now.plus(Duration::days(5));
    let out = h.sweeps.sweep_contact(&t, &c, cutoff, 100).await.expect("sweep");
    assert_eq!((out.deleted, out.contact_gone), (1, false), "the message only");
    assert!(conv.get_contact(&t, &c).await.expect("get").is_some());
    assert_eq!(conv.find_subject(&phone.subject_key).await.expect("find").len(), 1);
    let due = h
        .stores
        .retention
        .contacts_due(&t, cutoff, &PageRequest::first(10))
        .await
        .expect("due");
    assert!(due.items.is_empty(), "due again once its last event is past");
    let past = later.plus(Duration::days(1));
    let out = h.sweeps.sweep_contact(&t, &c, past, 100).await.expect("sweep");
    assert_eq!((out.deleted, out.contact_gone), (2, true), "the profile and its link");
    assert!(conv.find_subject(&phone.subject_key).await.expect("find").is_empty());
}

fn outbound_text(key: &str, to: &ContactId) -> shared::outbound::OutboundCommand {
    shared::outbound::OutboundCommand::Message(shared::outbound::TenantMessage {
        tenant: tenant("shop"),
        to: to.clone(),
        client_key: shared::outbound::ClientKey::new(key).expect("valid"),
        content: shared::outbound::Content::Text {
            body: "hola".to_owned(),
        },
        requested_by: "agent".to_owned(),
        requested_at: Timestamp::from_unix_seconds(0),
    })
}

async fn an_outbound_key_is_claimed_once_and_a_released_one_again(h: Harness) {
    use shared::outbound::{Claim, OutboxEntry, OutboxState};
    let cmd = outbound_text("k1", &wa_contact("AR.1"));
    let entry = OutboxEntry::claim(&cmd, h.clock.now());
    let Claim::Won(mine) = h.outbox.claim(&entry).await.expect("claim") else {
        panic!("the first claim wins");
    };
    assert_eq!(mine.attempt, 1);
    match h.outbox.claim(&entry).await.expect("claim again") {
        Claim::Held(held) => assert_eq!((held.state, held.attempt), (OutboxState::Claimed, 1)),
        won => panic!("a second claim must not win: {won:?}"),
    }
    assert!(
        h.outbox
            .release(&tenant("shop"), "msg:k1", 1, h.clock.now())
            .await
            .expect("release")
    );
    let Claim::Won(again) = h.outbox.claim(&entry).await.expect("claim after release") else {
        panic!("a released key is claimed again");
    };
    assert_eq!(again.attempt, 2, "the attempt counts on");
    // A day later the entry has expired: the key is free (TTL may not have removed it yet).
    h.clock.advance(Duration::hours(25));
    assert!(h.outbox.get(&tenant("shop"), "msg:k1").await.expect("read").is_none());
    assert!(matches!(
        h.outbox.claim(&OutboxEntry::claim(&cmd, h.clock.now())).await,
        Ok(Claim::Won(_))
    ));
}

async fn only_the_claim_that_holds_a_key_records_its_outcome(h: Harness) {
    use shared::outbound::{Claim, OutboxEntry, OutboxState, Outcome, Refusal};
    let shop = tenant("shop");
    let cmd = outbound_text("k2", &wa_contact("AR.2"));
    assert!(matches!(
        h.outbox.claim(&OutboxEntry::claim(&cmd, h.clock.now())).await,
        Ok(Claim::Won(_))
    ));
    let sent = Outcome::Sent {
        message_id: "wamid.1".to_owned(),
    };
    assert!(
        !h.outbox
            .finish(&shop, "msg:k2", 2, &sent, h.clock.now())
            .await
            .expect("finish"),
        "not attempt 2's"
    );
    assert!(
        h.outbox
            .finish(&shop, "msg:k2", 1, &sent, h.clock.now())
            .await
            .expect("finish")
    );
    let stored = h.outbox.get(&shop, "msg:k2").await.expect("read").expect("kept");
    assert_eq!(
        (stored.state, stored.message_id.as_deref()),
        (OutboxState::Sent, Some("wamid.1"))
    );
    assert_eq!(stored.command, None, "the outcome drops the message and its recipient");
    assert_eq!(
        stored.digest,
        shared::outbound::command_digest(&cmd),
        "but keeps what tells it apart"
    );
    let refused = Outcome::Refused(Refusal::OptedOut);
    assert!(
        !h.outbox
            .finish(&shop, "msg:k2", 1, &refused, h.clock.now())
            .await
            .expect("finish"),
        "an outcome is recorded once"
    );
    assert!(
        !h.outbox
            .release(&shop, "msg:k2", 1, h.clock.now())
            .await
            .expect("release"),
        "a sent key stays sent"
    );
}

async fn stale_claims_are_listed_until_resolved(h: Harness) {
    use shared::outbound::{Claim, OutboxEntry, OutboxState, Outcome};
    let shop = tenant("shop");
    for key in ["s1", "s2"] {
        let cmd = outbound_text(key, &wa_contact("AR.3"));
        assert!(matches!(
            h.outbox.claim(&OutboxEntry::claim(&cmd, h.clock.now())).await,
            Ok(Claim::Won(_))
        ));
    }
    assert!(
        h.outbox
            .stale(&PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        h.outbox
            .mark_stale(&shop, "msg:s1", 1, h.clock.now())
            .await
            .expect("stale")
    );
    h.clock.advance(Duration::seconds(1));
    assert!(
        h.outbox
            .mark_stale(&shop, "msg:s2", 1, h.clock.now())
            .await
            .expect("stale")
    );
    assert!(
        !h.outbox
            .mark_stale(&shop, "msg:s2", 1, h.clock.now())
            .await
            .expect("again"),
        "already stale"
    );
    let listed = h.outbox.stale(&PageRequest::first(10)).await.expect("list");
    let keys: Vec<&str> = listed.items.iter().map(|e| e.dedup_key.as_str()).collect();
    assert_eq!(keys, ["msg:s1", "msg:s2"], "oldest first");
    assert!(
        !h.outbox
            .release_for_resend(&shop, "msg:s2", 2, h.clock.now())
            .await
            .expect("resend"),
        "only the stale claim's own attempt"
    );
    assert!(
        listed.items.iter().all(|e| e.command.is_some()),
        "a stale send keeps its message for a resend"
    );
    assert!(listed.items.iter().all(|e| e.state == OutboxState::Stale));
    // The attempt that held s1 records after all; an operator resends s2.
    let sent = Outcome::Sent {
        message_id: "wamid.late".to_owned(),
    };
    assert!(
        h.outbox
            .finish(&shop, "msg:s1", 1, &sent, h.clock.now())
            .await
            .expect("finish")
    );
    assert!(
        h.outbox
            .release_for_resend(&shop, "msg:s2", 1, h.clock.now())
            .await
            .expect("release")
    );
    let resent = h.outbox.get(&shop, "msg:s2").await.expect("read").expect("kept");
    assert_eq!(resent.state, shared::outbound::OutboxState::Released);
    assert!(
        resent.command.is_some(),
        "a resend keeps the message until it is queued"
    );
    assert!(
        h.outbox
            .stale(&PageRequest::first(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

async fn send_slots_stop_at_the_limit_within_a_second(h: Harness) {
    let account = ChannelAccount::new(Channel::WhatsApp, "100000000000001").expect("valid");
    let other = ChannelAccount::new(Channel::WhatsApp, "100000000000002").expect("valid");
    let second = h.clock.now().unix_seconds();
    for _ in 0..3 {
        assert!(h.outbox.take_send_slot(&account, second, 3).await.expect("slot"));
    }
    assert!(
        !h.outbox.take_send_slot(&account, second, 3).await.expect("slot"),
        "the fourth in one second"
    );
    assert!(
        h.outbox.take_send_slot(&other, second, 3).await.expect("slot"),
        "per account"
    );
    assert!(
        h.outbox.take_send_slot(&account, second + 1, 3).await.expect("slot"),
        "the next second"
    );
}

async fn the_window_read_finds_the_newest_inbound_message_only(h: Harness) {
    let c = h.stores.conversations.as_ref();
    let shop = tenant("shop");
    let ana = wa_contact("AR.4");
    let base = h.clock.now();
    let at = |secs: i64| base.plus(Duration::seconds(secs));
    for (id, secs, direction) in [
        ("wamid.in1", -7200, Direction::Inbound),
        ("wamid.in2", -3600, Direction::Inbound),
        ("wamid.out1", -60, Direction::Outbound),
    ] {
        let mut m = message(&shop, &ana, id, at(secs), "hola");
        m.direction = direction;
        c.put_message(&m).await.expect("stored");
    }
    let since = at(-86_400);
    assert_eq!(
        h.outbox.last_inbound(&shop, &ana, since).await.expect("read"),
        Some(at(-3600)),
        "the business's own message does not open the window"
    );
    assert_eq!(h.outbox.last_inbound(&shop, &ana, at(-1800)).await.expect("read"), None);
    assert_eq!(
        h.outbox
            .last_inbound(&shop, &wa_contact("AR.5"), since)
            .await
            .expect("read"),
        None
    );
    assert!(
        c.delete_message(
            &shop,
            &ana,
            &MetaMessageId::new("wamid.in2").expect("valid"),
            Expiry::at(at(86_400))
        )
        .await
        .expect("unsent"),
    );
    assert_eq!(
        h.outbox.last_inbound(&shop, &ana, since).await.expect("read"),
        Some(at(-7200)),
        "an unsent message is no message"
    );
}

async fn an_erasure_forgets_the_message_of_stale_sends_to_the_contact_only(h: Harness) {
    use shared::outbound::OutboxEntry;
    let shop = tenant("shop");
    let (ana, bruno) = (wa_contact("AR.6"), wa_contact("AR.7"));
    for (key, to) in [("a1", &ana), ("a2", &ana), ("b1", &bruno)] {
        let cmd = outbound_text(key, to);
        h.outbox
            .claim(&OutboxEntry::claim(&cmd, h.clock.now()))
            .await
            .expect("claim");
        if key != "a2" {
            assert!(
                h.outbox
                    .mark_stale(&shop, &format!("msg:{key}"), 1, h.clock.now())
                    .await
                    .expect("stale")
            );
        }
    }
    assert_eq!(
        h.outbox.erase_stale(&tenant("other"), &ana).await.expect("erase"),
        0,
        "per tenant"
    );
    assert_eq!(h.outbox.erase_stale(&shop, &ana).await.expect("erase"), 1);
    let erased = h
        .outbox
        .get(&shop, "msg:a1")
        .await
        .expect("read")
        .expect("the entry stays");
    assert_eq!(erased.command, None, "without the message or its recipient");
    assert!(
        matches!(
            h.outbox
                .claim(&OutboxEntry::claim(&outbound_text("a1", &ana), h.clock.now()))
                .await,
            Ok(shared::outbound::Claim::Held(_))
        ),
        "its key still holds: a redelivery sends nothing"
    );
    let claimed = h.outbox.get(&shop, "msg:a2").await.expect("read").expect("kept");
    assert!(claimed.command.is_some(), "a claim being sent is left to its attempt");
    let listed = h.outbox.stale(&PageRequest::first(10)).await.expect("list");
    let with_message: Vec<&str> = listed
        .items
        .iter()
        .filter(|e| e.command.is_some())
        .map(|e| e.dedup_key.as_str())
        .collect();
    assert_eq!(with_message, ["msg:b1"], "Bruno's stale send keeps his");
    assert_eq!(h.outbox.erase_stale(&shop, &ana).await.expect("again"), 0);
}
