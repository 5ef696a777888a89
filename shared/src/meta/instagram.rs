//! Instagram messaging entries (`messaging[]`), read tolerantly; each event kept raw beside the
//! parts the processor interprets. Borrowed from the input, as in `whatsapp`.

use super::whatsapp::{ValidJson, ValidJsonStr, non_empty_seq, opt_str, scalars};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize)]
pub struct Entry<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub messaging: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub sender: IdRef<'a>,
    #[serde(borrow)]
    pub recipient: IdRef<'a>,
    pub timestamp: i64,
    #[serde(borrow)]
    pub message: Option<Message<'a>>,
    #[serde(borrow)]
    pub reaction: Option<Reaction<'a>>,
    #[serde(borrow)]
    pub read: Option<Read<'a>>,
    #[serde(borrow)]
    pub postback: Option<Postback<'a>>,
    /// Any JSON; only its presence matters.
    pub referral: Option<ValidJson>,
    #[serde(borrow)]
    pub message_edit: Option<MessageEdit<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct IdRef<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub mid: Cow<'a, str>,
    #[serde(default)]
    pub is_echo: bool,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub text: Option<Cow<'a, str>>,
    /// Whether `attachments` has any (each any JSON).
    #[serde(rename = "attachments", default, deserialize_with = "non_empty_seq")]
    pub has_attachments: bool,
    #[serde(borrow)]
    pub quick_reply: Option<QuickReply<'a>>,
}

/// A `quick_reply`: any JSON; its `payload` when it is an object with a string one.
#[derive(Debug)]
pub struct QuickReply<'a> {
    pub payload: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for QuickReply<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = QuickReply<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut payload = None;
                while let Some(ValidJsonStr(key)) = map.next_key()? {
                    if key.as_deref() == Some("payload") {
                        payload = map.next_value::<ValidJsonStr<'a>>()?.0;
                    } else {
                        map.next_value::<ValidJson>()?;
                    }
                }
                Ok(QuickReply { payload })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<ValidJson>()?.is_some() {}
                Ok(QuickReply { payload: None })
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(QuickReply { payload: None })
            }
            scalars!(QuickReply { payload: None });
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[derive(Debug, Deserialize)]
pub struct Reaction<'a> {
    #[serde(borrow)]
    pub mid: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub action: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct Read<'a> {
    #[serde(borrow)]
    pub mid: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Postback<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub mid: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct MessageEdit<'a> {
    #[serde(borrow)]
    pub mid: Cow<'a, str>,
    pub num_edit: Option<u32>,
    /// The text as edited (an edit to "STOP" is a STOP).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub text: Option<Cow<'a, str>>,
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
