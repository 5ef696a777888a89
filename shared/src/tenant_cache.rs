//! Which tenant owns a receiving account, remembered per Lambda instance, so the processor does
//! not pay two Tenants-table reads for every message of a busy account.
//!
//! Only hits are kept, and only for a bounded age: a registration must be seen at once, and a
//! change of owner or retention within [`MAX_AGE`], because retention decides when messages expire.

use crate::clock::SharedClock;
use crate::domain::{ChannelAccount, Tenant};
use crate::store::{StoreError, TenantStore};
use crate::timestamp::Timestamp;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How stale a cached tenant may be: the bound on seeing a registration or retention
/// change.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Entries kept at most, so an instance that sees many accounts cannot grow without bound. A
/// tenant is small, so this is a few MB at worst.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    tenant: Tenant,
    /// When the reads that produced `tenant` started: the data is at least this new, so the age is
    /// counted from here, not from when the reads returned.
    fetched_at: Timestamp,
}

/// The owner of each recently seen account. Shared behind `&self` by concurrent tasks: the lock is
/// only held for map operations, never across a store read.
pub struct TenantCache {
    tenants: Arc<dyn TenantStore>,
    clock: SharedClock,
    max_age: Duration,
    capacity: usize,
    entries: Mutex<HashMap<ChannelAccount, Entry>>,
}

