use super::table::{Expr, QuerySpec, SkRange, Table, Written, from_item, from_json, key, n, s, to_item, to_json};
use crate::clock::SharedClock;
use crate::domain::{ChannelAccount, ContactId, Direction, TenantId};
use crate::outbound::{Claim, OutboxEntry, OutboxState, Outcome};
use crate::store::{OutboxStore, Page, PageRequest, StoreError, keys};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The outbox table, and the conversations table for the gate's one read.
#[derive(Debug)]
pub struct DynamoOutboxStore {
    outbox: Table,
    conversations: Table,
    clock: SharedClock,
}

impl DynamoOutboxStore {
    pub(crate) fn new(outbox: Table, conversations: Table, clock: SharedClock) -> Self {
        Self {
            outbox,
            conversations,
            clock,
        }
    }
}

/// The entry as JSON text (a tenant's template components nest freely), beside the attributes
/// conditions and the index read.
#[derive(Serialize, Deserialize)]
struct OutboxItem {
    pk: String,
    sk: String,
    state: OutboxState,
    attempt: u32,
    expires_at: Expiry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale_pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale_at_ms: Option<i64>,
    entry_json: String,
}

impl OutboxItem {
    fn of(entry: &OutboxEntry, stale_at: Option<Timestamp>) -> Result<Self, StoreError> {
        Ok(Self {
            pk: keys::outbox_pk(&entry.tenant),
            sk: keys::outbox_sk(&entry.dedup_key),
            state: entry.state,
            attempt: entry.attempt,
            expires_at: entry.expires_at,
            stale_pk: stale_at.map(|_| keys::STALE_PK.to_owned()),
            stale_at_ms: stale_at.map(Timestamp::unix_millis),
            entry_json: to_json(entry)?,
        })
    }
}

/// The message attributes the window read needs.
#[derive(Deserialize)]
struct MessageHead {
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    sent_at_ms: Option<i64>,
    #[serde(default)]
    tombstone: bool,
}

impl DynamoOutboxStore {
    async fn read(&self, tenant: &TenantId, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        let Some(item) = self.outbox.get(keys_of(tenant, key)).await? else {
            return Ok(None);
        };
        let item: OutboxItem = from_item(item)?;
        let entry: OutboxEntry = from_json(&item.entry_json)?;
        Ok((!entry.expires_at.is_expired(self.clock.now())).then_some(entry))
    }

    /// Replaces the entry if it is still claim `attempt` in one of `states`.
    async fn replace(
        &self,
        entry: &OutboxEntry,
        attempt: u32,
        states: &[OutboxState],
        stale_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let placeholders: Vec<String> = (0..states.len()).map(|i| format!(":s{i}")).collect();
        let mut condition = Expr::new(format!(
            "#attempt = :attempt AND #state IN ({})",
            placeholders.join(", ")
        ))
        .name("#attempt", "attempt")
        .name("#state", "state")
        .value(":attempt", n(i64::from(attempt)));
        for (p, st) in placeholders.iter().zip(states) {
            condition = condition.value(p, s(st.as_str()));
        }
        let item = to_item(&OutboxItem::of(entry, stale_at)?)?;
        Ok(matches!(
            self.outbox.put(item, Some(condition), false).await?,
            Written::Yes(_)
        ))
    }

    async fn transition(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        from: &[OutboxState],
        change: impl FnOnce(&mut OutboxEntry),
        stale_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let Some(mut entry) = self.read(tenant, key).await? else {
            return Ok(false);
        };
        if entry.attempt != attempt || !from.contains(&entry.state) {
            return Ok(false);
        }
        change(&mut entry);
        self.replace(&entry, attempt, from, stale_at).await
    }
}

/// The sparse index of stale claims, oldest first; expired ones hidden when `now` is given.
fn stale_claims(now: Option<Timestamp>) -> QuerySpec {
    QuerySpec {
        index: Some(keys::STALE_CLAIMS_INDEX),
        pk_attr: "stale_pk",
        pk: s(keys::STALE_PK),
        sk: None,
        sort_at_most: None,
        sort_at_least: None,
        hide_expired_at: now,
        scope: "stale-claims".to_owned(),
        consistent: false,
        filter: None,
        newest_first: false,
    }
}

fn keys_of(tenant: &TenantId, dedup_key: &str) -> super::table::Item {
    key(keys::outbox_pk(tenant), keys::outbox_sk(dedup_key))
}

