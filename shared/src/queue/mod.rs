//! Queue port: at-least-once delivery with a visibility timeout, as SQS gives it. Consumers must
//! be idempotent; the stores make them so.

pub mod embedded;
pub mod sqs;

use async_trait::async_trait;
use serde::Serialize;
use std::fmt::{Debug, Write};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("message body is {size} bytes; the queue accepts at most {MAX_BODY_BYTES}")]
    TooLarge { size: usize },
    /// The body is not quoted: it holds personal data.
    #[error("message {index} of the batch has a character SQS refuses at byte {position}")]
    ForbiddenCharacter { index: usize, position: usize },
    #[error("receive asks for 1 to 10 messages")]
    BadBatchSize,
    #[error("the receipt handle is not current")]
    StaleReceipt,
    #[error("queue backend failed: {0}")]
    Backend(String),
}

/// SQS's maximum message size since January 2026.
pub const MAX_BODY_BYTES: usize = 1_048_576;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// 1 on first delivery.
    pub receive_count: u32,
}

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Sends every body or fails: entries the backend refuses are retried, then reported.
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError>;
    /// Up to `max` (1-10) visible messages, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Acknowledges a message; unacknowledged ones come back after the visibility timeout.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Messages not yet deleted, visible or in flight (approximate on SQS).
    async fn pending(&self) -> Result<usize, QueueError>;
}

pub(crate) fn check_sizes(bodies: &[String]) -> Result<(), QueueError> {
    match bodies.iter().find(|b| b.len() > MAX_BODY_BYTES) {
        Some(b) => Err(QueueError::TooLarge { size: b.len() }),
        None => Ok(()),
    }
}

/// Refuses a batch as SQS would, before anything is sent: the emulator accepts what SQS refuses.
pub(crate) fn check_characters(bodies: &[String]) -> Result<(), QueueError> {
    for (index, body) in bodies.iter().enumerate() {
        if let Some(position) = first_refused_char(body) {
            return Err(QueueError::ForbiddenCharacter { index, position });
        }
    }
    Ok(())
}

/// Whether SQS accepts `body`. SQS's rule for message bodies (SendMessage): "A message can
/// include only XML, JSON, and unformatted text. The following Unicode characters are allowed:
/// #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF. Any characters
/// not included in this list will be rejected" (InvalidMessageContents; newer API docs say they
/// are replaced with U+FFFD instead: lost or altered, either way the body must not hold them).
pub fn sqs_accepts(body: &str) -> bool {
    first_refused_char(body).is_none()
}

/// The byte offset of the first character SQS refuses (see `sqs_accepts`). A `str` holds no
/// surrogates, so the refused ones are the controls other than tab, LF and CR (single bytes
/// below 0x20) and U+FFFE and U+FFFF (EF BF BE and EF BF BF in UTF-8): one byte scan finds them.
pub fn first_refused_char(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b < 0x20 || b == 0xEF) {
        let at = from + i;
        match bytes[at..] {
            [b, ..] if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') => return Some(at),
            [0xEF, 0xBF, 0xBE | 0xBF, ..] => return Some(at),
            _ => from = at + 1,
        }
    }
    None
}

/// JSON text with every character SQS refuses written as a `\uXXXX` escape, so SQS accepts any
/// JSON. In valid JSON such characters can only stand inside strings, where the escape is the
/// same character: the JSON is unchanged. Returned as it is, with no copy, when SQS accepts it.
pub fn escape_for_sqs(json: String) -> String {
    let Some(first) = first_refused_char(&json) else {
        return json;
    };
    let mut out = String::with_capacity(json.len() + 16);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        if char_accepted(c) {
            out.push(c);
        } else {
            // Every refused character is in the BMP: four hex digits always suffice.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
    }
    out
}

/// A value as a queue body: its JSON with the characters SQS refuses escaped. `serde_json`
/// writes U+FFFE and U+FFFF as they are, and ids and names from Meta or tenants may hold them.
pub fn to_body<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value).map(escape_for_sqs)
}

fn char_accepted(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqs_rule_at_its_boundaries() {
        let refused = [
            '\u{0}', '\u{8}', '\u{B}', '\u{C}', '\u{E}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ];
        let accepted = [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{7F}',
            '\u{D7FF}',
            '\u{E000}',
            '\u{EFFF}',
            '\u{FFBF}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
        ];
        for c in refused {
            let body = format!("ab{c}cd");
            assert!(!char_accepted(c), "U+{:04X}", u32::from(c));
            assert!(!sqs_accepts(&body), "U+{:04X}", u32::from(c));
            assert_eq!(first_refused_char(&body), Some(2), "U+{:04X}", u32::from(c));
        }
        for c in accepted {
            let body = format!("ab{c}cd");
            assert!(char_accepted(c), "U+{:04X}", u32::from(c));
            assert!(sqs_accepts(&body), "U+{:04X}", u32::from(c));
        }
        // The byte scan against the rule for every character: they must agree.
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                sqs_accepts(c.encode_utf8(&mut [0; 4])),
                char_accepted(c),
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert!(sqs_accepts(""));
        // Bad input: a refused character at the very end, after an accepted EF lead byte.
        assert_eq!(first_refused_char("\u{E000}x\u{FFFF}"), Some(4));
    }

    #[test]
    fn escaping_keeps_the_json_and_copies_nothing_when_clean() {
        let clean = r#"{"text":"hola \u00e9 😀"}"#.to_owned();
        let ptr = clean.as_ptr();
        let same = escape_for_sqs(clean);
        assert_eq!(same.as_ptr(), ptr, "returned as it is");
        // Bad input: non-characters and a control character inside JSON strings.
        let dirty = "{\"a\":\"x\u{FFFF}y\u{FFFE}\",\"b\":[\"\u{1}\"],\"c\":\"\u{10000}\"}".to_owned();
        let escaped = escape_for_sqs(dirty.clone());
        assert!(sqs_accepts(&escaped));
        assert_eq!(escaped, r#"{"a":"x\uffffy\ufffe","b":["\u0001"],"c":"𐀀"}"#);
        let parsed = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON");
        assert_eq!(parsed(&escaped), parsed(&dirty.replace('\u{1}', "\\u0001")));
        assert_eq!(parsed(&escaped)["a"], "x\u{FFFF}y\u{FFFE}");
    }

    #[test]
    fn to_body_escapes_what_serde_json_writes_as_it_is() {
        // Bad input: a name with U+FFFF, which serde_json does not escape.
        let value = serde_json::json!({ "name": "Ana\u{FFFF}" });
        assert!(!sqs_accepts(&serde_json::to_string(&value).expect("JSON")));
        let body = to_body(&value).expect("JSON");
        assert!(sqs_accepts(&body));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("JSON"), value);
    }
}
