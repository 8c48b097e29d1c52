#!/usr/bin/env bash
# Makes the HTDemucs test checkpoints (converted) and their PyTorch references under BUILD/ref,
# unless they are all there and newer than the scripts:
#   htdemucs-tiny.safetensors / htdemucs-tiny.ref.safetensors          (the published blocks, small)
#   htdemucs-<variant>.safetensors / htdemucs-<variant>.ref.safetensors for each variant of
#   weights-tools/make_demucs_reference.py (VARIANT_KW: the configurations the published
#   models do not take; forward reference only)
# One Python process makes them all (~10 s on one core). Without PyTorch + demucs
# (weights-tools/setup-python.sh installs them) it says so, and the model tests count their
# checks as skipped.
# Usage: tests/models/make-refs.sh BUILD
set -u
build=${1:-build}; ref="$build/ref"
py=/usr/bin/python3; [ -x "$py" ] || py=python3
variants="norms crossfirst merge mergetime six short"
outputs=()
for v in tiny $variants; do outputs+=("$ref/htdemucs-$v.safetensors" "$ref/htdemucs-$v.ref.safetensors"); done
newest=$(ls -t weights-tools/make_demucs_reference.py weights-tools/cadenza-convert weights-tools/cadenza_tools/*.py \
         tests/models/make-refs.sh | head -n1)
fresh=1
for f in "${outputs[@]}"; do
    if [ ! -f "$f" ] || [ ! "$f" -nt "$newest" ]; then fresh=0; break; fi
done
[ "$fresh" = 1 ] && exit 0
if ! "$py" -c "import torch, demucs" 2>/dev/null; then
    echo "tests/models/make-refs.sh: PyTorch or demucs missing (run weights-tools/setup-python.sh): HTDemucs reference tests will be skipped"
    exit 0
fi
mkdir -p "$ref"
echo "making the HTDemucs test references in $ref (tiny + variants: $variants; seeded random weights, PyTorch on the CPU)"
"$py" weights-tools/make_demucs_reference.py --configs "tiny,variants" --test-layout --out "$ref" >"$ref/make.log" 2>&1 ||
  { echo "reference generation failed:"; tail -20 "$ref/make.log"; exit 1; }
for f in "${outputs[@]}"; do
    [ -f "$f" ] || { echo "reference generation did not write $f:"; tail -20 "$ref/make.log"; exit 1; }
done
