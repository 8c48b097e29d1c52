/*
 * test_reduce.c: sum / mean / std (unbiased and biased) / mean_std over each dim and over
 * every element, against a long-double reference written here (cpu-vs-f64) and CUDA against
 * the CPU (cuda-vs-cpu). Covers short and long rows, strided dims with few and many
 * columns, n = 1 (unbiased std is NaN, as torch) and n = 0, keepdim and dropped output
 * shapes, 10^6 samples with a large DC offset (mean 100, std 0.01), HTDemucs' normalisation
 * chain (mix.mean(0), then mean/std of the whole track), and error paths.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../harness.h"
#include "families.h"
#include "reduce.h"

enum { R_SUM, R_MEAN, R_STD, R_STD_BIASED, R_MEAN_STD, R_KINDS };
static const char *kind_names[] = {"sum", "mean", "std", "std", "mean_std"};

typedef struct reduce_ref {
    int64_t outputs;
    double *sum, *mean, *std_u, *std_b;
    double *asum, *amean; /* sum |x| and mean |x|: the scale of a sum's rounding error */
} reduce_ref;

/* Long double, two passes per output: independent of the CPU op's code. */
static reduce_ref make_ref(th_suite *s, const cdz_tensor *x, int32_t dim) {
    int64_t outer = 1, n, inner = 1;
    if (dim == CDZ_REDUCE_ALL) {
        n = cdz_tensor_numel(x);
    } else {
        int d = dim < 0 ? dim + x->ndim : dim;
        for (int i = 0; i < d; i++) outer *= x->shape[i];
        for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
        n = x->shape[d];
    }
    reduce_ref r;
    r.outputs = outer * inner;
    r.sum = th_alloc_f64(s, (size_t)r.outputs + 1);
    r.mean = th_alloc_f64(s, (size_t)r.outputs + 1);
    r.std_u = th_alloc_f64(s, (size_t)r.outputs + 1);
    r.std_b = th_alloc_f64(s, (size_t)r.outputs + 1);
    r.asum = th_alloc_f64(s, (size_t)r.outputs + 1);
    r.amean = th_alloc_f64(s, (size_t)r.outputs + 1);
    const float *p = x->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            long double sum = 0, ss = 0, asum = 0;
            for (int64_t k = 0; k < n; k++) {
                sum += p[(o * n + k) * inner + i];
                asum += fabsl((long double)p[(o * n + k) * inner + i]);
            }
            long double mean = n ? sum / n : NAN;
            for (int64_t k = 0; k < n; k++) {
                long double dv = p[(o * n + k) * inner + i] - mean;
                ss += dv * dv;
            }
            int64_t at = o * inner + i;
            r.sum[at] = (double)sum;
            r.asum[at] = (double)asum;
            r.amean[at] = n ? (double)(asum / n) : NAN;
            r.mean[at] = (double)mean;
            r.std_u[at] = n > 1 ? (double)sqrtl(ss / (n - 1)) : NAN;
            r.std_b[at] = n > 0 ? (double)sqrtl(ss / n) : NAN;
        }
    }
    return r;
}

/* NaN where ref is NaN (torch's n = 0 / n = 1 cases), otherwise th_compare_f64. */
static void check_vs(th_suite *s, const char *what, const cdz_tensor *got, const double *ref,
                     const cdz_tensor *ref_t, double tol, const char *why) {
    cdz_tensor g = got->device.kind == CDZ_DEVICE_CUDA ? th_to_host(s, got) : *got;
    int64_t n = cdz_tensor_numel(&g), nan_ref = 0, nan_ok = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = ref ? ref[i] : th_get(ref_t, i);
        if (isnan(r)) {
            nan_ref++;
            nan_ok += isnan(th_get(&g, i));
        }
    }
    if (nan_ref == 0) {
        if (ref) th_compare_f64(s, what, &g, ref, tol, why);
        else th_compare(s, what, &g, ref_t, tol, why);
        return;
    }
    /* these cases have all-NaN references (n = 0, or n = 1 with the unbiased std) */
    th_check(s, what, nan_ref == n && nan_ok == n, "%lld of %lld expected NaN (as torch), %lld are",
             (long long)nan_ref, (long long)n, (long long)nan_ok);
}

/* Sums and means cancel (random signs): their fp32 rounding error is bounded relative to
 * sum |x| (mean |x|), not to the result. Checks max |got - ref| / scale <= tol. */
