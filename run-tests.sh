#!/usr/bin/env bash
# run-tests.sh -- every ESS test, as CI runs it, on a fresh Debian 12 machine:
#   1. installs what is missing (deploy/dev/install-deps.sh, apt-get as root),
#   2. builds with -Werror and runs every unit and integration test under ctest
#      (integration tests start their own RabbitMQ + Postgres on loopback),
#   3. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs
#      the whole suite once more,
#   4. fuzzes every libFuzzer target for a bounded time (fuzz/run.sh, clang;
#      ESS_FUZZ_SECONDS per target, default 45: four targets, ~4 minutes).
# ESS_TEST_SKIP_SANITIZE=1 skips step 3, ESS_TEST_SKIP_FUZZ=1 step 4 (a quicker local loop).
set -euo pipefail
cd "$(dirname "$0")"
deploy/dev/install-deps.sh
jobs=$(nproc)

suite() { # build dir, extra cmake args...
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 900)
}

echo "== build + tests (-Werror) =="
suite build
if [ "${ESS_TEST_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build + tests under ASan + UBSan =="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  suite build-asan -DESS_SANITIZE=ON
fi
if [ "${ESS_TEST_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzing (libFuzzer, ASan + UBSan) =="
  ESS_FUZZ_SECONDS=${ESS_FUZZ_SECONDS:-45} fuzz/run.sh
fi
