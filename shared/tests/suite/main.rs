//! Integration suite of the shared crate, one binary (one link step). The conformance cases run
//! against the embedded adapters and against DynamoDB Local / the SQS server started by
//! `infra/test.sh`. Emulator tests fail, never skip, when their emulator is missing.

mod conformance;
mod dynamodb_only;
mod support;
mod template;
