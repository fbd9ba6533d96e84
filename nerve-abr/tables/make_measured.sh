#!/bin/sh
# Measured quality tables for Pensieve's ladder shown on a 1280x720 display (issue 5, item 5).
# nerve-eval encodes each rung of the held-out clips (learning/src/nerve_learning/data/clips.py EVAL) with
# x264 at the rung's bitrate, upscales it to 1280x720 with Catmull-Rom and with nervesr's default
# model of the rung's scale, and scores both against the clip shown at 1280x720 (VMAF, VMAF NEG,
# PSNR-Y); nervesr's fps is measured on this machine. Writes pensieve_<content>_nervesr.json
# (talking_head, sports, animation, texture, screen, generic = all clips) and the raw rows.
# Run from the repository root: nerve-abr/tables/make_measured.sh
#
# Scores are on the active picture (a clip's static bars left out) with each rung's default
# model for its rows; the tables shipped on 2026-12-08 come from this script (run 2026-12-07).
# November's whole-frame rows are kept in measurements/whole_frame_2026-11.json: the shipped PPO
# policy was trained on that generic table and reads it (models/abr/ppo.table.json), so running
# this script changes what the planner, the shield and the scores read, not the policy's features.
# Check the policies with the new tables: gst-nerveabr/tests/ppo_shipped.rs, live_dash.rs.
set -eu
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release -p nerve-eval
nice -n 10 ./target/release/nerve-eval table --display 1280x720 \
    --rungs 300@320x180,750@426x240,1200@640x360,1850@640x360,2850@1280x720,4300@1280x720 \
    --frames 20 --chunk-s 4 --prefix pensieve \
    --tables nerve-abr/tables --json nerve-abr/tables/measurements/pensieve_nervesr_rows.json
