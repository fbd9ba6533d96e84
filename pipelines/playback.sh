#!/usr/bin/env bash
# Plays a video file through nervesr: decode, enhance x2 (or SCALE), display.
#   pipelines/playback.sh clip.mp4 [scale]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export GST_PLUGIN_PATH=$here/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 filesrc location="$1" ! decodebin ! videoconvert ! 'video/x-raw,format={I420,NV12}' ! \
  nervesr scale="${2:-2}" ! queue ! videoconvert ! autovideosink
