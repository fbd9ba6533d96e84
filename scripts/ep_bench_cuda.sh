#!/usr/bin/env bash
# CUDA beside the CPU provider, on a machine with an NVIDIA GPU (none was lent when this was
# written: this script has not run yet). Same measurement as scripts/ep_bench.sh: nervesr on the
# same frames, speed and output difference, written to gst-nerve/results/providers-cuda.json.
#
#   scripts/setup.sh && scripts/ep_bench_cuda.sh
#
# ONNX Runtime's CUDA build comes from the onnxruntime-gpu wheel, in its own virtual environment
# (.nerve/ep-cuda) so the project's .venv stays as it is; the wheel's CUDA 12 and cuDNN 9 come
# from the nvidia-* wheels it asks for with the [cuda,cudnn] extra, and their directories go on
# LD_LIBRARY_PATH for libonnxruntime_providers_cuda.so to find them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "no NVIDIA GPU here (nvidia-smi)" >&2; exit 1; }
triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=target/capi
clip=${NERVE_EP_CLIP:-../shared/data/videos/animation/big_buck_bunny_0_30.webm}
gpu_version=${NERVE_ORT_GPU_VERSION:-1.24.1}

cargo build --release -p gst-nerve --features cuda --target "$triple" --target-dir "$target_dir" >&2
plugin_dir=$target_dir/$triple/release
if [[ ! -x .nerve/ep-cuda/bin/python ]]; then
  python3 -m venv .nerve/ep-cuda
  PIP_NO_CACHE_DIR=1 .nerve/ep-cuda/bin/pip install -q "onnxruntime-gpu[cuda,cudnn]==$gpu_version" numpy
fi
site=$(ls -d .nerve/ep-cuda/lib/python3*/site-packages)
cuda_lib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -1)
for d in "$site"/nvidia/*/lib; do LD_LIBRARY_PATH=$PWD/$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; done
export LD_LIBRARY_PATH
# Bigger frames as well: a GPU's advantage shows at 540p -> 1080p.
for size in "640 360" "960 540"; do
  set -- $size
  .venv/bin/python scripts/ep_bench.py --plugin-dir "$plugin_dir" --clip "$clip" --run "cuda:$cuda_lib" \
    --width "$1" --height "$2" --out "gst-nerve/results/providers-cuda-${2}p.json"
done
