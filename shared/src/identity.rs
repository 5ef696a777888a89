//! Who a person is, across channels and tenants, without storing who they are: identifiers are
//! normalized, then turned into a subject key (a blind index) with a keyed HMAC. A plain hash of a
//! phone number can be reversed by enumerating numbers; a keyed one cannot without the secret.

use crate::phone::{self, PhoneError};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// E.164 phone number (WhatsApp `wa_id`, typed numbers).
    Phone,
    /// WhatsApp business-scoped user id (`user_id`, `from_user_id`), e.g. `AR.1234...`.
    #[serde(rename = "whatsapp_user_id")]
    WhatsAppUserId,
    /// Instagram-scoped id of a sender (IGSID).
    InstagramId,
    /// Instagram username, without `@`.
    InstagramUsername,
    Email,
}

impl IdentifierKind {
    /// The tag hashed in front of the value. Changing one orphans every stored key of that kind.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::WhatsAppUserId => "wa_user",
            Self::InstagramId => "igsid",
            Self::InstagramUsername => "ig_username",
            Self::Email => "email",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifierError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("email address must be local@domain")]
    Email,
    #[error("Instagram username must be 1-30 letters, digits, dots or underscores")]
    InstagramUsername,
    #[error("WhatsApp user id must look like CC.<letters and digits>")]
    WhatsAppUserId,
    #[error("Instagram id must be digits")]
    InstagramId,
}

/// A normalized identifier. Personal data: never log it, log its subject key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    kind: IdentifierKind,
    value: String,
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({:?}, <redacted>)", self.kind)
    }
}

impl Identifier {
    pub fn parse(kind: IdentifierKind, raw: &str) -> Result<Self, IdentifierError> {
        let value = match kind {
            IdentifierKind::Phone => phone::normalize(raw)?.as_str().to_owned(),
            IdentifierKind::Email => normalize_email(raw)?,
            IdentifierKind::InstagramUsername => normalize_username(raw)?,
            IdentifierKind::WhatsAppUserId => normalize_bsuid(raw)?,
            IdentifierKind::InstagramId => {
                let v = raw.trim();
                if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IdentifierError::InstagramId);
                }
                v.to_owned()
            }
        };
        Ok(Self { kind, value })
    }

    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

fn normalize_email(raw: &str) -> Result<String, IdentifierError> {
    let v = raw.trim().to_lowercase();
    let (local, domain) = v.split_once('@').ok_or(IdentifierError::Email)?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !v.chars().any(char::is_whitespace)
        && v.len() <= 254;
    if ok { Ok(v) } else { Err(IdentifierError::Email) }
}

fn normalize_username(raw: &str) -> Result<String, IdentifierError> {
    let v = raw.trim();
    let v = v.strip_prefix('@').unwrap_or(v).to_lowercase();
    let ok = (1..=30).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if ok {
        Ok(v)
    } else {
        Err(IdentifierError::InstagramUsername)
    }
}

/// `CC.<alnum>` or `CC.ENT.<alnum>`; opaque and case-sensitive, so only trimmed.
fn normalize_bsuid(raw: &str) -> Result<String, IdentifierError> {
    let v = raw.trim();
    let mut parts = v.split('.');
    let cc = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let tail = match rest.as_slice() {
        [tail] | ["ENT", tail] => *tail,
        _ => return Err(IdentifierError::WhatsAppUserId),
    };
    let ok = cc.len() == 2
        && cc.bytes().all(|b| b.is_ascii_uppercase())
        && (1..=128).contains(&tail.len())
        && tail.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(IdentifierError::WhatsAppUserId)
    }
}

/// The secret behind subject keys. Its Debug output never shows the bytes.
#[derive(Clone)]
pub struct SubjectKeySecret(Vec<u8>);

impl fmt::Debug for SubjectKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKeySecret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the subject-key secret must be at least {MIN_SECRET_BYTES} bytes")]
pub struct WeakSecret;

pub const MIN_SECRET_BYTES: usize = 32;

impl SubjectKeySecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, WeakSecret> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret);
        }
        Ok(Self(bytes))
    }

    pub fn subject_key(&self, id: &Identifier) -> SubjectKey {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(id.kind.tag().as_bytes());
        mac.update(b":");
        mac.update(id.value.as_bytes());
        SubjectKey(hex::encode(mac.finalize().into_bytes()))
    }
}

