"""Executes a notebook headless with nbclient and saves it with its outputs — how the
committed notebooks get their outputs (from a GPU run, through tools/gpu_check.sh).

    python tools/run_notebook.py notebooks/profiling_walkthrough.ipynb OUT.ipynb
"""
import os
import sys

import nbclient
import nbformat


def main(src, dst):
    nb = nbformat.read(src, as_version=4)
    workdir = os.path.dirname(os.path.abspath(dst))
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
    nbformat.write(nb, dst)
    print(f"executed {src} -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
