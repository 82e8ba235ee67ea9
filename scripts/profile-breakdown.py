#!/usr/bin/env python3
"""Splits the CPU samples of a profiled devnet into the costs of a transfer.

Usage: profile-breakdown.py STACKS.folded FREQ_HZ TRANSFERS [PID ...]

STACKS.folded is `perf script | inferno-collapse-perf --pid` output: one line per distinct
stack, `comm-pid;frame;...;leaf COUNT`. Only the listed PIDs count (the node processes);
without PIDs every line does. Each sample goes to the category of the frame nearest its
leaf that names one (a signature check inside mempool admission is a signature cost, an
allocation inside JSON decoding an RPC cost), or to "other". Prints a Markdown table:
category, share of the nodes' CPU, and microseconds of CPU per confirmed transfer.
"""

import re
import sys

# Checked from the leaf upwards; within one frame, the first category that matches wins.
CATEGORIES = [
    ("signature (k256 ECDSA, signature cache)", r"k256|ecdsa|elliptic_curve|primeorder|sigcache|SignatureCache"),
    ("RocksDB", r"rocksdb|librocksdb|RocksStore|snappy|lz4|zstd"),
    ("state commitment (LtHash)", r"lthash|LtHash"),
    ("execution (state transition, block building)", r"execute_block|apply_tx|build_block|StateOverlay|validation::|chain::state"),
    ("mempool", r"mempool|Mempool"),
    ("gossip and sync (libp2p, relay)", r"libp2p|gossipsub|yamux|noise|snow|tx_relay|net::|node::network|multistream|quick_protobuf|prost|ed25519|curve25519|chacha20|poly1305|blake2"),
    ("RPC (HTTP, JSON)", r"hyper|axum|serde_json|node::rpc|h11|httparse|tower"),
    ("hashing (sha256d of blocks and txs)", r"sha2|sha256|Sha256"),
    ("encoding (borsh)", r"borsh"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]


def category(frames):
    for frame in reversed(frames):
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return "other (runtime, allocator, kernel, idle loops)"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    path, freq, transfers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    pids = set(sys.argv[4:])
    totals = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if pids and frames[0].rsplit("-", 1)[-1] not in pids:
            continue
        name = category(frames[1:])
        totals[name] = totals.get(name, 0) + int(count)
    samples = sum(totals.values())
    if samples == 0:
        sys.exit("no samples of the given processes")
    cpu_s = samples / freq
    print(f"{samples} samples at {freq:g} Hz = {cpu_s:.1f} CPU s over {transfers} confirmed transfers\n")
    print("| category | share of node CPU | CPU µs per transfer |")
    print("|---|---:|---:|")
    for name, count in sorted(totals.items(), key=lambda kv: -kv[1]):
        per = count / freq / max(transfers, 1) * 1e6
        print(f"| {name} | {100 * count / samples:.1f}% | {per:.0f} |")
    print(f"| total | 100% | {cpu_s / max(transfers, 1) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
