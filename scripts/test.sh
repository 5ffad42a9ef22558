#!/usr/bin/env bash
# The test command (README, CI): installs what it needs, builds, lints, checks generated code, then runs the
# unit tests and the real-packet e2e suite in one node --test run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build
npm run lint
bash scripts/check-gen.sh
units=()
for d in libs/*/dist/test services/*/dist/test test/dist/deploy test/dist/e2e; do [ -d "$d" ] && units+=("$d"); done
exec node --test --test-concurrency=1 "${units[@]}"
