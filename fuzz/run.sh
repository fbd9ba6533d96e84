#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of outside data (docs/reliability.md).
#   fuzz/run.sh build             build every target (cargo-fuzz, libFuzzer, sanitizer coverage)
#   fuzz/run.sh replay            run every target once over its committed corpus and regressions (CI)
#   fuzz/run.sh fuzz SECONDS [T]  fuzz each target (or T) for SECONDS at nice 15; new inputs go
#                                 to fuzz/corpus-run/<target> (ignored by git), crashes to
#                                 fuzz/artifacts/<target>/, a log per target to fuzz/logs/
# No nightly toolchain here: RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's flags, and
# `-s none` builds without AddressSanitizer (the code under test has no unsafe of its own).
set -euo pipefail
cd "$(dirname "$0")"
export PATH=$HOME/.cargo/bin:$PATH RUSTC_BOOTSTRAP=1
TARGETS=(model_manifest quality_table trace abr_manifest rtp_salvage h264_recover)
build() { cargo fuzz build -s none -O; }
case "${1:-}" in
  build) build ;;
  replay)
    build
    for t in "${TARGETS[@]}"; do
      # -runs=0 executes every corpus file once; a crash exits non-zero
      # the committed seeds and every input that once found a bug (fuzz/regressions/<target>/)
      dirs=("corpus/$t"); [ -d "regressions/$t" ] && dirs+=("regressions/$t")
      if ! out=$(cargo fuzz run -s none -O "$t" "${dirs[@]}" -- -runs=0 2>&1); then
        echo "$out" | tail -40 >&2
        echo "replay $t: FAILED" >&2
        exit 1
      fi
      echo "replay $t: ok ($(echo "$out" | grep -oE 'INITED cov: [0-9]+' | tail -1), $(find "${dirs[@]}" -type f | wc -l) inputs)"
    done ;;
  fuzz)
    seconds=${2:?seconds per target}
    build
    mkdir -p logs
    for t in ${3:-${TARGETS[@]}}; do
      mkdir -p "corpus-run/$t"
      # -timeout: one input running past 20 s counts as a hang (a crash file is written)
      nice -n 15 cargo fuzz run -s none -O "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || echo "$t: stopped with a finding, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
      grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov: " "logs/$t.log" | tail -3
    done ;;
  *) sed -n 2,10p "$0"; exit 2 ;;
esac
