"""HTDemucs workloads of `make bench`: the one place that says what is measured for this model.

Both sides read the spec this module writes (bench/run.sh -> spec.json): bench_cadenza (C)
and bench_torch.py run exactly the workloads listed here, on the inputs written by
write_inputs() (seeded, never zeros). To add a model, add a module beside this one with the
same three functions (spec, write_inputs, torch_setup) and name it in bench/run.sh.

Workload kinds:
  segment  one HTDemucs.forward on [B, C, segment] (one 7.8 s segment per item)
  track    apply_model(model, mix, shifts=1, split=True, overlap=0.25) on a whole track
           (cadenza: cdz_separate with normalize off and the same fixed shift offset)
  op       one kernel alone (gemm, groupnorm_gelu, conv1d, conv2d, attention, stft, istft),
           timed with the L2 flushed between repetitions; flops/bytes give the roofline
"""
import os

import numpy as np

MODEL = "htdemucs"
# precision modes: cadenza's name -> PyTorch's. fp16/bf16 are PyTorch autocast; cadenza's
# HTDemucs runs strict and tf32 only for now (the others are reported "not supported yet").
MODES = ["strict", "tf32", "fp16", "bf16"]
TORCH_MODE = {"strict": "fp32_strict", "tf32": "tf32", "fp16": "fp16_autocast",
              "bf16": "bf16_autocast"}
CADENZA_MODES = ["strict", "tf32"]
# rel-L2 tolerance against the fp32-strict PyTorch reference (weights-tools TOLERANCE_NOTES);
# fp16/bf16 also need >= 40 dB SNR on audio outputs.
TOL = {"strict": 1e-5, "tf32": 3e-3, "fp16": 1e-2, "bf16": 1e-2}
TOL_OPS = {"strict": 1e-5, "tf32": 3e-3, "fp16": 1e-2, "bf16": 2e-2}
MIN_SNR_DB = 40.0
# torch.compile (inductor, dynamic=False) runs in this mode only: one compile (~2 min on an
# H100) is what fits the budget; tf32 is the mode nearest PyTorch's fp32 default.
COMPILE_MODE = "tf32"
# one shift offset for both sides (apply_model draws random.randint(0, sr/2))
SHIFT_OFFSET = 1337


