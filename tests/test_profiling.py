"""The profiling experience, run small: the profiler API and CLI, the examples, and the
notebook (executed headless with nbclient; GPU-only cells are guarded)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from fused_mlp import profiling
from fused_mlp.profile import main as profile_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_variants_returns_plain_data(tmp_path):
    spec = profiling.MLPSpec(in_features=32, hidden=64, activation="silu", gated=True)
    model = profiling.build_mlp(spec)
    results = profiling.profile_variants(model, profiling.make_input(spec, 16), out_dir=str(tmp_path),
                                         variants=("eager", "fused"), repeats=3)
    eager, fused = results
    assert [r.name for r in results] == ["eager", "fused"]
    assert eager.kernels_per_step >= 4  # gate, up, act, mul, down (the Linear products at least)
    # an inference step runs the compact op (fused_mlp::infer); training steps run ::forward
    assert fused.kernels_per_step == 1 and fused.kernels[0].name == "fused_mlp::infer"
    assert fused.strategy == "cpu"
    assert eager.speedup == 1.0 and fused.speedup > 0 and fused.wall_us > 0
    for r in results:
        with open(r.trace_path) as f:
            names = {e.get("name") for e in json.load(f)["traceEvents"]}
        assert f"{r.name}.forward" in names
    assert "fused_mlp::infer" in names


def test_cli_writes_table_traces_plot(tmp_path, capsys):
    profile_main(["--device", "cpu", "--in", "32", "--hidden", "48", "--batch", "2", "--seq", "8", "--batches", "1,16",
                  "--out", str(tmp_path), "--train", "--variants", "eager,fused"])
    out = capsys.readouterr().out
    assert "| eager |" in out and "| fused [cpu] |" in out and "forward+backward" in out
    files = set(os.listdir(tmp_path))
    assert {"trace_eager.json", "trace_fused.json", "time_vs_batch.png", "results.json"} <= files
    with open(tmp_path / "results.json") as f:
        data = json.load(f)
    assert data["sweep"]["batches"] == [1, 16] and len(data["sweep"]["times_us"]["fused"]) == 2


@pytest.mark.parametrize("script", ["sequential_to_fused.py", "neural_field.py --small", "llama_fuse.py --small"])
def test_examples_run(script):
    args = script.split()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", args[0]), *args[1:]], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    if "llama" in script or "neural" in script:
        assert "speedup" in r.stdout


def test_notebook_executes(tmp_path):
    import nbclient  # test dependencies (README): nbclient nbformat ipykernel
    import nbformat

    nb = nbformat.read(os.path.join(ROOT, "notebooks", "profiling_walkthrough.ipynb"), as_version=4)
    os.environ["FUSED_MLP_NOTEBOOK_SMALL"] = "1"
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["FUSED_MLP_NOTEBOOK_SMALL"]
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # CPU runs list operators (the fused op by name), GPU runs list kernels (ours: fmlp_*)
    assert "| fused" in text and ("fused_mlp::infer" in text or "fmlp_" in text)
    assert (tmp_path / "profile_out" / "time_vs_batch.png").exists()
