/*
 * htdemucs.c: the HTDemucs (Demucs v4) network forward, CPU and CUDA through the same code.
 *
 * Upstream: facebookresearch/demucs v4.0.1, demucs/htdemucs.py (HTDemucs), hdemucs.py
 * (HEncLayer, HDecLayer, pad1d, ScaledEmbedding), demucs.py (DConv), transformer.py
 * (CrossTransformerEncoder and its layers). /work/shared/research/separation.md §1 and
 * docs/models/htdemucs.md give the semantics this file reproduces, block by block.
 *
 * Structure
 *  - load: the "config" JSON of the weights' metadata (weights-tools/cadenza-convert) gives
 *    every HTDemucs.__init__ argument; the layer list is rebuilt exactly as
 *    HTDemucs.__init__ builds it, each tensor the config implies is checked in the file
 *    (name, dtype, shape; missing and extra names refused), a shape pass (the forward
 *    run "dry": shapes only) validates the whole network for one segment, and all
 *    parameters plus derived tables (scaled frequency embedding, positional embeddings)
 *    are uploaded as f32 into one arena block.
 *  - plan: the same dry forward for `batch` measures the two activation stacks ("keep":
 *    statistics and skip connections, LIFO; "tmp": everything else, mark/release), then
 *    one region of exactly that size is reserved, and the STFT/iSTFT plans are made.
 *  - forward: the real run of the same code, ops from kernels/ on the context's device.
 *
 * Every op call goes through RUN(), which does nothing in the dry pass; every activation
 * comes from ralloc(), which in the dry pass only counts. So the measured sizes are the
 * forward's own, by construction.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "activation.h"
#include "attention.h"
#include "cadenza.h"
#include "check.h"
#include "conv.h"
#include "ctx.h"
#include "elementwise.h"
#include "gemm.h"
#include "half.h"
#include "htdemucs.h"
#include "layout.h"
#include "norm.h"
#include "reduce.h"
#include "stft.h"

#define HTD_MAX_DEPTH 16
#define HTD_MAX_DCONV 16
#define HTD_MAX_TLAYERS 64
#define HTD_ALIGN ((size_t)CDZ_ARENA_ALIGN)
#define HTD_EPS 1e-5f        /* GroupNorm / LayerNorm eps and the input-normalisation eps */
#define HTD_NAME_MAX 192

/* ======================================================================================
 * Configuration (HTDemucs.__init__ arguments)
 * ==================================================================================== */

typedef struct htd_cfg {
    int sources, audio_channels, samplerate;
    int64_t segment;          /* samples: int(segment * samplerate) */
    int channels, channels_time;
    double growth;
    int nfft, depth;
    bool rewrite;
    double freq_emb, emb_scale;
    int kernel_size, time_stride, stride, context, context_enc;
    int norm_starts, norm_groups;
    int dconv_mode, dconv_depth;
    double dconv_comp;
    int bottom_channels;
    int t_layers, t_heads;
    double t_hidden_scale, t_max_period, t_weight_pos_embed;
    int t_norm_in, t_norm_in_group, t_group_norm, t_norm_out; /* ints: upstream uses int(x) */
    bool t_norm_first, t_layer_scale, t_gelu, t_cross_first;
} htd_cfg;

/* Norm kinds of the transformer: LayerNorm, MyGroupNorm(1) (token layout), or none. */
enum { HTD_NORM_NONE = 0, HTD_NORM_LN, HTD_NORM_GN1 };

typedef struct htd_dconv_layer {
    cdz_tensor c1_w, c1_b, n1_w, n1_b, c2_w, c2_b, n2_w, n2_b, scale;
} htd_dconv_layer;

typedef struct htd_dconv {
    int depth, channels, hidden;
    bool dilate;
    htd_dconv_layer l[HTD_MAX_DCONV];
} htd_dconv;

/* One HEncLayer or HDecLayer. conv = conv (encoder) or conv_tr (decoder). */
typedef struct htd_layer {
    bool enc, freq, empty, norm, rewrite, dconv, last;
    int chin, chout, ker, stride, pad, context;
    cdz_tensor conv_w, conv_b, rw_w, rw_b, norm1_w, norm1_b, norm2_w, norm2_b;
    htd_dconv dc;
} htd_layer;

typedef struct htd_tlayer {
    bool cross;
    cdz_tensor in_w, in_b, out_w, out_b, l1_w, l1_b, l2_w, l2_b;
    cdz_tensor n1_w, n1_b, n2_w, n2_b, n3_w, n3_b, no_w, no_b, g1, g2;
} htd_tlayer;

typedef struct htd_member {
    htd_cfg c;
    char name[64];
    char prefix[64];
    int depth, n_time;                 /* layers; time-branch layers (freq layers) */
    htd_layer enc[HTD_MAX_DEPTH];      /* encoder[i] */
    htd_layer tenc[HTD_MAX_DEPTH];     /* tencoder[i], i < n_time */
    htd_layer dec[HTD_MAX_DEPTH];      /* decoder[k], k = 0 the deepest */
    htd_layer tdec[HTD_MAX_DEPTH];     /* tdecoder[k], k = 0 the deepest */
    bool has_emb;
    int emb_rows, emb_dim;
    cdz_tensor emb_w;                  /* freq_emb.embedding.weight [rows, dim] */
    cdz_tensor emb_table;              /* derived [dim, used rows]: freq_emb * (W * emb_scale) */
    int64_t emb_used;
    bool has_bottom;
    cdz_tensor up_w, up_b, down_w, down_b, upt_w, upt_b, downt_w, downt_b;
    bool has_tr;
    int t_dim, t_hidden, t_heads, norm_in_kind, layer_norm_kind;
    cdz_tensor nin_w, nin_b, nint_w, nint_b;
    htd_tlayer tl[HTD_MAX_TLAYERS], tlt[HTD_MAX_TLAYERS];
    int64_t tr_fr, tr_t1, tr_t2;       /* transformer token grid (shape pass) */
    cdz_tensor pos2d, pos1d;           /* derived [T1*Fr, D], [T2, D], * t_weight_pos_embed */
} htd_member;

struct cdz_htdemucs {
    cdz_device dev;
    cdz_arena *arena;
    void *block;
    size_t block_bytes;
    int members, sources, audio_channels, samplerate;
    char source_names[CDZ_HTDEMUCS_MAX_SOURCES][16];
    float weights[CDZ_HTDEMUCS_MAX_MEMBERS][CDZ_HTDEMUCS_MAX_SOURCES];
    htd_member *m;
};

struct cdz_htdemucs_plan {
    const cdz_htdemucs *model;
    int member;
    cdz_ctx *ctx;
    int32_t batch;
    cdz_arena *own_arena;
    cdz_region region;
    size_t keep_bytes, tmp_bytes;
    cdz_stft_plan *stft_full, *istft_full, *stft_one, *istft_one;
    cdz_tap_fn tap;
    void *tap_user;
};

/* ---------------------------------------------------------------- small helpers */

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Contiguous f32 descriptor (data may be NULL: shape-only tensors of the dry pass). */
static cdz_tensor ften(void *data, cdz_device dev, int nd, const int64_t *shape) {
    cdz_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = CDZ_DTYPE_F32;
    t.device = dev;
    t.ndim = nd;
    int64_t st = 1;
    for (int i = nd - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = st;
        st *= shape[i];
    }
    return t;
}

/* A strided f32 view. */
static cdz_tensor sview(void *data, cdz_device dev, int nd, const int64_t *shape,
                        const int64_t *stride) {
    cdz_tensor t = ften(data, dev, nd, shape);
    for (int i = 0; i < nd; i++) t.stride[i] = stride[i];
    return t;
}

/* Same data, other (contiguous) shape; the element counts must agree (callers check). */
static cdz_tensor reshape(const cdz_tensor *t, int nd, const int64_t *shape) {
    return ften(t->data, t->device, nd, shape);
}

/* Address arithmetic on integers: in the dry pass the pointers are fake offsets. */
static void *offp(const void *p, int64_t elems) {
    return (void *)((uintptr_t)p + (uintptr_t)(elems * (int64_t)sizeof(float)));
}

static const char *shape_str(const cdz_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ======================================================================================
 * Config parsing
 * ==================================================================================== */

#define CFG_ERR(...) cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, __VA_ARGS__)
#define CFG_UNSUP(...) cdz_error_set(CDZ_STATUS_UNSUPPORTED, __VA_ARGS__)

static cdz_status kw_num(const json_t *kw, const char *where, const char *key, double dflt,
                         double *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return CDZ_STATUS_OK;
    }
    if (json_is_integer(v)) *out = (double)json_integer_value(v);
    else if (json_is_real(v)) *out = json_real_value(v);
    else if (json_is_boolean(v)) *out = json_is_true(v) ? 1.0 : 0.0;
    else return CFG_ERR("htdemucs config (%s): '%s' must be a number", where, key);
    if (!isfinite(*out)) return CFG_ERR("htdemucs config (%s): '%s' is not finite", where, key);
    return CDZ_STATUS_OK;
}

static cdz_status kw_int(const json_t *kw, const char *where, const char *key, int dflt, int lo,
                         int hi, int *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return CDZ_STATUS_OK;
    }
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_boolean(v)) x = json_is_true(v) ? 1 : 0;
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 1e9)
        x = (long long)json_real_value(v);
    else return CFG_ERR("htdemucs config (%s): '%s' must be an integer", where, key);
    if (x < lo || x > hi)
        return CFG_ERR("htdemucs config (%s): '%s' = %lld is out of range [%d, %d]", where, key, x,
                       lo, hi);
    *out = (int)x;
    return CDZ_STATUS_OK;
}

/* Python truthiness of a bool-ish argument (true/false, 0/1, numbers). */
static cdz_status kw_bool(const json_t *kw, const char *where, const char *key, bool dflt,
                          bool *out) {
    const json_t *v = json_object_get(kw, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return CDZ_STATUS_OK;
    }
    if (json_is_boolean(v)) *out = json_is_true(v);
    else if (json_is_integer(v)) *out = json_integer_value(v) != 0;
    else if (json_is_real(v)) *out = json_real_value(v) != 0.0;
    else return CFG_ERR("htdemucs config (%s): '%s' must be a boolean", where, key);
    return CDZ_STATUS_OK;
}

/* Segment length in samples: the member's "segment_samples" if given, else
 * int(segment * samplerate) from kwargs (a Fraction is stored as [num, den]). */
static cdz_status parse_segment(const json_t *mem, const json_t *kw, const char *where,
                                int samplerate, int64_t *out) {
    const json_t *ss = json_object_get(mem, "segment_samples");
    if (ss) {
        if (!json_is_integer(ss) || json_integer_value(ss) < 1)
            return CFG_ERR("htdemucs config (%s): 'segment_samples' must be a positive integer",
                           where);
        *out = json_integer_value(ss);
        return CDZ_STATUS_OK;
    }
    const json_t *seg = json_object_get(kw, "segment");
    if (!seg) return CFG_ERR("htdemucs config (%s): neither 'segment_samples' nor kwargs "
                             "'segment' is given", where);
    if (json_is_array(seg) && json_array_size(seg) == 2 &&
        json_is_integer(json_array_get(seg, 0)) && json_is_integer(json_array_get(seg, 1))) {
        long long n = json_integer_value(json_array_get(seg, 0));
        long long d = json_integer_value(json_array_get(seg, 1));
        if (n <= 0 || d <= 0 || n > (INT64_MAX / 4) / (samplerate > 0 ? samplerate : 1))
            return CFG_ERR("htdemucs config (%s): segment [%lld, %lld] is not a positive fraction",
                           where, n, d);
        *out = n * samplerate / d; /* int(Fraction * sr): exact floor for positive values */
    } else if (json_is_number(seg)) {
        double s = json_number_value(seg);
        if (!(s > 0) || s * samplerate > 1e15)
            return CFG_ERR("htdemucs config (%s): segment %g is not a positive number", where, s);
        *out = (int64_t)(s * (double)samplerate); /* Python: int(float * int) */
    } else {
        return CFG_ERR("htdemucs config (%s): kwargs 'segment' must be a number or [num, den]",
                       where);
    }
    if (*out < 1) return CFG_ERR("htdemucs config (%s): the segment is shorter than 1 sample", where);
    return CDZ_STATUS_OK;
}

