#!/usr/bin/env bash
# The one command of `make bench` (docs/performance.md): cadenza and PyTorch on the same GPU,
# same weights, same inputs, outputs checked before any time is shown.
#
#   bench/run.sh [--build BUILD] [--cpu] [--small] [--work DIR] [--results DIR]
#                [--compile-budget S] [--only segment,track,op,ceil,compile] [--model htdemucs]
#
#   --cpu --small   smoke test without a GPU: tiny config, short track, small ops
#   --build         the build holding bench/bench_cadenza (made with `make bench` if missing;
#                   on a GPU machine without FFTW/jansson, carry it: docs/performance.md)
#   --compile-budget  seconds for torch.compile (child process killed at the limit; 0 = skip)
#   PYDEPS=DIR      demucs' pure-Python code (weights-tools/gpu-pydeps.sh DIR) added to PYTHONPATH
#   BENCH_COMMIT    the commit recorded in the results' names (default: git, or BUILD/bench/COMMIT)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=build; cpu=0; small=0; work=""; results="$root/bench/results"; budget=${COMPILE_BUDGET:-240}
only="segment,track,op,ceil,compile"; model=htdemucs
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --cpu) cpu=1; shift ;;
        --small) small=1; shift ;;
        --work) work=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        --compile-budget) budget=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac
work=${work:-$build/bench/work}
mkdir -p "$work"
t_start=$(date +%s)
say() { echo "[bench $(( $(date +%s) - t_start ))s] $*"; }

# ---- python with torch (Debian's on the CI image; the GPU image's python3 has it)
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then PY=/usr/bin/python3; fi
"$PY" -c "import torch, numpy" || { echo "bench/run.sh: no python with torch and numpy" >&2; exit 1; }
[ -n "${PYDEPS:-}" ] && export PYTHONPATH="$(cd "$PYDEPS" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$here:$root/weights-tools${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# ---- build (only where the toolchain is: a GPU machine gets the build carried)
bin="$build/bench/bench_cadenza"
if [ ! -x "$bin" ]; then
    say "building $bin"
    make -C "$root" BUILD="$build" BENCH_BUILD_ONLY=1 $([ $cpu = 1 ] && echo CUDA=0) bench >/dev/null || exit 1
fi
commit=${BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || cat "$build/bench/COMMIT" 2>/dev/null || echo unknown)}
[ "$commit" = unknown ] || echo "$commit" >"$build/bench/COMMIT" 2>/dev/null || true

# ---- libraries: carried ones (BUILD/deps, tests/gpu/bundle-deps.sh) and pip's CUDA wheels
pip_dirs=$("$PY" - 2>/dev/null <<'PY'
import importlib, os
for m in ("nvidia.cudnn", "nvidia.nccl", "nvidia.cublas", "nvidia.cufft", "nvidia.cuda_runtime", "nvidia.cu13"):
    try:
        for p in importlib.import_module(m).__path__:
            for sub in ("lib", "lib64"):
                if os.path.isdir(os.path.join(p, sub)): print(os.path.join(p, sub))
    except Exception:
        pass
PY
)
libpath="$build/deps"
for d in $pip_dirs /usr/local/cuda/lib64; do [ -d "$d" ] && libpath="$libpath:$d"; done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$bin" | grep -q "not found"; then
    echo "bench/run.sh: $bin has unresolved libraries:" >&2; ldd "$bin" | grep "not found" >&2; exit 1
fi

# ---- spec and inputs (the model's workload registry: bench/workloads/<model>.py)
device=cuda; [ $cpu = 1 ] && device=cpu
"$PY" - "$model" "$small" "$work" <<'PY' || exit 1
import importlib, json, sys
model, small, work = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
m = importlib.import_module(f"workloads.{model}")
sp = m.spec(small)
json.dump(sp, open(f"{work}/spec.json", "w"), indent=1)
m.write_inputs(sp, work)
PY
cfg=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['config'])" "$work/spec.json")
say "spec and inputs in $work (config $cfg, device $device)"

# ---- weights: the seeded upstream-format checkpoint (.th) for PyTorch, converted for cadenza
ckpt=$(ls "$work"/ckpt/"$cfg"-*.th 2>/dev/null | head -n1)
if [ -z "$ckpt" ]; then
    "$PY" "$root/weights-tools/make_demucs_reference.py" --checkpoints-only --configs "$cfg" \
        --out "$work/ckpt" >/dev/null || exit 1
    ckpt=$(ls "$work"/ckpt/"$cfg"-*.th | head -n1)
fi
weights="$work/$cfg.safetensors"
[ -s "$weights" ] || "$PY" "$root/weights-tools/cadenza-convert" demucs "$ckpt" -o "$weights" >/dev/null || exit 1
say "weights: $(basename "$ckpt") -> $(basename "$weights")"
rm -f "$work"/cdz.*.f32 "$work"/torch.*.f32 "$work"/ref.*.f32 "$work"/tref.*.f32

# ---- cadenza, then PyTorch (separate processes: each has the device to itself)
cdz_only=$(echo "$only" | tr ',' '\n' | grep -v compile | paste -sd, -)
say "cadenza ($cdz_only)"
BENCH_ONLY=$cdz_only "$bin" "$work/spec.json" "$work" "$weights" "$device" "$work/cadenza.json" \
    || say "cadenza reported failures (see above); continuing to the comparison"
say "pytorch ($only; compile budget ${budget}s)"
"$PY" "$here/bench_torch.py" --spec "$work/spec.json" --workdir "$work" --ckpt "$ckpt" \
    --device "$device" --out "$work/torch.json" --compile-budget "$budget" --only "$only" \
    || say "bench_torch failed; continuing to the comparison"
say "compare and report"
label=""; [ $cpu = 1 ] && label="cpu"
"$PY" "$here/compare_and_report.py" --spec "$work/spec.json" --workdir "$work" \
    --cadenza "$work/cadenza.json" --torch "$work/torch.json" --results "$results" \
    --commit "$commit" ${label:+--label "$label"}
rc=$?
say "done (exit $rc)"
exit $rc
