use super::table::{Expr, QuerySpec, Table, Written, from_item, key, n, s, to_item};
use crate::domain::{ApplyOutcome, OptOutRecord, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::SubjectKey;
use crate::store::keys::{self, OPTOUT_HISTORY_PREFIX};
use crate::store::{OptOutStore, Page, PageRequest, StoreError};
use crate::timestamp::Timestamp;
use async_trait::async_trait;
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

/// Current state (sk `STATE#scope`) and history entries (sk `HIST#time#scope`) share one shape.
/// No expiry: the suppression list is kept while it protects the person.
#[derive(Serialize, Deserialize)]
struct OptOutItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    subject_key: SubjectKey,
    scope: OptOutScope,
    state: OptState,
    source: OptOutSource,
    event_ms: i64,
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
            confirmed: self.confirmed,
        }
    }
}

#[async_trait]
impl OptOutStore for DynamoOptOutStore {
    async fn apply(&self, r: &OptOutRecord) -> Result<ApplyOutcome, StoreError> {
        let pk = keys::optout_pk(&r.tenant, &r.subject_key);
        // One write records the new state and the one it replaced (operands read the old item).
        let update = Expr::new(
            "SET #tenant = :tenant, #key = :key, #scope = :scope, previous_state = :prev, \
             #state = :state, #source = :source, event_ms = :e, confirmed = :false",
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
        .value(":false", aws_sdk_dynamodb::types::AttributeValue::Bool(false));
        // `supersedes`: newer wins; at the same millisecond an opt-out beats an opt-in.
        let newer = match r.state {
            OptState::OptedOut => {
                Expr::new("attribute_not_exists(pk) OR event_ms < :e OR (event_ms = :e AND #cur = :in)")
                    .name("#cur", "state")
                    .value(":in", s(state_text(OptState::OptedIn)))
            }
            OptState::OptedIn => Expr::new("attribute_not_exists(pk) OR event_ms < :e"),
        }
        .value(":e", n(r.event_at.unix_millis()));
        let old = match self
            .table
            .update(key(&pk, keys::optout_state_sk(r.scope)), update, Some(newer))
            .await?
        {
            Written::ConditionFailed => return Ok(ApplyOutcome::Stale),
            Written::Yes(old) => old.filter(|o| !o.is_empty()).map(from_item::<OptOutItem>).transpose()?,
        };
        let previous = old.map(|o| o.state);
        let history = OptOutItem {
            pk,
            sk: keys::optout_history_sk(r.event_at, r.scope, r.state),
            tenant: r.tenant.clone(),
            subject_key: r.subject_key.clone(),
            scope: r.scope,
            state: r.state,
            source: r.source,
            event_ms: r.event_at.unix_millis(),
            previous_state: Some(r.previous.map_or(NO_PREVIOUS, state_text).to_owned()),
            confirmed: false,
        };
        self.table.put(to_item(&history)?, None, false).await?;
        Ok(ApplyOutcome::Applied { previous })
    }

    async fn mark_confirmed(
        &self,
        tenant: &TenantId,
        subject: &SubjectKey,
        scope: OptOutScope,
        event_at: Timestamp,
    ) -> Result<(), StoreError> {
        let update =
            Expr::new("SET confirmed = :true").value(":true", aws_sdk_dynamodb::types::AttributeValue::Bool(true));
        let same_event = Expr::new("event_ms = :e").value(":e", n(event_at.unix_millis()));
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
            sk_prefix: Some(OPTOUT_HISTORY_PREFIX.to_owned()),
            sort_at_most: None,
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

fn to_attr<T: Serialize>(v: &T) -> Result<aws_sdk_dynamodb::types::AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
