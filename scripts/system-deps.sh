#!/usr/bin/env bash
# Installs the system tools kpx's tests and demo use, with apt-get, when any is missing.
# Debian/Ubuntu; needs root to install (prints what to install otherwise).
set -euo pipefail
PACKAGES=(iptables iproute2 conntrack protobuf-compiler nats-server openssl)
COMMANDS=(iptables-restore ip6tables-restore ip conntrack protoc nats-server openssl)
missing=0
for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || missing=1; done
[ "$missing" = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "kpx: missing system tools; install them with: sudo apt-get install -y ${PACKAGES[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