static cdz_status parse_cfg(const json_t *mem, const char *where, htd_cfg *c) {
    const json_t *kw = json_object_get(mem, "kwargs");
    if (!json_is_object(kw)) return CFG_ERR("htdemucs config (%s): 'kwargs' object missing", where);
    memset(c, 0, sizeof *c);

    /* Settings with no implementation: refuse naming them (valid upstream, so UNSUPPORTED). */
    bool b;
    CDZ_TRY(kw_bool(kw, where, "cac", true, &b));
    if (!b) return CFG_UNSUP("htdemucs config (%s): cac=false (magnitude masking / Wiener "
                             "filtering) is not implemented; only complex-as-channels models", where);
    int wi, ei;
    CDZ_TRY(kw_int(kw, where, "wiener_iters", 0, -1000000, 1000000, &wi));
    CDZ_TRY(kw_int(kw, where, "end_iters", 0, -1000000, 1000000, &ei));
    if (wi != 0 || ei != 0)
        return CFG_UNSUP("htdemucs config (%s): wiener_iters=%d / end_iters=%d: Wiener filtering "
                         "is not implemented (both must be 0)", where, wi, ei);
    const json_t *mf = json_object_get(kw, "multi_freqs");
    if (mf && !json_is_null(mf) && !(json_is_array(mf) && json_array_size(mf) == 0))
        return CFG_UNSUP("htdemucs config (%s): multi_freqs is not empty: frequency-band "
                         "splitting (MultiWrap) is not implemented", where);
    const json_t *temb = json_object_get(kw, "t_emb");
    if (temb && !(json_is_string(temb) && strcmp(json_string_value(temb), "sin") == 0))
        return CFG_UNSUP("htdemucs config (%s): t_emb=%s: only the \"sin\" positional embedding "
                         "is implemented (\"cape\" and \"scaled\" are not)", where,
                         json_is_string(temb) ? json_string_value(temb) : "(not a string)");
    static const char *sparse[] = {"t_sparse_self_attn", "t_sparse_cross_attn"};
    for (int i = 0; i < 2; i++) {
        CDZ_TRY(kw_bool(kw, where, sparse[i], false, &b));
        if (b) return CFG_UNSUP("htdemucs config (%s): %s=true: sparse attention (xformers) is "
                                "not implemented", where, sparse[i]);
    }
    int shift;
    CDZ_TRY(kw_int(kw, where, "t_sin_random_shift", 0, 0, 1000000000, &shift));
    if (shift != 0)
        return CFG_UNSUP("htdemucs config (%s): t_sin_random_shift=%d draws a random positional "
                         "shift at every forward; only 0 (a deterministic model) is implemented",
                         where, shift);

    CDZ_TRY(kw_int(kw, where, "audio_channels", 2, 1, 64, &c->audio_channels));
    CDZ_TRY(kw_int(kw, where, "samplerate", 44100, 1, 10000000, &c->samplerate));
    CDZ_TRY(kw_int(kw, where, "channels", 48, 1, 1 << 16, &c->channels));
    CDZ_TRY(kw_int(kw, where, "channels_time", 0, 0, 1 << 16, &c->channels_time));
    CDZ_TRY(kw_num(kw, where, "growth", 2.0, &c->growth));
    CDZ_TRY(kw_int(kw, where, "nfft", 4096, 4, 1 << 20, &c->nfft));
    CDZ_TRY(kw_int(kw, where, "depth", 4, 1, HTD_MAX_DEPTH, &c->depth));
    CDZ_TRY(kw_bool(kw, where, "rewrite", true, &c->rewrite));
    CDZ_TRY(kw_num(kw, where, "freq_emb", 0.2, &c->freq_emb));
    CDZ_TRY(kw_num(kw, where, "emb_scale", 10.0, &c->emb_scale));
    CDZ_TRY(kw_int(kw, where, "kernel_size", 8, 1, 1 << 16, &c->kernel_size));
    CDZ_TRY(kw_int(kw, where, "time_stride", 2, 1, 1 << 16, &c->time_stride));
    CDZ_TRY(kw_int(kw, where, "stride", 4, 1, 1 << 16, &c->stride));
    CDZ_TRY(kw_int(kw, where, "context", 1, 0, 1 << 12, &c->context));
    CDZ_TRY(kw_int(kw, where, "context_enc", 0, 0, 1 << 12, &c->context_enc));
    CDZ_TRY(kw_int(kw, where, "norm_starts", 4, -1000000, 1000000, &c->norm_starts));
    CDZ_TRY(kw_int(kw, where, "norm_groups", 4, 1, 1 << 16, &c->norm_groups));
    CDZ_TRY(kw_int(kw, where, "dconv_mode", 1, 0, 3, &c->dconv_mode));
    CDZ_TRY(kw_int(kw, where, "dconv_depth", 2, -HTD_MAX_DCONV, HTD_MAX_DCONV, &c->dconv_depth));
    CDZ_TRY(kw_num(kw, where, "dconv_comp", 8.0, &c->dconv_comp));
    CDZ_TRY(kw_int(kw, where, "bottom_channels", 0, 0, 1 << 16, &c->bottom_channels));
    CDZ_TRY(kw_int(kw, where, "t_layers", 5, 0, HTD_MAX_TLAYERS, &c->t_layers));
    CDZ_TRY(kw_int(kw, where, "t_heads", 8, 1, 1 << 12, &c->t_heads));
    CDZ_TRY(kw_num(kw, where, "t_hidden_scale", 4.0, &c->t_hidden_scale));
    CDZ_TRY(kw_num(kw, where, "t_max_period", 10000.0, &c->t_max_period));
    CDZ_TRY(kw_num(kw, where, "t_weight_pos_embed", 1.0, &c->t_weight_pos_embed));
    CDZ_TRY(kw_int(kw, where, "t_norm_in", 1, 0, 1 << 16, &c->t_norm_in));
    CDZ_TRY(kw_int(kw, where, "t_norm_in_group", 0, 0, 1 << 16, &c->t_norm_in_group));
    CDZ_TRY(kw_int(kw, where, "t_group_norm", 0, 0, 1 << 16, &c->t_group_norm));
    CDZ_TRY(kw_int(kw, where, "t_norm_out", 1, 0, 1 << 16, &c->t_norm_out));
    CDZ_TRY(kw_bool(kw, where, "t_norm_first", true, &c->t_norm_first));
    CDZ_TRY(kw_bool(kw, where, "t_layer_scale", true, &c->t_layer_scale));
    CDZ_TRY(kw_bool(kw, where, "t_gelu", true, &c->t_gelu));
    CDZ_TRY(kw_bool(kw, where, "t_cross_first", false, &c->t_cross_first));

    if (c->dconv_mode && c->dconv_depth == 0)
        return CFG_ERR("htdemucs config (%s): dconv_depth=0 with dconv_mode=%d", where,
                       c->dconv_mode);
    if (!(c->dconv_comp > 0)) return CFG_ERR("htdemucs config (%s): dconv_comp must be > 0", where);
    if (!(c->growth > 0)) return CFG_ERR("htdemucs config (%s): growth must be > 0", where);
    if (c->freq_emb < 0) return CFG_ERR("htdemucs config (%s): freq_emb must be >= 0", where);
    /* GroupNorm(int(x), d) inside the transformer: only 1 group is implemented (the token
     * layout makes other group counts a strided reduction; no published model uses them). */
    if (c->t_norm_in == 0 && c->t_norm_in_group > 1)
        return CFG_UNSUP("htdemucs config (%s): t_norm_in_group=%d: only 1 group is implemented",
                         where, c->t_norm_in_group);
    if (c->t_group_norm > 1)
        return CFG_UNSUP("htdemucs config (%s): t_group_norm=%d: only 1 group is implemented",
                         where, c->t_group_norm);
    if (c->t_norm_first && c->t_norm_out > 1)
        return CFG_UNSUP("htdemucs config (%s): t_norm_out=%d: only GroupNorm with 1 group is "
                         "implemented", where, c->t_norm_out);
    /* hop = nfft / 4 must itself be even: _spec pads by hop // 2 * 3 and asserts the frame
     * count, which an odd hop breaks (upstream fails the same configs). */
    if (c->nfft % 8 != 0) return CFG_ERR("htdemucs config (%s): nfft=%d must be a multiple of 8 "
                                         "(hop_length = nfft // 4 must be even for _spec)", where,
                                         c->nfft);
    return parse_segment(mem, kw, where, c->samplerate, &c->segment);
}

/* ======================================================================================
 * Architecture: the layer list of HTDemucs.__init__, and the tensors it implies
 * ==================================================================================== */

typedef struct htd_spec {
    char name[HTD_NAME_MAX];
    int nd;
    int64_t shape[CDZ_MAX_DIMS];
    cdz_tensor *dst;
    const cdz_weight_entry *e;
    size_t offset; /* in the model block */
} htd_spec;

typedef struct htd_specs {
    htd_spec *v;
    size_t n, cap;
    bool oom;
} htd_specs;

static void spec_add(htd_specs *s, const char *prefix, cdz_tensor *dst, int nd,
                     const int64_t *shape, const char *fmt, ...) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        htd_spec *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    htd_spec *p = &s->v[s->n++];
    memset(p, 0, sizeof *p);
    int k = snprintf(p->name, sizeof p->name, "%s", prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name + k, sizeof p->name - (size_t)k, fmt, ap);
    va_end(ap);
    p->nd = nd;
    for (int i = 0; i < nd; i++) p->shape[i] = shape[i];
    p->dst = dst;
    *dst = ften(NULL, (cdz_device){CDZ_DEVICE_CPU, 0}, nd, shape);
}

#define SHP(...) (const int64_t[]){__VA_ARGS__}

static void specs_dconv(htd_specs *s, const char *pre, htd_dconv *dc, const char *base) {
    const int64_t C = dc->channels, h = dc->hidden;
    for (int j = 0; j < dc->depth; j++) {
        htd_dconv_layer *l = &dc->l[j];
        spec_add(s, pre, &l->c1_w, 3, SHP(h, C, 3), "%s.dconv.layers.%d.0.weight", base, j);
        spec_add(s, pre, &l->c1_b, 1, SHP(h), "%s.dconv.layers.%d.0.bias", base, j);
        spec_add(s, pre, &l->n1_w, 1, SHP(h), "%s.dconv.layers.%d.1.weight", base, j);
        spec_add(s, pre, &l->n1_b, 1, SHP(h), "%s.dconv.layers.%d.1.bias", base, j);
        spec_add(s, pre, &l->c2_w, 3, SHP(2 * C, h, 1), "%s.dconv.layers.%d.3.weight", base, j);
        spec_add(s, pre, &l->c2_b, 1, SHP(2 * C), "%s.dconv.layers.%d.3.bias", base, j);
        spec_add(s, pre, &l->n2_w, 1, SHP(2 * C), "%s.dconv.layers.%d.4.weight", base, j);
        spec_add(s, pre, &l->n2_b, 1, SHP(2 * C), "%s.dconv.layers.%d.4.bias", base, j);
        spec_add(s, pre, &l->scale, 1, SHP(C), "%s.dconv.layers.%d.6.scale", base, j);
    }
}

static void specs_layer(htd_specs *s, const char *pre, htd_layer *L, const char *base) {
    const int64_t k = 1 + 2 * L->context;
    if (L->enc) {
        if (L->freq)
            spec_add(s, pre, &L->conv_w, 4, SHP(L->chout, L->chin, L->ker, 1), "%s.conv.weight", base);
        else
            spec_add(s, pre, &L->conv_w, 3, SHP(L->chout, L->chin, L->ker), "%s.conv.weight", base);
        spec_add(s, pre, &L->conv_b, 1, SHP(L->chout), "%s.conv.bias", base);
        if (L->empty) return;
        if (L->norm) {
            spec_add(s, pre, &L->norm1_w, 1, SHP(L->chout), "%s.norm1.weight", base);
            spec_add(s, pre, &L->norm1_b, 1, SHP(L->chout), "%s.norm1.bias", base);
        }
        if (L->rewrite) {
            if (L->freq)
                spec_add(s, pre, &L->rw_w, 4, SHP(2 * L->chout, L->chout, k, k), "%s.rewrite.weight", base);
            else
                spec_add(s, pre, &L->rw_w, 3, SHP(2 * L->chout, L->chout, k), "%s.rewrite.weight", base);
            spec_add(s, pre, &L->rw_b, 1, SHP(2 * L->chout), "%s.rewrite.bias", base);
            if (L->norm) {
                spec_add(s, pre, &L->norm2_w, 1, SHP(2 * L->chout), "%s.norm2.weight", base);
                spec_add(s, pre, &L->norm2_b, 1, SHP(2 * L->chout), "%s.norm2.bias", base);
            }
        }
    } else {
        if (L->freq)
            spec_add(s, pre, &L->conv_w, 4, SHP(L->chin, L->chout, L->ker, 1), "%s.conv_tr.weight", base);
        else
            spec_add(s, pre, &L->conv_w, 3, SHP(L->chin, L->chout, L->ker), "%s.conv_tr.weight", base);
        spec_add(s, pre, &L->conv_b, 1, SHP(L->chout), "%s.conv_tr.bias", base);
        if (L->norm) { /* norm2 exists even in an empty layer (made before the early return) */
            spec_add(s, pre, &L->norm2_w, 1, SHP(L->chout), "%s.norm2.weight", base);
            spec_add(s, pre, &L->norm2_b, 1, SHP(L->chout), "%s.norm2.bias", base);
        }
        if (L->empty) return;
        if (L->rewrite) {
            if (L->freq)
                spec_add(s, pre, &L->rw_w, 4, SHP(2 * L->chin, L->chin, k, k), "%s.rewrite.weight", base);
            else
                spec_add(s, pre, &L->rw_w, 3, SHP(2 * L->chin, L->chin, k), "%s.rewrite.weight", base);
            spec_add(s, pre, &L->rw_b, 1, SHP(2 * L->chin), "%s.rewrite.bias", base);
            if (L->norm) {
                spec_add(s, pre, &L->norm1_w, 1, SHP(2 * L->chin), "%s.norm1.weight", base);
                spec_add(s, pre, &L->norm1_b, 1, SHP(2 * L->chin), "%s.norm1.bias", base);
            }
        }
    }
    if (L->dconv) specs_dconv(s, pre, &L->dc, base);
}

static void specs_norm(htd_specs *s, const char *pre, cdz_tensor *w, cdz_tensor *b, int64_t d,
                       const char *base) {
    spec_add(s, pre, w, 1, SHP(d), "%s.weight", base);
    spec_add(s, pre, b, 1, SHP(d), "%s.bias", base);
}

static void specs_tlayer(htd_specs *s, const char *pre, htd_tlayer *t, const htd_member *m,
                         const char *base) {
    const int64_t d = m->t_dim, h = m->t_hidden;
    char nb[HTD_NAME_MAX];
    const char *att = t->cross ? "cross_attn" : "self_attn";
    spec_add(s, pre, &t->in_w, 2, SHP(3 * d, d), "%s.%s.in_proj_weight", base, att);
    spec_add(s, pre, &t->in_b, 1, SHP(3 * d), "%s.%s.in_proj_bias", base, att);
    spec_add(s, pre, &t->out_w, 2, SHP(d, d), "%s.%s.out_proj.weight", base, att);
    spec_add(s, pre, &t->out_b, 1, SHP(d), "%s.%s.out_proj.bias", base, att);
    spec_add(s, pre, &t->l1_w, 2, SHP(h, d), "%s.linear1.weight", base);
    spec_add(s, pre, &t->l1_b, 1, SHP(h), "%s.linear1.bias", base);
    spec_add(s, pre, &t->l2_w, 2, SHP(d, h), "%s.linear2.weight", base);
    spec_add(s, pre, &t->l2_b, 1, SHP(d), "%s.linear2.bias", base);
    snprintf(nb, sizeof nb, "%s.norm1", base);
    specs_norm(s, pre, &t->n1_w, &t->n1_b, d, nb);
    snprintf(nb, sizeof nb, "%s.norm2", base);
    specs_norm(s, pre, &t->n2_w, &t->n2_b, d, nb);
    if (t->cross) {
        snprintf(nb, sizeof nb, "%s.norm3", base);
        specs_norm(s, pre, &t->n3_w, &t->n3_b, d, nb);
    }
    if (m->c.t_norm_first && m->c.t_norm_out) {
        snprintf(nb, sizeof nb, "%s.norm_out", base);
        specs_norm(s, pre, &t->no_w, &t->no_b, d, nb);
    }
    if (m->c.t_layer_scale) {
        spec_add(s, pre, &t->g1, 1, SHP(d), "%s.gamma_1.scale", base);
        spec_add(s, pre, &t->g2, 1, SHP(d), "%s.gamma_2.scale", base);
    }
}

static void init_dconv(htd_dconv *dc, const htd_cfg *c, int channels) {
    dc->depth = abs(c->dconv_depth);
    dc->dilate = c->dconv_depth > 0;
    dc->channels = channels;
    dc->hidden = (int)((double)channels / c->dconv_comp); /* int(channels / compress) */
}

static void init_layer(htd_layer *L, const htd_cfg *c, bool enc, int chin, int chout, int ker,
                       int stride, bool freq, bool pad, bool norm, bool dconv, int context,
                       bool empty, bool last) {
    memset(L, 0, sizeof *L);
    L->enc = enc;
    L->freq = freq;
    L->empty = empty;
    L->norm = norm;
    L->rewrite = c->rewrite;
    L->dconv = dconv;
    L->last = last;
    L->chin = chin;
    L->chout = chout;
    L->ker = ker;
    L->stride = stride;
    L->pad = pad ? ker / 4 : 0;
    L->context = context;
    if (dconv) init_dconv(&L->dc, c, enc ? chout : chin);
}

