#!/usr/bin/env bash
# Copies the pure-Python packages that make_demucs_reference.py needs besides torch/numpy/yaml/
# einops/tqdm (demucs and the modules it imports) into DIR, for a machine that has PyTorch but
# cannot install packages (the GPU machines): carry DIR and set PYTHONPATH=DIR there.
#   weights-tools/gpu-pydeps.sh .whl/cadenza-pydeps     (after weights-tools/setup-python.sh)
set -euo pipefail
dir=${1:?usage: gpu-pydeps.sh DIR}
mkdir -p "$dir"
/usr/bin/python3 - "$dir" <<'PY'
import importlib, os, shutil, sys
dest = sys.argv[1]
for name in ("demucs", "julius", "openunmix", "dora", "treetable", "submitit", "omegaconf", "antlr4", "retrying"):
    m = importlib.import_module(name)
    src = os.path.dirname(m.__file__) if m.__file__.endswith("__init__.py") else m.__file__
    out = os.path.join(dest, os.path.basename(src))
    if os.path.isdir(src):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(src, out)
print("gpu-pydeps: copied into", dest)
PY
