#!/usr/bin/env bash
# Sourced by the scripts that build or validate the deployment: installs the pinned SAM CLI and
# cargo-lambda (which brings zig, the arm64 linker) into .cache/venv-sam, adds Rust's arm64
# target, and puts both on the PATH. Offline after the first run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY_VENV="$ROOT/.cache/venv-sam"
SAM_SPEC="aws-sam-cli==1.170.0"
CARGO_LAMBDA_SPEC="cargo-lambda==1.9.2"
if [[ ! -x "$DEPLOY_VENV/bin/sam" || ! -x "$DEPLOY_VENV/bin/cargo-lambda" ]]; then
  echo "== installing $SAM_SPEC and $CARGO_LAMBDA_SPEC into $DEPLOY_VENV"
  python3 -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install --quiet --disable-pip-version-check "$SAM_SPEC" "$CARGO_LAMBDA_SPEC"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
export PATH="$DEPLOY_VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
