use super::table::{Expr, QuerySpec, SkRange, Table, from_item, key, n, s, to_item};
use crate::domain::optout::Expect;
use crate::domain::{ApplyOutcome, OptOutRecord, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::SubjectKey;
use crate::store::keys::{self, OPTOUT_HISTORY_PREFIX};
use crate::store::{OptOutStore, Page, PageRequest, StoreError};
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoOptOutStore {
    table: Table,
}

impl DynamoOptOutStore {
    pub(crate) fn new(table: Table) -> Self {
        Self { table }
    }
}

/// Current state (sk `STATE#scope`) and history entries (sk `HIST#event time#scope#state`) share
/// one shape. No expiry: the suppression list is kept while it protects the person.
#[derive(Serialize, Deserialize)]
struct OptOutItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    subject_key: SubjectKey,
    scope: OptOutScope,
    state: OptState,
    source: OptOutSource,
    /// Meta's event time: the event's identity.
    event_ms: i64,
    /// The order time; absent from items written before it was stored, which order by event time.
    #[serde(default)]
    order_ms: Option<i64>,
    /// `opted_out`, `opted_in` or `none`.
    #[serde(default)]
    previous_state: Option<String>,
    #[serde(default)]
    confirmed: bool,
}

const NO_PREVIOUS: &str = "none";

fn state_text(s: OptState) -> &'static str {
    match s {
        OptState::OptedOut => "opted_out",
        OptState::OptedIn => "opted_in",
    }
}

fn parse_state(s: Option<&str>) -> Option<OptState> {
    match s {
        Some("opted_out") => Some(OptState::OptedOut),
        Some("opted_in") => Some(OptState::OptedIn),
        _ => None,
    }
}

impl OptOutItem {
    fn into_record(self) -> OptOutRecord {
        OptOutRecord {
            previous: parse_state(self.previous_state.as_deref()),
            tenant: self.tenant,
            subject_key: self.subject_key,
            scope: self.scope,
            state: self.state,
            source: self.source,
            event_at: Timestamp::from_unix_millis(self.event_ms),
            order_at: Timestamp::from_unix_millis(self.order_ms.unwrap_or(self.event_ms)),
            confirmed: self.confirmed,
        }
    }
}

#[async_trait]
impl OptOutStore for DynamoOptOutStore {
    /// One transaction: the history entry (only if its event is not there yet) and the state
    /// (only if the change supersedes it). The history Put comes first, so a replay is told by
    /// its failed condition even when the state's fails too.
    async fn apply(&self, r: &OptOutRecord, expect: Expect) -> Result<ApplyOutcome, StoreError> {
        let pk = keys::optout_pk(&r.tenant, &r.subject_key);
        let history = OptOutItem {
            pk: pk.clone(),
            sk: keys::optout_history_sk(r.event_at, r.scope, r.state),
            tenant: r.tenant.clone(),
            subject_key: r.subject_key.clone(),
            scope: r.scope,
            state: r.state,
            source: r.source,
            event_ms: r.event_at.unix_millis(),
            order_ms: Some(r.order_at.unix_millis()),
            previous_state: Some(r.previous.map_or(NO_PREVIOUS, state_text).to_owned()),
            confirmed: false,
        };
        let put = Put::builder()
            .table_name(&self.table.name)
            .set_item(Some(to_item(&history)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        // The previous state is the caller's, kept so a redelivery can tell a change from none.
        let set = Expr::new(
            "SET #tenant = :tenant, #key = :key, #scope = :scope, previous_state = :prev, \
             #state = :state, #source = :source, event_ms = :e, order_ms = :o, confirmed = :false",
        )
        .name("#tenant", "tenant")
        .name("#key", "subject_key")
        .name("#scope", "scope")
        .name("#state", "state")
        .name("#source", "source")
        .value(":tenant", s(r.tenant.as_str()))
        .value(":key", s(r.subject_key.as_str()))
        .value(":scope", to_attr(&r.scope)?)
        .value(":prev", s(r.previous.map_or(NO_PREVIOUS, state_text)))
        .value(":state", s(state_text(r.state)))
        .value(":source", to_attr(&r.source)?)
        .value(":e", n(r.event_at.unix_millis()))
        .value(":false", AttributeValue::Bool(false));
        let condition = supersedes_condition(r, expect);
        let mut names = set.names;
        names.extend(condition.names);
        let mut values = set.values;
        values.extend(condition.values);
        let update = Update::builder()
            .table_name(&self.table.name)
            .set_key(Some(key(&pk, keys::optout_state_sk(r.scope))))
            .update_expression(set.text)
            .condition_expression(condition.text)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_err)?;
        let mut actions = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(update).build(),
        ];
        // Counted in the same write: a replay or a stale change cancels it with the rest.
        if r.state == OptState::OptedOut {
            let day = crate::audit::utc_day(r.event_at);
            let count = Update::builder()
                .table_name(&self.table.name)
                .set_key(Some(key(keys::OPTOUT_STATS_PK, keys::optout_stats_sk(&day, &r.tenant))))
                .update_expression("ADD applied :one")
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().update(count).build());
        }
        Ok(match self.table.transact_retrying_conflicts(actions).await? {
            Ok(()) => ApplyOutcome::Applied,
            Err(0) => ApplyOutcome::Replay,
            Err(_) => ApplyOutcome::Stale,
        })
    }

    async fn mark_confirmed(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        scope: OptOutScope,
        event_at: Timestamp,
        state: OptState,
    ) -> Result<(), StoreError> {
        let update = Expr::new("SET confirmed = :true").value(":true", AttributeValue::Bool(true));
        let same_event = Expr::new("event_ms = :e AND #state = :state")
            .name("#state", "state")
            .value(":e", n(event_at.unix_millis()))
            .value(":state", s(state_text(state)));
        self.table
            .update(
                key(keys::optout_pk(tenant, subject), keys::optout_state_sk(scope)),
                update,
                Some(same_event),
            )
            .await?;
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        scope: OptOutScope,
    ) -> Result<Option<OptOutRecord>, StoreError> {
        let item = self
            .table
            .get(key(keys::optout_pk(tenant, subject), keys::optout_state_sk(scope)))
            .await?;
        Ok(item
            .map(from_item::<OptOutItem>)
            .transpose()?
            .map(OptOutItem::into_record))
    }

    async fn history(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        page: &PageRequest,
    ) -> Result<Page<OptOutRecord>, StoreError> {
        let pk = keys::optout_pk(tenant, subject);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk: Some(SkRange::Prefix(OPTOUT_HISTORY_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: format!("optout:{pk}"),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| Ok(from_item::<OptOutItem>(i)?.into_record()))
            .await
    }
}

