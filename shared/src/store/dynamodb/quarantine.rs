use super::table::{Item, QuerySpec, Table, from_item, key, s, to_item};
use crate::clock::SharedClock;
use crate::domain::{QuarantineBucket, QuarantineEntry};
use crate::identity::SubjectKey;
use crate::store::keys;
use crate::store::{Page, PageRequest, QuarantineStore, StoreError};
use crate::timestamp::{Expiry, Timestamp};
use async_trait::async_trait;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// DynamoDB items are at most 400 KB. Quarantined bodies may be up to 3 MB, so entries are stored
/// gzipped, and an entry that still does not fit keeps the head of its envelope with the size and
/// digest of the whole (incompressible garbage, in practice).
const MAX_STORED_BYTES: usize = 350 * 1024;

#[derive(Debug)]
pub struct DynamoQuarantineStore {
    table: Table,
    clock: SharedClock,
}

impl DynamoQuarantineStore {
    pub(crate) fn new(table: Table, clock: SharedClock) -> Self {
        Self { table, clock }
    }
}

#[derive(Serialize, Deserialize)]
struct QuarantineItem {
    pk: String,
    sk: String,
    /// Absent: never expires (DynamoDB TTL ignores items without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<Expiry>,
    /// The entry as gzipped JSON.
    #[serde(with = "serde_bytes")]
    entry_gz: Vec<u8>,
}

/// An index entry: the person's key finds the entry's key. It expires with the entry.
#[derive(Serialize, Deserialize)]
struct SubjectItem {
    pk: String,
    sk: String,
    entry_pk: String,
    entry_sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<Expiry>,
}

fn entry_key(e: &QuarantineEntry) -> Item {
    key(keys::quarantine_pk(&e.bucket), keys::quarantine_sk(e.received_at, e.id))
}

fn subject_key_of(e: &QuarantineEntry, subject: &SubjectKey) -> Item {
    let (pk, sk) = (keys::quarantine_pk(&e.bucket), keys::quarantine_sk(e.received_at, e.id));
    key(
        keys::quarantine_subject_pk(subject),
        keys::quarantine_subject_sk(&pk, &sk),
    )
}

/// A transaction holds 100 actions: the entry and the index entries of up to 99 people.
const MAX_INDEXED: usize = 99;

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

fn decode(item: &QuarantineItem) -> Result<QuarantineEntry, StoreError> {
    serde_json::from_slice(&gunzip(&item.entry_gz)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(e: &QuarantineEntry) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let packed = gzip(&json)?;
    if packed.len() <= MAX_STORED_BYTES {
        return Ok(packed);
    }
    let mut cut = e.clone();
    let mut end = MAX_STORED_BYTES / 2;
    while !cut.envelope.is_char_boundary(end) {
        end -= 1;
    }
    cut.reason = format!(
        "{} (envelope truncated to {end} of {} bytes; sha256 of the whole: {})",
        e.reason,
        e.envelope.len(),
        hex::encode(Sha256::digest(e.envelope.as_bytes()))
    );
    cut.envelope.truncate(end);
    gzip(&serde_json::to_vec(&cut).map_err(|err| StoreError::Corrupt(err.to_string()))?)
}

/// An unrouted account's bucket, in the directory the sweep reads.
#[derive(Serialize, Deserialize)]
struct BucketItem {
    pk: String,
    sk: String,
    bucket: String,
}

impl DynamoQuarantineStore {
    /// Deletes the entry with its index entries, on the condition that it is still there: 1 if
    /// this call deleted it, 0 if another did first.
    async fn delete_counted(&self, e: &QuarantineEntry) -> Result<u64, StoreError> {
        if e.subject_keys.is_empty() {
            return self.table.delete_counted(entry_key(e)).await;
        }
        let mut actions = vec![
            self.table
                .delete_action_if(entry_key(e), super::table::Expr::new("attribute_exists(pk)"))?,
        ];
        for subject in e.subject_keys.iter().take(MAX_INDEXED) {
            actions.push(self.table.delete_action(subject_key_of(e, subject))?);
        }
        Ok(u64::from(
            self.table.transact_retrying_conflicts(actions).await?.is_ok(),
        ))
    }
}

#[async_trait]
impl QuarantineStore for DynamoQuarantineStore {
    async fn put(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        if matches!(e.bucket, QuarantineBucket::Unrouted { .. }) {
            let dir = BucketItem {
                pk: keys::QUARANTINE_BUCKETS_PK.to_owned(),
                sk: keys::quarantine_pk(&e.bucket),
                bucket: super::table::to_json(&e.bucket)?,
            };
            self.table.put(to_item(&dir)?, None, false).await?;
        }
        let item = QuarantineItem {
            pk: keys::quarantine_pk(&e.bucket),
            sk: keys::quarantine_sk(e.received_at, e.id),
            expires_at: e.expires_at,
            entry_gz: encode(e)?,
        };
        if e.subject_keys.is_empty() {
            self.table.put(to_item(&item)?, None, false).await?;
            return Ok(());
        }
        let mut actions = vec![self.table.put_action(to_item(&item)?, None)?];
        for subject in e.subject_keys.iter().take(MAX_INDEXED) {
            let link = SubjectItem {
                pk: keys::quarantine_subject_pk(subject),
                sk: keys::quarantine_subject_sk(&item.pk, &item.sk),
                entry_pk: item.pk.clone(),
                entry_sk: item.sk.clone(),
                expires_at: e.expires_at,
            };
            actions.push(self.table.put_action(to_item(&link)?, None)?);
        }
        match self.table.transact_retrying_conflicts(actions).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Backend(
                "an unconditional quarantine write failed a condition".to_owned(),
            )),
        }
    }

    async fn get(
        &self,
        bucket: &QuarantineBucket,
        received_at: Timestamp,
        id: uuid::Uuid,
    ) -> Result<Option<QuarantineEntry>, StoreError> {
        let k = key(keys::quarantine_pk(bucket), keys::quarantine_sk(received_at, id));
        let Some(item) = self.table.get(k).await? else {
            return Ok(None);
        };
        let item: QuarantineItem = from_item(item)?;
        if item.expires_at.is_some_and(|e| e.is_expired(self.clock.now())) {
            return Ok(None);
        }
        decode(&item).map(Some)
    }

    async fn list(&self, bucket: &QuarantineBucket, page: &PageRequest) -> Result<Page<QuarantineEntry>, StoreError> {
        let pk = keys::quarantine_pk(bucket);
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(pk.clone()),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: Some(self.clock.now()),
            scope: format!("quarantine:{pk}"),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        self.table.query_page(&spec, page, |i| decode(&from_item(i)?)).await
    }

    async fn delete(&self, e: &QuarantineEntry) -> Result<(), StoreError> {
        if e.subject_keys.is_empty() {
            return self.table.delete(entry_key(e), None).await.map(|_| ());
        }
        let mut actions = vec![self.table.delete_action(entry_key(e))?];
        for subject in e.subject_keys.iter().take(MAX_INDEXED) {
            actions.push(self.table.delete_action(subject_key_of(e, subject))?);
        }
        match self.table.transact_retrying_conflicts(actions).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Backend(
                "an unconditional quarantine delete failed a condition".to_owned(),
            )),
        }
    }

    async fn find_subject(&self, subject: &SubjectKey) -> Result<Vec<QuarantineEntry>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::quarantine_subject_pk(subject)),
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
            let link: SubjectItem = from_item(item)?;
            match self.table.get(key(&link.entry_pk, &link.entry_sk)).await? {
                Some(entry) => found.push(decode(&from_item(entry)?)?),
                // The entry went (TTL) before its index entry: nothing of the person is left
                // there but the index entry, which goes now.
                None => {
                    self.table.delete(key(&link.pk, &link.sk), None).await?;
                }
            }
        }
        Ok(found)
    }
}

