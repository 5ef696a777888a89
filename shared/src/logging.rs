//! Logging of the Lambda functions: JSON lines on stdout, the level from Lambda's advanced logging
//! controls (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` as a plain level, else INFO). What
//! `lambda_runtime`'s default subscriber does, without its per-target filter, which links a regex
//! engine into every binary.

use std::str::FromStr;
use tracing_subscriber::filter::LevelFilter;

pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| LevelFilter::from_str(&l).ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_current_span(false)
        .init();
}
