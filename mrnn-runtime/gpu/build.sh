#!/usr/bin/env bash
# Builds the `mrnn` binary with the `cuda` feature on a machine without a GPU or a CUDA toolkit,
# and packs it for a lent GPU machine (which has the driver and CUDA 13 but no Rust).
#
#   bash mrnn-runtime/gpu/build.sh            # -> gpu-carry/mrnn.gz (+ gpu-carry/device-check.sh)
#
# The toolkit is assembled from PyPI wheels (CUDA 13.0.x: the target driver 580 rejects PTX from a
# newer nvcc) with a link-time stub of libcuda.so, by ../shared/gpu/setup-cuda13.sh; it is reused
# when already present at $CUDA_PREFIX (default /tmp/cuda13). A clean build takes ~13 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
CUDA_PREFIX="${CUDA_PREFIX:-/tmp/cuda13}"
if [ ! -f "$CUDA_PREFIX/env.sh" ]; then
  setup="../shared/gpu/setup-cuda13.sh"
  [ -f "$setup" ] || { echo "error: $setup not found (the shared folder beside the checkout)" >&2; exit 1; }
  bash "$setup" "$CUDA_PREFIX"
fi
# shellcheck disable=SC1091
source "$CUDA_PREFIX/env.sh"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"   # H100/H200
# The stub satisfies the linker here; it must never be on the GPU machine's library path.
export LIBRARY_PATH="$CUDA_PREFIX/lib64/stubs:$CUDA_PREFIX/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
CARGO_TARGET_DIR=target-cuda cargo build --release --locked -p mrnn-runtime --features cuda,cli --bin mrnn
mkdir -p gpu-carry
gzip -c target-cuda/release/mrnn > gpu-carry/mrnn.gz
cp mrnn-runtime/gpu/device-check.sh gpu-carry/
# ../shared does not travel to the GPU machine: carry the reference data the check compares with.
mkdir -p gpu-carry/reference
for f in flip_flop.json flip_flop_rnn_leaky.pth flip_flop_rnn_elman.pth flip_flop_leaky_expected.safetensors \
         flip_flop_elman_expected.safetensors CBGTCL.json; do
  cp "../shared/reference/$f" gpu-carry/reference/
done
cp ../shared/bench/torch_baseline.py gpu-carry/
ls -la gpu-carry
echo "ok: run it on the device with: bash gpu-carry/device-check.sh (carry: gpu-carry)"