static void check_scaled(th_suite *s, const char *what, const cdz_tensor *got, const cdz_tensor *ref,
                         const double *scale, double tol, const char *why) {
    cdz_tensor g = got->device.kind == CDZ_DEVICE_CUDA ? th_to_host(s, got) : *got;
    int64_t n = cdz_tensor_numel(&g), bad = 0, worst = 0;
    double max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = th_get(&g, i), b = th_get(ref, i);
        if (isnan(b) || isnan(a)) {
            bad += isnan(a) != isnan(b);
            continue;
        }
        double e = fabs(a - b) / (scale[i] > 0 ? scale[i] : 1e-30);
        if (!(e <= max_rel)) {
            max_rel = e;
            worst = i;
        }
    }
    bool ok = bad == 0 && max_rel <= tol;
    th_check(s, what, ok, "max |err| / scale = %.3g (tol %.3g: %s) n=%lld%s", max_rel, tol, why,
             (long long)n, bad ? " NaN MISMATCH" : "");
    if (!ok && n) printf("        worst [%lld] got=%.9g ref=%.9g scale=%.3g\n", (long long)worst,
                         th_get(&g, worst), th_get(ref, worst), scale[worst]);
}

typedef struct reduce_case {
    const char *label;
    int ndim;
    int64_t shape[4];
    int32_t dim;
    bool keepdim;
    double dc, spread; /* x = dc + spread * uniform[-1, 1) (spread < 0: normal(0, -spread)) */
} reduce_case;

static void run_case(th_suite *s, const reduce_case *c) {
    char shp[64];
    int k = snprintf(shp, sizeof shp, "[");
    for (int i = 0; i < c->ndim; i++)
        k += snprintf(shp + k, sizeof shp - (size_t)k, i ? ",%lld" : "%lld", (long long)c->shape[i]);
    snprintf(shp + k, sizeof shp - (size_t)k, "]");
    char dims[24];
    if (c->dim == CDZ_REDUCE_ALL) snprintf(dims, sizeof dims, "all");
    else snprintf(dims, sizeof dims, "%d", (int)c->dim);

    for (int kind = 0; kind < R_KINDS; kind++) {
        if (!th_begin(s, kind_names[kind], "%s x=%s dim=%s%s%s dc=%g spread=%g", c->label, shp, dims,
                      c->keepdim ? " keepdim" : "", kind == R_STD_BIASED ? " biased" : "", c->dc,
                      c->spread))
            continue;
        /* x is regenerated per kind: host memory lives for one case */
        cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, c->ndim, c->shape, -1.f, 1.f);
        int64_t n = cdz_tensor_numel(&x);
        for (int64_t i = 0; i < n; i++) {
            double u = c->spread < 0 ? -c->spread * th_rand_normal(s) : c->spread * th_get(&x, i);
            ((float *)x.data)[i] = (float)(c->dc + u);
        }
        /* output shape */
        int64_t ys[4];
        int yn = 0;
        if (c->dim == CDZ_REDUCE_ALL) {
            yn = c->keepdim ? c->ndim : 0;
            for (int i = 0; i < yn; i++) ys[i] = 1;
        } else {
            int d = c->dim < 0 ? c->dim + c->ndim : c->dim;
            for (int i = 0; i < c->ndim; i++) {
                if (i == d && !c->keepdim) continue;
                ys[yn++] = i == d ? 1 : c->shape[i];
            }
        }
        reduce_ref r = make_ref(s, &x, c->dim);
        cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, yn, ys), y2 = th_empty(s, CDZ_DTYPE_F32, yn, ys);
        const double *ref = kind == R_SUM ? r.sum : kind == R_MEAN ? r.mean
                          : kind == R_STD_BIASED ? r.std_b : r.std_u;
        const char *why = "double sums, one f32 rounding";
        double tol = 2e-7;
        bool unbiased = kind != R_STD_BIASED;
        cdz_status st;
        switch (kind) {
        case R_SUM: st = cdz_sum(s->cpu, &x, &y, c->dim); break;
        case R_MEAN: st = cdz_mean(s->cpu, &x, &y, c->dim); break;
        case R_MEAN_STD: st = cdz_mean_std(s->cpu, &x, &y, &y2, c->dim, true); break;
        default: st = cdz_std(s->cpu, &x, &y, c->dim, unbiased); break;
        }
        if (th_ok(s, "cpu", st)) {
            if (kind == R_MEAN_STD) {
                check_vs(s, "cpu-vs-f64 mean", &y, r.mean, NULL, tol, why);
                check_vs(s, "cpu-vs-f64 std", &y2, r.std_u, NULL, tol, why);
            } else {
                check_vs(s, "cpu-vs-f64", &y, ref, NULL, tol, why);
            }
        }
        if (th_gpu(s, "cuda-vs-cpu")) {
            cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y), dy2 = th_cuda_like(s, &y2);
            switch (kind) {
            case R_SUM: st = cdz_sum(s->cuda, &dx, &dy, c->dim); break;
            case R_MEAN: st = cdz_mean(s->cuda, &dx, &dy, c->dim); break;
            case R_MEAN_STD: st = cdz_mean_std(s->cuda, &dx, &dy, &dy2, c->dim, true); break;
            default: st = cdz_std(s->cuda, &dx, &dy, c->dim, unbiased); break;
            }
            /* fp32 deviations from fp32 chunk means of 16 values, merged in double (Chan):
             * each output within a few fp32 ulps of the double reference */
            const char *cwhy = "fp32 chunk means/deviations of 16 values, double Chan merges";
            const char *swhy = "fp32 deviations from fp32 chunk means: error ~eps * sum|x|";
            if (th_ok(s, "cuda", st)) {
                if (kind == R_SUM) check_scaled(s, "cuda-vs-cpu", &dy, &y, r.asum, 5e-7, swhy);
                else if (kind == R_MEAN || kind == R_MEAN_STD)
                    check_scaled(s, "cuda-vs-cpu", &dy, &y, r.amean, 5e-7, swhy);
                else check_vs(s, "cuda-vs-cpu", &dy, NULL, &y, 1e-6, cwhy);
                if (kind == R_MEAN_STD) {
                    check_vs(s, "cuda-vs-cpu std", &dy2, NULL, &y2, 1e-6, cwhy);
                    check_vs(s, "cuda-vs-f64 std", &dy2, r.std_u, NULL, 1e-6, cwhy);
                }
            }
        }
        th_end(s);
    }
}

