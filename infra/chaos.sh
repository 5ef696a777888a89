#!/usr/bin/env bash
# Issue 9, "Emulator failure mid-run": signed WhatsApp events through the local stack on DynamoDB
# Local (with a data directory, so it can be restarted) and the SQS server (moto); DynamoDB Local is
# SIGKILLed part-way (by the driver, just as the processor is between writes of a batch) and
# started again on the same port and data while events keep coming. Then
# infra/src/bin/chaos.rs checks that every event is stored exactly once, that each poison envelope
# is quarantined with its reason while the rest of it is stored, that the dead-letter queue stays
# empty, and prints the figures
# (BENCHMARKS.md "Emulator failure mid-run"). Exits non-zero if a check fails.
#
# Not in CI: the 20,000 events are offered at 20/s, and a good envelope that met the outage is
# received again only after template.yaml's visibility timeout (180 s): the full run takes about
# 20 minutes on the 2-core machine.
#
#   infra/chaos.sh                                                  # 20,000 events, template settings
#   CHAOS_EVENTS=2000 CHAOS_VISIBILITY_TIMEOUT=20 infra/chaos.sh    # a quick try (~4 minutes)
#
# Settings (environment):
#   CHAOS_EVENTS (20000); CHAOS_PER_POST (20 events per POST); CHAOS_PER_ENVELOPE (5 events per
#     entry/change, so 4 envelopes per POST); CHAOS_SENDERS (300); CHAOS_POISON (5 envelopes).
#   CHAOS_RATE (20 events/s, offered steadily as Meta sends; 0 = as fast as the webhook answers,
#     which outruns the processor, and a deep queue slows moto, whose every call scans it).
#   CHAOS_CONCURRENCY (4 POSTs at a time).
#   CHAOS_KILL_AT (0.3: kill once this fraction of the events is accepted); CHAOS_OUTAGE_SECS (15:
#     how long DynamoDB Local stays dead before it is started again; its start-up adds a few s).
#   CHAOS_VISIBILITY_TIMEOUT (unset: template.yaml's). A good envelope is dead-lettered too if
#     DynamoDB is down for 5 of its receives, about 4 visibility timeouts: keep it above a quarter
#     of the outage.
#   CHAOS_SETTLE_TIMEOUT (seconds to wait for the queue to empty after sending; default from the
#     visibility timeout and receive count).
#   CHAOS_DATA_DIR (DynamoDB Local's -dbPath; default under /dev/shm); CHAOS_KEEP=1 keeps it.
# Logs and the report: .cache/chaos/<time>/ (report.txt, stack.log).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.cache/chaos/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
STARTED="$(date +%s)"
OUTAGE="${CHAOS_OUTAGE_SECS:-15}"
# DynamoDB Local's data directory: on tmpfs when there is one (a SIGKILL loses nothing written
# there, and SQLite's fsyncs on this disk halve DynamoDB Local's write rate), else in the run.
if [[ -z "${CHAOS_DATA_DIR:-}" && -d /dev/shm && -w /dev/shm ]]; then
  CHAOS_DATA_DIR="/dev/shm/chaos-dynamodb-$(basename "$RUN_DIR")"
fi
export DYNAMODB_DATA_DIR="${CHAOS_DATA_DIR:-$RUN_DIR/dynamodb-data}"
# Installs and starts DynamoDB Local (on DYNAMODB_DATA_DIR) and moto; stops everything in PIDS on
# exit. Defines start_dynamodb_local, free_port, wait_for and die.
source "$ROOT/infra/emulators.sh"
cd "$ROOT"
finish() {
  cleanup
  if [[ "${CHAOS_KEEP:-}" != 1 ]]; then rm -rf "$DYNAMODB_DATA_DIR"; fi
}
trap finish EXIT

# The stack and the driver share these (the driver signs with the app secret, reads as admin).
export META_APP_SECRET="chaos-app-secret" META_VERIFY_TOKEN="chaos-verify-token"
export CHAOS_TOKEN="chaos-operator-token-0001" SUBJECT_KEY_SECRET="chaos-subject-key-secret-0123456789abcdef"
# One caller that registers the run's tenant and reads it back.
export LOCAL_PRINCIPALS='[{"token": "chaos-operator-token-0001", "principal": "arn:local:iam::000000000000:user/chaos",
  "roles": ["platform_admin", "tenant_agent"], "tenants": ["chaos"]}]'

