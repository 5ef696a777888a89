use super::table::{Expr, QuerySpec, SkRange, Table, from_item, from_json, key, s, to_item, to_json};
use crate::audit::{self, ChainHead, ChainLink, Checkpoint};
use crate::backoff::Backoff;
use crate::clock::SharedClock;
use crate::domain::{AuditChain, AuditEvent};
use crate::store::keys::{self, AUDIT_CHECKPOINT_PREFIX, AUDIT_HEAD_SK};
use crate::store::{AuditStore, Page, PageRequest, StoreError, SweepOutcome, TimeRange};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoAuditStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoAuditStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

/// The link as JSON text: its hash covers the event's JSON, which a DynamoDB map would reorder.
#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
    link: String,
}

/// The head has no expiry: it names the chain's last event for as long as the chain exists.
#[derive(Serialize, Deserialize)]
struct HeadItem {
    pk: String,
    sk: String,
    seq: u64,
    head: ChainHead,
}

#[derive(Serialize, Deserialize)]
struct CheckpointItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
    checkpoint: Checkpoint,
}

#[async_trait]
impl AuditStore for DynamoAuditStore {
    async fn append(&self, e: &AuditEvent) -> Result<ChainLink, StoreError> {
        let pk = keys::audit_pk(&e.chain);
        // Another writer moved the head first: read it again and link after it.
        let mut backoff = Backoff::default();
        loop {
            let head = self.head(&e.chain).await?;
            let next = audit::next(head.as_ref(), e);
            let link = EventItem {
                pk: pk.clone(),
                sk: keys::audit_event_sk(next.link.event.at, next.link.seq),
                expires_at: next.link.event.expires_at,
                link: to_json(&next.link)?,
            };
            let new_head = HeadItem {
                pk: pk.clone(),
                sk: AUDIT_HEAD_SK.to_owned(),
                seq: next.head.seq,
                head: next.head.clone(),
            };
            // The head moves only from the state this link was computed on: one writer wins.
            let head_condition = match &head {
                None => Expr::new("attribute_not_exists(pk)"),
                Some(h) => Expr::new("#seq = :seq")
                    .name("#seq", "seq")
                    .value(":seq", super::table::n(h.seq as i64)),
            };
            let mut actions = vec![
                self.table
                    .put_action(to_item(&link)?, Some(Expr::new("attribute_not_exists(pk)")))?,
                self.table.put_action(to_item(&new_head)?, Some(head_condition))?,
            ];
            if let Some(cp) = &next.checkpoint {
                let item = CheckpointItem {
                    pk: pk.clone(),
                    sk: keys::audit_checkpoint_sk(&cp.day),
                    expires_at: cp.keep_until,
                    checkpoint: cp.clone(),
                };
                actions.push(
                    self.table
                        .put_action(to_item(&item)?, Some(Expr::new("attribute_not_exists(pk)")))?,
                );
            }
            match self.table.transact_retrying_conflicts(actions).await? {
                Ok(()) => return Ok(next.link),
                Err(_) if backoff.wait().await => continue,
                Err(_) => return Err(StoreError::Conflict),
            }
        }
    }

    async fn list(
        &self,
        chain: &AuditChain,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<ChainLink>, StoreError> {
        let (first, last) = keys::audit_event_range(range.from, range.to);
        // DynamoDB refuses a BETWEEN whose bounds are reversed: such a range holds nothing.
        if first > last {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let scope = keys::audit_list_scope(chain, range.from, range.to);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::audit_pk(chain)),
            sk: Some(SkRange::Between(first, last)),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope,
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| {
                let item: EventItem = from_item(i)?;
                from_json(&item.link)
            })
            .await
    }

    async fn head(&self, chain: &AuditChain) -> Result<Option<ChainHead>, StoreError> {
        let item = self.table.get(key(keys::audit_pk(chain), AUDIT_HEAD_SK)).await?;
        Ok(item.map(from_item::<HeadItem>).transpose()?.map(|h| h.head))
    }

    async fn checkpoints(&self, chain: &AuditChain) -> Result<Vec<Checkpoint>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::audit_pk(chain)),
            sk: Some(SkRange::Prefix(AUDIT_CHECKPOINT_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_all(&spec)
            .await?
            .into_iter()
            .map(|i| from_item::<CheckpointItem>(i).map(|c| c.checkpoint))
            .collect()
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl DynamoAuditStore {
    pub(crate) async fn sweep_audit(
        &self,
        chain: &AuditChain,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let mut out = SweepOutcome::default();
        let mut room = max_items;
        for prefix in [keys::AUDIT_EVENT_PREFIX, AUDIT_CHECKPOINT_PREFIX] {
            let spec = QuerySpec {
                index: None,
                pk_attr: "pk",
                pk: s(keys::audit_pk(chain)),
                sk: Some(SkRange::Prefix(prefix.to_owned())),
                sort_at_most: None,
                sort_at_least: None,
                hide_expired_at: None,
                scope: String::new(),
                consistent: true,
                filter: None,
                newest_first: false,
            };
            // One more than there is room for, to know whether this kind is done.
            let (items, more) = self.table.query_once(&spec, None, Some(room + 1)).await?;
            let mut finished = more.is_none() && items.len() <= room;
            for item in items {
                let expires = item
                    .get(keys::EXPIRES_AT)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .map(Expiry::from_epoch_seconds);
                if expires.is_none_or(|e| e.as_timestamp() > expired_by) {
                    finished = true;
                    break;
                }
                if room == 0 {
                    finished = false;
                    break;
                }
                out.deleted += if dry {
                    1
                } else {
                    self.table.delete_counted(super::table::key_of(item)).await?
                };
                room -= 1;
            }
            if !finished {
                return Ok(out);
            }
        }
        out.done = true;
        Ok(out)
    }
}