#[async_trait]
impl OutboxStore for DynamoOutboxStore {
    async fn claim(&self, entry: &OutboxEntry) -> Result<Claim, StoreError> {
        // The put first: a first delivery (nearly every one) costs no read.
        let free = Expr::new("attribute_not_exists(pk) OR #exp <= :now")
            .name("#exp", keys::EXPIRES_AT)
            .value(":now", n(self.clock.now().unix_seconds()));
        let item = to_item(&OutboxItem::of(entry, None)?)?;
        if let Written::Yes(_) = self.outbox.put(item, Some(free), false).await? {
            return Ok(Claim::Won(entry.clone()));
        }
        // Held, or released: a released key is claimed again by the attempt after it. A
        // concurrent change between the read and the write is read again.
        for _ in 0..3 {
            match self.read(&entry.tenant, &entry.dedup_key).await? {
                Some(held) if held.state != OutboxState::Released => return Ok(Claim::Held(held)),
                Some(released) => {
                    let mut mine = entry.clone();
                    mine.attempt = released.attempt + 1;
                    if self
                        .replace(&mine, released.attempt, &[OutboxState::Released], None)
                        .await?
                    {
                        return Ok(Claim::Won(mine));
                    }
                }
                // Expired between the put and the read: free again.
                None => return self.claim(entry).await,
            }
        }
        Err(StoreError::Conflict)
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        outcome: &Outcome,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed, OutboxState::Stale],
            |e| e.record(outcome, at),
            None,
        )
        .await
    }

    async fn release(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed, OutboxState::Stale],
            |e| e.release(at),
            None,
        )
        .await
    }

    async fn release_for_resend(
        &self,
        tenant: &TenantId,
        key: &str,
        attempt: u32,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Stale],
            |e| {
                e.state = OutboxState::Released;
                e.updated_at = at;
            },
            None,
        )
        .await
    }

    async fn mark_stale(&self, tenant: &TenantId, key: &str, attempt: u32, at: Timestamp) -> Result<bool, StoreError> {
        self.transition(
            tenant,
            key,
            attempt,
            &[OutboxState::Claimed],
            |e| {
                e.state = OutboxState::Stale;
                e.updated_at = at;
            },
            Some(at),
        )
        .await
    }

    async fn get(&self, tenant: &TenantId, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.read(tenant, key).await
    }

    async fn stale(&self, page: &PageRequest) -> Result<Page<OutboxEntry>, StoreError> {
        let spec = stale_claims(Some(self.clock.now()));
        self.outbox
            .query_page(&spec, page, |i| {
                let item: OutboxItem = from_item(i)?;
                from_json(&item.entry_json)
            })
            .await
    }

    async fn erase_stale(&self, tenant: &TenantId, contact: &ContactId) -> Result<u64, StoreError> {
        // The stale index is small (sends an operator has not resolved yet, a day at most). The
        // entry stays, so its key still holds against a redelivery; its message goes.
        let spec = stale_claims(None);
        let mut forgotten = 0;
        for item in self.outbox.query_all(&spec).await? {
            let item: OutboxItem = from_item(item)?;
            let listed: OutboxEntry = from_json(&item.entry_json)?;
            let addressed = listed.command.as_ref().is_some_and(|c| c.to() == contact);
            if listed.tenant != *tenant || !addressed {
                continue;
            }
            let stale_at = item.stale_at_ms.map(Timestamp::from_unix_millis);
            let changed = self
                .transition(
                    tenant,
                    &listed.dedup_key,
                    listed.attempt,
                    &[OutboxState::Stale],
                    |e| e.command = None,
                    stale_at,
                )
                .await?;
            forgotten += u64::from(changed);
        }
        Ok(forgotten)
    }

    async fn take_send_slot(&self, account: &ChannelAccount, second: i64, limit: u32) -> Result<bool, StoreError> {
        let update = Expr::new("ADD #n :one SET #exp = :exp")
            .name("#n", "n")
            .name("#exp", keys::EXPIRES_AT)
            .value(":one", n(1))
            .value(":exp", n(second + 120));
        let condition = Expr::new("attribute_not_exists(#n) OR #n < :limit").value(":limit", n(i64::from(limit)));
        let k = key(keys::send_slot_pk(account), second.to_string());
        Ok(matches!(
            self.outbox.update(k, update, Some(condition)).await?,
            Written::Yes(_)
        ))
    }

    async fn last_inbound(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        since: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let (first, last) = keys::messages_from(since);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::contact_pk(tenant, contact)),
            sk: Some(SkRange::Between(first, last)),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: String::new(),
            consistent: false,
            filter: Some(
                Expr::new("#dir = :inbound")
                    .name("#dir", "direction")
                    .value(":inbound", s("inbound")),
            ),
            newest_first: true,
        };
        let mut start = None;
        loop {
            let (items, next) = self.conversations.query_once(&spec, start.take(), None).await?;
            for item in items {
                let head: MessageHead = from_item(item)?;
                if !head.tombstone && head.direction == Some(Direction::Inbound) {
                    return Ok(head.sent_at_ms.map(Timestamp::from_unix_millis));
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(None),
            }
        }
    }
}
