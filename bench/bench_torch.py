#!/usr/bin/env python3
"""The PyTorch side of `make bench` (bench/run.sh drives it).

    bench_torch.py --spec SPEC.json --workdir DIR --ckpt CKPT.th --device cuda|cpu --out OUT.json
                   [--compile-budget S] [--compile-only --compile-mode MODE]

Loads the checkpoint as upstream does (demucs.states.load_model, via
weights-tools/make_demucs_reference.py), reads the same inputs as bench_cadenza
(DIR/<workload>.in<i>.f32) and writes, per workload:
  ref.<wl>.f32           the reference the cadenza outputs are checked against: fp32 strict
                         (no TF32) with Im(DC) zeroed before the iSTFT, as cadenza's C2R (and
                         torch's CPU FFT) do -- cuFFT's fp32 C2R does not ignore it (anchors) --;
                         ops: float64 on the same device
  tref.<wl>.f32          upstream torch fp32 strict (unpatched): what the torch rows are checked against
  torch.<wl>.<mode>.f32  each timed torch mode's output (item 0)
Timing follows /work/shared/research/anchors-gpu.md: inference_mode, warm-up, CUDA events
around each call, median of N (all runs kept), wall clock for whole tracks, peak =
max_memory_allocated after reset_peak_memory_stats (weights included), L2 flushed between
op repetitions. torch.compile runs in a child process killed at --compile-budget seconds.
"""
import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights-tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def set_mode(mode):
    """Precision flags; returns the autocast context of the mode."""
    cuda = torch.backends.cuda
    if mode == "strict":
        cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif mode == "tf32":
        cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:  # autocast over fp32 weights, torch's default flags otherwise
        cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
    return mode


def autocast(mode, device):
    if mode in ("fp16", "bf16"):
        dt = torch.float16 if mode == "fp16" else torch.bfloat16
        if device == "cpu" and mode == "fp16":
            return None  # CPU autocast has no fp16 in older torch
        return torch.autocast(device_type=device, dtype=dt)
    return contextlib.nullcontext()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, device, warmup, reps, flush=None, wall=False):
    for _ in range(warmup):
        fn()
    sync(device)
    ms = []
    for _ in range(reps):
        if flush is not None:
            flush.zero_()
        sync(device)
        if device == "cuda" and not wall:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ms.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            sync(device)
            ms.append(1e3 * (time.perf_counter() - t0))
    return ms


def stats(ms, peak):
    return dict(status="ok", ms=ms, median_ms=float(np.median(ms)), min_ms=min(ms), max_ms=max(ms),
                peak_bytes=int(peak))


def reset_peak(device):
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak(device):
    return torch.cuda.max_memory_allocated() if device == "cuda" else 0


def save(workdir, name, t):
    t.detach().float().cpu().contiguous().numpy().astype("<f4").tofile(os.path.join(workdir, name))


def load_in(workdir, w, i, shape):
    a = np.fromfile(os.path.join(workdir, f"{w['name']}.in{i}.f32"), dtype="<f4")
    return torch.from_numpy(a.reshape(shape))


# ----------------------------------------------------------------------------- model
def load_model(ckpt, device):
    import make_demucs_reference as mdr
    model = mdr.load_for_reference(ckpt, device)
    patched = copy.deepcopy(model)
    mdr.hermitian_istft(patched)
    return mdr, model, patched


def apply_track(mdr, model, mix, w):
    from demucs.apply import apply_model
    with mdr.fixed_shifts([w["shift_offset"]] * w["shifts"]):
        return apply_model(model, mix, shifts=w["shifts"], split=True, overlap=w["overlap"])


def model_inputs(sp, w, device):
    C = sp["channels"]
    shape = (w["batch"], C, w["samples"]) if w["kind"] == "segment" else (1, C, w["samples"])
    return load_in(args.workdir, w, 0, shape).to(device)


