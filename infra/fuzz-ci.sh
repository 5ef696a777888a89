#!/usr/bin/env bash
# CI: every fuzz target for 30 seconds from its checked-in seeds; fails on any crash or hang.
# Installs what it needs (cargo-fuzz, a C++ compiler where it can). The long run is infra/fuzz.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh" -max_total_time=30 "$@"
