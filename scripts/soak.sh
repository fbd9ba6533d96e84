#!/usr/bin/env bash
# The one-hour soak (docs/reliability.md): an hour of 64x36 video through nervesalvage,
# nerverecover and nervesr with a live model swap every 3 s; prints the RSS and fd slopes and
# writes the samples to target/soak-report-60min.json. Minutes: first argument (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
NERVE_SOAK_MINUTES=${1:-60} nice -n 10 cargo test --release -p gst-nerve --test soak -- --ignored soak_long --nocapture
