//! The audit trail's tamper evidence: every chain (a tenant's, or the platform's) is a sequence of
//! links, each holding the hash of the one before it, a head naming the last link, and one
//! checkpoint per day (the head as it was at the end of that day) kept longer than the events.
//!
//! Events expire by their retention, so a missing event is a break only if it should still be
//! there: each link records when its predecessor expires, and expiry never decreases along a chain,
//! so "the predecessor has expired" means every earlier event has too.

use crate::clock::Clock;
use crate::domain::{AuditChain, AuditEvent};
use crate::retention::audit_checkpoint_expiry;
use crate::store::{AuditStore, PageRequest, StoreError, TimeRange};
use crate::timestamp::{Expiry, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The hash before the first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event in its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// 1 for a chain's first event, then one more per event.
    pub seq: u64,
    pub prev_hash: String,
    /// When the previous event expires (None for the first link).
    pub prev_expires_at: Option<Expiry>,
    pub event: AuditEvent,
    /// Hex SHA-256 of everything above, as `link_hash` computes it.
    pub hash: String,
}

/// The last link of a chain, as appends read and replace it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
    pub at: Timestamp,
    pub expires_at: Expiry,
}

/// The head at the end of one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub seq: u64,
    pub hash: String,
    /// When the event it names expires; the checkpoint itself is kept until `keep_until`.
    pub event_expires_at: Expiry,
    pub keep_until: Expiry,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    prev_hash: &'a str,
    prev_expires_at: Option<Expiry>,
    event: &'a AuditEvent,
}

/// The hash of a link's content: its JSON (fields in declaration order) after the previous hash.
pub fn link_hash(seq: u64, prev_hash: &str, prev_expires_at: Option<Expiry>, event: &AuditEvent) -> String {
    let content = Hashed {
        seq,
        prev_hash,
        prev_expires_at,
        event,
    };
    let json = serde_json::to_vec(&content).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// The UTC day of an instant, as checkpoints are named.
pub fn utc_day(t: Timestamp) -> String {
    let d = t.to_datetime().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// What one append writes: the link, the new head, and the checkpoint of the head's day when the
/// link is the first of a later day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub link: ChainLink,
    pub head: ChainHead,
    pub checkpoint: Option<Checkpoint>,
}

/// The link after `head`. Its time and expiry are moved up to the head's if they are earlier (two
/// writers' clocks differ), so the chain is in time order and its expiry never decreases.
pub fn next(head: Option<&ChainHead>, event: &AuditEvent) -> Append {
    let mut event = event.clone();
    let (seq, prev_hash, prev_expires_at) = match head {
        None => (1, GENESIS.to_owned(), None),
        Some(h) => {
            event.at = event.at.max(h.at);
            event.expires_at = event.expires_at.max(h.expires_at);
            (h.seq + 1, h.hash.clone(), Some(h.expires_at))
        }
    };
    let hash = link_hash(seq, &prev_hash, prev_expires_at, &event);
    let checkpoint = head.filter(|h| utc_day(h.at) != utc_day(event.at)).map(|h| Checkpoint {
        day: utc_day(h.at),
        seq: h.seq,
        hash: h.hash.clone(),
        event_expires_at: h.expires_at,
        keep_until: audit_checkpoint_expiry(h.expires_at),
    });
    let new_head = ChainHead {
        seq,
        hash: hash.clone(),
        at: event.at,
        expires_at: event.expires_at,
    };
    Append {
        link: ChainLink {
            seq,
            prev_hash,
            prev_expires_at,
            event,
            hash,
        },
        head: new_head,
        checkpoint,
    }
}

/// Where a chain stops holding together, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The first event number affected.
    pub seq: u64,
    pub reason: String,
}

/// A chain's verification result, as the verify route reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub chain: AuditChain,
    /// Events whose hash and link were checked.
    pub events: u64,
    /// The first event checked: events before it have legitimately expired.
    pub from_seq: Option<u64>,
    pub head_seq: Option<u64>,
    pub checkpoints: usize,
    pub intact: bool,
    pub first_break: Option<Break>,
}

/// Checks a chain link by link, oldest first, against its checkpoints and the head read before
/// the links were listed. Links appended after that head (requests audited while the check runs)
/// are not checked, but they must be covered by the head read after the listing.
#[derive(Debug)]
pub struct Verifier {
    now: Timestamp,
    checkpoints: BTreeMap<u64, Checkpoint>,
    head: Option<ChainHead>,
    last: Option<ChainLink>,
    from_seq: Option<u64>,
    events: u64,
    /// The newest link seen past `head`.
    beyond: Option<u64>,
    first_break: Option<Break>,
}