def run_model_workloads(sp, mdr, model, patched, device, res, modes):
    for w in sp["workloads"]:
        if w["kind"] not in ("segment", "track"):
            continue
        name = w["name"]
        mix = model_inputs(sp, w, device)
        first = mix[:1]
        out = res.setdefault(name, {})

        def call(m, x, w=w):
            return m(x) if w["kind"] == "segment" else apply_track(mdr, m, x, w)
        with torch.inference_mode():
            set_mode("strict")
            if not os.path.exists(os.path.join(args.workdir, f"ref.{name}.f32")):
                save(args.workdir, f"ref.{name}.f32", call(patched, first)[0])
                save(args.workdir, f"tref.{name}.f32", call(model, first)[0])
            for mode in modes:
                set_mode(mode)
                ac = autocast(mode, device)
                if ac is None:
                    out[mode] = dict(status="unsupported", message="fp16 autocast not available on this device")
                    continue
                try:
                    reset_peak(device)
                    with ac:
                        y = call(model, mix)
                        ms = time_calls(lambda: call(model, mix), device, 1, w["reps"],
                                        wall=w["kind"] == "track")
                    save(args.workdir, f"torch.{name}.{mode}.f32", y[0])
                    out[mode] = stats(ms, peak(device))
                except Exception as e:  # report, keep going
                    out[mode] = dict(status="error", message=f"{type(e).__name__}: {e}"[:400])
                print(f"bench_torch: {name:18s} {mode:7s} {out[mode]['status']} "
                      f"{out[mode].get('median_ms', float('nan')):.3f} ms", flush=True)
            del mix, first


# ----------------------------------------------------------------------------- ops
def op_call(w, ins):
    p, op = w["params"], w["op"]
    if op == "linear":
        return lambda: F.linear(ins[0], ins[1], ins[2])
    if op == "attention":
        if not hasattr(F, "scaled_dot_product_attention"):  # torch < 2.0 (the CPU smoke test)
            return lambda: attention_f64(ins[0], ins[1], ins[2], p["scale"])
        return lambda: F.scaled_dot_product_attention(ins[0], ins[1], ins[2], scale=p["scale"])
    if op == "groupnorm_gelu":
        return lambda: F.gelu(F.group_norm(ins[0], p["groups"], ins[1], ins[2], 1e-5))
    if op == "conv1d":
        return lambda: F.conv1d(ins[0], ins[1], ins[2], stride=p["stride"], padding=p["pad"],
                                dilation=p["dilation"])
    if op == "conv2d":
        return lambda: F.conv2d(ins[0], ins[1], ins[2], stride=tuple(p["stride"]), padding=tuple(p["pad"]))
    n, h = p["n_fft"], p["hop"]
    win = torch.hann_window(n, device=ins[0].device, dtype=ins[0].dtype)
    if op == "stft":
        return lambda: torch.view_as_real(torch.stft(ins[0], n, h, window=win, center=True, pad_mode="reflect",
                                                     normalized=True, return_complex=True))
    if op == "istft":
        z = torch.view_as_complex(ins[0].contiguous())
        return lambda: torch.istft(z, n, h, window=win, center=True, normalized=True, length=p["length"])
    raise ValueError(op)


def attention_f64(q, k, v, scale):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    return torch.matmul(torch.softmax(s, -1), v)


