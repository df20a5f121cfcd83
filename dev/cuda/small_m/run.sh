#!/usr/bin/env bash
# Builds and runs the small-M harness on the GPU: correctness, then timing; the tables last.
# Usage (repo root): dev/cuda/small_m/run.sh [check|time|all|build|launch]   (logs to $OUT when set;
#   BUILD=DIR: where the binaries go, SKIP_BUILD=1: use the ones already there)
#   bench_small_m       the kernels in csrc/cuda/fmlp_small_m.cu (check and/or time), run under
#                       several dev knobs (env, read once per process; VARIANTS="default v4 ..."):
#                       FMLP_SM_LEAN=0 (never the lean v5 kernel: always v4),
#                       FMLP_SM_BULK=0 (sm_80's cp.async weight stream on the H100),
#                       FMLP_SM_STAGE=0 (layer inputs read from global in register chunks: v3),
#                       FMLP_SM_EARLY=0 (the producer issues the stream after the entry barrier, not before),
#                       FMLP_SM_SPLIT=0 (never split the last layer's K) / =n (n row groups;
#                       not run by default: measured slower in v3)
#   bench_small_m_prof  the same kernel built with -DFMLP_SM_PROF: per-phase %globaltimer stamps
#   eager.py            the eager PyTorch baseline (graph replay), same rotation
set -uo pipefail
cd "$(dirname "$0")/../../.."
B=${BUILD:-/tmp/fmlp_small_m_build}
mkdir -p "$B"
NVFLAGS="-O3 -std=c++17 -Xcompiler -fPIC --expt-relaxed-constexpr -DFMLP_WITH_CUDA -lineinfo -Icsrc"
ARCH=${ARCH:-"-gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80"}
if [ -n "${SKIP_BUILD:-}" ]; then :; else  # SKIP_BUILD=1: binaries already in $BUILD (built elsewhere, carried)
gcc -O2 -std=gnu11 -fPIC -Icsrc -c csrc/fmlp_desc.c -o "$B/fmlp_desc.o" || exit 1
nvcc $NVFLAGS $ARCH -c csrc/cuda/fmlp_small_m.cu -o "$B/fmlp_small_m.o" &
nvcc $NVFLAGS $ARCH -DFMLP_SM_PROF -c csrc/cuda/fmlp_small_m.cu -o "$B/fmlp_small_m_prof.o" &
nvcc $NVFLAGS $ARCH -c dev/cuda/small_m/bench_small_m.cu -o "$B/bench.o" &
nvcc $NVFLAGS $ARCH -DFMLP_SM_PROF -c dev/cuda/small_m/bench_small_m.cu -o "$B/bench_prof.o" &
wait
nvcc $ARCH "$B/bench.o" "$B/fmlp_small_m.o" "$B/fmlp_desc.o" -o "$B/bench_small_m" || exit 1
nvcc $ARCH "$B/bench_prof.o" "$B/fmlp_small_m_prof.o" "$B/fmlp_desc.o" -o "$B/bench_small_m_prof" || exit 1
fi
D=${OUT:-$B}
MODE=${1:-all}
[ "$MODE" = build ] && exit 0   # binaries only (e.g. for ncu: bench_small_m ncu CASE)
run() { # name env... -- args
  local name=$1; shift
  env "$@" timeout 300 "$B/bench_small_m" "$MODE" > "$D/$name.log" 2>&1 || echo "$name FAILED (rc $?)"
  echo "== $name ($*) =="; grep -E "FAIL|CHECK|supported=" "$D/$name.log" | head -20
}
VARIANTS=${VARIANTS:-default v4 nobulk}  # also: nostage late
for n in $VARIANTS; do
  case $n in
    default) run default FMLP_NOTHING=1 ;;
    v4) run v4 FMLP_SM_LEAN=0 ;;
    nobulk) run nobulk FMLP_SM_BULK=0 ;;
    nostage) run nostage FMLP_SM_LEAN=0 FMLP_SM_STAGE=0 ;;
    late) run late FMLP_SM_LEAN=0 FMLP_SM_EARLY=0 ;;
  esac
done
if [ "$MODE" != check ]; then
  timeout 120 "$B/bench_small_m_prof" prof > "$D/bench_small_m_prof.log" 2>&1 || echo "bench_small_m_prof FAILED (rc $?)"
  FMLP_SM_LEAN=0 timeout 120 "$B/bench_small_m_prof" prof > "$D/bench_small_m_prof_v4.log" 2>&1 || echo "prof v4 FAILED"
  PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/small_m/eager.py > "$D/eager.log" 2>&1 || echo "eager.py FAILED"
  echo "== prof (default) =="; cat "$D/bench_small_m_prof.log"
  echo "== prof (FMLP_SM_LEAN=0: v4) =="; cat "$D/bench_small_m_prof_v4.log"
  for n in $VARIANTS; do
    echo "== timing: $n =="; sed -n '/^copy bandwidth/p;/^case/,$p' "$D/$n.log"
  done
  cat "$D/eager.log"
fi
