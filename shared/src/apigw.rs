//! The thin adapter between API Gateway HTTP API events (payload 2.0) and handler code: reading
//! requests and building responses. Handlers take and return these types in Lambda and in the
//! local stack alike.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method};
use serde::Serialize;

pub type Request = ApiGatewayV2httpRequest;
pub type Response = ApiGatewayV2httpResponse;

pub fn method(req: &Request) -> Method {
    req.request_context.http.method.clone()
}

/// The path, without the stage prefix when one is present.
pub fn path(req: &Request) -> &str {
    let raw = req.raw_path.as_deref().unwrap_or("/");
    match req.request_context.stage.as_deref() {
        Some(stage) if stage != "$default" => raw.strip_prefix(&format!("/{stage}")).unwrap_or(raw),
        _ => raw,
    }
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters.first(name)
}

/// Length of the body once decoded, computed without decoding it.
pub fn body_len(req: &Request) -> usize {
    let len = req.body.as_ref().map_or(0, String::len);
    if req.is_base64_encoded { len / 4 * 3 } else { len }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is not valid base64")]
pub struct BadBase64;

/// The raw body bytes: API Gateway base64-encodes bodies it does not treat as text.
pub fn body_bytes(req: &Request) -> Result<Vec<u8>, BadBase64> {
    let body = req.body.as_deref().unwrap_or("");
    if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| BadBase64)
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The body as a JSON object, or None if it is not one (or not valid base64).
pub fn json_object(req: &Request) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(&body_bytes(req).ok()?).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

pub fn respond(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let mut r = Response::default();
    r.status_code = i64::from(status);
    r.headers = headers;
    r.body = Some(Body::Text(body.into()));
    r
}

pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => respond(status, "application/json", text),
        Err(_) => error(500, "response could not be encoded"),
    }
}

/// `{"error": message}`: a short, safe sentence for the caller; never personal data.
pub fn error(status: u16, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    respond(status, "application/json", body)
}

/// The text of a response body, for tests and the local stack.
pub fn body_text(r: &Response) -> String {
    match &r.body {
        Some(Body::Text(t)) => t.clone(),
        Some(Body::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// The principal API Gateway authenticated (IAM). Without one, nothing is served.
pub fn iam_principal(req: &Request) -> Option<String> {
    let iam = req.request_context.authorizer.as_ref()?.iam.as_ref()?;
    iam.user_arn.clone().or_else(|| iam.caller_id.clone())
}
