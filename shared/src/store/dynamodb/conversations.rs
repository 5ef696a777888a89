use super::table::{Expr, Item, QuerySpec, Table, Written, from_item, from_json, key, key_of, n, s, to_item, to_json};
use crate::clock::SharedClock;
use crate::domain::{
    Channel, Contact, ContactId, ContactRef, ContactUpsert, DeliveryState, Direction, LinkedIdentifier, Message,
    MetaMessageId, StatusUpdate, TenantId,
};
use crate::identity::SubjectKey;
use crate::store::keys::{self, BY_SUBJECT_INDEX, CONTACTS_BY_TENANT_INDEX, MESSAGES_BY_TIME_INDEX, PROFILE_SK};
use crate::store::{ConversationStore, EraseCursor, Page, PageRequest, StoreError, WriteOutcome};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct DynamoConversationStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoConversationStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

/// Profile of a contact. `ids` is a string set of JSON-encoded linked identifiers, so that merging
/// identifiers is one idempotent `ADD`.
#[derive(Serialize, Deserialize)]
struct ProfileItem {
    pk: String,
    sk: String,
    /// Key of the contacts-by-tenant index; only profile items carry it.
    tenant_contacts: String,
    tenant: TenantId,
    channel: Channel,
    stable_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "serde_dynamo::string_set")]
    ids: Vec<String>,
    first_seen_ms: i64,
    last_seen_ms: i64,
    expires_at: Expiry,
}

/// An identifier link: the only items carrying `subject_key`, which makes the by-subject index sparse.
#[derive(Serialize, Deserialize)]
struct LinkItem {
    pk: String,
    sk: String,
    subject_key: SubjectKey,
    expires_at: Expiry,
}

#[derive(Serialize, Deserialize)]
struct MessageItem {
    pk: String,
    sk: String,
    /// Sort key of the messages-by-time local index.
    msg_order: String,
    id: MetaMessageId,
    direction: Direction,
    sent_at_ms: i64,
    kind: String,
    /// Meta's JSON as text: it can nest deeper than DynamoDB's 32-level limit on maps.
    content_json: String,
    expires_at: Expiry,
}

/// What remains of a deleted message: it blocks redeliveries and is not in the time index.
#[derive(Serialize, Deserialize)]
struct TombstoneItem {
    pk: String,
    sk: String,
    tombstone: bool,
    expires_at: Expiry,
}

/// Enough of a stored message item to tell a live message from a tombstone.
#[derive(Deserialize)]
struct StoredMessageHead {
    #[serde(default)]
    tombstone: bool,
    msg_order: Option<String>,
    expires_at: Expiry,
}

#[derive(Serialize, Deserialize)]
struct StatusItem {
    pk: String,
    sk: String,
    message_id: MetaMessageId,
    state: DeliveryState,
    rank: i64,
    at_ms: i64,
    detail_json: String,
    expires_at: Expiry,
}

fn rank(state: DeliveryState) -> i64 {
    state as i64
}

fn encode_link(link: &LinkedIdentifier) -> Result<String, StoreError> {
    to_json(link)
}

impl ProfileItem {
    fn into_contact(self) -> Result<Contact, StoreError> {
        let mut identifiers = self
            .ids
            .iter()
            .map(|j| from_json::<LinkedIdentifier>(j))
            .collect::<Result<Vec<_>, _>>()?;
        identifiers.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        Ok(Contact {
            contact: ContactId::new(self.channel, self.stable_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            tenant: self.tenant,
            profile_name: self.profile_name,
            identifiers,
            first_seen: Timestamp::from_unix_millis(self.first_seen_ms),
            last_seen: Timestamp::from_unix_millis(self.last_seen_ms),
            expires_at: self.expires_at,
        })
    }
}

impl MessageItem {
    fn into_message(self, tenant: &TenantId, contact: &ContactId) -> Result<Message, StoreError> {
        Ok(Message {
            tenant: tenant.clone(),
            contact: contact.clone(),
            id: self.id,
            direction: self.direction,
            sent_at: Timestamp::from_unix_millis(self.sent_at_ms),
            kind: self.kind,
            content: from_json(&self.content_json)?,
            expires_at: self.expires_at,
        })
    }
}

fn live(expires_at: Expiry, now: Timestamp) -> bool {
    !expires_at.is_expired(now)
}

/// `attribute_not_exists(pk) OR expires_at <= :now`: a leftover that TTL has not yet deleted
/// counts as absent.
fn absent_or_expired(now: Timestamp) -> Expr {
    Expr::new("attribute_not_exists(pk) OR expires_at <= :now").value(":now", n(now.unix_seconds()))
}

#[async_trait]
impl ConversationStore for DynamoConversationStore {
    async fn upsert_contact(&self, u: &ContactUpsert) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(&u.tenant, &u.contact);
        let ids = u.identifiers.iter().map(encode_link).collect::<Result<Vec<_>, _>>()?;

