#!/usr/bin/env bash
# Run one integration test with the stack's environment (ESS_AMQP_URL,
# ESS_PG_URL, ...) loaded from $ESS_STACK_DIR/env, written by stack.sh up.
set -euo pipefail
: "${ESS_STACK_DIR:?ESS_STACK_DIR is not set}"
if [ ! -f "$ESS_STACK_DIR/env" ]; then
  echo "with_stack.sh: $ESS_STACK_DIR/env missing: did 'stack.sh up' run?" >&2
  exit 1
fi
set -a
# shellcheck disable=SC1091
. "$ESS_STACK_DIR/env"
set +a
exec "$@"
