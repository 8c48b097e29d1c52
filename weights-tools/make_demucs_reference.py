#!/usr/bin/python3
"""Builds HTDemucs checkpoints in the real upstream format from seeded random weights, and
PyTorch reference outputs for them (docs/weights.md, "Reference files").

    weights-tools/make_demucs_reference.py [--out DIR] [--configs tiny,tiny_bag,htdemucs,htdemucs_6s]
                                           [--device cpu|cuda] [--strict] [--hermitian-istft]
                                           [--checkpoints-only] [--full-reference] [--forward-only]
                                           [--batch N] [--stages all|outputs] [--reuse] [--threads N]

Checkpoints are written exactly as demucs writes them: demucs.states.serialize_model (klass,
args, kwargs, state, training_args; fp16 state with half=True) saved with
demucs.states.save_with_checksum (<sig>-<sha256[:8]>.th), bags as a yaml like
demucs/remote/htdemucs_ft.yaml. References are computed from the model as *loaded back* from
that file by demucs.states.load_model, so they use exactly the stored (e.g. fp16-rounded)
weights.

Random weights. Default init leaves LayerScale at 1e-4 (transformer) and 1e-3 (DConv), which
would hide errors in those branches, so after construction every parameter is redrawn from a
seeded generator (torch.Generator, seed = --seed + a per-config offset), module by module in
named_modules() order:
    Conv*/Linear/MHA in_proj weights  N(0, 1/fan_in)   fan_in = in_channels/groups x kernel
                                                        elements (ConvTranspose: in_channels x
                                                        kernel / stride, the taps per output)
    their biases                      N(0, 0.1^2)
    LayerNorm/GroupNorm weight        U(0.5, 1.5);  bias N(0, 0.1^2)
    LayerScale scale                  U(0.1, 1.0)   (so the DConv and attention/FFN branches
                                                     contribute as much as the residual)
    freq embedding table              N(0, 0.1^2)   (added as 0.2 x 10 x table)
so activations stay O(1) through every branch.
"""
import argparse
import contextlib
import copy
import fractions
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)


def _reexec_with_debian_python():
    """`python3` may be another interpreter (pyenv) without torch: use Debian's."""
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        raise


_reexec_with_debian_python()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cadenza_tools import CONVERTER_VERSION, demucs_ckpt, safetensors_io  # noqa: E402

SOURCES4 = ["drums", "bass", "other", "vocals"]
SOURCES6 = ["drums", "bass", "other", "vocals", "guitar", "piano"]

# conf/config.yaml `htdemucs:` section (facebookresearch/demucs): train.get_model passes all of
# it as kwargs, so published packages carry every key.
HTDEMUCS_CONF = dict(
    channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0, end_iters=0,
    wiener_residual=False, cac=True, depth=4, rewrite=True, multi_freqs=[], multi_freqs_depth=3,
    freq_emb=0.2, emb_scale=10, emb_smooth=True, kernel_size=8, stride=4, time_stride=2,
    context=1, context_enc=0, norm_starts=4, norm_groups=4, dconv_mode=1, dconv_depth=2,
    dconv_comp=8, dconv_init=1e-3, bottom_channels=0, t_layers=5, t_hidden_scale=4.0, t_heads=8,
    t_dropout=0.0, t_layer_scale=True, t_gelu=True, t_emb="sin", t_max_positions=10000,
    t_max_period=10000.0, t_weight_pos_embed=1.0, t_cape_mean_normalize=True,
    t_cape_augment=True, t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], t_sin_random_shift=0,
    t_norm_in=True, t_norm_in_group=False, t_group_norm=False, t_norm_first=True,
    t_norm_out=True, t_weight_decay=0.0, t_lr=None, t_sparse_self_attn=False,
    t_sparse_cross_attn=False, t_mask_type="diag", t_mask_random_seed=42,
    t_sparse_attn_window=400, t_global_window=100, t_sparsity=0.95, t_auto_sparsity=False,
    t_cross_first=False, rescale=0.1,
)


def _kwargs(sources, segment, **over):
    kw = dict(HTDEMUCS_CONF)
    kw.update(sources=list(sources), audio_channels=2, samplerate=44100, segment=segment)
    kw.update(over)
    return kw


# grids/mmi.py: dconv_mode 3, t_dropout 0.02, t_layers 5, bottom_channels 512; segment as
# tools/export.py stores it for 955717e8 (separation.md 1.2).
HTDEMUCS_KW = _kwargs(SOURCES4, fractions.Fraction(39, 5), dconv_mode=3, t_dropout=0.02,
                      bottom_channels=512)
HTDEMUCS_6S_KW = _kwargs(SOURCES6, fractions.Fraction(39, 5), dconv_mode=3, t_dropout=0.02,
                         bottom_channels=0)
