#!/usr/bin/env bash
# Prints the size of every function's deployable binary (.aws-sam/build/<Function>/bootstrap, as
# `sam build` left it) and fails if one is over the budget (BENCHMARKS.md "Binary sizes").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUDGET_BYTES=6000000
shopt -s nullglob
binaries=("$ROOT"/.aws-sam/build/*/bootstrap)
[[ ${#binaries[@]} -gt 0 ]] || { echo "infra/binary-sizes.sh: no .aws-sam/build/*/bootstrap: run sam build first" >&2; exit 1; }
over=0
echo "| function | bytes | MB | within ${BUDGET_BYTES} bytes |"
echo "| --- | --- | --- | --- |"
for b in "${binaries[@]}"; do
  fn="$(basename "$(dirname "$b")")"
  bytes="$(stat -c %s "$b")"
  ok="yes"
  if (( bytes > BUDGET_BYTES )); then ok="NO"; over=1; fi
  printf '| %s | %s | %s | %s |\n' "$fn" "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')" "$ok"
done
exit "$over"
