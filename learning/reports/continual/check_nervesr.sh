#!/usr/bin/env bash
# Loads the continually learned student in nervesr through its manifest entry (same contract as
# models/manifest.toml: name, sha256, tensors) and times the whole pipeline against the shipped
# nerve-sr-x2 it started from (same architecture, so the same speed is expected).
#   learning/reports/continual/check_nervesr.sh [model-dir] [frames]
# model-dir holds <name>.onnx + manifest.toml (default: this directory). Needs the plugin built
# (cargo build --release); GST_PLUGIN_PATH defaults to <repo>/target/release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=${1:-$here}
frames=${2:-300}
export GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-$root/target/release}
name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/manifest.toml" | head -n1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A manifest directory of its own, so the element resolves the name through NERVE_MODEL_PATH.
cp "$dir/manifest.toml" "$dir/$name.onnx" "$tmp/"
for model in "$name" nerve-sr-x2; do
    start=$(date +%s.%N)
    NERVE_MODEL_PATH="$tmp:$root/models" gst-launch-1.0 -m \
        videotestsrc num-buffers="$frames" pattern=smpte ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
        ! nervesr model="$model" scale=2 qos=false ! video/x-raw,width=1280,height=720 ! fakesink sync=false \
        > "$tmp/$model.log" 2>&1 || { cat "$tmp/$model.log"; echo "FAIL: $model did not run in nervesr"; exit 1; }
    end=$(date +%s.%N)
    stats=$(grep -o 'nervesr-stats.*' "$tmp/$model.log" | tail -n1)
    enhanced=$(sed -n 's/.*frames-enhanced=(g\?u\?int64)\([0-9]*\).*/\1/p' <<<"$stats")
    if grep -q "WARNING" "$tmp/$model.log" || [ "${enhanced:-0}" -ne "$frames" ]; then
        cat "$tmp/$model.log"
        echo "FAIL: $model enhanced ${enhanced:-0} of $frames frames"
        exit 1
    fi
    echo "$model: $frames/$frames frames enhanced, $(python3 -c "print(f'{$frames / ($end - $start):.1f}')") fps (whole pipeline, 640x360 -> 1280x720)"
done
