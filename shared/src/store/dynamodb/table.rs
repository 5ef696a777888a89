//! The one place that talks to the DynamoDB SDK: conditional writes, paged queries with the expiry
//! filter, batch deletes with retry of unprocessed items, and capacity accounting.

use crate::backoff::Backoff;
use crate::store::keys::EXPIRES_AT;
use crate::store::{Cursor, Page, PageRequest, StoreError};
use crate::timestamp::Timestamp;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::{delete_item::DeleteItemError, put_item::PutItemError, update_item::UpdateItemError};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, DeleteRequest, ReturnConsumedCapacity, ReturnValue, TransactWriteItem,
    WriteRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub(crate) type Item = HashMap<String, AttributeValue>;
type Names = HashMap<String, String>;
type Values = HashMap<String, AttributeValue>;

/// Capacity units consumed per table since the meter was made, reads and writes apart.
#[derive(Clone, Debug, Default)]
pub struct CapacityMeter(Arc<Mutex<BTreeMap<String, Units>>>);

/// Read and write capacity units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

impl CapacityMeter {
    fn add(&self, table: &str, read: f64, write: f64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let u = m.entry(table.to_owned()).or_default();
        u.read += read;
        u.write += write;
    }

    /// A read is billed at least half a unit (one if strongly consistent), even when it finds
    /// nothing; DynamoDB Local reports zero then, so the floor is applied here.
    fn read(&self, table: &str, consumed: Option<&ConsumedCapacity>, consistent: bool) {
        let floor = if consistent { 1.0 } else { 0.5 };
        let units = consumed.and_then(|c| c.capacity_units()).unwrap_or(0.0);
        self.add(table, units.max(floor), 0.0);
    }

    fn write<'a>(&self, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        for c in consumed {
            if let (Some(table), Some(units)) = (c.table_name(), c.capacity_units()) {
                self.add(table, 0.0, units);
            }
        }
    }

    /// A write whose condition failed: DynamoDB bills it (at least one unit) but its error
    /// carries no consumed capacity, so it is counted here as one unit.
    fn failed_condition(&self, table: &str) {
        self.add(table, 0.0, 1.0);
    }

    pub fn units(&self, table: &str) -> Units {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .copied()
            .unwrap_or_default()
    }

    /// Every table's units, summed.
    pub fn total(&self) -> Units {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .fold(Units::default(), |a, u| Units {
                read: a.read + u.read,
                write: a.write + u.write,
            })
    }
}

/// DynamoDB's refusal of an oversize item is a `ValidationException` with this message (for
/// puts, updates and transactions alike).
const ITEM_TOO_LARGE: &str = "Item size";

pub(crate) fn backend<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let too_large = e.as_service_error().is_some_and(|se| {
        se.code() == Some("ValidationException") && se.message().is_some_and(|m| m.contains(ITEM_TOO_LARGE))
    });
    if too_large {
        return StoreError::TooLarge;
    }
    StoreError::Backend(DisplayErrorContext(e).to_string())
}

pub(crate) fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// JSON text inside an item (payloads Meta nests deeper than DynamoDB maps allow, whole records).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// The key of a table item read back from a query.
pub(crate) fn key_of(mut item: Item) -> Item {
    item.retain(|name, _| name == "pk" || name == "sk");
    item
}

/// A condition or update expression with its placeholders.
#[derive(Debug, Default)]
pub(crate) struct Expr {
    pub text: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    pub fn name(mut self, placeholder: &str, name: &str) -> Self {
        self.names.insert(placeholder.to_owned(), name.to_owned());
        self
    }

    pub fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
}

fn merge(a: Option<&Expr>, b: Option<&Expr>) -> (Option<Names>, Option<Values>) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    for e in [a, b].into_iter().flatten() {
        names.extend(e.names.clone());
        values.extend(e.values.clone());
    }
    (
        (!names.is_empty()).then_some(names),
        (!values.is_empty()).then_some(values),
    )
}

