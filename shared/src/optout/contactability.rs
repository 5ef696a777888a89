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

/// How an identifier given for a channel is read: WhatsApp user ids look like `CC.<id>`, anything
/// else on WhatsApp is a phone number; on Instagram only the scoped id (IGSID) is accepted, since
/// usernames are not linked to contacts yet and an unknown username would read as contactable.
pub fn identifier_for(channel: Channel, raw: &str) -> Result<Identifier, IdentifierError> {
    let raw = raw.trim();
    let kind = match channel {
        Channel::WhatsApp if raw.contains('.') && raw.starts_with(|c: char| c.is_ascii_uppercase()) => {
            IdentifierKind::WhatsAppUserId
        }
        Channel::WhatsApp => IdentifierKind::Phone,
        Channel::Instagram => IdentifierKind::InstagramId,
    };
    Identifier::parse(kind, raw)
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
    let key = secret.subject_key(&identifier_for(channel, raw)?);
    Ok(check_key(opt_outs, conversations, tenant, &key, purpose).await?)
}

/// Decides on every identifier linked to the person in this tenant, not only the one asked
/// about: a number linked after a STOP is as opted out as the one that sent it.
pub async fn check_key(
    opt_outs: &dyn OptOutStore,
    conversations: &dyn ConversationStore,
    tenant: &TenantId,
    key: &SubjectKey,
    purpose: Purpose,
) -> Result<Contactability, StoreError> {
    let mut keys = vec![key.clone()];
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
            if latest.as_ref().is_none_or(|l| r.event_at > l.event_at) {
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
