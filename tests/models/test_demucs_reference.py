#!/usr/bin/python3
"""Tests of weights-tools/make_demucs_reference.py: the reference files it writes for the tiny
configuration and the tiny 4-member bag are well-formed and self-consistent.

    python3 tests/models/test_demucs_reference.py

Runs the script in a temporary folder (about 10 s of CPU), reads the files with a reader
written here, and checks the metadata (format, config = the converter's config of the same
checkpoint, checkpoint sha256, shift offsets), the documented entries and shapes, and
identities that must hold exactly or to rounding: output = time branch + iSTFT (bitwise), the
normalised inputs recomputed from the spectrogram and the mix, the track normalisation.
Ends with the line "N passed, M failed, K skipped".
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", ".."))
TOOLS = os.path.join(ROOT, "weights-tools")
PY = sys.executable  # after _reexec_with_debian_python: an interpreter that has torch


def _reexec_with_debian_python():
    """`python3` may be another interpreter (pyenv) without torch: use Debian's."""
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)


_reexec_with_debian_python()
results = {"passed": 0, "failed": 0, "skipped": 0}


def report(name, ok, why=""):
    key = "skipped" if ok is None else "passed" if ok else "failed"
    results[key] += 1
    print(f"  {'skip' if ok is None else 'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + why}")


def finish():
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    sys.exit(1 if results["failed"] else 0)


try:
    import numpy as np
except ImportError as e:
    print(f"  skip all: {e}")
    results["skipped"] += 1
    finish()
ok = subprocess.run([PY, "-c", "import torch, demucs.htdemucs"], capture_output=True).returncode == 0
if not ok:
    print(f"  skip all: torch/demucs not importable by {PY}; install with weights-tools/setup-python.sh")
    results["skipped"] += 1
    finish()


