#!/usr/bin/env bash
# Copies the non-CUDA shared libraries the test programs need (jansson, FFTW, libsndfile and
# its codecs) into BUILD/deps, so a build made here runs on a GPU machine that lacks them.
# Usage: tests/gpu/bundle-deps.sh BUILD
set -eu
build=${1:-build}
mkdir -p "$build/deps"
for t in "$build"/tests/test_* "$build"/cadenza; do
    [ -x "$t" ] || continue
    ldd "$t" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
            libcuda*|libcudnn*|libcublas*|libcufft*|libnccl*|libnvrtc*|libnvJitLink*|libcudart*) ;;
            libcadenza*) ;;  # travels with the build itself
            *) cp -L -n "$lib" "$build/deps/" ;;
        esac
    done
done
du -sh "$build/deps"
