#!/usr/bin/env bash
# Kill/restart chaos under load (node/tests/chaos.rs): four real validators on free
# 127.0.0.1 ports commit transfers while a random validator is SIGKILLed every 3 s and
# restarted (never more than one down); then every node must hold the same blocks and every
# acknowledged tx. Prints kills, txs acknowledged and found, blocks, restart-to-caught-up and
# restart-to-signing-again times. Then the disk loop: validator 3 killed at random points of
# its block cycle, its store checked (opens, whole certified tip, nothing lost) before each
# restart.
#
#   ./testnet/chaos.sh            # 300 s of chaos, 100 disk kills (CI: 30 s and 12)
#   ./testnet/chaos.sh 60 7 20    # 60 s, kill sequence seed 7, 20 disk kills
set -euo pipefail
cd "$(dirname "$0")/.."
export TALLY_CHAOS_SECONDS=${1:-300}
export TALLY_CHAOS_SEED=${2:-1}
export TALLY_DISK_KILLS=${3:-100}
cargo test --workspace --locked --test chaos -- --nocapture --test-threads 1 2>&1 | grep -E -A2 '^(chaos|disk|test |thread)'