impl Verifier {
    pub fn new(now: Timestamp, checkpoints: Vec<Checkpoint>, head: Option<ChainHead>) -> Self {
        Self {
            now,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            head,
            last: None,
            from_seq: None,
            events: 0,
            beyond: None,
            first_break: None,
        }
    }

    /// The time of the listing the next links come from: whatever it hid had expired by then.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    fn broken(&mut self, seq: u64, reason: String) {
        if self.first_break.is_none() {
            self.first_break = Some(Break { seq, reason });
        }
    }

    fn expired(&self, e: Option<Expiry>) -> bool {
        e.is_some_and(|e| e.is_expired(self.now))
    }

    pub fn feed(&mut self, link: &ChainLink) {
        if self.first_break.is_some() {
            return;
        }
        let seq = link.seq;
        if self.head.as_ref().is_some_and(|h| seq > h.seq) {
            self.beyond = self.beyond.max(Some(seq));
            return;
        }
        if link_hash(seq, &link.prev_hash, link.prev_expires_at, &link.event) != link.hash {
            return self.broken(
                seq,
                format!("event #{seq} was altered: its hash does not match its content"),
            );
        }
        if let Err((at, reason)) = self.follows(link) {
            return self.broken(at, reason);
        }
        if let Some(cp) = self.checkpoints.get(&seq)
            && cp.hash != link.hash
        {
            let day = cp.day.clone();
            return self.broken(seq, format!("event #{seq} differs from the checkpoint of {day}"));
        }
        self.from_seq.get_or_insert(seq);
        self.events += 1;
        self.last = Some(link.clone());
    }

    /// Whether `link` may come after the last link checked. Only expiry may leave a gap, and
    /// expiry never decreases along a chain: what is missing must have expired, and no earlier
    /// than what is present before it.
    fn follows(&self, link: &ChainLink) -> Result<(), (u64, String)> {
        let seq = link.seq;
        let Some(last) = &self.last else {
            if seq == 1 {
                return match (link.prev_hash.as_str(), link.prev_expires_at) {
                    (GENESIS, None) => Ok(()),
                    _ => Err((1, "event #1 does not start the chain".to_owned())),
                };
            }
            if !self.expired(link.prev_expires_at) {
                return Err((1, format!("events before #{seq} are missing and had not expired")));
            }
            // The oldest retained event links to its day's checkpoint, when that is kept.
            return match self.checkpoints.get(&(seq - 1)) {
                Some(cp) if cp.hash != link.prev_hash || Some(cp.event_expires_at) != link.prev_expires_at => Err((
                    seq,
                    format!("event #{seq} does not follow the checkpoint of {}", cp.day),
                )),
                _ => Ok(()),
            };
        };
        let (prev, e) = (&last.event, &link.event);
        if seq <= last.seq {
            return Err((seq, format!("event #{seq} is out of order after #{}", last.seq)));
        }
        if e.at < prev.at || e.expires_at < prev.expires_at {
            return Err((seq, format!("event #{seq} is dated or expires before #{}", last.seq)));
        }
        if seq == last.seq + 1 {
            if link.prev_hash != last.hash || link.prev_expires_at != Some(prev.expires_at) {
                return Err((
                    seq,
                    format!("event #{seq} does not follow #{}: the chain was rewritten", last.seq),
                ));
            }
            return Ok(());
        }
        let gone_by_expiry =
            self.expired(link.prev_expires_at) && link.prev_expires_at.is_some_and(|p| p >= prev.expires_at);
        if gone_by_expiry {
            Ok(())
        } else {
            Err((
                last.seq + 1,
                format!(
                    "events #{} to #{} are missing and had not expired",
                    last.seq + 1,
                    seq - 1
                ),
            ))
        }
    }

    /// The verdict; `head_after` is the head read again once every link was listed.
    pub fn finish(mut self, chain: AuditChain, head_after: Option<&ChainHead>) -> Verification {
        let seen =
            |seq: u64, v: &Self| v.from_seq.is_some_and(|f| seq >= f) && v.last.as_ref().is_some_and(|l| seq <= l.seq);
        let missing: Vec<(u64, String)> = self
            .checkpoints
            .values()
            // Checkpoints written after the head this check started from are not its concern.
            .filter(|c| self.head.as_ref().is_some_and(|h| c.seq <= h.seq))
            .filter(|c| !c.event_expires_at.is_expired(self.now) && !seen(c.seq, &self))
            .map(|c| (c.seq, c.day.clone()))
            .collect();
        if let Some((seq, day)) = missing.into_iter().next() {
            self.broken(
                seq,
                format!("event #{seq}, named by the checkpoint of {day}, is missing and had not expired"),
            );
        }
        let last = self.last.as_ref().map(|l| (l.seq, l.hash.clone()));
        match (self.head.clone(), last) {
            // Verifying is audited first, so a chain that is verified has a head.
            (None, _) => self.broken(1, "the chain's head is missing".to_owned()),
            (Some(h), Some((seq, hash))) if h.seq == seq && h.hash != hash => {
                self.broken(seq, format!("event #{seq} differs from the chain's head"))
            }
            (Some(h), Some((seq, _))) if h.seq != seq && !h.expires_at.is_expired(self.now) => self.broken(
                seq + 1,
                format!("events after #{seq} are missing: the head names #{}", h.seq),
            ),
            (Some(h), None) if !h.expires_at.is_expired(self.now) => {
                self.broken(1, format!("every event is missing: the head names #{}", h.seq))
            }
            _ => {}
        }
        if let Some(seq) = self.beyond
            && head_after.is_none_or(|h| h.seq < seq)
        {
            self.broken(seq, format!("event #{seq} is after the chain's head"));
        }
        Verification {
            chain,
            events: self.events,
            from_seq: self.from_seq,
            head_seq: self.head.as_ref().map(|h| h.seq),
            checkpoints: self.checkpoints.len(),
            intact: self.first_break.is_none(),
            first_break: self.first_break,
        }
    }
}

