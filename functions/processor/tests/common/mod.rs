//! What the processor's DynamoDB Local tests share: fresh tables from `template.yaml` and the
//! tenant they route to.

use shared::clock::SharedClock;
use shared::config::{Endpoints, TableNames};
use shared::deadline::Jurisdiction;
use shared::domain::{Channel, ChannelAccount, Locale, Tenant, TenantId};
use shared::store::Stores;
use shared::store::dynamodb::CapacityMeter;
use shared::timestamp::Timestamp;

/// The receiving WhatsApp account tenant A owns.
pub const ACCOUNT: &str = "106540352242922";
/// 2040-01-01, clear of DynamoDB Local's real-time TTL sweeper.
pub const START: i64 = 2_208_988_800;

/// The stores on DynamoDB Local, on tables of their own (named `<prefix><random>`), metered.
pub async fn dynamodb_stores(prefix: &str, clock: SharedClock, meter: &CapacityMeter) -> Stores {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run this with infra/test.sh or infra/bench-capacity.sh");
    let endpoints = Endpoints {
        dynamodb: Some(endpoint),
        ..Endpoints::default()
    };
    let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    let tables = TableNames::with_prefix(&format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
    shared::provision::create_tables(&client, shared::provision::TEMPLATE, &tables)
        .await
        .expect("tables from template.yaml");
    shared::store::dynamodb::stores(&client, &tables, clock, meter)
}

/// Tenant A, owning `ACCOUNT`, keeping messages 24 months, registered in `stores`.
pub async fn register_tenant_a(stores: &Stores) -> TenantId {
    let tenant = Tenant {
        id: TenantId::new("tenant-a").expect("valid"),
        name: "A".to_owned(),
        accounts: vec![ChannelAccount::new(Channel::WhatsApp, ACCOUNT).expect("valid")],
        retention_months: shared::retention::RetentionMonths::MAX,
        locale: Locale::Spanish,
        jurisdiction: Jurisdiction::Ar,
        optout_keywords: Vec::new(),
        optout_button_ids: Vec::new(),
        retention_lowered_at: None,
        offboarding: None,
        access_token_secret: None,
        created_at: Timestamp::from_unix_seconds(START),
    };
    stores.tenants.register(&tenant).await.expect("register");
    tenant.id
}
