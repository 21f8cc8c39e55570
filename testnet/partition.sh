#!/usr/bin/env bash
# Network faults under load (node/tests/partition.rs): four real validators, each in a Linux
# network namespace of its own joined pairwise by veth links, commit transfers while the test
# cuts off one validator, cuts off the proposer, splits them 2-2 (no commits until healed)
# and drops packets at random on every link; then every node must hold the same blocks and
# every acknowledged tx. Needs root, iproute2 and nftables; only namespaces the test makes
# get addresses, and they are deleted when it ends.
#
#   ./testnet/partition.sh        # each fault lasts 30 s (CI runs 6 s as part of the tests)
#   ./testnet/partition.sh 60     # 60 s per fault
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nft >/dev/null 2>&1; then
  apt-get install -y nftables
fi
export TALLY_PARTITION_SECONDS=${1:-30}
cargo test --workspace --locked --test partition -- --nocapture --test-threads 1 2>&1 | grep -E -A2 '^(partition|test |thread)'
