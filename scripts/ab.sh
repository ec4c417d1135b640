#!/usr/bin/env bash
# Before/after figures on a noisy machine: alternating runs of `zhibao
# bench` from two builds (A, B, A, B, ...), one after the other, each row
# with its own run's floors (see "Performance" in the README), then the
# means. This machine's speed moves by up to half between hours, so only
# pairs run this way say anything about a change.
#
#   scripts/ab.sh BIN_A BIN_B PAIRS [BENCH ARGS...]
#
#   BIN_A, BIN_B  two `zhibao` binaries (copied out of target/ first: a
#                 build of one tree replaces the other's there)
#   PAIRS         how many pairs
#   BENCH ARGS    passed to `zhibao bench` (default: 16 streams x 1, short
#                 end-to-end and probe runs)
#   A_ENV, B_ENV  optional `NAME=value` settings, separated by spaces, for
#                 one side's runs (a
#                 throwaway build switched by an environment variable)
#
# Example:
#   scripts/ab.sh /tmp/zb-before /tmp/zb-after 4 --streams 64 --window 1 \
#     --connection-per-stream --items 30000 --e2e-items 100 --probes 20 \
#     --nodes 1 --concurrency 2
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
bin_a=$1 bin_b=$2 pairs=$3
shift 3
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(--streams 16 --window 1 --connection-per-stream --items 30000
        --e2e-items 100 --probes 20 --nodes 1 --concurrency 2)
fi
for bin in "$bin_a" "$bin_b"; do
    [[ -x "$bin" ]] || { echo "ab: $bin is not an executable" >&2; exit 2; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # side bin env pair
    local json="$out/$1-$4.json"
    local settings
    read -ra settings <<<"$3"
    if ! env "${settings[@]}" "$2" bench "${args[@]}" --json "$json" >"$out/$1-$4.log" 2>&1; then
        echo "ab: run $4 of $1 failed; its output:" >&2
        tail -n 20 "$out/$1-$4.log" >&2
        exit 1
    fi
}

for ((i = 1; i <= pairs; i++)); do
    run A "$bin_a" "${A_ENV:-}" "$i"
    run B "$bin_b" "${B_ENV:-}" "$i"
done

python3 - "$out" "$pairs" <<'EOF'
import json, sys
out, pairs = sys.argv[1], int(sys.argv[2])
cols = [
    ("items/s", lambda r: r["ingest_items_per_s"]),
    ("CPU us/item", lambda r: r["ingest_hub_cpu_us_per_item"]),
    ("p50 ms", lambda r: r["ingest_latency"]["p50_us"] / 1000),
    ("p99 ms", lambda r: r["ingest_latency"]["p99_us"] / 1000),
    ("1x1 p50 ms", lambda r: r["ingest_single"]["p50_us"] / 1000),
    ("e2e p50 ms", lambda r: r["e2e_single"]["p50_us"] / 1000),
    ("fdatasync ms", lambda r: r["floor"]["fdatasync_p50_us"] / 1000),
    ("sign us", lambda r: r["floor"]["ed25519_sign_us"]),
    ("hub RSS MiB", lambda r: r["hub_peak_rss_kib"] / 1024),
    ("hub urg. p99", lambda r: r["hub_emergency_loaded"]["p99_us"] / 1000),
    ("loaded/idle", lambda r: r["hub_emergency_loaded"]["p99_us"] / max(1, r["hub_emergency_idle"]["p99_us"])),
    ("e2e idle p99", lambda r: r["emergency_idle"]["p99_us"] / 1000),
    ("e2e urg. p99", lambda r: r["emergency_loaded"]["p99_us"] / 1000),
    ("hub-sat. p50", lambda r: r["emergency_hub_loaded"]["p50_us"] / 1000),
    ("hub-sat. p99", lambda r: r["emergency_hub_loaded"]["p99_us"] / 1000),
    ("e2e items/s", lambda r: r["e2e_items_per_s"]),
]
runs = {s: [json.load(open(f"{out}/{s}-{i}.json")) for i in range(1, pairs + 1)] for s in "AB"}
print("pair side " + " ".join(f"{name:>12}" for name, _ in cols))
for i in range(pairs):
    for s in "AB":
        print(f"{i + 1:>4} {s:>4} " + " ".join(f"{f(runs[s][i]):>12.2f}" for _, f in cols))
for s in "AB":
    means = [sum(f(r) for r in runs[s]) / pairs for _, f in cols]
    print(f"mean {s:>4} " + " ".join(f"{m:>12.2f}" for m in means))
wins = sum(runs["B"][i]["ingest_items_per_s"] > runs["A"][i]["ingest_items_per_s"] for i in range(pairs))
print(f"B's items/s higher in {wins} pair(s) of {pairs}")
EOF
