#!/usr/bin/env bash
# The webhook's hot path (signature check of a 1.9 KB body; verify + split of a 5 KB body) with the
# profile that ships (release: LTO, dependencies at "z", sha2/hmac at 3, serde_json at "s"), then
# with sha2 and hmac at "s" too, to show what the per-package overrides buy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== shipping profile (sha2, hmac at opt-level 3; serde_json at \"s\")"
cargo bench -p webhook --bench verify_split -- --noplot
echo "== sha2, hmac and serde_json at opt-level \"s\""
cargo bench -p webhook --bench verify_split \
  --config 'profile.release.package.sha2.opt-level="s"' \
  --config 'profile.release.package.hmac.opt-level="s"' \
  --config 'profile.release.package.serde_json.opt-level="s"' -- --noplot