static void test_shapes(th_suite *s) {
    const int32_t ALL = CDZ_REDUCE_ALL;
    const reduce_case cases[] = {
        {"small", 3, {3, 7, 33}, 0, true, 0, 1},
        {"small", 3, {3, 7, 33}, 1, true, 0, 1},
        {"small", 3, {3, 7, 33}, 2, false, 0, 1},
        {"small", 3, {3, 7, 33}, -1, true, 0.5, 1},
        {"small", 3, {3, 7, 33}, -3, false, 0, 1},
        {"vector", 1, {257}, 0, true, 0, 1},
        {"vector", 1, {257}, 0, false, 0, 1},            /* 0-dim output */
        {"n=1", 3, {5, 1, 3}, 1, true, 0, 1},            /* unbiased std: NaN */
        {"n=0", 3, {3, 0, 4}, 1, true, 0, 1},            /* sum 0, mean/std NaN */
        {"long rows", 2, {4, 5000}, 1, true, 3, 1},      /* block-per-row path */
        {"few long rows", 2, {2, 70001}, -1, false, 0, 1}, /* split rows */
        {"strided many cols", 3, {2, 3000, 5}, 1, true, -1, 1},
        {"strided few rows", 2, {1000, 3}, 0, true, 0, 1},
        {"stereo mean(0)", 2, {2, 9001}, 0, false, 0, 1},
        {"wide cols", 2, {7, 1025}, 0, true, 0, 1},
        {"all small", 3, {2, 3, 5}, ALL, false, 0, 1},
        {"all keepdim", 3, {2, 3, 5}, ALL, true, 0, 1},
        {"all odd", 2, {33, 1001}, ALL, false, 0.25, 1},
        {"all one", 1, {1}, ALL, false, 0, 1},          /* unbiased std of 1 value: NaN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(s, &cases[i]);
}

/* 2^20 samples, mean 100, std 0.01 (normal): a naive fp32 sum of squares loses everything. */
static void test_dc_offset(th_suite *s) {
    const reduce_case dc[] = {
        {"DC offset", 1, {1 << 20}, CDZ_REDUCE_ALL, false, 100, -0.01},
        {"DC offset rows", 2, {3, 350003}, 1, true, 100, -0.01},
    };
    for (size_t i = 0; i < sizeof dc / sizeof dc[0]; i++) run_case(s, &dc[i]);
}

/* HTDemucs: ref = mix.mean(0); wav = (mix - ref.mean()) / ref.std() over a whole track. */
static void test_htdemucs_chain(th_suite *s) {
    if (!th_begin(s, "mean_std", "htdemucs chain mix=[2,1048583] mean(0) then mean/std of all"))
        return;
    const int64_t len = 1048583;
    cdz_tensor mix = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){2, len}, -0.8f, 0.8f);
    for (int64_t i = 0; i < len; i++) ((float *)mix.data)[i] += 0.05f; /* left channel DC */
    cdz_tensor mono = th_empty(s, CDZ_DTYPE_F32, 1, (int64_t[]){len});
    cdz_tensor m = th_empty(s, CDZ_DTYPE_F32, 0, NULL), sd = th_empty(s, CDZ_DTYPE_F32, 0, NULL);
    double *ref_mono = th_alloc_f64(s, (size_t)len);
    long double sum = 0, ss = 0;
    for (int64_t i = 0; i < len; i++) {
        ref_mono[i] = ((double)((float *)mix.data)[i] + ((float *)mix.data)[len + i]) / 2;
        sum += (float)ref_mono[i]; /* the op's mono is f32: stats of the rounded values */
    }
    long double mean = sum / len;
    for (int64_t i = 0; i < len; i++) ss += ((float)ref_mono[i] - mean) * ((float)ref_mono[i] - mean);
    double ref_mean = (double)mean, ref_std = (double)sqrtl(ss / (len - 1));
    if (th_ok(s, "cpu mean(0)", cdz_mean(s->cpu, &mix, &mono, 0))) {
        th_compare_f64(s, "cpu-vs-f64 mono", &mono, ref_mono, 1e-7, "mean of 2 in double, one f32 rounding");
        if (th_ok(s, "cpu mean_std", cdz_mean_std(s->cpu, &mono, &m, &sd, CDZ_REDUCE_ALL, true))) {
            th_compare_f64(s, "cpu-vs-f64 mean", &m, &ref_mean, 1e-6,
                           "double sums; the mean is ~1e-4 of the values' scale");
            th_compare_f64(s, "cpu-vs-f64 std", &sd, &ref_std, 2e-7, "double sums, one f32 rounding");
        }
    }
    if (th_gpu(s, "cuda-vs-cpu")) {
        cdz_tensor dmix = th_to_cuda(s, &mix), dmono = th_cuda_like(s, &mono);
        cdz_tensor dm = th_cuda_like(s, &m), dsd = th_cuda_like(s, &sd);
        if (th_ok(s, "cuda mean(0)", cdz_mean(s->cuda, &dmix, &dmono, 0)) &&
            th_ok(s, "cuda mean_std", cdz_mean_std(s->cuda, &dmono, &dm, &dsd, CDZ_REDUCE_ALL, true))) {
            th_compare(s, "cuda-vs-cpu mono", &dmono, &mono, 1e-7, "2 values: fp32 sum vs double, one rounding");
            th_compare_f64(s, "cuda-vs-f64 mean", &dm, &ref_mean, 1e-5,
                           "fp32 chunk means; the mean is ~1e-4 of the values' scale");
            th_compare_f64(s, "cuda-vs-f64 std", &dsd, &ref_std, 1e-6, "double Chan merges of fp32 chunks");
        }
    }
    th_end(s);
}

