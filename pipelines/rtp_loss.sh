#!/usr/bin/env bash
# Streams a clip as sliced H.264 over RTP, loses packets, keeps what arrived of broken slices
# (nervesalvage), decodes and repairs it with nerverecover, and shows the result (SINK=... picks
# another sink, e.g. SINK=fakesink; SALVAGE=identity leaves the salvage out).
#   pipelines/rtp_loss.sh clip.mp4 [loss=0.05] [mode=low-latency|lookahead]
# The loss here is netsim's (random, unseeded). For a fixed loss pattern (the same packets lost
# on every run, what the evaluation and the training data use) see
#   target/release/nerve-eval loss-frames --reference clip.mp4 --loss 0.05 --seed 1 --out DIR
#   target/release/nerve-eval recover --reference clip.mp4 --loss 0.01,0.05
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export GST_PLUGIN_PATH=$here/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
clip=$1
loss=${2:-0.05}
mode=${3:-low-latency}
# Four slices per frame and a 1200-byte MTU: a lost packet damages one slice, not the frame.
# rtpjitterbuffer do-lost=true reports each lost packet (rtph264depay makes it a GAP event), which nerverecover's model
# takes as "this frame is damaged somewhere". avdec_h264 with frame threads sometimes leaves
# lost slices black, on one thread it conceals them (what the evaluation uses: DECODER=...
# to choose); either way later frames are predicted from the damage until the next IDR.
# A slice bigger than the MTU travels in several fragments: rtph264depay drops all of it when
# one is lost, nervesalvage hands it the fragments before the loss as a shorter slice instead.
exec gst-launch-1.0 filesrc location="$clip" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! \
  x264enc tune=zerolatency speed-preset=veryfast bitrate=1000 key-int-max=60 option-string="slices=4:scenecut=0" ! \
  rtph264pay mtu=1200 config-interval=-1 ! netsim drop-probability="$loss" ! \
  rtpjitterbuffer do-lost=true ! ${SALVAGE:-nervesalvage} ! rtph264depay ! ${DECODER:-avdec_h264} ! nerverecover mode="$mode" ! videoconvert ! ${SINK:-autovideosink}
