//! Meta's data-deletion callback: `signed_request=<signature>.<payload>`, both base64url. The
//! signature is HMAC-SHA256 of the payload *as encoded*, keyed with the app secret; the payload
//! names the app-scoped id of a Meta-login user of the app (a tenant's administrator).

use crate::{Deletion, DeletionError, status_url};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;
use shared::apigw::{self, Request, Response};
use shared::deadline::{Jurisdiction, RequestKind};
use shared::domain::{ConfirmationCode, RequestSource, Subject};
use shared::identity::{Identifier, IdentifierKind};
use shared::meta::signature::AppSecret;

/// Far beyond any real signed request (a few hundred bytes): bounds what a caller makes us decode.
pub const MAX_SIGNED_REQUEST_BYTES: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the body must be a form with one signed_request field")]
    Malformed,
    #[error("signed_request must be <signature>.<payload>, both base64url")]
    BadEncoding,
    #[error("the signed request's payload is not the JSON Meta sends")]
    BadPayload,
    #[error("algorithm must be HMAC-SHA256")]
    BadAlgorithm,
    #[error("the signature does not match any configured app secret")]
    BadSignature,
}

#[derive(Deserialize)]
struct Payload {
    algorithm: String,
    user_id: UserId,
}

/// Meta sends the id as a string; older examples show a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Text(String),
    Number(u64),
}

/// A verified callback: the app-scoped user id, and the encoded payload the code is derived from.
#[derive(Debug)]
pub struct Verified {
    pub user_id: String,
    pub payload: String,
}

fn decode(part: &str) -> Result<Vec<u8>, CallbackError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .or_else(|_| URL_SAFE.decode(part))
        .map_err(|_| CallbackError::BadEncoding)
}

/// The form body's `signed_request`, verified against any of the app secrets in constant time.
pub fn verify(body: &[u8], secrets: &[AppSecret]) -> Result<Verified, CallbackError> {
    if body.len() > MAX_SIGNED_REQUEST_BYTES {
        return Err(CallbackError::Malformed);
    }
    let mut found = None;
    for (k, v) in form_urlencoded::parse(body) {
        match (k.as_ref(), &found) {
            ("signed_request", None) => found = Some(v.into_owned()),
            _ => return Err(CallbackError::Malformed),
        }
    }
    let signed = found.ok_or(CallbackError::Malformed)?;
    let (sig, payload) = signed.split_once('.').ok_or(CallbackError::BadEncoding)?;
    let sig = decode(sig)?;
    let json = decode(payload)?;
    // The algorithm is checked before the signature so a caller learns which one failed only
    // for a payload that names another algorithm.
    let data: Payload = serde_json::from_slice(&json).map_err(|_| CallbackError::BadPayload)?;
    if !data.algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(CallbackError::BadAlgorithm);
    }
    if !secrets.iter().any(|s| s.verifies(payload.as_bytes(), &sig)) {
        return Err(CallbackError::BadSignature);
    }
    let user_id = match data.user_id {
        UserId::Text(t) => t,
        UserId::Number(n) => n.to_string(),
    };
    Ok(Verified {
        user_id,
        payload: payload.to_owned(),
    })
}

/// `<signature>.<payload>` for a payload, as Meta builds it: what tests and the local stack sign.
pub fn sign(secret: &AppSecret, payload_json: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload_json);
    format!("{}.{payload}", URL_SAFE_NO_PAD.encode(secret.tag(payload.as_bytes())))
}

impl Deletion {
    /// An erasure for the app-scoped id, approved at once (Meta signed it). The same signed
    /// request again gets the same code: the code is a keyed digest of its payload.
    pub(crate) async fn meta_callback(&self, req: &Request) -> Response {
        let body = match apigw::body_bytes(req) {
            Ok(b) => b,
            Err(_) => return apigw::error(400, CallbackError::Malformed),
        };
        let verified = match verify(&body, &self.app_secrets) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(reason = %e, "Meta data-deletion callback refused");
                return apigw::error(400, e);
            }
        };
        let id = match Identifier::parse(IdentifierKind::MetaAppUserId, &verified.user_id) {
            Ok(id) => id,
            Err(e) => return apigw::error(400, format!("user_id: {e}")),
        };
        let code = ConfirmationCode::derived(&self.code_key, verified.payload.as_bytes());
        let request = shared::domain::PrivacyRequest::new(shared::domain::NewRequest {
            kind: RequestKind::Erasure,
            source: RequestSource::MetaCallback,
            jurisdiction: Jurisdiction::default(),
            tenant: None,
            subjects: vec![Subject {
                kind: IdentifierKind::MetaAppUserId,
                key: self.secret.subject_key(&id),
            }],
            note: None,
            erase: false,
            rectify: None,
            code,
            now: self.clock.now(),
            by: "meta data-deletion callback",
        });
        let opened = async {
            self.audit(
                "meta data-deletion callback",
                "POST /meta/data-deletion",
                shared::domain::AuditAction::Change,
                Some(request.id),
                "erasure requested through Meta's callback",
                None,
            )
            .await?;
            self.open(request).await
        };
        match opened.await {
            Ok((_, stored)) => {
                tracing::info!(request = %stored.id, "Meta data-deletion callback accepted");
                apigw::json(
                    200,
                    &serde_json::json!({
                        "url": status_url(req, &stored.code),
                        "confirmation_code": stored.code.as_str(),
                    }),
                )
            }
            Err(DeletionError::Conflict(_)) => {
                DeletionError::Unavailable("the request is being updated: send it again").into()
            }
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> AppSecret {
        AppSecret::new("app-secret")
    }

    fn form(signed: &str) -> Vec<u8> {
        format!("signed_request={signed}").into_bytes()
    }

    const PAYLOAD: &str =
        r#"{"algorithm":"HMAC-SHA256","expires":1700000000,"issued_at":1699990000,"user_id":"1234567890"}"#;

    #[test]
    fn a_signed_request_verifies_with_any_configured_secret() {
        let signed = sign(&secret(), PAYLOAD);
        let v = verify(&form(&signed), &[AppSecret::new("old"), secret()]).expect("verified");
        assert_eq!(v.user_id, "1234567890");
    }

    #[test]
    fn a_numeric_user_id_is_accepted() {
        let signed = sign(&secret(), r#"{"algorithm":"hmac-sha256","user_id":42}"#);
        assert_eq!(verify(&form(&signed), &[secret()]).expect("verified").user_id, "42");
    }

    #[test]
    fn bad_signatures_algorithms_and_bodies_are_refused() {
        let signed = sign(&AppSecret::new("another app"), PAYLOAD);
        assert_eq!(
            verify(&form(&signed), &[secret()]).err(),
            Some(CallbackError::BadSignature)
        );
        let md5 = sign(&secret(), r#"{"algorithm":"HMAC-MD5","user_id":"1"}"#);
        assert_eq!(
            verify(&form(&md5), &[secret()]).err(),
            Some(CallbackError::BadAlgorithm)
        );
        for (body, why) in [
            (b"".to_vec(), CallbackError::Malformed),
            (b"other=1".to_vec(), CallbackError::Malformed),
            (
                b"signed_request=a.b&signed_request=c.d".to_vec(),
                CallbackError::Malformed,
            ),
            (form("no-dot"), CallbackError::BadEncoding),
            (form("!!!.???"), CallbackError::BadEncoding),
            (
                form(&format!("{}.{}", "c2ln", URL_SAFE_NO_PAD.encode("not json"))),
                CallbackError::BadPayload,
            ),
        ] {
            assert_eq!(
                verify(&body, &[secret()]).err(),
                Some(why),
                "{:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