static void test_errors(th_suite *s) {
    if (!th_begin(s, "sum", "error paths")) return;
    cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 7, 33}, -1, 1);
    cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, (int64_t[]){3, 1, 33});
    cdz_tensor xh = th_rand(s, CDZ_DTYPE_F16, 3, (int64_t[]){3, 7, 33}, -1, 1);
    th_expect_status(s, "f16 x", cdz_sum(s->cpu, &xh, &y, 1), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "dim 3 of 3 dims", cdz_mean(s->cpu, &x, &y, 3), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "dim -4 of 3 dims", cdz_mean(s->cpu, &x, &y, -4), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "y shaped for dim 1, reducing dim 2", cdz_std(s->cpu, &x, &y, 2, true),
                     CDZ_STATUS_INVALID_ARGUMENT);
    cdz_tensor y2 = th_empty(s, CDZ_DTYPE_F32, 2, (int64_t[]){3, 7});
    th_expect_status(s, "y [3,7] reducing dim 1 of [3,7,33]", cdz_sum(s->cpu, &x, &y2, 1),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "every element into 2 outputs", cdz_sum(s->cpu, &x,
                     &(cdz_tensor){.data = y.data, .dtype = CDZ_DTYPE_F32, .ndim = 1, .shape = {2},
                                   .stride = {1}, .device = y.device}, CDZ_REDUCE_ALL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "mean and std the same buffer", cdz_mean_std(s->cpu, &x, &y, &y, 1, true),
                     CDZ_STATUS_INVALID_ARGUMENT);
    cdz_tensor yo = y;
    yo.data = x.data; /* output written over the input */
    th_expect_status(s, "y overlapping x", cdz_mean(s->cpu, &x, &yo, 1), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_tensor xt = x;
    xt.stride[1] = 1;
    xt.stride[2] = 7;
    th_expect_status(s, "strided x", cdz_sum(s->cpu, &xt, &y, 1), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_tensor yi = th_empty(s, CDZ_DTYPE_I32, 3, (int64_t[]){3, 1, 33});
    th_expect_status(s, "i32 y", cdz_sum(s->cpu, &x, &yi, 1), CDZ_STATUS_INVALID_ARGUMENT);
    th_end(s);
}

void test_ops_reduce(th_suite *s) {
    test_shapes(s);
    test_dc_offset(s);
    test_htdemucs_chain(s);
    test_errors(s);
}
