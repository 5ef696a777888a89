//! "May we contact this person?" for any identifier form. Opt-outs are recorded under every
//! identifier linked to the contact, so a phone number in any format, a WhatsApp user id or an
//! Instagram id finds the same answer.

use crate::domain::{Channel, OptOutScope, OptOutSource, OptState, TenantId};
use crate::identity::{Identifier, IdentifierError, IdentifierKind, SubjectKey, SubjectKeySecret};
use crate::store::{OptOutStore, StoreError};
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
/// else on WhatsApp is a phone number; on Instagram digits are an IGSID, anything else a username.
pub fn identifier_for(channel: Channel, raw: &str) -> Result<Identifier, IdentifierError> {
    let raw = raw.trim();
    let kind = match channel {
        Channel::WhatsApp if raw.contains('.') && raw.starts_with(|c: char| c.is_ascii_uppercase()) => {
            IdentifierKind::WhatsAppUserId
        }
        Channel::WhatsApp => IdentifierKind::Phone,
        Channel::Instagram if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => IdentifierKind::InstagramId,
        Channel::Instagram => IdentifierKind::InstagramUsername,
    };
    Identifier::parse(kind, raw)
}

pub async fn check(
    store: &dyn OptOutStore,
    secret: &SubjectKeySecret,
    tenant: &TenantId,
    channel: Channel,
    raw: &str,
    purpose: Purpose,
) -> Result<Contactability, ContactabilityError> {
    let key = secret.subject_key(&identifier_for(channel, raw)?);
    Ok(check_key(store, tenant, &key, purpose).await?)
}

pub async fn check_key(
    store: &dyn OptOutStore,
    tenant: &TenantId,
    key: &SubjectKey,
    purpose: Purpose,
) -> Result<Contactability, StoreError> {
    let scopes: &[OptOutScope] = match purpose {
        Purpose::Service => &[OptOutScope::All],
        Purpose::Marketing => &[OptOutScope::All, OptOutScope::Marketing],
    };
    let mut latest = None;
    for scope in scopes {
        if let Some(r) = store.get(tenant, key, *scope).await? {
            if r.state == OptState::OptedOut {
                return Ok(Contactability {
                    contactable: false,
                    scope: Some(*scope),
                    since: Some(r.event_at),
                    source: Some(r.source),
                });
            }
            latest = latest.max(Some((r.event_at, *scope, r.source)));
        }
    }
    Ok(Contactability {
        contactable: true,
        scope: latest.map(|(_, s, _)| s),
        since: latest.map(|(t, _, _)| t),
        source: latest.map(|(_, _, s)| s),
    })
}