#[derive(Debug)]
pub(crate) enum SkRange {
    /// `begins_with(sk, prefix)`.
    Prefix(String),
    /// `sk BETWEEN first AND last`.
    Between(String, String),
}

/// A query over one partition (of the table or an index).
#[derive(Debug)]
pub(crate) struct QuerySpec {
    pub index: Option<&'static str>,
    pub pk_attr: &'static str,
    pub pk: AttributeValue,
    /// Sort-key condition on the table's `sk`.
    pub sk: Option<SkRange>,
    /// Upper bound on a numeric index sort key (inclusive).
    pub sort_at_most: Option<(&'static str, i64)>,
    /// Lower bound on a numeric index sort key (inclusive); with an upper bound, on the same key.
    pub sort_at_least: Option<(&'static str, i64)>,
    pub hide_expired_at: Option<Timestamp>,
    /// Scope a cursor is bound to.
    pub scope: String,
    /// Strongly consistent read; global secondary indexes do not offer it.
    pub consistent: bool,
    /// A further filter on the items read (they are billed whether they pass or not).
    pub filter: Option<Expr>,
    pub newest_first: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Table {
    client: Client,
    pub name: String,
    meter: CapacityMeter,
}

pub(crate) enum Written {
    Yes(Option<Item>),
    ConditionFailed,
}

impl Table {
    pub fn new(client: Client, name: &str, meter: CapacityMeter) -> Self {
        Self {
            client,
            name: name.to_owned(),
            meter,
        }
    }

    /// Puts `item` if `condition` holds; returns the replaced item when asked.
    pub async fn put(&self, item: Item, condition: Option<Expr>, return_old: bool) -> Result<Written, StoreError> {
        let (names, values) = merge(condition.as_ref(), None);
        let res = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .set_condition_expression(condition.map(|c| c.text))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(if return_old {
                ReturnValue::AllOld
            } else {
                ReturnValue::None
            })
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.written(res, PutItemError::is_conditional_check_failed_exception, |o| {
            (o.consumed_capacity, o.attributes)
        })
    }

    /// Returns the item as it was before the update (`ReturnValues=ALL_OLD`).
    pub async fn update(&self, key: Item, update: Expr, condition: Option<Expr>) -> Result<Written, StoreError> {
        let (names, values) = merge(Some(&update), condition.as_ref());
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .update_expression(update.text)
            .set_condition_expression(condition.map(|c| c.text))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.written(res, UpdateItemError::is_conditional_check_failed_exception, |o| {
            (o.consumed_capacity, o.attributes)
        })
    }

    /// Returns the deleted item, if there was one.
    pub async fn delete(&self, key: Item, condition: Option<Expr>) -> Result<Written, StoreError> {
        let (names, values) = merge(condition.as_ref(), None);
        let res = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .set_condition_expression(condition.map(|c| c.text))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        self.written(res, DeleteItemError::is_conditional_check_failed_exception, |o| {
            (o.consumed_capacity, o.attributes)
        })
    }

    /// Deletes one item: 1 if it was there (DynamoDB returns what it deleted), 0 if another
    /// writer deleted it first, so two overlapping sweeps never both count it.
    pub async fn delete_counted(&self, key: Item) -> Result<u64, StoreError> {
        Ok(match self.delete(key, None).await? {
            Written::Yes(Some(_)) => 1,
            _ => 0,
        })
    }

    /// A conditional write's answer: written (with any attributes asked for), or its condition
    /// failed; anything else is a backend error.
    fn written<O, E, R>(
        &self,
        res: Result<O, SdkError<E, R>>,
        condition_failed: impl Fn(&E) -> bool,
        parts: impl FnOnce(O) -> (Option<ConsumedCapacity>, Option<Item>),
    ) -> Result<Written, StoreError>
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        match res {
            Ok(out) => {
                let (consumed, attributes) = parts(out);
                self.meter.write(consumed.as_ref());
                Ok(Written::Yes(attributes))
            }
            Err(e) if e.as_service_error().is_some_and(&condition_failed) => {
                self.meter.failed_condition(&self.name);
                Ok(Written::ConditionFailed)
            }
            Err(e) => Err(backend(e)),
        }
    }

    pub async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        self.get_with(key, true).await
    }

    /// `get`, eventually consistent when `consistent` is false (half the read units).
    pub async fn get_with(&self, key: Item, consistent: bool) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(consistent)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(backend)?;
        self.meter.read(&self.name, out.consumed_capacity(), consistent);
        Ok(out.item)
    }

