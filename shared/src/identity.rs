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
    /// App-scoped id of a Meta-login user of the app (a tenant's administrator), as Meta's
    /// data-deletion callback names them. Never linked to a contact: those people write to no one.
    MetaAppUserId,
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
            Self::MetaAppUserId => "meta_app_user",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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
    #[error("Meta app-scoped user id must be digits")]
    MetaAppUserId,
    #[error("an identifier must be 1-{MAX_RAW_BYTES} bytes without control characters")]
    Unusable,
}

/// The longest identifier kept in its raw form. Meta's ids are far shorter; this only bounds
/// what a hostile payload can make us hash and store.
pub const MAX_RAW_BYTES: usize = 256;

/// A normalized identifier. Personal data: never log it, log its subject key.
///
/// An identifier that does not normalize (a phone in a numbering range the phone library does not
/// know yet, a user id in a shape the parser has not seen) is kept in its raw form, as Meta sent
/// it: a STOP from it must still be honoured, so it cannot simply be dropped. Raw forms have
/// their own subject keys, which never equal a normalized one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "StoredIdentifier")]
pub struct Identifier {
    kind: IdentifierKind,
    value: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    raw: bool,
}

/// An identifier as decoded from a queue or a store, checked before it becomes an `Identifier`.
#[derive(Deserialize)]
struct StoredIdentifier {
    kind: IdentifierKind,
    value: String,
    #[serde(default)]
    raw: bool,
}

impl TryFrom<StoredIdentifier> for Identifier {
    type Error = IdentifierError;
    fn try_from(s: StoredIdentifier) -> Result<Self, IdentifierError> {
        if s.raw {
            return Identifier::raw_form(s.kind, &s.value).and_then(|i| {
                if i.value == s.value {
                    Ok(i)
                } else {
                    Err(IdentifierError::Unusable)
                }
            });
        }
        // The normalized shape, checked without re-running the phone library on every read.
        let ok = match s.kind {
            // E.164 as the phone library writes it: `+`, no leading zero, and as few as 4 or as
            // many as 17 digits (short national numbers; German fixed lines run long).
            IdentifierKind::Phone => s.value.strip_prefix('+').is_some_and(|d| {
                (4..=17).contains(&d.len()) && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit())
            }),
            _ => Identifier::parse(s.kind, &s.value).is_ok_and(|i| i.value == s.value),
        };
        if ok {
            Ok(Self {
                kind: s.kind,
                value: s.value,
                raw: false,
            })
        } else {
            Err(IdentifierError::Unusable)
        }
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = if self.raw { ", raw" } else { "" };
        write!(f, "Identifier({:?}{form}, <redacted>)", self.kind)
    }
}

impl Identifier {
    pub fn parse(kind: IdentifierKind, raw: &str) -> Result<Self, IdentifierError> {
        let value = match kind {
            IdentifierKind::Phone => phone::normalize(raw)?.as_str().to_owned(),
            IdentifierKind::Email => normalize_email(raw)?,
            IdentifierKind::InstagramUsername => normalize_username(raw)?,
            IdentifierKind::WhatsAppUserId => normalize_bsuid(raw)?,
            IdentifierKind::InstagramId => digits(raw).ok_or(IdentifierError::InstagramId)?,
            IdentifierKind::MetaAppUserId => digits(raw).ok_or(IdentifierError::MetaAppUserId)?,
        };
        Ok(Self {
            kind,
            value,
            raw: false,
        })
    }

    /// The identifier as Meta sent it (trimmed), for one that does not normalize.
    pub fn raw_form(kind: IdentifierKind, raw: &str) -> Result<Self, IdentifierError> {
        let v = raw.trim();
        if v.is_empty() || v.len() > MAX_RAW_BYTES || v.chars().any(char::is_control) {
            return Err(IdentifierError::Unusable);
        }
        Ok(Self {
            kind,
            value: v.to_owned(),
            raw: true,
        })
    }

    /// Normalized when it can be, else raw: what the system links for an identifier Meta sent.
    pub fn parse_or_raw(kind: IdentifierKind, raw: &str) -> Result<Self, IdentifierError> {
        Self::parse(kind, raw).or_else(|_| Self::raw_form(kind, raw))
    }

