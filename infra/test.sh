#!/usr/bin/env bash
# The project's test command: installs DynamoDB Local and an SQS server into .cache/, starts both on
# free loopback ports, runs the whole workspace test suite against them, and stops them on any exit.
# Usage: infra/test.sh                      the whole workspace
#        infra/test.sh -p shared <filter>   any cargo test arguments instead
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/emulators.sh"

cd "$ROOT"
if [[ $# -gt 0 ]]; then
  cargo test "$@"
else
  cargo test --workspace
fi
