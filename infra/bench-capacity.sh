#!/usr/bin/env bash
# DynamoDB capacity units per message (first message of a new contact, next message of a known
# one, a replay, a status update) on DynamoDB Local through the real adapters, printed as a table.
# The same run is the budget test in infra/test.sh; this shows its figures.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/emulators.sh"
cd "$ROOT"
out="$(mktemp)"
status=0
cargo test -p processor --test capacity -- --nocapture >"$out" 2>&1 || status=$?
grep -E '^\|' "$out" || true
if [[ $status -ne 0 ]]; then
  cat "$out" >&2
fi
rm -f "$out"
exit "$status"
