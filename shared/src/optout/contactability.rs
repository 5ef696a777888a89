//! "May we contact this person?" for any identifier form. Opt-outs are recorded under every
//! identifier linked to the contact, so a phone number in any format, a WhatsApp user id or an
//! Instagram id finds the same answer.

use crate::domain::{Channel, OptOutRecord, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::{Identifier, IdentifierError, IdentifierKind, SubjectKey, SubjectKeySecret};
use crate::store::{ConversationStore, OptOutStore, StoreError};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// What a message is for: STOP blocks both; Meta's marketing preference blocks marketing only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Service,
    Marketing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contactability {
    pub contactable: bool,
    /// The scope of the record that decided, if any.
    pub scope: Option<OptOutScope>,
    pub since: Option<Timestamp>,
    pub source: Option<OptOutSource>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContactabilityError {
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The subject keys an id given for a channel may be recorded under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The normalized form's key first, when there is one, then the raw forms'.
    pub keys: Vec<SubjectKey>,
    /// Why the id does not normalize, if it does not.
    unnormalized: Option<IdentifierError>,
}

/// How an identifier given for a channel is read: WhatsApp user ids look like `CC.<id>`, anything
/// else on WhatsApp is a phone number; on Instagram the scoped id (IGSID). Besides the normalized
/// form, the raw forms Meta could have sent it in: an identifier that did not normalize was linked
/// (and opted out) under its raw form, as sent.
pub fn asked(secret: &SubjectKeySecret, channel: Channel, raw: &str) -> Result<Asked, IdentifierError> {
    let raw = raw.trim();
    let kinds: &[IdentifierKind] = match channel {
        Channel::WhatsApp => &[IdentifierKind::WhatsAppUserId, IdentifierKind::Phone],
        Channel::Instagram => &[IdentifierKind::InstagramId],
    };
    let likely = match channel {
        Channel::WhatsApp if raw.contains('.') && raw.starts_with(|c: char| c.is_ascii_uppercase()) => {
            IdentifierKind::WhatsAppUserId
        }
        Channel::WhatsApp => IdentifierKind::Phone,
        Channel::Instagram => IdentifierKind::InstagramId,
    };
    let mut keys = Vec::with_capacity(kinds.len() + 1);
    let unnormalized = match Identifier::parse(likely, raw) {
        Ok(normalized) => {
            keys.push(secret.subject_key(&normalized));
            None
        }
        Err(e) => Some(e),
    };
    for kind in kinds {
        keys.push(secret.subject_key(&Identifier::raw_form(*kind, raw)?));
    }
    Ok(Asked { keys, unnormalized })
}

pub async fn check(
    opt_outs: &dyn OptOutStore,
    conversations: &dyn ConversationStore,
    secret: &SubjectKeySecret,
    tenant: &TenantId,
    channel: Channel,
    raw: &str,
    purpose: Purpose,
) -> Result<Contactability, ContactabilityError> {
    let asked = asked(secret, channel, raw)?;
    check_asked(opt_outs, conversations, tenant, &asked, purpose).await
}

/// An id that does not normalize is answered only if it was seen in its raw form (linked to a
/// contact, or opted out): otherwise it is a mistyped id or an Instagram username (not linked to
/// contacts), and "contactable" would be a guess.
pub async fn check_asked(
    opt_outs: &dyn OptOutStore,
    conversations: &dyn ConversationStore,
    tenant: &TenantId,
    asked: &Asked,
    purpose: Purpose,
) -> Result<Contactability, ContactabilityError> {
    if let Some(e) = &asked.unnormalized {
        let mut seen = false;
        for key in &asked.keys {
            seen = seen
                || conversations
                    .find_subject(key)
                    .await?
                    .iter()
                    .any(|c| &c.tenant == tenant)
                || opt_outs.get(tenant, key, OptOutScope::All).await?.is_some()
                || opt_outs.get(tenant, key, OptOutScope::Marketing).await?.is_some();
        }
        if !seen {
            return Err(ContactabilityError::Identifier(e.clone()));
        }
    }
    Ok(check_keys(opt_outs, conversations, tenant, &asked.keys, purpose).await?)
}

/// `check_keys` for one subject key.
pub async fn check_key(
    opt_outs: &dyn OptOutStore,
    conversations: &dyn ConversationStore,
    tenant: &TenantId,
    key: &SubjectKey,
    purpose: Purpose,
) -> Result<Contactability, StoreError> {
    check_keys(opt_outs, conversations, tenant, std::slice::from_ref(key), purpose).await
}

/// Decides on every identifier linked to the person in this tenant, not only the ones asked
/// about: a number linked after a STOP is as opted out as the one that sent it.
pub async fn check_keys(
    opt_outs: &dyn OptOutStore,
    conversations: &dyn ConversationStore,
    tenant: &TenantId,
    asked: &[SubjectKey],
    purpose: Purpose,
) -> Result<Contactability, StoreError> {
    let mut keys = asked.to_vec();
    for key in asked {
        for found in conversations
            .find_subject(key)
            .await?
            .into_iter()
            .filter(|c| &c.tenant == tenant)
        {
            if let Some(contact) = conversations.get_contact(tenant, &found.contact).await? {
                for linked in contact.identifiers {
                    if !keys.contains(&linked.subject_key) {
                        keys.push(linked.subject_key);
                    }
                }
            }
        }
    }
    let scopes: &[OptOutScope] = match purpose {
        Purpose::Service => &[OptOutScope::All],
        Purpose::Marketing => &[OptOutScope::All, OptOutScope::Marketing],
    };
    let mut latest: Option<OptOutRecord> = None;
    for scope in scopes {
        let mut records = Vec::new();
        for k in &keys {
            if let Some(r) = opt_outs.get(tenant, k, *scope).await? {
                records.push(r);
            }
        }
        if let Some(r) = OptOutRecord::in_force(&records) {
            if r.state == OptState::OptedOut {
                return Ok(Contactability {
                    contactable: false,
                    scope: Some(*scope),
                    since: Some(r.event_at),
                    source: Some(r.source),
                });
            }
            if latest.as_ref().is_none_or(|l| r.supersedes(l)) {
                latest = Some(r.clone());
            }
        }
    }
    Ok(Contactability {
        contactable: true,
        scope: latest.as_ref().map(|r| r.scope),
        since: latest.as_ref().map(|r| r.event_at),
        source: latest.map(|r| r.source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SettableClock;
    use std::sync::Arc;

    /// An id that does not normalize and was never seen is refused, not guessed contactable:
    /// an Instagram username, a mistyped phone.
    #[tokio::test]
    async fn an_unseen_raw_id_is_refused() {
        let stores = crate::store::embedded::stores(Arc::new(SettableClock::at(Timestamp::from_unix_seconds(0))));
        let secret = SubjectKeySecret::new(vec![3u8; 32]).expect("long enough");
        let tenant = TenantId::new("acme").expect("valid");
        let (o, c) = (stores.opt_outs.as_ref(), stores.conversations.as_ref());
        for (channel, id) in [(Channel::Instagram, "ana.perez"), (Channel::WhatsApp, "12345")] {
            let got = check(o, c, &secret, &tenant, channel, id, Purpose::Service).await;
            assert!(matches!(got, Err(ContactabilityError::Identifier(_))), "{id}: {got:?}");
        }
        let got = check(
            o,
            c,
            &secret,
            &tenant,
            Channel::WhatsApp,
            "+54 9 11 2345-6789",
            Purpose::Service,
        )
        .await;
        assert!(got.expect("a valid phone is answered").contactable);
    }
}
