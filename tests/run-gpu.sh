#!/usr/bin/env bash
# GPU test run: finds the CUDA, cuDNN and NCCL libraries of this machine (system toolkit,
# or the copies that PyTorch's wheels carry), plus any libraries bundled next to the build
# (BUILD/deps, made by tests/gpu/bundle-deps.sh for machines without jansson/FFTW), checks
# that every dependency resolves, then runs every test program with --gpu.
# Usage: tests/run-gpu.sh BUILD
set -u
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)

# Directories from pip's nvidia-* packages, when a python3 with them is around.
pip_dirs=$(python3 - 2>/dev/null <<'PY'
import importlib, os
for m in ("nvidia.cudnn", "nvidia.nccl", "nvidia.cublas", "nvidia.cufft", "nvidia.cuda_runtime", "nvidia.cu13"):
    try:
        mod = importlib.import_module(m)
        for p in list(getattr(mod, "__path__", [])):
            for sub in ("lib", "lib64"):
                d = os.path.join(p, sub)
                if os.path.isdir(d): print(d)
    except Exception:
        pass
PY
)

# cuDNN: the newest libcudnn.so.9 we can find (we compile against the toolkit's headers;
# an older runtime can lack what they declare).
best_cudnn=""; best_ver=0
for d in $pip_dirs /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/local/cuda/targets/x86_64-linux/lib; do
    for f in "$d"/libcudnn.so.9.*; do
        [ -e "$f" ] || continue
        v=$(basename "$f" | sed 's/libcudnn.so.//' | awk -F. '{printf "%d%03d%03d", $1, $2, $3}')
        if [ "$v" -gt "$best_ver" ]; then best_ver=$v; best_cudnn=$d; fi
    done
    # pip's wheel ships an unversioned libcudnn.so.9: ask the package metadata for its version
    if [ -e "$d/libcudnn.so.9" ] && ! ls "$d"/libcudnn.so.9.* >/dev/null 2>&1; then
        pv=$(python3 -c "import importlib.metadata as m
for n in ('nvidia-cudnn-cu13', 'nvidia-cudnn-cu12'):
    try: print(m.version(n)); break
    except Exception: pass" 2>/dev/null)
        v=$(echo "${pv:-0.0.0}" | awk -F. '{printf "%d%03d%03d", $1, $2, $3}')
        if [ "$v" -gt "$best_ver" ]; then best_ver=$v; best_cudnn=$d; fi
    fi
done

libpath="$build/deps"
[ -n "$best_cudnn" ] && libpath="$libpath:$best_cudnn"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $pip_dirs; do
    [ -d "$d" ] && libpath="$libpath:$d"
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "# GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not available')"
missing=0
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    if ldd "$t" | grep -q "not found"; then
        echo "✗ $(basename "$t"): unresolved libraries:"; ldd "$t" | grep "not found"; missing=1
    fi
done
first=$(ls "$build"/tests/test_* 2>/dev/null | head -n1)
if [ -n "$first" ]; then
    for lib in libcudart libcublasLt libcudnn.so libcufft libnccl libjansson libfftw3f; do
        p=$(ldd "$first" | awk -v l="$lib" 'index($1, l) == 1 {print $3; exit}')
        [ -n "$p" ] && echo "# $lib -> $(readlink -f "$p")"
    done
fi
[ $missing -eq 0 ] || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
exec bash "$here/run.sh" --gpu "$build"
