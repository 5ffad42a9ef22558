#!/usr/bin/env bash
# Fails when libs/proto/src/gen is not exactly what `npm run gen` (scripts/gen-proto.sh) produces from
# proto/kpx/v1/*.proto: a .proto changed without regenerating, or a generated file was edited by hand.
# Run by CI; touches nothing in the checkout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
committed="$root/libs/proto/src/gen"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bash "$root/scripts/gen-proto.sh" "$tmp/gen" >/dev/null

if [[ ! -d "$committed" ]]; then
  echo "check-gen: libs/proto/src/gen is missing; run 'npm run gen' and commit the result" >&2
  exit 1
fi

if ! diff -r -u "$committed" "$tmp/gen" >"$tmp/diff"; then
  echo "check-gen: libs/proto/src/gen differs from what 'npm run gen' produces." >&2
  echo "check-gen: never edit generated files; change proto/kpx/v1/*.proto or scripts/gen-proto.sh," >&2
  echo "check-gen: then run 'npm run gen' and commit libs/proto/src/gen. Differences (- checked in, + generated):" >&2
  head -n 200 "$tmp/diff" >&2
  exit 1
fi
echo "check-gen: libs/proto/src/gen is up to date"