/// The state update's condition, `supersedes`: newer by order time wins, then by Meta's time; at
/// the same instant of both an opt-out beats an opt-in. An item written before order times were
/// stored orders by its event time, as it reads back.
fn supersedes_condition(r: &OptOutRecord, expect: Expect) -> Expr {
    let newer = match r.state {
        OptState::OptedOut => {
            "(order_ms < :o OR (order_ms = :o AND event_ms < :e) \
             OR (order_ms = :o AND event_ms = :e AND #state = :in) \
             OR (attribute_not_exists(order_ms) AND (event_ms < :o OR (event_ms = :o AND event_ms < :e) \
             OR (event_ms = :o AND event_ms = :e AND #state = :in))))"
        }
        OptState::OptedIn => {
            "(order_ms < :o OR (order_ms = :o AND event_ms < :e) \
             OR (attribute_not_exists(order_ms) AND (event_ms < :o OR (event_ms = :o AND event_ms < :e))))"
        }
    };
    let expr = match expect {
        Expect::Any => Expr::new(format!("attribute_not_exists(pk) OR {newer}")),
        Expect::State(None) => Expr::new("attribute_not_exists(pk)"),
        Expect::State(Some(current)) => {
            Expr::new(format!("#state = :expected AND {newer}")).value(":expected", s(state_text(current)))
        }
    };
    // DynamoDB refuses placeholders no expression uses (`:o` and `:e` are in the update too).
    let expr = expr.name("#state", "state").value(":o", n(r.order_at.unix_millis()));
    if expr.text.contains(":in") {
        expr.value(":in", s(state_text(OptState::OptedIn)))
    } else {
        expr
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_attr<T: Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The retention report's part of this store, reached only through `RetentionReads`.
impl DynamoOptOutStore {
    /// STOPs applied per tenant on the UTC days from `from` to `to` (both included).
    pub(crate) async fn optouts_applied(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<std::collections::BTreeMap<TenantId, u64>, StoreError> {
        let (from, to) = (crate::audit::utc_day(from), crate::audit::utc_day(to));
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::OPTOUT_STATS_PK),
            sk: Some(SkRange::Between(format!("{from}#"), format!("{to}#~"))),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        let mut out = std::collections::BTreeMap::new();
        for item in self.table.query_all(&spec).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let applied = item
                .get("applied")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(tenant) = sk.split_once('#').and_then(|(_, t)| TenantId::new(t).ok()) {
                *out.entry(tenant).or_default() += applied;
            }
        }
        Ok(out)
    }
}
