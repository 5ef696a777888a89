//! WhatsApp Cloud API `messages` change values, read tolerantly: every id optional where Meta
//! omits it (username users have no `wa_id`/`from`), timestamps as the strings Meta sends, and
//! message objects kept raw so unknown future types survive.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Deserialize)]
pub struct MessagesValue {
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Raw, so one malformed message cannot spoil its neighbours.
    #[serde(default)]
    pub messages: Vec<Box<RawValue>>,
    #[serde(default)]
    pub statuses: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub phone_number_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    pub wa_id: Option<String>,
    /// Business-scoped user id (BSUID).
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub id: String,
    pub from: Option<String>,
    pub from_user_id: Option<String>,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub revoke: Option<Revoke>,
    pub edit: Option<Edit>,
    pub system: Option<System>,
}

#[derive(Debug, Deserialize)]
pub struct Edit {
    pub original_message_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Revoke {
    pub original_message_id: String,
}

#[derive(Debug, Deserialize)]
pub struct System {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub id: String,
    pub status: String,
    pub timestamp: String,
    pub recipient_id: Option<String>,
    pub recipient_user_id: Option<String>,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
pub struct StatusError {
    pub code: Option<i64>,
}

/// A failed status with this code: the person stopped marketing messages (do not retry).
pub const MARKETING_STOPPED_ERROR: i64 = 131050;

/// `user_preferences` change value: marketing stop/resume set inside WhatsApp.
#[derive(Debug, Deserialize)]
pub struct UserPreferencesValue {
    #[serde(default)]
    pub user_preferences: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct UserPreference {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub category: String,
    pub value: String,
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
