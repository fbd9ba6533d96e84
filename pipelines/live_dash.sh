#!/usr/bin/env bash
# DASH playback with nerveabr steering the demuxer over a trace-shaped loopback server, the set-up
# of the live test: see gst-nerveabr/pipelines/live_dash.sh (this is a shortcut to it).
exec "$(dirname "$0")/../gst-nerveabr/pipelines/live_dash.sh" "$@"
