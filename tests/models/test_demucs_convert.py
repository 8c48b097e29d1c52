#!/usr/bin/python3
"""Tests of weights-tools/cadenza-convert on demucs checkpoints in the real upstream format.

    python3 tests/models/test_demucs_convert.py [-v]

Builds seeded random-weight HTDemucs checkpoints with the demucs package's own classes and
save format (weights-tools/make_demucs_reference.py: a tiny fp32 .th and a 4-member bag of fp16
.th files with a yaml), converts them, reads the safetensors back with a small reader written
here (independent of the converter's writer), and checks that every tensor equals the torch
state exactly (fp16 -> f32 included), that the config round-trips, and that hostile inputs
are refused with exit status 1 and a message naming the problem.
Ends with the line "N passed, M failed, K skipped".
"""
import fractions
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", ".."))
TOOLS = os.path.join(ROOT, "weights-tools")
CONVERT = os.path.join(TOOLS, "cadenza-convert")
PY = sys.executable  # after _reexec_with_debian_python: an interpreter that has torch


def _reexec_with_debian_python():
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)


_reexec_with_debian_python()

VERBOSE = "-v" in sys.argv
results = {"passed": 0, "failed": 0, "skipped": 0}


def report(name, ok, why=""):
    if ok is None:
        results["skipped"] += 1
        print(f"  skip {name}: {why}")
    elif ok:
        results["passed"] += 1
        print(f"  ok   {name}")
    else:
        results["failed"] += 1
        print(f"  FAIL {name}: {why}")


def finish():
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    sys.exit(1 if results["failed"] else 0)


try:
    import numpy as np
    import torch
    sys.path.insert(0, TOOLS)
    import demucs.htdemucs  # noqa: F401
    import make_demucs_reference as mdr
except Exception as e:  # the Python side is not installed: say so, count the whole file as skipped
    print(f"  skip all: the Python tools cannot run here ({type(e).__name__}: {e}); "
          f"install with weights-tools/setup-python.sh")
    results["skipped"] += 1
    finish()

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- an independent reader

ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "F64": ("<f8", 8), "BF16": ("<u2", 2)}


def read_safetensors(path):
    """Returns (header length, metadata, [(name, dtype, array)] in data-offset order)."""
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out, pos = [], 0
    for name, info in items:
        b, e = info["data_offsets"]
        assert b == pos, f"{name}: begins at {b}, previous ended at {pos}"
        npdt, size = ST_DTYPES[info["dtype"]]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        assert e - b == count * size, f"{name}: {e - b} bytes for {info['shape']} {info['dtype']}"
        out.append((name, info["dtype"], np.frombuffer(data[b:e], dtype=npdt).reshape(info["shape"])))
        pos = e
    assert pos == len(data), f"data section {len(data)} bytes, tensors end at {pos}"
    return n, meta, out


# ----------------------------------------------------------------------------- helpers

_cli = None