def read_safetensors(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
    return meta, out


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    work = tempfile.mkdtemp(prefix="cadenza-test-demucs-ref-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish()


def run(work):
    p = subprocess.run([PY, os.path.join(TOOLS, "make_demucs_reference.py"), "--configs", "tiny,tiny_bag",
                        "--out", work], capture_output=True, text=True)
    report("make_demucs_reference.py --configs tiny,tiny_bag: exit 0", p.returncode == 0, p.stderr[-2000:])
    if p.returncode:
        return
    print("    " + p.stdout.strip().replace("\n", "\n    "))
    meta, t = read_safetensors(os.path.join(work, "tiny.reference.safetensors"))
    ck = os.path.join(work, meta.get("checkpoint", "?"))

    sys.path.insert(0, TOOLS)
    conv = subprocess.run([PY, os.path.join(TOOLS, "cadenza-convert"), "demucs", ck, "-o",
                           os.path.join(work, "tiny.safetensors")], capture_output=True, text=True)
    cmeta = read_safetensors(os.path.join(work, "tiny.safetensors"))[0] if conv.returncode == 0 else {}

    def check(name, cond, why=""):
        report(name, bool(cond), why)

    check("metadata: format cadenza-reference, version 1, model htdemucs",
          (meta.get("format"), meta.get("version"), meta.get("model")) == ("cadenza-reference", "1", "htdemucs"), str(meta.get("format")))
    check("metadata: config equals the converter's config of the checkpoint",
          cmeta and meta.get("config") == cmeta.get("config"), conv.stderr)
    import hashlib
    check("metadata: checkpoint_sha256 is the checkpoint's",
          os.path.exists(ck) and hashlib.sha256(open(ck, "rb").read()).hexdigest() == meta.get("checkpoint_sha256"))
    docs = json.loads(meta.get("entries", "{}"))
    check("every entry is documented in metadata 'entries'",
          set(docs) == set(t) and all(docs.values()), str(sorted(k for k in t if not docs.get(k))))
    cfg = json.loads(meta["config"])["models"][0]
    L, S, C = cfg["segment_samples"], 4, 2
    d = cfg["derived"]
    depth = cfg["kwargs"]["depth"]
    need = (["forward.mix", "forward.spec", "forward.freq.in", "forward.time.in", "forward.freq.enc.0.emb",
             "forward.transformer.in.freq", "forward.transformer.in.time", "forward.transformer.out.freq",
             "forward.transformer.out.time", "forward.bottom.up.freq", "forward.bottom.down.time",
             "forward.spec_out", "forward.istft", "forward.time.out", "forward.output", "short.output",
             "apply.split.output", "apply.shift.output", "separate.output"]
            + [f"forward.{b}.{k}.{i}" for b in ("freq", "time") for k in ("enc", "dec") for i in range(depth)]
            + [f"forward.transformer.layer.{j}.{b}" for j in range(cfg["kwargs"]["t_layers"]) for b in ("freq", "time")])
    check("every stage is present", all(n in t for n in need), str([n for n in need if n not in t]))
    T = -(-L // d["hop_length"])
    shapes = {"forward.mix": (2, C, L), "forward.spec": (2, C, d["freq_bins"], T, 2),
              "forward.output": (2, S, C, L), "forward.spec_out": (2, S, C, d["freq_bins"], T, 2),
              "forward.transformer.in.freq": (2, T * d["freq_bins_per_layer"][depth], d["transformer_dim"])}
    bad = {k: t[k].shape for k, v in shapes.items() if t[k].shape != v}
    check("documented shapes (B=2)", not bad, str(bad))
    check("forward.output == forward.time.out + forward.istft (bitwise)",
          np.array_equal(t["forward.output"], t["forward.time.out"] + t["forward.istft"]))
    for k, v in t.items():
        if not np.isfinite(v).all():
            check(f"{k} finite", False)
    # normalised inputs, recomputed in float64
    z = t["forward.spec"].astype(np.float64)                       # (B,C,F,T,2)
    x = z.transpose(0, 1, 4, 2, 3).reshape(2, 2 * C, z.shape[2], z.shape[3])
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), ddof=1, keepdims=True)
    check("forward.freq.in = (x - mean) / (1e-5 + std), unbiased std (rel L2 < 1e-5)",
          rel(t["forward.freq.in"], (x - mean) / (1e-5 + std)) < 1e-5, str(rel(t["forward.freq.in"], (x - mean) / (1e-5 + std))))
    mix = t["forward.mix"].astype(np.float64)
    mt, st = mix.mean(axis=(1, 2), keepdims=True), mix.std(axis=(1, 2), ddof=1, keepdims=True)
    check("forward.time.in = (mix - meant) / (1e-5 + stdt) (rel L2 < 1e-6)",
          rel(t["forward.time.in"], (mix - mt) / (1e-5 + st)) < 1e-6)
    check("the two batch items have their own statistics",
          abs(float(t["forward.norm.std"].ravel()[0]) / float(t["forward.norm.std"].ravel()[1]) - 1) > 0.5)
    wav = t["separate.wav"].astype(np.float64)
    ref = wav.mean(0)
    check("separate.normalised = (wav - ref.mean()) / (ref.std() + 1e-8) (rel L2 < 1e-6)",
          rel(t["separate.normalised"], (wav - ref.mean()) / (ref.std(ddof=1) + 1e-8)) < 1e-6)
    check("apply: the track is 2.3 segments and the shifted run differs",
          t["apply.mix"].shape[-1] == int(2.3 * L) and rel(t["apply.shift.output"], t["apply.split.output"]) > 1e-4)
    check("apply_shift_offsets recorded", json.loads(meta.get("apply_shift_offsets", "[]")) == [1337])

    bmeta, b = read_safetensors(os.path.join(work, "tiny_bag.reference.safetensors"))
    bcfg = json.loads(bmeta["config"])
    check("bag reference: 4 members, one-hot weights, 4 shift offsets",
          bcfg["bag"] and len(bcfg["models"]) == 4 and len(json.loads(bmeta["apply_shift_offsets"])) == 4)
    check("bag reference: outputs (1,S,C,L_a) and finite",
          b["bag.apply.output"].shape == (1, S, C, int(2.3 * L)) and np.isfinite(b["bag.shift.output"]).all())

    # variants (--test-layout): the merged-branch path of the recorder and the converted weights
    vdir = os.path.join(work, "variants")
    p = subprocess.run([PY, os.path.join(TOOLS, "make_demucs_reference.py"), "--configs", "variants",
                        "--test-layout", "--out", vdir], capture_output=True, text=True)
    report("make_demucs_reference.py --configs variants --test-layout: exit 0", p.returncode == 0, p.stderr[-2000:])
    if p.returncode:
        return
    sys.path.insert(0, TOOLS)
    import make_demucs_reference as mdr
    for name in mdr.VARIANTS:
        wpath = os.path.join(vdir, f"htdemucs-{name}.safetensors")
        rpath = os.path.join(vdir, f"htdemucs-{name}.ref.safetensors")
        if not (os.path.exists(wpath) and os.path.exists(rpath)):
            report(f"variant {name}: both files written", False, f"{wpath} / {rpath}")
            continue
        vmeta, v = read_safetensors(rpath)
        wmeta = read_safetensors_meta(wpath)
        kw = json.loads(vmeta["config"])["models"][0]["kwargs"]
        d = json.loads(vmeta["config"])["models"][0]["derived"]
        nt, depth = d["time_layers"], kw["depth"]
        need = ([f"forward.freq.{k}.{i}" for k in ("enc", "dec") for i in range(depth)]
                + [f"forward.time.{k}.{i}" for k in ("enc", "dec") for i in range(nt)]
                + [f"forward.transformer.layer.{j}.{b}" for j in range(kw["t_layers"]) for b in ("freq", "time")]
                + ["forward.spec", "forward.freq.in", "forward.time.in", "forward.istft", "forward.time.out",
                   "forward.output"])
        extra = [k for k in v if k.startswith("forward.time.") and k.split(".")[-1].isdigit()
                 and int(k.split(".")[-1]) >= nt]
        S, C, L = len(kw["sources"]), kw["audio_channels"], v["forward.mix"].shape[-1]
        tout = v[f"forward.time.dec.{nt - 1}"].astype(np.float32).reshape(2, S, C, L)
        tout = tout * v["forward.norm.stdt"][:, None] + v["forward.norm.meant"][:, None]
        report(f"variant {name}: stages of {depth} layers ({nt} time layers), outputs consistent",
               all(n in v for n in need) and not extra and v["forward.output"].shape == (2, S, C, L)
               and np.array_equal(v["forward.output"], v["forward.time.out"] + v["forward.istft"])
               and np.array_equal(tout, v["forward.time.out"])
               and all(np.isfinite(a).all() for a in v.values()),
               f"missing {[n for n in need if n not in v]}, unexpected {extra}")
        report(f"variant {name}: the weights file carries the reference's config",
               wmeta.get("config") == vmeta.get("config") and wmeta.get("format") == "cadenza")


def read_safetensors_meta(path):
    blob = open(path, "rb").read(8)
    n = struct.unpack("<Q", blob)[0]
    with open(path, "rb") as f:
        f.seek(8)
        return json.loads(f.read(n)).get("__metadata__", {})


if __name__ == "__main__":
    main()
