#!/usr/bin/env bash
# valgrind.sh -- memcheck under real workloads (ctest ess-it-valgrind, plain
# build only): these suites' ess-push workers run under valgrind; a memory
# error or a definite leak makes a worker exit 99, which its test reports.
set -euo pipefail
here=$(dirname "$0")
export ESS_TEST_VALGRIND=1
for t in delivery ops delta schedule twoway; do
    echo "== test_$t.py under valgrind"
    /usr/bin/python3 "$here/test_$t.py"
done
