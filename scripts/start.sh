#!/usr/bin/env bash
# npm start: kpx's main job on the embedded default (the manifests in examples/).
# Until the controller and executors land, this compiles every example node's rules, writes them to
# .cache/render/, and (as root) loads each into a throwaway network namespace to prove the kernel takes them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
exec node scripts/demo.mjs "${@}"
