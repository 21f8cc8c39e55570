#!/usr/bin/env bash
# Kill/restart chaos under load (node/tests/chaos.rs): four real validators on free
# 127.0.0.1 ports commit transfers while a random validator is SIGKILLed every 3 s and
# restarted (never more than one down); then every node must hold the same blocks and every
# acknowledged tx. Prints kills, txs acknowledged and found, blocks, and restart-to-caught-up
# times.
#
#   ./testnet/chaos.sh            # 300 s of chaos (CI runs 30 s as part of the tests)
#   ./testnet/chaos.sh 60 7       # 60 s, kill sequence seed 7
set -euo pipefail
cd "$(dirname "$0")/.."
export TALLY_CHAOS_SECONDS=${1:-300}
export TALLY_CHAOS_SEED=${2:-1}
cargo test --workspace --locked --test chaos -- --nocapture 2>&1 | grep -E -A2 '^(chaos|test |thread)'
