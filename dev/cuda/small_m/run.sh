#!/usr/bin/env bash
# Builds and runs the small-M harness on the GPU: correctness, then timing; the table last.
# Usage (repo root): dev/cuda/small_m/run.sh [check|time|all]   (logs to $OUT when set)
set -euo pipefail
cd "$(dirname "$0")/../../.."
B=${BUILD:-/tmp/fmlp_small_m_build}
mkdir -p "$B"
NVFLAGS="-O3 -std=c++17 -Xcompiler -fPIC --expt-relaxed-constexpr -DFMLP_WITH_CUDA -lineinfo -Icsrc"
ARCH="-gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80"
nvcc $NVFLAGS $ARCH -c csrc/cuda/fmlp_small_m.cu -o "$B/fmlp_small_m.o"
gcc -O2 -std=gnu11 -fPIC -Icsrc -c csrc/fmlp_desc.c -o "$B/fmlp_desc.o"
nvcc $NVFLAGS $ARCH dev/cuda/small_m/bench_small_m.cu "$B/fmlp_small_m.o" "$B/fmlp_desc.o" -o "$B/bench_small_m"
LOG=${OUT:-$B}/bench_small_m.log
timeout 300 "$B/bench_small_m" "${1:-all}" 2>&1 | tee "$LOG" || echo "bench_small_m FAILED (rc $?)"
PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/small_m/eager.py 2>&1 | tee -a "$LOG" || echo "eager.py FAILED"
