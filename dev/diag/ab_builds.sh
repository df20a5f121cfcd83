#!/bin/bash
# Two builds side by side on the GPU machine: out/old.so.xz and out/new.so.xz (xz -1 of each
# stripped fused_mlp/_C.abi3.so: two uncompressed builds exceed the device tool's carry limit)
# become /tmp/ab/A/fused_mlp and /tmp/ab/B/fused_mlp (this checkout's Python files each).
# Then: PYTHONPATH=/tmp/ab/A python ...  vs  PYTHONPATH=/tmp/ab/B python ...
#   (pytest: PYTHONPATH=/tmp/ab/B python -P -m pytest tests/...; without -P, `python -m` puts the
#   checkout first on sys.path, and its fused_mlp, which has no _C there, shadows the build)
#   source dev/diag/ab_builds.sh   (run via the device tool with carry out/old.so.xz, out/new.so.xz)
set -e
for v in A:old B:new; do
    d=/tmp/ab/${v%%:*}
    rm -rf "$d" && mkdir -p "$d"
    cp -r fused_mlp "$d/"
    xz -dc "out/${v##*:}.so.xz" > "$d/fused_mlp/_C.abi3.so"
done
set +e