/* HTDemucs.__init__'s layer loop, verbatim in structure. */
static cdz_status build_member(htd_member *m, const char *where, htd_specs *s) {
    const htd_cfg *c = &m->c;
    const int S = c->sources, ac = c->audio_channels;
    int chin = ac, chin_z = ac * 2;
    int chout = c->channels_time ? c->channels_time : c->channels, chout_z = c->channels;
    int64_t freqs = c->nfft / 2;
    htd_layer tdec_at[HTD_MAX_DEPTH];
    bool tdec_has[HTD_MAX_DEPTH] = {false};
    m->depth = c->depth;
    m->n_time = 0;
    for (int index = 0; index < c->depth; index++) {
        const bool norm = index >= c->norm_starts;
        const bool freq = freqs > 1;
        int stri = c->stride, ker = c->kernel_size;
        if (!freq) {
            ker = c->time_stride * 2;
            stri = c->time_stride;
        }
        bool pad = true, last_freq = false;
        if (freq && freqs <= c->kernel_size) {
            ker = (int)freqs;
            pad = false;
            last_freq = true;
        }
        if (last_freq) {
            chout_z = chout > chout_z ? chout : chout_z;
            chout = chout_z;
        }
        init_layer(&m->enc[index], c, true, chin_z, chout_z, ker, stri, freq, pad, norm,
                   c->dconv_mode & 1, c->context_enc, false, false);
        if (freq) {
            init_layer(&m->tenc[index], c, true, chin, chout, c->kernel_size, c->stride, false,
                       true, norm, c->dconv_mode & 1, c->context_enc, last_freq, false);
            m->n_time++;
        }
        if (index == 0) {
            chin = ac * S;
            chin_z = chin * 2;
        }
        init_layer(&m->dec[c->depth - 1 - index], c, false, chout_z, chin_z, ker, stri, freq, pad,
                   norm, c->dconv_mode & 2, c->context, false, index == 0);
        if (freq) {
            init_layer(&tdec_at[index], c, false, chout, chin, c->kernel_size, c->stride, false,
                       true, norm, c->dconv_mode & 2, c->context, last_freq, index == 0);
            tdec_has[index] = true;
        }
        chin = chout;
        chin_z = chout_z;
        chout = (int)(c->growth * chout);
        chout_z = (int)(c->growth * chout_z);
        if (chout < 1 || chout_z < 1)
            return CFG_ERR("htdemucs config (%s): growth=%g leaves layer %d with no channels", where,
                           c->growth, index + 1);
        if (freq) freqs = freqs <= c->kernel_size ? 1 : freqs / c->stride;
        if (index == 0 && c->freq_emb != 0) {
            m->has_emb = true;
            m->emb_rows = (int)freqs;
            m->emb_dim = chin_z;
        }
    }
    /* tdecoder.insert(0, ...): tdecoder[k] is the time layer n_time-1-k */
    for (int k = 0; k < m->n_time; k++) {
        if (!tdec_has[m->n_time - 1 - k])
            return cdz_error_set(CDZ_STATUS_INTERNAL, "htdemucs: time layers are not a prefix");
        m->tdec[k] = tdec_at[m->n_time - 1 - k];
    }

    /* Constraints upstream enforces at construction or in forward, refused here by name. */
    for (int i = 0; i < c->depth; i++) {
        htd_layer *ls[4] = {&m->enc[i], &m->dec[i], i < m->n_time ? &m->tenc[i] : NULL,
                            i < m->n_time ? &m->tdec[i] : NULL};
        for (int j = 0; j < 4; j++) {
            htd_layer *L = ls[j];
            if (!L) continue;
            if (L->dconv && L->dc.hidden < 1)
                return CFG_ERR("htdemucs config (%s): dconv_comp=%g leaves a %d-channel layer a "
                               "DConv hidden width of 0", where, c->dconv_comp, L->dc.channels);
            if (L->norm) {
                /* encoder: norm1 on chout, norm2 on 2*chout; decoder: norm2 on chout, norm1 on 2*chin */
                const int a = L->chout, b2 = L->enc ? 2 * L->chout : 2 * L->chin;
                if (a % c->norm_groups || (L->rewrite && !L->empty && b2 % c->norm_groups))
                    return CFG_ERR("htdemucs config (%s): norm_groups=%d does not divide the %d/%d "
                                   "channels of a normalised layer (norm_starts=%d)", where,
                                   c->norm_groups, a, b2, c->norm_starts);
            }
            if (L->ker < 1 || L->stride < 1)
                return CFG_ERR("htdemucs config (%s): a layer has kernel %d / stride %d", where,
                               L->ker, L->stride);
        }
    }

    const char *pre = m->prefix;
    char base[64];
    for (int i = 0; i < c->depth; i++) {
        snprintf(base, sizeof base, "encoder.%d", i);
        specs_layer(s, pre, &m->enc[i], base);
        snprintf(base, sizeof base, "decoder.%d", i);
        specs_layer(s, pre, &m->dec[i], base);
    }
    for (int i = 0; i < m->n_time; i++) {
        snprintf(base, sizeof base, "tencoder.%d", i);
        specs_layer(s, pre, &m->tenc[i], base);
        snprintf(base, sizeof base, "tdecoder.%d", i);
        specs_layer(s, pre, &m->tdec[i], base);
    }
    if (m->has_emb)
        spec_add(s, pre, &m->emb_w, 2, SHP(m->emb_rows, m->emb_dim), "freq_emb.embedding.weight");

    /* transformer_channels = channels * growth ** (depth - 1), as Python computes it */
    const double tcd = c->channels * pow(c->growth, c->depth - 1);
    const int tc = (int)tcd;
    const int enc_out = m->enc[c->depth - 1].chout;
    const int tenc_out = m->n_time ? m->tenc[m->n_time - 1].chout : 0;
    if (c->bottom_channels) {
        if (tcd != (double)tc)
            return CFG_ERR("htdemucs config (%s): channels * growth**(depth-1) = %g is not an "
                           "integer (the bottom Conv1d needs one)", where, tcd);
        m->has_bottom = true;
        const int64_t bc = c->bottom_channels;
        spec_add(s, pre, &m->up_w, 3, SHP(bc, tc, 1), "channel_upsampler.weight");
        spec_add(s, pre, &m->up_b, 1, SHP(bc), "channel_upsampler.bias");
        spec_add(s, pre, &m->down_w, 3, SHP(tc, bc, 1), "channel_downsampler.weight");
        spec_add(s, pre, &m->down_b, 1, SHP(tc), "channel_downsampler.bias");
        spec_add(s, pre, &m->upt_w, 3, SHP(bc, tc, 1), "channel_upsampler_t.weight");
        spec_add(s, pre, &m->upt_b, 1, SHP(bc), "channel_upsampler_t.bias");
        spec_add(s, pre, &m->downt_w, 3, SHP(tc, bc, 1), "channel_downsampler_t.weight");
        spec_add(s, pre, &m->downt_b, 1, SHP(tc), "channel_downsampler_t.bias");
    }
    if (c->t_layers > 0) {
        m->has_tr = true;
        if (tcd != (double)tc && !c->bottom_channels)
            return CFG_ERR("htdemucs config (%s): the transformer width channels * "
                           "growth**(depth-1) = %g is not an integer", where, tcd);
        if (enc_out != tc || tenc_out != tc)
            return CFG_UNSUP("htdemucs config (%s): the encoders end with %d (freq) / %d (time) "
                             "channels but the transformer is built for channels * "
                             "growth**(depth-1) = %d; upstream HTDemucs cannot run this "
                             "configuration", where, enc_out, tenc_out, tc);
        m->t_dim = c->bottom_channels ? c->bottom_channels : tc;
        m->t_hidden = (int)(m->t_dim * c->t_hidden_scale);
        m->t_heads = c->t_heads;
        if (m->t_dim % c->t_heads)
            return CFG_ERR("htdemucs config (%s): transformer width %d is not divisible by "
                           "t_heads=%d", where, m->t_dim, c->t_heads);
        if (m->t_dim % 4)
            return CFG_ERR("htdemucs config (%s): transformer width %d must be a multiple of 4 "
                           "(create_2d_sin_embedding)", where, m->t_dim);
        if (m->t_dim / c->t_heads > CDZ_ATTENTION_MAX_HEAD_DIM)
            return CFG_UNSUP("htdemucs config (%s): head dim %d exceeds the attention op's %d",
                             where, m->t_dim / c->t_heads, CDZ_ATTENTION_MAX_HEAD_DIM);
        if (m->t_hidden < 1)
            return CFG_ERR("htdemucs config (%s): t_hidden_scale=%g gives an empty FFN", where,
                           c->t_hidden_scale);
        m->norm_in_kind = c->t_norm_in ? HTD_NORM_LN : c->t_norm_in_group ? HTD_NORM_GN1
                                                                           : HTD_NORM_NONE;
        m->layer_norm_kind = c->t_group_norm ? HTD_NORM_GN1 : HTD_NORM_LN;
        if (m->norm_in_kind != HTD_NORM_NONE) {
            specs_norm(s, pre, &m->nin_w, &m->nin_b, m->t_dim, "crosstransformer.norm_in");
            specs_norm(s, pre, &m->nint_w, &m->nint_b, m->t_dim, "crosstransformer.norm_in_t");
        }
        const int parity = c->t_cross_first ? 1 : 0;
        for (int i = 0; i < c->t_layers; i++) {
            m->tl[i].cross = m->tlt[i].cross = (i % 2 != parity);
            snprintf(base, sizeof base, "crosstransformer.layers.%d", i);
            specs_tlayer(s, pre, &m->tl[i], m, base);
            snprintf(base, sizeof base, "crosstransformer.layers_t.%d", i);
            specs_tlayer(s, pre, &m->tlt[i], m, base);
        }
    }
    if (s->oom) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no memory for the tensor list");
    return CDZ_STATUS_OK;
}

/* ======================================================================================
 * The run: two activation stacks, dry or real
 * ==================================================================================== */

typedef struct htd_stack {
    uintptr_t base;
    size_t cap, top, peak;
} htd_stack;

typedef struct htd_run {
    const htd_member *m;
    cdz_ctx *ctx;        /* NULL in the dry pass */
    bool dry;
    cdz_device dev;
    htd_stack keep, tmp;
    cdz_tap_fn tap;
    void *tap_user;
    int64_t plan_batch;
    const cdz_stft_plan *stft_full, *istft_full, *stft_one, *istft_one;
    /* recorded by the shape pass */
    int64_t emb_used, tr_fr, tr_t1, tr_t2;
} htd_run;

#define RUN(r, call)                               \
    do {                                           \
        if (!(r)->dry) CDZ_TRY(call);              \
    } while (0)

static cdz_status ralloc(htd_run *r, htd_stack *s, int nd, const int64_t *shape, cdz_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        if (shape[i] < 0 || (shape[i] && n > INT64_MAX / 8 / shape[i]))
            return cdz_error_set(CDZ_STATUS_TOO_LARGE, "htdemucs: activation of %d dims too large", nd);
        n *= shape[i];
    }
    const size_t bytes = (size_t)n * sizeof(float);
    const size_t start = align_up(s->top, HTD_ALIGN);
    if (!r->dry && (start > s->cap || bytes > s->cap - start))
        return cdz_error_set(CDZ_STATUS_INTERNAL, "htdemucs: activation plan exceeded (%zu + %zu "
                             "bytes of %zu): the measure pass and the forward disagree", start,
                             bytes, s->cap);
    s->top = start + bytes;
    if (s->top > s->peak) s->peak = s->top;
    *t = ften((void *)(s->base + start), r->dev, nd, shape);
    return CDZ_STATUS_OK;
}

static void tapf(htd_run *r, const cdz_tensor *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void tapf(htd_run *r, const cdz_tensor *t, const char *fmt, ...) {
    if (r->dry || !r->tap) return;
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    r->tap(r->tap_user, name, t);
}

/* ---------------------------------------------------------------- blocks */

/* DConv on x [N, C, T], in place: x = x + scale * GLU(GN(conv1x1(GELU(GN(conv3_dil(x)))))). */
static cdz_status dconv_apply(htd_run *r, const htd_dconv *dc, cdz_tensor *x) {
    const int64_t N = x->shape[0], C = x->shape[1], T = x->shape[2];
    for (int j = 0; j < dc->depth; j++) {
        const htd_dconv_layer *l = &dc->l[j];
        const size_t mk = r->tmp.top;
        const int dil = dc->dilate ? 1 << j : 1;
        cdz_tensor h1, h2, g;
        CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(N, dc->hidden, T), &h1));
        const cdz_conv_params p3 = cdz_conv_params_1d(1, dil, dil, 1); /* padding = dilation */
        RUN(r, cdz_conv1d(r->ctx, x, &l->c1_w, &l->c1_b, &h1, &p3));
        RUN(r, cdz_groupnorm(r->ctx, &h1, &l->n1_w, &l->n1_b, &h1, 1, HTD_EPS));
        RUN(r, cdz_gelu(r->ctx, &h1, &h1, false));
        CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(N, 2 * C, T), &h2));
        const cdz_conv_params p1 = cdz_conv_params_1d(1, 0, 1, 1);
        RUN(r, cdz_conv1d(r->ctx, &h1, &l->c2_w, &l->c2_b, &h2, &p1));
        RUN(r, cdz_groupnorm(r->ctx, &h2, &l->n2_w, &l->n2_b, &h2, 1, HTD_EPS));
        CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(N, C, T), &g));
        RUN(r, cdz_glu(r->ctx, &h2, &g, 1));
        RUN(r, cdz_residual(r->ctx, x, &g, &l->scale, x, 1));
        r->tmp.top = mk;
    }
    return CDZ_STATUS_OK;
}

/* DConv of a layer: freq layers run it per frequency row ((B,C,F,T) -> (B*F,C,T)). */
static cdz_status dconv_branch(htd_run *r, const htd_dconv *dc, cdz_tensor *y) {
    if (y->ndim == 3) return dconv_apply(r, dc, y);
    const int64_t B = y->shape[0], C = y->shape[1], F = y->shape[2], T = y->shape[3];
    if (F == 1) {
        cdz_tensor v = reshape(y, 3, SHP(B, C, T));
        return dconv_apply(r, dc, &v);
    }
    const size_t mk = r->tmp.top;
    cdz_tensor yp;
    CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, F, C, T), &yp));
    static const int32_t swap12[4] = {0, 2, 1, 3};
    RUN(r, cdz_permute(r->ctx, y, &yp, swap12));
    cdz_tensor rows = reshape(&yp, 3, SHP(B * F, C, T));
    CDZ_TRY(dconv_apply(r, dc, &rows));
    RUN(r, cdz_permute(r->ctx, &yp, y, swap12));
    r->tmp.top = mk;
    return CDZ_STATUS_OK;
}

/* Rewrite conv of a layer (1x1 in encoders by default, 3x3 / k3 in decoders). */
static cdz_status rewrite_conv(htd_run *r, const htd_layer *L, const cdz_tensor *x, cdz_tensor *z) {
    if (L->freq) {
        const cdz_conv_params p = cdz_conv_params_2d(1, 1, L->context, L->context, 1, 1, 1);
        RUN(r, cdz_conv2d(r->ctx, x, &L->rw_w, &L->rw_b, z, &p));
    } else {
        const cdz_conv_params p = cdz_conv_params_1d(1, L->context, 1, 1);
        RUN(r, cdz_conv1d(r->ctx, x, &L->rw_w, &L->rw_b, z, &p));
    }
    return CDZ_STATUS_OK;
}

/* HEncLayer.forward. The output is allocated on the keep stack (a skip connection). */
static cdz_status enc_layer(htd_run *r, const htd_layer *e, const char *what, const cdz_tensor *x_in,
                            const cdz_tensor *inject, cdz_tensor *out) {
    cdz_tensor x = *x_in;
    char sb[96];
    if (!e->freq && x.ndim == 4) x = reshape(&x, 3, SHP(x.shape[0], x.shape[1] * x.shape[2], x.shape[3]));
    if (x.shape[1] != e->chin)
        return CFG_ERR("htdemucs: %s expects %d input channels, its input is %s", what, e->chin,
                       shape_str(&x, sb, sizeof sb));
    const int64_t B = x.shape[0];
    int64_t yshape[4];
    int ynd;
    cdz_conv_params p;
    if (e->freq) {
        if (x.ndim != 4) return CFG_ERR("htdemucs: %s is a frequency layer but its input is %s",
                                        what, shape_str(&x, sb, sizeof sb));
        const int64_t Fo = cdz_conv_out_len(x.shape[2], e->ker, e->stride, 1, e->pad, e->pad);
        if (Fo < 1)
            return CFG_ERR("htdemucs: %s: %lld frequency bins are too few for kernel %d "
                           "(segment/nfft/depth too small)", what, (long long)x.shape[2], e->ker);
        p = cdz_conv_params_2d(e->stride, 1, e->pad, 0, 1, 1, 1);
        ynd = 4;
        yshape[0] = B; yshape[1] = e->chout; yshape[2] = Fo; yshape[3] = x.shape[3];
    } else {
        const int64_t L = x.shape[2];
        const int64_t extra = L % e->stride ? e->stride - L % e->stride : 0; /* zero-pad right */
        const int64_t Lo = cdz_conv_out_len(L + extra, e->ker, e->stride, 1, e->pad, e->pad);
        if (Lo < 1)
            return CFG_ERR("htdemucs: %s: %lld samples are too few for kernel %d (segment too "
                           "short)", what, (long long)L, e->ker);
        p = cdz_conv_params_1d(e->stride, e->pad, 1, 1);
        p.pad_end[0] += (int32_t)extra;
        ynd = 3;
        yshape[0] = B; yshape[1] = e->chout; yshape[2] = Lo;
    }
    const bool y_is_out = e->empty || !e->rewrite;
    cdz_tensor y;
    CDZ_TRY(ralloc(r, y_is_out ? &r->keep : &r->tmp, ynd, yshape, &y));
    const size_t mk = r->tmp.top;
    if (e->freq) RUN(r, cdz_conv2d(r->ctx, &x, &e->conv_w, &e->conv_b, &y, &p));
    else RUN(r, cdz_conv1d(r->ctx, &x, &e->conv_w, &e->conv_b, &y, &p));
    if (e->empty) {
        *out = y;
        return CDZ_STATUS_OK;
    }
    if (inject) {
        /* y (B, C, F, T) + inject (B, C, T)[:, :, None] */
        if (inject->ndim != 3 || inject->shape[0] != B || inject->shape[1] != y.shape[1] ||
            inject->shape[2] != y.shape[ynd - 1] || ynd != 4)
            return CFG_ERR("htdemucs: %s: the time branch output %s cannot be injected into %s "
                           "(its length must equal the frequency branch's frames; upstream "
                           "asserts the same)", what, shape_str(inject, sb, sizeof sb),
                           shape_str(&y, (char[96]){0}, 96));
        cdz_tensor inj = reshape(inject, 4, SHP(B, y.shape[1], 1, y.shape[3]));
        RUN(r, cdz_add(r->ctx, &y, &inj, &y));
    }
    if (e->norm) RUN(r, cdz_groupnorm(r->ctx, &y, &e->norm1_w, &e->norm1_b, &y, r->m->c.norm_groups, HTD_EPS));
    RUN(r, cdz_gelu(r->ctx, &y, &y, false));
    if (e->dconv) CDZ_TRY(dconv_branch(r, &e->dc, &y));
    if (e->rewrite) {
        int64_t zs[4];
        memcpy(zs, yshape, sizeof zs);
        zs[1] = 2 * e->chout;
        cdz_tensor z;
        CDZ_TRY(ralloc(r, &r->tmp, ynd, zs, &z));
        CDZ_TRY(rewrite_conv(r, e, &y, &z));
        if (e->norm) RUN(r, cdz_groupnorm(r->ctx, &z, &e->norm2_w, &e->norm2_b, &z, r->m->c.norm_groups, HTD_EPS));
        CDZ_TRY(ralloc(r, &r->keep, ynd, yshape, out));
        RUN(r, cdz_glu(r->ctx, &z, out, 1));
    } else {
        *out = y;
    }
    r->tmp.top = mk;
    return CDZ_STATUS_OK;
}

