//! The operator CLI: grants on the deployed tables (see `local_stack::operator`), and the privacy
//! mailbox's commands through the admin API (`operator privacy ...`, see
//! `local_stack::privacy_cli`).

use local_stack::operator::{self, USAGE};
use local_stack::privacy_cli::{self, Output};
use shared::clock::{SharedClock, SystemClock};
use shared::config::{Endpoints, TableNames};
use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "privacy") {
        args.remove(0);
        return privacy(args).await;
    }
    // The report goes through the admin API as the privacy commands do.
    if args.first().is_some_and(|a| a == "compliance") {
        return privacy(args).await;
    }
    grants(args).await
}

async fn privacy(args: Vec<String>) -> ExitCode {
    let inv = match privacy_cli::parse(args, |n| std::env::var(n).ok()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("operator privacy: {e}\n\n{}", privacy_cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let http = match local_stack::http_client_builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("operator privacy: HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let credentials = privacy_cli::credentials_from(|n| std::env::var(n).ok());
    match privacy_cli::run(&http, &inv, credentials.as_ref()).await {
        Ok(Output::Text(t)) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Ok(Output::Export { bytes, out: Some(path) }) => match std::fs::write(&path, &bytes) {
            Ok(()) => {
                eprintln!("export written to {path} ({} bytes)", bytes.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("operator privacy: writing {path}: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Output::Export { bytes, out: None }) => {
            use std::io::Write;
            match std::io::stdout().write_all(&bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("operator privacy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn grants(args: Vec<String>) -> ExitCode {
    let inv = match operator::parse(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("operator: {e}\n\n{USAGE}\n\n{}", privacy_cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let table = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let (Some(tenants), Some(audit)) = (table("TENANTS_TABLE"), table("AUDIT_TABLE")) else {
        eprintln!("operator: TENANTS_TABLE and AUDIT_TABLE must name the stack's tables\n\n{USAGE}");
        return ExitCode::from(2);
    };
    // Grants and the audit trail are all the grant commands touch.
    let tables = TableNames {
        tenants,
        audit,
        conversations: String::new(),
        opt_outs: String::new(),
        privacy_requests: String::new(),
        quarantine: String::new(),
        outbox: String::new(),
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("operator: {e}");
            ExitCode::FAILURE
        }
    }
}
