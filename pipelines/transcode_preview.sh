#!/usr/bin/env bash
# The transcoding preview a media server makes: decode a low-resolution source, enhance it with
# nervesr, encode it again (H.264 in MP4). Every frame is kept: a late frame is upscaled
# classically, never dropped (no sink clock here, so QoS never triggers).
#   pipelines/transcode_preview.sh in.mp4 out.mp4 [scale]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export GST_PLUGIN_PATH=$here/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 -e filesrc location="$1" ! decodebin ! videoconvert ! 'video/x-raw,format={I420,NV12}' ! \
  nervesr scale="${3:-2}" ! x264enc pass=qual quantizer=20 speed-preset=faster ! mp4mux ! filesink location="$2"
