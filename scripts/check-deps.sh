#!/usr/bin/env bash
# Checks that workspace dependencies point one way (ARCHITECTURE.md):
# audio knows no async runtime, Discord or gRPC; the gateway never depends on
# the worker nor the worker on the gateway; the pipeline knows no gRPC.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
forbid() { # crate, forbidden crates...
  local crate=$1; shift
  local tree
  tree=$(cargo tree -p "$crate" -e normal,build --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
  for bad in "$@"; do
    if grep -qx "$bad" <<<"$tree"; then
      echo "check-deps: $crate must not depend on $bad (cargo tree -p $crate -i $bad shows the path)" >&2
      fail=1
    fi
  done
}

forbid glyphoxa-audio tokio serenity songbird tonic glyphoxa-proto glyphoxa-pipeline
forbid glyphoxa-pipeline serenity songbird tonic glyphoxa-proto glyphoxa-worker glyphoxa-gateway
forbid glyphoxa-gateway glyphoxa-worker songbird
forbid glyphoxa-worker glyphoxa-gateway serenity
forbid glyphoxa-proto glyphoxa-audio glyphoxa-pipeline glyphoxa-worker glyphoxa-gateway

[ "$fail" -eq 0 ] && echo "check-deps: dependency directions OK"
exit "$fail"