echo "== building the local stack and the chaos driver (debug)"
cargo build --quiet -p local-stack --bin local-stack --bin chaos
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

STACK_PORT="$(free_port)"
NO_COLOR=1 RUST_LOG="${CHAOS_RUST_LOG:-info}" "$BIN/local-stack" --port "$STACK_PORT" \
  --dynamodb-endpoint "$DYNAMODB_ENDPOINT" --sqs-endpoint "$SQS_ENDPOINT" \
  >"$RUN_DIR/stack.out" 2>"$RUN_DIR/stack.log" &
STACK_PID="$!"
PIDS+=("$STACK_PID")
wait_for "the local stack" "$STACK_PORT" "$STACK_PID" "$RUN_DIR/stack.log"
for _ in $(seq 1 100); do
  grep -q "local stack on" "$RUN_DIR/stack.out" && break
  sleep 0.1
done
# The stack names its tables and queues local-<8 hex>-<LogicalId>; the driver reads them back.
PREFIX="$(sed -n 's/.*(prefix \(local-[0-9a-f]*-\)).*/\1/p' "$RUN_DIR/stack.out" | head -n 1)"
[[ -n "$PREFIX" ]] || die "no table prefix in the stack's banner ($RUN_DIR/stack.out)"
echo "== local stack on 127.0.0.1:$STACK_PORT (pid $STACK_PID), tables and queues $PREFIX*; run in $RUN_DIR"
echo "== DynamoDB Local (pid $DYNAMODB_PID) keeps its tables in $DYNAMODB_DATA_DIR"

args=(--url "http://127.0.0.1:$STACK_PORT" --dynamodb "$DYNAMODB_ENDPOINT" --sqs "$SQS_ENDPOINT"
  --prefix "$PREFIX" --stack-log "$RUN_DIR/stack.log" --run-dir "$RUN_DIR"
  --events "${CHAOS_EVENTS:-20000}" --per-post "${CHAOS_PER_POST:-20}"
  --per-envelope "${CHAOS_PER_ENVELOPE:-5}" --senders "${CHAOS_SENDERS:-300}"
  --poison "${CHAOS_POISON:-5}" --kill-at "${CHAOS_KILL_AT:-0.3}"
  --concurrency "${CHAOS_CONCURRENCY:-4}" --rate "${CHAOS_RATE:-20}")
[[ -n "${CHAOS_VISIBILITY_TIMEOUT:-}" ]] && args+=(--visibility-timeout "$CHAOS_VISIBILITY_TIMEOUT")
[[ -n "${CHAOS_SETTLE_TIMEOUT:-}" ]] && args+=(--settle-timeout "$CHAOS_SETTLE_TIMEOUT")
# The driver SIGKILLs DynamoDB Local itself, by this pid, in the middle of a processor batch; this
# script then leaves it dead for OUTAGE seconds and starts it again on the same port and data.
echo "$DYNAMODB_PID" >"$RUN_DIR/dynamodb.pid"
"$BIN/chaos" "${args[@]}" > >(tee "$RUN_DIR/report.txt") 2>&1 &
DRIVER_PID="$!"
PIDS+=("$DRIVER_PID")

while [[ ! -e "$RUN_DIR/killed" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; do sleep 0.1; done
if [[ -e "$RUN_DIR/killed" ]]; then
  wait "$DYNAMODB_PID" 2>/dev/null || true
  echo "== DynamoDB Local (pid $DYNAMODB_PID) is dead; starting it again in $OUTAGE s on port $DYNAMO_PORT, same data"
  sleep "$OUTAGE"
  start_dynamodb_local "$DYNAMO_PORT"
  date +%s%3N >"$RUN_DIR/restarted"
  echo "== DynamoDB Local listening again on port $DYNAMO_PORT (pid $DYNAMODB_PID)"
fi

status=0
wait "$DRIVER_PID" || status=$?
echo "== infra/chaos.sh: $(($(date +%s) - STARTED)) s in all (builds and emulator start included); exit $status"
echo "== report: $RUN_DIR/report.txt; the stack's log: $RUN_DIR/stack.log; emulators: $LOGS"
exit "$status"
