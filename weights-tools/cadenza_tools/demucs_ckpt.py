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


def check_envelope(kw, where):
    """Refuse configurations the cadenza runtime does not implement. `kw` holds every
    HTDemucs.__init__ argument with its effective value."""
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    src = kw["sources"]
    need(isinstance(src, (list, tuple)) and len(src) > 0
         and all(isinstance(s, str) and s for s in src) and len(set(src)) == len(src),
         f"sources must be a non-empty list of distinct names, found {src!r}")
    for name in ("audio_channels", "channels", "depth", "nfft", "kernel_size", "stride",
                 "context", "context_enc", "norm_starts", "dconv_depth", "t_layers", "t_heads",
                 "bottom_channels", "samplerate", "dconv_mode"):
        need(_is_int(kw[name]), f"{name} must be an integer, found {kw[name]!r}")
    for name in ("growth", "dconv_comp", "freq_emb", "emb_scale", "t_hidden_scale",
                 "t_max_period", "t_weight_pos_embed"):
        need(_is_num(kw[name]), f"{name} must be a finite number, found {kw[name]!r}")
    if problems:
        raise ConvertError(f"{where}: " + "; ".join(problems))

    need(kw["audio_channels"] >= 1, f"audio_channels={kw['audio_channels']} must be >= 1")
    need(kw["samplerate"] >= 1, f"samplerate={kw['samplerate']} must be >= 1")
    need(kw["channels"] >= 1 and kw["depth"] >= 1 and kw["growth"] > 0,
         f"channels={kw['channels']}, depth={kw['depth']}, growth={kw['growth']} must be positive")
    need(kw["cac"] is True,
         f"cac={kw['cac']!r}: only complex-as-channels models are supported (magnitude masking / "
         f"Wiener filtering is not implemented by the cadenza runtime)")
    need(kw["wiener_iters"] == 0 and kw["end_iters"] == 0,
         f"wiener_iters={kw['wiener_iters']}, end_iters={kw['end_iters']}: Wiener filtering is not "
         f"implemented by the cadenza runtime (both must be 0)")
    need(not kw["multi_freqs"],
         f"multi_freqs={kw['multi_freqs']!r}: frequency-band splitting (MultiWrap) is not implemented "
         f"by the cadenza runtime (must be empty)")
    need(kw["rewrite"] is True, f"rewrite={kw['rewrite']!r}: layers without the rewrite conv are not supported")
    need(kw["use_train_segment"] is True,
         f"use_train_segment={kw['use_train_segment']!r}: only fixed-segment models are supported")
    need(kw["channels_time"] in (None, kw["channels"]),
         f"channels_time={kw['channels_time']!r}: a time branch of different width is not supported")
    need(kw["kernel_size"] == 8 and kw["stride"] == 4,
         f"kernel_size={kw['kernel_size']}, stride={kw['stride']}: only 8/4 (the published models) "
         f"is supported")
    need(kw["context"] >= 0 and kw["context_enc"] >= 0,
         f"context={kw['context']}, context_enc={kw['context_enc']} must be >= 0")
    need(kw["norm_starts"] >= kw["depth"],
         f"norm_starts={kw['norm_starts']} < depth={kw['depth']}: GroupNorm inside encoder/decoder "
         f"layers is not implemented by the cadenza runtime (the published models have none)")
    need(kw["dconv_mode"] in (0, 1, 2, 3), f"dconv_mode={kw['dconv_mode']} must be 0..3")
    need(kw["dconv_depth"] >= 1,
         f"dconv_depth={kw['dconv_depth']}: must be >= 1 (a negative depth disables dilation, "
         f"which is not supported)")
    need(kw["freq_emb"] >= 0, f"freq_emb={kw['freq_emb']} must be >= 0")
    nfft = kw["nfft"]
    need(nfft >= 16 and (nfft & (nfft - 1)) == 0, f"nfft={nfft} must be a power of two >= 16")
    # every layer must be a plain frequency layer: no branch merge (HDemucs-style depth)
    if nfft >= 16 and kw["depth"] >= 1 and kw["kernel_size"] == 8 and kw["stride"] == 4:
        freqs = nfft // 2
        for index in range(kw["depth"]):
            if freqs <= kw["kernel_size"]:
                problems.append(
                    f"depth={kw['depth']} with nfft={nfft}: encoder layer {index} sees {freqs} "
                    f"frequency bins (<= kernel_size {kw['kernel_size']}), where HTDemucs merges the "
                    f"time and frequency branches; that path is not implemented by the cadenza runtime")
                break
            freqs //= kw["stride"]
    # DConv hidden widths
    if kw["dconv_mode"] and kw["dconv_comp"] > 0:
        ch = kw["channels"]
        for index in range(kw["depth"]):
            if int(ch / kw["dconv_comp"]) < 1:
                problems.append(f"dconv_comp={kw['dconv_comp']} leaves layer {index} "
                                f"({ch} channels) a DConv hidden width of 0")
                break
            ch = int(kw["growth"] * ch)
    # transformer
    need(kw["t_layers"] >= 1, f"t_layers={kw['t_layers']}: models without the cross-domain "
                              f"transformer are not supported")
    need(kw["t_emb"] == "sin", f"t_emb={kw['t_emb']!r}: only the 'sin' positional embedding is "
                               f"supported ('cape'/'scaled' are not implemented by the cadenza runtime)")
    need(kw["t_sin_random_shift"] == 0,
         f"t_sin_random_shift={kw['t_sin_random_shift']}: a random positional shift at inference "
         f"makes the output random; only 0 is supported")
    for name in ("t_sparse_self_attn", "t_sparse_cross_attn", "t_auto_sparsity"):
        need(not kw[name], f"{name}={kw[name]!r}: sparse attention is not implemented by the "
                           f"cadenza runtime")
    need(kw["t_norm_in"] is True, f"t_norm_in={kw['t_norm_in']!r}: only LayerNorm input norms are supported")
    need(not kw["t_group_norm"], f"t_group_norm={kw['t_group_norm']!r}: only LayerNorm inside "
                                 f"transformer layers is supported")
    need(kw["t_norm_first"] is True, f"t_norm_first={kw['t_norm_first']!r}: only pre-norm "
                                     f"transformer layers are supported")
    need(kw["t_norm_out"] in (True, 1), f"t_norm_out={kw['t_norm_out']!r}: only GroupNorm(1) "
                                        f"after each transformer layer is supported")
    need(kw["t_layer_scale"] is True, f"t_layer_scale={kw['t_layer_scale']!r}: only LayerScale "
                                      f"transformer layers are supported")
    need(kw["t_gelu"] is True, f"t_gelu={kw['t_gelu']!r}: only GELU transformer layers are supported")
    need(kw["t_cross_first"] is False, f"t_cross_first={kw['t_cross_first']!r}: only self-attention "
                                       f"first (the published layout) is supported")
    dim = kw["bottom_channels"] or int(kw["channels"] * kw["growth"] ** (kw["depth"] - 1))
    need(kw["bottom_channels"] >= 0, f"bottom_channels={kw['bottom_channels']} must be >= 0")
    need(kw["t_heads"] >= 1 and dim % kw["t_heads"] == 0,
         f"transformer width {dim} is not divisible by t_heads={kw['t_heads']}")
    need(dim % 4 == 0, f"transformer width {dim} must be a multiple of 4 (2-D sin embedding)")
    need(int(dim * kw["t_hidden_scale"]) >= 1, f"t_hidden_scale={kw['t_hidden_scale']} gives an empty FFN")
    if problems:
        raise ConvertError(f"{where}: unsupported configuration: " + "; ".join(problems))


def derived_config(kw):
    """Values that follow from the kwargs, spelled out for the C loader (informative: the
    loader still checks every tensor shape)."""
    depth, growth = kw["depth"], kw["growth"]
    enc = []
    ch = kw["channels"]
    for _ in range(depth):
        enc.append(ch)
        ch = int(growth * ch)
    tdim = kw["bottom_channels"] or enc[-1]
    freqs = [kw["nfft"] // 2]
    for _ in range(depth):
        freqs.append(freqs[-1] // kw["stride"])
    kinds = ["self" if i % 2 == 0 else "cross" for i in range(kw["t_layers"])]
    return {
        "hop_length": kw["nfft"] // 4,
        "freq_bins": kw["nfft"] // 2,
        "freq_bins_per_layer": freqs,
        "encoder_channels": enc,
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
    check_envelope(eff, where)

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
