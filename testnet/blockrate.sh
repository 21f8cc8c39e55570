#!/usr/bin/env bash
# Blocks committed by a node in SECONDS (default 60), as the difference of its height.
#   ./testnet/blockrate.sh [SECONDS] [RPC_PORT]
set -euo pipefail
seconds=${1:-60}
port=${2:-26657}
height() {
  curl -s -m 10 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"status","params":{}}' "http://127.0.0.1:$port" |
    sed -n 's/.*"latest_block_height":"\([0-9]*\)".*/\1/p'
}
a=$(height)
sleep "$seconds"
b=$(height)
echo "blocks in $seconds s: $((b - a)) ($a -> $b), $(echo "scale=2; ($b - $a) / $seconds" | bc) blocks/s"
