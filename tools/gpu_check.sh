#!/usr/bin/env bash
# gpu_check.sh — the one GPU script: build with CUDA, run the whole test suite with the
# CUDA tests enabled, compute-sanitizer memcheck on a kernel smoke test, then the
# benchmark sweep; the short table comes last. Full logs go to $OUT (default ./gpu_out).
#
#   bash tools/gpu_check.sh            # everything
#   bash tools/gpu_check.sh --quick    # build, CUDA tests, quick sweep
#   bash tools/gpu_check.sh --bench    # build + sweep only
#   bash tools/gpu_check.sh --no-bench # build, tests, memcheck, notebook
# SKIP_BUILD=1 uses the fused_mlp/_C.abi3.so already in the checkout (built elsewhere with
# FUSED_MLP_CUDA=1 and brought along): the full build takes ~6 minutes on the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULT_DIR=${OUT:-$PWD/gpu_out}   # what to keep: RESULTS.md, sweep.json, the executed notebook, logs.tgz
OUT=$(mktemp -d /tmp/gpu_check.XXXX)  # everything, logs included
mkdir -p "$RESULT_DIR"
finish() {
    tar czf "$RESULT_DIR/logs.tgz" -C "$OUT" . 2>/dev/null
}
trap finish EXIT
export PYTHONUNBUFFERED=1
MODE=${1:-full}
PY=${PYTHON:-python3}
summary=()

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader > "$OUT/gpu.txt" 2>&1
echo "== build ($(cat "$OUT/gpu.txt"))"
if [ -n "${SKIP_BUILD:-}" ]; then
    [ -f fused_mlp/_C.abi3.so ] || { echo "SKIP_BUILD set but fused_mlp/_C.abi3.so is missing"; exit 1; }
    echo "skipped: using the prebuilt fused_mlp/_C.abi3.so"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
elif ! FUSED_MLP_CUDA=1 $PY -m pip install -v --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
    grep -E "error|Error" "$OUT/build.log" | head -40
    echo "BUILD FAILED (log: $OUT/build.log)"
    exit 1
fi
$PY -c "import fused_mlp, torch; assert fused_mlp._C.has_cuda(); print('fused_mlp CUDA build OK,', torch.__version__)"

if [ -d .whl ]; then
    # nbclient and a kernel (for the notebook test and run) are not on the GPU image:
    # they travel as wheels in .whl/ (see the device tool's README)
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/nbsite .whl/*.whl > "$OUT/wheels.log" 2>&1 \
        && export PYTHONPATH=/tmp/nbsite${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$MODE" != "--bench" ]; then
    echo "== tests"
    if [ "$MODE" = "--quick" ]; then tests="tests/test_cuda.py tests/test_numerics.py tests/test_gradients.py tests/test_ops.py"; else tests="tests"; fi
    $PY -m pytest $tests -q -p no:cacheprovider -x --tb=short > "$OUT/tests.log" 2>&1
    rc=$?
    tail -30 "$OUT/tests.log"
    summary+=("tests: $(tail -1 "$OUT/tests.log") (exit $rc)")
fi

if [ "$MODE" = "full" ] || [ "$MODE" = "--no-bench" ]; then
    echo "== compute-sanitizer memcheck"
    compute-sanitizer --tool memcheck --error-exitcode 9 $PY tools/kernel_smoke.py > "$OUT/memcheck.log" 2>&1
    rc=$?
    tail -5 "$OUT/memcheck.log"
    summary+=("memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1) (exit $rc)")
fi

if { [ "$MODE" = "full" ] || [ "$MODE" = "--no-bench" ]; } && [ -d .whl ]; then
    echo "== notebook (executed here, with outputs, into \$OUT)"
    $PY tools/run_notebook.py notebooks/profiling_walkthrough.ipynb "$RESULT_DIR/profiling_walkthrough.ipynb" \
        > "$OUT/notebook.log" 2>&1
    mv "$RESULT_DIR/profile_out" "$OUT/" 2>/dev/null  # traces and plot of the notebook run: into logs.tgz
    summary+=("notebook: $(tail -1 "$OUT/notebook.log")")
fi

if [ "$MODE" != "--no-bench" ]; then
    echo "== benchmarks"
    if [ "$MODE" = "--quick" ]; then bargs="--quick --replays 10"; else bargs=""; fi
    # results go straight to $RESULT_DIR (rewritten after every model): a run cut short keeps them
    $PY bench/gpu_sweep.py --out "$RESULT_DIR" $bargs > "$OUT/bench.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && tail -30 "$OUT/bench.log"
fi
echo
echo "================ summary ================"
for s in "${summary[@]}"; do echo "$s"; done
[ -f "$RESULT_DIR/RESULTS.md" ] && sed -n '/Small-batch targets/,/copy bandwidth/p' "$RESULT_DIR/RESULTS.md" && grep "worst eager" "$RESULT_DIR/RESULTS.md"
