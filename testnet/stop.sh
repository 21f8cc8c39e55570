#!/usr/bin/env bash
# Stops the nodes that ./testnet/run.sh started (their pids are in testnet/data/node*.pid).
set -u
data="$(cd "$(dirname "$0")" && pwd)/data"
stopped=0
for pidfile in "$data"/node*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    stopped=$((stopped + 1))
  fi
  rm -f "$pidfile"
done
echo "stopped $stopped node(s)"