impl fmt::Debug for TenantCache {
    // Entry counts only: the tenants themselves belong in logs no more than the store's items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCache")
            .field("max_age", &self.max_age)
            .field("capacity", &self.capacity)
            .field("entries", &lock(&self.entries).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-updated: every update is a single
    // insert, remove, retain or clear.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TenantCache {
    /// `max_age` is how long a tenant is served without reading the store again; the processor
    /// passes [`MAX_AGE`]. Zero disables caching.
    pub fn new(tenants: Arc<dyn TenantStore>, clock: SharedClock, max_age: Duration) -> Self {
        Self::with_capacity(tenants, clock, max_age, MAX_ENTRIES)
    }

    fn with_capacity(tenants: Arc<dyn TenantStore>, clock: SharedClock, max_age: Duration, capacity: usize) -> Self {
        Self {
            tenants,
            clock,
            max_age,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant that owns `account`, at most `max_age` old. `None` (no owner) is never
    /// remembered, so the call after a registration sees it. Store errors are returned as they
    /// are and remembered neither.
    pub async fn tenant_for(&self, account: &ChannelAccount) -> Result<Option<Tenant>, StoreError> {
        let started = self.clock.now();
        if let Some(e) = lock(&self.entries).get(account)
            && self.is_fresh(e.fetched_at, started)
        {
            return Ok(Some(e.tenant.clone()));
        }
        let tenant = match self.tenants.resolve(account).await? {
            Some(id) => self.tenants.get(&id).await?,
            None => None,
        };
        // The claim and the tenant are two reads: if the account was released between them, the
        // tenant no longer lists it and routing to it would be wrong. Treated as no owner.
        let tenant = tenant.filter(|t| t.accounts.contains(account));
        // A concurrent lookup may have stored a newer result meanwhile; replacing it with this one
        // is harmless, because the age counts from when these reads started.
        let mut entries = lock(&self.entries);
        match &tenant {
            Some(t) => {
                if entries.len() >= self.capacity && !entries.contains_key(account) {
                    self.make_room(&mut entries, started);
                }
                let entry = Entry {
                    tenant: t.clone(),
                    fetched_at: started,
                };
                entries.insert(account.clone(), entry);
            }
            None => {
                entries.remove(account);
            }
        }
        Ok(tenant)
    }

    /// An entry aged exactly `max_age` is stale. One fetched "in the future" is stale too: the
    /// clock went back, and its age can no longer be known.
    fn is_fresh(&self, fetched_at: Timestamp, now: Timestamp) -> bool {
        let age_ms = i128::from(now.unix_millis()) - i128::from(fetched_at.unix_millis());
        let max_ms = i128::try_from(self.max_age.as_millis()).unwrap_or(i128::MAX);
        (0..max_ms).contains(&age_ms)
    }

    /// Drops the stale entries, and everything if that is not enough. Clearing costs one round of
    /// store reads per live account, which is cheaper to reason about than an eviction order.
    fn make_room(&self, entries: &mut HashMap<ChannelAccount, Entry>, now: Timestamp) {
        entries.retain(|_, e| self.is_fresh(e.fetched_at, now));
        if entries.len() >= self.capacity {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SettableClock;
    use crate::deadline::Jurisdiction;
    use crate::domain::{Channel, Locale, TenantEvent, TenantId};
    use crate::retention::RetentionMonths;
    use crate::store::{Page, PageRequest, WriteOutcome, embedded};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// The embedded tenant store, counting the reads the cache makes, able to fail them, and to
    /// register a change between the cache's two reads (the race a real table allows).
    #[derive(Debug)]
    struct Counting {
        inner: Arc<dyn TenantStore>,
        reads: AtomicUsize,
        fail: AtomicBool,
        after_resolve: Mutex<Option<Tenant>>,
    }

    impl Counting {
        fn reads(&self) -> usize {
            self.reads.swap(0, Ordering::SeqCst)
        }

        fn read(&self) -> Result<(), StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                Err(StoreError::Backend("injected".to_owned()))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl TenantStore for Counting {
        async fn register(&self, tenant: &Tenant) -> Result<(), StoreError> {
            self.inner.register(tenant).await
        }
        async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
            self.read()?;
            self.inner.get(id).await
        }
        async fn resolve(&self, account: &ChannelAccount) -> Result<Option<TenantId>, StoreError> {
            self.read()?;
            let owner = self.inner.resolve(account).await;
            let change = lock(&self.after_resolve).take();
            if let Some(t) = change {
                self.inner.register(&t).await?;
            }
            owner
        }
        async fn record_event(&self, event: &TenantEvent) -> Result<WriteOutcome, StoreError> {
            self.inner.record_event(event).await
        }
        async fn list_events(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<TenantEvent>, StoreError> {
            self.inner.list_events(tenant, page).await
        }
    }

    fn account() -> ChannelAccount {
        ChannelAccount::new(Channel::WhatsApp, "106540352242922").expect("valid")
    }

    fn tenant(id: &str, accounts: Vec<ChannelAccount>, months: u8) -> Tenant {
        Tenant {
            id: TenantId::new(id).expect("valid"),
            name: id.to_owned(),
            accounts,
            retention_months: RetentionMonths::new(months).expect("valid"),
            locale: Locale::Spanish,
            jurisdiction: Jurisdiction::Ar,
            optout_keywords: Vec::new(),
            optout_button_ids: Vec::new(),
            retention_lowered_at: None,
            offboarding: None,
            access_token_secret: None,
            created_at: Timestamp::from_unix_seconds(0),
        }
    }

    struct Fixture {
        clock: SettableClock,
        store: Arc<Counting>,
        cache: TenantCache,
    }

    fn fixture() -> Fixture {
        let clock = SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000));
        let store = Arc::new(Counting {
            inner: embedded::stores(Arc::new(clock.clone())).tenants,
            reads: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            after_resolve: Mutex::new(None),
        });
        let cache = TenantCache::new(store.clone(), Arc::new(clock.clone()), MAX_AGE);
        Fixture { clock, store, cache }
    }

    impl Fixture {
        async fn register(&self, t: &Tenant) {
            self.store.register(t).await.expect("register");
        }

        async fn months(&self) -> u8 {
            let t = self.cache.tenant_for(&account()).await.expect("read").expect("owned");
            t.retention_months.months()
        }

        async fn owner(&self) -> Option<String> {
            let t = self.cache.tenant_for(&account()).await.expect("read");
            t.map(|t| t.id.as_str().to_owned())
        }
    }

    fn ms(n: i64) -> time::Duration {
        time::Duration::milliseconds(n)
    }

    #[tokio::test]
    async fn a_retention_change_is_seen_once_the_entry_is_max_age_old() {
        assert_eq!(MAX_AGE, Duration::from_secs(60));
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        assert_eq!(f.months().await, 6);
        f.register(&tenant("tenant-a", vec![account()], 3)).await;

        f.clock.advance(time::Duration::seconds(59));
        assert_eq!(f.months().await, 6, "59 s old: fresh");
        f.clock.advance(ms(999));
        assert_eq!(f.months().await, 6, "59.999 s old: fresh");
        f.clock.advance(ms(1));
        assert_eq!(f.months().await, 3, "exactly MAX_AGE old: stale");

        // Well past the bound, too (the entry is now fetched at 60 s).
        f.register(&tenant("tenant-a", vec![account()], 12)).await;
        f.clock.advance(time::Duration::seconds(90));
        assert_eq!(f.months().await, 12);
    }

    #[tokio::test]
    async fn a_miss_is_not_cached() {
        let f = fixture();
        assert_eq!(f.owner().await, None);
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        assert_eq!(
            f.owner().await.as_deref(),
            Some("tenant-a"),
            "seen without the clock moving"
        );
    }

    #[tokio::test]
    async fn a_fresh_hit_does_not_read_the_store() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        f.owner().await;
        assert_eq!(f.store.reads(), 2, "resolve and get");
        f.clock.advance(time::Duration::seconds(59));
        f.owner().await;
        assert_eq!(f.store.reads(), 0);
        f.clock.advance(time::Duration::seconds(1));
        f.owner().await;
        assert_eq!(f.store.reads(), 2, "expired: read again");
        // A miss reads every time (one read: no claim, so no tenant to get).
        let other = ChannelAccount::new(Channel::Instagram, "17841400000000").expect("valid");
        for _ in 0..2 {
            assert_eq!(f.cache.tenant_for(&other).await.expect("read"), None);
            assert_eq!(f.store.reads(), 1);
        }
    }

    #[tokio::test]
    async fn an_account_moved_to_another_tenant_is_seen_after_the_bound() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        assert_eq!(f.owner().await.as_deref(), Some("tenant-a"));
        f.register(&tenant("tenant-a", Vec::new(), 6)).await;
        f.register(&tenant("tenant-b", vec![account()], 6)).await;
        f.clock.advance(ms(59_999));
        assert_eq!(f.owner().await.as_deref(), Some("tenant-a"));
        f.clock.advance(ms(1));
        assert_eq!(f.owner().await.as_deref(), Some("tenant-b"));
    }

    #[tokio::test]
    async fn a_released_account_is_unowned_after_the_bound() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        f.owner().await;
        f.register(&tenant("tenant-a", Vec::new(), 6)).await;
        f.clock.advance(time::Duration::seconds(60));
        assert_eq!(f.owner().await, None);
        assert_eq!(lock(&f.cache.entries).len(), 0, "the stale entry went with the miss");
    }

    #[tokio::test]
    async fn an_account_released_between_the_two_reads_is_unowned() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        *lock(&f.store.after_resolve) = Some(tenant("tenant-a", Vec::new(), 6));
        assert_eq!(f.owner().await, None);
        assert_eq!(lock(&f.cache.entries).len(), 0);
    }

