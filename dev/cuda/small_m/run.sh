#!/usr/bin/env bash
# Builds and runs the small-M harness on the GPU: correctness, then timing; the tables last.
# Usage (repo root): dev/cuda/small_m/run.sh [check|time|all]   (logs to $OUT when set)
#   bench_small_m       the kernel in csrc/cuda/fmlp_small_m.cu (check and/or time)
#   bench_small_m_v2b   dev/cuda/small_m/fmlp_small_m_v2b.cu (v2b: producer warp + mbarriers;
#                       timed beside the csrc kernel in the same run)
#   bench_small_m_prof  v2b built with -DFMLP_SM_PROF: per-phase %globaltimer stamps
#   eager.py            the eager PyTorch baseline (graph replay), same rotation
set -uo pipefail
cd "$(dirname "$0")/../../.."
B=${BUILD:-/tmp/fmlp_small_m_build}
mkdir -p "$B"
NVFLAGS="-O3 -std=c++17 -Xcompiler -fPIC --expt-relaxed-constexpr -DFMLP_WITH_CUDA -lineinfo -Icsrc"
ARCH="-gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80"
gcc -O2 -std=gnu11 -fPIC -Icsrc -c csrc/fmlp_desc.c -o "$B/fmlp_desc.o" || exit 1
nvcc $NVFLAGS $ARCH -c csrc/cuda/fmlp_small_m.cu -o "$B/fmlp_small_m.o" &
nvcc $NVFLAGS $ARCH -c dev/cuda/small_m/fmlp_small_m_v2b.cu -o "$B/fmlp_small_m_v2b.o" &
nvcc $NVFLAGS $ARCH -DFMLP_SM_PROF -c dev/cuda/small_m/fmlp_small_m_v2b.cu -o "$B/fmlp_small_m_prof.o" &
nvcc $NVFLAGS $ARCH -c dev/cuda/small_m/bench_small_m.cu -o "$B/bench.o" &
nvcc $NVFLAGS $ARCH -DFMLP_SM_PROF -c dev/cuda/small_m/bench_small_m.cu -o "$B/bench_prof.o" &
wait
nvcc $ARCH "$B/bench.o" "$B/fmlp_small_m.o" "$B/fmlp_desc.o" -o "$B/bench_small_m" || exit 1
nvcc $ARCH "$B/bench.o" "$B/fmlp_small_m_v2b.o" "$B/fmlp_desc.o" -o "$B/bench_small_m_v2b" || exit 1
nvcc $ARCH "$B/bench_prof.o" "$B/fmlp_small_m_prof.o" "$B/fmlp_desc.o" -o "$B/bench_small_m_prof" || exit 1
D=${OUT:-$B}
MODE=${1:-all}
timeout 300 "$B/bench_small_m" "$MODE" > "$D/bench_small_m.log" 2>&1 || echo "bench_small_m FAILED (rc $?)"
grep -E "FAIL|CHECK|supported=" "$D/bench_small_m.log"
if [ "$MODE" != check ]; then
  timeout 120 "$B/bench_small_m_v2b" time > "$D/bench_small_m_v2b.log" 2>&1 || echo "bench_small_m_v2b FAILED (rc $?)"
  timeout 120 "$B/bench_small_m_prof" prof > "$D/bench_small_m_prof.log" 2>&1 || echo "bench_small_m_prof FAILED (rc $?)"
  PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/small_m/eager.py > "$D/eager.log" 2>&1 || echo "eager.py FAILED"
  cat "$D/bench_small_m_prof.log"
  echo "== v2b (dev variant, same run) =="; sed -n '/^case/,$p' "$D/bench_small_m_v2b.log"
  echo "== csrc kernel =="; sed -n '/^copy bandwidth/p;/^case/,$p' "$D/bench_small_m.log"
  cat "$D/eager.log"
fi
