#!/usr/bin/env bash
# banned.sh -- functions our C must not call (like curl's checksrc banned list):
# unbounded or unchecked ones, each with what to use instead.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
status=0
check() { # regex, advice
  local hits
  hits=$(grep -rnE --include='*.c' --include='*.h' "(^|[^_a-zA-Z0-9.>])$1[[:space:]]*\(" \
         "$root/common" "$root/workers" "$root/deploy" "$root/bench" 2>/dev/null || true)
  if [ -n "$hits" ]; then
    echo "banned $1: $2"
    echo "$hits"
    status=1
  fi
}
check sprintf "use snprintf"
check vsprintf "use vsnprintf"
check strcpy "use snprintf"
check strcat "use snprintf"
check gets "use fgets"
check atoi "use strtol with checks"
check atol "use strtol with checks"
check strtok "use strtok_r or a parser"
[ $status -eq 0 ] && echo "no banned functions"
exit $status