/// Recomputes a whole chain from the store: every retained event up to its head, its checkpoints
/// and its head. Each page is judged at the time it was listed, so an event that expires while the
/// check runs is not a break.
pub async fn verify(store: &dyn AuditStore, chain: &AuditChain, clock: &dyn Clock) -> Result<Verification, StoreError> {
    let head = store.head(chain).await?;
    let mut verifier = Verifier::new(clock.now(), store.checkpoints(chain).await?, head);
    let mut page = PageRequest::first(crate::store::MAX_PAGE_SIZE);
    loop {
        let p = store.list(chain, &TimeRange::ALL, &page).await?;
        verifier.set_now(clock.now());
        for link in &p.items {
            verifier.feed(link);
        }
        match p.next {
            Some(c) => page = PageRequest::after(crate::store::MAX_PAGE_SIZE, c),
            None => break,
        }
    }
    let head_after = store.head(chain).await?;
    Ok(verifier.finish(chain.clone(), head_after.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditAction, TenantId};
    use crate::retention::audit_expiry;

    fn event(at: Timestamp) -> AuditEvent {
        AuditEvent {
            id: uuid::Uuid::new_v4(),
            chain: AuditChain::Tenant(TenantId::new("acme").expect("valid")),
            at,
            actor: "arn:aws:iam::1:user/op".into(),
            action: AuditAction::Read,
            route: "GET /admin/tenants/{tenant}/contacts".into(),
            contact: None,
            subject_key: None,
            detail: None,
            reason: "admin read".into(),
            expires_at: audit_expiry(at, 1),
        }
    }

    /// `n` events, one per day from `start`: links, checkpoints and the head.
    fn chain(start: Timestamp, n: usize) -> (Vec<ChainLink>, Vec<Checkpoint>, ChainHead) {
        let (mut links, mut cps, mut head) = (Vec::new(), Vec::new(), None);
        for i in 0..n {
            let a = next(head.as_ref(), &event(start.plus(time::Duration::days(i as i64))));
            links.push(a.link);
            cps.extend(a.checkpoint);
            head = Some(a.head);
        }
        (links, cps, head.expect("non-empty"))
    }

    fn check(now: Timestamp, links: &[ChainLink], cps: &[Checkpoint], head: &ChainHead) -> Verification {
        let mut v = Verifier::new(now, cps.to_vec(), Some(head.clone()));
        links.iter().for_each(|l| v.feed(l));
        v.finish(links[0].event.chain.clone(), Some(head))
    }

    const T0: i64 = 1_780_000_000;

    #[test]
    fn an_untouched_chain_verifies_and_checkpoints_one_head_per_day() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, head) = chain(start, 5);
        assert_eq!(cps.len(), 4, "days 1-4 were closed by the next day's first event");
        let v = check(start, &links, &cps, &head);
        assert!(v.intact, "{v:?}");
        assert_eq!((v.events, v.from_seq, v.head_seq), (5, Some(1), Some(5)));
    }

    #[test]
    fn an_altered_event_a_rewritten_link_and_a_deleted_event_are_breaks() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, head) = chain(start, 5);
        let mut altered = links.clone();
        altered[2].event.reason = "nothing to see".into();
        let v = check(start, &altered, &cps, &head);
        assert_eq!(v.first_break.map(|b| b.seq), Some(3), "altered content");

        let mut rehashed = altered.clone();
        rehashed[2].hash = link_hash(
            3,
            &rehashed[2].prev_hash,
            rehashed[2].prev_expires_at,
            &rehashed[2].event,
        );
        let v = check(start, &rehashed, &cps, &head);
        assert_eq!(
            v.first_break.map(|b| b.seq),
            Some(3),
            "its hash recomputed: the checkpoint disagrees"
        );

        let mut deleted = links.clone();
        deleted.remove(1);
        let v = check(start, &deleted, &cps, &head);
        assert_eq!(v.first_break.map(|b| b.seq), Some(2), "a deleted event");

        let v = check(start, &links[..4], &cps, &head);
        assert_eq!(v.first_break.map(|b| b.seq), Some(5), "the newest event deleted");
        let v = check(start, &links[1..], &cps, &head);
        assert_eq!(
            v.first_break.map(|b| b.seq),
            Some(1),
            "the oldest event deleted before its expiry"
        );
    }

    #[test]
    fn events_gone_by_expiry_are_not_a_break() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, head) = chain(start, 5);
        // Two days after the second event's expiry: events 1 and 2 have legitimately gone.
        let now = links[1].event.expires_at.as_timestamp().plus(time::Duration::hours(1));
        let v = check(now, &links[2..], &cps, &head);
        assert!(v.intact, "{v:?}");
        assert_eq!(v.from_seq, Some(3));
        // But event 3 has not expired yet: deleting it as well is a break.
        let v = check(now, &links[3..], &cps, &head);
        assert_eq!(v.first_break.map(|b| b.seq), Some(1));
    }

    #[test]
    fn a_link_inserted_before_the_oldest_retained_event_is_a_break() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, head) = chain(start, 5);
        let now = links[1].event.expires_at.as_timestamp().plus(time::Duration::hours(1));
        // A self-consistent fake #1 that claims to expire late: #3 cannot follow it by expiry.
        let mut fake = links[0].clone();
        fake.event.reason = "planted".into();
        fake.event.expires_at = links[4].event.expires_at;
        fake.hash = link_hash(1, GENESIS, None, &fake.event);
        let planted: Vec<ChainLink> = std::iter::once(fake).chain(links[2..].iter().cloned()).collect();
        let v = check(now, &planted, &cps, &head);
        assert_eq!(
            v.first_break.map(|b| b.seq),
            Some(1),
            "the checkpoint of #1's day disagrees"
        );
        // Without checkpoints, the expiry order alone gives it away.
        let v = check(now, &planted, &[], &head);
        assert_eq!(
            v.first_break.map(|b| b.seq),
            Some(3),
            "#3 expires before the planted #1"
        );
    }

    #[test]
    fn links_appended_while_verifying_are_not_a_break_but_links_past_every_head_are() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, _) = chain(start, 5);
        let head_then = ChainHead {
            seq: 3,
            hash: links[2].hash.clone(),
            at: links[2].event.at,
            expires_at: links[2].event.expires_at,
        };
        let head_now = next(Some(&head_then), &links[3].event).head;
        let mut v = Verifier::new(start, cps.clone(), Some(head_then.clone()));
        links.iter().for_each(|l| v.feed(l));
        let later = ChainHead { seq: 5, ..head_now };
        assert!(v.finish(links[0].event.chain.clone(), Some(&later)).intact);
        let mut v = Verifier::new(start, cps, Some(head_then.clone()));
        links.iter().for_each(|l| v.feed(l));
        let v = v.finish(links[0].event.chain.clone(), Some(&head_then));
        assert_eq!(v.first_break.map(|b| b.seq), Some(5), "links no head covers");
    }

    #[test]
    fn a_chain_without_its_head_is_a_break() {
        let start = Timestamp::from_unix_seconds(T0);
        let (links, cps, _) = chain(start, 2);
        let mut v = Verifier::new(start, cps, None);
        links.iter().for_each(|l| v.feed(l));
        assert!(!v.finish(links[0].event.chain.clone(), None).intact);
    }

    #[test]
    fn a_late_clock_does_not_move_the_chain_back() {
        let start = Timestamp::from_unix_seconds(T0);
        let first = next(None, &event(start));
        let second = next(Some(&first.head), &event(start.plus(time::Duration::seconds(-30))));
        assert_eq!(second.link.event.at, start);
        assert_eq!(second.link.event.expires_at, first.link.event.expires_at);
        assert_eq!(second.link.prev_hash, first.link.hash);
    }
}
