#!/usr/bin/env bash
# The main job on the bundled sample: a 720p talking-head clip is made into the low rung a
# streaming service would send (bicubic to 640x360, x264 at constant quality 23), decoded, and brought back
# to 720p twice, by nervesr and by videoscale method=lanczos; both are compared with the original.
set -euo pipefail
cd "$(dirname "$0")/.."
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
out=${1:-out/demo}
mkdir -p "$out"
sample=samples/talking_head_720p.mp4
decode="filesrc location=$sample ! qtdemux ! h264parse ! avdec_h264"
low="filesrc location=$out/low_rung_360p.mp4 ! qtdemux ! h264parse ! avdec_h264"
q() { gst-launch-1.0 -q "$@" >/dev/null; }

echo "1/3 low rung: 640x360, x264 constant quality 23 -> $out/low_rung_360p.mp4"
q $decode ! videoscale method=catrom ! video/x-raw,width=640,height=360 ! \
  x264enc pass=qual quantizer=23 speed-preset=medium ! mp4mux ! filesink location="$out/low_rung_360p.mp4"
echo "2/3 nervesr x2 -> $out/nervesr_720p.y4m (and .mp4 to watch)"
# The y4m branch queue is unbounded: x264enc holds frames for its lookahead and a bounded
# queue would block the tee before the encoder ever outputs (a preroll deadlock).
q $low ! nervesr ! tee name=t ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! y4menc ! filesink location="$out/nervesr_720p.y4m" \
  t. ! queue ! x264enc pass=qual quantizer=16 ! mp4mux ! filesink location="$out/nervesr_720p.mp4"
echo "3/3 videoscale method=lanczos -> $out/lanczos_720p.y4m"
q $low ! videoscale method=lanczos ! video/x-raw,width=1280,height=720 ! y4menc ! filesink location="$out/lanczos_720p.y4m"
# The original too, for the side-by-side crop. Through NV12 and back: y4menc (1.22) writes
# avdec_h264's padded frames with their padding (1420800 bytes a frame, not 1382400).
q $decode ! videoconvert ! video/x-raw,format=NV12 ! videoconvert ! video/x-raw,format=I420 ! \
  y4menc ! filesink location="$out/original_720p.y4m"

echo
echo "Quality against the original 720p (PSNR-Y in dB, SSIM, VMAF and VMAF NEG 0-100):"
./target/release/nerve-eval compare --reference "$sample" --json "$out/quality.json" \
  --distorted "$out/lanczos_720p.y4m" --distorted "$out/nervesr_720p.y4m"
echo
.venv/bin/python scripts/demo_crop.py "$out/original_720p.y4m" "$out/lanczos_720p.y4m" "$out/nervesr_720p.y4m" "$out/crop.png"
echo
echo "Results in $out/: nervesr_720p.mp4 to watch, crop.png to compare, quality.json for the figures."
