//! Secrets, read at run time: from the Secrets Manager secret named by `SECRETS_ARN` in AWS (so
//! they never sit in a function's configuration, and a rotation needs no redeploy), from the
//! environment in the local stack. Values never reach a log or an error message: errors name the
//! secret and the key, never what it holds.

use crate::identity::{SubjectKeySecret, WeakSecret};
use crate::meta::signature::AppSecret;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::time::Duration;

/// The environment variable naming the Secrets Manager secret (its ARN) in AWS.
pub const SECRETS_ARN: &str = "SECRETS_ARN";

/// Keys of the secret's JSON object.
pub const META_APP_SECRET: &str = "meta_app_secret";
pub const META_VERIFY_TOKEN: &str = "meta_verify_token";
pub const SUBJECT_KEY_SECRET: &str = "subject_key_secret";
/// Optional: `{"<Instagram account id>": "<access token>"}`, the tokens the Graph API client asks
/// Instagram's User Profile API with. An account without one gets no usernames linked.
pub const INSTAGRAM_ACCESS_TOKENS: &str = "instagram_access_tokens";

/// How long init waits for the secret before it fails (Lambda then retries init).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret {secret} could not be read: {reason}")]
    Unavailable { secret: String, reason: String },
    #[error("secret {secret} is not a JSON object of strings")]
    NotAnObject { secret: String },
    #[error("secret {secret} has no key {key}")]
    Missing { secret: String, key: &'static str },
    #[error("secret {secret}, key {key}: {reason}")]
    Malformed {
        secret: String,
        key: &'static str,
        reason: String,
    },
}

/// Where secret values come from.
#[async_trait]
pub trait SecretSource: Send + Sync + Debug {
    /// The current values. Called at init, and again only when a caller has reason to think
    /// they changed (a signature that no cached app secret verifies).
    async fn fetch(&self) -> Result<SecretValues, SecretError>;
}

/// One read of the secret. Debug shows the keys only.
#[derive(Clone)]
pub struct SecretValues {
    secret: String,
    values: HashMap<String, Value>,
}

impl Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.values.keys().collect();
        keys.sort();
        f.debug_struct("SecretValues")
            .field("secret", &self.secret)
            .field("keys", &keys)
            .finish()
    }
}

impl SecretValues {
    /// Parses the secret's text, a JSON object. `secret` names it in errors.
    pub fn parse(secret: &str, text: &str) -> Result<Self, SecretError> {
        let not_object = || SecretError::NotAnObject {
            secret: secret.to_owned(),
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Self {
                secret: secret.to_owned(),
                values: map.into_iter().collect(),
            }),
            _ => Err(not_object()),
        }
    }

    pub fn from_pairs<'a>(secret: &str, pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        Self {
            secret: secret.to_owned(),
            values: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn malformed(&self, key: &'static str, reason: impl Into<String>) -> SecretError {
        SecretError::Malformed {
            secret: self.secret.clone(),
            key,
            reason: reason.into(),
        }
    }

    fn get(&self, key: &'static str) -> Result<&Value, SecretError> {
        self.values.get(key).ok_or_else(|| SecretError::Missing {
            secret: self.secret.clone(),
            key,
        })
    }

    fn string(&self, key: &'static str) -> Result<&str, SecretError> {
        match self.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            Value::String(_) => Err(self.malformed(key, "is empty")),
            _ => Err(self.malformed(key, "must be a string")),
        }
    }

    /// Meta app secrets: a string, or a JSON list of strings while one is rotated (a secret may
    /// contain any character, so no separator is reserved).
    pub fn app_secrets(&self) -> Result<Vec<AppSecret>, SecretError> {
        let list: Vec<&str> = match self.get(META_APP_SECRET)? {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| self.malformed(META_APP_SECRET, "list items must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(self.malformed(META_APP_SECRET, "must be a string or a list of strings")),
        };
        if list.iter().any(|s| s.trim().is_empty()) || list.is_empty() {
            return Err(self.malformed(META_APP_SECRET, "holds an empty secret"));
        }
        Ok(list.into_iter().map(AppSecret::new).collect())
    }

    pub fn verify_token(&self) -> Result<String, SecretError> {
        self.string(META_VERIFY_TOKEN).map(str::to_owned)
    }

    pub fn graph_tokens(&self) -> Result<crate::meta::graph::GraphTokens, SecretError> {
        let Some(value) = self.values.get(INSTAGRAM_ACCESS_TOKENS) else {
            return Ok(Default::default());
        };
        let Value::Object(map) = value else {
            return Err(self.malformed(INSTAGRAM_ACCESS_TOKENS, "must be an object of account id to token"));
        };
        map.iter()
            .map(|(account, token)| match token {
                Value::String(t) if !t.trim().is_empty() => {
                    Ok((account.clone(), crate::meta::graph::GraphToken::new(t.clone())))
                }
                _ => Err(self.malformed(INSTAGRAM_ACCESS_TOKENS, "every token must be a non-empty string")),
            })
            .collect()
    }

    pub fn subject_key_secret(&self) -> Result<SubjectKeySecret, SecretError> {
        let value = self.string(SUBJECT_KEY_SECRET)?;
        SubjectKeySecret::new(value.as_bytes().to_vec())
            .map_err(|WeakSecret| self.malformed(SUBJECT_KEY_SECRET, WeakSecret.to_string()))
    }
}

