#!/usr/bin/env bash
# The erasure benchmark (issue 11; BENCHMARKS.md "Erasure of a person"): a person with 10,000
# messages across three tenants erased by one request on DynamoDB Local, through the real adapter
# and the erasure worker; prints the times, items and capacity, and fails if the request does not
# complete verified with every item counted or a neighbour's messages go. Not in CI (it seeds
# 10,000 messages first).
#
#   infra/bench-erasure.sh                    # 10,000 messages
#   infra/bench-erasure.sh --messages 1000    # a quick try
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/emulators.sh"
cd "$ROOT"
cargo build --quiet -p local-stack --bin erasure_bench
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/erasure_bench" --dynamodb "$DYNAMODB_ENDPOINT" "$@"
