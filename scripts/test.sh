#!/usr/bin/env bash
# The whole test suite: Rust (unit, element harness, ONNX Runtime absent, end-to-end pipelines
# and the docs check in tests/), the plugin as gst-inspect-1.0 sees it, the element reference
# pages, the meson build and the learning package's pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
cargo test --release --workspace
for element in nervesr nerverecover nervesalvage nerveabr; do
  # (`cmd && echo ok` would not stop the script under set -e when cmd fails)
  if ! GST_PLUGIN_PATH=$PWD/target/release gst-inspect-1.0 "$element" >/dev/null; then
    echo "gst-inspect-1.0 $element: FAILED" >&2
    exit 1
  fi
  echo "gst-inspect-1.0 $element: ok"
done
# The element reference pages (docs/elements/) against what gst-inspect-1.0 says now.
python3 scripts/element_docs.py --check
# The meson build (through cargo, shares target/) and its gst-inspect tests.
[[ -d build-ci ]] || meson setup build-ci >/dev/null
meson test -C build-ci
.venv/bin/python -m pytest -q learning/tests
