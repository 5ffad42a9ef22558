#!/bin/sh
# Picks the iptables backend the node uses, nft or legacy, then runs the command: what kube-proxy's image does
# with kubernetes-sigs/iptables-wrappers. Both sets of binaries are installed (Debian's iptables package); the
# image's `iptables`, `ip6tables` (and their -save/-restore) are switched with update-alternatives.
#
# The choice, in order:
#   1. $KPX_IPTABLES_MODE=nft|legacy, if set;
#   2. the hint kubelet leaves (chain KUBE-IPTABLES-HINT, or KUBE-KUBELET-CANARY, in the mangle table): the
#      backend holding it is the one kubelet uses;
#   3. the backend holding more rules (iptables-save and ip6tables-save of each, rule lines counted); nft on a tie.
# IPTABLES_WRAPPER_DRY_RUN=1 prints the choice and changes nothing (tests).
set -eu

count_rules() {
  # $1: legacy or nft. Rule lines ("-A ...") in both families; a missing or failing binary counts 0.
  { "iptables-$1-save" 2>/dev/null || true; "ip6tables-$1-save" 2>/dev/null || true; } | grep -c '^-' || true
}

has_hint() {
  # $1: legacy or nft.
  for chain in KUBE-IPTABLES-HINT KUBE-KUBELET-CANARY; do
    if "iptables-$1" -w 5 -t mangle -n -L "$chain" >/dev/null 2>&1 || "ip6tables-$1" -w 5 -t mangle -n -L "$chain" >/dev/null 2>&1; then
      return 0
    fi
  done
  return 1
}

choose_mode() {
  case "${KPX_IPTABLES_MODE:-}" in
    nft | legacy) echo "$KPX_IPTABLES_MODE"; return ;;
    "") ;;
    *) echo "iptables-wrapper: KPX_IPTABLES_MODE must be nft or legacy, not '$KPX_IPTABLES_MODE'" >&2; exit 2 ;;
  esac
  if has_hint nft; then echo nft; return; fi
  if has_hint legacy; then echo legacy; return; fi
  legacy=$(count_rules legacy)
  nft=$(count_rules nft)
  if [ "$legacy" -gt "$nft" ]; then echo legacy; else echo nft; fi
}

mode=$(choose_mode)
if [ "${IPTABLES_WRAPPER_DRY_RUN:-}" = 1 ]; then
  echo "$mode"
  exit 0
fi
for cmd in iptables ip6tables; do
  update-alternatives --set "$cmd" "/usr/sbin/$cmd-$mode" >/dev/null
done
echo "iptables-wrapper: using iptables-$mode" >&2
exec "$@"