    /// Whether this identifier is kept as sent because it did not normalize.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Meta's numeric ids: 1-64 digits, trimmed.
fn digits(raw: &str) -> Option<String> {
    let v = raw.trim();
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_owned())
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
        if id.raw {
            mac.update(b"raw:");
        }
        mac.update(id.kind.tag().as_bytes());
        mac.update(b":");
        mac.update(id.value.as_bytes());
        SubjectKey(hex::encode(mac.finalize().into_bytes()))
    }

    /// A key for another purpose (`crate::seal`), so one secret keys everything and none of its
    /// uses reveals another's key: HMAC-SHA256(secret, 0x00 ‖ label). The leading zero byte starts
    /// no subject key's input (a tag, or `raw:`), so a derived key never equals a subject key.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(&[0]);
        mac.update(label);
        mac.finalize().into_bytes().into()
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
    fn identifiers_that_do_not_normalize_keep_their_own_key() {
        let s = secret();
        // A short code the phone library refuses: kept as sent, keyed apart from any phone.
        assert!(Identifier::parse(IdentifierKind::Phone, "12345").is_err());
        let raw = Identifier::parse_or_raw(IdentifierKind::Phone, " 12345 ").expect("raw form");
        assert!(raw.is_raw());
        assert_eq!(raw.value(), "12345");
        assert_eq!(
            s.subject_key(&raw),
            s.subject_key(&Identifier::parse_or_raw(IdentifierKind::Phone, "12345").expect("raw form"))
        );
        let valid = Identifier::parse_or_raw(IdentifierKind::Phone, "+5491123456789").expect("valid");
        assert!(!valid.is_raw());
        // The raw text of a valid number is not the number's key: raw keys never meet normalized ones.
        let forced_raw = Identifier::raw_form(IdentifierKind::Phone, "+5491123456789").expect("raw form");
        assert_ne!(s.subject_key(&valid), s.subject_key(&forced_raw));
        for bad in ["", "   ", "a\u{1}b", &"9".repeat(MAX_RAW_BYTES + 1)] {
            assert_eq!(
                Identifier::parse_or_raw(IdentifierKind::WhatsAppUserId, bad),
                Err(IdentifierError::Unusable),
                "{bad:?}"
            );
        }
    }

    /// Whatever `parse` accepts decodes again: a stored contact must never become unreadable.
    #[test]
    fn every_normalized_phone_decodes() {
        let forms = [
            "+49 30 1234567890123",
            "+49 1641",
            "+43 1 1100",
            "+98 9601",
            "+54 9 11 2345-6789",
            "+1 202 555 0143",
            "+34 600 111 222",
            "+39 06 1234 5678",
        ];
        let mut parsed = 0;
        for raw in forms {
            if let Ok(id) = Identifier::parse(IdentifierKind::Phone, raw) {
                parsed += 1;
                let json = serde_json::to_string(&id).expect("encode");
                let back: Identifier = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{raw}: {json}: {e}"));
                assert_eq!(back, id);
            }
        }
        assert!(parsed >= 5, "only {parsed} forms parsed");
    }

    /// Identifiers decoded from a queue or a store are held to the rules `parse` enforces.
    #[test]
    fn decoding_validates() {
        let ok = [
            r#"{"kind":"phone","value":"+5491123456789"}"#,
            r#"{"kind":"email","value":"ana@example.com"}"#,
            r#"{"kind":"whatsapp_user_id","value":"AR.1349"}"#,
            r#"{"kind":"phone","value":"12345","raw":true}"#,
        ];
        for json in ok {
            let id: Identifier = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(serde_json::to_string(&id).expect("encode"), json, "round trip");
        }
        let bad = [
            r#"{"kind":"phone","value":"5491123456789"}"#,
            r#"{"kind":"phone","value":"+54 911"}"#,
            r#"{"kind":"email","value":"Ana@Example.com"}"#,
            r#"{"kind":"instagram_id","value":"12a"}"#,
            r#"{"kind":"whatsapp_user_id","value":" AR.1"}"#,
            r#"{"kind":"phone","value":" 12345","raw":true}"#,
            r#"{"kind":"phone","value":"","raw":true}"#,
        ];
        for json in bad {
            assert!(
                serde_json::from_str::<Identifier>(json).is_err(),
                "{json} must be refused"
            );
        }
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(SubjectKeySecret::new(b"short".to_vec()).err(), Some(WeakSecret));
    }
}
