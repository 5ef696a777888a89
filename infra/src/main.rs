use local_stack::{Options, usage};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let options = match Options::from_args(std::env::args().skip(1), |n| std::env::var(n).ok()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("local-stack: {e}\n\n{}", usage());
            return std::process::ExitCode::from(2);
        }
    };
    let stack = match local_stack::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-stack: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", stack.banner());
    let _ = tokio::signal::ctrl_c().await;
    stack.stop().await;
    std::process::ExitCode::SUCCESS
}
