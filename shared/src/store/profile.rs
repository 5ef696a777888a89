//! The rule of a contact upsert, shared by both adapters so they rewrite a profile in the same
//! cases: only when the event changes something. Each rewrite costs write units (the profile is
//! indexed, every link is its own item), and most messages come from a known contact whose
//! profile they do not change.

use crate::domain::{ContactUpsert, LinkedIdentifier};
use crate::timestamp::{Expiry, Timestamp};

/// What a profile stores, apart from its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProfileState {
    pub profile_name: Option<String>,
    pub identifiers: Vec<LinkedIdentifier>,
    pub first_seen: Timestamp,
    /// Time of the newest event applied to the profile fields. Moves only with a rewrite.
    pub last_seen: Timestamp,
    /// Event time of the contact's oldest item that may still be stored: the retention sweep's
    /// index key.
    pub oldest: Timestamp,
    pub expires_at: Expiry,
    /// Set by a rectification: events no longer rename the contact.
    pub name_rectified_at: Option<Timestamp>,
}

/// A profile to write, and which of its links need writing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub profile: ProfileState,
    /// The event was not older than the stored profile: its fields were applied.
    pub forward: bool,
    /// Links to (re)write, each with the profile's expiry: all of them when the expiry moved,
    /// else only the new ones.
    pub links: Vec<LinkedIdentifier>,
}

