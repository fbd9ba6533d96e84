#!/usr/bin/env bash
# Execution providers that run: nervesr on OpenVINO and XNNPACK beside the CPU provider, on the
# same frames (speed, output difference; scripts/ep_bench.py), written to
# gst-nerve/results/providers.json; then NNAPI and CoreML compile-checked and the fallback of a
# compiled-in provider that the loaded ONNX Runtime cannot register tested.
#
#   nice -n 10 scripts/ep_bench.sh            # about 10 min on 2 cores (two plugin builds)
#
# The providers' ONNX Runtime builds live in their own virtual environments, so the project's
# .venv (and its onnxruntime) stays as it is:
#   .nerve/ep-openvino: the onnxruntime-openvino wheel (it bundles OpenVINO's CPU plugin);
#   XNNPACK: no wheel on PyPI ships it (onnxruntime, onnxruntime-openvino, -gpu, -directml:
#   none lists XnnpackExecutionProvider); it is run against the project's CPU wheel, where
#   it must fall back to the CPU with a warning, and recorded so.
# CUDA is scripts/ep_bench_cuda.sh, for a machine with an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
triple=$(rustc -vV | sed -n 's/^host: //p')
# Its own target directory: a libgstnerve.so next to cargo-c's libgstnerve.a (target/capi) would
# be what `-lgstnerve` links, and the static player would load the plugin dynamically.
target_dir=target/ep
clip=${NERVE_EP_CLIP:-../shared/data/videos/animation/big_buck_bunny_0_30.webm}
ov_version=1.24.1

echo "== plugin with the providers (cargo features openvino, xnnpack)" >&2
cargo build --release -p gst-nerve --features openvino,xnnpack --target "$triple" --target-dir "$target_dir" >&2
plugin_dir=$target_dir/$triple/release

if [[ ! -x .nerve/ep-openvino/bin/python ]]; then
  echo "== .nerve/ep-openvino: onnxruntime-openvino $ov_version" >&2
  python3 -m venv .nerve/ep-openvino
  PIP_NO_CACHE_DIR=1 .nerve/ep-openvino/bin/pip install -q "onnxruntime-openvino==$ov_version" numpy
fi
ov_lib=$(ls .nerve/ep-openvino/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -1)
cpu_lib=$(readlink -f .nerve/lib/libonnxruntime.so)

echo "== benchmark" >&2
.venv/bin/python scripts/ep_bench.py --plugin-dir "$plugin_dir" --clip "$clip" \
  --run "openvino:$ov_lib" --run "xnnpack:$cpu_lib" --out gst-nerve/results/providers.json "$@"

echo "== NNAPI and CoreML: compile check" >&2
cargo check -p gst-nerve --features nnapi,coreml --target "$triple" --target-dir "$target_dir" >&2
echo "== fallback: CoreML compiled in, not registrable on Linux -> CPU with a warning (gst-nerve/tests/sr.rs)" >&2
cargo test --release -p gst-nerve --features nnapi,coreml --target "$triple" --target-dir "$target_dir" \
  --test sr an_unavailable_provider_warns_and_runs_on_the_cpu >&2
