#!/usr/bin/env bash
# Called by meson: builds one plugin crate with cargo (release) and copies the library to meson's output.
set -euo pipefail
cargo=$1 src=$2 crate=$3 out=$4
"$cargo" build --release --manifest-path "$src/Cargo.toml" -p "$crate"
cp "$CARGO_TARGET_DIR/release/$(basename "$out")" "$out"
