#!/usr/bin/env bash
# The project's test command: installs DynamoDB Local and an SQS server into .cache/, starts both on
# free loopback ports, runs the whole workspace test suite against them, and stops them on any exit.
# Also installs Debian's chromium, in which tests/status_page.rs renders the public status page.
# Usage: infra/test.sh                      the whole workspace
#        infra/test.sh -p shared <filter>   any cargo test arguments instead
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/emulators.sh"

install_chromium() {
  if [[ -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then return; fi
  echo "== installing Debian's chromium (the status page's browser test)"
  local sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    || die "apt-get install chromium failed"
}
install_chromium

cd "$ROOT"
if [[ $# -gt 0 ]]; then
  cargo test "$@"
else
  cargo test --workspace
fi
