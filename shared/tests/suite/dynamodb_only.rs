//! What only the DynamoDB adapter has: tables made from template.yaml, and consumed capacity.

use crate::support::{self, Backend, Harness};
use serde_json::json;
use shared::clock::Clock;
use shared::domain::*;
use shared::retention::RetentionMonths;
use shared::store::WriteOutcome;

#[tokio::test]
async fn tables_from_the_template_have_ttl_and_indexes() {
    let client = support::dynamodb_client().await;
    let tables = support::fresh_tables(&client).await;
    let ttl = client
        .describe_time_to_live()
        .table_name(&tables.conversations)
        .send()
        .await
        .expect("describe ttl");
    let ttl = ttl.time_to_live_description().expect("ttl description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    let desc = client
        .describe_table()
        .table_name(&tables.conversations)
        .send()
        .await
        .expect("describe");
    let table = desc.table().expect("table");
    let mut indexes: Vec<&str> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .chain(table.local_secondary_indexes().iter().filter_map(|i| i.index_name()))
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["contacts-by-tenant"]);
}

#[tokio::test]
async fn writes_report_consumed_capacity() {
    let h = Harness::dynamodb().await;
    let Backend::Dynamo { meter, tables, .. } = &h.backend else {
        unreachable!("dynamodb harness")
    };
    assert_eq!(meter.total(), shared::store::dynamodb::Units::default());
    let now = h.clock.now();
    let m = Message {
        tenant: TenantId::new("acme").expect("valid"),
        contact: ContactId::new(Channel::WhatsApp, "AR.1").expect("valid"),
        id: MetaMessageId::new("wamid.cap").expect("valid"),
        direction: Direction::Inbound,
        sent_at: now,
        kind: "text".to_owned(),
        content: json!({"text": {"body": "hola"}}),
        expires_at: RetentionMonths::MAX.expiry_for(now),
    };
    assert_eq!(
        h.stores.conversations.put_message(&m).await.expect("write"),
        WriteOutcome::Written
    );
    let units = meter.units(&tables.conversations);
    assert!(
        units.write >= 1.0,
        "a message write costs at least one write unit, measured {units:?}"
    );
    // A redelivery fails its condition: DynamoDB bills it but reports no capacity; the meter
    // counts it as the one unit it costs at least.
    let before = meter.units(&tables.conversations).write;
    assert_eq!(
        h.stores.conversations.put_message(&m).await.expect("write"),
        WriteOutcome::Unchanged
    );
    let failed = meter.units(&tables.conversations).write - before;
    assert_eq!(failed, 1.0, "a failed condition counts one write unit");
}
