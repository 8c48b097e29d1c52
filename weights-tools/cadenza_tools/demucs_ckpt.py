"""Reading upstream demucs checkpoints (`.th` packages and bag `.yaml` files) and turning them
into cadenza safetensors: tensors named as the upstream state_dict, metadata carrying the
complete architecture configuration.

What a `.th` is (demucs/states.py serialize_model, v4.0.1):
    torch.save({'klass': <class, pickled by reference>, 'args': (), 'kwargs': {...},
                'state': {name: tensor (fp16 when half=True)}, 'training_args': {...}
                [, 'metrics': ...]}, path)
What a bag `.yaml` is (demucs/remote/*.yaml, demucs/repo.py BagOnlyRepo):
    models: [sig, ...]          members, found as <sig>.th or <sig>-<sha256 prefix>.th
    weights: [[w_src...], ...]  optional, n_models x n_sources (default all ones)
    segment: float              optional, overrides the members' segment (see BAG_SEGMENT below)

Everything refused raises ConvertError with a message naming the file and the problem.
"""
import fractions
import glob
import hashlib
import inspect
import json
import math
import os
import re

from . import CONVERTER_VERSION, ConvertError
from . import safe_pickle
from .safetensors_io import entry_from_torch

MODEL_NAME = "htdemucs"
CONFIG_VERSION = 1
PACKAGE_KEYS_REQUIRED = ("klass", "args", "kwargs", "state")
PACKAGE_KEYS_OPTIONAL = ("training_args", "metrics")
SUPPORTED_CLASSES = {"demucs.htdemucs.HTDemucs": "HTDemucs"}
KNOWN_UNSUPPORTED_CLASSES = {
    "demucs.demucs.Demucs": "Demucs v2 (waveform-only Demucs)",
    "demucs.hdemucs.HDemucs": "Hybrid Demucs v3 (HDemucs, e.g. hdemucs_mmi / mdx models)",
    "demucs.wdemucs.WDemucs": "WDemucs",
}
BAG_KEYS = ("models", "weights", "segment")


# ----------------------------------------------------------------------------- helpers

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _import_demucs():
    try:
        import demucs
        import demucs.htdemucs
        return demucs
    except Exception as e:  # ImportError and friends from its own deps
        raise ConvertError(
            f"the demucs package could not be imported ({type(e).__name__}: {e}); "
            f"install it with weights-tools/setup-python.sh") from None


def _versions():
    import torch
    demucs = _import_demucs()
    return getattr(demucs, "__version__", "unknown"), torch.__version__


def _fraction(value, what):
    """(Fraction, samples-function) for a segment given as Fraction, int or float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, fractions.Fraction)):
        raise ConvertError(f"{what} must be a number, found {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConvertError(f"{what} is not finite ({value})")
    if value <= 0:
        raise ConvertError(f"{what} must be positive, found {value}")
    return fractions.Fraction(value)


def _jsonable(value, where):
    """The kwarg value as JSON: Fraction -> [num, den], tuples -> lists; refuse other types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConvertError(f"{where} is not finite ({value})")
        return value
    if isinstance(value, fractions.Fraction):
        return [value.numerator, value.denominator]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConvertError(f"{where} has a value of type {type(value).__name__} ({value!r}) "
                       f"that the converter cannot represent")


# ----------------------------------------------------------------------------- loading

def load_package(path, unsafe_pickle=False):
    """torch.load a demucs `.th` package with the restricted unpickler; check its layout."""
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ConvertError(f"{path}: is a directory, expected a demucs .th checkpoint")
    size = os.path.getsize(path)
    if size == 0:
        raise ConvertError(f"{path}: the file is empty (0 bytes), not a demucs checkpoint")
    try:
        pkg = safe_pickle.torch_load(path, unsafe=unsafe_pickle)
    except safe_pickle.UnsafeGlobal as e:
        raise ConvertError(f"{path}: {e}") from None
    except safe_pickle.BadCheckpoint as e:
        raise ConvertError(f"{path}: not a readable torch checkpoint: {e} (the file may be "
                           f"truncated or corrupted; {size} bytes)") from None
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConvertError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}: {msg}); "
            f"the file may be truncated or corrupted ({size} bytes)") from None
    if not isinstance(pkg, dict):
        raise ConvertError(f"{path}: the checkpoint holds a {type(pkg).__name__}, "
                           f"expected the dict written by demucs.states.serialize_model")
    if "klass" not in pkg and all(hasattr(v, "shape") for v in pkg.values()):
        raise ConvertError(
            f"{path}: this is a bare state_dict (tensor names only, no 'klass'/'kwargs'); the "
            f"converter needs the full package written by demucs.states.serialize_model, which "
            f"records the architecture")
    missing = [k for k in PACKAGE_KEYS_REQUIRED if k not in pkg]
    extra = [k for k in pkg if k not in PACKAGE_KEYS_REQUIRED + PACKAGE_KEYS_OPTIONAL]
    if missing:
        raise ConvertError(f"{path}: the package lacks key(s) {missing} "
                           f"(a demucs package has {list(PACKAGE_KEYS_REQUIRED)})")
    if extra:
        raise ConvertError(f"{path}: the package has unknown key(s) {sorted(map(str, extra))} "
                           f"(expected {list(PACKAGE_KEYS_REQUIRED + PACKAGE_KEYS_OPTIONAL)})")
    return pkg


