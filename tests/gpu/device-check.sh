#!/usr/bin/env bash
# One call on a GPU machine: the GPU test suite, then the demo with the full-size htdemucs
# configuration (timing, real-time factor), then 10- and 60-minute separations reporting peak
# host and device memory. Usage: tests/gpu/device-check.sh BUILD [OUTDIR]
set -u
build=${1:-build}; out=${2:-/tmp/cadenza-device}
mkdir -p "$out"
bash "$(dirname "$0")/../run-gpu.sh" "$build" 2>&1 | tee "$out/test-gpu.log" | grep -vE '^  ok ' | tail -40
export LD_LIBRARY_PATH="$build/deps:$(python3 -c 'import nvidia.cudnn,os;print(list(nvidia.cudnn.__path__)[0]+"/lib")' 2>/dev/null):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for secs in 10 600 3600; do
    echo "=== demo --seconds $secs (htdemucs, cuda:0)"
    /usr/bin/time -v "$build/cadenza" demo --device cuda:0 --seconds "$secs" --out "$out/demo$secs" \
        >"$out/demo$secs.log" 2>"$out/demo$secs.time"
    echo "exit $?"; grep -vE '^\s*$' "$out/demo$secs.log" | tail -12
    grep -E "Maximum resident|Elapsed" "$out/demo$secs.time"
    rm -rf "$out/demo$secs"
done
