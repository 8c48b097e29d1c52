#!/usr/bin/env python3
"""Checks, then reports, one `make bench` run (bench/run.sh drives it).

    compare_and_report.py --spec SPEC.json --workdir DIR --cadenza CDZ.json --torch TORCH.json
                          --results bench/results --commit SHA [--label cpu]

1. Correctness first: every output is compared with its reference (rel-L2 = ||y - r|| / ||r||,
   SNR = 20 log10(||r|| / ||y - r||)); NaN/Inf or a rel-L2 over the mode's tolerance (or, for
   fp16/bf16 audio, an SNR under the minimum) marks the result WRONG and no time is shown
   for it. cadenza is checked against ref.* (fp32 strict, Hermitian iSTFT; ops: float64);
   PyTorch's timed modes against tref.* (its own unpatched strict run; ops: float64).
2. bench/results/<gpu>/<date>-<commit>.json (everything, every repetition), .md (tables and
   the roofline report), .png (speedup per workload; skipped with a message without
   matplotlib), and a short table printed last.
"""
import argparse
import datetime
import json
import math
import os
import re

import numpy as np


def load(path):
    return np.fromfile(path, dtype="<f4").astype(np.float64) if os.path.exists(path) else None


def check(y, r, tol, min_snr):
    if y is None or r is None:
        return dict(ok=False, why="output missing")
    if y.size != r.size:
        return dict(ok=False, why=f"size {y.size} != reference {r.size}")
    if not np.all(np.isfinite(y)):
        return dict(ok=False, why=f"{int(np.sum(~np.isfinite(y)))} non-finite values")
    err = float(np.linalg.norm(y - r))
    ref = float(np.linalg.norm(r))
    rel = err / ref if ref > 0 else (0.0 if err == 0 else math.inf)
    snr = 20 * math.log10(ref / err) if err > 0 else math.inf
    ok = rel <= tol and (min_snr is None or snr >= min_snr)
    return dict(ok=ok, rel_l2=rel, snr_db=snr, tol=tol,
                why=None if ok else f"rel-L2 {rel:.2e} (tol {tol:g}), SNR {snr:.1f} dB")


def fmt_ms(r):
    if r is None:
        return "—"
    st = r.get("status")
    if st != "ok":
        return {"unsupported": "not supported yet", "skipped": "skipped"}.get(st, st or "—")
    if not r.get("check", {}).get("ok", False):
        return "WRONG"
    m = r["median_ms"]
    return f"{m / 1e3:.3f} s" if m >= 1000 else f"{m:.3f}"


