//! Socio Virtual's common crate: the domain of the data plane (tenants, contacts, messages,
//! opt-outs, privacy requests, audit), the rules the privacy policy promises (retention,
//! deadlines, identifier normalization, subject keys), and the storage and queue ports with their
//! DynamoDB/SQS and embedded adapters.

pub mod access;
pub mod apigw;
pub mod audit;
pub mod aws;
pub mod backoff;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod identity;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod optout;
pub mod outbound;
pub mod phone;
pub mod provision;
pub mod queue;
pub mod retention;
pub mod seal;
pub mod secrets;
pub mod store;
pub mod tenant_cache;
pub mod timestamp;
pub mod wiring;
