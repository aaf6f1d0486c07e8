#!/usr/bin/env bash
# Extra CI checks, run by .ci/run after the tests: staticcheck, then every
# fuzz target for FUZZTIME each (default 60s). The crash test
# (examples/homeserver, TestCrashSafetyUnderSIGKILL) runs with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZTIME="${FUZZTIME:-60s}"

start=$(date +%s)
echo "== staticcheck"
bash .ci/staticcheck.sh
echo "== fuzz (FUZZTIME=$FUZZTIME per target)"
bash .ci/fuzz.sh
echo "extra checks took $(( $(date +%s) - start ))s"