def spec(small):
    """small: the CPU smoke test (tiny config, short track, small ops)."""
    if small:
        cfg, seg, C, S = "tiny", 25578, 2, 4
        batches, track_s, reps, track_reps = [1, 2], 1.5, 2, 1
        D, H, Lf, Lt, F0, T0 = 32, 2, 64, 50, 64, 50
        nfft, hop = 512, 128
    else:
        cfg, seg, C, S = "htdemucs", 343980, 2, 4
        batches, track_s, reps, track_reps = [1, 8, 32], 240.0, 10, 3
        # bottom of htdemucs: D 512, 8 heads; freq tokens 8 bins x 336 frames, time tokens 1344
        D, H, Lf, Lt, F0, T0 = 512, 8, 2688, 1344, 2048, 336
        nfft, hop = 4096, 1024
    sr = 44100
    wl = []
    for b in batches:
        wl.append(dict(name=f"segment_b{b}", kind="segment", batch=b, samples=seg,
                       audio_s=b * seg / sr, reps=reps if b < 32 else max(3, reps // 2)))
    wl.append(dict(name=f"track_{int(track_s)}s", kind="track", batch=1,
                   samples=int(track_s * sr), audio_s=track_s, reps=track_reps,
                   shifts=1, overlap=0.25, shift_offset=SHIFT_OFFSET % (sr // 2 + 1)))
    ops = []

    def op(name, kind, inputs, out, flops, params=None):
        nbytes = 4 * (sum(int(np.prod(s)) for s in inputs) + int(np.prod(out)))
        ops.append(dict(name=name, kind="op", op=kind, inputs=[list(s) for s in inputs],
                        out=list(out), flops=float(flops), bytes=float(nbytes),
                        params=params or {}, reps=max(reps, 20)))
    # transformer GEMMs (nn.Linear: x [M, K] . w[N, K]^T + b), freq branch tokens
    for nm, K, N in (("in_proj", D, 3 * D), ("out_proj", D, D), ("ffn_up", D, 4 * D),
                     ("ffn_down", 4 * D, D)):
        op(f"gemm_{nm}", "linear", [(Lf, K), (N, K), (N,)], (Lf, N), 2.0 * Lf * K * N)
    # attention: self (freq tokens) and cross (freq queries, time keys)
    hd = D // H
    op("attn_self", "attention", [(1, H, Lf, hd)] * 3, (1, H, Lf, hd), 4.0 * H * Lf * Lf * hd,
       dict(scale=hd ** -0.5))
    op("attn_cross", "attention", [(1, H, Lf, hd), (1, H, Lt, hd), (1, H, Lt, hd)],
       (1, H, Lf, hd), 4.0 * H * Lf * Lt * hd, dict(scale=hd ** -0.5))
    # the GroupNorm(1) + GELU chain of DConv (freq encoder 0: (B*F, C/8, T)) and a norm layer
    c0 = 48 if not small else 16
    for nm, shp, g in (("gn_gelu_dconv", (F0 // 4, c0 // 8, T0), 1),
                       ("gn_gelu_time", (1, c0 // 8, seg // 4), 1),
                       ("gn4_gelu_layer", (1, c0 * 8, F0 // 256 if not small else 4, T0), 4)):
        n = int(np.prod(shp))
        op(nm, "groupnorm_gelu", [shp, (shp[1],), (shp[1],)], shp, 12.0 * n, dict(groups=g))
    # convolutions: freq encoder 0 (Conv2d [8,1] stride [4,1]), time encoder 0 (Conv1d 8/4),
    # DConv dilated conv (Conv1d k3) on (B*F, C, T)
    fo = F0 // 4
    op("conv2d_enc0", "conv2d", [(1, 2 * C, F0, T0), (c0, 2 * C, 8, 1), (c0,)], (1, c0, fo, T0),
       2.0 * c0 * 2 * C * 8 * fo * T0, dict(stride=[4, 1], pad=[2, 0]))
    lt = seg // 4
    op("conv1d_tenc0", "conv1d", [(1, C, lt * 4), (c0, C, 8), (c0,)], (1, c0, lt - 1),
       2.0 * c0 * C * 8 * (lt - 1), dict(stride=4, pad=0, dilation=1))
    op("conv1d_dconv", "conv1d", [(fo, c0, T0), (c0 // 4, c0, 3), (c0 // 4,)], (fo, c0 // 4, T0),
       2.0 * (c0 // 4) * c0 * 3 * fo * T0, dict(stride=1, pad=2, dilation=2))
    # STFT / iSTFT of the model's spectrogram (n_fft, hop, Hann, center, normalized), B*C rows
    frames = seg // hop + 1
    fft_flops = 5.0 * nfft * np.log2(nfft) / 2 * frames * C  # ~real FFT cost, for the roofline
    op("stft", "stft", [(C, seg)], (C, nfft // 2 + 1, frames, 2), fft_flops,
       dict(n_fft=nfft, hop=hop))
    op("istft", "istft", [(C, nfft // 2 + 1, frames, 2)], (C, seg), fft_flops,
       dict(n_fft=nfft, hop=hop, length=seg))
    return dict(model=MODEL, config=cfg, samplerate=sr, channels=C, sources=S, segment=seg,
                modes=MODES, cadenza_modes=CADENZA_MODES, torch_mode=TORCH_MODE, tol=TOL,
                tol_ops=TOL_OPS, min_snr_db=MIN_SNR_DB, compile_mode=COMPILE_MODE, workloads=wl + ops,
                ceilings=dict(copy_bytes=(64 << 20) if small else (1 << 30),
                              gemm_n=256 if small else 8192, reps=3 if small else 10))


def audio(gen, batch, channels, length, sr):
    """The anchors' audio input: 0.1 N(0,1) noise + 220 Hz and 1337 Hz sines."""
    t = np.arange(length, dtype=np.float64) / sr
    x = 0.1 * gen.standard_normal((batch, channels, length))
    x += 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1337 * t + 0.5)
    return x.astype(np.float32)


def write_inputs(sp, d, seed=0):
    """Raw little-endian f32 files in d: <workload>.in<i>.f32. Segment item 0 is the same at
    every batch (items drawn one by one from per-item generators), so one reference serves."""
    for w in sp["workloads"]:
        if w["kind"] == "segment":
            items = [audio(np.random.default_rng(seed + 1000 + i), 1, sp["channels"],
                           w["samples"], sp["samplerate"]) for i in range(w["batch"])]
            arrs = [np.concatenate(items, 0)]
        elif w["kind"] == "track":
            arrs = [audio(np.random.default_rng(seed + 7), 1, sp["channels"], w["samples"],
                          sp["samplerate"])]
        else:
            g = np.random.default_rng(seed + 17 + len(w["name"]) * 31 + sum(map(ord, w["name"])))
            arrs = []
            for i, s in enumerate(w["inputs"]):
                a = g.standard_normal(s).astype(np.float32)
                if w["op"] in ("linear", "conv1d", "conv2d") and i == 1:
                    a *= np.float32(1.0 / np.sqrt(np.prod(s[1:])))  # fan-in scaled weights
                if w["op"] == "groupnorm_gelu" and i == 1:
                    a = (0.5 + g.random(s)).astype(np.float32)
                if w["op"] == "istft":  # a Hermitian spectrum: Im(DC) = Im(Nyquist) = 0
                    a[:, 0, :, 1] = 0
                    a[:, -1, :, 1] = 0
                arrs.append(a)
        for i, a in enumerate(arrs):
            np.ascontiguousarray(a, dtype="<f4").tofile(os.path.join(d, f"{w['name']}.in{i}.f32"))
