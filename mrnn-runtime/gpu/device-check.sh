#!/usr/bin/env bash
# The GPU check, in one go on a lent GPU machine (under 5 minutes): unpacks the binary built by
# build.sh, prints the GPU, checks CUDA parity against the reference data (the real mRNNTorch
# flip-flop checkpoint through `mrnn simulate --device cuda`, compared with the expected values),
# trains briefly on the GPU, and runs the benchmarks on CPU and GPU. Everything it prints also goes
# to $OUT/device-check.log when $OUT is set.
#
#   bash gpu-carry/device-check.sh        (from the repository root, with ../shared beside it,
#                                          or REF=/path/to/shared/reference)
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-/tmp}/device-check.log"
exec > >(tee "$LOG") 2>&1
REF="${REF:-gpu-carry/reference}"
[ -d "$REF" ] || REF=../shared/reference
BIN=/tmp/mrnn-cuda
gunzip -c gpu-carry/mrnn.gz > "$BIN" && chmod +x "$BIN"
NV=$(python3 -c 'import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],"cu13","lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="${NV:+$NV:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-16}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
status=0

echo "== parity: mRNNTorch flip-flop checkpoint on cuda (leaky and Elman)"
for kind in leaky elman; do
  extra=(); [ "$kind" = elman ] && extra=(--elman)
  "$BIN" simulate "$REF/flip_flop.json" "${extra[@]}" --weights "$REF/flip_flop_rnn_$kind.pth" --prefix rnn. \
    --readout out_layer. --input "$REF/flip_flop_${kind}_expected.safetensors" --output "/tmp/ff_$kind.safetensors" --device cuda \
    || status=1
  python3 - "$REF/flip_flop_${kind}_expected.safetensors" "/tmp/ff_$kind.safetensors" "$kind" <<'PY' || status=1
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    out = {}
    for k, v in head.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype={"F32": np.float32, "F64": np.float64}[v["dtype"]]).reshape(v["shape"])
    return out
want, got = load(sys.argv[1]), load(sys.argv[2])
ok = True
for ours, theirs in [("h", "expected_h"), ("output", "expected_output")]:
    err = float(np.abs(got[ours] - want[theirs]).max()); tol = 1e-4 * max(1.0, float(np.abs(want[theirs]).max()))
    print(f"{sys.argv[3]}: max|{ours} - {theirs}| = {err:.2e} (tolerance {tol:.1e})", "ok" if err <= tol else "FAIL")
    ok &= err <= tol
acc = float((np.sign(got["output"]) == np.sign(want["target"])).mean())
print(f"{sys.argv[3]}: sign accuracy {acc:.4f}")
sys.exit(0 if ok and acc == 1.0 else 1)
PY
done

echo "== training on cuda (200 steps of the flip-flop)"
rm -rf /tmp/gpu-train
"$BIN" train flip-flop --steps 200 --device cuda --out /tmp/gpu-train --eval-trials 256 || status=1
[ -n "${OUT:-}" ] && cp /tmp/gpu-train/*.png /tmp/gpu-train/metrics.json "$OUT/" 2>/dev/null

echo "== benchmarks (JSON lines: cpu then cuda, same cases)"
for dev in cpu cuda; do
  for H in 64 256 1024; do "$BIN" bench --H "$H" --B 32 --T 100 --pass fwdbwd --runs 10 --device "$dev" || status=1; done
  "$BIN" bench --config "$REF/CBGTCL.json" --B 64 --T 100 --pass fwdbwd --runs 10 --device "$dev" || status=1
  "$BIN" bench --config "$REF/flip_flop.json" --B 512 --T 64 --pass train --runs 10 --device "$dev" || status=1
  "$BIN" bench --H 1024 --B 32 --T 100 --pass fwd --runs 10 --device "$dev" || status=1
done
echo "== torch baselines on this machine's CPU (same cases; PyTorch is installed there)"
if [ -f gpu-carry/torch_baseline.py ] && python3 -c "import torch" 2>/dev/null; then
  for H in 256 1024; do
    python3 gpu-carry/torch_baseline.py --impl mrnn --H "$H" --B 32 --T 100 --pass fwdbwd --runs 5 --threads "$RAYON_NUM_THREADS"
    python3 gpu-carry/torch_baseline.py --impl rnn --H "$H" --B 32 --T 100 --pass fwdbwd --runs 5 --threads "$RAYON_NUM_THREADS"
  done
fi
echo "device check: $([ $status = 0 ] && echo ok || echo FAILED)"
exit $status