        // 1. Create or merge identifiers, unless the stored profile is an expired leftover.
        let mut merge = Expr::new(format!(
            "SET tenant_contacts = :t, tenant = :t, channel = :ch, stable_id = :sid, \
             first_seen_ms = if_not_exists(first_seen_ms, :seen), last_seen_ms = if_not_exists(last_seen_ms, :seen), \
             expires_at = if_not_exists(expires_at, :exp){}",
            if ids.is_empty() { "" } else { " ADD ids :ids" }
        ))
        .value(":t", s(u.tenant.as_str()))
        .value(":ch", s(u.contact.channel.as_str()))
        .value(":sid", s(u.contact.stable_id.clone()))
        .value(":seen", n(u.seen_at.unix_millis()))
        .value(":exp", n(u.expires_at.epoch_seconds()));
        if !ids.is_empty() {
            merge = merge.value(":ids", AttributeValue::Ss(ids.clone()));
        }
        let fresh = Expr::new("attribute_not_exists(pk) OR expires_at > :now").value(":now", n(now.unix_seconds()));
        if let Written::ConditionFailed = self.table.update(key(&pk, PROFILE_SK), merge, Some(fresh)).await? {
            let item = ProfileItem {
                pk: pk.clone(),
                sk: PROFILE_SK.to_owned(),
                tenant_contacts: u.tenant.as_str().to_owned(),
                tenant: u.tenant.clone(),
                channel: u.contact.channel,
                stable_id: u.contact.stable_id.clone(),
                profile_name: u.profile_name.clone(),
                ids,
                first_seen_ms: u.seen_at.unix_millis(),
                last_seen_ms: u.seen_at.unix_millis(),
                expires_at: u.expires_at,
            };
            self.table.put(to_item(&item)?, None, false).await?;
        }

        // 2. Newer-or-equal events move the profile forward; older ones leave it.
        let mut forward = Expr::new(format!(
            "SET last_seen_ms = :seen, expires_at = :exp{}",
            if u.profile_name.is_some() {
                ", profile_name = :name"
            } else {
                ""
            }
        ))
        .value(":seen", n(u.seen_at.unix_millis()))
        .value(":exp", n(u.expires_at.epoch_seconds()));
        if let Some(name) = &u.profile_name {
            forward = forward.value(":name", s(name.clone()));
        }
        let newer = Expr::new("last_seen_ms <= :seen");
        let outcome = match self.table.update(key(&pk, PROFILE_SK), forward, Some(newer)).await? {
            Written::Yes(_) => WriteOutcome::Written,
            Written::ConditionFailed => WriteOutcome::Unchanged,
        };

        // 3. Index links, each kept as long as the newest event that mentioned it.
        for link in &u.identifiers {
            let item = LinkItem {
                pk: pk.clone(),
                sk: keys::link_sk(&link.subject_key),
                subject_key: link.subject_key.clone(),
                expires_at: u.expires_at,
            };
            let longer = Expr::new("attribute_not_exists(pk) OR expires_at < :exp")
                .value(":exp", n(u.expires_at.epoch_seconds()));
            self.table.put(to_item(&item)?, Some(longer), false).await?;
        }
        Ok(outcome)
    }

    async fn get_contact(&self, tenant: &TenantId, contact: &ContactId) -> Result<Option<Contact>, StoreError> {
        let now = self.clock.now();
        let Some(item) = self
            .table
            .get(key(keys::contact_pk(tenant, contact), PROFILE_SK))
            .await?
        else {
            return Ok(None);
        };
        let profile: ProfileItem = from_item(item)?;
        if !live(profile.expires_at, now) {
            return Ok(None);
        }
        profile.into_contact().map(Some)
    }