/// HMAC-SHA256 blind index of one identifier, lowercase hex. Safe to log and to store anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectKey(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a subject key is 64 lowercase hex characters")]
pub struct BadSubjectKey;

impl SubjectKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SubjectKey {
    type Error = BadSubjectKey;
    fn try_from(s: String) -> Result<Self, BadSubjectKey> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s))
        } else {
            Err(BadSubjectKey)
        }
    }
}

impl From<SubjectKey> for String {
    fn from(k: SubjectKey) -> String {
        k.0
    }
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SubjectKeySecret {
        SubjectKeySecret::new(b"test-secret-test-secret-test-secret!".to_vec()).expect("long enough")
    }

    fn phone_key(raw: &str) -> SubjectKey {
        let id = Identifier::parse(IdentifierKind::Phone, raw).expect("valid phone");
        secret().subject_key(&id)
    }

    /// Same person, any form: equal keys. Different people: different keys.
    #[test]
    fn phone_forms_table() {
        let same_person: &[&[&str]] = &[
            &[
                "+54 9 11 2345-6789",
                "011 15 2345-6789",
                "5491123456789",
                "+54 11 2345-6789",
            ],
            &["+34 600 111 222", "34600111222", "0034600111222"],
            &["+52 81 1234 5678", "5218112345678", "+52 1 81 1234 5678"],
            &["+55 11 91234-5678", "5511912345678"],
        ];
        let mut group_keys = Vec::new();
        for group in same_person {
            let keys: Vec<SubjectKey> = group.iter().map(|f| phone_key(f)).collect();
            for (form, key) in group.iter().zip(&keys) {
                assert_eq!(key, &keys[0], "{form:?} should meet {:?}", group[0]);
            }
            group_keys.push(keys[0].clone());
        }
        let mut unique = group_keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), group_keys.len(), "different people must not share a key");
        let neighbours = ["+54 9 11 2345-6780", "+34 600 111 223", "+52 81 1234 5679"];
        for n in neighbours {
            assert!(
                !group_keys.contains(&phone_key(n)),
                "{n:?} collides with another person"
            );
        }
    }

    #[test]
    fn the_kind_is_part_of_the_key() {
        let s = secret();
        let ig = Identifier::parse(IdentifierKind::InstagramId, "17841400000000").expect("valid");
        let other_secret = SubjectKeySecret::new(vec![7u8; 32]).expect("long enough");
        assert_ne!(s.subject_key(&ig), other_secret.subject_key(&ig));
        // The same text as a username must not find the person with that IGSID.
        let username = Identifier::parse(IdentifierKind::InstagramUsername, "17841400000000").expect("valid");
        assert_eq!(username.value(), ig.value());
        assert_ne!(s.subject_key(&ig), s.subject_key(&username));
    }

    #[test]
    fn emails_and_usernames_normalize() {
        let a = Identifier::parse(IdentifierKind::Email, "  Ana.Perez@Example.COM ").expect("valid");
        assert_eq!(a.value(), "ana.perez@example.com");
        let u = Identifier::parse(IdentifierKind::InstagramUsername, "@Ana_Perez.ok").expect("valid");
        assert_eq!(u.value(), "ana_perez.ok");
        for bad in ["no-at-sign", "a@b", "@example.com", "a b@example.com"] {
            assert_eq!(
                Identifier::parse(IdentifierKind::Email, bad),
                Err(IdentifierError::Email),
                "{bad:?}"
            );
        }
        for bad in ["", "@", "with space", "ñandú", &"x".repeat(31)] {
            assert!(
                Identifier::parse(IdentifierKind::InstagramUsername, bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn whatsapp_user_ids() {
        assert!(Identifier::parse(IdentifierKind::WhatsAppUserId, "AR.13491208655302741918").is_ok());
        assert!(Identifier::parse(IdentifierKind::WhatsAppUserId, "US.ENT.11815799212886844830").is_ok());
        for bad in ["", "ar.123", "AR.", "AR.12.34", "ARG.123", "AR.12-3"] {
            assert!(
                Identifier::parse(IdentifierKind::WhatsAppUserId, bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let id = Identifier::parse(IdentifierKind::Email, "ana@example.com").expect("valid");
        assert!(!format!("{id:?}").contains("ana"));
        assert!(!format!("{:?}", secret()).contains("test-secret"));
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(SubjectKeySecret::new(b"short".to_vec()).err(), Some(WeakSecret));
    }
}