/* HDecLayer.forward. x_in is consumed (x + skip is formed in place). The output goes on
 * the tmp stack below this layer's temporaries; `pre` (the input of conv_tr) on the keep
 * stack when asked for (the merged-branch case feeds it to an empty time decoder). */
static cdz_status dec_layer(htd_run *r, const htd_layer *d, const char *what, const cdz_tensor *x_in,
                            const cdz_tensor *skip, int64_t length, cdz_tensor *out, cdz_tensor *pre) {
    cdz_tensor x = *x_in;
    char sb[96], sb2[96];
    if (d->freq && x.ndim == 3) {
        if (x.shape[1] % d->chin)
            return CFG_ERR("htdemucs: %s cannot view %s as [B, %d, -1, T]", what,
                           shape_str(&x, sb, sizeof sb), d->chin);
        x = reshape(&x, 4, SHP(x.shape[0], d->chin, x.shape[1] / d->chin, x.shape[2]));
    }
    if (x.shape[1] != d->chin)
        return CFG_ERR("htdemucs: %s expects %d input channels, its input is %s", what, d->chin,
                       shape_str(&x, sb, sizeof sb));
    if (d->freq != (x.ndim == 4))
        return CFG_ERR("htdemucs: %s got a %d-d input %s", what, x.ndim, shape_str(&x, sb, sizeof sb));
    const int64_t B = x.shape[0];
    const int nd = x.ndim;
    const int64_t Fin = d->freq ? x.shape[2] : 1, T = x.shape[nd - 1];
    /* output shape */
    const int64_t full = cdz_conv_transpose_out_len(d->freq ? Fin : T, d->ker, d->stride, 1, 0, 0, 0);
    int64_t os[4];
    if (d->freq) {
        if (full - 2 * d->pad < 1)
            return CFG_ERR("htdemucs: %s: transposed conv gives %lld rows, fewer than the crop",
                           what, (long long)full);
        os[0] = B; os[1] = d->chout; os[2] = full - 2 * d->pad; os[3] = T;
    } else {
        if (d->pad + length > full)
            return CFG_ERR("htdemucs: %s: transposed conv gives %lld samples, the crop needs "
                           "%lld + %lld", what, (long long)full, (long long)d->pad,
                           (long long)length);
        os[0] = B; os[1] = d->chout; os[2] = length;
    }
    CDZ_TRY(ralloc(r, &r->tmp, nd, os, out));
    const size_t mk = r->tmp.top;
    cdz_tensor y = x;
    if (!d->empty) {
        if (!skip || skip->ndim != nd || memcmp(skip->shape, x.shape, sizeof(int64_t) * (size_t)nd))
            return CFG_ERR("htdemucs: %s: skip %s does not match the input %s", what,
                           skip ? shape_str(skip, sb, sizeof sb) : "(none)",
                           shape_str(&x, sb2, sizeof sb2));
        RUN(r, cdz_add(r->ctx, &x, skip, &x));
        if (d->rewrite) {
            int64_t zs[4], ys[4];
            memcpy(zs, x.shape, sizeof zs);
            memcpy(ys, x.shape, sizeof ys);
            zs[1] = 2 * d->chin;
            cdz_tensor z;
            CDZ_TRY(ralloc(r, &r->tmp, nd, zs, &z));
            CDZ_TRY(rewrite_conv(r, d, &x, &z));
            if (d->norm) RUN(r, cdz_groupnorm(r->ctx, &z, &d->norm1_w, &d->norm1_b, &z, r->m->c.norm_groups, HTD_EPS));
            CDZ_TRY(ralloc(r, pre ? &r->keep : &r->tmp, nd, ys, &y));
            RUN(r, cdz_glu(r->ctx, &z, &y, 1));
        }
        if (d->dconv) CDZ_TRY(dconv_branch(r, &d->dc, &y));
    }
    if (pre) *pre = y;
    /* conv_tr, then norm2, then the crop (GroupNorm statistics see the uncropped output) */
    if (d->norm) {
        int64_t fs[4];
        memcpy(fs, os, sizeof fs);
        fs[2] = full;
        cdz_tensor z;
        CDZ_TRY(ralloc(r, &r->tmp, nd, fs, &z));
        if (d->freq) {
            const cdz_conv_params p = cdz_conv_params_2d(d->stride, 1, 0, 0, 1, 1, 1);
            RUN(r, cdz_conv_transpose2d(r->ctx, &y, &d->conv_w, &d->conv_b, &z, &p));
        } else {
            const cdz_conv_params p = cdz_conv_params_1d(d->stride, 0, 1, 1);
            RUN(r, cdz_conv_transpose1d(r->ctx, &y, &d->conv_w, &d->conv_b, &z, &p));
        }
        RUN(r, cdz_groupnorm(r->ctx, &z, &d->norm2_w, &d->norm2_b, &z, r->m->c.norm_groups, HTD_EPS));
        RUN(r, cdz_slice(r->ctx, &z, out, 2, d->pad, d->pad + os[2], 1));
    } else if (d->freq) {
        /* ConvTranspose2d then z[..., pad:-pad, :] == the transposed conv with padding pad */
        const cdz_conv_params p = cdz_conv_params_2d(d->stride, 1, d->pad, 0, 1, 1, 1);
        RUN(r, cdz_conv_transpose2d(r->ctx, &y, &d->conv_w, &d->conv_b, out, &p));
    } else {
        cdz_conv_params p = cdz_conv_params_1d(d->stride, 0, 1, 1);
        p.pad_begin[0] = d->pad;
        p.pad_end[0] = (int32_t)(full - d->pad - length);
        RUN(r, cdz_conv_transpose1d(r->ctx, &y, &d->conv_w, &d->conv_b, out, &p));
    }
    if (!d->last) RUN(r, cdz_gelu(r->ctx, out, out, false));
    r->tmp.top = mk;
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- transformer */

/* A transformer norm on tokens [B, L, D]: LayerNorm(D), or MyGroupNorm(1, D) (one mean and
 * variance over all L x D values of a sample, then the per-channel affine). y may be x. */
static cdz_status tnorm(htd_run *r, int kind, const cdz_tensor *w, const cdz_tensor *b,
                        const cdz_tensor *x, cdz_tensor *y) {
    if (kind == HTD_NORM_LN) {
        RUN(r, cdz_layernorm(r->ctx, x, w, b, y, HTD_EPS));
    } else if (kind == HTD_NORM_GN1) {
        const int64_t B = x->shape[0], n = x->shape[1] * x->shape[2];
        cdz_tensor xv = reshape(x, 3, SHP(B, 1, n)), yv = reshape(y, 3, SHP(B, 1, n));
        RUN(r, cdz_groupnorm(r->ctx, &xv, NULL, NULL, &yv, 1, HTD_EPS));
        RUN(r, cdz_mul(r->ctx, y, w, y));
        RUN(r, cdz_add(r->ctx, y, b, y));
    } else if (x->data != y->data) {
        RUN(r, cdz_copy_strided(r->ctx, x, y));
    }
    return CDZ_STATUS_OK;
}

typedef struct htd_tscratch {
    cdz_tensor h, h2, qkv, a, o, ff; /* flat buffers sized for the longest sequence */
} htd_tscratch;

static cdz_tensor tok(const cdz_tensor *buf, int64_t B, int64_t L, int64_t D) {
    return reshape(buf, 3, SHP(B, L, D));
}

/* Multi-head attention core: q4/k4/v4 are head views, result in `a` [B, Lq, D]. */
static cdz_status mha(htd_run *r, const htd_member *m, const void *q, int64_t q_rs, const void *k,
                      const void *v, int64_t kv_rs, int64_t B, int64_t Lq, int64_t Lk, cdz_tensor *a) {
    const int64_t D = m->t_dim, H = m->t_heads, hd = D / H;
    cdz_tensor q4 = sview((void *)q, r->dev, 4, SHP(B, H, Lq, hd), SHP(Lq * q_rs, hd, q_rs, 1));
    cdz_tensor k4 = sview((void *)k, r->dev, 4, SHP(B, H, Lk, hd), SHP(Lk * kv_rs, hd, kv_rs, 1));
    cdz_tensor v4 = sview((void *)v, r->dev, 4, SHP(B, H, Lk, hd), SHP(Lk * kv_rs, hd, kv_rs, 1));
    cdz_tensor o4 = sview(a->data, r->dev, 4, SHP(B, H, Lq, hd), SHP(Lq * D, hd, D, 1));
    RUN(r, cdz_attention(r->ctx, &q4, &k4, &v4, &o4, (float)(1.0 / sqrt((double)hd)), false));
    return CDZ_STATUS_OK;
}

/* Feed-forward block: o = linear2(act(linear1(x))). */
static cdz_status ffn(htd_run *r, const htd_member *m, const htd_tlayer *t, htd_tscratch *sc,
                      const cdz_tensor *x, cdz_tensor *o) {
    const int64_t B = x->shape[0], L = x->shape[1];
    cdz_tensor f = tok(&sc->ff, B, L, m->t_hidden);
    RUN(r, cdz_linear(r->ctx, x, &t->l1_w, &t->l1_b, &f));
    if (m->c.t_gelu) RUN(r, cdz_gelu(r->ctx, &f, &f, false));
    else RUN(r, cdz_relu(r->ctx, &f, &f));
    RUN(r, cdz_linear(r->ctx, &f, &t->l2_w, &t->l2_b, o));
    return CDZ_STATUS_OK;
}

/* MyTransformerEncoderLayer.forward on x [B, L, D], in place. */
static cdz_status self_layer(htd_run *r, const htd_member *m, const htd_tlayer *t,
                             htd_tscratch *sc, cdz_tensor *x) {
    const int64_t B = x->shape[0], L = x->shape[1], D = m->t_dim;
    const int nk = m->layer_norm_kind;
    const cdz_tensor *g1 = m->c.t_layer_scale ? &t->g1 : NULL, *g2 = m->c.t_layer_scale ? &t->g2 : NULL;
    cdz_tensor h = tok(&sc->h, B, L, D), qkv = tok(&sc->qkv, B, L, 3 * D), a = tok(&sc->a, B, L, D),
               o = tok(&sc->o, B, L, D);
    const bool pre = m->c.t_norm_first;
    const cdz_tensor *src = x;
    if (pre) {
        CDZ_TRY(tnorm(r, nk, &t->n1_w, &t->n1_b, x, &h));
        src = &h;
    }
    RUN(r, cdz_linear(r->ctx, src, &t->in_w, &t->in_b, &qkv));
    CDZ_TRY(mha(r, m, qkv.data, 3 * D, offp(qkv.data, D), offp(qkv.data, 2 * D), 3 * D, B, L, L, &a));
    RUN(r, cdz_linear(r->ctx, &a, &t->out_w, &t->out_b, &o));
    RUN(r, cdz_residual(r->ctx, x, &o, g1, x, 2));
    if (pre) {
        CDZ_TRY(tnorm(r, nk, &t->n2_w, &t->n2_b, x, &h));
        CDZ_TRY(ffn(r, m, t, sc, &h, &o));
        RUN(r, cdz_residual(r->ctx, x, &o, g2, x, 2));
        if (m->c.t_norm_out) CDZ_TRY(tnorm(r, HTD_NORM_GN1, &t->no_w, &t->no_b, x, x));
    } else {
        CDZ_TRY(tnorm(r, nk, &t->n1_w, &t->n1_b, x, x));
        CDZ_TRY(ffn(r, m, t, sc, x, &o));
        RUN(r, cdz_residual(r->ctx, x, &o, g2, x, 2));
        CDZ_TRY(tnorm(r, nk, &t->n2_w, &t->n2_b, x, x));
    }
    return CDZ_STATUS_OK;
}

/* CrossTransformerEncoderLayer.forward: y = layer(q, kv); y may be q (in place). */
static cdz_status cross_layer(htd_run *r, const htd_member *m, const htd_tlayer *t,
                              htd_tscratch *sc, const cdz_tensor *q, const cdz_tensor *kv,
                              cdz_tensor *y) {
    const int64_t B = q->shape[0], Lq = q->shape[1], Lk = kv->shape[1], D = m->t_dim;
    const int nk = m->layer_norm_kind;
    const cdz_tensor *g1 = m->c.t_layer_scale ? &t->g1 : NULL, *g2 = m->c.t_layer_scale ? &t->g2 : NULL;
    cdz_tensor hq = tok(&sc->h, B, Lq, D), hk = tok(&sc->h2, B, Lk, D), a = tok(&sc->a, B, Lq, D),
               o = tok(&sc->o, B, Lq, D);
    cdz_tensor qp = tok(&sc->qkv, B, Lq, D);
    cdz_tensor kvp = ften(offp(sc->qkv.data, B * Lq * D), r->dev, 3, SHP(B, Lk, 2 * D));
    cdz_tensor wq = ften(t->in_w.data, r->dev, 2, SHP(D, D));
    cdz_tensor bq = ften(t->in_b.data, r->dev, 1, SHP(D));
    cdz_tensor wkv = ften(offp(t->in_w.data, D * D), r->dev, 2, SHP(2 * D, D));
    cdz_tensor bkv = ften(offp(t->in_b.data, D), r->dev, 1, SHP(2 * D));
    const bool pre = m->c.t_norm_first;
    const cdz_tensor *qs = q, *ks = kv;
    if (pre) {
        CDZ_TRY(tnorm(r, nk, &t->n1_w, &t->n1_b, q, &hq));
        CDZ_TRY(tnorm(r, nk, &t->n2_w, &t->n2_b, kv, &hk));
        qs = &hq;
        ks = &hk;
    }
    RUN(r, cdz_linear(r->ctx, qs, &wq, &bq, &qp));
    RUN(r, cdz_linear(r->ctx, ks, &wkv, &bkv, &kvp));
    CDZ_TRY(mha(r, m, qp.data, D, kvp.data, offp(kvp.data, D), 2 * D, B, Lq, Lk, &a));
    RUN(r, cdz_linear(r->ctx, &a, &t->out_w, &t->out_b, &o));
    RUN(r, cdz_residual(r->ctx, q, &o, g1, y, 2));
    if (pre) {
        CDZ_TRY(tnorm(r, nk, &t->n3_w, &t->n3_b, y, &hq));
        CDZ_TRY(ffn(r, m, t, sc, &hq, &o));
        RUN(r, cdz_residual(r->ctx, y, &o, g2, y, 2));
        if (m->c.t_norm_out) CDZ_TRY(tnorm(r, HTD_NORM_GN1, &t->no_w, &t->no_b, y, y));
    } else {
        CDZ_TRY(tnorm(r, nk, &t->n1_w, &t->n1_b, y, y));
        CDZ_TRY(ffn(r, m, t, sc, y, &o));
        RUN(r, cdz_residual(r->ctx, y, &o, g2, y, 2));
        CDZ_TRY(tnorm(r, nk, &t->n2_w, &t->n2_b, y, y));
    }
    return CDZ_STATUS_OK;
}

/* CrossTransformerEncoder.forward: x [B, D, Fr, T1], xt [B, D, T2] -> xo, xto (same shapes,
 * preallocated by the caller). */
static cdz_status transformer(htd_run *r, const cdz_tensor *x, const cdz_tensor *xt,
                              cdz_tensor *xo, cdz_tensor *xto) {
    const htd_member *m = r->m;
    const int64_t B = x->shape[0], D = x->shape[1], Fr = x->shape[2], T1 = x->shape[3];
    const int64_t T2 = xt->shape[2], Lf = Fr * T1, Lt = T2, Lm = Lf > Lt ? Lf : Lt;
    char sb[96];
    if (D != m->t_dim || xt->shape[1] != D)
        return CFG_ERR("htdemucs: the transformer is %d wide, its inputs are %s and %s", m->t_dim,
                       shape_str(x, sb, sizeof sb), shape_str(xt, (char[96]){0}, 96));
    if (r->dry) {
        r->tr_fr = Fr;
        r->tr_t1 = T1;
        r->tr_t2 = T2;
    } else if (Fr != m->tr_fr || T1 != m->tr_t1 || T2 != m->tr_t2) {
        return cdz_error_set(CDZ_STATUS_INTERNAL, "htdemucs: transformer grid differs from load");
    }
    const size_t mk = r->tmp.top;
    cdz_tensor X, X2, XT;
    CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, Lf, D), &X));
    CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, Lf, D), &X2));
    CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, Lt, D), &XT));
    htd_tscratch sc;
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * D), &sc.h));
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * D), &sc.h2));
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * 3 * D), &sc.qkv));
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * D), &sc.a));
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * D), &sc.o));
    CDZ_TRY(ralloc(r, &r->tmp, 1, SHP(B * Lm * (int64_t)m->t_hidden), &sc.ff));

    /* "b c fr t1 -> b (t1 fr) c" and "b c t2 -> b t2 c" */
    static const int32_t to_tok2[4] = {0, 3, 2, 1}, to_tok1[3] = {0, 2, 1};
    cdz_tensor Xv = reshape(&X, 4, SHP(B, T1, Fr, D));
    RUN(r, cdz_permute(r->ctx, x, &Xv, to_tok2));
    RUN(r, cdz_permute(r->ctx, xt, &XT, to_tok1));
    CDZ_TRY(tnorm(r, m->norm_in_kind, &m->nin_w, &m->nin_b, &X, &X));
    CDZ_TRY(tnorm(r, m->norm_in_kind, &m->nint_w, &m->nint_b, &XT, &XT));
    RUN(r, cdz_add(r->ctx, &X, &m->pos2d, &X));
    RUN(r, cdz_add(r->ctx, &XT, &m->pos1d, &XT));
    tapf(r, &X, "forward.transformer.in.freq");
    tapf(r, &XT, "forward.transformer.in.time");

    const int parity = m->c.t_cross_first ? 1 : 0;
    cdz_tensor *cur = &X, *nxt = &X2;
    for (int i = 0; i < m->c.t_layers; i++) {
        if (i % 2 == parity) {
            CDZ_TRY(self_layer(r, m, &m->tl[i], &sc, cur));
            CDZ_TRY(self_layer(r, m, &m->tlt[i], &sc, &XT));
        } else {
            /* both directions read the pre-update freq tokens */
            CDZ_TRY(cross_layer(r, m, &m->tl[i], &sc, cur, &XT, nxt));
            CDZ_TRY(cross_layer(r, m, &m->tlt[i], &sc, &XT, cur, &XT));
            cdz_tensor *s = cur;
            cur = nxt;
            nxt = s;
        }
        tapf(r, cur, "forward.transformer.layer.%d.freq", i);
        tapf(r, &XT, "forward.transformer.layer.%d.time", i);
    }
    cdz_tensor Cv = reshape(cur, 4, SHP(B, T1, Fr, D));
    RUN(r, cdz_permute(r->ctx, &Cv, xo, to_tok2));
    RUN(r, cdz_permute(r->ctx, &XT, xto, to_tok1));
    tapf(r, xo, "forward.transformer.out.freq");
    tapf(r, xto, "forward.transformer.out.time");
    r->tmp.top = mk;
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- spectrograms */