# tiny: every block of the published model, small. 0.58 s = 25578 samples, so the time branch
# zero-pads before every encoder (25578->25580, 6395->6396, 1599->1600; 400 time tokens) and
# the STFT pads 199.8 hops to 200 frames; nfft 512 -> 256 bins -> 64 -> 16 -> 4 at the bottom
# (800 freq tokens).
TINY_KW = _kwargs(SOURCES4, fractions.Fraction(29, 50), channels=16, nfft=512, depth=3,
                  dconv_mode=3, bottom_channels=32, t_layers=3, t_heads=2)


def _seg(samples):
    """A segment of exactly `samples` samples at 44.1 kHz (int(Fraction * 44100) == samples)."""
    return fractions.Fraction(samples, 44100)


# Variants: small configurations that take the code paths the published models do not (each
# a fraction of a second on one CPU core; the forward reference only, B = 2, every stage).
VARIANT_KW = {
    # GroupNorm norm1/norm2 in every encoder/decoder layer (norm_starts 0), post-norm ReLU
    # transformer without LayerScale, DConv without dilation (negative depth), context 0 in
    # the decoders and 1 in the encoders; 7001 samples (odd: the time branch pads).
    "norms": _kwargs(SOURCES4, _seg(7001), channels=8, nfft=512, depth=3, norm_starts=0,
                     norm_groups=4, dconv_mode=3, dconv_depth=-2, dconv_comp=4, context=0,
                     context_enc=1, t_layers=2, t_heads=2, t_norm_first=False, t_gelu=False,
                     t_layer_scale=False),
    # cross-attention first (cross, self, cross), GroupNorm(1) token norms on the transformer
    # input (t_norm_in_group) and inside its layers (t_group_norm), no rewrite convs (so no
    # GLU in the layers), mono audio, 3 sources, bottom channels 24 with 3 heads.
    "crossfirst": _kwargs(["drums", "bass", "vocals"], _seg(6007), audio_channels=1, channels=8,
                          nfft=512, depth=3, rewrite=False, dconv_mode=1, dconv_comp=3,
                          bottom_channels=24, t_layers=3, t_heads=3, t_hidden_scale=2.0,
                          t_cross_first=True, t_norm_in=False, t_norm_in_group=True,
                          t_group_norm=True),
    # the branches merge at the last layer: nfft 256, 128 -> 32 -> 8 bins, the last freq
    # conv takes all 8 (no padding), the time encoder is empty (conv only, injected), the
    # transformer sees 1 x T freq tokens; the empty time decoder takes the freq decoder's
    # pre-conv_tr tensor.
    "merge": _kwargs(SOURCES4, _seg(5000), channels=8, nfft=256, depth=3, dconv_mode=3,
                     dconv_comp=4, t_layers=2, t_heads=2),
    # merge at layer 2 then two time-only layers on the merged branch (time_stride 3), no
    # transformer (t_layers 0; the unused bottom convs are still in the file), a wider time
    # branch (channels_time 6 vs 4: the merge takes the max), GroupNorm from layer 2 on
    # (including norm2 of the empty time decoder).
    "mergetime": _kwargs(SOURCES4, _seg(5000), channels=4, channels_time=6, nfft=256, depth=5,
                         time_stride=3, norm_starts=2, norm_groups=4, dconv_mode=3, dconv_comp=4,
                         bottom_channels=16, t_layers=0),
    # 6 sources (htdemucs_6s style: bottom_channels 0), nfft 256, 4 heads, no norm_out after
    # the transformer layers, other positional embedding weight / period, FFN x2.
    "six": _kwargs(SOURCES6, _seg(4100), channels=16, nfft=256, depth=2, dconv_mode=1,
                   bottom_channels=0, t_layers=2, t_heads=4, t_norm_out=False,
                   t_hidden_scale=2.0, t_weight_pos_embed=0.5, t_max_period=1000.0),
    # an 80-sample segment: shorter than the STFT's reflect padding (3 hop / 2 = 192), so
    # demucs' pad1d zero-pads first; 1 STFT frame; kernel 4 / stride 2; no freq embedding,
    # no DConv, no input norm of the transformer (Identity), use_train_segment False.
    "short": _kwargs(SOURCES4, _seg(80), channels=8, nfft=512, depth=3, kernel_size=4, stride=2,
                     freq_emb=0.0, dconv_mode=0, t_layers=2, t_heads=2, t_norm_in=False,
                     use_train_segment=False),
}
VARIANTS = list(VARIANT_KW)

# name -> (kwargs, half, seed offset, members (for bags))
CONFIGS = {
    "tiny": dict(kw=TINY_KW, half=False, seed=0, sig="tiny"),
    "tiny_bag": dict(kw=TINY_KW, half=True, seed=100, members=4, sig="tinybag"),
    "htdemucs": dict(kw=HTDEMUCS_KW, half=True, seed=200, sig="htdemucs"),
    "htdemucs_6s": dict(kw=HTDEMUCS_6S_KW, half=True, seed=300, sig="htdemucs6s"),
}
for _i, _name in enumerate(VARIANTS):
    CONFIGS[_name] = dict(kw=VARIANT_KW[_name], half=False, seed=400 + 10 * _i, sig=_name,
                          variant=True)

