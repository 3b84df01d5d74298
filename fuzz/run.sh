#!/usr/bin/env bash
# fuzz/run.sh -- build the libFuzzer targets with clang (ASan+UBSan) and run
# each for a bounded time, seeded from fuzz/seeds/ and fuzz/regress/, with
# fuzz/<target>.dict as its dictionary.
#   ESS_FUZZ_SECONDS   seconds per target (default 60)
#   ESS_FUZZ_BUILD     build dir (default build-fuzz beside the sources)
#   ESS_FUZZ_TARGETS   which targets (default: manifest render webhook records)
# A crash stops with its input saved as fuzz/crash-<target>-*: fix the bug,
# move the input to fuzz/regress/<target>/ (ctest replays it in every build).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${ESS_FUZZ_SECONDS:-60}
build=${ESS_FUZZ_BUILD:-$src/build-fuzz}
targets=${ESS_FUZZ_TARGETS:-manifest render webhook records}
cc=$(command -v clang || true)
if [ -z "$cc" ]; then
  echo "fuzz/run.sh: clang not found: apt-get install clang (deploy/dev/install-deps.sh)" >&2
  exit 1
fi
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DESS_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
for t in $targets; do
  cmake --build "$build" --target "ess-fuzz-$t" -j "$(nproc)" >/dev/null
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
printf '%-10s %8s %10s %s\n' target seconds runs result
status=0
for t in $targets; do
  corpus=$build/corpus/$t # grows across runs in the build dir; seeds stay clean
  mkdir -p "$corpus"
  log=$build/fuzz-$t.log
  dict=()
  [ -f "$src/fuzz/$t.dict" ] && dict=(-dict="$src/fuzz/$t.dict")
  if "$build/fuzz/ess-fuzz-$t" "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$src/fuzz/crash-$t-" \
    "$corpus" "$src/fuzz/seeds/$t" "$src/fuzz/regress/$t" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log, input in fuzz/crash-$t-*)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  printf '%-10s %8s %10s %s\n' "$t" "$secs" "${runs:-?}" "$result"
done
exit $status
