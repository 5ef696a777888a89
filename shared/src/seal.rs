//! Tokens that leave the system in URLs (page cursors, contact handles), sealed so they carry no
//! personal data: DynamoDB keys hold contact ids, and a contact id is a phone number when Meta
//! sends no user id, while URLs end up in browser histories and proxy logs.
//!
//! AES-SIV (RFC 5297) is deterministic and misuse-resistant: no nonce to get wrong, and the same
//! input always seals to the same token, which is what makes a contact handle stable and
//! resolvable without a lookup. The associated data names the query or tenant a token was issued
//! for, so a token opens nowhere else. Every token is base64url without padding of
//! `synthetic IV (16 bytes) ‖ ciphertext`; contact handles carry a `c_` prefix.

use crate::domain::{Channel, ContactId, TenantId};
use crate::identity::SubjectKeySecret;
use crate::store::Cursor;
use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Labels of the two halves of the AES-SIV key (S2V's CMAC key, then CTR's). Changing either
/// invalidates every handle and cursor handed out.
const MAC_KEY_LABEL: &[u8] = b"socio-virtual/admin-seal/v1/s2v";
const ENC_KEY_LABEL: &[u8] = b"socio-virtual/admin-seal/v1/ctr";

/// What makes a contact handle recognisable in a path or a log line.
pub const HANDLE_PREFIX: &str = "c_";

/// Longer tokens are refused before decoding: no cursor or handle this system issues comes near.
const MAX_TOKEN_CHARS: usize = 4096;

/// AES-SIV's synthetic IV, prepended to every sealed text.
const SIV_TAG_BYTES: usize = 16;

/// The longest store cursor a sealed one carries within `MAX_TOKEN_CHARS` (unpadded base64: 4
/// characters per 3 bytes). The stores' cursors are their keys, a few hundred bytes; a longer
/// text seals to a token that is refused, never to one that opens as something else.
pub const MAX_CURSOR_BYTES: usize = MAX_TOKEN_CHARS / 4 * 3 - SIV_TAG_BYTES;

/// A token that does not open: altered, issued under another key, or for another query or tenant.
/// Deliberately says no more, so a caller learns nothing by probing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a token issued for this query")]
pub struct BadToken;

/// Seals and opens tokens with a key derived from the subject-key secret.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 64],
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

/// A contact as the admin API names it: `c_` and the sealed contact key. Stable for a contact in a
/// tenant, different in every other tenant, and meaningless without the key, so it is safe in
/// paths, logs and audit events.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactHandle(String);

/// A stored handle (in an audit event) is held to the shape `contact_handle` gives: it must never
/// be a place a contact id could slip into.
impl TryFrom<String> for ContactHandle {
    type Error = BadToken;
    fn try_from(s: String) -> Result<Self, BadToken> {
        let body = s.strip_prefix(HANDLE_PREFIX).ok_or(BadToken)?;
        let ok = !body.is_empty()
            && s.len() <= MAX_TOKEN_CHARS
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok { Ok(Self(s)) } else { Err(BadToken) }
    }
}

impl From<ContactHandle> for String {
    fn from(h: ContactHandle) -> String {
        h.0
    }
}

