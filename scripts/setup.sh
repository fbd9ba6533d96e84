#!/usr/bin/env bash
# Installs everything nerve needs on a Debian 12 machine and builds it:
# apt packages (GStreamer 1.22, meson), Rust (if missing), a Python virtual environment in .venv
# with the onnxruntime wheel (its libonnxruntime.so is linked into .nerve/lib, where the plugin
# looks for it) and the learning package at the versions in learning/constraints.txt, then
# `cargo build --release --workspace`; `source .venv/bin/activate` then reaches nerve-learn,
# nerve-eval, nerveabr-sim and the plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '\n== %s\n' "$*"; }

apt_packages=(
  build-essential pkg-config curl ca-certificates git python3-venv python3-pip
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav meson ninja-build nasm xxd fonts-dejavu-core postgresql
  libgstrtspserver-1.0-dev
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt: installing ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  [[ -x $HOME/.cargo/bin/cargo ]] || { say "installing Rust (rustup)"; curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; }
  export PATH=$HOME/.cargo/bin:$PATH
fi

# cargo-c builds the static plugins with their .pc files (examples/player/build.sh,
# docs/android.md), as gst-plugins-rs does. Debian's cargo-c 0.9.14 cannot read an edition-2024
# workspace, so it comes from crates.io at a version this toolchain builds (0.10.24 needs rustc
# 1.95). It is built unoptimised (--debug): it only drives cargo, and that takes about 8 min on
# this 2-core machine instead of 22 (both measured while the machine was shared), once per machine.
cargo_c_version=0.10.24
if ! cargo cbuild --version 2>/dev/null | grep -q "^cargo-c $cargo_c_version"; then
  say "cargo-c $cargo_c_version (cargo install --debug)"
  cargo install cargo-c --version "$cargo_c_version" --locked --debug
fi

say "Python environment (.venv): onnxruntime, torch (CPU use), the learning package"
# PyTorch from PyPI brings its CUDA wheels: the .venv takes about 6.5 GB. pip's wheel cache would
# keep gigabytes of downloaded wheels for nothing, so it is off; what the disk has left is printed,
# because a full disk otherwise shows only as pip's bare "No space left on device".
export PIP_NO_CACHE_DIR=1
free_mib=$(df -Pm . | awk 'NR == 2 { print $4 }')
echo "free disk here: $free_mib MiB (a new .venv needs about 6600 MiB, the Rust build about 1000 MiB)"
if [[ ! -x .venv/bin/python ]]; then
  ((free_mib >= 9000)) || echo "warning: less than 9000 MiB free; the install may run out of disk" >&2
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c learning/constraints.txt -e "learning[test]"

say "ONNX Runtime library -> .nerve/lib"
lib=$(.venv/bin/python - <<'PY'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(p for p in glob.glob(os.path.join(capi, "libonnxruntime.so*")) if "providers" not in p)
print(libs[-1])
PY
)
mkdir -p .nerve/lib
ln -sf "$lib" .nerve/lib/libonnxruntime.so
echo "using $lib"

say "cargo build --release --workspace"
cargo build --release --workspace

# The simulator as a Python module (nerveabr_py: pyo3), for the PPO agent of nerve_learning.rl.
# maturin builds it against the same target/ (about a minute after the workspace build).
say "nerveabr_py -> .venv (maturin develop --release)"
.venv/bin/pip install -q -c learning/constraints.txt maturin
(cd nerveabr-py && VIRTUAL_ENV="$root/.venv" "$root/.venv/bin/maturin" develop --release -q)

# One way to reach every tool: the .venv's activate script. nerve-learn is the learning package's
# entry point there already; nerve-eval and nerveabr-sim are the Rust binaries, linked beside it;
# GST_PLUGIN_PATH lets gst-launch-1.0 and GStreamer apps find the plugins built in target/release.
say "tools -> .venv/bin (source .venv/bin/activate)"
for tool in nerve-eval nerveabr-sim; do
  ln -sfn "../../target/release/$tool" ".venv/bin/$tool"
done
marker="# nerve: plugins built in target/release (scripts/setup.sh)"
if ! grep -qF "$marker" .venv/bin/activate; then
  cat >> .venv/bin/activate <<EOF

$marker
case ":\${GST_PLUGIN_PATH:-}:" in
  *":$root/target/release:"*) ;;
  *) export GST_PLUGIN_PATH="$root/target/release\${GST_PLUGIN_PATH:+:\$GST_PLUGIN_PATH}" ;;
esac
EOF
fi
echo
echo "Built. Every tool is reachable after:"
echo "  source .venv/bin/activate"
echo "  gst-inspect-1.0 nervesr; nerve-eval --help; nerve-learn --help; nerveabr-sim --help"
