//! What the admin tests share: an API Gateway request as an IAM-authenticated operator sends it.

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription};
use http::Method;
use serde_json::Value;
use shared::apigw::Request;
use std::collections::HashMap;

pub fn request(method: Method, path: &str, query: &[(&str, &str)], body: Option<Value>) -> Request {
    let mut e = Request::default();
    e.version = Some("2.0".into());
    e.raw_path = Some(path.to_owned());
    e.request_context.http.method = method;
    e.request_context.http.path = Some(path.to_owned());
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        params.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    e.query_string_parameters = params.into();
    let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
    iam.user_arn = Some("arn:aws:iam::000000000000:user/privacy-desk".into());
    let mut auth = ApiGatewayRequestAuthorizer::default();
    auth.iam = Some(iam);
    e.request_context.authorizer = Some(auth);
    e.body = body.map(|b| b.to_string());
    e
}
