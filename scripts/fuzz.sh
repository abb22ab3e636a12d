#!/usr/bin/env bash
# Runs every fuzz target of the module (each FuzzXxx in a _test.go file)
# for the given time: ./scripts/fuzz.sh 5s. Fails on the first crash, which
# go test leaves under the package's testdata/fuzz for the regression test.
# Minimizing new inputs is capped at 2s: by default it may take a minute,
# and a short run would spend its time there rather than fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-5s}"
go="${GO:-go}"
targets=$(grep -rl --include='*_test.go' '^func Fuzz' internal cmd 2>/dev/null | sort -u)
n=0
summary=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for file in $targets; do
  pkg="./$(dirname "$file")"
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "fuzz $pkg $fn ($fuzztime)"
    "$go" test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s "$pkg" 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
    # The last progress line holds the executions run; a short run on a
    # busy machine can end while still gathering baseline coverage,
    # before any such line.
    execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    summary+="| \`$pkg\` | $fn | ${execs:-?} |"$'\n'
    n=$((n+1))
  done
done
echo "fuzzed $n targets for $fuzztime each"
echo "| package | target | executions |"
echo "| --- | --- | ---: |"
printf '%s' "$summary"
