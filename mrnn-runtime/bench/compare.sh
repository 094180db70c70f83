#!/usr/bin/env bash
# Runs `mrnn bench` and ../shared/bench/torch_baseline.py (`--impl mrnn`: mRNNTorch's loop, and
# `--impl rnn`: torch.nn.RNN) alternately on the same cases, several rounds in one run, and prints
# the median times and same-run ratios (torch median / ours: above 1 means we are faster).
#
#   bash mrnn-runtime/bench/compare.sh [ROUNDS] [RUNS]      (default 5 rounds of 10 runs)
#
# Five rounds, because this kind of machine is shared: the same code's medians of 30 runs have
# differed by up to 40% between two comparisons (the flip-flop step: 3.3 and 4.8 ms).
#
# Needs python3 with torch (`python3 -m pip install torch numpy`, or PYTHON=/path/to/python) and
# the mrnn binary (built on demand; MRNN=/path/to/mrnn to use another). Threads: RAYON_NUM_THREADS
# for ours (default: all cores), the same count for torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-5}"
RUNS="${2:-10}"
PY="${PYTHON:-python3}"
BASE="${BASELINE:-../shared/bench/torch_baseline.py}"
REF="${REF:-../shared/reference}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
if [ -z "${MRNN:-}" ]; then
  cargo build -q -p mrnn-runtime --features cli --bin mrnn
  MRNN=target/debug/mrnn   # the dev profile builds dependencies with opt-level 3 (see Cargo.toml)
fi
"$PY" -c "import torch" 2>/dev/null || { echo "error: $PY cannot import torch (python3 -m pip install torch numpy)" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

# name | arguments shared by both | also run torch.nn.RNN
CASES=(
  "ei-64|--H 64 --B 32 --T 100 --pass fwdbwd|yes"
  "ei-256|--H 256 --B 32 --T 100 --pass fwdbwd|yes"
  "ei-1024|--H 1024 --B 32 --T 100 --pass fwdbwd|yes"
  "cbgtcl|--config $REF/CBGTCL.json --B 64 --T 100 --pass fwdbwd|no"
  "flip-flop-train|--config $REF/flip_flop.json --B 512 --T 64 --pass train|no"
)
for round in $(seq "$ROUNDS"); do
  for entry in "${CASES[@]}"; do
    IFS='|' read -r name args rnn <<<"$entry"
    echo "round $round: $name" >&2
    # shellcheck disable=SC2086
    { printf '%s\t' "$name"; "$MRNN" bench $args --runs "$RUNS"; } >>"$OUT"
    # shellcheck disable=SC2086
    { printf '%s\t' "$name"; "$PY" "$BASE" --impl mrnn $args --runs "$RUNS" --threads "$RAYON_NUM_THREADS"; } >>"$OUT"
    if [ "$rnn" = yes ]; then
      # shellcheck disable=SC2086
      { printf '%s\t' "$name"; "$PY" "$BASE" --impl rnn $args --runs "$RUNS" --threads "$RAYON_NUM_THREADS"; } >>"$OUT"
    fi
  done
done

"$PY" - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, record = line.rstrip("\n").split("\t", 1)
    r = json.loads(record)
    key = "mrnn" if r["impl"] == "mrnn" and "device" in r else ("torch-mrnn" if r["impl"] == "mrnn" else "torch-rnn")
    rows.setdefault(name, {"shape": r}).setdefault(key, []).extend(r["ms"])
print(f"threads: {json.loads(open(sys.argv[1]).readline().split(chr(9), 1)[1]).get('threads')}")
print("| case | H | B | T | pass | mrnn ms | mRNNTorch ms | nn.RNN ms | vs mRNNTorch | vs nn.RNN | mrnn GFLOP/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, d in rows.items():
    s = d["shape"]
    med = {k: statistics.median(v) for k, v in d.items() if k != "shape"}
    ours = med["mrnn"]
    def ratio(k):
        return f"{med[k] / ours:.2f}x" if k in med else "-"
    def ms(k):
        return f"{med[k]:.2f}" if k in med else "-"
    # Recurrent products only: forward, backward through time, weight gradient (3 x 2 T B H^2).
    passes = {"fwd": 1, "fwdbwd": 3, "train": 3}[s["pass"]]
    gflops = passes * 2 * s["T"] * s["B"] * s["H"] ** 2 / (ours * 1e-3) / 1e9
    print(f"| {name} | {s['H']} | {s['B']} | {s['T']} | {s['pass']} | {ms('mrnn')} | {ms('torch-mrnn')} | {ms('torch-rnn')} | {ratio('torch-mrnn')} | {ratio('torch-rnn')} | {gflops:.1f} |")
PY
