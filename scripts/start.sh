#!/usr/bin/env bash
# npm start: kpx's main job on the embedded default (the manifests in examples/).
# Starts nats-server, the controller and one executor per example node (see scripts/up.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
exec node scripts/up.mjs "${@}"
