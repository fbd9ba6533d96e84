#!/usr/bin/env bash
# The whole test suite (`--slow` adds the whole-fleet Python runs): Rust (unit, element harness, ONNX Runtime absent, end-to-end pipelines
# and the docs check in tests/), the plugin as gst-inspect-1.0 sees it, the element reference
# pages, the meson build and the learning package's pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
# The static plugins (cargo-c, target/capi) and the C player linked against them, which
# examples/player/tests/static_player.rs runs.
examples/player/build.sh >/dev/null
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
# --slow: also the whole-fleet runs (pytest marker `slow`: the Flower deployment, the rollout
# fleet against the PostgreSQL-backed tracking server), tens of minutes on 2 cores.
if [[ ${1:-} == --slow ]]; then
  .venv/bin/python -m pytest -q -m slow learning/tests
fi
# The fuzz targets over their committed corpora (docs/reliability.md), where cargo-fuzz is
# installed (`cargo install cargo-fuzz --locked`; the first build of the targets takes minutes).
if command -v cargo-fuzz >/dev/null; then
  fuzz/run.sh replay
else
  echo "fuzz corpora: skipped (cargo-fuzz not installed)"
fi
