/*
 * conv.h: 1-d and 2-d convolutions and transposed convolutions (PyTorch semantics).
 *
 * Layouts are PyTorch's (contiguous NCL / NCHW, weights as nn.Conv*d / nn.ConvTranspose*d
 * store them). G = groups, Cin_g = Cin / G, Cout_g = Cout / G, g = the group of a channel.
 *
 * conv1d / conv2d  (torch.nn.functional.conv1d / conv2d, cross-correlation):
 *   x [N, Cin, L] / [N, Cin, H, W]       w [Cout, Cin_g, K] / [Cout, Cin_g, KH, KW]
 *   y[n, co, o] = bias[co] + sum_{ci < Cin_g, k < K} x[n, g*Cin_g + ci, o*s - pb + k*d] * w[co, ci, k]
 *   (x outside [0, L) reads as zero), Lout = floor((L + pb + pe - d*(K-1) - 1) / s) + 1.
 *   pb / pe are the zeros added before / after; PyTorch's `padding=p` is pb = pe = p, and
 *   TF 'same' with stride 2 is the asymmetric pb = 0, pe = 1.
 *
 * conv_transpose1d / conv_transpose2d  (torch.nn.functional.conv_transpose1d / 2d):
 *   x [N, Cin, L] / [N, Cin, H, W]       w [Cin, Cout_g, K] / [Cin, Cout_g, KH, KW]
 *   y[n, co, o] = bias[co] + sum over (ci in group g, k) with i*s - pb + k*d == o of
 *                 x[n, ci, i] * w[ci, co - g*Cout_g, k]
 *   Lout = (L - 1)*s - pb - pe + d*(K-1) + output_padding + 1.
 *   The full (untrimmed) output is cropped by pb at the start and pe at the end; PyTorch's
 *   `padding=p` is pb = pe = p. output_padding lengthens the end (0 <= op < max(s, d)).
 *
 * Bias is optional (NULL), [Cout], f32 or the dtype of x. x, w, y share one dtype: f32, f16
 * or bf16; products are accumulated in fp32 (CUDA) or double (CPU reference).
 * 1-d ops read index 0 of every cdz_conv_params array and ignore index 1; 2-d ops use
 * [0] = height, [1] = width.
 *
 * CUDA: cuDNN (legacy API) where it can do the case, else an own direct-convolution kernel
 * (asymmetric padding, output_padding >= stride, sizes past int32, cuDNN NOT_SUPPORTED, no
 * algorithm within the context's workspace). params.impl or env CADENZA_CONV_IMPL=own|cudnn
 * forces one path (forcing cuDNN on a case it cannot do is CDZ_STATUS_UNSUPPORTED).
 * Precision (f32 data): STRICT = FMA only (no TF32), TF32/FP16/BF16 = tensor cores allowed
 * (TF32 inputs); f16/bf16 data: tensor cores, fp32 compute.
 *
 * defines: cdz_conv_params, cdz_conv_impl, cdz_conv_params_1d, cdz_conv_params_2d,
 *          cdz_conv_out_len, cdz_conv_transpose_out_len,
 *          cdz_conv1d, cdz_conv2d, cdz_conv_transpose1d, cdz_conv_transpose2d (+ _cpu, _cuda),
 *          cdz_conv_geom, cdz_conv_geom_init, cdz_conv_impl_resolve (internal, for conv.cu)
 */
#ifndef CDZ_KERNELS_CONV_H
#define CDZ_KERNELS_CONV_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cdz_conv_impl {
    CDZ_CONV_IMPL_AUTO = 0, /* cuDNN when it can, else the own kernel (env may override) */
    CDZ_CONV_IMPL_CUDNN,    /* cuDNN only: UNSUPPORTED when it cannot do the case */
    CDZ_CONV_IMPL_OWN,      /* the own direct-convolution kernel */
} cdz_conv_impl;

