#!/usr/bin/env bash
# Builds the stack as a deploy does (`sam build`: every function, arm64, provided.al2023,
# rust-cargolambda, release profile), offline, then prints the binary sizes and fails if one is
# over budget. One release arm64 build: the size table reads what sam built.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deploy-tools.sh"
cd "$ROOT"
sam build --beta-features
exec infra/binary-sizes.sh
