#!/usr/bin/env bash
# run-demo.sh -- install what is missing, build, start a private RabbitMQ +
# Postgres on loopback, run ess-push with manifests/city2dmv.yml against a
# demo DMV partner, show what the partner received and the heartbeats, then
# stop everything it started.
set -euo pipefail
cd "$(dirname "$0")"
deploy/dev/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target ess-push >/dev/null
stack_dir=$(mktemp -d /tmp/ess-demo.XXXXXX)
trap 'deploy/dev/stack.sh down "$stack_dir" >/dev/null 2>&1 || true' EXIT
echo "== starting RabbitMQ + Postgres in $stack_dir (loopback only)"
deploy/dev/stack.sh up "$stack_dir" >/dev/null
ESS_STACK_DIR=$stack_dir ESS_BIN_DIR=$PWD/build ESS_SRC_DIR=$PWD \
  tests/integration/with_stack.sh /usr/bin/python3 deploy/dev/demo.py
