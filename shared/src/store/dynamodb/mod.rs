//! DynamoDB adapters. Items are mapped with serde_dynamo from adapter-private item structs; the
//! domain never sees an AttributeValue. Every call asks for consumed capacity, so cost per
//! operation is a number the tests and benchmarks can read.

mod audit;
mod conversations;
mod optouts;
mod quarantine;
mod requests;
mod table;
mod tenants;

pub use table::CapacityMeter;

use crate::clock::SharedClock;
use crate::config::TableNames;
use crate::store::Stores;
use std::sync::Arc;
use table::Table;

pub use audit::DynamoAuditStore;
pub use conversations::DynamoConversationStore;
pub use optouts::DynamoOptOutStore;
pub use quarantine::DynamoQuarantineStore;
pub use requests::DynamoPrivacyRequestStore;
pub use tenants::DynamoTenantStore;

/// Every store on DynamoDB, sharing one client and one capacity meter.
pub fn stores(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
    clock: SharedClock,
    meter: &CapacityMeter,
) -> Stores {
    let table = |name: &str| Table::new(client.clone(), name, meter.clone());
    Stores {
        conversations: Arc::new(DynamoConversationStore::new(
            table(&tables.conversations),
            clock.clone(),
        )),
        opt_outs: Arc::new(DynamoOptOutStore::new(table(&tables.opt_outs))),
        privacy_requests: Arc::new(DynamoPrivacyRequestStore::new(
            table(&tables.privacy_requests),
            clock.clone(),
        )),
        audit: Arc::new(DynamoAuditStore::new(table(&tables.audit), clock.clone())),
        tenants: Arc::new(DynamoTenantStore::new(table(&tables.tenants))),
        quarantine: Arc::new(DynamoQuarantineStore::new(table(&tables.quarantine), clock)),
    }
}
