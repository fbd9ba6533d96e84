#!/usr/bin/env bash
# The fault loops of learning/tests/test_faults.py at full length (docs/reliability.md): 200
# SIGKILLs at random points per workload (registry export, harvest write, memory eviction in
# two policies, local training). Figures go to stdout and, one JSON line per workload, to
# target/fault-report.jsonl. Kills per workload: first argument (default 200); the registry loop's
# own count: second argument, the local-training loop's: third (default the first; each of their
# kills restarts a Python that imports MLflow, ~5 s, and a training run takes seconds more).
# NERVE_FAULT_SEED picks another schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
export NERVE_FAULT_KILLS=${1:-200} NERVE_FAULT_KILLS_REGISTRY=${2:-${1:-200}} NERVE_FAULT_KILLS_TRAINING=${3:-${1:-200}}
export NERVE_FAULT_REPORT=$PWD/target/fault-report.jsonl
rm -f "$NERVE_FAULT_REPORT"
nice -n 10 .venv/bin/python -m pytest -q -s learning/tests/test_faults.py
cat "$NERVE_FAULT_REPORT"
