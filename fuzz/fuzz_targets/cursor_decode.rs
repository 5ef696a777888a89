//! Page cursors from the outside world: the admin API's `?cursor=` (and contact handles in its
//! paths), as `shared::seal` opens them, and the store cursor behind them, as the embedded
//! adapters decode it (`Cursor::decode` is crate-private; `list` is the public way in).
//!
//! Input: one byte of page size, then the token (as UTF-8, lossily, as a query string is).
//! Besides "never panics":
//! - a store cursor is accepted only in its own scope, and every `next` cursor a listing returns
//!   pages on in that listing and is refused in another tenant's;
//! - sealing round-trips any store cursor (up to `MAX_CURSOR_BYTES`) and any valid contact id,
//!   and a token or handle opens only for the query or tenant it was sealed for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::clock::{SettableClock, SharedClock};
use shared::domain::{AuditChain, Channel, ContactId, QuarantineBucket, QuarantineEntry, TenantId};
use shared::identity::SubjectKeySecret;
use shared::seal::{BadToken, CursorScope, MAX_CURSOR_BYTES, Sealer};
use shared::store::embedded::{EmbeddedAuditStore, EmbeddedConversationStore, EmbeddedQuarantineStore};
use shared::store::{AuditStore, ConversationStore, Cursor, PageRequest, QuarantineStore, StoreError, TimeRange};
use shared::timestamp::Timestamp;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

struct Fixture {
    quarantine: EmbeddedQuarantineStore,
    conversations: EmbeddedConversationStore,
    audit: EmbeddedAuditStore,
    tenant: TenantId,
    other: TenantId,
    sealer: Sealer,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let clock: SharedClock = Arc::new(SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000)));
    let quarantine = EmbeddedQuarantineStore::new(clock.clone());
    for i in 0..5 {
        let at = Timestamp::from_unix_seconds(1_800_000_000 - 60 * i);
        let entry = QuarantineEntry::new(QuarantineBucket::Rejected, format!("reason {i}"), "{}".to_owned(), at);
        ready(quarantine.put(&entry)).expect("put");
    }
    let secret = SubjectKeySecret::new(b"fuzz-subject-key-secret-fuzz-subject-key".to_vec()).expect("long enough");
    Fixture {
        quarantine,
        conversations: EmbeddedConversationStore::new(clock.clone()),
        audit: EmbeddedAuditStore::new(clock),
        tenant: TenantId::new("tenant-a").expect("valid"),
        other: TenantId::new("tenant-b").expect("valid"),
        sealer: Sealer::new(&secret),
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&limit, token)) = data.split_first() else {
        return;
    };
    // 0 and 101 are out of range, the rest in: both sides of the page-size check.
    let limit = usize::from(limit % 102);
    let token = String::from_utf8_lossy(token);
    let f = &*FIXTURE;

    // The store cursor, decoded by each listing.
    let page = PageRequest::after(limit, Cursor::from_token(token.as_ref()));
    if let Ok(p) = ready(f.quarantine.list(&QuarantineBucket::Rejected, &page))
        && let Some(next) = p.next
    {
        let again = PageRequest::after(limit, next.clone());
        assert!(
            ready(f.quarantine.list(&QuarantineBucket::Rejected, &again)).is_ok(),
            "a next cursor was refused"
        );
        let elsewhere = ready(f.quarantine.list(&QuarantineBucket::Unhandled, &again));
        assert!(
            matches!(elsewhere, Err(StoreError::BadCursor)),
            "a cursor paged another bucket"
        );
        let elsewhere = ready(f.audit.list(&AuditChain::Tenant(f.tenant.clone()), &TimeRange::ALL, &again));
        assert!(
            matches!(elsewhere, Err(StoreError::BadCursor)),
            "a quarantine cursor paged the audit"
        );
    }
    let _ = ready(f.conversations.list_contacts(&f.tenant, &page));
    let _ = ready(f.audit.list(&AuditChain::Tenant(f.other.clone()), &TimeRange::ALL, &page));
    let _ = ready(f.audit.list(&AuditChain::Platform, &TimeRange::ALL, &page));

    // The sealed forms the admin API hands out: opened from hostile text, never a panic.
    let handle = f
        .sealer
        .contact_handle(&f.tenant, &ContactId::new(Channel::WhatsApp, "AR.1").expect("valid"));
    for scope in [
        CursorScope::Contacts(&f.tenant),
        CursorScope::Events(&f.tenant),
        CursorScope::Messages(&f.tenant, &handle),
    ] {
        if let Ok(cursor) = f.sealer.open_cursor(scope, &token) {
            let _ = ready(
                f.conversations
                    .list_contacts(&f.tenant, &PageRequest::after(limit.max(1), cursor)),
            );
        }
    }
    let _ = f.sealer.open_contact_handle(&f.tenant, &token);
    let _ = f.sealer.open(&token, &token);

    // Sealing what the input says: opens for its own query or tenant only; a text longer than
    // any store cursor (`MAX_CURSOR_BYTES`) seals to a token that is refused.
    let cursor = Cursor::from_token(token.as_ref());
    let sealed = f.sealer.seal_cursor(CursorScope::Contacts(&f.tenant), &cursor);
    let opened = f.sealer.open_cursor(CursorScope::Contacts(&f.tenant), &sealed);
    if token.len() <= MAX_CURSOR_BYTES {
        assert_eq!(opened, Ok(cursor.clone()));
    } else {
        assert_eq!(opened, Err(BadToken));
    }
    assert!(f.sealer.open_cursor(CursorScope::Contacts(&f.other), &sealed).is_err());
    assert!(f.sealer.open_cursor(CursorScope::Events(&f.tenant), &sealed).is_err());
    for channel in [Channel::WhatsApp, Channel::Instagram] {
        if let Ok(contact) = ContactId::new(channel, token.as_ref()) {
            let h = f.sealer.contact_handle(&f.tenant, &contact);
            assert_eq!(
                f.sealer.open_contact_handle(&f.tenant, h.as_str()),
                Ok((h.clone(), contact))
            );
            assert!(f.sealer.open_contact_handle(&f.other, h.as_str()).is_err());
            assert!(
                !h.as_str().contains(token.as_ref()) || token.len() < 12,
                "a handle shows its contact id"
            );
        }
    }
});

/// Runs a future of the embedded adapters, which never wait on anything, to its end.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("an embedded store future did not complete");
}
