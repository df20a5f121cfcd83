#!/bin/sh
# build_and_run.sh — builds tests/c/test_core.c with the CPU core (csrc/fmlp_desc.c +
# csrc/cpu/*.c, same flags as setup.py) and runs it once per kernel ISA
# (FMLP_CPU_ISA=generic, avx2, then the native choice), plus once as a portable-only
# build (-DFMLP_NO_X86: what a non-x86 machine compiles) and once with the backward
# forced into 48-row slabs (multi-slab dW accumulation). Each run prints
# "N passed, N failed" last; the script exits non-zero if any run failed.
# Usage: tests/c/build_and_run.sh [quick]
cd "$(dirname "$0")/../.." || exit 2
out=${TMPDIR:-/tmp}/fmlp_test_core
flags="-O3 -fPIC -fexceptions -std=c11 -D_GNU_SOURCE -Wall -Wno-comment -Wno-alloc-size-larger-than"
src="tests/c/test_core.c csrc/fmlp_desc.c $(ls csrc/cpu/*.c)"
gcc $flags -o "$out" $src -lm -lpthread || exit 2
gcc $flags -DFMLP_NO_X86 -o "$out.portable" $src -lm -lpthread || exit 2
rc=0
for isa in generic avx2 native; do
    echo "== FMLP_CPU_ISA=$isa"
    FMLP_CPU_ISA=$isa "$out" "$@" > "$out.log" || rc=1
    tail -n 12 "$out.log"
done
echo "== native, backward in slabs of 48 rows (FMLP_CPU_BWD_SLAB=48)"
FMLP_CPU_BWD_SLAB=48 "$out" "$@" > "$out.log" || rc=1
tail -n 12 "$out.log"
echo "== portable build (-DFMLP_NO_X86)"
"$out.portable" "$@" > "$out.log" || rc=1
tail -n 12 "$out.log"
exit $rc
