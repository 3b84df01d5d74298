#!/usr/bin/env bash
# run-demo.sh [--keep] [--state-dir DIR] -- ESS's main job in one command, on a
# fresh Debian 12 machine: install what is missing, build, then through the
# operator CLI: `hms dev up` (private RabbitMQ + Postgres on loopback),
# `hms dev partner` (a demo DMV on 127.0.0.1:18080), `hms ess deploy
# manifests/city2dmv.yml`, publish a few permit changes, show what the DMV
# received and `hms ess ps`; then stop the worker, the partner and the stack.
#
#   --keep           leave the worker, partner and stack running (prints how to stop them)
#   --state-dir DIR  HMS_STATE_DIR to use (default: a new temp dir, removed at the end)
# ESS_BUILD_DIR (default build) is the CMake build dir.
set -euo pipefail
cd "$(dirname "$0")"
keep=()
state=""
while [ $# -gt 0 ]; do
  case "$1" in
  --keep) keep=(--keep) ;;
  --state-dir) state=${2:?--state-dir needs a directory}; shift ;;
  -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run-demo.sh: unknown option $1 (try --help)" >&2; exit 64 ;;
  esac
  shift
done
build=${ESS_BUILD_DIR:-build}
start=$SECONDS

echo "== installing missing packages, building ess-push and hms ($build)"
deploy/dev/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target ess-push hms >/dev/null

created=()
if [ -z "$state" ]; then
  state=$(mktemp -d /tmp/ess-demo.XXXXXX)
  created=(--created)
fi
# As root the servers run as users rabbitmq/postgres: they pass through the state dir.
chmod 711 "$state"
export HMS_STATE_DIR=$state
# fsync off for the demo's throw-away database (a killed process still loses nothing).
export ESS_STACK_FAST=${ESS_STACK_FAST:-1}
rc=0
/usr/bin/python3 deploy/dev/demo.py --hms "$build/deploy/hms" --state "$state" \
  "${keep[@]}" "${created[@]}" || rc=$?
echo "== run-demo.sh: exit $rc after $((SECONDS - start)) s"
exit $rc
