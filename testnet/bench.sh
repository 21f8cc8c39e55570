#!/usr/bin/env bash
# Throughput benchmark: starts a fresh local four-validator testnet (./testnet/run.sh
# --detach), runs the load generator against it, prints the summary and stops the testnet.
# The report (JSON) and chart (SVG) go to testnet/data/bench/.
#
#   ./testnet/bench.sh                      60 s open loop (as fast as the nodes accept)
#   ./testnet/bench.sh --rate 10000         60 s at a target of 10,000 tx/s
#   ./testnet/bench.sh --seconds 5          any other loadgen option is passed on
#
# TALLY_PROFILE=dev uses debug builds (CI's smoke run); the default is release, the build
# the figures in the README come from. Everything runs on this machine: the four validators,
# the load generator and its signing share the same cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${TALLY_PROFILE:-release}
accounts=${TALLY_TESTNET_ACCOUNTS:-2000}

if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release --locked -p tally-bench --bin loadgen)
  loadgen=${CARGO_TARGET_DIR:-$root/target}/release/loadgen
else
  (cd "$root" && cargo build --locked -p tally-bench --bin loadgen)
  loadgen=${CARGO_TARGET_DIR:-$root/target}/debug/loadgen
fi

TALLY_PROFILE=$profile TALLY_TESTNET_ACCOUNTS=$accounts "$root/testnet/run.sh" --detach >/dev/null
trap '"$root/testnet/stop.sh" >/dev/null' EXIT
out="$root/testnet/data/bench"
mkdir -p "$out"
pids=$(ls "$root"/testnet/data/node*.pid | paste -sd, -)
"$loadgen" --accounts $((accounts - 1)) --pid-file "$pids" \
  --report "$out/report.json" --chart "$out/chart.svg" "$@"
