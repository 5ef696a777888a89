//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body with the app secret,
//! compared in constant time. Several secrets may be configured while one is being rotated.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// A Meta app secret. Debug never shows it.
#[derive(Clone)]
pub struct AppSecret(Vec<u8>);

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppSecret(<redacted>)")
    }
}

impl AppSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// `sha256=<hex>` for a body: what Meta sends, and what tests and the local stack's curl
    /// example sign with.
    pub fn sign(&self, body: &[u8]) -> String {
        format!("sha256={}", hex::encode(self.mac(body).finalize().into_bytes()))
    }

    /// The raw HMAC-SHA256 tag of `data`, as Meta's signed requests carry it.
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        self.mac(data).finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC-SHA256 of `data` under this secret, compared in constant time.
    pub fn verifies(&self, data: &[u8], tag: &[u8]) -> bool {
        self.mac(data).verify_slice(tag).is_ok()
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(body);
        mac
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("X-Hub-Signature-256 must be sha256= followed by 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Verifies the header against the raw body with any of the secrets. If that fails and the body
/// has non-ASCII bytes, tries once more over the `\uXXXX`-escaped body, the form older Meta
/// documentation says is signed.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[AppSecret]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let matches = |bytes: &[u8]| secrets.iter().any(|s| s.mac(bytes).verify_slice(&expected).is_ok());
    if matches(body) {
        return Ok(());
    }
    if !body.is_ascii()
        && let Ok(text) = std::str::from_utf8(body)
        && matches(escape_non_ascii(text).as_bytes())
    {
        return Ok(());
    }
    Err(SignatureError::Mismatch)
}

/// Every character outside ASCII as `\uXXXX` (UTF-16, lowercase hex).
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<AppSecret> {
        vec![AppSecret::new("old-secret"), AppSecret::new("new-secret")]
    }

    #[test]
    fn any_configured_secret_verifies() {
        let body = br#"{"object":"instagram"}"#;
        for s in secrets() {
            assert_eq!(verify(Some(&s.sign(body)), body, &secrets()), Ok(()));
        }
        let stranger = AppSecret::new("someone-else").sign(body);
        assert_eq!(verify(Some(&stranger), body, &secrets()), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        let body = b"{}";
        assert_eq!(verify(None, body, &secrets()), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("sha1=abcdef"), body, &secrets()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("sha256=xyz"), body, &secrets()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(&format!("sha256={}", "g".repeat(64))), body, &secrets()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_tampered_body_fails() {
        let s = &secrets()[0];
        let sig = s.sign(br#"{"a":1}"#);
        assert_eq!(
            verify(Some(&sig), br#"{"a":2}"#, &secrets()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_escaped_form_is_accepted_for_non_ascii_bodies() {
        let raw = "{\"text\":\"ñandú 😀\"}";
        let escaped = escape_non_ascii(raw);
        assert_eq!(escaped, "{\"text\":\"\\u00f1and\\u00fa \\ud83d\\ude00\"}");
        let sig = secrets()[1].sign(escaped.as_bytes());
        assert_eq!(verify(Some(&sig), raw.as_bytes(), &secrets()), Ok(()));
    }
}
