#!/usr/bin/env bash
# A real Flower deployment on loopback (issue 28): one SuperLink and NODES SuperNodes as separate
# processes talking over 127.0.0.1 (flwr 1.42: HTTP; earlier releases gRPC) (--insecure: nothing leaves the machine), the nerve
# federated app submitted with `flwr run`, SecAgg+ and DP (client-side clipping, server noise) on,
# and DROP of the devices dropping out mid-round (after SecAgg+'s key sharing) in every round.
# Each SuperNode holds one device's episodic memory (a distinct share of nervesr's harvest).
#
#   scripts/federated_deploy.sh [WORK]      (default out/federated/deploy)
#   NODES=5 DROP=4 ROUNDS=2 scripts/federated_deploy.sh
#   SMALL=1 SECAGG_TIMEOUT=60 scripts/federated_deploy.sh   (CI: one clip per viewer type, a short
#                                                           harvest, a shorter wait for the dropped node)
#
# Writes WORK/history.json (the server's record: replies and failures per round, dropout_fraction,
# round_completed, epsilon) and WORK/logs/. Needs the harvest cache (nerve-learn federated harvest
# makes it on first use, with the built gst-nerve plugin). About 1-2 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY="${PYTHON:-$REPO/.venv/bin/python}"
BIN=$(dirname "$PY")
WORK=$(realpath -m "${1:-out/federated/deploy}")
NODES="${NODES:-5}"
DROP="${DROP:-$((NODES - 1))}"   # comma-separated partition ids that drop out (default: one of five = 20%)
ROUNDS="${ROUNDS:-2}"
BASE_PORT="${BASE_PORT:-$((20000 + RANDOM % 20000))}"
# flwr 1.42 serves the SuperLink's Fleet, Control and Runtime APIs on one HTTP port (earlier
# releases: separate gRPC ports); each SuperNode has its own port for its ClientApp process.
LINK_PORT=$BASE_PORT

rm -rf "$WORK"; mkdir -p "$WORK/logs" "$WORK/flwr-home"
export FLWR_HOME="$WORK/flwr-home"
export GST_PLUGIN_PATH="$REPO/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export OMP_NUM_THREADS=1
export PATH="$BIN:$PATH"  # the SuperLink and SuperNodes start flower-superexec / flwr-serverapp / flwr-clientapp

# the devices: NODES memories, a small distinct share each
"$PY" - "$WORK" "$NODES" "${SMALL:-0}" <<'PYEOF'
import sys
from pathlib import Path
from nerve_learning.federated.simulation import CACHE
from nerve_learning.federated.fleet import build_fleet, harvest_fleet, one_clip_per_viewer
work, nodes, small = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if small:  # its own cache: the full harvest's pools stay as they are
    pools = harvest_fleet(CACHE.with_name("federated-small"), min_patches=24, max_passes=2, clips=one_clip_per_viewer())
else:
    pools = harvest_fleet(CACHE)
build_fleet(pools, work / "fleet", nodes, per_client=12)
PYEOF
cat > "$WORK/settings.json" <<JSON
{"fleet_dir": "$WORK/fleet", "out_dir": "$WORK", "eval_cache": "", "rounds": $ROUNDS, "cluster_rounds": 0,
 "fraction": 1.0, "min_nodes": $NODES, "local_steps": 3, "clip": 0.05, "noise": 1.2, "secagg": true,
 "secagg_shares": $NODES, "secagg_threshold": $(( NODES / 2 + 1 )), "secagg_timeout": ${SECAGG_TIMEOUT:-90},
 "drop_partitions": "$DROP"}
JSON
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "nerve-local"

[superlink.nerve-local]
address = "127.0.0.1:$LINK_PORT"
insecure = true
TOML

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN/flower-superlink" --insecure --host 127.0.0.1 --port "$LINK_PORT" \
  >"$WORK/logs/superlink.log" 2>&1 &
pids+=($!)
sleep 3
for i in $(seq 0 $((NODES - 1))); do
  "$BIN/flower-supernode" --insecure --superlink "127.0.0.1:$LINK_PORT" --host 127.0.0.1 \
    --port $((LINK_PORT + 1 + i)) --node-config "partition-id=$i num-partitions=$NODES" \
    >"$WORK/logs/supernode-$i.log" 2>&1 &
  pids+=($!)
done
echo "[federated deploy] SuperLink on 127.0.0.1:$LINK_PORT, $NODES SuperNodes, dropping: $DROP"

"$BIN/flwr" run learning/src/nerve_learning/federated/app nerve-local --stream \
  --run-config "config=\"$WORK/settings.json\"" >"$WORK/logs/run.log" 2>&1 &
run_pid=$!
pids+=($run_pid)
for _ in $(seq 1 "${DEPLOY_TIMEOUT:-600}"); do
  [ -f "$WORK/history.json" ] && break
  kill -0 "$run_pid" 2>/dev/null || { [ -f "$WORK/history.json" ] || sleep 2; break; }
  sleep 1
done
# the server has written its record; let `flwr run --stream` print the end of the run's log
for _ in $(seq 1 60); do kill -0 "$run_pid" 2>/dev/null || break; sleep 1; done
if [ ! -f "$WORK/history.json" ]; then
  echo "[federated deploy] the run did not finish; logs in $WORK/logs" >&2
  tail -n 30 "$WORK/logs/run.log" "$WORK/logs/superlink.log" >&2 || true
  exit 1
fi
"$PY" -c "import json,sys; h=json.load(open(sys.argv[1])); print(json.dumps({k: h.get(k) for k in ('devices','dropout_fraction','round_completed','epsilon','rejections')}))" "$WORK/history.json"
