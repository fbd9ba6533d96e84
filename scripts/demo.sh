#!/usr/bin/env bash
# The main job on the bundled sample: a 720p talking-head clip is made into the low rung a
# streaming service would send (640x360, x264 at constant quality 23), decoded, and brought back
# to 720p twice, by nervesr and by videoscale method=lanczos; both are compared with the original.
set -euo pipefail
cd "$(dirname "$0")/.."
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
out=${1:-out/demo}
mkdir -p "$out"
sample=samples/talking_head_720p.264
decode="filesrc location=$sample ! h264parse ! avdec_h264"
low="filesrc location=$out/low_rung_360p.mp4 ! qtdemux ! h264parse ! avdec_h264"
q() { gst-launch-1.0 -q "$@" >/dev/null; }

echo "1/4 original -> $out/original.y4m"
q $decode ! videoconvert ! video/x-raw,format=I420 ! y4menc ! filesink location="$out/original.y4m"
echo "2/4 low rung: 640x360, x264 constant quality 23 -> $out/low_rung_360p.mp4"
q $decode ! videoscale method=bilinear ! video/x-raw,width=640,height=360 ! \
  x264enc pass=qual quantizer=23 speed-preset=medium ! mp4mux ! filesink location="$out/low_rung_360p.mp4"
echo "3/4 nervesr x2 -> $out/nervesr_720p.y4m (and .mp4 to watch)"
q $low ! nervesr ! tee name=t ! queue ! y4menc ! filesink location="$out/nervesr_720p.y4m" \
  t. ! queue ! x264enc pass=qual quantizer=16 ! mp4mux ! filesink location="$out/nervesr_720p.mp4"
echo "4/4 videoscale method=lanczos -> $out/lanczos_720p.y4m"
q $low ! videoscale method=lanczos ! video/x-raw,width=1280,height=720 ! y4menc ! filesink location="$out/lanczos_720p.y4m"

echo
echo "Quality against the original 720p (PSNR-Y in dB; VMAF and VMAF NEG 0-100):"
.venv/bin/nerve-learn compare --reference "$out/original.y4m" --json "$out/quality.json" \
  "$out/lanczos_720p.y4m" "$out/nervesr_720p.y4m"
echo
echo "Results in $out/: nervesr_720p.mp4 to watch, quality.json for the figures."
