#!/usr/bin/env bash
# Builds the nerve plugins as static libraries with cargo-c (the way gst-plugins-rs builds its
# static plugins) and links the C player (player.c) against them: nerve statically, GStreamer
# and GLib dynamically from the system (pkg-config). Output: target/capi/nerve-player.
#
#   examples/player/build.sh            # cargo cbuild (incremental) + cc
#
# cargo-c writes into target/capi, apart from target/release, so the two builds (different crate
# types and features) do not undo each other. Needs cargo-c >= 0.10 (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$HOME/.cargo/bin:$PATH
capi=target/capi
triple=$(rustc -vV | sed -n 's/^host: //p')
command -v cargo-cbuild >/dev/null || { echo "cargo-c is missing: cargo install cargo-c --locked (scripts/setup.sh)" >&2; exit 1; }
for crate in gst-nerve gst-nerveabr; do
  # --library-type staticlib: only the .a (the .so of the same plugin is target/release's);
  # `capi` is gst-plugins-rs' feature name for this build, `static` its static-plugin switch.
  cargo cbuild --release -p "$crate" --target-dir "$capi" --library-type staticlib --features capi,static \
    --prefix /usr --libdir lib >&2
done
out=$capi/$triple/release
# The .pc files cargo-c writes (gstnerve.pc, gstnerveabr.pc) list the static libraries' own
# system dependencies (libgcc_s, libm, ...) in Libs.private, hence --static; the -uninstalled
# variants point at the build tree instead of --prefix.
export PKG_CONFIG_PATH=$out${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
ls "$out"/*.pc >&2
flags=$(pkg-config --static --cflags --libs gstnerve-uninstalled gstnerveabr-uninstalled)
# Both archives carry a copy of the Rust standard library; the linker takes each symbol once
# (--allow-multiple-definition), as gst-plugins-rs' static Android builds do.
cc -O2 -o "$capi/nerve-player" examples/player/player.c $flags -Wl,--allow-multiple-definition
echo "$capi/nerve-player"