    async fn list_contacts(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Contact>, StoreError> {
        let spec = QuerySpec {
            index: Some(CONTACTS_BY_TENANT_INDEX),
            pk_attr: "tenant_contacts",
            pk: s(tenant.as_str()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("contacts:{tenant}"),
            consistent: false,
        };
        self.table
            .query_page(&spec, page, |i| from_item::<ProfileItem>(i)?.into_contact())
            .await
    }

    async fn put_message(&self, m: &Message) -> Result<WriteOutcome, StoreError> {
        let item = MessageItem {
            pk: keys::contact_pk(&m.tenant, &m.contact),
            sk: keys::message_sk(&m.id),
            msg_order: keys::message_order(m.sent_at, &m.id),
            id: m.id.clone(),
            direction: m.direction,
            sent_at_ms: m.sent_at.unix_millis(),
            kind: m.kind.clone(),
            content_json: m.content.to_string(),
            expires_at: m.expires_at,
        };
        match self
            .table
            .put(to_item(&item)?, Some(absent_or_expired(self.clock.now())), false)
            .await?
        {
            Written::Yes(_) => Ok(WriteOutcome::Written),
            Written::ConditionFailed => Ok(WriteOutcome::Unchanged),
        }
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let pk = keys::contact_pk(tenant, contact);
        let spec = QuerySpec {
            index: Some(MESSAGES_BY_TIME_INDEX),
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("messages:{pk}"),
            consistent: true,
        };
        self.table
            .query_page(&spec, page, |i| {
                from_item::<MessageItem>(i)?.into_message(tenant, contact)
            })
            .await
    }

    async fn delete_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
        tombstone_expires: Expiry,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(tenant, contact);
        let edits = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk_prefix: Some(keys::edits_prefix(message)),
            sort_at_most: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
        };
        let edit_keys: Vec<Item> = self.table.query_all(&edits).await?.into_iter().map(key_of).collect();
        self.table.delete_keys(edit_keys).await?;
        // The tombstone replaces the message in one write: no moment without either.
        let tombstone = TombstoneItem {
            pk: pk.clone(),
            sk: keys::message_sk(message),
            tombstone: true,
            expires_at: tombstone_expires,
        };
        let Written::Yes(old) = self.table.put(to_item(&tombstone)?, None, true).await? else {
            return Ok(false);
        };
        let was_live = old
            .map(from_item::<StoredMessageHead>)
            .transpose()?
            .is_some_and(|h| !h.tombstone && h.msg_order.is_some() && live(h.expires_at, now));
        Ok(was_live)
    }

    async fn put_status(&self, st: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now();
        let item = StatusItem {
            pk: keys::contact_pk(&st.tenant, &st.contact),
            sk: keys::status_sk(&st.message_id),
            message_id: st.message_id.clone(),
            state: st.state,
            rank: rank(st.state),
            at_ms: st.at.unix_millis(),
            detail_json: st.detail.to_string(),
            expires_at: st.expires_at,
        };
        let forward = Expr::new("attribute_not_exists(pk) OR #rank < :rank OR expires_at <= :now")
            .name("#rank", "rank")
            .value(":rank", n(rank(st.state)))
            .value(":now", n(now.unix_seconds()));
        match self.table.put(to_item(&item)?, Some(forward), false).await? {
            Written::Yes(_) => Ok(WriteOutcome::Written),
            Written::ConditionFailed => Ok(WriteOutcome::Unchanged),
        }
    }

    async fn get_status(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        message: &MetaMessageId,
    ) -> Result<Option<StatusUpdate>, StoreError> {
        let now = self.clock.now();
        let Some(item) = self
            .table
            .get(key(keys::contact_pk(tenant, contact), keys::status_sk(message)))
            .await?
        else {
            return Ok(None);
        };
        let st: StatusItem = from_item(item)?;
        if !live(st.expires_at, now) {
            return Ok(None);
        }
        Ok(Some(StatusUpdate {
            tenant: tenant.clone(),
            contact: contact.clone(),
            message_id: st.message_id,
            state: st.state,
            at: Timestamp::from_unix_millis(st.at_ms),
            detail: from_json(&st.detail_json)?,
            expires_at: st.expires_at,
        }))
    }

    async fn find_subject(&self, subject: &SubjectKey) -> Result<Vec<ContactRef>, StoreError> {
        let spec = QuerySpec {
            index: Some(BY_SUBJECT_INDEX),
            pk_attr: "subject_key",
            pk: s(subject.as_str()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: Some(self.clock.now()),
            scope: String::new(),
            consistent: false,
        };
        let mut found = self
            .table
            .query_all(&spec)
            .await?
            .into_iter()
            .map(|item| {
                let link: LinkItem = from_item(item)?;
                keys::parse_contact_pk(&link.pk)
                    .map(|(tenant, contact)| ContactRef { tenant, contact })
                    .ok_or_else(|| StoreError::Corrupt("link item with a malformed contact key".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn erase_contact_batch(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cursor: EraseCursor,
        max_items: usize,
    ) -> Result<EraseCursor, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let pk = keys::contact_pk(tenant, contact);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk_prefix: None,
            sort_at_most: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
        };
        // One more than the batch, to know whether anything remains after it.
        let (items, _) = self.table.query_once(&spec, None, Some(max_items + 1)).await?;
        let remains = items.len() > max_items;
        let keys: Vec<Item> = items.into_iter().take(max_items).map(key_of).collect();
        let deleted = keys.len() as u64;
        self.table.delete_keys(keys).await?;
        Ok(EraseCursor {
            deleted: cursor.deleted + deleted,
            done: !remains,
        })
    }
}
