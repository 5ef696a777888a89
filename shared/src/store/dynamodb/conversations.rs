use super::table::{
    Expr, Item, QuerySpec, SkRange, Table, Written, from_item, from_json, key, key_of, n, s, to_item, to_json,
};
use crate::clock::SharedClock;
use crate::domain::{
    Channel, Contact, ContactId, ContactRef, ContactUpsert, DeliveryState, Direction, LinkedIdentifier, Message,
    MetaMessageId, ReachedContact, StatusUpdate, TenantId,
};
use crate::identity::SubjectKey;
use crate::store::keys::{self, CONTACTS_BY_TENANT_INDEX, PROFILE_SK};
use crate::store::profile::{self, ProfileState};
use crate::store::{
    ConversationStore, DueContact, EraseCursor, Page, PageRequest, StoreError, SweepOutcome, WriteOutcome,
};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
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

/// Profile of a contact, the last item of its partition. `ids` is a string set of JSON-encoded
/// linked identifiers; `version` makes each rewrite conditional on what was read.
#[derive(Serialize, Deserialize)]
struct ProfileItem {
    pk: String,
    sk: String,
    /// Key of the contacts-by-tenant index; only profile items carry it.
    tenant_contacts: String,
    /// Sort key of that index: the retention sweep finds contacts with old items by it.
    oldest_ms: i64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_rectified_ms: Option<i64>,
    version: u64,
}

/// An identifier link, in the subject key's own partition: `sk` is the contact's partition key.
/// One erasure ledger entry: a subject key and when its data was erased. No expiry.
#[derive(Serialize, Deserialize)]
struct LedgerItem {
    pk: String,
    sk: String,
    erased_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct LinkItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
}

/// A message unsent before it arrived: the original is refused when it comes.
#[derive(Serialize, Deserialize)]
struct GoneItem {
    pk: String,
    sk: String,
    expires_at: Expiry,
}

#[derive(Serialize, Deserialize)]
struct MessageItem {
    pk: String,
    sk: String,
    id: MetaMessageId,
    direction: Direction,
    sent_at_ms: i64,
    kind: String,
    /// Meta's JSON as text: it can nest deeper than DynamoDB's 32-level limit on maps.
    content_json: String,
    expires_at: Expiry,
}

/// What remains of a deleted message, under its key: it blocks redeliveries, listings skip it.
#[derive(Serialize, Deserialize)]
struct TombstoneItem {
    pk: String,
    sk: String,
    id: MetaMessageId,
    tombstone: bool,
    expires_at: Expiry,
}

/// Enough of a stored message item to tell a live message from a tombstone.
#[derive(Deserialize)]
struct StoredMessageHead {
    id: MetaMessageId,
    #[serde(default)]
    tombstone: bool,
    expires_at: Expiry,
}

/// The head of a contact's partition: its live profile and the unsend markers, read at once.
#[derive(Default)]
struct Head {
    profile: Option<(ProfileItem, ProfileState)>,
    /// The oldest item time of an expired profile TTL has not removed yet: its items may still
    /// be stored, so a new profile in its place keeps pointing the sweep at them.
    leftover_oldest: Option<Timestamp>,
    gone: Vec<String>,
}

impl Head {
    fn is_gone(&self, id: &MetaMessageId) -> bool {
        let original = keys::original_of(id);
        self.gone.iter().any(|g| g == id.as_str() || g == original)
    }
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

impl StatusItem {
    fn into_status(self, tenant: &TenantId, contact: &ContactId) -> Result<StatusUpdate, StoreError> {
        Ok(StatusUpdate {
            tenant: tenant.clone(),
            contact: contact.clone(),
            message_id: self.message_id,
            state: self.state,
            at: Timestamp::from_unix_millis(self.at_ms),
            detail: from_json(&self.detail_json)?,
            expires_at: self.expires_at,
        })
    }
}

fn rank(state: DeliveryState) -> i64 {
    state as i64
}

impl ProfileItem {
    fn state(&self) -> Result<ProfileState, StoreError> {
        let mut identifiers = self
            .ids
            .iter()
            .map(|j| from_json::<LinkedIdentifier>(j))
            .collect::<Result<Vec<_>, _>>()?;
        identifiers.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        Ok(ProfileState {
            profile_name: self.profile_name.clone(),
            identifiers,
            first_seen: Timestamp::from_unix_millis(self.first_seen_ms),
            last_seen: Timestamp::from_unix_millis(self.last_seen_ms),
            oldest: Timestamp::from_unix_millis(self.oldest_ms),
            expires_at: self.expires_at,
            name_rectified_at: self.name_rectified_ms.map(Timestamp::from_unix_millis),
        })
    }

