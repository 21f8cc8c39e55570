#!/usr/bin/env bash
# Block sync speed: against the running local testnet (./testnet/run.sh --detach), stops
# validator 3, deletes its data folder, restarts it, and times its catch-up to the others'
# tip by block sync from genesis: blocks/s and txs/s applied (every block's certificate and
# every tx signature verified, every block executed and committed to redb).
#
#   ./testnet/sync_bench.sh            # uses whatever the chain holds now
#
# For full blocks, put load on the chain first, e.g.
#   cargo run --release -p tally-bench --bin submit_loop -- --seconds 60
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/testnet/data"
profile=${TALLY_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin="$target_dir/$profile/tally"
[ "$profile" = dev ] && bin="$target_dir/debug/tally"
node=3
rpc=$((26657 + 10 * node))
metrics=$((26660 + 10 * node))

status_field() {
  curl -s -m 5 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"status","params":{}}' "http://127.0.0.1:$1" |
    sed -n "s/.*\"$2\":\"\([0-9]*\)\".*/\1/p"
}
metric() {
  # Series carry a chain_id label: match the name before it.
  curl -s -m 5 "http://127.0.0.1:$metrics/metrics" | awk -v m="$1" '{ n = $1; sub(/\{.*/, "", n) } n == m { print $2 }'
}

[ -f "$data/node$node.pid" ] || { echo "no testnet running: ./testnet/run.sh --detach" >&2; exit 1; }
kill "$(cat "$data/node$node.pid")" 2>/dev/null || true
sleep 1
rm -rf "$data/node$node/data"
target=$(status_field 26657 latest_block_height)
start_ns=$(date +%s%N)
"$bin" start --home "$data/node$node" >>"$data/node$node.log" 2>&1 &
echo $! >"$data/node$node.pid"
echo "validator $node restarted with an empty ledger; the others are at height $target"
deadline=$((SECONDS + 600))
while :; do
  h=$(status_field "$rpc" latest_block_height || true)
  if [ -n "$h" ] && [ "$h" -ge "$target" ]; then break; fi
  if [ $SECONDS -ge $deadline ]; then echo "no catch-up within 600 s (at ${h:-?})" >&2; exit 1; fi
  sleep 0.2
done
end_ns=$(date +%s%N)
secs=$(echo "scale=3; ($end_ns - $start_ns) / 1000000000" | bc)
synced=$(metric tally_synced_blocks_total)
txs=$(metric tally_txs_committed_total)
echo "caught up to $h in $secs s (process start included): $synced blocks by block sync, $txs txs"
echo "block sync: $(echo "scale=1; $synced / $secs" | bc) blocks/s, $(echo "scale=0; $txs / $secs" | bc) txs/s"