impl ContactHandle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContactHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The query a page cursor was issued for; a cursor opens only for the same one.
#[derive(Clone, Copy, Debug)]
pub enum CursorScope<'a> {
    Contacts(&'a TenantId),
    Messages(&'a TenantId, &'a ContactHandle),
    Events(&'a TenantId),
    OptOutReviews(&'a TenantId),
    Principals,
    /// A chain's events within a time range (epoch milliseconds).
    Audit(&'a crate::domain::AuditChain, Option<i64>, Option<i64>),
}

impl CursorScope<'_> {
    /// Tenant ids are `[a-z0-9-]` and handles base64url, so `:` separates without ambiguity.
    fn associated_data(&self) -> String {
        match self {
            Self::Contacts(t) => format!("cursor:contacts:{t}"),
            Self::Messages(t, h) => format!("cursor:messages:{t}:{h}"),
            Self::Events(t) => format!("cursor:events:{t}"),
            Self::OptOutReviews(t) => format!("cursor:optout-reviews:{t}"),
            Self::Principals => "cursor:principals".to_owned(),
            Self::Audit(chain, from, to) => {
                format!("cursor:audit:{}:{from:?}:{to:?}", crate::store::keys::audit_pk(chain))
            }
        }
    }
}

fn handle_associated_data(tenant: &TenantId) -> String {
    format!("contact-handle:v1:{tenant}")
}

fn channel_tag(channel: Channel) -> u8 {
    match channel {
        Channel::WhatsApp => b'w',
        Channel::Instagram => b'i',
    }
}

impl Sealer {
    pub fn new(secret: &SubjectKeySecret) -> Self {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&secret.derive_key(MAC_KEY_LABEL));
        key[32..].copy_from_slice(&secret.derive_key(ENC_KEY_LABEL));
        Self { key }
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new(&self.key.into())
    }

    /// Seals `plaintext` under `associated_data`; the same inputs always give the same token.
    pub fn seal(&self, associated_data: &str, plaintext: &[u8]) -> String {
        // Fails only past 126 associated-data items; this passes one.
        let sealed = self
            .cipher()
            .encrypt([associated_data.as_bytes()], plaintext)
            .unwrap_or_else(|_| unreachable!("one associated-data item is within AES-SIV's limit"));
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The plaintext of a token sealed under the same associated data, or `BadToken`.
    pub fn open(&self, associated_data: &str, token: &str) -> Result<Vec<u8>, BadToken> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(BadToken);
        }
        let sealed = URL_SAFE_NO_PAD.decode(token).map_err(|_| BadToken)?;
        self.cipher()
            .decrypt([associated_data.as_bytes()], &sealed)
            .map_err(|_| BadToken)
    }

    /// The public form of a store cursor, for the query it pages through.
    pub fn seal_cursor(&self, scope: CursorScope<'_>, cursor: &Cursor) -> String {
        self.seal(&scope.associated_data(), cursor.token().as_bytes())
    }

    /// The store cursor behind a public token, if it was issued for this very query.
    pub fn open_cursor(&self, scope: CursorScope<'_>, token: &str) -> Result<Cursor, BadToken> {
        let plain = self.open(&scope.associated_data(), token)?;
        String::from_utf8(plain).map(Cursor::from_token).map_err(|_| BadToken)
    }

    /// The handle of a contact in a tenant: the sealed channel and stable id.
    pub fn contact_handle(&self, tenant: &TenantId, contact: &ContactId) -> ContactHandle {
        let mut plain = Vec::with_capacity(1 + contact.stable_id.len());
        plain.push(channel_tag(contact.channel));
        plain.extend_from_slice(contact.stable_id.as_bytes());
        ContactHandle(format!(
            "{HANDLE_PREFIX}{}",
            self.seal(&handle_associated_data(tenant), &plain)
        ))
    }

    /// The contact a handle names, if it was issued for this tenant; no storage lookup.
    pub fn open_contact_handle(&self, tenant: &TenantId, handle: &str) -> Result<(ContactHandle, ContactId), BadToken> {
        let token = handle.strip_prefix(HANDLE_PREFIX).ok_or(BadToken)?;
        let plain = self.open(&handle_associated_data(tenant), token)?;
        let (tag, id) = plain.split_first().ok_or(BadToken)?;
        let channel = [Channel::WhatsApp, Channel::Instagram]
            .into_iter()
            .find(|c| channel_tag(*c) == *tag)
            .ok_or(BadToken)?;
        let id = std::str::from_utf8(id).map_err(|_| BadToken)?;
        let contact = ContactId::new(channel, id).map_err(|_| BadToken)?;
        Ok((ContactHandle(handle.to_owned()), contact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE_ID: &str = "5491123456789";

    fn sealer() -> Sealer {
        Sealer::new(&SubjectKeySecret::new(b"test-secret-test-secret-test-secret!".to_vec()).expect("long enough"))
    }

    fn tenant(t: &str) -> TenantId {
        TenantId::new(t).expect("tenant")
    }

    fn contact() -> ContactId {
        ContactId::new(Channel::WhatsApp, PHONE_ID).expect("contact")
    }

    /// Found by fuzzing (`cursor_decode`): a 2 KB input of replacement characters, sealed as a
    /// cursor, made a token past `MAX_TOKEN_CHARS`. Up to `MAX_CURSOR_BYTES` a cursor
    /// round-trips; past it the token is refused.
    #[test]
    fn cursors_round_trip_up_to_the_bound_and_longer_ones_are_refused() {
        let s = sealer();
        let t = tenant("tenant-a");
        let scope = || CursorScope::Contacts(&t);
        let fits = Cursor::from_token("é".repeat(MAX_CURSOR_BYTES / 2));
        let sealed = s.seal_cursor(scope(), &fits);
        assert_eq!(sealed.len(), MAX_TOKEN_CHARS);
        assert_eq!(s.open_cursor(scope(), &sealed), Ok(fits));
        let over = Cursor::from_token("x".repeat(MAX_CURSOR_BYTES + 1));
        assert_eq!(s.open_cursor(scope(), &s.seal_cursor(scope(), &over)), Err(BadToken));
    }

    #[test]
    fn a_sealed_token_opens_to_what_was_sealed() {
        let s = sealer();
        let token = s.seal("ad", b"plain text");
        assert_eq!(s.open("ad", &token), Ok(b"plain text".to_vec()));
        assert_eq!(s.seal("ad", b"plain text"), token, "deterministic");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let empty = s.seal("ad", b"");
        assert_eq!(s.open("ad", &empty), Ok(Vec::new()));
    }

    #[test]
    fn cursors_round_trip_and_hide_the_key_they_carry() {
        let s = sealer();
        let t = tenant("acme");
        // What the store's cursors are: base64 of a DynamoDB key that holds the contact id.
        let json = format!("{{\"scope\":\"acme\",\"position\":{{\"pk\":\"acme#whatsapp#{PHONE_ID}\"}}}}");
        let store_cursor = Cursor::from_token(URL_SAFE_NO_PAD.encode(json));
        let token = s.seal_cursor(CursorScope::Contacts(&t), &store_cursor);
        assert_eq!(
            s.open_cursor(CursorScope::Contacts(&t), &token),
            Ok(store_cursor.clone())
        );
        assert!(!token.contains(PHONE_ID) && !token.contains("acme"), "{token}");
        assert!(!token.contains(&store_cursor.token()[..16]), "{token}");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let s = sealer();
        let t = tenant("acme");
        let token = s.seal_cursor(CursorScope::Events(&t), &Cursor::from_token("position"));
        let raw = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
        for i in 0..raw.len() {
            for flip in [0x01, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= flip;
                let bad = URL_SAFE_NO_PAD.encode(bad);
                assert_eq!(s.open_cursor(CursorScope::Events(&t), &bad), Err(BadToken), "byte {i}");
            }
        }
        let mut handle = s.contact_handle(&t, &contact()).as_str().to_owned().into_bytes();
        let body = HANDLE_PREFIX.len()..handle.len();
        for i in body {
            let original = handle[i];
            handle[i] = if original == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(handle.clone()).expect("ascii");
            assert_eq!(s.open_contact_handle(&t, &bad), Err(BadToken), "char {i}");
            handle[i] = original;
        }
        // Truncated, extended, not base64, empty, oversized: refused, never a panic.
        for bad in [
            &token[..token.len() - 1],
            &format!("{token}A"),
            "not base64!",
            "",
            &"A".repeat(MAX_TOKEN_CHARS + 4),
        ] {
            assert_eq!(s.open_cursor(CursorScope::Events(&t), bad), Err(BadToken), "{bad:.20}");
        }
    }

    #[test]
    fn a_token_opens_only_for_its_query() {
        let s = sealer();
        let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
        let handle = s.contact_handle(&a, &contact());
        let other = s.contact_handle(&a, &ContactId::new(Channel::Instagram, "17841400000000").expect("c"));
        let cursor = Cursor::from_token("position");
        let token = s.seal_cursor(CursorScope::Contacts(&a), &cursor);
        for elsewhere in [
            CursorScope::Contacts(&b),
            CursorScope::Events(&a),
            CursorScope::Messages(&a, &handle),
        ] {
            assert_eq!(s.open_cursor(elsewhere, &token), Err(BadToken), "{elsewhere:?}");
        }
        let messages = s.seal_cursor(CursorScope::Messages(&a, &handle), &cursor);
        assert_eq!(
            s.open_cursor(CursorScope::Messages(&a, &other), &messages),
            Err(BadToken)
        );
        assert_eq!(s.open_cursor(CursorScope::Messages(&a, &handle), &messages), Ok(cursor));
        // A cursor is no handle and a handle no cursor.
        assert_eq!(
            s.open_contact_handle(&a, &format!("{HANDLE_PREFIX}{token}")),
            Err(BadToken)
        );
        let handle_body = handle.as_str().strip_prefix(HANDLE_PREFIX).expect("prefixed");
        assert_eq!(s.open_cursor(CursorScope::Contacts(&a), handle_body), Err(BadToken));
        // Another secret opens nothing.
        let stranger = Sealer::new(&SubjectKeySecret::new(vec![7u8; 32]).expect("long enough"));
        assert_eq!(stranger.open_cursor(CursorScope::Contacts(&a), &token), Err(BadToken));
        assert_eq!(stranger.open_contact_handle(&a, handle.as_str()), Err(BadToken));
    }

    #[test]
    fn handles_are_stable_per_tenant_and_reveal_nothing() {
        let s = sealer();
        let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
        let handle = s.contact_handle(&a, &contact());
        assert_eq!(
            sealer().contact_handle(&a, &contact()),
            handle,
            "stable across calls and instances"
        );
        assert!(handle.as_str().starts_with(HANDLE_PREFIX));
        assert_ne!(s.contact_handle(&b, &contact()), handle, "differs per tenant");
        let instagram = ContactId::new(Channel::Instagram, PHONE_ID).expect("c");
        assert_ne!(s.contact_handle(&a, &instagram), handle, "the channel is part of it");
        assert!(!handle.as_str().contains(PHONE_ID) && !handle.as_str().contains("whatsapp"));
        assert_eq!(
            s.open_contact_handle(&a, handle.as_str()),
            Ok((handle.clone(), contact()))
        );
        assert_eq!(
            s.open_contact_handle(&b, handle.as_str()),
            Err(BadToken),
            "not in another tenant"
        );
        let unprefixed = handle.as_str().strip_prefix(HANDLE_PREFIX).expect("prefixed");
        assert_eq!(s.open_contact_handle(&a, unprefixed), Err(BadToken));
        assert_eq!(
            s.open_contact_handle(&a, &format!("whatsapp:{PHONE_ID}")),
            Err(BadToken)
        );
        assert_eq!(format!("{s:?}"), "Sealer(<redacted>)");
    }
}
