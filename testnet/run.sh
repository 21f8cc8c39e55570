#!/usr/bin/env bash
# Launches a local four-validator tally testnet on 127.0.0.1.
#
#   ./testnet/run.sh              build, start, wait for blocks, stop all four on Ctrl-C
#   ./testnet/run.sh --detach     leave the nodes running; ./testnet/stop.sh stops them
#
# Validator i listens on p2p 26656+10i, RPC 26657+10i, metrics 26660+10i. Each run starts a
# fresh chain in testnet/data (git-ignored): keys, genesis, config, ledger and logs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/testnet/data"
validators=4
detach=0
accounts=${TALLY_TESTNET_ACCOUNTS:-1000}
profile=${TALLY_PROFILE:-release}

while [ $# -gt 0 ]; do
  case "$1" in
    --detach) detach=1 ;;
    --validators) validators=$2; shift ;;
    --accounts) accounts=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release --locked -p tally-node --bin tally)
else
  (cd "$root" && cargo build --locked -p tally-node --bin tally)
fi
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin="$target_dir/$profile/tally"
[ "$profile" = dev ] && bin="$target_dir/debug/tally"

"$root/testnet/stop.sh" >/dev/null 2>&1 || true
rm -rf "$data"
"$bin" testnet --validators "$validators" --accounts "$accounts" --out "$data" >/dev/null

for ((i = 0; i < validators; i++)); do
  "$bin" start --home "$data/node$i" >"$data/node$i.log" 2>&1 &
  echo $! >"$data/node$i.pid"
done

stop_all() { "$root/testnet/stop.sh"; }
if [ "$detach" = 0 ]; then
  trap 'echo; echo "stopping the testnet"; stop_all; exit 0' INT TERM
fi

height_of() {
  curl -s -m 2 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"status","params":{}}' "http://127.0.0.1:$1" |
    sed -n 's/.*"latest_block_height":"\([0-9]*\)".*/\1/p'
}

echo "waiting for the four validators to commit height 2..."
deadline=$((SECONDS + 120))
while :; do
  ready=0
  for ((i = 0; i < validators; i++)); do
    h=$(height_of $((26657 + 10 * i)) || true)
    [ -n "$h" ] && [ "$h" -ge 2 ] && ready=$((ready + 1))
  done
  [ "$ready" = "$validators" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "the testnet did not reach height 2 in 120 s; logs are in $data/node*.log" >&2
    stop_all
    exit 1
  fi
  for ((i = 0; i < validators; i++)); do
    if ! kill -0 "$(cat "$data/node$i.pid")" 2>/dev/null; then
      echo "validator $i exited; its log:" >&2
      tail -20 "$data/node$i.log" >&2
      stop_all
      exit 1
    fi
  done
  sleep 0.5
done

echo
echo "tally testnet is up: $validators validators committing blocks"
for ((i = 0; i < validators; i++)); do
  echo "  validator $i  rpc http://127.0.0.1:$((26657 + 10 * i))  p2p 127.0.0.1:$((26656 + 10 * i))  log $data/node$i.log"
done
echo
echo "submit a transfer of 10 from test account 0 to test account 1 and wait for its commit:"
echo "  $bin tx transfer --rpc http://127.0.0.1:26657 --from-account 0 --to-account 1 --amount 10 --commit"
echo "see its block on every node:"
echo "  for p in 26657 26667 26677 26687; do curl -s -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"block\",\"params\":{\"height\":\"2\"}}' -H 'content-type: application/json' http://127.0.0.1:\$p | head -c 200; echo; done"

if [ "$detach" = 1 ]; then
  echo
  echo "the nodes keep running; stop them with ./testnet/stop.sh"
  exit 0
fi
echo
echo "press Ctrl-C to stop the testnet"
while :; do
  for ((i = 0; i < validators; i++)); do
    h=$(height_of $((26657 + 10 * i)) || true)
    printf 'v%d:%s ' "$i" "${h:-down}"
  done
  echo
  sleep 5
done