typedef struct cdz_conv_params {
    int32_t stride[2];         /* >= 1 */
    int32_t dilation[2];       /* >= 1 */
    int32_t pad_begin[2];      /* >= 0: conv zero-pads, transposed conv trims the start */
    int32_t pad_end[2];        /* >= 0: conv zero-pads, transposed conv trims the end */
    int32_t output_padding[2]; /* transposed only, in [0, max(stride, dilation)); else 0 */
    int32_t groups;            /* >= 1, divides Cin and Cout */
    int32_t impl;              /* cdz_conv_impl; 0 = AUTO. CUDA only, the CPU ignores it */
} cdz_conv_params;

/* Symmetric-padding parameters (PyTorch's `padding=`); set other fields afterwards. */
cdz_conv_params cdz_conv_params_1d(int32_t stride, int32_t pad, int32_t dilation, int32_t groups);
cdz_conv_params cdz_conv_params_2d(int32_t stride_h, int32_t stride_w, int32_t pad_h,
                                   int32_t pad_w, int32_t dilation_h, int32_t dilation_w,
                                   int32_t groups);

/* Output length of a conv along one dimension; <= 0 when the dilated kernel does not fit
 * (invalid). Arguments are not range-checked: the op entries do that. */
int64_t cdz_conv_out_len(int64_t in, int64_t k, int32_t stride, int32_t dilation,
                         int32_t pad_begin, int32_t pad_end);
/* Output length of a transposed conv along one dimension; <= 0 is invalid. */
int64_t cdz_conv_transpose_out_len(int64_t in, int64_t k, int32_t stride, int32_t dilation,
                                   int32_t pad_begin, int32_t pad_end, int32_t output_padding);

/* Entries: validate (dtypes, shapes, y's shape against the formulas, parameter ranges,
 * devices) and dispatch on ctx's device. Asynchronous on CUDA. */
cdz_status cdz_conv1d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv2d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                      const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv_transpose1d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv_transpose2d(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);

/* Backends: same contract, arguments already validated by the entry. */
cdz_status cdz_conv1d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv2d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                          const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv_transpose1d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                    const cdz_tensor *bias, cdz_tensor *y,
                                    const cdz_conv_params *p);
cdz_status cdz_conv_transpose2d_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                    const cdz_tensor *bias, cdz_tensor *y,
                                    const cdz_conv_params *p);
#ifdef CDZ_HAVE_CUDA
cdz_status cdz_conv1d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                           const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv2d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                           const cdz_tensor *bias, cdz_tensor *y, const cdz_conv_params *p);
cdz_status cdz_conv_transpose1d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                     const cdz_tensor *bias, cdz_tensor *y,
                                     const cdz_conv_params *p);
cdz_status cdz_conv_transpose2d_cuda(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *w,
                                     const cdz_tensor *bias, cdz_tensor *y,
                                     const cdz_conv_params *p);
#endif

/* ---- internal: shared by conv.c and conv.cu ----
 * Every op seen as a 2-d problem: a 1-d op is H = KH = OH = 1 with unit stride/dilation and
 * no padding along H, and its params' index 0 moved to the W slot. */
typedef struct cdz_conv_geom {
    bool transposed;
    int64_t n, cin, cout, groups, cin_g, cout_g;
    int64_t ih, iw, kh, kw, oh, ow;
    int32_t sh, sw, dh, dw;
    int32_t ph, pw;         /* pad_begin */
    int32_t ph_end, pw_end; /* pad_end */
    int32_t oph, opw;       /* output_padding */
} cdz_conv_geom;

/* Fill g from validated tensors; dims is 1 or 2. */
void cdz_conv_geom_init(cdz_conv_geom *g, const cdz_tensor *x, const cdz_tensor *w,
                        const cdz_tensor *y, const cdz_conv_params *p, int dims, bool transposed);
/* p->impl, or CADENZA_CONV_IMPL=own|cudnn|auto when p->impl is AUTO. */
cdz_conv_impl cdz_conv_impl_resolve(const cdz_conv_params *p);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_KERNELS_CONV_H */
