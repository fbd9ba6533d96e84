#!/usr/bin/env bash
# The whole test suite: Rust (unit, element harness, ONNX Runtime absent), the plugin as
# gst-inspect-1.0 sees it, and the learning package's pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
cargo test --release --workspace
for element in nervesr nerverecover nervesalvage nerveabr; do
  GST_PLUGIN_PATH=$PWD/target/release gst-inspect-1.0 "$element" >/dev/null && echo "gst-inspect-1.0 $element: ok"
done
# The meson build (through cargo, shares target/) and its gst-inspect tests.
[[ -d build-ci ]] || meson setup build-ci >/dev/null
meson test -C build-ci
.venv/bin/python -m pytest -q learning/tests
