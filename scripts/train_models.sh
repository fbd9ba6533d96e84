#!/usr/bin/env bash
# Reproduces every shipped model in models/ from ../shared/data (CPU: about 2.5 hours on 2 cores;
# the pair caches go to learning/cache). Each run writes its ONNX file, model card, metrics and
# manifest entry.
set -euo pipefail
cd "$(dirname "$0")/../learning"
learn() { ../.venv/bin/python -m nerve_learning.cli "$@"; }
learn train-sr --scale 2 --steps 14000
learn int8 --model ../models/nerve-sr-x2.onnx --scale 2
learn train-sr --scale 3 --steps 10000 --default
learn train-sr --scale 4 --steps 10000 --default
# nerve-sr-x4-bi, the x4 model for clean (bicubic-only, "BI") input (Vid4), is pack-trained and
# fine-tuned in stages: scripts/train_pack_models.sh x4-bi OUTDIR.
# The temporal student (current + previous frame; the default x2 until 2026-12-07, now
# scripts/train_pack_models.sh finish-x2d4); and a student distilled from a teacher.
learn train-sr --scale 2 --frames-in 2 --steps 10000 --name nerve-sr-x2-temporal
learn train-sr --scale 2 --steps 10000 --teacher-steps 1500 --teacher-channels 32 --teacher-blocks 3 --distill 0.5 --name nerve-sr-x2-kd
# The folded (space-to-depth) student and its int8 variant: the fast end of the x2 frontier (17 min).
learn train-sr --scale 2 --block 2 --channels 32 --depth 2 --steps 40000 --int8 --name nerve-sr-x2-s2d
learn train-sr --scale 2 --block 2 --channels 32 --depth 2 --steps 40000 --frames-in 2 --int8 --name nerve-sr-x2-s2d-temporal
