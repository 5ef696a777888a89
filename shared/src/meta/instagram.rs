//! Instagram messaging entries (`messaging[]`), read tolerantly; each event kept raw beside the
//! parts the processor interprets.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub id: String,
    #[serde(default)]
    pub messaging: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct Event {
    pub sender: IdRef,
    pub recipient: IdRef,
    pub timestamp: i64,
    pub message: Option<Message>,
    pub reaction: Option<Reaction>,
    pub read: Option<Read>,
    pub postback: Option<Postback>,
    pub referral: Option<serde_json::Value>,
    pub message_edit: Option<MessageEdit>,
}

#[derive(Debug, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub mid: String,
    #[serde(default)]
    pub is_echo: bool,
    #[serde(default)]
    pub is_deleted: bool,
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Vec<serde_json::Value>,
    pub quick_reply: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Reaction {
    pub mid: String,
    pub action: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Read {
    pub mid: String,
}

#[derive(Debug, Deserialize)]
pub struct Postback {
    pub mid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MessageEdit {
    pub mid: String,
    pub num_edit: Option<u32>,
}

/// Instagram examples mix milliseconds and seconds: tell them apart by magnitude. None when the
/// time is not plausibly Meta's (see `whatsapp::PLAUSIBLE_SECONDS`).
pub fn timestamp_ms(t: i64) -> Option<i64> {
    let ms = if t < 100_000_000_000 { t.saturating_mul(1000) } else { t };
    super::whatsapp::PLAUSIBLE_SECONDS.contains(&(ms / 1000)).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_are_told_apart_and_nonsense_refused() {
        assert_eq!(timestamp_ms(1_800_000_000), Some(1_800_000_000_000));
        assert_eq!(timestamp_ms(1_800_000_000_123), Some(1_800_000_000_123));
        assert_eq!(timestamp_ms(i64::MIN), None);
        assert_eq!(timestamp_ms(-5), None);
        assert_eq!(timestamp_ms(i64::MAX), None);
    }
}
