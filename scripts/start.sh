#!/usr/bin/env bash
# npm start: kpx's main job on the embedded default (the manifests in examples/).
# Starts nats-server, the controller and one executor per example node (see scripts/up.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
# The controller runs in this process: the node flags of services/cli/bin/kpx.js.
exec node --max-semi-space-size=64 scripts/up.mjs "${@}"