    fn into_contact(self) -> Result<Contact, StoreError> {
        let state = self.state()?;
        Ok(Contact {
            contact: ContactId::new(self.channel, self.stable_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            tenant: self.tenant,
            profile_name: state.profile_name,
            identifiers: state.identifiers,
            first_seen: state.first_seen,
            last_seen: state.last_seen,
            expires_at: state.expires_at,
            name_rectified_at: state.name_rectified_at,
        })
    }

    fn new(u: &ContactUpsert, p: &ProfileState, version: u64) -> Result<Self, StoreError> {
        Ok(Self {
            pk: keys::contact_pk(&u.tenant, &u.contact),
            sk: PROFILE_SK.to_owned(),
            tenant_contacts: u.tenant.as_str().to_owned(),
            oldest_ms: p.oldest.unix_millis(),
            tenant: u.tenant.clone(),
            channel: u.contact.channel,
            stable_id: u.contact.stable_id.clone(),
            profile_name: p.profile_name.clone(),
            ids: p.identifiers.iter().map(to_json).collect::<Result<_, _>>()?,
            first_seen_ms: p.first_seen.unix_millis(),
            last_seen_ms: p.last_seen.unix_millis(),
            expires_at: p.expires_at,
            name_rectified_ms: p.name_rectified_at.map(|t| t.unix_millis()),
            version,
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

/// How many times a profile rewrite is retried when another writer got there first.
const PROFILE_ATTEMPTS: usize = 4;

/// How many message items an unsend reads per page while looking for its original.
const UNSEND_PAGE: usize = 100;

impl DynamoConversationStore {
    /// The contact's head: one query over the last range of its partition. Eventually
    /// consistent (half the read cost) unless a conditional write just lost to another writer.
    async fn head(&self, pk: &str, consistent: bool) -> Result<Head, StoreError> {
        let now = self.clock.now();
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk),
            sk: Some(SkRange::Prefix(keys::HEAD_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent,
            filter: None,
            newest_first: false,
        };
        let mut head = Head::default();
        for item in self.table.query_all(&spec).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let expired = item
                .get(keys::EXPIRES_AT)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|e| Expiry::from_epoch_seconds(e).is_expired(now));
            if sk == PROFILE_SK {
                let profile: ProfileItem = from_item(item)?;
                if expired {
                    head.leftover_oldest = Some(Timestamp::from_unix_millis(profile.oldest_ms));
                } else {
                    let state = profile.state()?;
                    head.profile = Some((profile, state));
                }
            } else if let Some(id) = sk.strip_prefix(keys::GONE_PREFIX)
                && !expired
            {
                head.gone.push(id.to_owned());
            }
        }
        Ok(head)
    }

    /// Applies the upsert rule to what `head` holds, rereading (consistently) when another
    /// writer changed the profile since.
    async fn upsert_with(&self, u: &ContactUpsert, head: Head) -> Result<WriteOutcome, StoreError> {
        let now = self.clock.now();
        let pk = keys::contact_pk(&u.tenant, &u.contact);
        let mut head = head;
        // A contact the store does not know may be one just erased: its first identifier's
        // ledger entry says until when its events are not stored again. Read once, eventually
        // consistent: the ledger is written before the erasure starts.
        if head.profile.is_none()
            && let Some(first) = u.identifiers.first()
            && self
                .ledger(&first.subject_key, false)
                .await?
                .is_some_and(|at| u.seen_at <= at)
        {
            return Ok(WriteOutcome::Erased);
        }
        for _ in 0..PROFILE_ATTEMPTS {
            let stored = head.profile.as_ref();
            let Some(mut change) = profile::rewrite(stored.map(|(_, state)| state), u) else {
                return Ok(WriteOutcome::Unchanged);
            };
            if stored.is_none()
                && let Some(leftover) = head.leftover_oldest
            {
                change.profile.oldest = change.profile.oldest.min(leftover);
            }
            let (version, condition) = match stored {
                Some((item, _)) => (
                    item.version + 1,
                    Expr::new("version = :v AND expires_at > :now")
                        .value(":v", n(item.version as i64))
                        .value(":now", n(now.unix_seconds())),
                ),
                None => (1, absent_or_expired(now)),
            };
            // Links first: a profile that lists an identifier is never written before its link,
            // so a failure between the two is repaired by the redelivery (the profile still
            // calls for the rewrite). A link written for a rewrite that then loses is harmless:
            // links only ever move later, and the winner writes its own.
            self.write_links(&pk, &change.links, change.profile.expires_at).await?;
            let item = ProfileItem::new(u, &change.profile, version)?;
            match self.table.put(to_item(&item)?, Some(condition), false).await? {
                Written::Yes(_) => {
                    return Ok(if change.forward {
                        WriteOutcome::Written
                    } else {
                        WriteOutcome::Unchanged
                    });
                }
                Written::ConditionFailed => head = self.head(&pk, true).await?,
            }
        }
        Err(StoreError::Conflict)
    }

    async fn ledger(&self, key: &SubjectKey, consistent: bool) -> Result<Option<Timestamp>, StoreError> {
        let item = self
            .table
            .get_with(
                super::table::key(keys::erasure_ledger_pk(key), keys::ERASURE_LEDGER_SK),
                consistent,
            )
            .await?;
        Ok(item
            .map(from_item::<LedgerItem>)
            .transpose()?
            .map(|l| Timestamp::from_unix_millis(l.erased_ms)))
    }

    /// Each link carries the profile's expiry; a link already kept longer is left alone.
    async fn write_links(&self, pk: &str, links: &[LinkedIdentifier], expires_at: Expiry) -> Result<(), StoreError> {
        for link in links {
            let item = LinkItem {
                pk: keys::link_pk(&link.subject_key),
                sk: pk.to_owned(),
                expires_at,
            };
            let longer =
                Expr::new("attribute_not_exists(pk) OR expires_at < :exp").value(":exp", n(expires_at.epoch_seconds()));
            self.table.put(to_item(&item)?, Some(longer), false).await?;
        }
        Ok(())
    }

    /// The message put, conditional on its key; the caller has checked the unsend markers.
    async fn put_message_item(&self, m: &Message) -> Result<WriteOutcome, StoreError> {
        let item = MessageItem {
            pk: keys::contact_pk(&m.tenant, &m.contact),
            sk: keys::message_sk(m.sent_at, &m.id),
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

    /// Deletes a message's edits and returns the message's key and head, if stored. Reads the
    /// contact's messages newest first, back to the original: unsends are of recent messages,
    /// so this reads little.
    async fn delete_edits_find(
        &self,
        pk: &str,
        id: &MetaMessageId,
    ) -> Result<Option<(Item, StoredMessageHead)>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk),
            sk: Some(SkRange::Prefix(keys::MESSAGE_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
            filter: Some(
                Expr::new("#id = :id OR begins_with(#id, :edits)")
                    .name("#id", "id")
                    .value(":id", s(id.as_str()))
                    .value(":edits", s(keys::edits_prefix(id))),
            ),
            newest_first: true,
        };
        let mut edits = Vec::new();
        let mut start = None;
        let original = loop {
            let (items, last) = self.table.query_once(&spec, start.take(), Some(UNSEND_PAGE)).await?;
            let mut original = None;
            for item in items {
                let head: StoredMessageHead = from_item(item.clone())?;
                if head.id == *id {
                    original = Some((key_of(item), head));
                    break;
                }
                edits.push(key_of(item));
            }
            match (original, last) {
                (Some(o), _) => break Some(o),
                (None, Some(k)) => start = Some(k),
                (None, None) => break None,
            }
        };
        self.table.delete_keys(edits).await?;
        Ok(original)
    }

    /// Every item of one partition, expired or not, consistently: what the sweep works from.
    fn partition(&self, pk: &str) -> QuerySpec {
        QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        }
    }

    /// A tenant's contacts by their oldest item, expired or not.
    fn contacts_by_tenant(&self, tenant: &TenantId) -> QuerySpec {
        QuerySpec {
            index: Some(CONTACTS_BY_TENANT_INDEX),
            pk_attr: "tenant_contacts",
            pk: s(tenant.as_str()),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: false,
            filter: None,
            newest_first: false,
        }
    }

    fn messages_spec(&self, pk: &str) -> QuerySpec {
        QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk),
            sk: Some(SkRange::Prefix(keys::MESSAGE_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("messages:{pk}"),
            consistent: true,
            filter: Some(Expr::new("attribute_not_exists(tombstone)")),
            newest_first: false,
        }
    }
}

#[async_trait]
impl ConversationStore for DynamoConversationStore {
    async fn upsert_contact(&self, u: &ContactUpsert) -> Result<WriteOutcome, StoreError> {
        let head = self.head(&keys::contact_pk(&u.tenant, &u.contact), false).await?;
        self.upsert_with(u, head).await
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
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("contacts:{tenant}"),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| from_item::<ProfileItem>(i)?.into_contact())
            .await
    }

    async fn rectify_profile_name(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let pk = keys::contact_pk(tenant, contact);
        for _ in 0..PROFILE_ATTEMPTS {
            let now = self.clock.now();
            let Some((mut item, _)) = self.head(&pk, true).await?.profile else {
                return Ok(false);
            };
            let condition = Expr::new("version = :v AND expires_at > :now")
                .value(":v", n(item.version as i64))
                .value(":now", n(now.unix_seconds()));
            item.profile_name = Some(name.to_owned());
            item.name_rectified_ms = Some(at.unix_millis());
            item.version += 1;
            if let Written::Yes(_) = self.table.put(to_item(&item)?, Some(condition), false).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Conflict)
    }

    async fn put_message(&self, m: &Message) -> Result<WriteOutcome, StoreError> {
        let head = self.head(&keys::contact_pk(&m.tenant, &m.contact), false).await?;
        if head.is_gone(&m.id) {
            return Ok(WriteOutcome::Unchanged);
        }
        self.put_message_item(m).await
    }

    async fn record_message(&self, u: &ContactUpsert, m: &Message) -> Result<WriteOutcome, StoreError> {
        let head = self.head(&keys::contact_pk(&u.tenant, &u.contact), false).await?;
        // The profile first, as `upsert_contact` then `put_message` would: a message is never
        // stored for a contact that has no profile to find it by.
        let gone = head.is_gone(&m.id);
        if self.upsert_with(u, head).await? == WriteOutcome::Erased {
            return Ok(WriteOutcome::Erased);
        }
        if gone {
            return Ok(WriteOutcome::Unchanged);
        }
        self.put_message_item(m).await
    }

    async fn record_status(&self, u: &ContactUpsert, st: &StatusUpdate) -> Result<WriteOutcome, StoreError> {
        let head = self.head(&keys::contact_pk(&u.tenant, &u.contact), false).await?;
        if self.upsert_with(u, head).await? == WriteOutcome::Erased {
            return Ok(WriteOutcome::Erased);
        }
        self.put_status(st).await
    }

    async fn list_messages(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let spec = self.messages_spec(&keys::contact_pk(tenant, contact));
        self.table
            .query_page(&spec, page, |i| {
                from_item::<MessageItem>(i)?.into_message(tenant, contact)
            })
            .await
    }

    async fn get_message(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        sent_at: Timestamp,
        message: &MetaMessageId,
    ) -> Result<Option<Message>, StoreError> {
        let now = self.clock.now();
        let k = key(keys::contact_pk(tenant, contact), keys::message_sk(sent_at, message));
        let Some(item) = self.table.get(k).await? else {
            return Ok(None);
        };
        let head: StoredMessageHead = from_item(item.clone())?;
        if head.tombstone || !live(head.expires_at, now) {
            return Ok(None);
        }
        Ok(Some(from_item::<MessageItem>(item)?.into_message(tenant, contact)?))
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
        let mut original = self.delete_edits_find(&pk, message).await?;
        // The marker refuses the message and its edits whenever they come: before the original
        // arrived, after it was tombstoned, or under another event time.
        let gone = GoneItem {
            pk: pk.clone(),
            sk: keys::gone_sk(message),
            expires_at: tombstone_expires,
        };
        self.table.put(to_item(&gone)?, None, false).await?;
        if original.is_none() {
            // A copy written while the marker was going in (its writer read the head just
            // before) is found here, consistently, and tombstoned like any other.
            original = self.delete_edits_find(&pk, message).await?;
        }
        let Some((original_key, original)) = original else {
            return Ok(false);
        };
        if original.tombstone {
            return Ok(false);
        }
        // The tombstone replaces the message in one write: no moment without either.
        let mut tombstone = to_item(&TombstoneItem {
            pk: String::new(),
            sk: String::new(),
            id: message.clone(),
            tombstone: true,
            expires_at: tombstone_expires,
        })?;
        tombstone.extend(original_key);
        self.table.put(tombstone, None, false).await?;
        Ok(live(original.expires_at, now))
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
        st.into_status(tenant, contact).map(Some)
    }

    async fn list_statuses(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        page: &PageRequest,
    ) -> Result<Page<StatusUpdate>, StoreError> {
        let pk = keys::contact_pk(tenant, contact);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(&pk),
            sk: Some(SkRange::Prefix(keys::STATUS_PREFIX.to_owned())),
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("statuses:{pk}"),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table
            .query_page(&spec, page, |i| {
                from_item::<StatusItem>(i)?.into_status(tenant, contact)
            })
            .await
    }

    async fn find_subject(&self, subject: &SubjectKey) -> Result<Vec<ContactRef>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::link_pk(subject)),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        let mut found = self
            .table
            .query_all(&spec)
            .await?
            .into_iter()
            .map(|item| {
                let link: LinkItem = from_item(item)?;
                keys::parse_contact_pk(&link.sk)
                    .map(|(tenant, contact)| ContactRef { tenant, contact })
                    .ok_or_else(|| StoreError::Corrupt("link item with a malformed contact key".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn erasure_reach(&self, subject: &SubjectKey) -> Result<Vec<ReachedContact>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::link_pk(subject)),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        let mut found = Vec::new();
        for item in self.table.query_all(&spec).await? {
            let link: LinkItem = from_item(item)?;
            let (tenant, contact) = keys::parse_contact_pk(&link.sk)
                .ok_or_else(|| StoreError::Corrupt("link item with a malformed contact key".to_owned()))?;
            // The profile lists the contact's links; without one, this link is all there is.
            let links = match self.table.get(key(&link.sk, PROFILE_SK)).await? {
                Some(profile) => from_item::<ProfileItem>(profile)?
                    .state()?
                    .identifiers
                    .into_iter()
                    .map(|l| l.subject_key)
                    .collect(),
                None => vec![subject.clone()],
            };
            found.push(ReachedContact {
                contact: ContactRef { tenant, contact },
                links,
            });
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn record_erasure(&self, key: &SubjectKey, at: Timestamp) -> Result<(), StoreError> {
        let item = LedgerItem {
            pk: keys::erasure_ledger_pk(key),
            sk: keys::ERASURE_LEDGER_SK.to_owned(),
            erased_ms: at.unix_millis(),
        };
        let later = Expr::new("attribute_not_exists(pk) OR erased_ms < :at").value(":at", n(at.unix_millis()));
        // A failed condition means a later erasure is already recorded: nothing to do.
        self.table.put(to_item(&item)?, Some(later), false).await.map(|_| ())
    }

    async fn erased_at(&self, key: &SubjectKey) -> Result<Option<Timestamp>, StoreError> {
        self.ledger(key, true).await
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
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        // One more than the batch, to know whether anything remains after it.
        let (items, last) = self.table.query_once(&spec, None, Some(max_items + 1)).await?;
        // A query page also ends at 1 MB: more remains whenever DynamoDB says so.
        let remains = items.len() > max_items || last.is_some();
        let mut batch: Vec<Item> = Vec::new();
        for item in items.into_iter().take(max_items) {
            let is_profile = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| sk == PROFILE_SK);
            if !is_profile {
                batch.push(key_of(item));
                continue;
            }
            // The profile is the partition's last item and the only list of its links. It goes
            // with its links in one transaction, so the index finds the contact until nothing of
            // it is left: a worker that stops between batches finds it again.
            let profile: ProfileItem = from_item(item)?;
            let links = profile.state()?.identifiers;
            let group = links.len() + 1;
            let messages = batch.len() as u64;
            if !batch.is_empty() && batch.len() + group > max_items {
                self.table.delete_keys(batch).await?;
                return Ok(EraseCursor {
                    deleted: cursor.deleted + messages,
                    done: false,
                });
            }
            self.table.delete_keys(batch).await?;
            let mut keys: Vec<Item> = links.iter().map(|l| key(keys::link_pk(&l.subject_key), &pk)).collect();
            // A transaction holds 100 actions; a contact has a handful of links, and any past
            // 99 go just before it.
            let surplus = keys.len().saturating_sub(99);
            self.table.delete_keys(keys.drain(..surplus).collect()).await?;
            let mut actions = vec![self.table.delete_action_if(
                key(&pk, PROFILE_SK),
                Expr::new("version = :v").value(":v", n(profile.version as i64)),
            )?];
            for k in keys {
                actions.push(self.table.delete_action(k)?);
            }
            return match self.table.transact_retrying_conflicts(actions).await? {
                Ok(()) => Ok(EraseCursor {
                    deleted: cursor.deleted + messages + group as u64,
                    done: !remains,
                }),
                // The profile changed since it was read (a message arrived, perhaps with a new
                // link): the next batch reads it again.
                Err(_) => Ok(EraseCursor {
                    deleted: cursor.deleted + messages + surplus as u64,
                    done: false,
                }),
            };
        }
        let deleted = batch.len() as u64;
        self.table.delete_keys(batch).await?;
        Ok(EraseCursor {
            deleted: cursor.deleted + deleted,
            done: !remains,
        })
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl DynamoConversationStore {
    pub(crate) async fn contacts_due(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
        page: &PageRequest,
    ) -> Result<Page<DueContact>, StoreError> {
        let spec = QuerySpec {
            sort_at_most: Some(("oldest_ms", cutoff.unix_millis())),
            scope: format!("due:{tenant}:{}", cutoff.unix_millis()),
            ..self.contacts_by_tenant(tenant)
        };
        self.table
            .query_page(&spec, page, |i| {
                let p = from_item::<ProfileItem>(i)?;
                Ok(DueContact {
                    contact: ContactId::new(p.channel, p.stable_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    oldest: Timestamp::from_unix_millis(p.oldest_ms),
                })
            })
            .await
    }

    pub(crate) async fn oldest_item(&self, tenant: &TenantId) -> Result<Option<Timestamp>, StoreError> {
        let (items, _) = self
            .table
            .query_once(&self.contacts_by_tenant(tenant), None, Some(1))
            .await?;
        items
            .into_iter()
            .next()
            .map(|i| from_item::<ProfileItem>(i).map(|p| Timestamp::from_unix_millis(p.oldest_ms)))
            .transpose()
    }

    pub(crate) async fn sweep_contact(
        &self,
        tenant: &TenantId,
        contact: &ContactId,
        cutoff: Timestamp,
        max_items: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let pk = keys::contact_pk(tenant, contact);
        let (first, last) = keys::messages_until(cutoff);
        let due = QuerySpec {
            sk: Some(SkRange::Between(first, last)),
            ..self.partition(&pk)
        };
        // Time-ordered keys: this reads what it deletes and nothing else.
        let (items, more) = self.table.query_once(&due, None, Some(max_items)).await?;
        let full = items.len() == max_items || more.is_some();
        let mut out = SweepOutcome::default();
        for item in items {
            out.deleted += self.table.delete_counted(key_of(item)).await?;
        }
        if full {
            return Ok(out);
        }
        // Read before anything is found left: a message recorded from here on moves the
        // profile's version or its last event, and the deletion below is conditional on both.
        let profile: Option<ProfileItem> = self.table.get(key(&pk, PROFILE_SK)).await?.map(from_item).transpose()?;
        // Statuses are keyed by message id, not time: read them all. Each goes only if it is
        // still the one read (a newer status of the same message stays).
        let statuses = QuerySpec {
            sk: Some(SkRange::Prefix(keys::STATUS_PREFIX.to_owned())),
            ..self.partition(&pk)
        };
        let cutoff_ms = cutoff.unix_millis();
        let mut remaining: Option<i64> = None;
        for item in self.table.query_all(&statuses).await? {
            let at_ms = item
                .get("at_ms")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            if at_ms <= cutoff_ms {
                let still = Expr::new("at_ms <= :cutoff").value(":cutoff", n(cutoff_ms));
                if let Written::Yes(Some(_)) = self.table.delete(key_of(item), Some(still)).await? {
                    out.deleted += 1;
                }
            } else {
                remaining = Some(remaining.map_or(at_ms, |r| r.min(at_ms)));
            }
        }
        let messages = QuerySpec {
            sk: Some(SkRange::Prefix(keys::MESSAGE_PREFIX.to_owned())),
            ..self.partition(&pk)
        };
        let (first_left, _) = self.table.query_once(&messages, None, Some(1)).await?;
        if let Some(t) = first_left
            .first()
            .and_then(|i| i.get("sk"))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| keys::message_sk_time(sk))
        {
            remaining = Some(remaining.map_or(t.unix_millis(), |r| r.min(t.unix_millis())));
        }
        out.done = true;
        let Some(profile) = profile else {
            return Ok(out);
        };
        // A profile changed by events that store no item (a preference, a held review, an
        // unsend) is itself within retention until its last event is past the cutoff.
        let last_seen_past = profile.last_seen_ms <= cutoff_ms;
        let oldest = match remaining {
            Some(oldest) => Some(oldest),
            None if !last_seen_past => Some(profile.last_seen_ms),
            None => None,
        };
        match oldest {
            Some(oldest) => {
                // Only forward, and only from the value read: an older item written meanwhile
                // moved it back, and must still be found.
                if oldest > profile.oldest_ms {
                    self.table
                        .update(
                            key(&pk, PROFILE_SK),
                            Expr::new("SET oldest_ms = :new").value(":new", n(oldest)),
                            Some(Expr::new("oldest_ms = :read").value(":read", n(profile.oldest_ms))),
                        )
                        .await?;
                }
            }
            None => {
                let links = profile.state()?.identifiers;
                let mut actions = vec![
                    self.table.delete_action_if(
                        key(&pk, PROFILE_SK),
                        Expr::new("version = :v AND last_seen_ms <= :cutoff")
                            .value(":v", n(profile.version as i64))
                            .value(":cutoff", n(cutoff_ms)),
                    )?,
                ];
                for l in links.iter().take(99) {
                    actions.push(self.table.delete_action(key(keys::link_pk(&l.subject_key), &pk))?);
                }
                // A message that arrived since moved the profile: the contact stays.
                if self.table.transact_retrying_conflicts(actions).await?.is_ok() {
                    let surplus: Vec<Item> = links
                        .iter()
                        .skip(99)
                        .map(|l| key(keys::link_pk(&l.subject_key), &pk))
                        .collect();
                    self.table.delete_keys(surplus).await?;
                    out.deleted += 1 + links.len() as u64;
                    out.contact_gone = true;
                    // Unsend markers go once expired: until then they still refuse a late copy.
                    let now = self.clock.now();
                    let markers = QuerySpec {
                        sk: Some(SkRange::Prefix(keys::GONE_PREFIX.to_owned())),
                        ..self.partition(&pk)
                    };
                    for item in self.table.query_all(&markers).await? {
                        let gone: GoneItem = from_item(item)?;
                        if gone.expires_at.is_expired(now) {
                            out.deleted += self.table.delete_counted(key(&gone.pk, &gone.sk)).await?;
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