TOLERANCE_NOTES = (
    "Compare each entry by relative L2 error ||y - y_ref|| / ||y_ref||: <= 1e-5 in strict fp32 "
    "(TF32 off on both sides), <= 1e-3 with TF32, <= 1e-2 and >= 40 dB SNR on audio outputs for "
    "fp16/bf16. The reference is PyTorch fp32; where it ran on CUDA with strict=false, cuDNN "
    "convolutions used TF32 and the reference is not fp32-exact.")


# ----------------------------------------------------------------------------- random weights

def randomise(model, seed):
    import torch.nn as nn
    from demucs.transformer import LayerScale
    g = torch.Generator().manual_seed(seed)

    def normal_(p, std, mean=0.0):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * std + mean)

    def uniform_(p, lo, hi):
        with torch.no_grad():
            p.copy_(torch.rand(p.shape, generator=g) * (hi - lo) + lo)

    done = set()
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            k = int(np.prod(m.kernel_size))
            normal_(m.weight, (m.in_channels // m.groups * k) ** -0.5)
        elif isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            k = int(np.prod(m.kernel_size)) / int(np.prod(m.stride))
            normal_(m.weight, (m.in_channels * k) ** -0.5)
        elif isinstance(m, nn.Linear):
            normal_(m.weight, m.in_features ** -0.5)
        elif isinstance(m, nn.MultiheadAttention):
            normal_(m.in_proj_weight, m.embed_dim ** -0.5)
            normal_(m.in_proj_bias, 0.1)
            done.update({id(m.in_proj_weight), id(m.in_proj_bias)})
            continue
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            uniform_(m.weight, 0.5, 1.5)
            normal_(m.bias, 0.1)
        elif isinstance(m, LayerScale):
            uniform_(m.scale, 0.1, 1.0)
        elif isinstance(m, nn.Embedding):
            normal_(m.weight, 0.1)
        else:
            continue
        if getattr(m, "bias", None) is not None and not isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            normal_(m.bias, 0.1)
        for p in m.parameters(recurse=False):
            done.add(id(p))
    left = [n for n, p in model.named_parameters() if id(p) not in done]
    if left:
        raise RuntimeError(f"parameters not re-randomised: {left}")


# ----------------------------------------------------------------------------- checkpoints

def build_checkpoint(kw, seed, half, out_dir, sig):
    """Construct, randomise, serialize_model, save_with_checksum. Returns the file path."""
    from demucs.htdemucs import HTDemucs
    from demucs.states import serialize_model, save_with_checksum
    from omegaconf import OmegaConf
    from pathlib import Path
    torch.manual_seed(seed)
    model = HTDemucs(**copy.deepcopy(kw))
    randomise(model, seed)
    training_args = OmegaConf.create({"note": "cadenza test checkpoint: seeded random weights",
                                      "seed": seed, "model": "htdemucs"})
    pkg = serialize_model(model, training_args, half=half)
    pkg["metrics"] = ({"sdr": np.float64(0.0)}, {"sdr": 0.0})  # as tools/export.py adds
    before = set(os.listdir(out_dir))
    save_with_checksum(pkg, Path(out_dir) / f"{sig}.th")
    new = [f for f in set(os.listdir(out_dir)) - before if f.startswith(sig + "-")]
    if not new:  # same content as an existing file: find it by name
        new = [f for f in os.listdir(out_dir) if f.startswith(sig + "-") and f.endswith(".th")]
    assert len(new) == 1, new
    return os.path.join(out_dir, new[0])


def remove_old(out_dir, sig):
    for f in os.listdir(out_dir):
        if f.startswith(sig + "-") and f.endswith(".th"):
            os.unlink(os.path.join(out_dir, f))


def make_checkpoints(name, out_dir, seed):
    c = CONFIGS[name]
    if "members" in c:
        paths = []
        sigs = []
        for i in range(c["members"]):
            sig = f"{c['sig']}{i}"
            remove_old(out_dir, sig)
            paths.append(build_checkpoint(c["kw"], seed + c["seed"] + i, c["half"], out_dir, sig))
            sigs.append(sig)
        n = len(c["kw"]["sources"])
        weights = [[1.0 if k == i else 0.0 for k in range(n)] for i in range(len(sigs))]
        ypath = os.path.join(out_dir, f"{name}.yaml")
        with open(ypath, "w") as f:
            f.write(f"models: {sigs!r}\nweights: [\n")
            for row in weights:
                f.write("  [" + ", ".join(f"{w:.0f}." for w in row) + "],\n")
            f.write("]\n")
        return ypath
    remove_old(out_dir, c["sig"])
    return build_checkpoint(c["kw"], seed + c["seed"], c["half"], out_dir, c["sig"])


def existing_checkpoint(name, out_dir):
    c = CONFIGS[name]
    if "members" in c:
        y = os.path.join(out_dir, f"{name}.yaml")
        return y if os.path.exists(y) else None
    f = [x for x in os.listdir(out_dir) if x.startswith(c["sig"] + "-") and x.endswith(".th")]
    return os.path.join(out_dir, f[0]) if len(f) == 1 else None


def hermitian_istft(model):
    """Zero the imaginary part of the DC bin before HTDemucs' iSTFT (the Nyquist bin is added
    as zeros there). The network's output there is arbitrary; a C2R transform assumes a
    Hermitian input. PyTorch on the CPU (pocketfft) and cuFFT in fp64 ignore it, but cuFFT's
    fp32 C2R at n=4096 does not (measured on an H100, torch 2.11: rel L2 1.6e-2 on random
    spectra): a CUDA reference of a nfft=4096 model is then not the CPU's function."""
    orig = model._ispec

    def _ispec(z, length=None, scale=0):
        z = z.clone()
        dc = z[..., 0, :]
        z[..., 0, :] = torch.complex(dc.real, torch.zeros_like(dc.real))
        return orig(z, length, scale)
    model._ispec = _ispec


def load_for_reference(path, device, hermitian=False):
    """The model(s) as upstream loads them (demucs.states.load_model / repo.BagOnlyRepo)."""
    from demucs.states import load_model as _load_model
    from demucs.apply import BagOfModels
    import inspect
    import yaml

    def load_model(p):
        # demucs.states.load_model(path) calls torch.load(path, 'cpu'), which torch >= 2.6
        # refuses (weights_only): load the package the same way, then hand load_model the dict
        kw = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
        return _load_model(torch.load(p, "cpu", **kw))
    if path.endswith(".yaml"):
        bag = yaml.safe_load(open(path))
        d = os.path.dirname(path)
        models = []
        for sig in bag["models"]:
            f = [x for x in os.listdir(d) if x.startswith(sig + "-") and x.endswith(".th")]
            models.append(load_model(os.path.join(d, f[0])))
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    else:
        model = load_model(path)
    if hermitian:
        for m in (model.models if isinstance(model, BagOfModels) else [model]):
            hermitian_istft(m)
    model.to(device).eval()
    return model


# ----------------------------------------------------------------------------- inputs

def test_signal(gen, batch, channels, length, samplerate, loudness):
    """Sines with random pitch/amplitude/stereo phase + white noise + a DC offset, per item."""
    t = torch.arange(length, dtype=torch.float64) / samplerate
    out = torch.zeros(batch, channels, length, dtype=torch.float64)
    for b in range(batch):
        for _ in range(8):
            f = float(torch.empty(1).uniform_(40, 6000, generator=gen))
            a = float(torch.empty(1).uniform_(0.02, 0.2, generator=gen))
            env = 0.5 + 0.5 * torch.sin(2 * np.pi * float(torch.rand(1, generator=gen) * 3) * t)
            for c in range(channels):
                ph = float(torch.rand(1, generator=gen)) * 2 * np.pi
                out[b, c] += a * env * torch.sin(2 * np.pi * f * t + ph)
        out[b] += 0.05 * torch.randn(channels, length, generator=gen, dtype=torch.float64)
        out[b] += 0.01 * (b + 1)
        out[b] *= loudness[b % len(loudness)]
    return out.float()


# ----------------------------------------------------------------------------- capture

class Recorder:
    """Forward hooks and method wrappers on one HTDemucs that record every stage."""

    def __init__(self, model):
        self.model, self.out, self.on, self.handles = model, {}, False, []
        m = model
        self.depth = len(m.encoder)

        def put(name, t):
            if self.on:
                if name in self.out:
                    raise RuntimeError(f"stage {name} recorded twice")
                self.out[name] = t.detach().cpu().clone()

        self.put = put

        def wrap(attr, fn):
            orig = getattr(m, attr)

            def w(*a, **k):
                return fn(orig, *a, **k)
            setattr(m, attr, w)

        def spec(orig, x):
            z = orig(x)
            put("forward.spec", torch.view_as_real(z))
            return z

        def magnitude(orig, z):
            y = orig(z)  # (B,2C,F,T): a permutation of forward.spec, not stored again
            # the statistics, with the very ops of HTDemucs.forward
            mean = y.mean(dim=(1, 2, 3), keepdim=True)
            std = y.std(dim=(1, 2, 3), keepdim=True)
            put("forward.norm.mean", mean)
            put("forward.norm.std", std)
            return y

        def mask(orig, z, mm):
            zout = orig(z, mm)
            put("forward.spec_out", torch.view_as_real(zout))
            return zout

        def ispec(orig, z, length=None, scale=0):
            y = orig(z, length, scale)
            put("forward.istft", y)
            return y

        wrap("_spec", spec)
        wrap("_magnitude", magnitude)
        wrap("_mask", mask)
        wrap("_ispec", ispec)

        def fwd(name, pick=lambda o: o):
            return lambda mod, inp, out: put(name, pick(out))

        def pre(name):
            return lambda mod, inp: put(name, inp[0])

        H = self.handles
        H.append(m.encoder[0].register_forward_pre_hook(pre("forward.freq.in")))
        H.append(m.tencoder[0].register_forward_pre_hook(pre("forward.time.in")))
        # when the frequency axis collapses (merged branches), the time branch has fewer
        # layers than `depth`: tencoder[i] / tdecoder[k] exist for i, k < n_time only
        self.n_time = len(m.tencoder)
        for i in range(self.depth):
            H.append(m.encoder[i].register_forward_hook(fwd(f"forward.freq.enc.{i}")))
            H.append(m.decoder[i].register_forward_hook(fwd(f"forward.freq.dec.{i}", lambda o: o[0])))
        for i in range(self.n_time):
            H.append(m.tencoder[i].register_forward_hook(fwd(f"forward.time.enc.{i}")))
            H.append(m.tdecoder[i].register_forward_hook(fwd(f"forward.time.dec.{i}", lambda o: o[0])))
        if m.freq_emb is not None:
            assert self.depth > 1
            H.append(m.encoder[1].register_forward_pre_hook(pre("forward.freq.enc.0.emb")))
        if m.bottom_channels and m.crosstransformer is not None:
            H.append(m.channel_upsampler.register_forward_hook(fwd("forward.bottom.up.freq")))
            H.append(m.channel_upsampler_t.register_forward_hook(fwd("forward.bottom.up.time")))
            H.append(m.channel_downsampler.register_forward_hook(fwd("forward.bottom.down.freq")))
            H.append(m.channel_downsampler_t.register_forward_hook(fwd("forward.bottom.down.time")))
        ct = m.crosstransformer
        if ct is not None:  # t_layers = 0: no transformer (nor bottom convs run)
            H.append(ct.layers[0].register_forward_pre_hook(pre("forward.transformer.in.freq")))
            H.append(ct.layers_t[0].register_forward_pre_hook(pre("forward.transformer.in.time")))
            for j in range(len(ct.layers)):
                H.append(ct.layers[j].register_forward_hook(fwd(f"forward.transformer.layer.{j}.freq")))
                H.append(ct.layers_t[j].register_forward_hook(fwd(f"forward.transformer.layer.{j}.time")))
            H.append(ct.register_forward_hook(fwd("forward.transformer.out.freq", lambda o: o[0])))
            H.append(ct.register_forward_hook(fwd("forward.transformer.out.time", lambda o: o[1])))

    @contextlib.contextmanager
    def recording(self):
        self.on = True
        try:
            yield
        finally:
            self.on = False


ENTRY_DOC = {
    "forward.mix": "(B,C,L) input of HTDemucs.forward, L = segment_samples; B items (default 2) of different loudness",
    "forward.spec": "(B,C,F,T,2) z = _spec(mix) as view_as_real: F = nfft/2 bins (Nyquist dropped), T = ceil(L/hop) frames",
    "forward.norm.mean": "(B,1,1,1) mean over (2C,F,T) of the CaC spectrogram x (x[b,2c+r,f,t] = forward.spec[b,c,f,t,r])",
    "forward.norm.std": "(B,1,1,1) unbiased std over (2C,F,T) of the same",
    "forward.norm.meant": "(B,1,1) mean of mix over (C,L)",
    "forward.norm.stdt": "(B,1,1) unbiased std of mix over (C,L)",
    "forward.freq.in": "(B,2C,F,T) (x - mean) / (1e-5 + std), input of encoder[0]",
    "forward.time.in": "(B,C,L) (mix - meant) / (1e-5 + stdt), input of tencoder[0]",
    "forward.freq.enc.{i}": "(B,C_i,F_i,T) output of encoder[i] (encoder 0: before the freq embedding); (B,C_i,T_i) for the time layers after the branches merge",
    "forward.freq.enc.0.emb": "(B,C_0,F_1,T) encoder[0] output + freq_emb (the skip saved for the last decoder)",
    "forward.time.enc.{i}": "(B,C_i,L_i) output of tencoder[i], i < n_time = len(tencoder) (depth unless the branches merge; the merge layer's empty tencoder gives its conv output, injected into encoder[i])",
    "forward.bottom.up.freq": "(B,D,F_b*T) channel_upsampler output (freq rows flattened f-major: index f*T+t)",
    "forward.bottom.up.time": "(B,D,L_b) channel_upsampler_t output",
    "forward.transformer.in.freq": "(B,T*F_b,D) tokens after norm_in + 2-D sin embedding, token index t*F_b+f",
    "forward.transformer.in.time": "(B,L_b,D) tokens after norm_in_t + 1-D sin embedding",
    "forward.transformer.layer.{j}.freq": "(B,T*F_b,D) output of crosstransformer.layers[j] (even j self, odd j cross)",
    "forward.transformer.layer.{j}.time": "(B,L_b,D) output of crosstransformer.layers_t[j]",
    "forward.transformer.out.freq": "(B,D,F_b,T) crosstransformer output, freq branch",
    "forward.transformer.out.time": "(B,D,L_b) crosstransformer output, time branch",
    "forward.bottom.down.freq": "(B,C_b,F_b*T) channel_downsampler output",
    "forward.bottom.down.time": "(B,C_b,L_b) channel_downsampler_t output",
    "forward.freq.dec.{k}": "(B,C,F,T) output of decoder[k], k=0 the deepest ((B,C,T) for time layers after the merge)",
    "forward.time.dec.{k}": "(B,C,L) output of tdecoder[k], k=0 the deepest of the n_time time decoders",
    "forward.spec_out": "(B,S,C,F,T,2) the spectrogram given to the iSTFT: the last decoder output viewed (B,S,2C,F,T), * std + mean, channel 2c+r -> [c,...,r] (_mask output as view_as_real)",
    "forward.istft": "(B,S,C,L) _ispec output: the frequency branch's waveform",
    "forward.time.out": "(B,S,C,L) time branch output viewed per source, * stdt + meant",
    "forward.output": "(B,S,C,L) HTDemucs.forward(mix) = forward.time.out + forward.istft",
    "short.mix": "(1,C,L_s) an input shorter than the segment (forward zero-pads it inside)",
    "short.output": "(1,S,C,L_s) HTDemucs.forward(short.mix)",
    "apply.mix": "(1,C,L_a) a track of 2.3 segments (the last chunk is shorter than a segment)",
    "apply.split.output": "(1,S,C,L_a) apply_model(model, mix, shifts=0, split=True, overlap=0.25)",
    "apply.shift.output": "(1,S,C,L_a) apply_model(..., shifts=1, split=True, overlap=0.25) with the shift offset fixed to metadata apply_shift_offsets",
    "separate.wav": "(C,L_a) the track given to api.Separator.separate_tensor (already at the model rate)",
    "separate.ref_mean": "() wav.mean(0).mean()",
    "separate.ref_std": "() wav.mean(0).std() (unbiased)",
    "separate.normalised": "(C,L_a) (wav - ref_mean) / (ref_std + 1e-8)",
    "separate.output": "(S,C,L_a) apply_model(normalised[None], shifts=0, overlap=0.25)[0] * (ref_std + 1e-8) + ref_mean",
    "bag.mix": "(1,C,L_a) a track of 2.3 segments",
    "bag.apply.output": "(1,S,C,L_a) apply_model(bag, mix, shifts=0, split=True, overlap=0.25)",
    "bag.shift.output": "(1,S,C,L_a) the same with shifts=1; member m's offset is metadata apply_shift_offsets[m]",
}


@contextlib.contextmanager
def fixed_shifts(offsets):
    """apply_model draws `random.randint(0, max_shift)` once per model per shift: replay `offsets`."""
    it = iter(offsets)
    used = []
    orig = random.randint

    def randint(a, b):
        v = next(it)
        assert a <= v <= b, (a, b, v)
        used.append(v)
        return v
    random.randint = randint
    try:
        yield used
    finally:
        random.randint = orig


def seconds(f):
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


def run_single_reference(name, path, device, seed, batch=2, stages="all", forward_only=False,
                         hermitian=False):
    from demucs.apply import apply_model
    model = load_for_reference(path, device, hermitian)
    rec = Recorder(model)
    C = model.audio_channels
    S = len(model.sources)
    sr = model.samplerate
    L = int(model.segment * sr)
    gen = torch.Generator().manual_seed(seed + 7)
    out = {}
    timings = {}
    B = batch
    mix = test_signal(gen, B, C, L, sr, loudness=[1.0, 0.25]).to(device)
    with torch.no_grad(), rec.recording():
        y, timings["forward"] = seconds(lambda: model(mix))
    if y.device.type == "cuda":
        torch.cuda.synchronize()
    if stages == "outputs":
        rec.out.clear()
    rec.out["forward.mix"] = mix.cpu()
    rec.out["forward.output"] = y.cpu()
    # the time branch's output and statistics, with the same ops as HTDemucs.forward
    meant = mix.mean(dim=(1, 2), keepdim=True)
    stdt = mix.std(dim=(1, 2), keepdim=True)
    rec.out["forward.norm.meant"] = meant.cpu()
    rec.out["forward.norm.stdt"] = stdt.cpu()
    if stages == "all":
        xt = rec.out[f"forward.time.dec.{rec.n_time - 1}"].to(device)
        rec.out["forward.time.out"] = (xt.view(B, S, -1, L) * stdt[:, None] + meant[:, None]).cpu()
    out.update(rec.out)
    for h in rec.handles:
        h.remove()
    if forward_only:
        return model, out, timings, []
    Ls = int(L * 0.6) | 1
    short = test_signal(gen, 1, C, Ls, sr, loudness=[0.5]).to(device)
    with torch.no_grad():
        out["short.mix"] = short.cpu()
        out["short.output"] = model(short).cpu()
    La = int(2.3 * L)
    amix = test_signal(gen, 1, C, La, sr, loudness=[0.7]).to(device)
    out["apply.mix"] = amix.cpu()
    r, timings["apply_shifts0"] = seconds(lambda: apply_model(model, amix, shifts=0, split=True, overlap=0.25))
    out["apply.split.output"] = r.cpu()
    offset = 1337 % (int(0.5 * sr) + 1)
    with fixed_shifts([offset]) as used:
        r = apply_model(model, amix, shifts=1, split=True, overlap=0.25)
    out["apply.shift.output"] = r.cpu()
    # api.Separator.separate_tensor's track normalisation around apply_model
    wav = amix[0]
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std()
    norm = (wav - mean) / (std + 1e-8)
    o = apply_model(model, norm[None], shifts=0, split=True, overlap=0.25)[0]
    o = o * (std + 1e-8) + mean
    out.update({"separate.wav": wav.cpu(), "separate.ref_mean": mean.cpu(), "separate.ref_std": std.cpu(),
                "separate.normalised": norm.cpu(), "separate.output": o.cpu()})
    return model, out, timings, used


def run_bag_reference(path, device, seed, hermitian=False):
    from demucs.apply import apply_model
    bag = load_for_reference(path, device, hermitian)
    m0 = bag.models[0]
    L = int(m0.segment * m0.samplerate)
    gen = torch.Generator().manual_seed(seed + 11)
    amix = test_signal(gen, 1, m0.audio_channels, int(2.3 * L), m0.samplerate, loudness=[0.7]).to(device)
    out = {"bag.mix": amix.cpu()}
    out["bag.apply.output"] = apply_model(bag, amix, shifts=0, split=True, overlap=0.25).cpu()
    offsets = [1337, 4242, 0, int(0.5 * m0.samplerate)][:len(bag.models)]
    offsets += [7] * (len(bag.models) - len(offsets))
    with fixed_shifts(offsets) as used:
        out["bag.shift.output"] = apply_model(bag, amix, shifts=1, split=True, overlap=0.25).cpu()
    return out, used


def write_reference(path, name, ckpt_path, entries, args, extra_meta, weights_path=None):
    """Writes the reference file; with weights_path also the converted checkpoint (exactly what
    `cadenza-convert demucs CKPT -o weights_path` writes: the same function)."""
    import demucs
    ents, meta_cfg = demucs_ckpt.convert(ckpt_path, verify_checksum=True)
    if weights_path:
        safetensors_io.write(weights_path, ents, meta_cfg)
    cfg = meta_cfg["config"]
    import hashlib
    h = hashlib.sha256()
    for e in ents:
        h.update(e.data)
    st = []
    for k, v in entries.items():
        if v.dtype != torch.float32:
            raise RuntimeError(f"reference entry {k} is {v.dtype}")
        st.append(safetensors_io.entry_from_torch(k, v))
    doc = {}
    for k in entries:
        key = k
        for pat in ENTRY_DOC:
            if "{" in pat:
                pre = pat.split("{")[0]
                post = pat.split("}")[1]
                rest = k[len(pre):len(k) - len(post)] if post else k[len(pre):]
                if k.startswith(pre) and k.endswith(post) and rest.isdigit():
                    key = pat
        doc[k] = ENTRY_DOC.get(key, "")
    ck = os.path.basename(ckpt_path)
    meta = {
        "format": "cadenza-reference",
        "version": "1",
        "model": "htdemucs",
        "name": name,
        "config": cfg,
        "checkpoint": ck,
        "checkpoint_sha256": demucs_ckpt.sha256_file(ckpt_path),
        "weights_sha256": h.hexdigest(),  # over the F32 tensor bytes in file order: equal weights
                                          # give equal digests whatever the pickle around them
        "seed": str(args.seed),
        "device": args.device,
        "strict": "true" if args.strict else "false",
        "istft_dc_imag": "zeroed" if args.hermitian_istft else "as computed (PyTorch's own FFT)",
        "torch_version": torch.__version__,
        "demucs_version": getattr(demucs, "__version__", "unknown"),
        "generator": f"make_demucs_reference.py (cadenza weights-tools {CONVERTER_VERSION})",
        "tolerance": TOLERANCE_NOTES,
        "entries": json.dumps(doc, separators=(",", ":")),
    }
    if args.device == "cuda":
        meta["cudnn_version"] = str(torch.backends.cudnn.version())
        meta["gpu"] = torch.cuda.get_device_name()
    meta.update(extra_meta)
    safetensors_io.write(path, st, meta)
    return sum(len(e.data) for e in st)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "build", "demucs-ref"))
    ap.add_argument("--configs", default="tiny,tiny_bag,htdemucs,htdemucs_6s",
                    help=f"comma-separated, from {list(CONFIGS)}; 'variants' stands for "
                         f"{','.join(VARIANTS)} (forward reference only)")
    ap.add_argument("--test-layout", action="store_true",
                    help="name the outputs as tests/models/make-refs.sh and the C tests expect: "
                         "htdemucs-<config>.safetensors (the checkpoint converted by cadenza-convert's "
                         "code) and htdemucs-<config>.ref.safetensors (the reference); single models only")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--strict", action="store_true",
                    help="exact fp32 on CUDA: TF32 off for matmul and cuDNN, deterministic algorithms")
    ap.add_argument("--checkpoints-only", action="store_true", help="write no reference outputs")
    ap.add_argument("--full-reference", action="store_true",
                    help="also make reference outputs for the full-size configs (by default only "
                         "on --device cuda: a CPU forward of htdemucs takes minutes)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--batch", type=int, default=2, help="batch of the forward reference (default 2)")
    ap.add_argument("--stages", choices=("all", "outputs"), default="all",
                    help="'outputs': store no intermediates (full-size intermediates are ~1 GB)")
    ap.add_argument("--forward-only", action="store_true",
                    help="only the forward reference (no short input, apply_model, separate)")
    ap.add_argument("--hermitian-istft", action="store_true",
                    help="zero Im(DC) before the iSTFT, as PyTorch's CPU FFT effectively does; "
                         "needed for CUDA references of nfft=4096 models (cuFFT fp32 C2R does not "
                         "ignore it). Recorded in the metadata")
    ap.add_argument("--reuse", action="store_true",
                    help="use the checkpoint already in --out for a config instead of building it "
                         "(e.g. one carried from another machine)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("make_demucs_reference: --device cuda but torch has no CUDA device")
        if args.strict:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            for fn in ("enable_flash_sdp", "enable_mem_efficient_sdp"):
                if hasattr(torch.backends.cuda, fn):
                    getattr(torch.backends.cuda, fn)(False)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    names = []
    for n in args.configs.split(","):
        names += VARIANTS if n == "variants" else [n] if n else []
    for n in names:
        if n not in CONFIGS:
            sys.exit(f"make_demucs_reference: unknown config {n!r}; known: {list(CONFIGS)}")
    for name in names:
        t0 = time.perf_counter()
        path = existing_checkpoint(name, out_dir) if args.reuse else None
        path = path or make_checkpoints(name, out_dir, args.seed)
        print(f"{name}: checkpoint {os.path.relpath(path)} ({time.perf_counter() - t0:.1f} s)", flush=True)
        variant = CONFIGS[name].get("variant", False)
        full = name.startswith("tiny") or variant or args.full_reference or args.device == "cuda"
        if args.checkpoints_only or not full:
            continue
        if "members" in CONFIGS[name] and (args.stages != "all" or args.forward_only):
            print(f"{name}: --stages/--forward-only do not apply to a bag; skipped")
            continue
        t0 = time.perf_counter()
        ref = os.path.join(out_dir, f"{name}.reference.safetensors")
        wpath = None
        if args.test_layout:
            if "members" in CONFIGS[name]:
                sys.exit(f"make_demucs_reference: --test-layout does not apply to the bag {name}")
            ref = os.path.join(out_dir, f"htdemucs-{name}.ref.safetensors")
            wpath = os.path.join(out_dir, f"htdemucs-{name}.safetensors")
        if "members" in CONFIGS[name]:
            entries, used = run_bag_reference(path, args.device, args.seed, args.hermitian_istft)
            nbytes = write_reference(ref, name, path, entries, args,
                                     {"apply_shift_offsets": json.dumps(used)})
        else:
            fonly = args.forward_only or variant
            _, entries, timings, used = run_single_reference(
                name, path, args.device, args.seed, args.batch, args.stages, fonly,
                args.hermitian_istft)
            nbytes = write_reference(ref, name, path, entries, args,
                                     {"apply_shift_offsets": json.dumps(used), "batch": str(args.batch),
                                      "stages": args.stages, "forward_only": str(fonly).lower(),
                                      "timings_s": json.dumps({k: round(v, 3) for k, v in timings.items()})},
                                     wpath)
        print(f"{name}: reference {os.path.relpath(ref)} ({len(entries)} entries, "
              f"{nbytes / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