/* stft / istft over B items: one call with the full-batch plan, or one per item. */
static cdz_status run_stft(htd_run *r, bool inverse, const cdz_tensor *in, cdz_tensor *outp,
                           int64_t B) {
    if (r->dry) return CDZ_STATUS_OK;
    const cdz_stft_plan *full = inverse ? r->istft_full : r->stft_full;
    const cdz_stft_plan *one = inverse ? r->istft_one : r->stft_one;
    if (B == r->plan_batch || !one) {
        return inverse ? cdz_istft(r->ctx, full, in, outp) : cdz_stft(r->ctx, full, in, outp);
    }
    const int64_t ni = cdz_tensor_numel(in) / B, no = cdz_tensor_numel(outp) / B;
    for (int64_t b = 0; b < B; b++) {
        cdz_tensor i1 = *in, o1 = *outp;
        i1.shape[0] = 1;
        o1.shape[0] = 1;
        i1.data = offp(in->data, b * ni);
        o1.data = offp(outp->data, b * no);
        CDZ_TRY(inverse ? cdz_istft(r->ctx, one, &i1, &o1) : cdz_stft(r->ctx, one, &i1, &o1));
    }
    return CDZ_STATUS_OK;
}

/* demucs' pad1d(x, (pl, pr), mode='reflect'): inserts zeros on the right first when the
 * input is too short for a reflection of that size. x [B, C, L] -> y [B, C, L + pl + pr]. */
static cdz_status pad1d_reflect(htd_run *r, const cdz_tensor *x, cdz_tensor *y, int64_t pl, int64_t pr) {
    const int64_t L = x->shape[2], maxp = pl > pr ? pl : pr;
    if (L > maxp) {
        RUN(r, cdz_pad(r->ctx, x, y, 1, SHP(pl), SHP(pr), CDZ_PAD_REFLECT, 0.f));
        return CDZ_STATUS_OK;
    }
    const int64_t extra = maxp - L + 1;
    const int64_t er = pr < extra ? pr : extra, el = extra - er;
    const size_t mk = r->tmp.top;
    cdz_tensor z;
    CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(x->shape[0], x->shape[1], L + el + er), &z));
    RUN(r, cdz_pad(r->ctx, x, &z, 1, SHP(el), SHP(er), CDZ_PAD_CONSTANT, 0.f));
    RUN(r, cdz_pad(r->ctx, &z, y, 1, SHP(pl - el), SHP(pr - er), CDZ_PAD_REFLECT, 0.f));
    r->tmp.top = mk;
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- HTDemucs.forward */

static cdz_status forward_body(htd_run *r, const cdz_tensor *mix, cdz_tensor *out) {
    const htd_member *m = r->m;
    const htd_cfg *c = &m->c;
    const cdz_device dev = r->dev;
    const int64_t B = mix->shape[0], C = c->audio_channels, L = c->segment, S = c->sources;
    const int64_t hl = c->nfft / 4, Fq = c->nfft / 2;
    const int64_t le = ceil_div(L, hl), pad = hl / 2 * 3;
    const int64_t Lp = L + pad + (pad + le * hl - L), Tall = le + 4;
    const int depth = m->depth;

    cdz_tensor mean, std, meant, stdt;
    CDZ_TRY(ralloc(r, &r->keep, 1, SHP(B), &mean));
    CDZ_TRY(ralloc(r, &r->keep, 1, SHP(B), &std));
    CDZ_TRY(ralloc(r, &r->keep, 1, SHP(B), &meant));
    CDZ_TRY(ralloc(r, &r->keep, 1, SHP(B), &stdt));
    const size_t mk0 = r->tmp.top;
    cdz_tensor x0, xt0;
    CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, 2 * C, Fq, le), &x0));
    CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, C, L), &xt0));
    {
        /* _spec: reflect pad, STFT, drop the Nyquist bin, keep frames [2, 2 + le);
         * _magnitude (CaC): channel 2c + {re, im} */
        const size_t mk1 = r->tmp.top;
        cdz_tensor xp, z;
        CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, C, Lp), &xp));
        CDZ_TRY(pad1d_reflect(r, mix, &xp, pad, pad + le * hl - L));
        CDZ_TRY(ralloc(r, &r->tmp, 5, SHP(B, C, Fq + 1, Tall, 2), &z));
        CDZ_TRY(run_stft(r, false, &xp, &z, B));
        const int64_t zs[5] = {C * (Fq + 1) * Tall * 2, (Fq + 1) * Tall * 2, Tall * 2, 2, 1};
        cdz_tensor spec = sview(offp(z.data, 2 * 2), dev, 5, SHP(B, C, Fq, le, 2), zs);
        tapf(r, &spec, "forward.spec");
        /* x0[b, 2c + k, f, t] = z[b, c, f, t + 2, k] */
        cdz_tensor cac = sview(offp(z.data, 2 * 2), dev, 5, SHP(B, C, 2, Fq, le),
                               SHP(zs[0], zs[1], 1, zs[2], zs[3]));
        cdz_tensor x0v = reshape(&x0, 5, SHP(B, C, 2, Fq, le));
        RUN(r, cdz_copy_strided(r->ctx, &cac, &x0v));
        r->tmp.top = mk1;
    }
    /* mean / unbiased std over (C, F, T) per item; x = (x - mean) / (1e-5 + std) */
    cdz_tensor x0f = reshape(&x0, 2, SHP(B, 2 * C * Fq * le));
    cdz_tensor m2 = reshape(&mean, 2, SHP(B, 1)), s2 = reshape(&std, 2, SHP(B, 1));
    RUN(r, cdz_mean_std(r->ctx, &x0f, &m2, &s2, 1, true));
    cdz_tensor t4 = reshape(&mean, 4, SHP(B, 1, 1, 1));
    tapf(r, &t4, "forward.norm.mean");
    t4 = reshape(&std, 4, SHP(B, 1, 1, 1));
    tapf(r, &t4, "forward.norm.std");
    RUN(r, cdz_htd_normalize(r->ctx, &x0f, &mean, &std, &x0f, HTD_EPS));
    tapf(r, &x0, "forward.freq.in");
    cdz_tensor mixf = reshape(mix, 2, SHP(B, C * L)), xt0f = reshape(&xt0, 2, SHP(B, C * L));
    cdz_tensor mt2 = reshape(&meant, 2, SHP(B, 1)), st2 = reshape(&stdt, 2, SHP(B, 1));
    RUN(r, cdz_mean_std(r->ctx, &mixf, &mt2, &st2, 1, true));
    cdz_tensor t3 = reshape(&meant, 3, SHP(B, 1, 1));
    tapf(r, &t3, "forward.norm.meant");
    t3 = reshape(&stdt, 3, SHP(B, 1, 1));
    tapf(r, &t3, "forward.norm.stdt");
    RUN(r, cdz_htd_normalize(r->ctx, &mixf, &meant, &stdt, &xt0f, HTD_EPS));
    tapf(r, &xt0, "forward.time.in");

    /* encoders */
    cdz_tensor saved[HTD_MAX_DEPTH], saved_t[HTD_MAX_DEPTH];
    int64_t lengths[HTD_MAX_DEPTH], lengths_t[HTD_MAX_DEPTH];
    size_t kmark[HTD_MAX_DEPTH];
    cdz_tensor x = x0, xt = xt0;
    char what[64];
    for (int i = 0; i < depth; i++) {
        kmark[i] = r->keep.top;
        lengths[i] = x.shape[x.ndim - 1];
        cdz_tensor inj, *inject = NULL;
        if (i < m->n_time) {
            lengths_t[i] = xt.shape[xt.ndim - 1];
            cdz_tensor xtn;
            snprintf(what, sizeof what, "tencoder.%d", i);
            CDZ_TRY(enc_layer(r, &m->tenc[i], what, &xt, NULL, &xtn));
            tapf(r, &xtn, "forward.time.enc.%d", i);
            if (m->tenc[i].empty) {
                inj = xtn;
                inject = &inj;
            } else {
                saved_t[i] = xtn;
            }
            xt = xtn;
        }
        cdz_tensor xn;
        snprintf(what, sizeof what, "encoder.%d", i);
        CDZ_TRY(enc_layer(r, &m->enc[i], what, &x, inject, &xn));
        tapf(r, &xn, "forward.freq.enc.%d", i);
        if (i == 0 && m->has_emb) {
            if (xn.ndim != 4 || xn.shape[2] > m->emb_rows)
                return CFG_ERR("htdemucs: encoder 0 gives %lld frequency rows, the frequency "
                               "embedding has %d", (long long)(xn.ndim == 4 ? xn.shape[2] : 0),
                               m->emb_rows);
            if (r->dry) r->emb_used = xn.shape[2];
            cdz_tensor e = reshape(&m->emb_table, 3, SHP(m->emb_dim, xn.shape[2], 1));
            RUN(r, cdz_add(r->ctx, &xn, &e, &xn));
            tapf(r, &xn, "forward.freq.enc.0.emb");
        }
        saved[i] = xn;
        x = xn;
        if (i == 0) r->tmp.top = mk0; /* the normalised inputs are dead now */
    }

    /* bottom: channel up-sampling, cross transformer, down-sampling */
    if (m->has_tr) {
        if (x.ndim != 4)
            return CFG_UNSUP("htdemucs: the frequency branch collapses to 1 bin before the last "
                             "layer, so the transformer would get a 3-d input (upstream "
                             "HTDemucs fails the same way); use t_layers=0 or a larger nfft");
        const int64_t Fb = x.shape[2], Tb = x.shape[3], T2 = xt.shape[2];
        cdz_tensor xb, xtb;
        CDZ_TRY(ralloc(r, &r->tmp, 4, x.shape, &xb));
        CDZ_TRY(ralloc(r, &r->tmp, 3, xt.shape, &xtb));
        const size_t mk2 = r->tmp.top;
        const int64_t D = m->t_dim;
        cdz_tensor xu = x, xtu = xt, xo, xto;
        const cdz_conv_params p1 = cdz_conv_params_1d(1, 0, 1, 1);
        if (m->has_bottom) {
            cdz_tensor xf = reshape(&x, 3, SHP(B, x.shape[1], Fb * Tb));
            CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, D, Fb, Tb), &xu));
            cdz_tensor xuf = reshape(&xu, 3, SHP(B, D, Fb * Tb));
            RUN(r, cdz_conv1d(r->ctx, &xf, &m->up_w, &m->up_b, &xuf, &p1));
            tapf(r, &xuf, "forward.bottom.up.freq");
            CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, D, T2), &xtu));
            RUN(r, cdz_conv1d(r->ctx, &xt, &m->upt_w, &m->upt_b, &xtu, &p1));
            tapf(r, &xtu, "forward.bottom.up.time");
            CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, D, Fb, Tb), &xo));
            CDZ_TRY(ralloc(r, &r->tmp, 3, SHP(B, D, T2), &xto));
        } else {
            xo = xb;
            xto = xtb;
        }
        CDZ_TRY(transformer(r, &xu, &xtu, &xo, &xto));
        if (m->has_bottom) {
            cdz_tensor xof = reshape(&xo, 3, SHP(B, D, Fb * Tb));
            cdz_tensor xbf = reshape(&xb, 3, SHP(B, xb.shape[1], Fb * Tb));
            RUN(r, cdz_conv1d(r->ctx, &xof, &m->down_w, &m->down_b, &xbf, &p1));
            tapf(r, &xbf, "forward.bottom.down.freq");
            RUN(r, cdz_conv1d(r->ctx, &xto, &m->downt_w, &m->downt_b, &xtb, &p1));
            tapf(r, &xtb, "forward.bottom.down.time");
        }
        r->tmp.top = mk2;
        x = xb;
        xt = xtb;
    }

    /* decoders: skips popped from the keep stack, which is released stage by stage */
    const int offset = depth - m->n_time;
    for (int k = 0; k < depth; k++) {
        const int ei = depth - 1 - k;
        const htd_layer *td = k >= offset ? &m->tdec[k - offset] : NULL;
        cdz_tensor xn, pre;
        snprintf(what, sizeof what, "decoder.%d", k);
        CDZ_TRY(dec_layer(r, &m->dec[k], what, &x, &saved[ei], lengths[ei], &xn,
                          td && td->empty ? &pre : NULL));
        tapf(r, &xn, "forward.freq.dec.%d", k);
        if (td) {
            const int ti = m->n_time - 1 - (k - offset);
            cdz_tensor xtn;
            snprintf(what, sizeof what, "tdecoder.%d", k - offset);
            if (td->empty) {
                if (pre.ndim != 4 || pre.shape[2] != 1)
                    return CFG_ERR("htdemucs: %s takes the frequency decoder's input, which must "
                                   "have 1 frequency row (upstream asserts it)", what);
                cdz_tensor p3 = reshape(&pre, 3, SHP(pre.shape[0], pre.shape[1], pre.shape[3]));
                CDZ_TRY(dec_layer(r, td, what, &p3, NULL, lengths_t[ti], &xtn, NULL));
            } else {
                CDZ_TRY(dec_layer(r, td, what, &xt, &saved_t[ti], lengths_t[ti], &xtn, NULL));
            }
            tapf(r, &xtn, "forward.time.dec.%d", k - offset);
            xt = xtn;
        }
        x = xn;
        r->keep.top = kmark[ei];
    }

    /* output: de-normalise, CaC -> complex, iSTFT; time branch de-normalised; the sum */
    char sb[96];
    if (x.ndim != 4 || x.shape[1] != S * 2 * C || x.shape[2] != Fq || x.shape[3] != le)
        return CFG_ERR("htdemucs: the frequency branch ends with %s, expected [%lld, %lld, %lld, "
                       "%lld]", shape_str(&x, sb, sizeof sb), (long long)B, (long long)(S * 2 * C),
                       (long long)Fq, (long long)le);
    if (xt.ndim != 3 || xt.shape[1] != S * C || xt.shape[2] != L)
        return CFG_ERR("htdemucs: the time branch ends with %s, expected [%lld, %lld, %lld]",
                       shape_str(&xt, sb, sizeof sb), (long long)B, (long long)(S * C), (long long)L);
    cdz_tensor s4 = reshape(&std, 4, SHP(B, 1, 1, 1)), m4 = reshape(&mean, 4, SHP(B, 1, 1, 1));
    RUN(r, cdz_mul(r->ctx, &x, &s4, &x));
    RUN(r, cdz_add(r->ctx, &x, &m4, &x));
    /* _mask: m.view(B, S, C, 2, F, T).permute(0, 1, 2, 4, 5, 3) */
    const int64_t FT = Fq * le;
    cdz_tensor zv = sview(x.data, dev, 6, SHP(B, S, C, Fq, le, 2),
                          SHP(S * C * 2 * FT, C * 2 * FT, 2 * FT, le, 1, FT));
    tapf(r, &zv, "forward.spec_out");
    const int64_t Li = le * hl + 2 * pad;
    cdz_tensor zb, xi;
    CDZ_TRY(ralloc(r, &r->tmp, 6, SHP(B, S, C, Fq + 1, le + 4, 2), &zb));
    /* _ispec: a zero Nyquist bin, two zero frames on each side */
    RUN(r, cdz_pad(r->ctx, &zv, &zb, 3, SHP(0, 2, 0), SHP(1, 2, 0), CDZ_PAD_CONSTANT, 0.f));
    CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, S, C, Li), &xi));
    CDZ_TRY(run_stft(r, true, &zb, &xi, B));
    cdz_tensor xiv = sview(offp(xi.data, pad), dev, 4, SHP(B, S, C, L), SHP(S * C * Li, C * Li, Li, 1));
    tapf(r, &xiv, "forward.istft");
    cdz_tensor st3 = reshape(&stdt, 3, SHP(B, 1, 1)), mt3 = reshape(&meant, 3, SHP(B, 1, 1));
    RUN(r, cdz_mul(r->ctx, &xt, &st3, &xt));
    RUN(r, cdz_add(r->ctx, &xt, &mt3, &xt));
    cdz_tensor xt4 = reshape(&xt, 4, SHP(B, S, C, L));
    tapf(r, &xt4, "forward.time.out");
    cdz_tensor xs;
    CDZ_TRY(ralloc(r, &r->tmp, 4, SHP(B, S, C, L), &xs));
    RUN(r, cdz_slice(r->ctx, &xi, &xs, 3, pad, pad + L, 1));
    RUN(r, cdz_add(r->ctx, &xt4, &xs, out));
    tapf(r, out, "forward.output");
    return CDZ_STATUS_OK;
}

