#!/usr/bin/env python3
"""RPC flood against a local tally testnet, to check that RPC load does not slow consensus.

Runs THREADS threads for SECONDS seconds, spread over the given RPC ports; each keeps one
HTTP keep-alive connection and sends, in a loop: `status`, `block` (latest), `block` at a
random height, `consensus_state`, an oversized body (above rpc.body_bytes_max), invalid
JSON, an unknown method. Prints the requests sent by kind and the replies by HTTP status.

    testnet/rpc_flood.py --seconds 60 --threads 64 26657 26667 26677 26687

Standard library only; 127.0.0.1 only.
"""
import argparse
import http.client
import json
import random
import threading
import time
from collections import Counter

OVERSIZED = b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"' + b"x" * (9 << 20) + b'"}}'


def call(method, params=None):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode()


def worker(port, deadline, sent, statuses, lock):
    conn = None
    local_sent, local_status = Counter(), Counter()
    tip = 1
    kinds = ["status", "block", "block_at", "consensus_state", "oversized", "invalid", "unknown"]
    i = 0
    while time.time() < deadline:
        kind = kinds[i % len(kinds)]
        i += 1
        body = {
            "status": lambda: call("status"),
            "block": lambda: call("block"),
            "block_at": lambda: call("block", {"height": str(random.randint(1, max(1, tip)))}),
            "consensus_state": lambda: call("consensus_state"),
            "oversized": lambda: OVERSIZED,
            "invalid": lambda: b'{"jsonrpc":"2.0","id":1,"method":',
            "unknown": lambda: call("no_such_method"),
        }[kind]()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            local_status[resp.status] += 1
            if kind == "status" and resp.status == 200:
                tip = int(json.loads(data)["result"]["sync_info"]["latest_block_height"])
            if resp.getheader("connection", "").lower() == "close" or kind == "oversized":
                conn.close()
                conn = None
        except Exception as e:  # a refused or reset connection counts and is retried
            local_status[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
        local_sent[kind] += 1
    with lock:
        sent.update(local_sent)
        statuses.update(local_status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("ports", type=int, nargs="+")
    args = ap.parse_args()
    deadline = time.time() + args.seconds
    sent, statuses, lock = Counter(), Counter(), threading.Lock()
    threads = [
        threading.Thread(target=worker, args=(args.ports[n % len(args.ports)], deadline, sent, statuses, lock))
        for n in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(sent.values())
    print(f"requests: {total} in {args.seconds:.0f} s ({total / args.seconds:.0f}/s)")
    print("sent by kind:", dict(sent))
    print("replies by HTTP status:", dict(statuses))


if __name__ == "__main__":
    main()
