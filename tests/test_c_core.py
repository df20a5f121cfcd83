"""Level 1 of the tests: the C core alone (no torch) against a double-precision reference,
built and run by tests/c/build_and_run.sh for every CPU ISA path (generic, AVX2,
AVX-512) and the portable build."""
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_core_against_double_reference():
    r = subprocess.run(["bash", os.path.join(HERE, "c", "build_and_run.sh")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = [line for line in r.stdout.splitlines() if line.endswith(" failed")]
    assert results and all(line.endswith(" 0 failed") for line in results), results
