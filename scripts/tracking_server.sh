#!/usr/bin/env bash
# The fleet's tracking server: Debian's PostgreSQL as MLflow's backend store and `mlflow server`
# in front of it, both on loopback only, both under a directory of the project (.nerve/tracking).
#
#   scripts/tracking_server.sh start    # initdb on first use, start PostgreSQL, then MLflow
#   scripts/tracking_server.sh status   # exit 0 when both answer
#   scripts/tracking_server.sh stop
#   scripts/tracking_server.sh uri      # the tracking URI devices and the rollout use
#   scripts/tracking_server.sh destroy  # stop and delete the cluster and artifacts
#
# Settings (environment): NERVE_TRACKING_DIR (.nerve/tracking), NERVE_PG_PORT (54329),
# NERVE_MLFLOW_PORT (5055). PostgreSQL refuses to run as root, so when this script runs as root
# (CI, containers) the database cluster belongs to the unprivileged `postgres` account that
# Debian's package creates and its commands run through runuser; otherwise they run as the caller.
# (postgresql+psycopg2: SQLAlchemy 2.1 would otherwise look for psycopg 3.)
# One device on its own keeps the embedded SQLite store (nerve_learning.registry); this server is
# for a fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${NERVE_TRACKING_DIR:-$root/.nerve/tracking}
pg_port=${NERVE_PG_PORT:-54329}
ml_port=${NERVE_MLFLOW_PORT:-5055}
pgdata=$dir/pg
if [[ $(id -u) -eq 0 ]]; then
  mkdir -p "$dir"
  chmod o+x "$dir"
  # The postgres account must reach the cluster's directory; under a private parent (/root,
  # pytest's /tmp/pytest-of-root) it cannot, so the cluster then lives in postgres's own home,
  # in a directory named after this one.
  if ! runuser -u postgres -- test -x "$dir"; then
    pgdata=/var/lib/postgresql/nerve-tracking/$(printf '%s' "$dir" | sha256sum | cut -c1-16)
    mkdir -p "$(dirname "$pgdata")"
    chown postgres: "$(dirname "$pgdata")"
  fi
fi
pg_bin=${NERVE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
mlflow=${NERVE_MLFLOW:-$root/.venv/bin/mlflow}
db_user=nerve
uri_pg="postgresql+psycopg2://$db_user@127.0.0.1:$pg_port/mlflow"
uri="http://127.0.0.1:$ml_port"

as_db_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_up() { "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; }
ml_up() { curl -sf "$uri/health" >/dev/null 2>&1; }

start_pg() {
  [[ -x $pg_bin/initdb ]] || { echo "no PostgreSQL binaries (apt-get install postgresql)" >&2; exit 1; }
  mkdir -p "$dir"
  if [[ ! -s $pgdata/PG_VERSION ]]; then
    mkdir -p "$pgdata"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$pgdata"
    chmod 700 "$pgdata"
    # trust on loopback only: the server listens on 127.0.0.1 and a socket inside its own directory
    as_db_owner "$pg_bin/initdb" -D "$pgdata" -U "$db_user" --auth=trust -E UTF8 >"$dir/initdb.log"
  fi
  if ! pg_up; then
    as_db_owner "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$pgdata" start >/dev/null
  fi
  if ! "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='mlflow'" | grep -q 1; then
    "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U "$db_user" mlflow
  fi
}

start_ml() {
  ml_up && return 0
  mkdir -p "$dir/artifacts"
  # setsid: the server and its workers form one process group, so `stop` (and a test's kill -9)
  # takes all of them and nothing is left holding the port.
  # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: MLflow 3 otherwise starts a job runner and seven huey
  # consumers (GenAI evaluation jobs, trace roll-ups), each a Python process importing MLflow:
  # seconds of CPU at every start and polling after, for jobs the fleet never submits.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
  setsid "$mlflow" server --backend-store-uri "$uri_pg" --artifacts-destination "$dir/artifacts" \
    --host 127.0.0.1 --port "$ml_port" --workers 1 >"$dir/mlflow.log" 2>&1 </dev/null &
  echo $! >"$dir/mlflow.pid"
  for _ in $(seq 1 240); do
    ml_up && return 0
    kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || { tail -20 "$dir/mlflow.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "mlflow server did not answer on $uri (log: $dir/mlflow.log)" >&2
  exit 1
}

stop_ml() {
  if [[ -s $dir/mlflow.pid ]]; then
    pid=$(cat "$dir/mlflow.pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$dir/mlflow.pid"
  fi
}

case ${1:-status} in
  start) start_pg; start_ml; echo "$uri" ;;
  stop)
    stop_ml
    if [[ -s $pgdata/PG_VERSION ]] && pg_up; then
      as_db_owner "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
    fi
    ;;
  destroy)  # stop, then delete the database cluster and the artifacts (tests' temporary servers)
    "$0" stop
    rm -rf "$pgdata" "$dir"
    ;;
  status)
    ok=0
    if pg_up; then echo "postgresql: up on 127.0.0.1:$pg_port ($pgdata)"; else echo "postgresql: down"; ok=1; fi
    if ml_up; then echo "mlflow: up on $uri"; else echo "mlflow: down"; ok=1; fi
    exit $ok
    ;;
  uri) echo "$uri" ;;
  *) echo "usage: $0 start|stop|status|uri|destroy" >&2; exit 2 ;;
esac
