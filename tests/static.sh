#!/usr/bin/env bash
# static.sh -- the static checks CI runs (shared/STYLE.md "Formatting and checks"):
#   clang-format  every tracked C file matches .clang-format
#   cppcheck      warning/performance/portability findings
#   clang-tidy    .clang-tidy (bugprone, clang-analyzer, performance), warnings are errors
# Usage: static.sh SRC_DIR BUILD_DIR   (BUILD_DIR holds compile_commands.json)
set -euo pipefail
src=$1
build=$2
cd "$src"
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find common workers deploy bench tests fuzz -name '*.[ch]')
mapfile -t units < <(printf '%s\n' "${files[@]}" | grep -E '^(common|workers|deploy|bench|fuzz)/.*\.c$')
status=0

echo "== clang-format (${#files[@]} files)"
if ! clang-format --dry-run --Werror --style=file "${files[@]}"; then
    echo "clang-format: reformat with: clang-format -i --style=file <file>"
    status=1
fi

echo "== cppcheck"
if ! cppcheck --quiet --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
        --suppress=missingIncludeSystem --std=c11 -I common "${units[@]}"; then
    status=1
fi

echo "== clang-tidy (${#units[@]} files)"
if ! printf '%s\n' "${units[@]}" |
        xargs -P "$(nproc)" -n 4 clang-tidy --quiet --extra-arg=-Wno-unknown-warning-option \
            -p "$build" 2>/dev/null; then
    status=1
fi
[ $status -eq 0 ] && echo "static checks clean"
exit $status
