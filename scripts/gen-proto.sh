#!/usr/bin/env bash
# Generates the TypeScript code of the wire contract (proto/kpx/v1/*.proto) into libs/proto/src/gen,
# with Debian's protoc (package protobuf-compiler) and the ts-proto plugin from node_modules.
# Never edit the generated files: change the .proto files or the options below and run `npm run gen`.
#
# Usage: scripts/gen-proto.sh [OUT_DIR]    (default: libs/proto/src/gen; scripts/check-gen.sh passes a temp dir)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/libs/proto/src/gen}"
plugin="$root/node_modules/.bin/protoc-gen-ts_proto"

if ! command -v protoc >/dev/null 2>&1; then
  echo "gen-proto: protoc not found; install Debian's protobuf-compiler (apt-get install protobuf-compiler)" >&2
  exit 1
fi
if [[ ! -x "$plugin" ]]; then
  echo "gen-proto: $plugin not found; run npm install at the repository root" >&2
  exit 1
fi

# ts-proto options:
# - esModuleInterop, importSuffix=.js, env=node: ESM under NodeNext (imports need the .js suffix), Node Buffers.
# - outputServices=grpc-js: NodeSyncService definition, NodeSyncServer type and NodeSyncClient for @grpc/grpc-js.
# - forceLong=number: the 64-bit fields are generations (a counter far below 2^53) and Timestamp seconds; plain
#   numbers compare, sort, key Maps and serialize to JSON without friction; decode throws above 2^53 rather than
#   losing precision. Times are Timestamps, so nanosecond epochs never hit this limit.
# - useOptionals=messages: message-typed fields (Timestamps, oneof payload) are optional keys; scalars always set.
# - oneof=unions-value: RuleObject.payload is `{ $case, value }`, a discriminated union a switch can exhaust.
# - outputJsonMethods=true: toJSON/fromJSON for CLI output and fixtures.
# - useDate=false: Timestamp stays {seconds, nanos} (a Date would drop nanoseconds in binary too).
# - annotateFilesWithVersion=false: no protoc/ts-proto versions in headers, so output does not vary by machine.
opts=(
  esModuleInterop=true
  importSuffix=.js
  env=node
  outputServices=grpc-js
  forceLong=number
  useOptionals=messages
  oneof=unions-value
  outputJsonMethods=true
  useDate=false
  annotateFilesWithVersion=false
)
joined="$(IFS=,; echo "${opts[*]}")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Relative, sorted input paths: the output must not depend on the checkout location or on find's order.
cd "$root/proto"
mapfile -t files < <(find kpx -name '*.proto' -type f | LC_ALL=C sort)
if [[ ${#files[@]} -eq 0 ]]; then
  echo "gen-proto: no .proto files under $root/proto" >&2
  exit 1
fi

protoc \
  --plugin=protoc-gen-ts_proto="$plugin" \
  --ts_proto_out="$tmp" \
  --ts_proto_opt="$joined" \
  --proto_path=. \
  "${files[@]}"

rm -rf "$out"
mkdir -p "$out"
cp -R "$tmp/." "$out/"
echo "gen-proto: wrote $(find "$out" -name '*.ts' | wc -l) files to ${out#"$root"/}"
