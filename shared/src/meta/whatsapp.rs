//! WhatsApp Cloud API `messages` change values, read tolerantly: every id optional where Meta
//! omits it (username users have no `wa_id`/`from`), timestamps as the strings Meta sends, and
//! message objects kept raw so unknown future types survive.
//!
//! Everything borrows from the input: strings are `Cow` (borrowed unless they hold a JSON
//! escape), raw parts are `&RawValue`. Read with `serde_json::from_str`.

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize)]
pub struct MessagesValue<'a> {
    #[serde(borrow)]
    pub metadata: Option<Metadata<'a>>,
    #[serde(borrow, default)]
    pub contacts: Vec<Contact<'a>>,
    /// Raw, so one malformed message cannot spoil its neighbours.
    #[serde(borrow, default)]
    pub messages: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    pub statuses: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata<'a> {
    #[serde(borrow)]
    pub phone_number_id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Contact<'a> {
    #[serde(borrow, default)]
    pub profile: Option<Profile<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub wa_id: Option<Cow<'a, str>>,
    /// Business-scoped user id (BSUID).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub user_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct Profile<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub username: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub from: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub from_user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub revoke: Option<Revoke<'a>>,
    #[serde(borrow)]
    pub edit: Option<Edit<'a>>,
    #[serde(borrow)]
    pub system: Option<System<'a>>,
    /// `text.body` of a text message; read leniently (a part of another shape is no error).
    #[serde(borrow, default)]
    pub text: Lenient<Text<'a>>,
    /// `button.payload`/`text` of a tapped template button.
    #[serde(borrow, default)]
    pub button: Lenient<Button<'a>>,
    /// The id of a tapped reply button or list row.
    #[serde(borrow, default)]
    pub interactive: Lenient<Interactive<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Text<'a> {
    #[serde(borrow, default)]
    pub body: LenientStr<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Button<'a> {
    #[serde(borrow, default)]
    pub payload: LenientStr<'a>,
    #[serde(borrow, default)]
    pub text: LenientStr<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Interactive<'a> {
    #[serde(borrow, default)]
    pub button_reply: Lenient<Reply<'a>>,
    #[serde(borrow, default)]
    pub list_reply: Lenient<Reply<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Reply<'a> {
    #[serde(borrow, default)]
    pub id: LenientStr<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Edit<'a> {
    #[serde(borrow)]
    pub original_message_id: Cow<'a, str>,
    /// The message as edited; only its text is read (an edit to "STOP" is a STOP).
    #[serde(borrow, default)]
    pub message: Lenient<Edited<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Edited<'a> {
    #[serde(borrow, default)]
    pub text: Lenient<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Revoke<'a> {
    #[serde(borrow)]
    pub original_message_id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct System<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub wa_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub user_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct Status<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Meta's state name; `delivery_state` reads it.
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub recipient_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub recipient_user_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
pub struct StatusError {
    pub code: Option<i64>,
}

/// A status's state by Meta's name; None for a name Meta has not documented.
pub fn delivery_state(status: &str) -> Option<crate::domain::DeliveryState> {
    use crate::domain::DeliveryState;
    Some(match status {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "played" => DeliveryState::Played,
        "failed" => DeliveryState::Failed,
        _ => return None,
    })
}

/// A failed status with this code: the person stopped marketing messages (do not retry).
pub const MARKETING_STOPPED_ERROR: i64 = 131050;

/// `user_preferences` change value: marketing stop/resume set inside WhatsApp.
#[derive(Debug, Deserialize)]
pub struct UserPreferencesValue<'a> {
    #[serde(borrow, default)]
    pub user_preferences: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct UserPreference<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub wa_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
    pub timestamp: i64,
}

/// Change fields stored as tenant events: template and account-quality notifications, which hold
/// no personal data.
pub const TENANT_EVENT_FIELDS: &[&str] = &[
    "message_template_status_update",
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
    "phone_number_quality_update",
    "phone_number_name_update",
    "account_update",
    "account_review_update",
    "account_alerts",
    "business_capability_update",
];

/// Event times outside this range are not Meta's: 2000-01-01 to 2100-01-01, in unix seconds.
pub const PLAUSIBLE_SECONDS: std::ops::RangeInclusive<i64> = 946_684_800..=4_102_444_800;

/// `timestamp` strings of unix seconds, within the plausible range.
pub fn parse_seconds(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|v| PLAUSIBLE_SECONDS.contains(v))
}

// Deserialization helpers, shared with `instagram`.

#[derive(Deserialize)]
struct CowStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// For `Option<Cow<str>>` fields: serde's `borrow` does not reach through `Option` (it would
/// copy every string), this does. Use with `#[serde(borrow, default, deserialize_with)]`.
pub fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<CowStr<'a>>::deserialize(d)?.map(|s| s.0))
}

/// Visitor methods for the JSON scalars serde_json reports, each giving `$value`.
macro_rules! scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
pub(crate) use scalars;

/// An object read only when the part is one, `None` for any other JSON (never an error): how
/// indexing a `serde_json::Value` read these parts. Its fields should be lenient too.
#[derive(Debug)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            scalars!(Lenient(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A string read only when the part is one, `None` for any other JSON (never an error).
#[derive(Debug, Default)]
pub struct LenientStr<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LenientStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            scalars!(LenientStr(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Any JSON that `serde_json::Value` would accept, checked the way it reads it (numbers within
/// range, strings without lone surrogates, nesting within serde_json's limit) without building
/// it. `RawValue` and ignored fields are only checked for syntax.
#[derive(Debug)]
pub struct ValidJson;

impl<'de> Deserialize<'de> for ValidJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValidJsonVisitor)
    }
}

struct ValidJsonVisitor;

impl<'de> Visitor<'de> for ValidJsonVisitor {
    type Value = ValidJson;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValidJson, A::Error> {
        while map.next_entry::<ValidJson, ValidJson>()?.is_some() {}
        Ok(ValidJson)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValidJson, A::Error> {
        while seq.next_element::<ValidJson>()?.is_some() {}
        Ok(ValidJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<ValidJson, E> {
        Ok(ValidJson)
    }
    scalars!(ValidJson);
}

/// Like `ValidJson`, keeping the value when it is a string.
#[derive(Debug)]
pub struct ValidJsonStr<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for ValidJsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ValidJsonStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(ValidJsonStr(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(ValidJsonStr(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ValidJsonVisitor.visit_map(map).map(|_| ValidJsonStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                ValidJsonVisitor.visit_seq(seq).map(|_| ValidJsonStr(None))
            }
            scalars!(ValidJsonStr(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// For a sequence field (`Vec<serde_json::Value>` before): whether it has any element, each
/// checked as `ValidJson`. Use with `#[serde(default, deserialize_with)]`.
pub fn non_empty_seq<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut any = false;
            while seq.next_element::<ValidJson>()?.is_some() {
                any = true;
            }
            Ok(any)
        }
    }
    d.deserialize_seq(V)
}
