//! DynamoDB adapters. Items are mapped with serde_dynamo from adapter-private item structs; the
//! domain never sees an AttributeValue. Every call asks for consumed capacity, so cost per
//! operation is a number the tests and benchmarks can read.

mod audit;
mod conversations;
mod optouts;
mod outbox;
mod principals;
mod quarantine;
mod requests;
mod retention;
mod table;
mod tenants;

pub use table::{CapacityMeter, Units};

use crate::clock::SharedClock;
use crate::config::TableNames;
use crate::store::{
    AuditStore, ConversationStore, OptOutStore, PrincipalStore, PrivacyRequestStore, QuarantineStore, Stores,
    TenantStore,
};
use std::sync::Arc;
use table::Table;

pub use audit::DynamoAuditStore;
pub use conversations::DynamoConversationStore;
pub use optouts::DynamoOptOutStore;
pub use outbox::DynamoOutboxStore;
pub use principals::DynamoPrincipalStore;
pub use quarantine::DynamoQuarantineStore;
pub use requests::DynamoPrivacyRequestStore;
pub use retention::DynamoRetention;
pub use tenants::DynamoTenantStore;

/// Makes the DynamoDB store of each data class on one client and capacity meter. A function
/// makes only the stores it uses, so its binary links only those.
#[derive(Clone, Debug)]
pub struct DynamoStores {
    client: aws_sdk_dynamodb::Client,
    tables: TableNames,
    clock: SharedClock,
    meter: CapacityMeter,
}

impl DynamoStores {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: TableNames, clock: SharedClock, meter: CapacityMeter) -> Self {
        Self {
            client,
            tables,
            clock,
            meter,
        }
    }

    fn table(&self, name: &str) -> Table {
        Table::new(self.client.clone(), name, self.meter.clone())
    }

    pub fn conversations(&self) -> Arc<dyn ConversationStore> {
        Arc::new(DynamoConversationStore::new(
            self.table(&self.tables.conversations),
            self.clock.clone(),
        ))
    }

    /// The sender's outbox, with the conversations table for the gate's window read.
    pub fn outbox(&self) -> Arc<dyn crate::store::OutboxStore> {
        Arc::new(DynamoOutboxStore::new(
            self.table(&self.tables.outbox),
            self.table(&self.tables.conversations),
            self.clock.clone(),
        ))
    }

    pub fn opt_outs(&self) -> Arc<dyn OptOutStore> {
        Arc::new(DynamoOptOutStore::new(self.table(&self.tables.opt_outs)))
    }

    pub fn privacy_requests(&self) -> Arc<dyn PrivacyRequestStore> {
        Arc::new(DynamoPrivacyRequestStore::new(
            self.table(&self.tables.privacy_requests),
            self.clock.clone(),
        ))
    }

    pub fn audit(&self) -> Arc<dyn AuditStore> {
        Arc::new(DynamoAuditStore::new(
            self.table(&self.tables.audit),
            self.clock.clone(),
        ))
    }

    pub fn tenants(&self) -> Arc<dyn TenantStore> {
        Arc::new(DynamoTenantStore::new(self.table(&self.tables.tenants)))
    }

    pub fn principals(&self) -> Arc<dyn PrincipalStore> {
        Arc::new(DynamoPrincipalStore::new(self.table(&self.tables.tenants)))
    }

    pub fn quarantine(&self) -> Arc<dyn QuarantineStore> {
        Arc::new(DynamoQuarantineStore::new(
            self.table(&self.tables.quarantine),
            self.clock.clone(),
        ))
    }

    /// The retention sweep's and the report's reads and deletes, across the tables.
    pub fn retention(&self) -> Arc<DynamoRetention> {
        let clock = || self.clock.clone();
        Arc::new(DynamoRetention {
            conversations: DynamoConversationStore::new(self.table(&self.tables.conversations), clock()),
            tenants: DynamoTenantStore::new(self.table(&self.tables.tenants)),
            quarantine: DynamoQuarantineStore::new(self.table(&self.tables.quarantine), clock()),
            audit: DynamoAuditStore::new(self.table(&self.tables.audit), clock()),
            requests: DynamoPrivacyRequestStore::new(self.table(&self.tables.privacy_requests), clock()),
            opt_outs: DynamoOptOutStore::new(self.table(&self.tables.opt_outs)),
        })
    }
}

/// Every store on DynamoDB, sharing one client and one capacity meter.
pub fn stores(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
    clock: SharedClock,
    meter: &CapacityMeter,
) -> Stores {
    let make = DynamoStores::new(client.clone(), tables.clone(), clock, meter.clone());
    Stores {
        conversations: make.conversations(),
        opt_outs: make.opt_outs(),
        privacy_requests: make.privacy_requests(),
        audit: make.audit(),
        tenants: make.tenants(),
        quarantine: make.quarantine(),
        principals: make.principals(),
        retention: make.retention(),
    }
}

/// The retention sweeps on DynamoDB, over the same tables as `stores`.
/// The outbound sender's outbox over the same tables as `stores`.
pub fn outbox(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
    clock: SharedClock,
    meter: &CapacityMeter,
) -> Arc<dyn crate::store::OutboxStore> {
    DynamoStores::new(client.clone(), tables.clone(), clock, meter.clone()).outbox()
}

pub fn sweeps(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
    clock: SharedClock,
    meter: &CapacityMeter,
) -> Arc<dyn crate::store::RetentionSweeps> {
    DynamoStores::new(client.clone(), tables.clone(), clock, meter.clone()).retention()
}
