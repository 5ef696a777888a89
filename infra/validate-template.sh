#!/usr/bin/env bash
# Validates template.yaml with the SAM CLI's transform and cfn-lint, offline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deploy-tools.sh"
cd "$ROOT"
sam validate --lint --region us-east-1
