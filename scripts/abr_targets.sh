#!/usr/bin/env bash
# Issue-5 figures from the shipped tables (gst-nerveabr/README.md, "Results with the measured
# tables"): every policy on the six test sets, then the bit price chosen on the FCC and Norway
# training sets (largest price whose mean VMAF stays at or above the best no-enhancement
# baseline's there) and the bits it saves on the test sets. Writes JSON into OUT (default
# out/abr) and prints the summary. Run from anywhere; needs ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release -q -p nerveabr-sim
T=../shared/data/traces; OUT=${OUT:-out/abr}; mkdir -p "$OUT"
SIM=./target/release/nerveabr-sim
P=bb,rb,bola,robustmpc,dynamic,rb+sr,bola+sr,robustmpc+sr,dynamic+sr,bones,nerve
PRICES="0.25 0.5 1 2 4 5 6 8 16 32"; BITS=(--nerve-tail 10)
TEST=("$T/broadband_fcc/pensieve_test_traces_fcc" "$T/3g_hsdpa_norway/pensieve_test_cooked_3gp"
      "$T/4g_lte_belgium/sabre_4Glogs_json" "$T/5g_4g_lumos/4g_lumos_sabre_json.tar.gz"
      "$T/5g_4g_lumos/5g_lumos_sabre_json.tar.gz" "$T/broadband_oboe/traces_oboe")
TRAIN=("$T/broadband_fcc/pensieve_train_cooked_traces_fcc" "$T/3g_hsdpa_norway/pensieve_train_cooked_traces_norway")
for d in "${TEST[@]}"; do $SIM --quiet --traces "$d" --policies $P --json "$OUT/test_$(basename "$d").json" >/dev/null; done
for d in "${TRAIN[@]}"; do
  $SIM --quiet --traces "$d" --policies bb,rb,bola,robustmpc,dynamic --json "$OUT/train_base_$(basename "$d").json" >/dev/null
  for p in $PRICES; do
    $SIM --quiet --traces "$d" --policies nerve "${BITS[@]}" --nerve-bit-price "$p" --json "$OUT/train_p${p}_$(basename "$d").json" >/dev/null
  done
done
price=$(python3 - "$OUT" $PRICES <<'PY'
import json, sys
out, prices = sys.argv[1], sys.argv[2:]
ok = []
for p in prices:
    good = True
    for s in ("pensieve_train_cooked_traces_fcc", "pensieve_train_cooked_traces_norway"):
        b = json.load(open(f"{out}/train_base_{s}.json"))["policies"]
        best = max(b.values(), key=lambda v: v["qoe_quality"])
        n = json.load(open(f"{out}/train_p{p}_{s}.json"))["policies"]["nerve"]
        good &= n["mean_quality"] >= best["mean_quality"]
    if good:
        ok.append(float(p))
print(max(ok) if ok else 0)
PY
)
echo "bit price chosen on the training sets: $price"
for d in "${TEST[@]:0:4}"; do
  $SIM --quiet --traces "$d" --policies bb,rb,bola,robustmpc,dynamic,nerve "${BITS[@]}" --nerve-bit-price "$price" \
    --json "$OUT/bits_$(basename "$d").json" >/dev/null
done
python3 - "$OUT" <<'PY'
import json, glob, os, sys
out = sys.argv[1]
for f in sorted(glob.glob(f"{out}/test_*.json")):
    d = json.load(open(f))["policies"]
    n = d.pop("nerve")
    best = max(d, key=lambda p: d[p]["qoe_quality"])
    least = min(v["rebuffer_s"] for v in d.values())
    print(f"{os.path.basename(f)[5:-5]:<34} nerve QoE_vmaf {n['qoe_quality']:.2f} vs {best} {d[best]['qoe_quality']:.2f} "
          f"({n['qoe_quality'] - d[best]['qoe_quality']:+.2f}); rebuffer {n['rebuffer_s']:.4f} s vs least {least:.4f} s")
for f in sorted(glob.glob(f"{out}/bits_*.json")):
    d = json.load(open(f))["policies"]
    n = d.pop("nerve")
    best = max(d, key=lambda p: d[p]["qoe_quality"])
    b = d[best]
    print(f"{os.path.basename(f)[5:-5]:<34} bits {n['bits_mb']:.1f} vs {best} {b['bits_mb']:.1f} Mbit "
          f"({(n['bits_mb'] / b['bits_mb'] - 1) * 100:+.1f}%), VMAF {n['mean_quality']:.2f} vs {b['mean_quality']:.2f}; "
          f"any policy needs >= {b['bits_floor_mb']:.1f} Mbit for {best}'s VMAF "
          f"(at most {(1 - b['bits_floor_mb'] / b['bits_mb']) * 100:.1f}% fewer)")
PY
