#!/usr/bin/env bash
# Builds static/app.js, the example home server's web client, from src/app.js
# and the npm packages pinned in package-lock.json (OpenPGP.js and ts-mls at
# the versions interop/js uses, esbuild). The output is committed so the Go
# server needs no Node; the build is deterministic, so
#
#   bash examples/homeserver/web/build.sh           # rebuild static/app.js
#   bash examples/homeserver/web/build.sh --check   # fail if it differs
#
# Needs node >= 20.19 and npm.
set -euo pipefail
cd "$(dirname "$0")"

# The browser must run the same OpenPGP.js and ts-mls as the interop tests.
node -e '
const web = require("./package-lock.json").packages, interop = require("../../../interop/js/package-lock.json").packages;
for (const p of ["openpgp", "ts-mls", "@noble/hashes", "@hpke/core", "@hpke/common", "@noble/ciphers"]) {
  const a = web["node_modules/" + p], b = interop["node_modules/" + p];
  if (!a || !b || a.version !== b.version || a.integrity !== b.integrity) {
    console.error(`build.sh: ${p} is ${a && a.version} here but ${b && b.version} in interop/js/package-lock.json`);
    process.exit(1);
  }
}'

npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

out=static/app.js
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp)
  trap 'rm -f "$out"' EXIT
fi
# ts-mls loads the packages of the cipher suites the page does not use
# (ChaCha20, X448, ML-KEM, Ed448, ...) with import() only when asked to;
# they stay external and are never fetched.
node_modules/.bin/esbuild src/app.js --bundle --format=esm --platform=browser \
  --target=es2022 --minify --charset=utf8 --legal-comments=eof --log-level=warning \
  --external:@hpke/chacha20poly1305 --external:@hpke/dhkem-x448 --external:@hpke/ml-kem \
  --external:@hpke/hybridkem-x-wing --external:@noble/curves --external:'@noble/curves/*' \
  --external:@noble/post-quantum --external:'@noble/post-quantum/*' \
  --outfile="$out"

if [ "${1:-}" = "--check" ]; then
  if ! cmp -s "$out" static/app.js; then
    echo "build.sh: examples/homeserver/web/static/app.js differs from a fresh build of src/app.js; run bash examples/homeserver/web/build.sh and commit it" >&2
    exit 1
  fi
  echo "static/app.js is byte-identical to a fresh build ($(wc -c <static/app.js) bytes, sha256 $(sha256sum static/app.js | cut -c1-16))"
fi