/// Fixed values: the local stack's, from its environment and printed development defaults.
#[derive(Clone)]
pub struct StaticSecrets(SecretValues);

impl Debug for StaticSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StaticSecrets {
    pub fn new(values: SecretValues) -> Self {
        Self(values)
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn fetch(&self) -> Result<SecretValues, SecretError> {
        Ok(self.0.clone())
    }
}

/// The Secrets Manager secret of a deployed stack.
#[derive(Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    timeout: Duration,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>, timeout: Duration) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            timeout,
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<SecretValues, SecretError> {
        let unavailable = |reason: String| SecretError::Unavailable {
            secret: self.secret_id.clone(),
            reason,
        };
        let call = self.client.get_secret_value().secret_id(&self.secret_id).send();
        let out = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unavailable(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
        let text = out
            .secret_string()
            .ok_or_else(|| unavailable("it has no string value (set one with put-secret-value)".to_owned()))?;
        SecretValues::parse(&self.secret_id, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VALUE: &str = "0123456789abcdef0123456789abcdef-very-secret";

    #[test]
    fn app_secrets_are_one_string_or_a_list() {
        let one = SecretValues::from_pairs("s", [(META_APP_SECRET, json!("a,b"))]);
        assert_eq!(
            one.app_secrets().expect("one").len(),
            1,
            "a comma is part of the secret"
        );
        let two = SecretValues::from_pairs("s", [(META_APP_SECRET, json!(["old", "new"]))]);
        assert_eq!(two.app_secrets().expect("two").len(), 2);
        for bad in [json!([]), json!([""]), json!(3), json!(["a", 1])] {
            let v = SecretValues::from_pairs("s", [(META_APP_SECRET, bad.clone())]);
            assert!(
                matches!(
                    v.app_secrets(),
                    Err(SecretError::Malformed {
                        key: META_APP_SECRET,
                        ..
                    })
                ),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn errors_name_the_secret_and_key_never_the_value() {
        let v = SecretValues::parse("arn:secret", &json!({ SUBJECT_KEY_SECRET: "short" }).to_string()).expect("object");
        let weak = v.subject_key_secret().expect_err("too short");
        assert!(weak.to_string().contains("subject_key_secret") && weak.to_string().contains("arn:secret"));
        assert!(!weak.to_string().contains("short\""), "{weak}");
        let missing = v.verify_token().expect_err("absent");
        assert_eq!(
            missing,
            SecretError::Missing {
                secret: "arn:secret".into(),
                key: META_VERIFY_TOKEN
            }
        );
        let not_json = SecretValues::parse("arn:secret", VALUE).expect_err("not JSON");
        assert!(!not_json.to_string().contains(VALUE), "{not_json}");
        let good =
            SecretValues::parse("arn:secret", &json!({ SUBJECT_KEY_SECRET: VALUE }).to_string()).expect("object");
        assert!(good.subject_key_secret().is_ok());
        assert!(!format!("{good:?}").contains(VALUE));
    }
}