def _klass_name(klass):
    if isinstance(klass, safe_pickle.ClassRef):
        return klass.qualname
    if isinstance(klass, type):
        return f"{klass.__module__}.{klass.__qualname__}"
    return None


# ----------------------------------------------------------------------------- the supported envelope

def _htdemucs_signature():
    _import_demucs()
    from demucs.htdemucs import HTDemucs
    return inspect.signature(HTDemucs.__init__)  # capture_init keeps __wrapped__


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return (isinstance(v, (int, float, fractions.Fraction)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


# The envelope is the set of configurations the cadenza runtime implements: models/htdemucs.c
# (parse_cfg, build_member, the load-time shape pass of forward_body) and runtime/cadenza.h.
# Everything it refuses is refused here, naming the setting, so that a converted file loads.
RT_MAX_SOURCES = 8            # CDZ_HTDEMUCS_MAX_SOURCES
RT_MAX_SOURCE_NAME = 15       # bytes (source_names[.][16])
RT_MAX_MEMBERS = 8            # CDZ_HTDEMUCS_MAX_MEMBERS
RT_MAX_HEAD_DIM = 256         # CDZ_ATTENTION_MAX_HEAD_DIM
# integer kwargs and the ranges the runtime's loader reads them in (kw_int)
RT_INT_RANGES = {
    "audio_channels": (1, 64), "samplerate": (1, 10_000_000), "channels": (1, 1 << 16),
    "nfft": (4, 1 << 20), "depth": (1, 16), "kernel_size": (1, 1 << 16),
    "time_stride": (1, 1 << 16), "stride": (1, 1 << 16), "context": (0, 1 << 12),
    "context_enc": (0, 1 << 12), "norm_starts": (-1_000_000, 1_000_000),
    "norm_groups": (1, 1 << 16), "dconv_mode": (0, 3), "dconv_depth": (-16, 16),
    "bottom_channels": (0, 1 << 16), "t_layers": (0, 64), "t_heads": (1, 1 << 12),
    "wiener_iters": (-1_000_000, 1_000_000), "end_iters": (-1_000_000, 1_000_000),
    "t_sin_random_shift": (0, 1_000_000_000),
}
# int(x) flags: a bool or an integer (upstream builds MyGroupNorm(int(x), ...) from them)
RT_INT_FLAGS = ("t_norm_in", "t_norm_in_group", "t_group_norm", "t_norm_out")
RT_BOOLS = ("cac", "rewrite", "t_norm_first", "t_layer_scale", "t_gelu", "t_cross_first",
            "t_sparse_self_attn", "t_sparse_cross_attn", "use_train_segment")
RT_NUMBERS = ("growth", "dconv_comp", "freq_emb", "emb_scale", "t_hidden_scale", "t_max_period",
              "t_weight_pos_embed")


def layer_plan(kw):
    """HTDemucs.__init__'s layer loop (as models/htdemucs.c build_member rebuilds it): one dict
    per index with the encoder/decoder geometry of both branches. Assumes check_types passed."""
    S, ac = len(kw["sources"]), kw["audio_channels"]
    ks, st = kw["kernel_size"], kw["stride"]
    chin, chin_z = ac, 2 * ac
    chout, chout_z = kw["channels_time"] or kw["channels"], kw["channels"]
    freqs = kw["nfft"] // 2
    layers, emb_rows = [], 0
    for index in range(kw["depth"]):
        freq = freqs > 1
        ker, stri = (ks, st) if freq else (kw["time_stride"] * 2, kw["time_stride"])
        pad, last_freq = True, False
        if freq and freqs <= ks:
            ker, pad, last_freq = freqs, False, True
        if last_freq:
            chout_z = max(chout, chout_z)
            chout = chout_z
        ly = {"index": index, "freq": freq, "freqs": freqs, "ker": ker, "stride": stri,
              "pad": ker // 4 if pad else 0, "last_freq": last_freq,
              "norm": index >= kw["norm_starts"], "enc": (chin_z, chout_z),
              "tenc": (chin, chout) if freq else None}
        if index == 0:
            chin = ac * S
            chin_z = 2 * chin
        ly["dec"] = (chout_z, chin_z)
        ly["tdec"] = (chout, chin) if freq else None
        layers.append(ly)
        chin, chin_z = chout, chout_z
        chout, chout_z = int(kw["growth"] * chout), int(kw["growth"] * chout_z)
        if chout < 1 or chout_z < 1:
            return layers, emb_rows, (f"growth={kw['growth']} leaves layer {index + 1} with no "
                                      f"channels")
        if freq:
            freqs = 1 if freqs <= ks else freqs // st
        if index == 0 and kw["freq_emb"]:
            emb_rows = freqs
    return layers, emb_rows, None


def check_types(kw, where):
    """Types and the runtime's value ranges of every argument the runtime reads."""
    problems = []
    src = kw["sources"]
    if not (isinstance(src, (list, tuple)) and len(src) > 0
            and all(isinstance(s, str) and s for s in src) and len(set(src)) == len(src)):
        problems.append(f"sources must be a non-empty list of distinct names, found {src!r}")
    else:
        if len(src) > RT_MAX_SOURCES:
            problems.append(f"sources: {len(src)} sources, the cadenza runtime supports at most "
                            f"{RT_MAX_SOURCES}")
        long_names = [s for s in src if len(s.encode("utf-8")) > RT_MAX_SOURCE_NAME]
        if long_names:
            problems.append(f"sources: names longer than {RT_MAX_SOURCE_NAME} bytes {long_names} "
                            f"(the cadenza runtime's limit)")
    for name, (lo, hi) in RT_INT_RANGES.items():
        v = kw[name]
        if not _is_int(v):
            problems.append(f"{name} must be an integer, found {v!r}")
        elif not lo <= v <= hi:
            problems.append(f"{name}={v} is outside the range the cadenza runtime reads "
                            f"[{lo}, {hi}]")
    ct = kw["channels_time"]
    if ct is not None and not (_is_int(ct) and 0 <= ct <= 1 << 16):
        problems.append(f"channels_time must be None or an integer in [0, 65536], found {ct!r}")
    for name in RT_INT_FLAGS:
        v = kw[name]
        if not (isinstance(v, bool) or (_is_int(v) and 0 <= v <= 1 << 16)):
            problems.append(f"{name} must be a bool or an integer in [0, 65536], found {v!r}")
    for name in RT_BOOLS:
        if not isinstance(kw[name], (bool, int)):
            problems.append(f"{name} must be a bool, found {kw[name]!r}")
    for name in RT_NUMBERS:
        if not _is_num(kw[name]):
            problems.append(f"{name} must be a finite number, found {kw[name]!r}")
    mf = kw["multi_freqs"]
    if mf is not None and not isinstance(mf, (list, tuple)):
        problems.append(f"multi_freqs must be a list, found {mf!r}")
    if problems:
        raise ConvertError(f"{where}: " + "; ".join(problems))


def check_envelope(kw, where, segment=None):
    """Refuse configurations the cadenza runtime does not implement or cannot run. `kw` holds
    every HTDemucs.__init__ argument with its effective value; `segment` is the segment the
    model runs at as upstream holds it (default kw["segment"]): it runs int(segment *
    samplerate) samples, computed as upstream computes it."""
    check_types(kw, where)
    segment_samples = int((kw["segment"] if segment is None else segment) * kw["samplerate"])
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    # features with no implementation (parse_cfg: UNSUPPORTED)
    need(bool(kw["cac"]),
         f"cac={kw['cac']!r}: only complex-as-channels models are supported (magnitude masking / "
         f"Wiener filtering is not implemented by the cadenza runtime)")
    need(kw["wiener_iters"] == 0 and kw["end_iters"] == 0,
         f"wiener_iters={kw['wiener_iters']}, end_iters={kw['end_iters']}: Wiener filtering is not "
         f"implemented by the cadenza runtime (both must be 0)")
    need(not kw["multi_freqs"],
         f"multi_freqs={kw['multi_freqs']!r}: frequency-band splitting (MultiWrap) is not implemented "
         f"by the cadenza runtime (must be empty)")
    need(kw["t_emb"] == "sin", f"t_emb={kw['t_emb']!r}: only the 'sin' positional embedding is "
                               f"supported ('cape'/'scaled' are not implemented by the cadenza runtime)")
    for name in ("t_sparse_self_attn", "t_sparse_cross_attn"):
        need(not kw[name], f"{name}={kw[name]!r}: sparse attention is not implemented by the "
                           f"cadenza runtime")
    need(kw["t_sin_random_shift"] == 0,
         f"t_sin_random_shift={kw['t_sin_random_shift']}: a random positional shift at inference "
         f"makes the output random; only 0 is supported")
    need(bool(kw["t_norm_in"]) or int(kw["t_norm_in_group"]) <= 1,
         f"t_norm_in_group={kw['t_norm_in_group']!r}: GroupNorm with more than 1 group on the "
         f"transformer input is not implemented by the cadenza runtime")
    need(int(kw["t_group_norm"]) <= 1,
         f"t_group_norm={kw['t_group_norm']!r}: GroupNorm with more than 1 group inside the "
         f"transformer layers is not implemented by the cadenza runtime")
    need(not (kw["t_norm_first"] and int(kw["t_norm_out"]) > 1),
         f"t_norm_out={kw['t_norm_out']!r}: only GroupNorm with 1 group after each transformer "
         f"layer is implemented by the cadenza runtime")
    # malformed values (parse_cfg: INVALID_ARGUMENT)
    need(not (kw["dconv_mode"] and kw["dconv_depth"] == 0),
         f"dconv_depth=0 with dconv_mode={kw['dconv_mode']}: the cadenza runtime needs a DConv "
         f"depth (negative: no dilation)")
    need(kw["dconv_comp"] > 0, f"dconv_comp={kw['dconv_comp']} must be > 0")
    need(kw["growth"] > 0, f"growth={kw['growth']} must be > 0")
    need(kw["freq_emb"] >= 0, f"freq_emb={kw['freq_emb']} must be >= 0")
    # parse_cfg asks for a multiple of 4; an odd hop_length then fails when planning (the
    # STFT gives le + 3 frames): upstream _spec pads 3 * (hop // 2) and asserts le + 4
    need(kw["nfft"] % 8 == 0, f"nfft={kw['nfft']} must be a multiple of 8 (hop_length = nfft // 4 "
                              f"must be even: upstream's _spec pads 3 * (hop_length // 2) on each "
                              f"side and asserts le + 4 STFT frames; the cadenza runtime refuses it "
                              f"when planning)")
    need(segment_samples >= 1, f"the segment ({kw['segment']} s) is shorter than 1 sample")
    if problems:
        raise ConvertError(f"{where}: unsupported configuration: " + "; ".join(problems))

    # the layer list (build_member)
    layers, emb_rows, bad = layer_plan(kw)
    if bad:
        raise ConvertError(f"{where}: unsupported configuration: {bad}")
    groups = kw["norm_groups"]
    for ly in layers:
        i = ly["index"]
        for kind, key, enc in (("encoder", "enc", True), ("decoder", "dec", False),
                               ("tencoder", "tenc", True), ("tdecoder", "tdec", False)):
            if ly[key] is None:
                continue
            cin, cout = ly[key]
            empty = kind in ("tencoder", "tdecoder") and ly["last_freq"]
            if kw["dconv_mode"] & (1 if enc else 2):
                ch = cout if enc else cin
                if int(ch / kw["dconv_comp"]) < 1:
                    problems.append(f"dconv_comp={kw['dconv_comp']} leaves the {ch}-channel "
                                    f"{kind} of layer {i} a DConv hidden width of 0")
            if ly["norm"]:
                a, b2 = cout, (2 * cout if enc else 2 * cin)
                if a % groups or (kw["rewrite"] and not empty and b2 % groups):
                    problems.append(f"norm_groups={groups} does not divide the {a}/{b2} channels "
                                    f"of the {kind} of layer {i} (norm_starts={kw['norm_starts']})")
            if ly["ker"] < 1:
                problems.append(f"layer {i} has kernel size {ly['ker']}")
    tcd = kw["channels"] * kw["growth"] ** (kw["depth"] - 1)
    if kw["bottom_channels"]:
        need(float(tcd).is_integer(),
             f"channels * growth**(depth-1) = {tcd} is not an integer (bottom_channels="
             f"{kw['bottom_channels']} needs one)")
    n_time = sum(1 for ly in layers if ly["tenc"])
    if kw["t_layers"] > 0:
        tc = int(tcd)
        need(float(tcd).is_integer() or kw["bottom_channels"],
             f"the transformer width channels * growth**(depth-1) = {tcd} is not an integer")
        enc_out = layers[-1]["enc"][1]
        tenc_out = layers[n_time - 1]["tenc"][1] if n_time else 0
        need(enc_out == tc and tenc_out == tc,
             f"the encoders end with {enc_out} (freq) / {tenc_out} (time) channels but the "
             f"transformer (t_layers={kw['t_layers']}) is built for channels * growth**(depth-1) = "
             f"{tc}; upstream HTDemucs cannot run this configuration (channels_time="
             f"{kw['channels_time']!r}, growth={kw['growth']})")
        dim = kw["bottom_channels"] or tc
        hidden = int(dim * kw["t_hidden_scale"])
        if dim % kw["t_heads"]:
            problems.append(f"transformer width {dim} is not divisible by t_heads={kw['t_heads']}")
        elif dim // kw["t_heads"] > RT_MAX_HEAD_DIM:
            problems.append(f"head dim {dim // kw['t_heads']} (width {dim} / t_heads="
                            f"{kw['t_heads']}) exceeds the cadenza attention op's {RT_MAX_HEAD_DIM}")
        need(dim % 4 == 0, f"transformer width {dim} must be a multiple of 4 (2-D sin embedding)")
        need(hidden >= 1, f"t_hidden_scale={kw['t_hidden_scale']} gives an empty FFN")
    if problems:
        raise ConvertError(f"{where}: unsupported configuration: " + "; ".join(problems))
    bad = shape_pass(kw, layers, emb_rows, segment_samples)
    if bad:
        raise ConvertError(f"{where}: configuration that cannot run (segment {segment_samples} "
                           f"samples): {bad}")


def _conv_len(n, k, s, pad):
    span = n + 2 * pad - (k - 1) - 1
    return span // s + 1 if span >= 0 else 0


def shape_pass(kw, layers, emb_rows, L):
    """HTDemucs.forward on shapes only, for one segment of L samples, with the checks upstream
    asserts (and models/htdemucs.c's load-time shape pass repeats). Returns the first problem,
    naming the layer, or None. Shapes without the batch: (C, F, T) or (C, T)."""
    ac, S, nfft = kw["audio_channels"], len(kw["sources"]), kw["nfft"]
    hl, Fq = nfft // 4, nfft // 2
    le = -(-L // hl)
    ks, st = kw["kernel_size"], kw["stride"]
    x, xt = (2 * ac, Fq, le), (ac, L)
    lengths, lengths_t, saved, saved_t = [], [], [], []
    for ly in layers:
        i = ly["index"]
        lengths.append(x[-1])
        inject = None
        if ly["tenc"]:
            lengths_t.append(xt[-1])
            n = xt[-1] + (-xt[-1]) % st          # right zero-pad to a multiple of the stride
            lo = _conv_len(n, ks, st, ks // 4)
            if lo < 1:
                return (f"tencoder.{i}: {xt[-1]} samples are too few for kernel_size={ks} "
                        f"(segment too short)")
            xt = (ly["tenc"][1], lo)
            if ly["last_freq"]:
                inject = xt
            else:
                saved_t.append(xt)
        cout = ly["enc"][1]
        if ly["freq"]:
            fo = _conv_len(x[1], ly["ker"], ly["stride"], ly["pad"])
            if fo < 1:
                return (f"encoder.{i}: {x[1]} frequency bins are too few for kernel {ly['ker']} "
                        f"(nfft={nfft}, depth={kw['depth']})")
            y = (cout, fo, x[2])
        else:
            if len(x) == 3:
                x = (x[0] * x[1], x[2])
            n = x[-1] + (-x[-1]) % ly["stride"]
            lo = _conv_len(n, ly["ker"], ly["stride"], ly["pad"])
            if lo < 1:
                return (f"encoder.{i}: {x[-1]} frames are too few for kernel {ly['ker']} "
                        f"(time_stride={kw['time_stride']}; segment too short)")
            y = (cout, lo)
        if inject is not None and (len(y) != 3 or inject[0] != y[0] or inject[1] != y[2]):
            return (f"encoder.{i}: the branches merge here ({ly['freqs']} frequency bins <= "
                    f"kernel_size={ks}), but the time branch's output ({inject[1]} samples) cannot "
                    f"be injected into the frequency branch's {y[-1]} frames (upstream asserts "
                    f"they are equal: the time strides up to this layer must equal hop_length="
                    f"{hl})")
        if i == 0 and emb_rows and (len(y) != 3 or y[1] > emb_rows):
            return (f"encoder.0 gives {y[1] if len(y) == 3 else 0} frequency rows, the frequency "
                    f"embedding has {emb_rows}")
        saved.append(y)
        x = y
    if kw["t_layers"] > 0 and len(x) != 3:
        return ("the frequency branch collapses to 1 bin before the last layer, so the "
                f"transformer (t_layers={kw['t_layers']}) would get a 3-d input (upstream HTDemucs "
                f"fails the same way); use t_layers=0, a larger nfft or a smaller depth")
    depth = len(layers)
    for k in range(depth):
        ei = depth - 1 - k
        ly = layers[ei]
        what = f"decoder.{k}"
        cin, cout = ly["dec"]
        if ly["freq"] and len(x) == 2:
            if x[0] % cin:
                return f"{what} cannot view its {x[0]}-channel input as {cin} channels x bins"
            x = (cin, x[0] // cin, x[1])
        if x[0] != cin or ly["freq"] != (len(x) == 3):
            return f"{what} expects {cin} input channels, its input has shape {x}"
        if x != saved[ei]:
            return f"{what}: its skip {saved[ei]} does not match its input {x}"
        full = (x[-2 if ly["freq"] else -1] - 1) * ly["stride"] + ly["ker"]
        if ly["freq"]:
            if full - 2 * ly["pad"] < 1:
                return f"{what}: the transposed conv gives {full} rows, fewer than the crop"
            out = (cout, full - 2 * ly["pad"], x[2])
        else:
            if ly["pad"] + lengths[ei] > full:
                return (f"{what}: the transposed conv gives {full} samples, the crop needs "
                        f"{ly['pad']} + {lengths[ei]}")
            out = (cout, lengths[ei])
        if ly["tdec"]:
            twhat = f"tdecoder.{k - (depth - len(lengths_t))}"
            tin, tout = ly["tdec"]
            if ly["last_freq"]:
                if len(x) != 3 or x[1] != 1:
                    return f"{twhat} takes the frequency decoder's input, which must have 1 bin"
                xt = (x[0], x[2])
            elif xt != saved_t[ei]:
                return f"{twhat}: its skip {saved_t[ei]} does not match its input {xt}"
            if xt[0] != tin:
                return f"{twhat} expects {tin} input channels, its input has shape {xt}"
            tfull = (xt[1] - 1) * st + ks
            if ks // 4 + lengths_t[ei] > tfull:
                return (f"{twhat}: the transposed conv gives {tfull} samples, the crop needs "
                        f"{ks // 4} + {lengths_t[ei]}")
            xt = (tout, lengths_t[ei])
        x = out
    if x != (S * 2 * ac, Fq, le):
        return (f"the frequency branch ends with {x}, expected {(S * 2 * ac, Fq, le)} (the "
                f"encoder/decoder strides do not invert for nfft={nfft}, kernel_size={ks}, "
                f"stride={st})")
    if xt != (S * ac, L):
        return f"the time branch ends with {xt}, expected {(S * ac, L)}"
    return None


def derived_config(kw):
    """Values that follow from the kwargs, spelled out for readers of the file (informative:
    the C loader rebuilds the layer list itself and checks every tensor shape)."""
    layers, _, _ = layer_plan(kw)
    tc = int(kw["channels"] * kw["growth"] ** (kw["depth"] - 1))
    tdim = (kw["bottom_channels"] or tc) if kw["t_layers"] > 0 else 0
    parity = 1 if kw["t_cross_first"] else 0
    kinds = ["self" if i % 2 == parity else "cross" for i in range(kw["t_layers"])]
    freqs = [ly["freqs"] for ly in layers]
    last = layers[-1]
    freqs.append(1 if not last["freq"] or last["last_freq"] else last["freqs"] // kw["stride"])
    enc = [ly["enc"][1] for ly in layers]
    return {
        "hop_length": kw["nfft"] // 4,
        "freq_bins": kw["nfft"] // 2,
        "freq_bins_per_layer": freqs,
        "encoder_channels": enc,
        "time_layers": sum(1 for ly in layers if ly["tenc"]),
        "time_encoder_channels": [ly["tenc"][1] for ly in layers if ly["tenc"]],
        "merge_layer": next((ly["index"] for ly in layers if ly["last_freq"]), None),
        "transformer_dim": tdim,
        "transformer_hidden": int(tdim * kw["t_hidden_scale"]),
        "transformer_head_dim": tdim // kw["t_heads"],
        "transformer_layer_kinds": kinds,
        "dconv_encoder": bool(kw["dconv_mode"] & 1),
        "dconv_decoder": bool(kw["dconv_mode"] & 2),
        "dconv_hidden": [int(c / kw["dconv_comp"]) for c in enc] if kw["dconv_mode"] else [],
        "freq_emb_weight": float(kw["freq_emb"]) * float(kw["emb_scale"]) if kw["freq_emb"] else 0.0,
    }


# ----------------------------------------------------------------------------- one model

class Member:
    """One validated HTDemucs checkpoint."""

    def __init__(self, path, name, pkg, kwargs, raw_segment, state):
        self.path, self.name, self.pkg, self.kwargs, self.state = path, name, pkg, kwargs, state
        # the effective segment (a bag may override it), exactly as a Fraction, and the value
        # upstream multiplies by the samplerate (a float stays a float: int(7.8 * 44100) is
        # computed in float arithmetic there, so it is here)
        self.segment = kwargs["segment"]
        self.segment_value = raw_segment

    @property
    def segment_samples(self):
        return int(self.segment_value * self.kwargs["samplerate"])

    @property
    def sources(self):
        return list(self.kwargs["sources"])


def validate_package(path, pkg, check_state=True):
    """Check klass, args/kwargs and the state against a freshly constructed HTDemucs.
    Returns (effective kwargs, state dict)."""
    import torch
    where = path
    kname = _klass_name(pkg["klass"])
    if kname is None:
        raise ConvertError(f"{where}: 'klass' is {pkg['klass']!r}, not a class")
    if kname not in SUPPORTED_CLASSES:
        if kname in KNOWN_UNSUPPORTED_CLASSES:
            raise ConvertError(
                f"{where}: model class {kname} ({KNOWN_UNSUPPORTED_CLASSES[kname]}) is not supported "
                f"yet; only HTDemucs (Demucs v4: htdemucs, htdemucs_ft, htdemucs_6s) converts")
        raise ConvertError(f"{where}: unknown model class {kname}; only demucs.htdemucs.HTDemucs "
                           f"(Demucs v4) is supported")
    args, kwargs = pkg["args"], pkg["kwargs"]
    if not isinstance(args, (list, tuple)):
        raise ConvertError(f"{where}: 'args' is a {type(args).__name__}, expected a tuple")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ConvertError(f"{where}: 'kwargs' must be a dict of argument names")
    sig = _htdemucs_signature()
    params = [p for p in sig.parameters if p != "self"]
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise ConvertError(
            f"{where}: unknown HTDemucs argument(s) {unknown} in 'kwargs' (not in demucs "
            f"{_versions()[0]}'s HTDemucs.__init__; upstream load_model would drop them with a "
            f"warning, the converter refuses)")
    try:
        bound = sig.bind(None, *args, **kwargs)
    except TypeError as e:
        raise ConvertError(f"{where}: args/kwargs do not fit HTDemucs.__init__: {e}") from None
    bound.apply_defaults()
    eff = {k: v for k, v in bound.arguments.items() if k != "self"}
    eff["segment"] = _fraction(eff["segment"], f"{where}: kwargs 'segment'")
    raw_segment = bound.arguments["segment"]
    check_envelope(eff, where, raw_segment)

    state = pkg["state"]
    if not isinstance(state, dict):
        raise ConvertError(f"{where}: 'state' is a {type(state).__name__}, expected a dict of tensors")
    if state.get("__quantized"):
        raise ConvertError(f"{where}: the state is DiffQ-quantised ('__quantized'); quantised "
                           f"checkpoints are not supported")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError(f"{where}: state entries that are not tensors: {bad[:5]}")
    if check_state:
        _check_state(where, pkg["args"], pkg["kwargs"], state)
    return eff, raw_segment, state


def _check_state(where, args, kwargs, state):
    import torch
    from demucs.htdemucs import HTDemucs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = HTDemucs(*args, **kwargs)
        except Exception as e:
            raise ConvertError(f"{where}: HTDemucs(**kwargs) could not be constructed: "
                               f"{type(e).__name__}: {e}") from None
    ref = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    del model
    missing = [k for k in ref if k not in state]
    extra = [k for k in state if k not in ref]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if extra:
            parts.append(f"{len(extra)} unexpected key(s) {extra[:8]}{' ...' if len(extra) > 8 else ''}")
        raise ConvertError(f"{where}: the state does not match HTDemucs built from its kwargs: "
                           + "; ".join(parts))
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {ref[k][0]} expected"
              for k in ref if tuple(state[k].shape) != ref[k][0]]
    if shapes:
        raise ConvertError(f"{where}: {len(shapes)} tensor shape mismatch(es) against HTDemucs built "
                           f"from its kwargs: " + "; ".join(shapes[:6]) + (" ..." if len(shapes) > 6 else ""))
    for k in ref:
        t = state[k]
        if t.dtype not in (torch.float16, torch.float32, torch.bfloat16, torch.float64):
            raise ConvertError(f"{where}: tensor '{k}' has dtype {t.dtype}, expected a float type")
        if t.is_sparse or t.is_quantized:
            raise ConvertError(f"{where}: tensor '{k}' is sparse/quantised, not supported")
        if not torch.isfinite(t.float() if t.dtype != torch.float64 else t).all():
            raise ConvertError(f"{where}: tensor '{k}' contains NaN or Inf values")


def load_member(path, name=None, unsafe_pickle=False, verify_checksum=True):
    pkg = load_package(path, unsafe_pickle=unsafe_pickle)
    if verify_checksum:
        _verify_name_checksum(path)
    eff, raw_segment, state = validate_package(path, pkg)
    stem = os.path.splitext(os.path.basename(path))[0]
    return Member(path, name or stem.split("-")[0], pkg, eff, raw_segment, state)


_SIG_CHECKSUM = re.compile(r"^([^-]+)-([0-9a-f]{6,64})$")


def _verify_name_checksum(path):
    """demucs names published files <sig>-<first hex digits of the sha256>.th (repo.py
    check_checksum); verify that prefix when the file is named so."""
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _SIG_CHECKSUM.match(stem)
    if not m:
        return
    want = m.group(2)
    got = sha256_file(path)[:len(want)]
    if got != want:
        raise ConvertError(f"{path}: checksum mismatch: the name says sha256 begins with {want}, "
                           f"the file's begins with {got} (corrupted or renamed download; "
                           f"--no-checksum skips this check)")


# ----------------------------------------------------------------------------- bags

def _resolve_member(sig, dirs, yaml_path):
    if not isinstance(sig, str) or not sig or "/" in sig or sig in (".", ".."):
        raise ConvertError(f"{yaml_path}: model signature {sig!r} is not a file stem")
    for d in dirs:
        exact = os.path.join(d, sig + ".th")
        found = [exact] if os.path.isfile(exact) else []
        found += sorted(p for p in glob.glob(os.path.join(glob.escape(d), glob.escape(sig) + "-*.th"))
                        if os.path.isfile(p) and "-" not in os.path.basename(p)[len(sig) + 1:-3])
        if len(found) > 1:
            raise ConvertError(f"{yaml_path}: member '{sig}' is ambiguous in {d}: "
                               f"{[os.path.basename(p) for p in found]} (keep one)")
        if found:
            return found[0]
    raise ConvertError(f"{yaml_path}: member '{sig}' not found: looked for {sig}.th or {sig}-*.th "
                       f"in {dirs}")


def load_bag(yaml_path, repo_dirs=(), unsafe_pickle=False, verify_checksum=True,
             bag_segment_policy="refuse"):
    import yaml
    if not os.path.isfile(yaml_path):
        raise ConvertError(f"{yaml_path}: no such file")
    if os.path.getsize(yaml_path) == 0:
        raise ConvertError(f"{yaml_path}: the file is empty, expected a bag of models "
                           f"('models: [...]')")
    try:
        with open(yaml_path, "r", encoding="utf-8") as f:
            bag = yaml.safe_load(f)
    except Exception as e:
        raise ConvertError(f"{yaml_path}: not valid YAML: {e}") from None
    if not isinstance(bag, dict):
        raise ConvertError(f"{yaml_path}: expected a mapping with 'models', found {type(bag).__name__}")
    unknown = [k for k in bag if k not in BAG_KEYS]
    if unknown:
        raise ConvertError(f"{yaml_path}: unknown key(s) {unknown} (a bag has {list(BAG_KEYS)})")
    sigs = bag.get("models")
    if not isinstance(sigs, list) or not sigs:
        raise ConvertError(f"{yaml_path}: 'models' must be a non-empty list of signatures")
    if len(sigs) > RT_MAX_MEMBERS:
        raise ConvertError(f"{yaml_path}: {len(sigs)} models; the cadenza runtime supports bags of "
                           f"at most {RT_MAX_MEMBERS}")
    dirs = [os.path.abspath(d) for d in repo_dirs] + [os.path.dirname(os.path.abspath(yaml_path))]
    members = []
    for i, sig in enumerate(sigs):
        path = _resolve_member(sig, dirs, yaml_path)
        m = load_member(path, name=sig, unsafe_pickle=unsafe_pickle, verify_checksum=verify_checksum)
        members.append(m)
    first = members[0]
    for m in members[1:]:
        for key in ("sources", "samplerate", "audio_channels"):
            a, b = first.kwargs[key], m.kwargs[key]
            if key == "sources":
                a, b = list(a), list(b)
            if a != b:
                raise ConvertError(f"{yaml_path}: inconsistent {key} across members: "
                                   f"'{first.name}' has {a}, '{m.name}' has {b}")
    n_src = len(first.sources)
    weights = bag.get("weights")
    if weights is None:
        weights = [[1.0] * n_src for _ in members]
    else:
        if not isinstance(weights, list) or len(weights) != len(members) or not all(
                isinstance(row, list) and len(row) == n_src for row in weights):
            shape = (f"{len(weights)} rows of lengths {[len(r) if isinstance(r, list) else None for r in weights]}"
                     if isinstance(weights, list) else type(weights).__name__)
            raise ConvertError(f"{yaml_path}: 'weights' must be a {len(members)} x {n_src} matrix "
                               f"({len(members)} models x {n_src} sources), found {shape}")
        for i, row in enumerate(weights):
            for k, w in enumerate(row):
                if not _is_num(w):
                    raise ConvertError(f"{yaml_path}: weights[{i}][{k}] = {w!r} is not a finite number")
        weights = [[float(w) for w in row] for row in weights]
        for k in range(n_src):
            if sum(row[k] for row in weights) == 0:
                raise ConvertError(f"{yaml_path}: the weights for source {k} ('{first.sources[k]}') "
                                   f"sum to 0 over the models (apply_model divides by that sum)")
    seg = bag.get("segment")
    if seg is not None:
        segf = _fraction(seg, f"{yaml_path}: 'segment'")
        if bag_segment_policy == "refuse":
            raise ConvertError(
                f"{yaml_path}: the bag sets segment={seg}. demucs versions disagree on what that "
                f"means for HTDemucs members (4.0.1 overrides every member's segment; later "
                f"upstream ignores it for HTDemucs; the author's fork applies it only when not "
                f"longer). Choose explicitly with --bag-segment apply or --bag-segment ignore")
        if bag_segment_policy == "apply":
            for m in members:
                if segf > m.segment:
                    raise ConvertError(
                        f"{yaml_path}: segment={seg} is longer than member '{m.name}''s training "
                        f"segment {float(m.segment)} s; a Transformer model cannot run longer "
                        f"segments than it was trained on")
                m.segment, m.segment_value = segf, seg
                # the runtime runs the member at the new segment: it must still be runnable
                check_envelope(m.kwargs, f"{yaml_path}: member '{m.name}' at the bag's segment={seg}",
                               seg)
    return bag, members, weights, seg


# ----------------------------------------------------------------------------- output

def member_config(m, prefix):
    kw = {k: _jsonable(v, f"{m.path}: kwargs '{k}'") for k, v in m.kwargs.items()}
    return {
        "name": m.name,
        "class": "HTDemucs",
        "tensor_prefix": prefix,
        "kwargs": kw,
        "segment": [m.segment.numerator, m.segment.denominator],
        "segment_seconds": float(m.segment),
        "segment_samples": m.segment_samples,
        "derived": derived_config(m.kwargs),
    }


def build_config(members, weights, bag, bag_segment):
    models = [member_config(m, f"models.{i}." if bag else "") for i, m in enumerate(members)]
    first = members[0]
    seg = min(m.segment for m in members)
    return {
        "config_version": CONFIG_VERSION,
        "architecture": MODEL_NAME,
        "bag": bool(bag),
        "sources": first.sources,
        "audio_channels": first.kwargs["audio_channels"],
        "samplerate": first.kwargs["samplerate"],
        "max_segment": [seg.numerator, seg.denominator],
        "max_segment_seconds": float(seg),
        "weights": weights,
        "bag_segment": _jsonable(bag_segment, "bag segment") if bag_segment is not None else None,
        "models": models,
    }


def convert(input_path, repo_dirs=(), keep_dtype=False, unsafe_pickle=False,
            verify_checksum=True, bag_segment_policy="refuse"):
    """Returns (entries, metadata) for a `.th` or bag `.yaml`."""
    import torch
    is_bag = input_path.lower().endswith((".yaml", ".yml"))
    if is_bag:
        _, members, weights, bag_seg = load_bag(input_path, repo_dirs, unsafe_pickle,
                                                verify_checksum, bag_segment_policy)
        files = [(input_path, "bag")] + [(m.path, "model") for m in members]
    else:
        m = load_member(input_path, unsafe_pickle=unsafe_pickle, verify_checksum=verify_checksum)
        members, weights, bag_seg = [m], [[1.0] * len(m.sources)], None
        files = [(input_path, "model")]
    config = build_config(members, weights, is_bag, bag_seg)

    entries, src_dtypes = [], {}
    for i, m in enumerate(members):
        prefix = f"models.{i}." if is_bag else ""
        for k, t in m.state.items():
            src_dtypes[str(t.dtype).replace("torch.", "")] = src_dtypes.get(str(t.dtype).replace("torch.", ""), 0) + 1
            if not keep_dtype and t.dtype != torch.float32:
                t = t.to(torch.float32)  # f16/bf16 -> f32 exact; f64 -> f32 rounds like load_state_dict
            entries.append(entry_from_torch(prefix + k, t))
    demucs_version, torch_version = _versions()
    seen, source_files = set(), []
    for p, role in files:
        if p in seen:
            continue
        seen.add(p)
        source_files.append({"name": os.path.basename(p), "role": role,
                             "bytes": os.path.getsize(p), "sha256": sha256_file(p)})
    import datetime
    import time
    when = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))  # reproducible builds convention
    metadata = {
        "format": "cadenza",
        "model": MODEL_NAME,
        "config": json.dumps(config, separators=(",", ":")),
        "source": source_files[0]["name"],
        "source_sha256": source_files[0]["sha256"],
        "source_format": "demucs-bag-yaml" if is_bag else "demucs-th",
        "source_files": json.dumps(source_files, separators=(",", ":")),
        "source_dtypes": json.dumps(src_dtypes, separators=(",", ":")),
        "stored_dtype": "as-source" if keep_dtype else "F32",
        "converter": f"cadenza-convert {CONVERTER_VERSION}",
        "demucs_version": demucs_version,
        "torch_version": torch_version,
        "converted_at": datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return entries, metadata