    /// One page of a query, skipping expired items, following DynamoDB pages until the page is full
    /// or the partition is exhausted; each item decoded with `decode`.
    pub async fn query_page<T>(
        &self,
        spec: &QuerySpec,
        page: &PageRequest,
        mut decode: impl FnMut(Item) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let limit = page.checked_limit()?;
        let mut start: Option<Item> = match &page.cursor {
            Some(c) => Some(decode_key(c, &spec.scope)?),
            None => None,
        };
        let mut items = Vec::with_capacity(limit);
        let next = loop {
            let remaining = limit - items.len();
            let (batch, last) = self.query_once(spec, start.take(), Some(remaining)).await?;
            items.extend(batch);
            match last {
                Some(k) if items.len() >= limit => break Some(encode_key(&k, &spec.scope)?),
                Some(k) => start = Some(k),
                None => break None,
            }
        };
        let items = items.into_iter().map(&mut decode).collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    /// Every live item of a query (bounded partitions only: index lookups, not listings).
    pub async fn query_all(&self, spec: &QuerySpec) -> Result<Vec<Item>, StoreError> {
        let mut start = None;
        let mut items = Vec::new();
        loop {
            let (batch, last) = self.query_once(spec, start.take(), None).await?;
            items.extend(batch);
            match last {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }

    pub async fn query_once(
        &self,
        spec: &QuerySpec,
        start: Option<Item>,
        limit: Option<usize>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let mut key_cond = "#pk = :pk".to_owned();
        let mut names = HashMap::from([("#pk".to_owned(), spec.pk_attr.to_owned())]);
        let mut values = HashMap::from([(":pk".to_owned(), spec.pk.clone())]);
        match &spec.sk {
            None => {}
            Some(SkRange::Prefix(prefix)) => {
                key_cond.push_str(" AND begins_with(#sk, :prefix)");
                names.insert("#sk".to_owned(), "sk".to_owned());
                values.insert(":prefix".to_owned(), s(prefix.clone()));
            }
            Some(SkRange::Between(first, last)) => {
                key_cond.push_str(" AND #sk BETWEEN :first AND :last");
                names.insert("#sk".to_owned(), "sk".to_owned());
                values.insert(":first".to_owned(), s(first.clone()));
                values.insert(":last".to_owned(), s(last.clone()));
            }
        }
        match (spec.sort_at_least, spec.sort_at_most) {
            (None, None) => {}
            (Some((attr, min)), Some((_, max))) => {
                key_cond.push_str(" AND #sort BETWEEN :min AND :max");
                names.insert("#sort".to_owned(), attr.to_owned());
                values.insert(":min".to_owned(), n(min));
                values.insert(":max".to_owned(), n(max));
            }
            (None, Some((attr, max))) => {
                key_cond.push_str(" AND #sort <= :max");
                names.insert("#sort".to_owned(), attr.to_owned());
                values.insert(":max".to_owned(), n(max));
            }
            (Some((attr, min)), None) => {
                key_cond.push_str(" AND #sort >= :min");
                names.insert("#sort".to_owned(), attr.to_owned());
                values.insert(":min".to_owned(), n(min));
            }
        }
        let mut filters = Vec::new();
        if let Some(now) = spec.hide_expired_at {
            names.insert("#exp".to_owned(), EXPIRES_AT.to_owned());
            values.insert(":now".to_owned(), n(now.unix_seconds()));
            filters.push("(attribute_not_exists(#exp) OR #exp > :now)".to_owned());
        }
        if let Some(f) = &spec.filter {
            names.extend(f.names.clone());
            values.extend(f.values.clone());
            filters.push(format!("({})", f.text));
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .set_index_name(spec.index.map(str::to_owned))
            .key_condition_expression(key_cond)
            .set_filter_expression(filter)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(start)
            .set_limit(limit.map(|l| l as i32))
            .consistent_read(spec.consistent)
            .scan_index_forward(!spec.newest_first)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(backend)?;
        self.meter.read(&self.name, out.consumed_capacity(), spec.consistent);
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Deletes keys in batches of 25, retrying unprocessed items with backoff.
    pub async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::Backend(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            let mut backoff = Backoff::default();
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, std::mem::take(&mut pending))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(backend)?;
                self.meter.write(out.consumed_capacity());
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.name))
                    .unwrap_or_default();
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(StoreError::Backend(format!(
                        "{} items still unprocessed after {} attempts",
                        pending.len(),
                        backoff.attempts()
                    )));
                }
            }
        }
        Ok(())
    }

    /// A put as one action of a transaction.
    pub fn put_action(&self, item: Item, condition: Option<Expr>) -> Result<TransactWriteItem, StoreError> {
        let (names, values) = merge(condition.as_ref(), None);
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .set_condition_expression(condition.map(|c| c.text))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// An unconditional delete as one action of a transaction.
    pub fn delete_action(&self, key: Item) -> Result<TransactWriteItem, StoreError> {
        self.delete_action_with(key, None)
    }

    /// A delete as one action of a transaction, only if `condition` holds.
    pub fn delete_action_if(&self, key: Item, condition: Expr) -> Result<TransactWriteItem, StoreError> {
        self.delete_action_with(key, Some(condition))
    }

    fn delete_action_with(&self, key: Item, condition: Option<Expr>) -> Result<TransactWriteItem, StoreError> {
        let (names, values) = merge(condition.as_ref(), None);
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.name)
            .set_key(Some(key))
            .set_condition_expression(condition.map(|c| c.text))
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// All-or-nothing write. On a failed condition, returns the index of the failing action.
    pub async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Result<(), usize>, StoreError> {
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match res {
            Ok(out) => {
                self.meter.write(out.consumed_capacity());
                Ok(Ok(()))
            }
            Err(e) => {
                let failed = e.as_service_error().and_then(|se| match se {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed")),
                    _ => None,
                });
                match failed {
                    Some(i) => {
                        self.meter.failed_condition(&self.name);
                        Ok(Err(i))
                    }
                    None => Err(backend(e)),
                }
            }
        }
    }
}