def convert(*args, subprocess_run=False):
    """Runs `cadenza-convert demucs ARGS`: (exit status, stdout, stderr). In this process
    (the CLI's main(), much faster) unless subprocess_run."""
    global _cli
    if subprocess_run:
        p = subprocess.run([PY, CONVERT, "demucs", *args], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr
    if _cli is None:
        import importlib.machinery
        import importlib.util
        loader = importlib.machinery.SourceFileLoader("cadenza_convert_cli", CONVERT)
        spec = importlib.util.spec_from_loader("cadenza_convert_cli", loader)
        _cli = importlib.util.module_from_spec(spec)
        loader.exec_module(_cli)
    import contextlib
    import io
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        try:
            rc = _cli.main(["demucs", *args])
        except SystemExit as e:
            rc = e.code
        except Exception:
            se.write(traceback.format_exc())
            rc = 99
    return rc, so.getvalue(), se.getvalue()


def tload(path):
    import inspect
    # our own fixtures: trusted (torch >= 2.6 would refuse the pickled demucs class by default)
    kw = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    return torch.load(path, map_location="cpu", **kw)


def tsave(pkg, path):
    torch.save(pkg, path)
    return path


def expect_refusal(name, args, needles, out=None, subprocess_run=False):
    """Exit status 1, 'cadenza-convert: error:' and every needle in stderr, no output file."""
    rc, so, se = convert(*args, subprocess_run=subprocess_run)
    problems = []
    if rc != 1:
        problems.append(f"exit status {rc}, expected 1")
    if "cadenza-convert: error:" not in se:
        problems.append("no 'cadenza-convert: error:' line")
    for n in needles:
        if n.lower() not in se.lower():
            problems.append(f"message lacks {n!r}")
    if "Traceback" in se:
        problems.append("a Python traceback instead of a message")
    if out and os.path.exists(out):
        problems.append("an output file was written")
    if VERBOSE or problems:
        print(f"       stderr: {se.strip()[:600]}")
    report(name, not problems, "; ".join(problems))


def check(name, fn):
    try:
        why = fn()
        report(name, not why, why or "")
    except Exception as e:
        report(name, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")


def frac_json(v):
    if isinstance(v, fractions.Fraction):
        return [v.numerator, v.denominator]
    if isinstance(v, tuple):
        return [frac_json(x) for x in v]
    if isinstance(v, list):
        return [frac_json(x) for x in v]
    return v


# ----------------------------------------------------------------------------- the tests

def main():
    work = tempfile.mkdtemp(prefix="cadenza-test-demucs-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish()


def run(work):
    print("building checkpoints (seeded random weights, upstream format) ...", flush=True)
    tiny = mdr.make_checkpoints("tiny", work, 1234)          # fp32 state (half=False)
    bag_yaml = mdr.make_checkpoints("tiny_bag", work, 1234)  # 4 fp16 members + yaml
    out = os.path.join(work, "tiny.safetensors")
    from demucs.htdemucs import HTDemucs
    import inspect
    params = [p for p in inspect.signature(HTDemucs.__init__).parameters if p != "self"]

    # --- a single .th ------------------------------------------------------------------
    rc, so, se = convert(tiny, "-o", out, subprocess_run=True)
    report("convert tiny .th: exit 0 (the executable, in a subprocess)", rc == 0, se.strip())
    if rc != 0:
        return
    pkg = tload(tiny)
    state = pkg["state"]

    def t_single_tensors():
        n, meta, items = read_safetensors(out)
        if n % 8:
            return f"header length {n} is not a multiple of 8"
        names = [i[0] for i in items]
        if names != list(state.keys()):
            return f"tensor names/order differ from the state_dict: {names[:3]} vs {list(state)[:3]}"
        for name, dt, arr in items:
            ref = state[name]
            if dt != "F32" or list(arr.shape) != list(ref.shape):
                return f"{name}: {dt} {arr.shape}, expected F32 {tuple(ref.shape)}"
            if not np.array_equal(arr, ref.float().numpy()):
                return f"{name}: values differ"
        return None
    check("tiny .th: every tensor equals the torch state (names, order, shapes, values)", t_single_tensors)

    def t_single_config():
        _, meta, _ = read_safetensors(out)
        if meta.get("format") != "cadenza" or meta.get("model") != "htdemucs":
            return f"format/model metadata: {meta.get('format')!r} {meta.get('model')!r}"
        cfg = json.loads(meta["config"])
        if cfg["bag"] or len(cfg["models"]) != 1 or cfg["models"][0]["tensor_prefix"] != "":
            return "a single .th must give bag=false, one model, prefix ''"
        kw = cfg["models"][0]["kwargs"]
        missing = [p for p in params if p not in kw]
        if missing:
            return f"config lacks HTDemucs arguments {missing}"
        for k, v in pkg["kwargs"].items():
            if kw[k] != frac_json(v):
                return f"kwargs[{k}]: {kw[k]!r} in the config, {v!r} in the checkpoint"
        seg = pkg["kwargs"]["segment"]
        m = cfg["models"][0]
        if m["segment"] != [seg.numerator, seg.denominator] or abs(m["segment_seconds"] - float(seg)) > 1e-12:
            return f"segment {m['segment']} / {m['segment_seconds']}"
        if m["segment_samples"] != int(seg * 44100):
            return f"segment_samples {m['segment_samples']}"
        if cfg["weights"] != [[1.0] * 4]:
            return f"weights {cfg['weights']}"
        # the model rebuilt from the config's kwargs has exactly the file's tensors
        kw2 = dict(kw)
        kw2["segment"] = fractions.Fraction(*kw2["segment"])
        model = HTDemucs(**kw2)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} != {k: tuple(v.shape) for k, v in state.items()}:
            return "HTDemucs(**config kwargs) does not have the file's tensors"
        files = json.loads(meta["source_files"])
        if files[0]["sha256"] != mdr.demucs_ckpt.sha256_file(tiny) or files[0]["name"] != os.path.basename(tiny):
            return f"source_files provenance {files}"
        for key in ("converter", "demucs_version", "torch_version"):
            if not meta.get(key):
                return f"metadata lacks {key}"
        return None
    check("tiny .th: the config round-trips (every kwarg, segment, provenance)", t_single_config)

    # --- a bag of fp16 members -----------------------------------------------------------
    bag_out = os.path.join(work, "bag.safetensors")
    rc, so, se = convert(bag_yaml, "-o", bag_out)
    report("convert bag .yaml: exit 0", rc == 0, se.strip())
    members = []
    for sig in ("tinybag0", "tinybag1", "tinybag2", "tinybag3"):
        f = [x for x in os.listdir(work) if x.startswith(sig + "-") and x.endswith(".th")]
        members.append(os.path.join(work, f[0]))
    mstates = [tload(p)["state"] for p in members]

    def t_bag_tensors():
        _, meta, items = read_safetensors(bag_out)
        want = [f"models.{i}.{k}" for i, s in enumerate(mstates) for k in s]
        if [i[0] for i in items] != want:
            return "names/order differ from models.<i>.<state key>"
        lookup = {f"models.{i}.{k}": v for i, s in enumerate(mstates) for k, v in s.items()}
        for name, dt, arr in items:
            ref = lookup[name]
            if ref.dtype != torch.float16:
                return f"{name}: the fixture should be fp16, is {ref.dtype}"
            if dt != "F32" or not np.array_equal(arr, ref.float().numpy()):
                return f"{name}: not the exact f32 value of the fp16 state"
            if not np.array_equal(arr.astype(np.float16).view(np.uint16), ref.numpy().view(np.uint16)):
                return f"{name}: f32 -> f16 does not give back the stored bits"
        cfg = json.loads(meta["config"])
        if not cfg["bag"] or len(cfg["models"]) != 4:
            return "bag=true with 4 models expected"
        if cfg["weights"] != [[1.0 if k == i else 0.0 for k in range(4)] for i in range(4)]:
            return f"weights {cfg['weights']}"
        if [m["tensor_prefix"] for m in cfg["models"]] != [f"models.{i}." for i in range(4)]:
            return "tensor prefixes"
        if [m["name"] for m in cfg["models"]] != ["tinybag0", "tinybag1", "tinybag2", "tinybag3"]:
            return "member names"
        files = json.loads(meta["source_files"])
        if [f["role"] for f in files] != ["bag"] + ["model"] * 4:
            return f"source_files {files}"
        return None
    check("bag .yaml: fp16 members -> exact f32, prefixes, weights matrix", t_bag_tensors)

    keep_out = os.path.join(work, "bag16.safetensors")
    rc, so, se = convert(bag_yaml, "-o", keep_out, "--keep-dtype")

    def t_keep_dtype():
        if rc != 0:
            return se
        _, meta, items = read_safetensors(keep_out)
        lookup = {f"models.{i}.{k}": v for i, s in enumerate(mstates) for k, v in s.items()}
        for name, dt, arr in items:
            if dt != "F16" or not np.array_equal(arr.view(np.uint16), lookup[name].numpy().view(np.uint16)):
                return f"{name}: not the stored fp16 bits"
        return None if meta["stored_dtype"] == "as-source" else "stored_dtype metadata"
    check("bag .yaml --keep-dtype: F16 tensors bit-identical", t_keep_dtype)

    # the bag resolved from --repo (members elsewhere than the yaml)
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    for p in members:
        shutil.copy(p, repo)
    lone = os.path.join(work, "lone")
    os.makedirs(lone)
    shutil.copy(bag_yaml, lone)
    rc, so, se = convert(os.path.join(lone, os.path.basename(bag_yaml)), "--repo", repo,
                         "-o", os.path.join(work, "bag_repo.safetensors"))
    report("bag .yaml with members in --repo DIR", rc == 0, se.strip())
    expect_refusal("bag .yaml without --repo: member not found",
                   [os.path.join(lone, os.path.basename(bag_yaml)), "-o", os.path.join(work, "x.safetensors")],
                   ["tinybag0", "not found"], os.path.join(work, "x.safetensors"))

    # --- hostile inputs --------------------------------------------------------------------
    bad = os.path.join(work, "bad")
    os.makedirs(bad)
    o = os.path.join(work, "refused.safetensors")

    def variant(name, edit):
        p = tload(tiny)
        edit(p)
        return tsave(p, os.path.join(bad, name))

    import demucs.demucs
    import demucs.hdemucs
    import demucs.apply
    expect_refusal("unknown klass (BagOfModels)",
                   [variant("k1.th", lambda p: p.__setitem__("klass", demucs.apply.BagOfModels)), "-o", o],
                   ["unknown model class", "demucs.apply.BagOfModels"], o)
    expect_refusal("klass HDemucs (v3): not supported yet",
                   [variant("k2.th", lambda p: p.__setitem__("klass", demucs.hdemucs.HDemucs)), "-o", o],
                   ["HDemucs", "not supported"], o)
    expect_refusal("klass Demucs (v2): not supported yet",
                   [variant("k3.th", lambda p: p.__setitem__("klass", demucs.demucs.Demucs)), "-o", o],
                   ["Demucs v2", "not supported"], o)
    expect_refusal("unknown kwarg",
                   [variant("kw.th", lambda p: p["kwargs"].__setitem__("t_flash", True)), "-o", o],
                   ["unknown HTDemucs argument", "t_flash"], o)
    expect_refusal("extra state key",
                   [variant("extra.th", lambda p: p["state"].__setitem__("encoder.0.extra.weight", torch.zeros(3))), "-o", o],
                   ["unexpected key", "encoder.0.extra.weight"], o)
    expect_refusal("missing state key",
                   [variant("missing.th", lambda p: p["state"].pop("crosstransformer.norm_in.weight")), "-o", o],
                   ["missing key", "crosstransformer.norm_in.weight"], o)
    expect_refusal("bad shape",
                   [variant("shape.th", lambda p: p["state"].__setitem__("decoder.1.rewrite.weight", torch.zeros(64, 32, 3, 1))), "-o", o],
                   ["shape mismatch", "decoder.1.rewrite.weight", "(64, 32, 3, 1)"], o)
    expect_refusal("non-finite weight",
                   [variant("nan.th", lambda p: p["state"]["tencoder.0.conv.weight"].view(-1).__setitem__(3, float("nan"))), "-o", o],
                   ["tencoder.0.conv.weight", "NaN"], o)
    expect_refusal("wiener_iters > 0",
                   [variant("wiener.th", lambda p: p["kwargs"].update(wiener_iters=1, end_iters=1)), "-o", o],
                   ["wiener_iters=1", "not implemented"], o)
    expect_refusal("multi_freqs non-empty",
                   [variant("multi.th", lambda p: p["kwargs"].update(multi_freqs=[0.5])), "-o", o],
                   ["multi_freqs", "not implemented"], o)
    expect_refusal("sparse attention",
                   [variant("sparse.th", lambda p: p["kwargs"].update(t_sparse_self_attn=True)), "-o", o],
                   ["t_sparse_self_attn", "sparse attention"], o)
    expect_refusal("cac=False",
                   [variant("cac.th", lambda p: p["kwargs"].update(cac=False)), "-o", o],
                   ["cac=False"], o)
    # the runtime's envelope (models/htdemucs.c): what it refuses is refused, naming the setting
    expect_refusal("branches merging where the time branch cannot be injected (depth 4, nfft 512)",
                   [variant("merge.th", lambda p: p["kwargs"].update(depth=4)), "-o", o],
                   ["encoder.3", "cannot be injected", "hop_length=128"], o)
    expect_refusal("freq branch collapsing before the last layer with a transformer",
                   [variant("collapse.th", lambda p: p["kwargs"].update(nfft=64, growth=1)), "-o", o],
                   ["collapses to 1 bin before the last layer", "t_layers=3"], o)
    expect_refusal("encoders narrower than the transformer (merge, then growth)",
                   [variant("narrow.th", lambda p: p["kwargs"].update(nfft=64)), "-o", o],
                   ["encoders end with 64 (freq) / 32 (time)", "cannot run"], o)
    expect_refusal("t_group_norm=2 (GroupNorm with 2 groups in transformer layers)",
                   [variant("tgn.th", lambda p: p["kwargs"].update(t_group_norm=2)), "-o", o],
                   ["t_group_norm=2", "more than 1 group"], o)
    expect_refusal("t_norm_out=3 (GroupNorm(3) after each layer)",
                   [variant("tno.th", lambda p: p["kwargs"].update(t_norm_out=3)), "-o", o],
                   ["t_norm_out=3"], o)
    expect_refusal("t_norm_in_group=2 without t_norm_in",
                   [variant("tnig.th", lambda p: p["kwargs"].update(t_norm_in=False, t_norm_in_group=2)), "-o", o],
                   ["t_norm_in_group=2"], o)
    expect_refusal("t_sin_random_shift=5",
                   [variant("shift.th", lambda p: p["kwargs"].update(t_sin_random_shift=5)), "-o", o],
                   ["t_sin_random_shift=5", "random"], o)
    expect_refusal("t_emb='cape'",
                   [variant("cape.th", lambda p: p["kwargs"].update(t_emb="cape")), "-o", o],
                   ["t_emb='cape'"], o)
    expect_refusal("head dim 512 > 256",
                   [variant("hd.th", lambda p: p["kwargs"].update(bottom_channels=512, t_heads=1)), "-o", o],
                   ["head dim 512", "256"], o)
    expect_refusal("dconv_depth=0 with DConv",
                   [variant("dd0.th", lambda p: p["kwargs"].update(dconv_depth=0)), "-o", o],
                   ["dconv_depth=0"], o)
    expect_refusal("norm_groups not dividing a normalised layer",
                   [variant("ng.th", lambda p: p["kwargs"].update(norm_starts=0, norm_groups=3)), "-o", o],
                   ["norm_groups=3", "norm_starts=0"], o)
    expect_refusal("9 sources (the runtime holds 8)",
                   [variant("src9.th", lambda p: p["kwargs"].update(sources=[f"s{i}" for i in range(9)])), "-o", o],
                   ["9 sources", "at most 8"], o)
    expect_refusal("t_layers=65 (the runtime reads 0..64)",
                   [variant("tl65.th", lambda p: p["kwargs"].update(t_layers=65)), "-o", o],
                   ["t_layers=65", "[0, 64]"], o)
    expect_refusal("nfft not a multiple of 8 (odd hop_length)",
                   [variant("nfft.th", lambda p: p["kwargs"].update(nfft=516)), "-o", o],
                   ["nfft=516", "multiple of 8"], o)
    expect_refusal("a kwarg of the wrong type",
                   [variant("type.th", lambda p: p["kwargs"].update(depth="3")), "-o", o],
                   ["depth must be an integer"], o)
    # accepted now: kwargs that change nothing the runtime computes
    for label, edit in (("t_auto_sparsity=True without sparse attention", dict(t_auto_sparsity=True)),
                        ("use_train_segment=False", dict(use_train_segment=False))):
        rc, _, se = convert(variant("acc.th", lambda p: p["kwargs"].update(edit)), "-o", o)
        report(f"accepted: {label}", rc == 0 and os.path.exists(o), se.strip())
        if os.path.exists(o):
            os.unlink(o)
    expect_refusal("bare state_dict",
                   [tsave(dict(tload(tiny)["state"]), os.path.join(bad, "bare.th")), "-o", o],
                   ["bare state_dict"], o)

    blob = open(tiny, "rb").read()
    trunc = os.path.join(bad, "trunc.th")
    open(trunc, "wb").write(blob[: len(blob) // 2])
    expect_refusal("truncated .th (the executable, in a subprocess)", [trunc, "-o", o],
                   ["truncated or corrupted", "trunc.th"], o, subprocess_run=True)
    empty = os.path.join(bad, "empty.th")
    open(empty, "wb").close()
    expect_refusal("empty file", [empty, "-o", o], ["empty"], o)
    expect_refusal("no such file", [os.path.join(bad, "nope.th"), "-o", o], ["no such file"], o)
    garbage = os.path.join(bad, "garbage.th")
    open(garbage, "wb").write(b"this is not a checkpoint\n" * 10)
    expect_refusal("not a checkpoint", [garbage, "-o", o], ["not a readable torch checkpoint"], o)

    # a pickle that would run code: refused by name, and never run
    marker = os.path.join(work, "pwned")

    class Evil:
        def __reduce__(self):
            return (open, (marker, "w"))
    evil = variant("evil.th", lambda p: p.__setitem__("training_args", {"x": Evil()}))
    expect_refusal("pickle naming a non-allowed global (open)", [evil, "-o", o], ["io.open", "--unsafe-pickle"], o)
    report("that pickle's code did not run", not os.path.exists(marker), "the marker file exists")

    # a file named <sig>-<sha prefix>.th whose content does not match
    wrong = os.path.join(bad, "tiny-00000000.th")
    shutil.copy(tiny, wrong)
    expect_refusal("checksum in the file name does not match", [wrong, "-o", o], ["checksum mismatch"], o)
    rc, _, se = convert(wrong, "--no-checksum", "-o", o)
    report("--no-checksum accepts it", rc == 0, se.strip())
    if os.path.exists(o):
        os.unlink(o)

    # bags
    def bag_variant(name, text, files=members):
        d = os.path.join(work, "bag-" + name)
        os.makedirs(d)
        for p in files:
            shutil.copy(p, d)
        y = os.path.join(d, "b.yaml")
        open(y, "w").write(text)
        return y
    sigs = "['tinybag0', 'tinybag1', 'tinybag2', 'tinybag3']"
    expect_refusal("bag: yaml pointing to a missing member",
                   [bag_variant("missing", "models: ['tinybag0', 'tinybag9']\n"), "-o", o],
                   ["tinybag9", "not found"], o)
    expect_refusal("bag: weights matrix of the wrong shape (4 x 3)",
                   [bag_variant("w1", f"models: {sigs}\nweights: [[1,0,0],[0,1,0],[0,0,1],[1,1,1]]\n"), "-o", o],
                   ["weights", "4 x 4"], o)
    expect_refusal("bag: weights matrix of the wrong shape (3 rows)",
                   [bag_variant("w2", f"models: {sigs}\nweights: [[1,0,0,0],[0,1,0,0],[0,0,1,0]]\n"), "-o", o],
                   ["weights", "4 x 4"], o)
    expect_refusal("bag: a source whose weights sum to 0",
                   [bag_variant("w3", f"models: {sigs}\nweights: [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,1,0]]\n"), "-o", o],
                   ["vocals", "sum to 0"], o)
    expect_refusal("bag: unknown key",
                   [bag_variant("k", f"models: {sigs}\nshifts: 2\n"), "-o", o], ["unknown key", "shifts"], o)
    expect_refusal("bag: empty yaml", [bag_variant("e", ""), "-o", o], ["empty"], o)
    expect_refusal("bag: segment set (versions disagree) refused by default",
                   [bag_variant("s", f"models: {sigs}\nsegment: 0.5\n"), "-o", o], ["segment", "--bag-segment"], o)
    rc, _, se = convert(bag_variant("s2", f"models: {sigs}\nsegment: 0.5\n"), "--bag-segment", "apply", "-o", o)

    def t_bag_segment_apply():
        if rc != 0:
            return se
        cfg = json.loads(read_safetensors(o)[1]["config"])
        m = cfg["models"][0]
        if m["segment_samples"] != int(0.5 * 44100) or m["kwargs"]["segment"] != [29, 50]:
            return f"segment_samples {m['segment_samples']}, kwargs segment {m['kwargs']['segment']}"
        return None if cfg["bag_segment"] == 0.5 else f"bag_segment {cfg['bag_segment']}"
    check("bag: --bag-segment apply sets the members' segment", t_bag_segment_apply)
    if os.path.exists(o):
        os.unlink(o)

    # --- newly accepted configurations: every variant of make_demucs_reference.py ------------
    for name in mdr.VARIANTS:
        ck = mdr.make_checkpoints(name, work, 1234)
        vo = os.path.join(work, f"v-{name}.safetensors")
        rc, _, se = convert(ck, "-o", vo)

        def t_variant():
            if rc != 0:
                return se.strip()
            vpkg = tload(ck)
            _, meta, items = read_safetensors(vo)
            if [i[0] for i in items] != list(vpkg["state"]):
                return "tensor names/order differ from the state_dict"
            for tname, dt, arr in items:
                if dt != "F32" or not np.array_equal(arr, vpkg["state"][tname].float().numpy()):
                    return f"{tname}: not the exact state"
            cfg = json.loads(meta["config"])["models"][0]
            for k, v in vpkg["kwargs"].items():
                if cfg["kwargs"][k] != frac_json(v):
                    return f"kwargs[{k}]: {cfg['kwargs'][k]!r} in the config, {v!r} in the checkpoint"
            kw2 = dict(cfg["kwargs"])
            kw2["segment"] = fractions.Fraction(*kw2["segment"])
            if set(HTDemucs(**kw2).state_dict()) != set(vpkg["state"]):
                return "HTDemucs(**config kwargs) does not have the file's tensors"
            d = cfg["derived"]
            want = {"merge": (2, 3), "mergetime": (2, 3)}.get(name, (None, cfg["kwargs"]["depth"]))
            if (d["merge_layer"], d["time_layers"]) != want:
                return f"derived merge_layer/time_layers {d['merge_layer']}/{d['time_layers']}, expected {want}"
            if cfg["segment_samples"] != int(fractions.Fraction(*cfg["segment"]) * 44100):
                return f"segment_samples {cfg['segment_samples']}"
            return None
        what = mdr.VARIANT_KW[name]
        check(f"variant {name} converts exactly (nfft {what['nfft']}, depth {what['depth']}, "
              f"t_layers {what['t_layers']})", t_variant)

    # a member with other sources
    six = tload(members[3])
    six["kwargs"]["sources"] = ["drums", "bass", "vocals", "other"]
    d = os.path.join(work, "bag-src")
    os.makedirs(d)
    for p in members[:3]:
        shutil.copy(p, d)
    tsave(six, os.path.join(d, "tinybag3.th"))
    open(os.path.join(d, "b.yaml"), "w").write(f"models: {sigs}\n")
    expect_refusal("bag: inconsistent sources across members",
                   [os.path.join(d, "b.yaml"), "-o", o], ["inconsistent sources", "tinybag3"], o)


if __name__ == "__main__":
    main()
