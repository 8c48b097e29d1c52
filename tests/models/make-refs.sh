#!/usr/bin/env bash
# Makes the tiny HTDemucs checkpoint (converted) and its PyTorch reference under BUILD/ref,
# unless they are already there and newer than the scripts. Without PyTorch + demucs
# (weights-tools/setup-python.sh installs them) it says so, and the model tests count their
# checks as skipped.
# Usage: tests/models/make-refs.sh BUILD
set -u
build=${1:-build}; ref="$build/ref"
py=/usr/bin/python3; [ -x "$py" ] || py=python3
w="$ref/htdemucs-tiny.safetensors"; r="$ref/htdemucs-tiny.ref.safetensors"
newest=$(ls -t weights-tools/make_demucs_reference.py weights-tools/cadenza-convert weights-tools/cadenza_tools/*.py | head -n1)
if [ -f "$w" ] && [ -f "$r" ] && [ "$w" -nt "$newest" ] && [ "$r" -nt "$newest" ]; then exit 0; fi
if ! "$py" -c "import torch, demucs" 2>/dev/null; then
    echo "tests/models/make-refs.sh: PyTorch or demucs missing (run weights-tools/setup-python.sh): HTDemucs reference tests will be skipped"
    exit 0
fi
mkdir -p "$ref"
echo "making the tiny HTDemucs reference in $ref (seeded random weights, PyTorch on the CPU)"
"$py" weights-tools/make_demucs_reference.py --configs tiny --out "$ref" >"$ref/make.log" 2>&1 &&
  "$py" weights-tools/cadenza-convert demucs "$ref"/tiny-*.th -o "$w" >>"$ref/make.log" 2>&1 &&
  mv "$ref/tiny.reference.safetensors" "$r" || { echo "reference generation failed:"; tail -20 "$ref/make.log"; exit 1; }