/// The retention sweep's and the report's part of this store, reached only through
/// `RetentionReads` and `RetentionSweeps`, so the functions that do not sweep do not link it.
impl DynamoQuarantineStore {
    pub(crate) async fn expiring_buckets(&self) -> Result<Vec<QuarantineBucket>, StoreError> {
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::QUARANTINE_BUCKETS_PK),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: false,
            filter: None,
            newest_first: false,
        };
        let mut buckets: Vec<QuarantineBucket> = crate::domain::EXPIRING_BUCKETS.to_vec();
        for item in self.table.query_all(&spec).await? {
            let dir: BucketItem = from_item(item)?;
            buckets.push(super::table::from_json(&dir.bucket)?);
        }
        Ok(buckets)
    }

    pub(crate) async fn sweep_quarantine(
        &self,
        bucket: &QuarantineBucket,
        expired_by: Timestamp,
        max_items: usize,
        dry: bool,
    ) -> Result<crate::store::SweepOutcome, StoreError> {
        if max_items == 0 || max_items > 1000 {
            return Err(StoreError::BadPageSize);
        }
        let spec = QuerySpec {
            index: None,
            pk_attr: "pk",
            pk: s(keys::quarantine_pk(bucket)),
            sk: None,
            sort_at_most: None,
            sort_at_least: None,
            hide_expired_at: None,
            scope: String::new(),
            consistent: true,
            filter: None,
            newest_first: false,
        };
        let (items, more) = self.table.query_once(&spec, None, Some(max_items)).await?;
        let mut out = crate::store::SweepOutcome {
            done: more.is_none() && items.len() < max_items,
            ..Default::default()
        };
        for item in items {
            let item: QuarantineItem = from_item(item)?;
            match item.expires_at {
                // Waits for a person.
                None => continue,
                Some(e) if e.as_timestamp() <= expired_by && dry => out.deleted += 1,
                Some(e) if e.as_timestamp() <= expired_by => {
                    out.deleted += self.delete_counted(&decode(&item)?).await?
                }
                // Entries expire in arrival order: the rest are kept too.
                Some(_) => {
                    out.done = true;
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn entry(envelope: String) -> QuarantineEntry {
        QuarantineEntry {
            id: uuid::Uuid::nil(),
            bucket: QuarantineBucket::Rejected,
            reason: "invalid JSON".to_owned(),
            envelope,
            received_at: Timestamp::from_unix_seconds(0),
            expires_at: Some(Expiry::from_epoch_seconds(1)),
            subject_keys: Vec::new(),
        }
    }

    #[test]
    fn a_3_mb_body_fits_in_one_item() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1"}],"#.repeat(3 * 1024 * 1024 / 52);
        let packed = encode(&entry(body.clone())).expect("encode");
        assert!(packed.len() <= MAX_STORED_BYTES, "{} bytes", packed.len());
        let back: QuarantineEntry = serde_json::from_slice(&gunzip(&packed).expect("gunzip")).expect("json");
        assert_eq!(back.envelope, body, "kept whole");
    }

    #[test]
    fn incompressible_bodies_keep_their_head_and_digest() {
        let mut rng = fastrand::Rng::with_seed(7);
        let body: String = (0..3 * 1024 * 1024).map(|_| rng.alphanumeric()).collect();
        let packed = encode(&entry(body.clone())).expect("encode");
        assert!(packed.len() <= MAX_STORED_BYTES);
        let back: QuarantineEntry = serde_json::from_slice(&gunzip(&packed).expect("gunzip")).expect("json");
        assert!(body.starts_with(&back.envelope));
        assert!(back.reason.contains(&hex::encode(Sha256::digest(body.as_bytes()))));
    }
}
