#!/usr/bin/env bash
# Watch nerveabr steer a DASH ladder (4 rungs of Big Buck Bunny, 180p-540p) served over loopback
# with its throughput shaped by a real 3G trace (Norway tram_52, from 210 s, 2x faster, x2.5),
# the same set-up as tests/live_dash.rs. When the `nerve` plugin is built, nervesr (fit mode, scale=0)
# brings every rung to 1280x720 with the model nerveabr switches on or off per fragment; each
# change is printed as a nervesr-switch line.
#   gst-nerveabr/pipelines/live_dash.sh            # window (autovideosink)
#   SINK=fakesink gst-nerveabr/pipelines/live_dash.sh   # no display: decisions only
# Each `nerveabr-decision` message is printed; the server prints each request with the rate.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${NERVE_DATA:-../shared/data}
LADDER=target/tmp/nerveabr-live-dash-v1
PORT=${PORT:-8080}
if [[ ! -f $LADDER/manifest.mpd ]]; then
  echo "encoding the ladder (once) through the live test..."
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo test --release -p gst-nerveabr --test live_dash
fi
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release -p gst-nerveabr
export GST_PLUGIN_PATH=$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
python3 gst-nerveabr/pipelines/shaped_http.py "$LADDER" \
  "$DATA/traces/3g_hsdpa_norway/pensieve_test_cooked_3gp/norway_tram_52" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 1
SR="videoconvert ! nervesr scale=0 ! video/x-raw,width=1280,height=720 !"
gst-inspect-1.0 nervesr >/dev/null 2>&1 || SR=""
SINK=${SINK:-autovideosink}
gst-launch-1.0 -m urisourcebin uri="http://127.0.0.1:$PORT/manifest.mpd" ! decodebin3 ! \
  nerveabr policy=${POLICY:-nerve} max-buffering-time=4000000000 ! $SR \
  videoscale ! video/x-raw,width=1280,height=720 ! videoconvert ! $SINK sync=true qos=true 2>&1 |
  grep --line-buffered -E "nerveabr-decision|nervesr-switch|ERROR|EOS" | sed -u 's/.*nerveabr-decision, //'
