#!/usr/bin/env bash
# Runs every Go fuzz target of the repository, one at a time, for FUZZTIME
# each (default 60s). Targets are found by grepping `func FuzzXxx(` in
# *_test.go files, so a new target is fuzzed without touching this script.
# A failing input is written by go test to the package's
# testdata/fuzz/FuzzXxx/ (commit it with the fix, as a regression seed).
# Exits non-zero if any target fails; the others still run.
#
#   FUZZTIME=10s bash .ci/fuzz.sh           # all targets, 10 s each
#   bash .ci/fuzz.sh FuzzHandler FuzzDecode  # only these
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-60s}"
# Minimising a new input or a failure counts against nothing else; bound it
# so a stateful target cannot spend its whole budget there.
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-10s}"

# "dir name" lines, sorted, one per target.
targets=$(grep -rE --include='*_test.go' --exclude-dir=node_modules --exclude-dir=testdata \
    -o '^func Fuzz[A-Za-z0-9_]*\(' . \
  | sed -E 's|^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($|\1 \2|; s|^\./[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($|. \1|' \
  | sort -u)
if [ "$#" -gt 0 ]; then
  want=" $* "
  targets=$(echo "$targets" | while read -r dir name; do
    case "$want" in *" $name "*) echo "$dir $name" ;; esac
  done)
fi
if [ -z "$targets" ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

n=$(echo "$targets" | wc -l)
echo "fuzzing $n targets for $FUZZTIME each"
failed=()
summary=()
while read -r dir name; do
  start=$(date +%s)
  echo "--- $name (./$dir)"
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" \
      -fuzzminimizetime="$FUZZMINIMIZETIME" "./$dir" 2>&1 | tail -n 25; then
    status=ok
  else
    status=FAIL
    failed+=("$dir $name")
  fi
  summary+=("$(printf '%-28s %-22s %4ss  %s' "$name" "$dir" "$(( $(date +%s) - start ))" "$status")")
done <<< "$targets"

echo
echo "fuzz summary (FUZZTIME=$FUZZTIME; seconds include the build):"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