/* A dry run: shapes and peak sizes of both stacks for `batch` items. */
static cdz_status measure(const htd_member *m, cdz_device dev, int64_t batch, htd_run *r) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->dry = true;
    r->dev = dev;
    r->keep.base = r->tmp.base = 1u << 20; /* fake, aligned: nothing is dereferenced */
    const htd_cfg *c = &m->c;
    cdz_tensor mix = ften(NULL, dev, 3, SHP(batch, c->audio_channels, c->segment));
    cdz_tensor out = ften(NULL, dev, 4, SHP(batch, c->sources, c->audio_channels, c->segment));
    return forward_body(r, &mix, &out);
}

/* ======================================================================================
 * Glue: input normalisation (CPU reference; the CUDA kernel is in htdemucs.cu)
 * ==================================================================================== */

cdz_status cdz_htd_normalize(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                             const cdz_tensor *std, cdz_tensor *y, float eps) {
    const char *op = "htd_normalize";
    CDZ_REQUIRE(ctx, "%s: ctx is NULL", op);
    CDZ_TRY(cdz_check_tensor(ctx, op, "x", x, CDZ_DTYPE_F32, -1));
    CDZ_TRY(cdz_check_tensor(ctx, op, "y", y, CDZ_DTYPE_F32, -1));
    CDZ_TRY(cdz_check_tensor(ctx, op, "mean", mean, CDZ_DTYPE_F32, -1));
    CDZ_TRY(cdz_check_tensor(ctx, op, "std", std, CDZ_DTYPE_F32, -1));
    CDZ_REQUIRE(x->ndim >= 1 && x->shape[0] >= 1, "%s: x needs a batch dim", op);
    CDZ_REQUIRE(cdz_tensor_same_shape(x, y), "%s: y must have x's shape", op);
    CDZ_REQUIRE(cdz_tensor_numel(mean) == x->shape[0] && cdz_tensor_numel(std) == x->shape[0],
                "%s: mean and std need %lld values (one per batch item)", op,
                (long long)x->shape[0]);
    if (cdz_ctx_is_cuda(ctx)) {
#ifdef CDZ_HAVE_CUDA
        return cdz_htd_normalize_cuda(ctx, x, mean, std, y, eps);
#else
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "%s: this build has no CUDA", op);
#endif
    }
    return cdz_htd_normalize_cpu(ctx, x, mean, std, y, eps);
}

cdz_status cdz_htd_normalize_cpu(cdz_ctx *ctx, const cdz_tensor *x, const cdz_tensor *mean,
                                 const cdz_tensor *std, cdz_tensor *y, float eps) {
    (void)ctx;
    const int64_t rows = x->shape[0], n = cdz_tensor_numel(x) / (rows ? rows : 1);
    const float *xp = x->data, *mp = mean->data, *sp = std->data;
    float *yp = y->data;
    for (int64_t b = 0; b < rows; b++) {
        const float mu = mp[b];
        const float d = eps + sp[b]; /* torch: (x - mean) / (1e-5 + std), all fp32 */
        for (int64_t i = 0; i < n; i++) yp[b * n + i] = (xp[b * n + i] - mu) / d;
    }
    return CDZ_STATUS_OK;
}

/* ======================================================================================
 * Load
 * ==================================================================================== */

static int spec_cmp(const void *a, const void *b) {
    return strcmp(((const htd_spec *)a)->name, ((const htd_spec *)b)->name);
}

static int spec_name_cmp(const void *key, const void *b) {
    return strcmp((const char *)key, ((const htd_spec *)b)->name);
}

/* Tensor values as f32 into dst (f32 / f16 / bf16 / f64 stored little-endian, unaligned). */
static void convert_tensor(const cdz_weight_entry *e, float *dst, size_t n) {
    const uint8_t *p = e->data;
    for (size_t i = 0; i < n; i++) {
        switch (e->dtype) {
        case CDZ_DTYPE_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case CDZ_DTYPE_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cdz_f16_to_f32(h);
            break;
        }
        case CDZ_DTYPE_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cdz_bf16_to_f32(h);
            break;
        }
        default: { /* F64: rounds like load_state_dict's copy into fp32 parameters */
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        }
    }
}

/* Positional embeddings exactly as transformer.py computes them in fp32 (on the CPU), times
 * t_weight_pos_embed (the product rounded to fp32, as torch's scalar multiply). */
static void fill_pos2d(float *dst, int64_t D, int64_t Fr, int64_t T1, double max_period, float wpe) {
    const int64_t half = D / 2; /* d_model = int(d_model / 2) */
    const float k = (float)(-(log(max_period) / (double)half));
    for (int64_t t = 0; t < T1; t++)
        for (int64_t f = 0; f < Fr; f++) {
            float *row = dst + (t * Fr + f) * D; /* token t * Fr + f */
            for (int64_t i = 0; 2 * i < half; i++) {
                const float div = expf((float)(2 * i) * k);
                const float pw = (float)t * div, ph = (float)f * div;
                row[2 * i] = wpe * sinf(pw);
                if (2 * i + 1 < half) row[2 * i + 1] = wpe * cosf(pw);
                row[half + 2 * i] = wpe * sinf(ph);
                if (half + 2 * i + 1 < D) row[half + 2 * i + 1] = wpe * cosf(ph);
            }
        }
}

static void fill_pos1d(float *dst, int64_t D, int64_t T2, double max_period, float wpe) {
    const int64_t half = D / 2;
    const float mp = (float)max_period;
    for (int64_t k = 0; k < half; k++) {
        const float e = (float)k / (float)(half - 1);
        const float div = powf(mp, e);
        for (int64_t t = 0; t < T2; t++) {
            const float ph = (float)t / div;
            dst[t * D + k] = wpe * cosf(ph);
            dst[t * D + half + k] = wpe * sinf(ph);
        }
    }
}