/// The rewrite `u` calls for, given the live stored profile (None: absent or expired), or None
/// when the event changes nothing.
pub(crate) fn rewrite(stored: Option<&ProfileState>, u: &ContactUpsert) -> Option<Rewrite> {
    let known = stored.map_or(&[][..], |p| &p.identifiers[..]);
    let new_links: Vec<LinkedIdentifier> = u
        .identifiers
        .iter()
        .enumerate()
        .filter(|(i, l)| !known.contains(l) && !u.identifiers[..*i].contains(l))
        .map(|(_, l)| l.clone())
        .collect();
    let Some(p) = stored else {
        return Some(Rewrite {
            profile: ProfileState {
                profile_name: u.profile_name.clone(),
                identifiers: new_links.clone(),
                first_seen: u.seen_at,
                last_seen: u.seen_at,
                oldest: u.seen_at,
                expires_at: u.expires_at,
                name_rectified_at: None,
            },
            forward: true,
            links: new_links,
        });
    };
    let forward = p.last_seen <= u.seen_at;
    // The person's own correction outranks the name their app sends.
    let takes_name = forward && p.name_rectified_at.is_none() && u.profile_name.is_some();
    let renamed = takes_name && u.profile_name != p.profile_name;
    let later = u.expires_at > p.expires_at;
    let older = u.seen_at < p.oldest;
    if new_links.is_empty() && !renamed && !later && !older {
        return None;
    }
    let mut profile = p.clone();
    profile.identifiers.extend(new_links.iter().cloned());
    if forward {
        profile.last_seen = u.seen_at;
    }
    if takes_name {
        profile.profile_name.clone_from(&u.profile_name);
    }
    profile.expires_at = p.expires_at.max(u.expires_at);
    profile.oldest = p.oldest.min(u.seen_at);
    profile.first_seen = p.first_seen.min(u.seen_at);
    let links = if later { profile.identifiers.clone() } else { new_links };
    Some(Rewrite {
        profile,
        forward,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, ContactId, TenantId};
    use crate::identity::{Identifier, IdentifierKind, SubjectKeySecret};
    use time::Duration;

    fn link(raw: &str) -> LinkedIdentifier {
        let secret = SubjectKeySecret::new(b"profile-rule-test-secret-0123456789".to_vec()).expect("long enough");
        LinkedIdentifier::new(&secret, Identifier::parse(IdentifierKind::Phone, raw).expect("valid"))
    }

    fn upsert(at: Timestamp, exp: Timestamp, name: Option<&str>, ids: Vec<LinkedIdentifier>) -> ContactUpsert {
        ContactUpsert {
            tenant: TenantId::new("acme").expect("valid"),
            contact: ContactId::new(Channel::WhatsApp, "AR.1").expect("valid"),
            profile_name: name.map(str::to_owned),
            identifiers: ids,
            seen_at: at,
            expires_at: Expiry::at(exp),
        }
    }

    #[test]
    fn a_known_contact_with_nothing_new_is_not_rewritten() {
        let t = Timestamp::from_unix_seconds(1_800_000_000);
        let exp = t.plus(Duration::days(30));
        let phone = link("+54 9 11 5555-0001");
        let first = rewrite(None, &upsert(t, exp, Some("Ana"), vec![phone.clone(), phone.clone()])).expect("created");
        assert_eq!(first.links, vec![phone.clone()], "repeats are linked once");
        let later = t.plus(Duration::hours(3));
        assert_eq!(
            rewrite(
                Some(&first.profile),
                &upsert(later, exp, Some("Ana"), vec![phone.clone()])
            ),
            None,
            "same name, same identifier, same expiry step"
        );
        assert_eq!(rewrite(Some(&first.profile), &upsert(later, exp, None, vec![])), None);
    }

    #[test]
    fn each_change_rewrites_and_only_a_later_expiry_rewrites_every_link() {
        let t = Timestamp::from_unix_seconds(1_800_000_000);
        let exp = t.plus(Duration::days(30));
        let (phone, other) = (link("+54 9 11 5555-0001"), link("+54 9 11 5555-0002"));
        let p = rewrite(None, &upsert(t, exp, None, vec![phone.clone()]))
            .expect("created")
            .profile;

        let added = rewrite(Some(&p), &upsert(t, exp, None, vec![phone.clone(), other.clone()])).expect("new id");
        assert_eq!(added.links, vec![other.clone()]);
        assert_eq!(added.profile.identifiers, vec![phone.clone(), other.clone()]);

        let renamed = rewrite(Some(&added.profile), &upsert(t, exp, Some("Ana"), vec![])).expect("new name");
        assert!(renamed.links.is_empty() && renamed.forward);
        assert_eq!(renamed.profile.profile_name.as_deref(), Some("Ana"));

        let next_day = t.plus(Duration::days(1));
        let moved = rewrite(
            Some(&renamed.profile),
            &upsert(next_day, exp.plus(Duration::days(1)), None, vec![]),
        )
        .expect("later expiry");
        assert_eq!(moved.links, vec![phone, other], "every link keeps up with the profile");
        assert_eq!(moved.profile.last_seen, next_day);
    }

    #[test]
    fn a_rectified_name_is_kept_while_other_fields_still_move() {
        let t = Timestamp::from_unix_seconds(1_800_000_000);
        let exp = t.plus(Duration::days(30));
        let mut p = rewrite(None, &upsert(t, exp, Some("Ana B"), vec![]))
            .expect("created")
            .profile;
        p.profile_name = Some("Ana Bertolini".to_owned());
        p.name_rectified_at = Some(t);
        let later = t.plus(Duration::hours(1));
        assert_eq!(
            rewrite(Some(&p), &upsert(later, exp, Some("Ana B"), vec![])),
            None,
            "the name the rectification replaced does not come back"
        );
        let phone = link("+54 9 11 5555-0004");
        let linked = rewrite(Some(&p), &upsert(later, exp, Some("Ana B"), vec![phone.clone()])).expect("new id");
        assert_eq!(linked.profile.profile_name.as_deref(), Some("Ana Bertolini"));
        assert_eq!(linked.profile.identifiers, vec![phone]);
        assert_eq!(linked.profile.name_rectified_at, Some(t));
    }

    #[test]
    fn an_older_event_links_but_does_not_roll_the_profile_back() {
        let t = Timestamp::from_unix_seconds(1_800_000_000);
        let exp = t.plus(Duration::days(30));
        let p = rewrite(None, &upsert(t, exp, Some("Ana"), vec![]))
            .expect("created")
            .profile;
        let before = t.plus(Duration::hours(-1));
        let old = rewrite(
            Some(&p),
            &upsert(before, exp, Some("Old"), vec![link("+54 9 11 5555-0003")]),
        )
        .expect("older item and a new id");
        assert!(!old.forward);
        assert_eq!(old.profile.profile_name.as_deref(), Some("Ana"));
        assert_eq!((old.profile.last_seen, old.profile.oldest), (t, before));
    }
}
