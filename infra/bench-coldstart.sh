#!/usr/bin/env bash
# Cold-start benchmark: builds each function's release binary for this machine (the profile that
# ships, LTO included), starts the emulators, and prints init and first/fifth invocation figures
# (medians over 10 cold starts, emulator time apart). Usage: infra/bench-coldstart.sh [--runs N]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/emulators.sh"
cd "$ROOT"
FUNCTIONS=(webhook processor optout admin)
cargo build --release $(printf -- '-p %s ' "${FUNCTIONS[@]}")
cargo build --release -p local-stack --bin coldstart
target/release/coldstart --bin-dir target/release --dynamodb "$DYNAMODB_ENDPOINT" --sqs "$SQS_ENDPOINT" "$@" "${FUNCTIONS[@]}"