def run_ops(sp, device, res, modes):
    flush = None
    if device == "cuda":
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
        flush = torch.empty(2 * l2 // 4, dtype=torch.float32, device=device)
    for w in sp["workloads"]:
        if w["kind"] != "op":
            continue
        name = w["name"]
        ins = [load_in(args.workdir, w, i, s).to(device) for i, s in enumerate(w["inputs"])]
        out = res.setdefault(name, {})
        with torch.inference_mode():
            # reference in float64 on the same device
            ref_dev = device if w["op"] not in ("stft", "istft") or device == "cuda" else "cpu"
            d64 = [x.to(ref_dev, torch.float64) for x in ins]
            if w["op"] == "attention":
                ref = attention_f64(*d64, w["params"]["scale"])
            else:
                ref = op_call(w, d64)()
            save(args.workdir, f"ref.{name}.f32", ref)
            del d64, ref
            for mode in modes:
                set_mode(mode)
                ac = autocast(mode, device)
                if ac is None:
                    out[mode] = dict(status="unsupported", message="fp16 autocast not available on this device")
                    continue
                try:
                    fn = op_call(w, ins)
                    reset_peak(device)
                    with ac:
                        y = fn()
                        ms = time_calls(fn, device, 3, w["reps"], flush=flush)
                    save(args.workdir, f"torch.{name}.{mode}.f32", y)
                    out[mode] = stats(ms, peak(device))
                except Exception as e:
                    out[mode] = dict(status="error", message=f"{type(e).__name__}: {e}"[:400])
        print(f"bench_torch: op {name:18s} done", flush=True)


# ----------------------------------------------------------------------------- compile
def compile_child(sp, device, mode, budget_end):
    """In a child process: torch.compile(model, dynamic=False) in `mode`, segment_b1 then the
    track while time remains; results to --out (the parent merges them)."""
    import torch._dynamo  # noqa: F401
    mdr, model, _ = load_model(args.ckpt, device)
    set_mode(mode)
    cm = torch.compile(model, dynamic=False)
    res = {}
    for w in sp["workloads"]:
        if w["kind"] == "segment" and w["batch"] != 1:
            continue
        if w["kind"] not in ("segment", "track"):
            continue
        if time.time() > budget_end - 10:
            res[w["name"]] = {mode: dict(status="skipped", message="compile budget spent")}
            continue
        mix = model_inputs(sp, w, device)
        with torch.inference_mode():
            t0 = time.perf_counter()
            y = cm(mix) if w["kind"] == "segment" else apply_track(mdr, cm, mix, w)
            sync(device)
            first = time.perf_counter() - t0
            reset_peak(device)
            ms = time_calls(lambda: cm(mix) if w["kind"] == "segment" else apply_track(mdr, cm, mix, w),
                            device, 1, w["reps"], wall=w["kind"] == "track")
        save(args.workdir, f"torch.{w['name']}.{mode}_compile.f32", y[0])
        r = stats(ms, peak(device))
        r["first_call_s"] = first
        res[w["name"]] = {f"{mode}_compile": r}
        with open(args.out, "w") as f:  # partial results survive a kill
            json.dump(res, f)
        print(f"bench_torch: compiled {w['name']} {mode}: first call {first:.1f} s, "
              f"median {r['median_ms']:.3f} ms", flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f)


def run_compile(sp, device, res, budget):
    mode = sp.get("compile_mode", "tf32")
    key = f"{mode}_compile"
    if budget <= 0 or device != "cuda":
        why = "compile budget 0" if budget <= 0 else "torch.compile timed on CUDA only"
        res.setdefault("segment_b1", {})[key] = dict(status="skipped", message=why)
        return
    cout = args.out + ".compile.json"
    if os.path.exists(cout):
        os.unlink(cout)
    cmd = [sys.executable, os.path.realpath(__file__), "--spec", args.spec, "--workdir", args.workdir,
           "--ckpt", args.ckpt, "--device", device, "--out", cout, "--compile-only",
           "--compile-mode", mode, "--compile-budget", str(budget)]
    why = None
    try:
        subprocess.run(cmd, timeout=budget, check=True)
    except subprocess.TimeoutExpired:
        why = f"did not finish compiling/timing within the {budget:.0f} s budget"
    except subprocess.CalledProcessError as e:
        why = f"compile child failed (exit {e.returncode})"
    got = json.load(open(cout)) if os.path.exists(cout) else {}
    for wl, r in got.items():
        res.setdefault(wl, {}).update(r)
    for w in sp["workloads"]:
        if w["kind"] in ("segment", "track") and (w["kind"] == "track" or w["batch"] == 1):
            if key not in res.get(w["name"], {}):
                res.setdefault(w["name"], {})[key] = dict(status="skipped", message=why or "not reached")


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--compile-budget", type=float, default=0.0)
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--compile-mode", default="tf32")
    ap.add_argument("--only", default="segment,track,op,compile")
    args = ap.parse_args()
    sp = json.load(open(args.spec))
    torch.manual_seed(0)
    if args.compile_only:
        compile_child(sp, args.device, args.compile_mode, time.time() + args.compile_budget)
        return
    if args.device == "cpu":
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    res = {}
    info = dict(torch=torch.__version__, device=args.device)
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    modes = sp["modes"]
    if "segment" in args.only or "track" in args.only:
        mdr, model, patched = load_model(args.ckpt, args.device)
        run_model_workloads(sp, mdr, model, patched, args.device, res, modes)
        del model, patched
    if "op" in args.only:
        run_ops(sp, args.device, res, modes)
    if "compile" in args.only:
        run_compile(sp, args.device, res, args.compile_budget)
    with open(args.out, "w") as f:
        json.dump(dict(info=info, workloads=res), f, indent=1)


args = None
if __name__ == "__main__":
    main()
