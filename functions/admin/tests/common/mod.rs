//! What the admin tests share: an API Gateway request as an IAM-authenticated principal sends
//! it, and the grants the tests act under. Each test binary uses part of it.
#![allow(dead_code)]

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription};
use http::Method;
use serde_json::Value;
use shared::access::{Principal, PrincipalId, Role};
use shared::apigw::Request;
use shared::domain::{AuditChain, AuditEvent, TenantId};
use shared::store::{PageRequest, Stores, TimeRange};
use shared::timestamp::Timestamp;
use std::collections::HashMap;

/// The principal `request` authenticates as.
pub const OPERATOR: &str = "arn:aws:iam::000000000000:user/privacy-desk";

/// `request` as `principal`; None: no authenticated principal (no IAM authorizer context).
pub fn request_as(
    principal: Option<&str>,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Request {
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
    if let Some(arn) = principal {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.to_owned());
        let mut auth = ApiGatewayRequestAuthorizer::default();
        auth.iam = Some(iam);
        e.request_context.authorizer = Some(auth);
    }
    e.body = body.map(|b| b.to_string());
    e
}

/// A request from `OPERATOR`.
pub fn request(method: Method, path: &str, query: &[(&str, &str)], body: Option<Value>) -> Request {
    request_as(Some(OPERATOR), method, path, query, body)
}

/// Stores a grant of `roles` over `tenants` for `principal`.
pub async fn grant(stores: &Stores, principal: &str, roles: &[Role], tenants: &[&str]) {
    let p = Principal {
        id: PrincipalId::new(principal).expect("valid principal"),
        roles: roles.iter().copied().collect(),
        tenants: tenants
            .iter()
            .map(|t| TenantId::new(*t).expect("valid tenant"))
            .collect(),
        granted_at: Timestamp::from_unix_seconds(0),
        granted_by: "test setup".to_owned(),
    };
    stores.principals.put(&p).await.expect("grant");
}

/// `OPERATOR` holds every role over the tenants the tests use, so the tests of what a route does
/// are not tests of who may call it (`access.rs` is).
pub async fn grant_operator(stores: &Stores) {
    let tenants = ["tenant-a", "tenant-b", "tenant-c", "tenant-d"];
    grant(stores, OPERATOR, &Role::ALL, &tenants).await;
}

/// Every live event of a chain, oldest first.
pub async fn trail(stores: &Stores, chain: &AuditChain) -> Vec<AuditEvent> {
    let page = stores
        .audit
        .list(chain, &TimeRange::ALL, &PageRequest::first(100))
        .await
        .expect("audit list");
    page.items.into_iter().map(|l| l.event).collect()
}

pub fn tenant_chain(tenant: &str) -> AuditChain {
    AuditChain::Tenant(TenantId::new(tenant).expect("valid tenant"))
}

/// A DynamoDB Local client and fresh tables from `template.yaml`, named `<prefix>-<random>-`.
pub async fn dynamodb_tables(prefix: &str) -> (aws_sdk_dynamodb::Client, shared::config::TableNames) {
    let endpoint =
        std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT is not set: run this with infra/test.sh");
    let endpoints = shared::config::Endpoints {
        dynamodb: Some(endpoint),
        ..shared::config::Endpoints::default()
    };
    let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    let random = uuid::Uuid::new_v4().simple().to_string();
    let tables = shared::config::TableNames::with_prefix(&format!("{prefix}-{}-", &random[..8]));
    shared::provision::create_tables(&client, shared::provision::TEMPLATE, &tables)
        .await
        .expect("tables from template.yaml");
    (client, tables)
}
