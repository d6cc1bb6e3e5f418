#!/usr/bin/env bash
# Exact resume and stop signals under load, on demand (not part of CI): while LOAD CPU-bound
# processes compete for the cores, runs the SIGTERM/resume tests of pretrain, supervised and probe
# and the task-signal tests ROUNDS times in a row, then the whole suite SUITES times; stops at the
# first failure. Prints one line per round and a closing 'N passed, N failed'.
#
#   bash benches/stress_resume.sh [ROUNDS=20] [SUITES=3] [LOAD=2]
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20} SUITES=${2:-3} LOAD=${3:-2}
DENO=$(command -v deno || echo node_modules/.bin/deno)
"$DENO" task setup >/dev/null || exit 1
hogs=()
for _ in $(seq "$LOAD"); do
  sh -c 'while :; do :; done' &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
passed=0 failed=0
run() {
  local what=$1 start=$SECONDS log
  shift
  log=$(mktemp)
  if "$DENO" test --allow-all "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "$what: ok in $((SECONDS - start)) s ($(grep -o '[0-9]* passed' "$log" | tail -1))"
  else
    failed=$((failed + 1))
    echo "$what: FAILED after $((SECONDS - start)) s; log: $log"
    grep -A8 'ERRORS' "$log" | head -20
    return 1
  fi
  rm -f "$log"
}
for r in $(seq "$ROUNDS"); do
  run "signals and resume, round $r/$ROUNDS" --filter '/SIGTERM|signals reach/' \
    tests/pretrain.test.ts tests/supervised.test.ts tests/probe_resume.test.ts \
    tests/task_signals.test.ts || break
done
if [ "$failed" -eq 0 ]; then
  for r in $(seq "$SUITES"); do
    run "whole suite, run $r/$SUITES" tests/ || break
  done
fi
echo "stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
