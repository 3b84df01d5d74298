#!/usr/bin/env bash
# bench/run.sh -- the ess-push benchmark, side by side with its peers, one
# command, rerunnable.
#
# Builds a Release tree in build-bench/ (ess-push, the sink, the C peers),
# installs what the peers need (python3-pika / python3-requests with apt-get,
# amqplib with npm ci into bench/peers/node_amqplib/node_modules), starts a
# private RabbitMQ + Postgres (deploy/dev/stack.sh, loopback, free ports), runs
# bench/bench.py (drain, latency, outage, limits), writes
# bench/results/YYYY-MM-DD-HHMM.md and bench/results/latest.md, and stops
# everything it started.
#
#   bench/run.sh           the full run (about 10 minutes on 2 cores)
#   bench/run.sh --smoke   every scenario once at a tiny size (500 events,
#                          latency 2 s) to prove the harness works; the report
#                          goes to bench/results/raw/smoke-*/ only
#
# Knobs (environment):
#   BENCH_RUNS_DRAIN=3 (ess-push, bare C) BENCH_RUNS_DRAIN_NODE=2 BENCH_RUNS_DRAIN_PYTHON=1
#   BENCH_RUNS_LATENCY=3 (ess-push) BENCH_RUNS_LATENCY_PEERS=1 BENCH_RUNS_OUTAGE=3
#   BENCH_RUNS_LIMITS=3
#   BENCH_BUDGET=600   seconds of scenarios; later runs are skipped (and reported) past it
#   BENCH_ONLY=drain,limits   run only these scenarios (or pairs: drain:bare,latency:ess-push)
#   BENCH_STACK_FAST=1 Postgres fsync off (default: on, as in production)
#   BENCH_ARGS="..."   more bench.py options (bench/bench.py --help)
set -euo pipefail

SRC=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
BUILD=$SRC/build-bench
STACK_SH=$SRC/deploy/dev/stack.sh
WITH_STACK=$SRC/tests/integration/with_stack.sh
RESULTS=$SRC/bench/results
NODE_PEER=$SRC/bench/peers/node_amqplib
STAMP=$(date +%Y-%m-%d-%H%M)
SMOKE=0
case "${1:-}" in
--smoke) SMOKE=1 ;;
"") ;;
-h | --help)
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: bench/run.sh [--smoke]" >&2
    exit 64
    ;;
esac
if [ "$SMOKE" = 1 ]; then
    RAW=$RESULTS/raw/smoke-$STAMP
else
    RAW=$RESULTS/raw/$STAMP
fi
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

missing=()
/usr/bin/python3 -c 'import pika' 2>/dev/null || missing+=(python3-pika)
/usr/bin/python3 -c 'import requests' 2>/dev/null || missing+=(python3-requests)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
            say "apt-get install ${missing[*]} failed: those peers will be reported as failed"
    else
        say "missing ${missing[*]} and not root: those peers will be reported as failed"
    fi
fi
# amqplib for the Node peer, exactly as package-lock.json pins it (node_modules is
# git-ignored); reinstalled only when the lock changed.
if command -v npm >/dev/null 2>&1; then
    if ! cmp -s "$NODE_PEER/package-lock.json" "$NODE_PEER/node_modules/.package-lock.json.ess" 2>/dev/null; then
        say "npm ci in bench/peers/node_amqplib"
        if (cd "$NODE_PEER" && npm ci --no-audit --no-fund --loglevel=error >&2); then
            cp "$NODE_PEER/package-lock.json" "$NODE_PEER/node_modules/.package-lock.json.ess"
        else
            say "npm ci failed: the Node peer will be reported as failed"
        fi
    fi
else
    say "npm missing: the Node peer will be reported as failed"
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
cmake --build "$BUILD" -j"$(nproc)" --target ess-push ess-bench-sink ess-bench-bare \
    ess-bench-publish ess-bench-consume ess-bench-floor >>"$LOG" 2>&1 || {
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
if [ "$SMOKE" = 1 ]; then
    OUT=$RAW/report.md
    ARGS=(--cmdline "bench/run.sh --smoke" --runs-drain 1 --runs-drain-node 1
        --runs-drain-python 1 --runs-latency 1 --runs-latency-peers 1 --runs-outage 1
        --runs-limits 1 --budget 120 --drain-events 500 --drain-timeout 30
        --latency-rate 250 --latency-secs 2 --latency-timeout 30 --outage-events 500
        --outage-timeout 30 --wrk-secs 1 --runs-note " (--smoke: tiny sizes, figures meaningless)")
else
    OUT=$RESULTS/$STAMP.md
    NOTE=""
    if [ "${BENCH_RUNS_DRAIN:-3}" -lt 3 ] || [ "${BENCH_RUNS_LATENCY:-3}" -lt 3 ] ||
        [ "${BENCH_RUNS_OUTAGE:-3}" -lt 3 ]; then
        NOTE=" (set below the defaults by BENCH_RUNS_*)"
    fi
    ARGS=(--cmdline "bench/run.sh" --runs-drain "${BENCH_RUNS_DRAIN:-3}"
        --runs-drain-node "${BENCH_RUNS_DRAIN_NODE:-2}"
        --runs-drain-python "${BENCH_RUNS_DRAIN_PYTHON:-1}"
        --runs-latency "${BENCH_RUNS_LATENCY:-3}"
        --runs-latency-peers "${BENCH_RUNS_LATENCY_PEERS:-1}"
        --runs-outage "${BENCH_RUNS_OUTAGE:-3}" --runs-limits "${BENCH_RUNS_LIMITS:-3}"
        --budget "${BENCH_BUDGET:-600}" --runs-note "$NOTE")
fi
# shellcheck disable=SC2086
ESS_STACK_DIR=$STACK "$WITH_STACK" /usr/bin/python3 "$SRC/bench/bench.py" \
    --build "$BUILD" --src "$SRC" --out "$OUT" --rawdir "$RAW" --only "${BENCH_ONLY:-}" \
    "${ARGS[@]}" ${BENCH_ARGS:-} &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=""
if [ -f "$OUT" ] && [ "$SMOKE" = 1 ]; then
    say "smoke report: $OUT (bench/results/latest.md untouched)"
elif [ -f "$OUT" ]; then
    cp "$OUT" "$RESULTS/latest.md"
    say "results: $OUT (also $RESULTS/latest.md); raw logs: $RAW"
else
    say "bench.py wrote no report (exit $rc); raw logs: $RAW"
    [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
