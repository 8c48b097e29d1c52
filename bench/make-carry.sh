#!/usr/bin/env bash
# Packs what `make bench` needs on a GPU machine that has PyTorch but no FFTW/jansson headers
# and no demucs: the bench binary (built here with ARCH=90), the non-CUDA shared libraries it
# links (as tests/gpu/bundle-deps.sh does), demucs' pure-Python code (weights-tools/gpu-pydeps.sh)
# and the commit. DEST must be git-ignored (e.g. build/bench-carry); carry it, then there:
#   PYDEPS=DEST/pydeps bash bench/run.sh --build DEST ...
# Usage: bench/make-carry.sh BUILD DEST      (BUILD: a CUDA build, `make CUDA=1 ARCH=90 BUILD=... BENCH_BUILD_ONLY=1 bench`)
set -euo pipefail
build=${1:?usage: make-carry.sh BUILD DEST}; dest=${2:?usage: make-carry.sh BUILD DEST}
root=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$build/bench/bench_cadenza" ] || { echo "make-carry: $build/bench/bench_cadenza missing" >&2; exit 1; }
rm -rf "$dest"; mkdir -p "$dest/bench" "$dest/deps"
cp "$build/bench/bench_cadenza" "$dest/bench/"
ldd "$dest/bench/bench_cadenza" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
        libcuda*|libcudnn*|libcublas*|libcufft*|libnccl*|libnvrtc*|libnvJitLink*|libcudart*) ;;
        *) cp -L -n "$lib" "$dest/deps/" ;;
    esac
done
git -C "$root" rev-parse --short HEAD >"$dest/bench/COMMIT" 2>/dev/null || echo unknown >"$dest/bench/COMMIT"
bash "$root/weights-tools/gpu-pydeps.sh" "$dest/pydeps" >/dev/null
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$dest" "$dest"/*
