#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), one after the other, on the stable toolchain
# (`--sanitizer none`: no -Z flag, so no nightly). Installs cargo-fuzz if missing and checks for
# the C++ compiler libfuzzer-sys needs. Each target starts from its checked-in seeds
# (fuzz/corpus/<target>/, read only) and grows its working corpus in fuzz/target/corpus/<target>/;
# a crash is saved in fuzz/artifacts/<target>/ and makes the script fail, after the other targets;
# once fixed, it goes to fuzz/regressions/<target>/, which every run replays (a regression test).
# Prints executions, exec/s and corpus size per target (BENCHMARKS.md "Fuzzing").
# Usage: infra/fuzz.sh                         every target for 10 million executions (the long run)
#        infra/fuzz.sh -max_total_time=30      any libFuzzer limit instead (infra/fuzz-ci.sh)
#        infra/fuzz.sh -runs=100000 cursor_decode    some targets only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
CARGO_FUZZ_VERSION=0.13.2

limits=()
targets=()
for arg in "$@"; do
  case "$arg" in
    -*) limits+=("$arg") ;;
    *) targets+=("$arg") ;;
  esac
done
[[ ${#limits[@]} -gt 0 ]] || limits=(-runs=10000000)
[[ ${#targets[@]} -gt 0 ]] || targets=(webhook_verify_split processor_parse keyword_classify cursor_decode)

if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    echo "fuzz: installing g++ (libfuzzer-sys compiles libFuzzer, which is C++)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
  else
    echo "fuzz: a C++ compiler is needed (libfuzzer-sys compiles libFuzzer): install g++ or clang++" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd "$FUZZ"
# The same flags for build and run, so run does not rebuild: release, debug assertions and
# overflow checks on (cargo-fuzz's default), no sanitizer.
build_flags=(--sanitizer none)
echo "fuzz: building ${targets[*]}"
for t in "${targets[@]}"; do
  cargo fuzz build "${build_flags[@]}" "$t"
done

failed=()
summary=()
for t in "${targets[@]}"; do
  seeds="$FUZZ/corpus/$t"
  work="$FUZZ/target/corpus/$t"
  mkdir -p "$work" "$FUZZ/artifacts/$t"
  log="$FUZZ/target/fuzz-$t.log"
  echo "fuzz: $t ${limits[*]}"
  start=$(date +%s)
  set +e
  # -timeout: an input that takes 10 s is a hang, reported like a crash.
  # Every crash fuzzing found, kept in fuzz/regressions/<target>/, is replayed first.
  regressions=()
  [[ -d "$FUZZ/regressions/$t" ]] && regressions=("$FUZZ/regressions/$t")
  cargo fuzz run "${build_flags[@]}" "$t" "$work" "$seeds" "${regressions[@]}" -- \
    "${limits[@]}" -timeout=10 -print_final_stats=1 -artifact_prefix="$FUZZ/artifacts/$t/" >"$log" 2>&1
  status=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  # The corpus as libFuzzer last reported it (units/bytes): the directory also keeps the units
  # that smaller ones replaced.
  corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
  summary+=("$(printf '%-22s %12s execs %9s exec/s %6ss  cov %6s  seeds %4s  corpus %s  exit %s' \
    "$t" "${execs:-?}" "${rate:-?}" "$secs" "${cov:-?}" "$(find "$seeds" -type f | wc -l)" "${corpus:-?}" "$status")")
  if [[ $status -ne 0 ]]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $status); the end of its log ($log):" >&2
    tail -40 "$log" >&2
    ls -l "$FUZZ/artifacts/$t/" >&2 || true
  fi
done

echo
echo "fuzz: summary (${limits[*]})"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes or hangs in ${failed[*]}: reproduce with" >&2
  echo "  cd fuzz && cargo fuzz run --sanitizer none <target> fuzz/artifacts/<target>/<file>" >&2
  exit 1
fi
echo "fuzz: no crash"