def ok_ms(r):
    if r and r.get("status") == "ok" and r.get("check", {}).get("ok"):
        return r["median_ms"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cadenza", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--label", default=None, help="results folder name (default: the GPU's name)")
    a = ap.parse_args()
    sp = json.load(open(a.spec))
    cdz = json.load(open(a.cadenza)) if os.path.exists(a.cadenza) else {"workloads": {}}
    th = json.load(open(a.torch)) if os.path.exists(a.torch) else {"workloads": {}, "info": {}}
    wd = a.workdir
    tol, tol_ops, min_snr = sp["tol"], sp["tol_ops"], sp["min_snr_db"]

    # ---- 1. correctness
    rows = []
    for w in sp["workloads"]:
        name, is_op = w["name"], w["kind"] == "op"
        ref = load(os.path.join(wd, f"ref.{name}.f32"))
        tref = ref if is_op else load(os.path.join(wd, f"tref.{name}.f32"))
        for mode in list(sp["modes"]) + [m + "_compile" for m in sp["modes"]]:
            base = mode.replace("_compile", "")
            t_tol = (tol_ops if is_op else tol)[base]
            snr_min = min_snr if base in ("fp16", "bf16") and not is_op else None
            c = cdz.get("workloads", {}).get(name, {}).get(mode)
            t = th.get("workloads", {}).get(name, {}).get(mode)
            if c is None and t is None:
                continue
            if c and c.get("status") == "ok":
                c["check"] = check(load(os.path.join(wd, f"cdz.{name}.{mode}.f32")), ref, t_tol, snr_min)
            if t and t.get("status") == "ok":
                t["check"] = check(load(os.path.join(wd, f"torch.{name}.{mode}.f32")), tref, t_tol, snr_min)
            rows.append(dict(workload=name, kind=w["kind"], mode=mode, spec=w, cadenza=c, torch=t))

    # ---- roofline: each op's achieved rate against the ceilings of this run
    ceil = cdz.get("ceilings", {})
    bw = (ceil.get("copy") or {}).get("GBps")
    peak_tf = {"strict": (ceil.get("gemm_f32_strict") or {}).get("TFLOPs"),
               "tf32": (ceil.get("gemm_tf32") or {}).get("TFLOPs"),
               "fp16": (ceil.get("gemm_f16") or {}).get("TFLOPs"),
               "bf16": (ceil.get("gemm_bf16") or {}).get("TFLOPs")}
    roof = []
    for r in rows:
        if r["kind"] != "op":
            continue
        ms = ok_ms(r["cadenza"])
        if ms is None:
            continue
        w = r["spec"]
        s = ms * 1e-3
        tf = w["flops"] / s / 1e12
        gb = w["bytes"] / s / 1e9
        # GEMM-free ops run on CUDA cores in fp32: the strict ceiling is the honest one there
        pk = peak_tf.get(r["mode"]) if w["op"] in ("linear", "conv1d", "conv2d") else peak_tf["strict"]
        floor = max(w["flops"] / (pk * 1e12) if pk else 0, w["bytes"] / (bw * 1e9) if bw else 0)
        roof.append(dict(op=r["workload"], mode=r["mode"], ms=ms, tflops=tf, gbps=gb,
                         pct_flops=100 * tf / pk if pk else None, pct_bw=100 * gb / bw if bw else None,
                         floor_ms=floor * 1e3, of_floor=floor / s if floor else None))

    # ---- 2. outputs
    gpu = cdz.get("gpu") or th.get("info", {}).get("gpu") or "cpu"
    label = a.label or re.sub(r"[^A-Za-z0-9._-]+", "_", gpu).strip("_")
    date = datetime.date.today().isoformat()
    outdir = os.path.join(a.results, label)
    os.makedirs(outdir, exist_ok=True)
    stem = os.path.join(outdir, f"{date}-{a.commit}")
    doc = dict(date=date, commit=a.commit, gpu=gpu, torch=th.get("info", {}), spec=sp,
               ceilings=ceil, roofline=roof,
               results=[{k: v for k, v in r.items() if k != "spec"} for r in rows])
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1, default=float)

    lines = [f"# cadenza vs PyTorch — {gpu}, {date}, commit {a.commit}", "",
             f"PyTorch {th.get('info', {}).get('torch', '?')}; times are medians in ms (s where noted); "
             "speedup = PyTorch / cadenza in the same precision mode; a time is shown only for a "
             "checked output (rel-L2 against the reference within the mode's tolerance).", "",
             "| workload | mode | cadenza | PyTorch eager | PyTorch compile | speedup vs eager | "
             "vs compile | cadenza rel-L2 | peak MiB cadenza / torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    plot = []
    short = []
    for r in rows:
        if r["mode"].endswith("_compile"):
            continue
        comp = next((x["torch"] for x in rows if x["workload"] == r["workload"]
                     and x["mode"] == r["mode"] + "_compile"), None)
        c, t = ok_ms(r["cadenza"]), ok_ms(r["torch"])
        tc = ok_ms(comp)
        sp_e = f"{t / c:.2f}×" if c and t else "—"
        sp_c = f"{tc / c:.2f}×" if c and tc else "—"
        chk = (r["cadenza"] or {}).get("check", {})
        rel = f"{chk['rel_l2']:.1e}" if "rel_l2" in chk else (chk.get("why") or "—")
        pk = lambda x: f"{x['peak_bytes'] / 2**20:.0f}" if x and x.get("peak_bytes") else "—"  # noqa: E731
        lines.append(f"| {r['workload']} | {r['mode']} | {fmt_ms(r['cadenza'])} | {fmt_ms(r['torch'])} | "
                     f"{fmt_ms(comp)} | {sp_e} | {sp_c} | {rel} | {pk(r['cadenza'])} / {pk(r['torch'])} |")
        if c and t:
            plot.append((f"{r['workload']} {r['mode']}", t / c, tc / c if tc else None))
        short.append((r["workload"], r["mode"], fmt_ms(r["cadenza"]), fmt_ms(r["torch"]), fmt_ms(comp), sp_e))
    wrong = [(r["workload"], r["mode"], side, r[side]["check"]["why"]) for r in rows for side in ("cadenza", "torch")
             if r[side] and r[side].get("check") and not r[side]["check"]["ok"]]
    if wrong:
        lines += ["", "## Wrong results (no time shown)", ""]
        lines += [f"- {w} {m} ({s}): {why}" for w, m, s, why in wrong]
    errs = [(r["workload"], r["mode"], side, r[side].get("message", "")) for r in rows for side in ("cadenza", "torch")
            if r[side] and r[side].get("status") in ("error", "skipped")]
    if errs:
        lines += ["", "## Errors and skips", ""] + [f"- {w} {m} ({s}): {msg}" for w, m, s, msg in errs]
    lines += ["", "## Ceilings (measured in this run, by cadenza)", "", "| what | median ms | rate |", "|---|---|---|"]
    for k, v in ceil.items():
        rate = f"{v['GBps']:.4g} GB/s" if "GBps" in v else (f"{v['TFLOPs']:.4g} TFLOP/s" if "TFLOPs" in v else v.get("message", ""))
        lines.append(f"| {k} | {v.get('median_ms', float('nan')):.3f} | {rate} |")
    lines += ["", "## Roofline: hot kernels alone (cadenza, L2 flushed)", "",
              "| op | mode | ms | TFLOP/s | % of GEMM ceiling | GB/s | % of copy BW | floor ms | floor / time |",
              "|---|---|---|---|---|---|---|---|---|"]
    for x in roof:
        p = lambda v: f"{v:.1f}" if v is not None else "—"  # noqa: E731
        lines.append(f"| {x['op']} | {x['mode']} | {x['ms']:.4f} | {x['tflops']:.2f} | {p(x['pct_flops'])} | "
                     f"{x['gbps']:.0f} | {p(x['pct_bw'])} | {x['floor_ms']:.4f} | "
                     f"{(100 * x['of_floor']) if x['of_floor'] else 0:.0f}% |")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        if plot:
            fig, ax = plt.subplots(figsize=(10, 0.3 * len(plot) + 1.5))
            y = np.arange(len(plot))
            ax.barh(y - 0.2, [p[1] for p in plot], 0.4, label="vs PyTorch eager")
            ax.barh(y + 0.2, [p[2] or 0 for p in plot], 0.4, label="vs PyTorch compile")
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_yticks(y, [p[0] for p in plot], fontsize=7)
            ax.set_xlabel("speedup (PyTorch time / cadenza time)")
            ax.set_title(f"cadenza vs PyTorch, {gpu}, {a.commit}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(stem + ".png", dpi=120)
            print(f"report: {stem}.png")
        else:
            print("report: no checked pair of times, no plot")
    except ImportError:
        print("report: matplotlib is not installed: no PNG plot (the .json and .md are written)")

    print(f"report: {stem}.json, {stem}.md")
    if wrong:
        print(f"report: {len(wrong)} WRONG result(s), no time shown for them:")
        for w, m, s, why in wrong:
            print(f"  {w} {m} ({s}): {why}")
    print(f"\n{'workload':18s} {'mode':12s} {'cadenza':>17s} {'torch eager':>17s} {'torch compile':>17s} {'speedup':>8s}")
    for s in short:
        print(f"{s[0]:18s} {s[1]:12s} {s[2]:>17s} {s[3]:>17s} {s[4]:>17s} {s[5]:>8s}")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
