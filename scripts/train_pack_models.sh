#!/usr/bin/env bash
# The pack-trained students: the frame pack is made here (ffmpeg, real codecs), training runs on
# whatever device is present (a GPU when lent one: all jobs run side by side on it; on CPU give
# STEPS instead of MINUTES and expect hours), then `nerve-learn finish` exports, evaluates on the
# held-out clips and registers each model (needs ffmpeg, so it runs here).
#
#   scripts/train_pack_models.sh pack          # learning/cache/pack-v1.npz (~47 MB, 1 min)
#   scripts/train_pack_models.sh train OUTDIR  # weights files OUTDIR/*.pt
#   scripts/train_pack_models.sh finish OUTDIR # ONNX + cards + manifest entries in models/
#   scripts/train_pack_models.sh train-t OUTDIR  # x4 BI students, single-frame and temporal,
#   scripts/train_pack_models.sh finish-t OUTDIR # plain and re-parameterised (ECB): Vid4
#   scripts/train_pack_models.sh pictures        # learning/cache/pack-pictures{-5,}.npz (apt, ~15 min)
#   scripts/train_pack_models.sh train-p OUTDIR  # train-t's temporal ECB student fine-tuned on
#                                                # video + pictures (16,000 steps: 1 h on 2 CPU cores)
#   scripts/train_pack_models.sh train-p2 OUTDIR # that fine-tuned again on video + all 53 pictures:
#                                                # L1 16,000 steps, then squared error 7,500 (1.7 h)
#   scripts/train_pack_models.sh finish-p2 OUTDIR # nerve-sr-x4-bi version 4
#   scripts/train_pack_models.sh train-d4 OUTDIR # version 4 (train-p2's product) grown to four middle
#                                                # layers and fine-tuned: L1 12,000 steps, L2 5,000 (1.4 h)
#   scripts/train_pack_models.sh finish-d4 OUTDIR # nerve-sr-x4-bi version 5
#   scripts/train_pack_models.sh x4-bi OUTDIR    # all of nerve-sr-x4-bi's stages in order, pack to finish-d4
#   scripts/train_pack_models.sh pans            # x2 packs: the training clips and 73 photographs coded
#                                                # as pans, every codec, four downscale kernels (3 min)
#   scripts/train_pack_models.sh train-x2d4 OUTDIR # nerve-sr-x2-s2d-temporal grown to four middle
#                                                # layers, fine-tuned on the pans packs (1 h on 2 cores)
#   scripts/train_pack_models.sh finish-x2d4 OUTDIR # nerve-sr-x2-s2d-temporal-d4 and its int8 variant
#   scripts/train_pack_models.sh pans-only         # the photographs' pans alone, a larger pack
#   scripts/train_pack_models.sh train-x2pans OUTDIR # the default's architecture from random weights on
#                                                # it: no library sample clip (30 min on 2 cores)
#   scripts/train_pack_models.sh finish-x2pans OUTDIR # nerve-sr-x2-s2d-temporal-d4-pans and its int8 variant
#   scripts/train_pack_models.sh pans-filmed       # the pans filmed with a shutter (2 min)
#   scripts/train_pack_models.sh tune-x2mix OUTDIR # the four-layer filmed mix (5 min), then finish-x2mix
#   scripts/train_pack_models.sh tune-x2d8 OUTDIR  # the default x2: the filmed mix grown to eight middle
#                                                # layers and fine-tuned (17 min), then finish-x2d8
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../learning"
PY=${PY:-../.venv/bin/python}
learn() { PYTHONPATH=$PWD/src "$PY" -m nerve_learning.cli "$@"; }
PACK=cache/pack-v1.npz
# Budget per job: minutes (GPU) or steps (CPU). The shipped models used MINUTES=6.5.
if [[ -n "${STEPS:-}" ]]; then SIZE=(--steps "$STEPS"); TSIZE=(--teacher-steps "$STEPS"); HALF=(--steps "$STEPS")
else M=${MINUTES:-6.5}; SIZE=(--minutes "$M"); TSIZE=(--teacher-minutes "$(awk "BEGIN{print $M*0.45}")"); HALF=(--minutes "$(awk "BEGIN{print $M*0.55}")"); fi
# The picture fine-tuning stages (train-p, train-p2): train-t's temporal ECB x4 student.
PIC=(--pack cache/pack-bi-t.npz --scale 4 --rungs bi --exclude CVPCMNL1 CVFC1 --channels 24 --depth 3 --frames-in 2 --rep)
# finish for nerve-sr-x4-bi: held-out clean and CRF 23 rungs; Vid4 is measured by nerve-eval.
finish_bi() { learn finish --weights "$1" --name nerve-sr-x4-bi --eval-codecs none:0,x264:23 \
  --note "Vid4: nerve-eval vid4 --model nerve-sr-x4-bi (README, Measured)" "${@:2}"; }
