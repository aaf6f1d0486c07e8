#!/usr/bin/env bash
# Installs the pinned JavaScript implementations (OpenPGP.js, ts-mls) that the
# interop tests run. Idempotent: npm ci reinstalls exactly what
# js/package-lock.json records. Needs node >= 20.19 and npm.
set -euo pipefail
cd "$(dirname "$0")/js" && npm ci --no-audit --no-fund
