#!/usr/bin/env bash
# bench/run.sh -- the ess-push benchmark, one command, rerunnable.
#
# Builds a Release tree in build-bench/, starts a private RabbitMQ + Postgres
# (deploy/dev/stack.sh, loopback, free ports), runs bench/bench.py
# (drain, latency, outage, limits), writes bench/results/YYYY-MM-DD-HHMM.md and
# bench/results/latest.md, and stops everything it started.
#
# Knobs (environment):
#   BENCH_RUNS_DRAIN=3 BENCH_RUNS_LATENCY=3 BENCH_RUNS_OUTAGE=3 BENCH_RUNS_LIMITS=3
#   BENCH_BUDGET=420   seconds of scenarios; later runs are skipped (and reported) past it
#   BENCH_ONLY=drain,limits   run only these scenarios
#   BENCH_STACK_FAST=1 Postgres fsync off (default: on, as in production)
#   BENCH_ARGS="..."   more bench.py options (bench/bench.py --help)
set -euo pipefail

SRC=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
BUILD=$SRC/build-bench
STACK_SH=$SRC/deploy/dev/stack.sh
WITH_STACK=$SRC/tests/integration/with_stack.sh
RESULTS=$SRC/bench/results
STAMP=$(date +%Y-%m-%d-%H%M)
RAW=$RESULTS/raw/$STAMP
STACK=""
BENCH_PID=""

say() { echo "run.sh: $*" >&2; }

# shellcheck disable=SC2317  # invoked from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        say "stopping bench.py (pid $BENCH_PID)"
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    if [ -n "$STACK" ] && [ -d "$STACK" ]; then
        say "stopping RabbitMQ + Postgres ($STACK)"
        "$STACK_SH" down "$STACK" || say "stack.sh down $STACK failed; see $STACK"
        if [ "${BENCH_KEEP_STACK_DIR:-0}" != 1 ]; then
            rm -rf "$STACK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools -------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        say "installing wrk"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 ||
            say "apt-get install wrk failed: the limits scenario will be reported as failed"
    else
        say "wrk missing and not root: the limits scenario will be reported as failed"
    fi
fi

# ---- build -------------------------------------------------------------
say "building Release tree in $BUILD"
mkdir -p "$BUILD"
LOG=$BUILD/bench-build.log
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    say "cmake configure failed (log $LOG)"
    exit 1
}
cmake --build "$BUILD" -j"$(nproc)" --target ess-push ess-bench-sink >>"$LOG" 2>&1 || {
    tail -n 30 "$LOG" >&2
    say "build failed (log $LOG)"
    exit 1
}

# ---- stack -------------------------------------------------------------
STACK=$(mktemp -d /tmp/ess-bench-stack.XXXXXX)
chmod 755 "$STACK" # the rabbitmq and postgres users must reach it
say "starting RabbitMQ + Postgres in $STACK"
ESS_STACK_FAST=${BENCH_STACK_FAST:-0} "$STACK_SH" up "$STACK" >/dev/null

# ---- scenarios ---------------------------------------------------------
mkdir -p "$RAW"
OUT=$RESULTS/$STAMP.md
NOTE=""
if [ "${BENCH_RUNS_LATENCY:-3}" -lt 3 ] || [ "${BENCH_RUNS_OUTAGE:-3}" -lt 3 ]; then
    NOTE=" (latency / outage set below 3 runs by BENCH_RUNS_*)"
fi
# shellcheck disable=SC2086
ESS_STACK_DIR=$STACK "$WITH_STACK" /usr/bin/python3 "$SRC/bench/bench.py" \
    --build "$BUILD" --src "$SRC" --out "$OUT" --rawdir "$RAW" --cmdline "bench/run.sh" \
    --runs-drain "${BENCH_RUNS_DRAIN:-3}" --runs-latency "${BENCH_RUNS_LATENCY:-3}" \
    --runs-outage "${BENCH_RUNS_OUTAGE:-3}" --runs-limits "${BENCH_RUNS_LIMITS:-3}" \
    --budget "${BENCH_BUDGET:-420}" --only "${BENCH_ONLY:-}" --runs-note "$NOTE" \
    ${BENCH_ARGS:-} &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=""
if [ -f "$OUT" ]; then
    cp "$OUT" "$RESULTS/latest.md"
    say "results: $OUT (also $RESULTS/latest.md); raw logs: $RAW"
else
    say "bench.py wrote no report (exit $rc); raw logs: $RAW"
    [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