# Two fine-tuning stages, as versions 4 and 5 were made: L1 (Adam 2e-4) from $1, then squared
# error (Adam 1e-4) from its product. $2: the products' stem ($2.pt, then $2-l2.pt); $3, $4: the
# stages' steps; $5: the first stage's seed (the second takes the next); the rest: the student.
l1_then_l2() {
  local init=$1 stem=$2 l1=$3 l2=$4 seed=$5; shift 5
  learn train-pack "$@" --init "$init" --lr 2e-4 --steps "$l1" --seed "$seed" --out "$stem.pt" > "$stem.log" 2>&1
  learn train-pack "$@" --init "$stem.pt" --lr 1e-4 --loss l2 --steps "$l2" --seed $((seed + 1)) \
    --out "$stem-l2.pt" > "$stem-l2.log" 2>&1
}
case "${1:-}" in
  pack) learn pack --out "$PACK"
    # The BI pack: originals shrunk by 2 first (cleaner ground truth), no codec rungs.
    learn pack --out cache/pack-bi-half.npz --codecs "" --frames 48 --step 3 --crop 192 --crops 4 --hr-downscale 2
    # The temporal BI pack: each crop with the same region of the frame before (47 MB).
    learn pack --out cache/pack-bi-t.npz --codecs "" --frames 32 --step 6 --crop 288 --crops 3 --previous ;;
  train-t)
    out=$2; mkdir -p "$out"
    t=(--pack cache/pack-bi-t.npz --scale 4 --rungs bi --exclude CVPCMNL1 CVFC1 --channels 24 --depth 3 "${SIZE[@]}")
    learn train-pack "${t[@]}" --out "$out/x4-bi-s24.pt" > "$out/x4-bi-s24.log" 2>&1 &
    learn train-pack "${t[@]}" --rep --out "$out/x4-bi-s24r.pt" > "$out/x4-bi-s24r.log" 2>&1 &
    learn train-pack "${t[@]}" --frames-in 2 --out "$out/x4-bi-t24.pt" > "$out/x4-bi-t24.log" 2>&1 &
    learn train-pack "${t[@]}" --frames-in 2 --rep --out "$out/x4-bi-t24r.pt" > "$out/x4-bi-t24r.log" 2>&1 &
    wait ;;
  pictures) bash ../scripts/fetch_pictures.sh
    # Version 3 learnt from the first five packages' pictures (backgrounds/, wallpapers/): 37 kept.
    learn pack-images --from cache/pictures/root/usr/share/{backgrounds,wallpapers} --out cache/pack-pictures-5.npz
    learn pack-images --from cache/pictures/root --out cache/pack-pictures.npz ;;
  train-p)
    out=$2
    learn train-pack "${PIC[@]}" --extra-pack cache/pack-pictures-5.npz --init "$out/x4-bi-t24r.pt" \
      --lr 2e-4 --steps 16000 --seed 1 --out "$out/x4-bi-t24r-pic.pt" > "$out/x4-bi-t24r-pic.log" 2>&1 ;;
  train-bi)
    out=$2; mkdir -p "$out"
    bi=(--pack cache/pack-bi-half.npz --scale 4 --rungs bi --exclude CVPCMNL1 CVFC1 --patch 32 "${SIZE[@]}")
    learn train-pack "${bi[@]}" --channels 24 --depth 3 --out "$out/x4-bih-c24.pt" > "$out/x4-bih-c24.log" 2>&1 &
    learn train-pack "${bi[@]}" --channels 32 --depth 3 --out "$out/x4-bih-c32.pt" > "$out/x4-bih-c32.log" 2>&1 &
    learn train-pack "${bi[@]}" --channels 20 --depth 4 --out "$out/x4-bih-c20d4.pt" > "$out/x4-bih-c20d4.log" 2>&1 &
    wait ;;
  train)
    out=$2; mkdir -p "$out"
    # x4 for the clean BI degradation (Vid4): mobile & calendar is left out, Vid4's calendar is a
    # crop of the same scene. Three widths: the quality/speed frontier.
    bi=(--pack "$PACK" --scale 4 --rungs bi --exclude CVPCMNL1 CVFC1 --depth 3 "${SIZE[@]}")
    learn train-pack "${bi[@]}" --channels 24 --out "$out/x4-bi-c24.pt" > "$out/x4-bi-c24.log" 2>&1 &
    learn train-pack "${bi[@]}" --channels 28 --out "$out/x4-bi-c28.pt" > "$out/x4-bi-c28.log" 2>&1 &
    learn train-pack "${bi[@]}" --channels 32 --out "$out/x4-bi-c32.pt" > "$out/x4-bi-c32.log" 2>&1 &
    # Distilled students on every codec rung of the pack (x264, x265, VP9, AV1).
    for s in 2 3 4; do
      learn train-pack --pack "$PACK" --scale $s --channels 16 --depth 2 "${HALF[@]}" "${TSIZE[@]}" \
        --teacher-channels 48 --teacher-blocks 6 --distill 0.5 --out "$out/x$s-kd.pt" > "$out/x$s-kd.log" 2>&1 &
    done
    wait ;;
  finish)
    out=$2
    # CRF 23/33 x264 plus one rung of each other codec.
    ev=x264:23,x264:33,x265:28,vp9:40,av1:45
    learn finish --weights "$out/x2-kd.pt" --name nerve-sr-x2-kd --eval-codecs $ev
    learn finish --weights "$out/x3-kd.pt" --name nerve-sr-x3-kd --eval-codecs $ev
    learn finish --weights "$out/x4-kd.pt" --name nerve-sr-x4-kd --eval-codecs $ev
    for c in 24 28 32; do learn finish --weights "$out/x4-bi-c$c.pt" --name nerve-sr-x4-bi-c$c --eval-codecs none:0,x264:23; done ;;
  finish-t)
    # nerve-sr-x4-bi version 2 was the temporal ECB student of train-t.
    finish_bi "$2/x4-bi-t24r.pt" ;;
  train-p2)
    out=$2
    l1_then_l2 "$out/x4-bi-t24r-pic.pt" "$out/x4-bi-t24r-pic2" 16000 7500 2 "${PIC[@]}" --extra-pack cache/pack-pictures.npz ;;
  train-d4)
    # Version 4 grown by one identity layer (Student.deepened: the same function to start with),
    # then fine-tuned: the new layer is capacity that the data has not yet used up. V4=FILE starts
    # from another copy of version 4 (its exported ONNX file gives the same starting weights).
    out=$2; mkdir -p "$out"
    l1_then_l2 "${V4:-$out/x4-bi-t24r-pic2-l2.pt}" "$out/x4-bi-d4" 12000 5000 4 "${PIC[@]}" --depth 4 \
      --extra-pack cache/pack-pictures.npz ;;
  x4-bi)
    # The shipped Vid4 model from nothing: hours on a CPU (train-t alone is 3.5 h there; give
    # STEPS), about 4.5 h with a GPU for train-t (the fine-tuning stages have fixed step counts).
    for stage in pack train-t pictures train-p train-p2 train-d4 finish-d4; do "$SELF" "$stage" "$2"; done ;;
  finish-d4)
    # The shipped nerve-sr-x4-bi (version 5).
    finish_bi "$2/x4-bi-d4-l2.pt" --note "Version 5: version 4 grown to four middle layers (an identity layer added, then fine-tuned on the video BI pack plus the 53 pictures), L1 then squared error: scripts/train_pack_models.sh train-d4" ;;
  finish-p2)
    # nerve-sr-x4-bi version 4.
    finish_bi "$2/x4-bi-t24r-pic2-l2.pt" --note "Version 4: version 3 fine-tuned on the video BI pack plus crops of 53 still pictures (seven Debian packages, scripts/fetch_pictures.sh), L1 then squared error: scripts/train_pack_models.sh pictures, train-p, train-p2" ;;
  finish-p)
    # Version 3 of nerve-sr-x4-bi: that student fine-tuned with pictures (train-p).
    finish_bi "$2/x4-bi-t24r-pic.pt" --note "Fine-tuned from train-t's student (x4-bi-t24r) on the video BI pack plus crops of 37 still pictures (Debian wallpaper packages, scripts/fetch_pictures.sh): scripts/train_pack_models.sh pictures, train-p" ;;
  pans) bash ../scripts/fetch_pictures.sh
    k=(--scales 2 --previous --step 3 --kernels bicubic,bilinear,area,lanczos)
    learn pack --out cache/pack-x2-clips.npz "${k[@]}" --frames 32 --crops 3
    learn pack --out cache/pack-x2-pans.npz "${k[@]}" --crops 2 --frames-per-picture 4 --pictures-only \
      --pictures cache/pictures/root --picture-debs cache/pictures/debs ;;
  train-x2d4)
    # The shipped run was sized by time (--minutes 50), which came to 86,019 steps on 2 cores.
    out=$2; mkdir -p "$out"
    learn train-pack --pack cache/pack-x2-clips.npz --extra-pack cache/pack-x2-pans.npz --scale 2 --frames-in 2 \
      --block 2 --channels 32 --depth 4 --rep --init ../models/nerve-sr-x2-s2d-temporal.onnx --lr 3e-4 --batch 32 \
      --patch 48 --steps "${STEPS:-86019}" --out "$out/x2-s2d-t-d4.pt" > "$out/x2-s2d-t-d4.log" 2>&1 ;;
  finish-x2d4)
    # The int8 variant was the default until the filmed mix (finish-x2mix) took its place.
    learn finish --weights "$2/x2-s2d-t-d4.pt" --name nerve-sr-x2-s2d-temporal-d4
    learn int8 --model ../models/nerve-sr-x2-s2d-temporal-d4.onnx --frames-in 2 --default ;;
  pans-only)
    # The photographs' pans alone, larger (8 frames of each pan, 3 crops per frame): the training
    # set of a student that never saw a library's sample clip.
    bash ../scripts/fetch_pictures.sh
    learn pack --out cache/pack-x2-pans-big.npz --scales 2 --previous --step 3 --crops 3 --frames-per-picture 8 \
      --kernels bicubic,bilinear,area,lanczos --pictures cache/pictures/root --picture-debs cache/pictures/debs \
      --pictures-only ;;
  train-x2pans)
    # From random weights (every shipped student's weights learnt from the library clips), with
    # warm-up (30 min on 2 cores).
    out=$2; mkdir -p "$out"
    learn train-pack --pack cache/pack-x2-pans-big.npz --scale 2 --frames-in 2 --block 2 --channels 32 --depth 4 \
      --rep --lr 5e-4 --warmup 2000 --batch 32 --patch 48 --steps "${STEPS:-30000}" --out "$out/x2-s2d-t-d4-pans.pt" \
      > "$out/x2-s2d-t-d4-pans.log" 2>&1 ;;
  finish-x2pans)
    learn finish --weights "$2/x2-s2d-t-d4-pans.pt" --name nerve-sr-x2-s2d-temporal-d4-pans
    learn int8 --model ../models/nerve-sr-x2-s2d-temporal-d4-pans.onnx --frames-in 2 \
      --calibration-pack cache/pack-x2-pans-big.npz ;;
  pans-filmed)
    # The same pans filmed with a shutter: each pan's exposure drawn up to one frame interval, the
    # motion blur a camera records (docs/research/2026-12-07-sr-filmed-pans.md).
    bash ../scripts/fetch_pictures.sh
    learn pack --out cache/pack-x2-pans-filmed.npz --scales 2 --previous --step 3 --crops 3 --frames-per-picture 8 \
      --kernels bicubic,bilinear,area,lanczos --pictures cache/pictures/root --picture-debs cache/pictures/debs \
      --pictures-only --shutter 1 ;;
  tune-x2filmed)
    # The pans-only student fine-tuned on the filmed pans; EDGE=0.3 adds the edge term (~10 min;
    # THREADS=1 to run both side by side).
    out=$2; mkdir -p "$out"; tag=filmed${EDGE:+-edge}
    learn train-pack --pack cache/pack-x2-pans-filmed.npz --scale 2 --frames-in 2 --block 2 --channels 32 --depth 4 \
      --rep --init ../models/nerve-sr-x2-s2d-temporal-d4-pans.onnx --lr 2e-4 --warmup 500 --edge "${EDGE:-0}" \
      --batch 32 --patch 48 --steps "${STEPS:-12000}" --threads "${THREADS:-2}" --out "$out/x2-s2d-t-d4-$tag.pt" > "$out/x2-s2d-t-d4-$tag.log" 2>&1 ;;
  finish-x2filmed)
    # finish-x2filmed OUTDIR TAG NAME: export, card and int8 (calibrated on the filmed pans).
    learn finish --weights "$2/x2-s2d-t-d4-$3.pt" --name "$4"
    learn int8 --model "../models/$4.onnx" --frames-in 2 --calibration-pack cache/pack-x2-pans-filmed.npz ;;
  tune-x2mix)
    # The default x2 model: nerve-sr-x2-s2d-temporal-d4 fine-tuned on the clips pack (of `pans`) and
    # the filmed pans (5 min on 2 cores); docs/research/2026-12-07-sr-filmed-pans.md.
    out=$2; mkdir -p "$out"
    learn train-pack --pack cache/pack-x2-clips.npz --extra-pack cache/pack-x2-pans-filmed.npz --scale 2 --frames-in 2 \
      --block 2 --channels 32 --depth 4 --rep --init ../models/nerve-sr-x2-s2d-temporal-d4.onnx --lr 1e-4 --warmup 500 \
      --batch 32 --patch 48 --steps "${STEPS:-8000}" --out "$out/x2-s2d-t-d4-mix.pt" > "$out/x2-s2d-t-d4-mix.log" 2>&1 ;;
  finish-x2mix)
    # Its int8 variant was the default until the eight-layer network (tune-x2d8).
    learn finish --weights "$2/x2-s2d-t-d4-mix.pt" --name nerve-sr-x2-s2d-temporal-d4-filmed-mix
    learn int8 --model ../models/nerve-sr-x2-s2d-temporal-d4-filmed-mix.onnx --frames-in 2 \
      --calibration-pack cache/pack-x2-pans-filmed.npz ;;
  tune-x2d8)
    # The default x2 model since 2026-12-07 (evening): the filmed mix grown to eight middle layers
    # (identity layers, the same function to start) and fine-tuned on the same data (17 min on 2
    # cores); docs/research/2026-12-07-sr-d8.md.
    out=$2; mkdir -p "$out"
    learn train-pack --pack cache/pack-x2-clips.npz --extra-pack cache/pack-x2-pans-filmed.npz --scale 2 --frames-in 2 \
      --block 2 --channels 32 --depth 8 --rep --init ../models/nerve-sr-x2-s2d-temporal-d4-filmed-mix.onnx --lr 2e-4 \
      --warmup 500 --batch 32 --patch 48 --steps "${STEPS:-16000}" --out "$out/x2-s2d-t-d8-mix.pt" > "$out/x2-s2d-t-d8-mix.log" 2>&1 ;;
  finish-x2d8)
    # Its int8 variant is the default for inputs under 480 rows (the edge student's manifest entry
    # carries default_from_rows = 480).
    learn finish --weights "$2/x2-s2d-t-d8-mix.pt" --name nerve-sr-x2-s2d-temporal-d8-filmed-mix
    learn int8 --model ../models/nerve-sr-x2-s2d-temporal-d8-filmed-mix.onnx --frames-in 2 --default \
      --calibration-pack cache/pack-x2-pans-filmed.npz ;;
  *) echo "usage: $0 pack | pictures | pans | pans-only | pans-filmed | tune-x2d8 OUTDIR | finish-x2d8 OUTDIR | tune-x2mix OUTDIR | finish-x2mix OUTDIR | tune-x2filmed OUTDIR | finish-x2filmed OUTDIR TAG NAME | train-x2pans OUTDIR | finish-x2pans OUTDIR | train-x2d4 OUTDIR | finish-x2d4 OUTDIR | train OUTDIR | train-bi OUTDIR | train-t OUTDIR | train-p OUTDIR | finish OUTDIR | finish-t OUTDIR | finish-p OUTDIR | train-p2 OUTDIR | finish-p2 OUTDIR | train-d4 OUTDIR | finish-d4 OUTDIR | x4-bi OUTDIR" >&2; exit 2 ;;
esac
