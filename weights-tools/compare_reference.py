#!/usr/bin/python3
"""Compares two reference files entry by entry (e.g. PyTorch CPU vs PyTorch CUDA, or a
cadenza output written in the same layout vs the PyTorch reference).

    weights-tools/compare_reference.py REF.safetensors OTHER.safetensors [--tol 1e-5] [--only PREFIX]

For each entry present in both: relative L2 error ||o - r|| / ||r||, SNR in dB
(20 log10 ||r|| / ||o - r||), max |o - r| / rms(r). Non-finite values always fail. Exit 1 if
any entry's relative L2 exceeds --tol, shapes differ, or the weights/inputs differ.
Needs only numpy.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np


def read(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    dt = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=dt[info["dtype"]]).reshape(info["shape"])
    return meta, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ref")
    ap.add_argument("other")
    ap.add_argument("--tol", type=float, default=1e-5, help="max relative L2 (default 1e-5)")
    ap.add_argument("--only", default="", help="compare only entries starting with this")
    a = ap.parse_args()
    mr, r = read(a.ref)
    mo, o = read(a.other)
    bad = 0
    for key in ("weights_sha256", "config"):
        if key in mr and key in mo and mr[key] != mo[key]:
            print(f"metadata {key} differs: the two files were not made from the same weights/config")
            bad += 1
    print(f"ref:   {os.path.basename(a.ref)} ({mr.get('device', '?')}, strict={mr.get('strict', '?')}, "
          f"torch {mr.get('torch_version', '?')})")
    print(f"other: {os.path.basename(a.other)} ({mo.get('device', '?')}, strict={mo.get('strict', '?')}, "
          f"torch {mo.get('torch_version', '?')})")
    print(f"{'entry':42s} {'rel L2':>10s} {'SNR dB':>8s} {'max/rms':>10s}")
    worst = 0.0
    for name in r:
        if not name.startswith(a.only) or name not in o:
            continue
        x, y = r[name].astype(np.float64), o[name].astype(np.float64)
        if x.shape != y.shape:
            print(f"{name:42s} shape {x.shape} vs {y.shape}")
            bad += 1
            continue
        if not np.isfinite(y).all() or not np.isfinite(x).all():
            print(f"{name:42s} NON-FINITE values")
            bad += 1
            continue
        d = np.linalg.norm(y - x)
        nr = np.linalg.norm(x)
        rel = d / nr if nr > 0 else (0.0 if d == 0 else math.inf)
        snr = 20 * math.log10(nr / d) if d > 0 and nr > 0 else math.inf
        rms = nr / math.sqrt(max(x.size, 1))
        mx = float(np.abs(y - x).max()) / rms if rms > 0 and x.size else 0.0
        flag = ""
        if rel > a.tol:
            flag = "  > tol"
            bad += 1
        worst = max(worst, rel)
        print(f"{name:42s} {rel:10.3e} {snr:8.1f} {mx:10.3e}{flag}")
    missing = [k for k in r if k.startswith(a.only) and k not in o]
    if missing:
        print(f"entries only in the reference: {missing}")
    print(f"worst relative L2 {worst:.3e} (tol {a.tol:g}); {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
