#!/usr/bin/env bash
# Validates template.yaml with the SAM CLI's transform and cfn-lint, offline. Installs the SAM CLI
# into .cache/venv-sam on first use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/venv-sam"
SAM_SPEC="aws-sam-cli==1.170.0"
if [[ ! -x "$VENV/bin/sam" ]]; then
  echo "== installing $SAM_SPEC into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SAM_SPEC"
fi
cd "$ROOT"
SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --region us-east-1