static cdz_status parse_top(const cdz_weights *w, json_t **root_out) {
    const char *label = "htdemucs";
    const char *model = cdz_weights_metadata_get(w, "model");
    if (!model || strcmp(model, "htdemucs") != 0)
        return CFG_ERR("%s: the weights' metadata 'model' is %s%s%s, expected \"htdemucs\" (convert "
                       "with weights-tools/cadenza-convert demucs)", label, model ? "\"" : "",
                       model ? model : "missing", model ? "\"" : "");
    const char *text = cdz_weights_metadata_get(w, "config");
    if (!text) return CFG_ERR("%s: the weights' metadata has no 'config'", label);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return CFG_ERR("%s: metadata 'config' is not valid JSON (line %d: %s)", label,
                              jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return CFG_ERR("%s: metadata 'config' must be a JSON object", label);
    }
    *root_out = root;
    const json_t *arch = json_object_get(root, "architecture");
    if (!json_is_string(arch) || strcmp(json_string_value(arch), "htdemucs") != 0)
        return CFG_ERR("%s: config 'architecture' must be \"htdemucs\"", label);
    const json_t *ver = json_object_get(root, "config_version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return CFG_ERR("%s: config_version must be 1 (this runtime reads version 1)", label);
    return CDZ_STATUS_OK;
}

static cdz_status load_members(cdz_htdemucs *mdl, const json_t *root, htd_specs *specs) {
    const json_t *srcs = json_object_get(root, "sources");
    if (!json_is_array(srcs) || json_array_size(srcs) < 1 ||
        json_array_size(srcs) > CDZ_HTDEMUCS_MAX_SOURCES)
        return CFG_ERR("htdemucs config: 'sources' must list 1..%d names", CDZ_HTDEMUCS_MAX_SOURCES);
    mdl->sources = (int)json_array_size(srcs);
    for (int i = 0; i < mdl->sources; i++) {
        const json_t *sn = json_array_get(srcs, (size_t)i);
        if (!json_is_string(sn) || strlen(json_string_value(sn)) >= 16 || !json_string_value(sn)[0])
            return CFG_ERR("htdemucs config: source %d must be a name of 1..15 bytes", i);
        snprintf(mdl->source_names[i], sizeof mdl->source_names[i], "%s", json_string_value(sn));
    }
    const json_t *ac = json_object_get(root, "audio_channels"), *sr = json_object_get(root, "samplerate");
    if (!json_is_integer(ac) || json_integer_value(ac) < 1 || json_integer_value(ac) > 64 ||
        !json_is_integer(sr) || json_integer_value(sr) < 1)
        return CFG_ERR("htdemucs config: 'audio_channels' and 'samplerate' must be positive integers");
    mdl->audio_channels = (int)json_integer_value(ac);
    mdl->samplerate = (int)json_integer_value(sr);
    const json_t *mems = json_object_get(root, "models");
    if (!json_is_array(mems) || json_array_size(mems) < 1 ||
        json_array_size(mems) > CDZ_HTDEMUCS_MAX_MEMBERS)
        return CFG_ERR("htdemucs config: 'models' must list 1..%d members", CDZ_HTDEMUCS_MAX_MEMBERS);
    mdl->members = (int)json_array_size(mems);
    const json_t *wts = json_object_get(root, "weights");
    for (int i = 0; i < mdl->members; i++)
        for (int k = 0; k < mdl->sources; k++) mdl->weights[i][k] = 1.f;
    if (wts && !json_is_null(wts)) {
        if (!json_is_array(wts) || (int)json_array_size(wts) != mdl->members)
            return CFG_ERR("htdemucs config: 'weights' must be %d rows (one per member)", mdl->members);
        for (int i = 0; i < mdl->members; i++) {
            const json_t *row = json_array_get(wts, (size_t)i);
            if (!json_is_array(row) || (int)json_array_size(row) != mdl->sources)
                return CFG_ERR("htdemucs config: 'weights' row %d must hold %d numbers", i, mdl->sources);
            for (int k = 0; k < mdl->sources; k++) {
                const json_t *v = json_array_get(row, (size_t)k);
                if (!json_is_number(v) || !isfinite(json_number_value(v)))
                    return CFG_ERR("htdemucs config: weights[%d][%d] is not a finite number", i, k);
                mdl->weights[i][k] = (float)json_number_value(v);
            }
        }
    }
    mdl->m = calloc((size_t)mdl->members, sizeof *mdl->m);
    if (!mdl->m) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    for (int i = 0; i < mdl->members; i++) {
        htd_member *m = &mdl->m[i];
        const json_t *mem = json_array_get(mems, (size_t)i);
        char where[96];
        snprintf(where, sizeof where, "member %d", i);
        if (!json_is_object(mem)) return CFG_ERR("htdemucs config: models[%d] is not an object", i);
        const json_t *nm = json_object_get(mem, "name");
        snprintf(m->name, sizeof m->name, "%s", json_is_string(nm) ? json_string_value(nm) : "");
        const json_t *pf = json_object_get(mem, "tensor_prefix");
        if (pf && !json_is_string(pf)) return CFG_ERR("htdemucs config (%s): 'tensor_prefix' must be a string", where);
        const char *prefix = pf ? json_string_value(pf) : (mdl->members > 1 ? NULL : "");
        if (!prefix) return CFG_ERR("htdemucs config (%s): a bag member needs 'tensor_prefix'", where);
        if (strlen(prefix) >= sizeof m->prefix)
            return CFG_ERR("htdemucs config (%s): 'tensor_prefix' is too long", where);
        snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
        CDZ_TRY(parse_cfg(mem, where, &m->c));
        /* sources of the member must be the bag's */
        const json_t *ksrc = json_object_get(json_object_get(mem, "kwargs"), "sources");
        if (ksrc && !json_equal((json_t *)ksrc, (json_t *)srcs))
            return CFG_ERR("htdemucs config (%s): kwargs 'sources' differ from the bag's 'sources'", where);
        m->c.sources = mdl->sources;
        if (m->c.audio_channels != mdl->audio_channels || m->c.samplerate != mdl->samplerate)
            return CFG_ERR("htdemucs config (%s): audio_channels/samplerate differ from the bag's", where);
        CDZ_TRY(build_member(m, where, specs));
    }
    return CDZ_STATUS_OK;
}

static cdz_status check_tensors(const cdz_weights *w, htd_specs *specs) {
    for (size_t i = 0; i < specs->n; i++) {
        htd_spec *s = &specs->v[i];
        const cdz_weight_entry *e = cdz_weights_find(w, s->name);
        cdz_tensor want = ften(NULL, (cdz_device){CDZ_DEVICE_CPU, 0}, s->nd, s->shape);
        char ws[96], gs[96];
        if (!e)
            return CFG_ERR("htdemucs: tensor '%s' %s is missing (the config implies it)", s->name,
                           shape_str(&want, ws, sizeof ws));
        if (e->dtype != CDZ_DTYPE_F32 && e->dtype != CDZ_DTYPE_F16 && e->dtype != CDZ_DTYPE_BF16 &&
            e->dtype != CDZ_DTYPE_F64)
            return CFG_ERR("htdemucs: tensor '%s' is %s, expected a float type (f32/f16/bf16/f64)",
                           s->name, cdz_dtype_name(e->dtype));
        cdz_tensor got = ften(NULL, want.device, e->ndim, e->shape);
        if (e->ndim != s->nd || memcmp(e->shape, s->shape, sizeof(int64_t) * (size_t)s->nd))
            return CFG_ERR("htdemucs: tensor '%s' has shape %s, the config implies %s", s->name,
                           shape_str(&got, gs, sizeof gs), shape_str(&want, ws, sizeof ws));
        s->e = e;
    }
    /* names must be unique in the list (two members with one prefix would collide) */
    htd_spec *sorted = malloc(specs->n * sizeof *sorted);
    if (!sorted) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    memcpy(sorted, specs->v, specs->n * sizeof *sorted);
    qsort(sorted, specs->n, sizeof *sorted, spec_cmp);
    cdz_status st = CDZ_STATUS_OK;
    for (size_t i = 1; i < specs->n && st == CDZ_STATUS_OK; i++)
        if (!strcmp(sorted[i].name, sorted[i - 1].name))
            st = CFG_ERR("htdemucs: tensor name '%s' is claimed twice (duplicate tensor_prefix?)",
                         sorted[i].name);
    for (size_t i = 0; i < cdz_weights_count(w) && st == CDZ_STATUS_OK; i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        if (!bsearch(e->name, sorted, specs->n, sizeof *sorted, spec_name_cmp))
            st = CFG_ERR("htdemucs: unexpected tensor '%s' (not part of the model the config "
                         "describes)", e->name);
    }
    free(sorted);
    return st;
}

void cdz_htdemucs_free(cdz_htdemucs *m) {
    if (!m) return;
    if (m->block && m->arena) cdz_arena_free(m->arena, m->block);
    free(m->m);
    free(m);
}

cdz_status cdz_htdemucs_load(const cdz_weights *w, cdz_arena *arena, cdz_htdemucs **out) {
    CDZ_REQUIRE(w && arena && out, "htdemucs_load: %s is NULL", !w ? "weights" : !arena ? "arena" : "out");
    *out = NULL;
    cdz_htdemucs *mdl = calloc(1, sizeof *mdl);
    if (!mdl) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    mdl->arena = arena;
    mdl->dev = cdz_arena_device(arena);
    htd_specs specs = {0};
    json_t *root = NULL;
    float *stage = NULL;
    cdz_status st = parse_top(w, &root);
    if (st == CDZ_STATUS_OK) st = load_members(mdl, root, &specs);
    if (st == CDZ_STATUS_OK) st = check_tensors(w, &specs);
    /* shape pass per member: validates the network for one segment, sizes derived tables */
    size_t total = 0;
    for (size_t i = 0; st == CDZ_STATUS_OK && i < specs.n; i++) {
        specs.v[i].offset = total;
        total += align_up((size_t)cdz_tensor_numel(specs.v[i].dst) * sizeof(float), HTD_ALIGN);
    }
    size_t *tab_off = NULL;
    if (st == CDZ_STATUS_OK && !(tab_off = calloc((size_t)mdl->members * 3, sizeof *tab_off)))
        st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    for (int i = 0; st == CDZ_STATUS_OK && i < mdl->members; i++) {
        htd_member *m = &mdl->m[i];
        htd_run r;
        st = measure(m, mdl->dev, 1, &r);
        if (st != CDZ_STATUS_OK) {
            cdz_error_prefix("htdemucs (member %d, segment %lld samples)", i, (long long)m->c.segment);
            break;
        }
        m->emb_used = r.emb_used;
        m->tr_fr = r.tr_fr;
        m->tr_t1 = r.tr_t1;
        m->tr_t2 = r.tr_t2;
        tab_off[3 * i] = total;
        total += align_up((size_t)m->emb_dim * (size_t)m->emb_used * sizeof(float), HTD_ALIGN);
        tab_off[3 * i + 1] = total;
        total += align_up((size_t)(m->tr_fr * m->tr_t1 * m->t_dim) * sizeof(float), HTD_ALIGN);
        tab_off[3 * i + 2] = total;
        total += align_up((size_t)(m->tr_t2 * m->t_dim) * sizeof(float), HTD_ALIGN);
    }
    if (st == CDZ_STATUS_OK && !(stage = calloc(total ? total : 1, 1)))
        st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory for %zu bytes", total);
    if (st == CDZ_STATUS_OK) {
        for (size_t i = 0; i < specs.n; i++)
            convert_tensor(specs.v[i].e, (float *)((uint8_t *)stage + specs.v[i].offset),
                           (size_t)cdz_tensor_numel(specs.v[i].dst));
        for (int i = 0; i < mdl->members; i++) {
            htd_member *m = &mdl->m[i];
            if (m->has_emb) {
                /* ScaledEmbedding: embedding(arange) * emb_scale, then * freq_emb (fp32) */
                const float *W = NULL;
                for (size_t k = 0; k < specs.n; k++)
                    if (specs.v[k].dst == &m->emb_w) W = (const float *)((uint8_t *)stage + specs.v[k].offset);
                float *tab = (float *)((uint8_t *)stage + tab_off[3 * i]);
                const float es = (float)m->c.emb_scale, fe = (float)m->c.freq_emb;
                for (int64_t f = 0; f < m->emb_used; f++)
                    for (int64_t ch = 0; ch < m->emb_dim; ch++)
                        tab[ch * m->emb_used + f] = fe * (W[f * m->emb_dim + ch] * es);
            }
            if (m->has_tr) {
                const float wpe = (float)m->c.t_weight_pos_embed;
                fill_pos2d((float *)((uint8_t *)stage + tab_off[3 * i + 1]), m->t_dim, m->tr_fr,
                           m->tr_t1, m->c.t_max_period, wpe);
                fill_pos1d((float *)((uint8_t *)stage + tab_off[3 * i + 2]), m->t_dim, m->tr_t2,
                           m->c.t_max_period, wpe);
            }
        }
        st = cdz_arena_alloc(arena, total ? total : 1, HTD_ALIGN, "htdemucs weights", &mdl->block);
        if (st == CDZ_STATUS_OK) {
            mdl->block_bytes = total;
            if (mdl->dev.kind == CDZ_DEVICE_CPU) {
                memcpy(mdl->block, stage, total);
            } else {
#ifdef CDZ_HAVE_CUDA
                st = cdz_htd_copy_to_device(mdl->dev.index, mdl->block, stage, total);
#else
                st = cdz_error_set(CDZ_STATUS_UNSUPPORTED, "htdemucs: this build has no CUDA");
#endif
            }
        }
    }
    if (st == CDZ_STATUS_OK) {
        for (size_t i = 0; i < specs.n; i++) {
            specs.v[i].dst->data = (uint8_t *)mdl->block + specs.v[i].offset;
            specs.v[i].dst->device = mdl->dev;
        }
        for (int i = 0; i < mdl->members; i++) {
            htd_member *m = &mdl->m[i];
            if (m->has_emb)
                m->emb_table = ften((uint8_t *)mdl->block + tab_off[3 * i], mdl->dev, 2,
                                    SHP(m->emb_dim, m->emb_used));
            if (m->has_tr) {
                m->pos2d = ften((uint8_t *)mdl->block + tab_off[3 * i + 1], mdl->dev, 2,
                                SHP(m->tr_fr * m->tr_t1, m->t_dim));
                m->pos1d = ften((uint8_t *)mdl->block + tab_off[3 * i + 2], mdl->dev, 2,
                                SHP(m->tr_t2, m->t_dim));
            }
        }
    }
    free(stage);
    free(tab_off);
    free(specs.v);
    if (root) json_decref(root);
    if (st != CDZ_STATUS_OK) {
        cdz_htdemucs_free(mdl);
        return st;
    }
    *out = mdl;
    return CDZ_STATUS_OK;
}

void cdz_htdemucs_get_info(const cdz_htdemucs *m, cdz_htdemucs_info *out) {
    memset(out, 0, sizeof *out);
    if (!m) return;
    out->members = m->members;
    out->sources = m->sources;
    out->audio_channels = m->audio_channels;
    out->samplerate = m->samplerate;
    out->segment_samples = INT64_MAX;
    for (int i = 0; i < m->members; i++) {
        out->member_segment[i] = m->m[i].c.segment;
        if (m->m[i].c.segment < out->segment_samples) out->segment_samples = m->m[i].c.segment;
        for (int k = 0; k < m->sources; k++) out->weights[i][k] = m->weights[i][k];
    }
    for (int k = 0; k < m->sources; k++)
        memcpy(out->source_names[k], m->source_names[k], sizeof out->source_names[k]);
    out->weight_bytes = m->block_bytes;
}

/* ======================================================================================
 * Plans and the forward
 * ==================================================================================== */

void cdz_htdemucs_plan_destroy(cdz_htdemucs_plan *p) {
    if (!p) return;
    cdz_stft_plan_destroy(p->stft_full);
    cdz_stft_plan_destroy(p->istft_full);
    cdz_stft_plan_destroy(p->stft_one);
    cdz_stft_plan_destroy(p->istft_one);
    cdz_arena_region_free(&p->region);
    cdz_arena_destroy(p->own_arena);
    free(p);
}

static cdz_status make_stft(cdz_ctx *ctx, const htd_cfg *c, int64_t batch, int64_t length,
                            cdz_stft_plan **out) {
    cdz_stft_config sc;
    memset(&sc, 0, sizeof sc);
    sc.n_fft = c->nfft;
    sc.hop_length = c->nfft / 4;
    sc.center = true;
    sc.normalized = true;
    return cdz_stft_plan_create(ctx, &sc, batch, length, out);
}

cdz_status cdz_htdemucs_plan_create(const cdz_htdemucs *mdl, int32_t member, cdz_ctx *ctx,
                                    int32_t batch, cdz_htdemucs_plan **out) {
    CDZ_REQUIRE(mdl && ctx && out, "htdemucs_plan_create: %s is NULL", !mdl ? "model" : !ctx ? "ctx" : "out");
    *out = NULL;
    CDZ_REQUIRE(member >= 0 && member < mdl->members, "htdemucs_plan_create: member %d out of "
                "range (the model has %d)", (int)member, mdl->members);
    CDZ_REQUIRE(batch >= 1 && batch <= 65536, "htdemucs_plan_create: batch %d must be in [1, 65536]",
                (int)batch);
    const cdz_device dev = cdz_ctx_device(ctx);
    char a[32], b[32];
    CDZ_REQUIRE(dev.kind == mdl->dev.kind && (dev.kind == CDZ_DEVICE_CPU || dev.index == mdl->dev.index),
                "htdemucs_plan_create: the context is on %s, the model on %s",
                cdz_device_str(dev, a, sizeof a), cdz_device_str(mdl->dev, b, sizeof b));
    const htd_member *m = &mdl->m[member];
    htd_run r;
    CDZ_TRY(measure(m, dev, batch, &r));
    cdz_htdemucs_plan *p = calloc(1, sizeof *p);
    if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    p->model = mdl;
    p->member = member;
    p->ctx = ctx;
    p->batch = batch;
    p->keep_bytes = align_up(r.keep.peak, HTD_ALIGN);
    p->tmp_bytes = align_up(r.tmp.peak, HTD_ALIGN);
    const size_t total = p->keep_bytes + p->tmp_bytes;
    cdz_arena *arena = cdz_ctx_arena(ctx);
    cdz_status st = CDZ_STATUS_OK;
    if (!arena) {
        if (dev.kind != CDZ_DEVICE_CPU)
            st = CFG_ERR("htdemucs_plan_create: a CUDA context needs an arena");
        else if ((st = cdz_arena_create(dev, total + 4 * HTD_ALIGN, &p->own_arena)) == CDZ_STATUS_OK)
            arena = p->own_arena;
    }
    if (st == CDZ_STATUS_OK) {
        st = cdz_arena_region_init(arena, total, "htdemucs activations", &p->region);
        if (st != CDZ_STATUS_OK) cdz_error_prefix("htdemucs plan (member %d, batch %d)", (int)member, (int)batch);
    }
    const htd_cfg *c = &m->c;
    const int64_t hl = c->nfft / 4, le = ceil_div(c->segment, hl), pad = hl / 2 * 3;
    const int64_t Lp = le * hl + 2 * pad, C = c->audio_channels, S = c->sources;
    if (st == CDZ_STATUS_OK) st = make_stft(ctx, c, batch * C, Lp, &p->stft_full);
    if (st == CDZ_STATUS_OK) st = make_stft(ctx, c, batch * S * C, Lp, &p->istft_full);
    if (st == CDZ_STATUS_OK && batch > 1) st = make_stft(ctx, c, C, Lp, &p->stft_one);
    if (st == CDZ_STATUS_OK && batch > 1) st = make_stft(ctx, c, S * C, Lp, &p->istft_one);
    if (st == CDZ_STATUS_OK) {
        cdz_stft_info info;
        cdz_stft_plan_get_info(p->stft_full, &info);
        if (info.frames != le + 4)
            st = cdz_error_set(CDZ_STATUS_INTERNAL, "htdemucs: the STFT gives %lld frames, _spec "
                               "expects %lld", (long long)info.frames, (long long)(le + 4));
    }
    if (st != CDZ_STATUS_OK) {
        cdz_htdemucs_plan_destroy(p);
        return st;
    }
    *out = p;
    return CDZ_STATUS_OK;
}

size_t cdz_htdemucs_plan_bytes(const cdz_htdemucs_plan *p) {
    return p ? p->keep_bytes + p->tmp_bytes : 0;
}

void cdz_htdemucs_plan_set_tap(cdz_htdemucs_plan *p, cdz_tap_fn fn, void *user) {
    if (!p) return;
    p->tap = fn;
    p->tap_user = user;
}

cdz_status cdz_htdemucs_forward(cdz_htdemucs_plan *p, const cdz_tensor *mix, cdz_tensor *out) {
    CDZ_REQUIRE(p && mix && out, "htdemucs_forward: %s is NULL", !p ? "plan" : !mix ? "mix" : "out");
    const htd_member *m = &p->model->m[p->member];
    const htd_cfg *c = &m->c;
    const char *op = "htdemucs_forward";
    CDZ_TRY(cdz_check_tensor(p->ctx, op, "mix", mix, CDZ_DTYPE_F32, 3));
    CDZ_TRY(cdz_check_tensor(p->ctx, op, "out", out, CDZ_DTYPE_F32, 4));
    const int64_t B = mix->shape[0];
    CDZ_REQUIRE(B >= 1 && B <= p->batch, "%s: mix has %lld items, the plan holds 1..%d", op,
                (long long)B, (int)p->batch);
    CDZ_REQUIRE(mix->shape[1] == c->audio_channels && mix->shape[2] == c->segment,
                "%s: mix must be [B, %d, %lld] (one segment), got [%lld, %lld, %lld]", op,
                c->audio_channels, (long long)c->segment, (long long)B, (long long)mix->shape[1],
                (long long)mix->shape[2]);
    CDZ_REQUIRE(out->shape[0] == B && out->shape[1] == c->sources &&
                    out->shape[2] == c->audio_channels && out->shape[3] == c->segment,
                "%s: out must be [%lld, %d, %d, %lld]", op, (long long)B, c->sources,
                c->audio_channels, (long long)c->segment);
    htd_run r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.ctx = p->ctx;
    r.dev = cdz_ctx_device(p->ctx);
    r.keep.base = (uintptr_t)p->region.base;
    r.keep.cap = p->keep_bytes;
    r.tmp.base = (uintptr_t)p->region.base + p->keep_bytes;
    r.tmp.cap = p->tmp_bytes;
    r.tap = p->tap;
    r.tap_user = p->tap_user;
    r.plan_batch = p->batch;
    r.stft_full = p->stft_full;
    r.istft_full = p->istft_full;
    r.stft_one = p->stft_one;
    r.istft_one = p->istft_one;
    cdz_status st = forward_body(&r, mix, out);
    if (st != CDZ_STATUS_OK) cdz_error_prefix("htdemucs forward (member %d)", p->member);
    return st;
}

/* ======================================================================================
 * Random checkpoints (cdz_htdemucs_write_random): the loader's own tensor list, seeded values
 * ==================================================================================== */

/* Every HTDemucs.__init__ argument as demucs' conf/config.yaml `htdemucs:` section gives it
 * (the kwargs published packages carry), plus what train.get_model adds. */
static const char htd_base_kwargs[] =
    "{\"sources\":[\"drums\",\"bass\",\"other\",\"vocals\"],\"audio_channels\":2,"
    "\"samplerate\":44100,\"segment\":[39,5],\"use_train_segment\":true,"
    "\"channels\":48,\"channels_time\":null,\"growth\":2,\"nfft\":4096,\"wiener_iters\":0,"
    "\"end_iters\":0,\"wiener_residual\":false,\"cac\":true,\"depth\":4,\"rewrite\":true,"
    "\"multi_freqs\":[],\"multi_freqs_depth\":3,\"freq_emb\":0.2,\"emb_scale\":10,"
    "\"emb_smooth\":true,\"kernel_size\":8,\"stride\":4,\"time_stride\":2,\"context\":1,"
    "\"context_enc\":0,\"norm_starts\":4,\"norm_groups\":4,\"dconv_mode\":1,\"dconv_depth\":2,"
    "\"dconv_comp\":8,\"dconv_init\":0.001,\"bottom_channels\":0,\"t_layers\":5,"
    "\"t_hidden_scale\":4.0,\"t_heads\":8,\"t_dropout\":0.0,\"t_layer_scale\":true,"
    "\"t_gelu\":true,\"t_emb\":\"sin\",\"t_max_positions\":10000,\"t_max_period\":10000.0,"
    "\"t_weight_pos_embed\":1.0,\"t_cape_mean_normalize\":true,\"t_cape_augment\":true,"
    "\"t_cape_glob_loc_scale\":[5000.0,1.0,1.4],\"t_sin_random_shift\":0,\"t_norm_in\":true,"
    "\"t_norm_in_group\":false,\"t_group_norm\":false,\"t_norm_first\":true,\"t_norm_out\":true,"
    "\"t_weight_decay\":0.0,\"t_lr\":null,\"t_sparse_self_attn\":false,"
    "\"t_sparse_cross_attn\":false,\"t_mask_type\":\"diag\",\"t_mask_random_seed\":42,"
    "\"t_sparse_attn_window\":400,\"t_global_window\":100,\"t_sparsity\":0.95,"
    "\"t_auto_sparsity\":false,\"t_cross_first\":false,\"rescale\":0.1}";

/* Presets: kwargs over the base. htdemucs / htdemucs_6s: the grid overrides of the published
 * 955717e8 / 5c90dfd2 (weights-tools/make_demucs_reference.py); small: htdemucs at a sixth
 * of the width (every block, same segment and token grid: one segment is ~15 s on one CPU
 * core with the reference ops, against minutes full size); tiny: the reference tool's. */
static const struct {
    const char *name, *kwargs;
} htd_presets[] = {
    {"htdemucs", "{\"dconv_mode\":3,\"t_dropout\":0.02,\"bottom_channels\":512}"},
    {"htdemucs_6s", "{\"sources\":[\"drums\",\"bass\",\"other\",\"vocals\",\"guitar\",\"piano\"],"
                    "\"dconv_mode\":3,\"t_dropout\":0.02,\"bottom_channels\":0}"},
    {"small", "{\"dconv_mode\":3,\"t_dropout\":0.02,\"channels\":8,\"bottom_channels\":64}"},
    {"tiny", "{\"segment\":[29,50],\"channels\":16,\"nfft\":512,\"depth\":3,\"dconv_mode\":3,"
             "\"bottom_channels\":32,\"t_layers\":3,\"t_heads\":2}"},
};
#define HTD_N_PRESETS (sizeof htd_presets / sizeof htd_presets[0])

const char *const *cdz_htdemucs_presets(void) {
    static const char *const names[] = {"htdemucs", "htdemucs_6s", "small", "tiny", NULL};
    return names;
}

/* The metadata "config" for kwargs `kw` (stolen), one member, as the converter writes it. */
static cdz_status random_config_from_kwargs(json_t *kw, const char *name, json_t **out) {
    *out = NULL;
    cdz_status st = CDZ_STATUS_OK;
    json_t *srcs = json_object_get(kw, "sources");
    const json_t *sr = json_object_get(kw, "samplerate"), *seg = json_object_get(kw, "segment");
    if (!json_is_array(srcs) || !json_is_integer(sr) || json_integer_value(sr) < 1 ||
        json_integer_value(sr) > 10000000 || !json_is_integer(json_object_get(kw, "audio_channels")))
        st = CFG_ERR("htdemucs_write_random: kwargs need 'sources' (a list), 'samplerate' and "
                     "'audio_channels' (integers)");
    json_t *weights = json_array(), *row = json_array();
    for (size_t k = 0; st == CDZ_STATUS_OK && k < json_array_size(srcs); k++)
        json_array_append_new(row, json_real(1.0));
    json_array_append_new(weights, row);
    json_t *mem = st == CDZ_STATUS_OK ? json_pack("{s:s, s:s, s:s, s:O}", "name", name, "class",
                                                  "HTDemucs", "tensor_prefix", "", "kwargs", kw)
                                      : NULL;
    int64_t samples = 0;
    if (st == CDZ_STATUS_OK && !mem) st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    if (st == CDZ_STATUS_OK)
        st = parse_segment(mem, kw, "htdemucs_write_random", (int)json_integer_value(sr), &samples);
    if (st == CDZ_STATUS_OK) {
        const double seconds = json_is_array(seg)
            ? (double)json_integer_value(json_array_get(seg, 0)) / (double)json_integer_value(json_array_get(seg, 1))
            : json_number_value(seg);
        json_object_set(mem, "segment", (json_t *)seg);
        json_object_set_new(mem, "segment_seconds", json_real(seconds));
        json_object_set_new(mem, "segment_samples", json_integer(samples));
        *out = json_pack("{s:i, s:s, s:b, s:O, s:O, s:O, s:O, s:f, s:O, s:n, s:[O]}",
                         "config_version", 1, "architecture", "htdemucs", "bag", 0, "sources", srcs,
                         "audio_channels", json_object_get(kw, "audio_channels"), "samplerate", sr,
                         "max_segment", seg, "max_segment_seconds", seconds, "weights", weights,
                         "bag_segment", "models", mem);
        if (!*out) st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    }
    json_decref(mem);
    json_decref(weights);
    json_decref(kw);
    return st;
}

/* preset name, whole config JSON, or kwargs JSON over the htdemucs preset -> config root */
static cdz_status random_config(const char *spec, json_t **out) {
    *out = NULL;
    json_error_t jerr;
    const char *p = spec;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    json_t *user = NULL;
    const char *preset = NULL;
    if (*p == '{') {
        user = json_loads(spec, JSON_REJECT_DUPLICATES, &jerr);
        if (!user) return CFG_ERR("htdemucs_write_random: the config is not valid JSON (line %d: %s)",
                                  jerr.line, jerr.text);
        if (!json_is_object(user)) {
            json_decref(user);
            return CFG_ERR("htdemucs_write_random: the config must be a JSON object");
        }
        if (json_object_get(user, "models")) { /* a whole config: used as it is */
            *out = user;
            return CDZ_STATUS_OK;
        }
        preset = "htdemucs";
    } else {
        for (size_t i = 0; i < HTD_N_PRESETS; i++)
            if (!strcmp(spec, htd_presets[i].name)) preset = spec;
        if (!preset)
            return CFG_ERR("htdemucs_write_random: unknown preset '%.64s' (presets: htdemucs, "
                           "htdemucs_6s, small, tiny; or JSON config text)", spec);
    }
    json_t *kw = json_loads(htd_base_kwargs, 0, &jerr);
    for (size_t i = 0; kw && i < HTD_N_PRESETS; i++)
        if (!strcmp(preset, htd_presets[i].name)) {
            json_t *over = json_loads(htd_presets[i].kwargs, 0, &jerr);
            if (over) json_object_update(kw, over);
            json_decref(over);
        }
    if (!kw) {
        json_decref(user);
        return cdz_error_set(CDZ_STATUS_INTERNAL, "htdemucs: the built-in kwargs do not parse");
    }
    if (user) json_object_update(kw, user);
    json_decref(user);
    char name[64];
    snprintf(name, sizeof name, "random-%s", user ? "custom" : preset);
    return random_config_from_kwargs(kw, name, out);
}

/* xoshiro256** seeded by splitmix64: one stream per tensor (seed ^ hash of the name), so a
 * tensor's values do not depend on the others. */
typedef struct htd_rng {
    uint64_t s[4];
    bool has_spare;
    double spare;
} htd_rng;

static uint64_t htd_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t htd_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t htd_rng_next(htd_rng *r) {
    const uint64_t out = htd_rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = htd_rotl(r->s[3], 45);
    return out;
}

static double htd_rng_uniform(htd_rng *r) { /* [0, 1) */
    return (double)(htd_rng_next(r) >> 11) * 0x1.0p-53;
}

static double htd_rng_normal(htd_rng *r) { /* Box-Muller */
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    const double u = 1.0 - htd_rng_uniform(r), v = htd_rng_uniform(r);
    const double rad = sqrt(-2.0 * log(u)), th = 6.283185307179586 * v;
    r->spare = rad * sin(th);
    r->has_spare = true;
    return rad * cos(th);
}

static void htd_rng_seed(htd_rng *r, uint64_t seed, const char *name) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    uint64_t x = seed ^ h;
    for (int i = 0; i < 4; i++) r->s[i] = htd_splitmix(&x);
    r->has_spare = false;
    r->spare = 0;
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The scheme of make_demucs_reference.py: activations stay O(1) in every branch, and
 * LayerScale is far from its 1e-4 init, so every block contributes to the output. */
static void random_fill(const cdz_htdemucs *mdl, const htd_spec *s, uint64_t seed, float *dst) {
    const size_t n = (size_t)cdz_tensor_numel(s->dst);
    htd_rng r;
    htd_rng_seed(&r, seed, s->name);
    double lo = 0, hi = 0, sd = 0; /* uniform [lo, hi) when sd == 0, else N(0, sd^2) */
    bool is_emb = false, is_tr = false;
    int tr_stride = 1;
    for (int i = 0; i < mdl->members; i++) {
        const htd_member *m = &mdl->m[i];
        if (s->dst == &m->emb_w) is_emb = true;
        for (int k = 0; k < m->depth; k++) {
            if (s->dst == &m->dec[k].conv_w) is_tr = true, tr_stride = m->dec[k].stride;
            if (k < m->n_time && s->dst == &m->tdec[k].conv_w) is_tr = true, tr_stride = m->tdec[k].stride;
        }
    }
    if (ends_with(s->name, ".scale")) lo = 0.1, hi = 1.0;    /* DConv / transformer LayerScale */
    else if (ends_with(s->name, "bias") || is_emb) sd = 0.1;  /* biases, frequency embedding */
    else if (s->nd == 1) lo = 0.5, hi = 1.5;                  /* norm weights */
    else {
        double fan_in = 1;
        for (int d = 2; d < s->nd; d++) fan_in *= (double)s->shape[d];
        fan_in *= is_tr ? (double)s->shape[0] / tr_stride : (double)s->shape[1];
        sd = 1.0 / sqrt(fan_in > 1 ? fan_in : 1);
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = sd > 0 ? (float)(sd * htd_rng_normal(&r)) : (float)(lo + (hi - lo) * htd_rng_uniform(&r));
}

cdz_status cdz_htdemucs_write_random(const char *path, const char *preset_or_config, uint64_t seed) {
    CDZ_REQUIRE(path && preset_or_config, "htdemucs_write_random: %s is NULL",
                !path ? "path" : "preset_or_config");
    json_t *root = NULL;
    CDZ_TRY(random_config(preset_or_config, &root));
    cdz_htdemucs *mdl = calloc(1, sizeof *mdl);
    htd_specs specs = {0};
    float *data = NULL;
    cdz_weight_entry *entries = NULL;
    char *config_text = NULL, *meta_text = NULL;
    cdz_status st = mdl ? CDZ_STATUS_OK : cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    if (st == CDZ_STATUS_OK) {
        mdl->dev = (cdz_device){CDZ_DEVICE_CPU, 0};
        const json_t *arch = json_object_get(root, "architecture");
        const json_t *ver = json_object_get(root, "config_version");
        if (!json_is_string(arch) || strcmp(json_string_value(arch), "htdemucs") != 0 ||
            !json_is_integer(ver) || json_integer_value(ver) != 1)
            st = CFG_ERR("htdemucs_write_random: a whole config needs \"architecture\": "
                         "\"htdemucs\" and \"config_version\": 1");
    }
    if (st == CDZ_STATUS_OK) st = load_members(mdl, root, &specs);
    /* the dry forward of the loader: refuses a config that cannot run one segment */
    for (int i = 0; st == CDZ_STATUS_OK && i < mdl->members; i++) {
        htd_run r;
        st = measure(&mdl->m[i], mdl->dev, 1, &r);
        if (st != CDZ_STATUS_OK)
            cdz_error_prefix("htdemucs (member %d, segment %lld samples)", i, (long long)mdl->m[i].c.segment);
    }
    size_t total = 0;
    for (size_t i = 0; st == CDZ_STATUS_OK && i < specs.n; i++) total += (size_t)cdz_tensor_numel(specs.v[i].dst);
    if (st == CDZ_STATUS_OK && (!(data = malloc((total ? total : 1) * sizeof(float))) ||
                                !(entries = calloc(specs.n ? specs.n : 1, sizeof *entries))))
        st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs_write_random: no host memory for "
                           "%zu parameters", total);
    if (st == CDZ_STATUS_OK) {
        size_t off = 0;
        for (size_t i = 0; i < specs.n; i++) {
            const htd_spec *s = &specs.v[i];
            cdz_weight_entry *e = &entries[i];
            e->name = s->name;
            e->dtype = CDZ_DTYPE_F32;
            e->ndim = s->nd;
            memcpy(e->shape, s->shape, sizeof e->shape);
            e->nbytes = (uint64_t)cdz_tensor_numel(s->dst) * sizeof(float);
            e->data = data + off;
            random_fill(mdl, s, seed, data + off);
            off += (size_t)cdz_tensor_numel(s->dst);
        }
        config_text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        char seed_text[32], conv[64];
        snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
        snprintf(conv, sizeof conv, "cadenza %d.%d.%d cdz_htdemucs_write_random", CDZ_VERSION_MAJOR,
                 CDZ_VERSION_MINOR, CDZ_VERSION_PATCH);
        json_t *meta = json_pack(
            "{s:s, s:s, s:s?, s:s, s:s, s:s, s:s, s:s, s:s}", "format", "cadenza", "model", "htdemucs",
            "config", config_text, "source", "random", "source_format", "cadenza-random",
            "random_seed", seed_text, "random_init",
            "conv/linear N(0,1/fan_in), biases N(0,0.01), norm weights U(0.5,1.5), LayerScale "
            "U(0.1,1), freq_emb N(0,0.01)", "stored_dtype", "F32", "converter", conv);
        if (meta) json_object_set_new(meta, "warning", json_string("untrained random weights: the "
                                      "stems they give are meaningless (docs/weights.md converts "
                                      "the published checkpoints)"));
        meta_text = meta && config_text ? json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(meta);
        if (!meta_text) st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    }
    if (st == CDZ_STATUS_OK) st = cdz_weights_write(path, entries, specs.n, meta_text);
    free(meta_text);
    free(config_text);
    free(entries);
    free(data);
    free(specs.v);
    cdz_htdemucs_free(mdl);
    json_decref(root);
    return st;
}
