#!/usr/bin/env bash
# Regenerates the on-device learning figures of issue 7 (README "On-device learning"):
# for each content type given (default: talking_head), harvest its training clips into a fresh
# episodic memory, run the local trainer once against a fresh embedded registry (the shipped
# nerve-sr-x2 registered as v1 champion), promote the candidate, export the champion as a model
# location, and score shipped vs on-device model on clips never trained on (unseen clips of that
# content, the held-out clip of every other content type). Writes out/ondevice/ondevice-<content>.{json,md};
# the reviewed copies live in learning/reports/ondevice/.
# CPU only, nice'd, one PyTorch thread: about 12 minutes per content type (three learning rates
# tried) on 2 shared cores. Extra nerve-learn flags go in ONDEVICE_ARGS (e.g. "--seed 1").
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-out/ondevice}"
CACHE="${CACHE:-learning/cache}"  # the original training pairs (replay); built on first use
contents=("${@:-talking_head}")
for content in "${contents[@]}"; do
  nice -n 10 "$PY" -m nerve_learning.cli ondevice-loop \
    --content "$content" --work "$OUT/work-$content" --out "$OUT" --cache "$CACHE" --threads 1 \
    ${ONDEVICE_ARGS:-}
done
