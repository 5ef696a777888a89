use shared::clock::SettableClock;
use shared::config::{Endpoints, TableNames};
use shared::store::Stores;
use shared::store::dynamodb::CapacityMeter;
use shared::timestamp::Timestamp;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Far enough in the future that DynamoDB Local's TTL sweeper (which uses the real time) leaves
/// test items alone: expiry is decided by the store's clock in these tests, not by the sweeper.
pub const TEST_EPOCH: &str = "2040-01-01T00:00:00Z";

pub fn test_clock() -> SettableClock {
    SettableClock::at(Timestamp::parse_rfc3339(TEST_EPOCH).expect("valid epoch"))
}

/// The endpoint of an emulator, checked to be listening. Panics with the fix when it is not.
pub fn emulator(var: &str) -> String {
    let url = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the suite with infra/test.sh, which installs and starts the emulators")
    });
    let host_port = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let reachable = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(reachable, "{var}={url} is set but nothing answers there");
    url
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let endpoints = Endpoints {
        dynamodb: Some(emulator("DYNAMODB_ENDPOINT")),
        ..Endpoints::default()
    };
    shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints)
}

pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let endpoints = Endpoints {
        sqs: Some(emulator("SQS_ENDPOINT")),
        ..Endpoints::default()
    };
    shared::aws::sqs(&shared::aws::sdk_config().await, &endpoints)
}

/// Fresh tables, named uniquely, created from template.yaml.
pub async fn fresh_tables(client: &aws_sdk_dynamodb::Client) -> TableNames {
    let names = TableNames::with_prefix(&unique("t"));
    shared::provision::create_tables(client, shared::provision::TEMPLATE, &names)
        .await
        .expect("tables created from template.yaml");
    names
}

/// One adapter family under test, with a way to "restart" it: new handles over the same data.
pub struct Harness {
    pub stores: Stores,
    /// The retention sweeps over the same data.
    pub sweeps: Arc<dyn shared::store::RetentionSweeps>,
    /// The sender's outbox over the same data.
    pub outbox: Arc<dyn shared::store::OutboxStore>,
    pub clock: SettableClock,
    pub backend: Backend,
}

pub enum Backend {
    Embedded,
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        tables: TableNames,
        meter: CapacityMeter,
    },
}

impl Harness {
    pub async fn embedded() -> Self {
        let clock = test_clock();
        let all = shared::store::embedded::stack(Arc::new(clock.clone()));
        Self {
            stores: all.stores,
            sweeps: all.sweeps,
            outbox: all.outbox,
            clock,
            backend: Backend::Embedded,
        }
    }

    pub async fn dynamodb() -> Self {
        let client = dynamodb_client().await;
        let tables = fresh_tables(&client).await;
        let clock = test_clock();
        let meter = CapacityMeter::default();
        let stores = shared::store::dynamodb::stores(&client, &tables, Arc::new(clock.clone()), &meter);
        let sweeps = shared::store::dynamodb::sweeps(&client, &tables, Arc::new(clock.clone()), &meter);
        let outbox = shared::store::dynamodb::outbox(&client, &tables, Arc::new(clock.clone()), &meter);
        Self {
            stores,
            sweeps,
            outbox,
            clock,
            backend: Backend::Dynamo { client, tables, meter },
        }
    }

    /// What a process that starts over would get: for DynamoDB a new client over the same tables;
    /// in memory the data lives in the stores themselves, so the same ones.
    pub async fn restarted(&self) -> Stores {
        match &self.backend {
            Backend::Embedded => self.stores.clone(),
            Backend::Dynamo { tables, meter, .. } => {
                let client = dynamodb_client().await;
                shared::store::dynamodb::stores(&client, tables, Arc::new(self.clock.clone()), meter)
            }
        }
    }
}
