//! The operator CLI: grants on the deployed tables (see `local_stack::operator`).

use local_stack::operator::{self, USAGE};
use shared::clock::{SharedClock, SystemClock};
use shared::config::{Endpoints, TableNames};
use std::sync::Arc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let inv = match operator::parse(std::env::args().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("operator: {e}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let table = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let (Some(tenants), Some(audit)) = (table("TENANTS_TABLE"), table("AUDIT_TABLE")) else {
        eprintln!("operator: TENANTS_TABLE and AUDIT_TABLE must name the stack's tables\n\n{USAGE}");
        return std::process::ExitCode::from(2);
    };
    // Grants and the audit trail are all the CLI touches.
    let tables = TableNames {
        tenants,
        audit,
        conversations: String::new(),
        opt_outs: String::new(),
        privacy_requests: String::new(),
        quarantine: String::new(),
    };
    let endpoints = Endpoints {
        dynamodb: inv.dynamodb_endpoint.clone(),
        ..Endpoints::default()
    };
    let client = shared::aws::dynamodb(&shared::aws::sdk_config().await, &endpoints);
    let clock: SharedClock = Arc::new(SystemClock);
    let stores = shared::store::dynamodb::stores(&client, &tables, clock.clone(), &Default::default());
    match operator::run(&stores, &inv, clock.now()).await {
        Ok(out) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