impl Table {
    /// `transact`, retried with backoff while DynamoDB cancels it for a conflict with another
    /// in-flight write on one of its items (nothing was written then, so the retry re-evaluates
    /// every condition). On a failed condition, returns the index of the first failing action.
    pub async fn transact_retrying_conflicts(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), usize>, StoreError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let mut backoff = Backoff::default();
        loop {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let e = match res {
                Ok(out) => {
                    self.meter.write(out.consumed_capacity());
                    return Ok(Ok(()));
                }
                Err(e) => e,
            };
            let reasons = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => c.cancellation_reasons(),
                _ => &[],
            };
            if let Some(i) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                self.meter.failed_condition(&self.name);
                return Ok(Err(i));
            }
            let conflict = reasons.iter().any(|r| r.code() == Some("TransactionConflict"));
            if !conflict || !backoff.wait().await {
                return Err(backend(e));
            }
        }
    }
}

fn encode_key(key: &Item, scope: &str) -> Result<Cursor, StoreError> {
    let json: serde_json::Value = from_item(key.clone())?;
    Cursor::encode(scope, &json)
}

fn decode_key(cursor: &Cursor, scope: &str) -> Result<Item, StoreError> {
    let json: serde_json::Value = cursor.decode(scope)?;
    if !json.is_object() {
        return Err(StoreError::BadCursor);
    }
    serde_dynamo::to_item(json).map_err(|_| StoreError::BadCursor)
}
