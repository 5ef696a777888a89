//! Prints cold-start figures for each function's release binary. Run through
//! `infra/bench-coldstart.sh`, which builds the binaries and starts the emulators.
//! Usage: coldstart --bin-dir DIR --dynamodb URL --sqs URL [--runs N] [FUNCTION...]

use local_stack::coldstart::{self, Fixture, INVOCATIONS, UpstreamTime, median, ms};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut bin_dir, mut dynamodb, mut sqs, mut runs) = (None, None, None, 10usize);
    let mut functions = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from),
            "--dynamodb" => dynamodb = args.next(),
            "--sqs" => sqs = args.next(),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            f => functions.push(f.to_owned()),
        }
    }
    let (Some(bin_dir), Some(dynamodb), Some(sqs)) = (bin_dir, dynamodb, sqs) else {
        eprintln!("usage: coldstart --bin-dir DIR --dynamodb URL --sqs URL [--runs N] [FUNCTION...]");
        return std::process::ExitCode::from(2);
    };
    if functions.is_empty() {
        functions = ["webhook", "processor", "optout", "admin"].map(String::from).to_vec();
    }
    match run(&bin_dir, &dynamodb, &sqs, runs, &functions).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coldstart: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    bin_dir: &std::path::Path,
    dynamodb: &str,
    sqs: &str,
    runs: usize,
    functions: &[String],
) -> Result<(), String> {
    let spent = UpstreamTime::default();
    let dynamo_proxy = coldstart::proxy(dynamodb, spent.clone())
        .await
        .map_err(|e| e.to_string())?;
    let moto_proxy = coldstart::proxy(sqs, spent.clone()).await.map_err(|e| e.to_string())?;
    let fixture = Fixture::new(dynamodb, sqs, &dynamo_proxy, &moto_proxy).await?;
    println!("Medians over {runs} cold starts; 'own' is the time not spent waiting on the emulators.\n");
    println!(
        "| function | init | init, own work | 1st invocation | 1st, own | {INVOCATIONS}th invocation | {INVOCATIONS}th, own | 1st / {INVOCATIONS}th (own) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (f, function) in functions.iter().enumerate() {
        let binary = bin_dir.join(function);
        let mut observed = Vec::new();
        for r in 0..runs {
            let base = 1_000_000 * (f as u64 + 1) + (r * INVOCATIONS) as u64;
            let events = fixture.events(function, base).await?;
            observed.push(coldstart::cold_start(&binary, &fixture.env, events, &spent).await?);
        }
        let pick = |f: &dyn Fn(&coldstart::Run) -> std::time::Duration| median(observed.iter().map(f).collect());
        let init = pick(&|r| r.init);
        let init_own = pick(&|r| r.init.saturating_sub(r.init_upstream));
        let first = pick(&|r| r.invocations[0].0);
        let first_own = pick(&|r| r.invocations[0].0.saturating_sub(r.invocations[0].1));
        let last = pick(&|r| r.invocations[INVOCATIONS - 1].0);
        let last_own = pick(&|r| {
            r.invocations[INVOCATIONS - 1]
                .0
                .saturating_sub(r.invocations[INVOCATIONS - 1].1)
        });
        println!(
            "| {function} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {:.2} |",
            ms(init),
            ms(init_own),
            ms(first),
            ms(first_own),
            ms(last),
            ms(last_own),
            first_own.as_secs_f64() / last_own.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