    #[tokio::test]
    async fn a_store_error_is_returned_and_not_cached() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        f.store.fail.store(true, Ordering::SeqCst);
        let err = f.cache.tenant_for(&account()).await.expect_err("injected");
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        f.store.fail.store(false, Ordering::SeqCst);
        assert_eq!(f.owner().await.as_deref(), Some("tenant-a"));
    }

    #[tokio::test]
    async fn a_clock_that_went_back_makes_entries_stale() {
        let f = fixture();
        f.register(&tenant("tenant-a", vec![account()], 6)).await;
        f.months().await;
        f.register(&tenant("tenant-a", vec![account()], 3)).await;
        f.clock.advance(time::Duration::seconds(-1));
        assert_eq!(f.months().await, 3);
    }

    #[tokio::test]
    async fn the_number_of_entries_is_capped() {
        let clock = SettableClock::at(Timestamp::from_unix_seconds(1_800_000_000));
        let tenants = embedded::stores(Arc::new(clock.clone())).tenants;
        let accounts: Vec<_> = (1..=3)
            .map(|i| ChannelAccount::new(Channel::WhatsApp, i.to_string()).expect("valid"))
            .collect();
        tenants
            .register(&tenant("tenant-a", accounts.clone(), 6))
            .await
            .expect("register");
        let cache = TenantCache::with_capacity(tenants, Arc::new(clock.clone()), MAX_AGE, 2);
        let len = || lock(&cache.entries).len();

        cache.tenant_for(&accounts[0]).await.expect("read");
        clock.advance(time::Duration::seconds(30));
        cache.tenant_for(&accounts[1]).await.expect("read");
        assert_eq!(len(), 2);
        // Full of fresh entries: cleared, then the new one stored.
        cache.tenant_for(&accounts[2]).await.expect("read");
        assert_eq!(len(), 1);
        // Full again with one stale entry: only that one goes.
        clock.advance(time::Duration::seconds(30));
        cache.tenant_for(&accounts[0]).await.expect("read");
        clock.advance(time::Duration::seconds(30));
        cache.tenant_for(&accounts[1]).await.expect("read");
        let entries = lock(&cache.entries);
        assert_eq!(entries.len(), 2);
        assert!(!entries.contains_key(&accounts[2]), "60 s old: dropped");
    }

    #[test]
    fn the_cache_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + fmt::Debug>() {}
        shared::<TenantCache>();
        // A lookup holding the (non-`Send`) guard across a store read would not compile here.
        fn sendable<F: Future + Send>(_: F) {}
        let f = fixture();
        sendable(f.cache.tenant_for(&account()));
    }
}
