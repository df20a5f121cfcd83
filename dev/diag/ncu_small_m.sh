#!/usr/bin/env bash
# ncu of the small-M kernel (one hot launch per case: 0 = 1024-4096-1024 M=1, 1 = M=16,
# 2 = GeGLU M=64): warp stall reasons and per-SASS-instruction samples, into $OUT.
#   OUT=DIR bash dev/diag/ncu_small_m.sh [cases...]     (builds the harness first)
set -uo pipefail
cd "$(dirname "$0")/../.."
D=${OUT:-/tmp/ncu_small_m}; mkdir -p "$D"
B=${BUILD:-/tmp/fmlp_small_m_build}
[ -n "${SKIP_BUILD:-}" ] || bash dev/cuda/small_m/run.sh build > "$D/harness_build.log" 2>&1 || { tail -20 "$D/harness_build.log"; exit 1; }
for c in "${@:-0 1 2}"; do
  ncu --clock-control none -k regex:small_m --launch-skip 2 --launch-count 1 \
      --section WarpStateStats --section SourceCounters --section SpeedOfLight --section LaunchStats \
      --section InstructionStats -f -o "$D/sm_$c" "$B/bench_small_m" ncu "$c" > "$D/ncu_run_$c.log" 2>&1
  ncu --import "$D/sm_$c.ncu-rep" --page details > "$D/ncu_$c.txt" 2>&1
  ncu --import "$D/sm_$c.ncu-rep" --page source --print-source sass --csv > "$D/sass_$c.csv" 2>&1
  ncu --import "$D/sm_$c.ncu-rep" --page raw --csv > "$D/raw_$c.csv" 2>&1
  echo "== case $c ${FMLP_SM_LEAN:+FMLP_SM_LEAN=$FMLP_SM_LEAN}"; grep -E "Duration|Warp Cycles Per Issued|Executed Instructions  " "$D/ncu_$c.txt" | head -5
done
# one archive: the device tool brings back a limited number of files
tar czf "$D/ncu_small_m.tgz" -C "$D" $(cd "$D" && ls sm_*.ncu-rep sass_*.csv raw_*.csv ncu_*.txt) && rm -f "$D"/sm_*.ncu-rep "$D"/sass_*.csv "$D"/raw_*.csv
