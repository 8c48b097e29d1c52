/*
 * harness.c: see harness.h.
 */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/half.h"

#define TH_CUDA_ARENA_BYTES ((size_t)2 << 30)   /* tests need little; keep room for others */
#define TH_CUDA_REGION_BYTES ((size_t)1536 << 20)

static const uint32_t TH_NAN_F32 = 0x7fc00000u;
static const uint32_t TH_NAN_HALF2 = 0x7e007e00u;  /* two f16 NaNs */
static const uint32_t TH_NAN_BF162 = 0x7fc07fc0u;  /* two bf16 NaNs */

/* ---------------------------------------------------------------- rng: xoshiro256** */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
typedef struct { uint64_t s[4]; } xo_state;
static _Thread_local xo_state tl_xo;

static void rng_seed(uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) tl_xo.s[i] = splitmix(&x);
}

uint64_t th_rand_u64(th_suite *s) {
    (void)s;
    uint64_t *q = tl_xo.s;
    uint64_t r = rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
    q[2] ^= q[0]; q[3] ^= q[1]; q[1] ^= q[2]; q[0] ^= q[3]; q[2] ^= t; q[3] = rotl(q[3], 45);
    return r;
}

double th_rand_uniform(th_suite *s, double lo, double hi) {
    return lo + (hi - lo) * ((double)(th_rand_u64(s) >> 11) * 0x1.0p-53);
}

double th_rand_normal(th_suite *s) {
    double u1 = th_rand_uniform(s, 0x1.0p-53, 1.0), u2 = th_rand_uniform(s, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int th_rand_int(th_suite *s, int lo, int hi) {
    return lo + (int)(th_rand_u64(s) % (uint64_t)(hi - lo + 1));
}

/* ---------------------------------------------------------------- suite */
static void usage(const char *program) {
    fprintf(stderr, "usage: %s [--filter OP] [--seed N] [--verbose] [--cpu-only | --gpu]\n", program);
}

bool th_init(th_suite *s, const char *program, int argc, char **argv) {
    memset(s, 0, sizeof *s);
    s->program = program;
    s->seed = (uint64_t)time(NULL);
    bool cpu_only = false, need_gpu = false;
    const char *env_seed = getenv("CDZ_TEST_SEED");
    if (env_seed) s->seed = strtoull(env_seed, NULL, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--filter") && i + 1 < argc) s->filter = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) s->seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) s->verbose = true;
        else if (!strcmp(argv[i], "--cpu-only")) cpu_only = true;
        else if (!strcmp(argv[i], "--gpu")) need_gpu = true;
        else {
            usage(program);
            return false;
        }
    }
    cdz_log_set_level(CDZ_LOG_LEVEL_WARN);
    cdz_device cpu = {CDZ_DEVICE_CPU, 0};
    cdz_ctx_options opt = {CDZ_PRECISION_STRICT, 16u << 20};
    if (cdz_ctx_create(cpu, NULL, &opt, &s->cpu) != CDZ_STATUS_OK) {
        fprintf(stderr, "%s: cannot create the CPU context: %s\n", program, cdz_last_message());
        return false;
    }
    int ngpu = cpu_only ? 0 : cdz_cuda_device_count();
    if (ngpu > 0) {
        cdz_device gpu = {CDZ_DEVICE_CUDA, 0};
        cdz_ctx_options gopt = {CDZ_PRECISION_STRICT, 256u << 20};
        if (cdz_arena_create(gpu, TH_CUDA_ARENA_BYTES, &s->cuda_arena) != CDZ_STATUS_OK ||
            cdz_ctx_create(gpu, s->cuda_arena, &gopt, &s->cuda) != CDZ_STATUS_OK ||
            cdz_arena_region_init(s->cuda_arena, TH_CUDA_REGION_BYTES, "test region", &s->cuda_region) !=
                CDZ_STATUS_OK) {
            fprintf(stderr, "%s: cannot set up cuda:0: %s\n", program, cdz_last_message());
            return false;
        }
        cdz_device_info info;
        if (cdz_device_get_info(gpu, &info) == CDZ_STATUS_OK)
            printf("# %s on %s (sm_%d%d, %d SMs)\n", program, info.name, info.cc_major, info.cc_minor,
                   info.multiprocessors);
    } else if (need_gpu) {
        fprintf(stderr, "%s: --gpu given but no CUDA device is usable (%s build)\n", program,
                cdz_built_with_cuda() ? "CUDA" : "CPU-only");
        return false;
    } else {
        printf("# %s on the CPU only: CUDA checks are counted as skipped\n", program);
    }
    printf("# seed %llu (rerun with --seed %llu)\n", (unsigned long long)s->seed, (unsigned long long)s->seed);
    rng_seed(s->seed);
    return true;
}

int th_finish(th_suite *s) {
    if (s->in_case) th_end(s);
    if (s->cuda) {
        cdz_arena_region_free(&s->cuda_region);
        cdz_ctx_destroy(s->cuda);
        cdz_arena_destroy(s->cuda_arena);
    }
    cdz_ctx_destroy(s->cpu);
    printf("%s: %d cases\n", s->program, s->cases);
    printf("%d passed, %d failed, %d skipped\n", s->passed, s->failed, s->skipped);
    fflush(stdout);
    return s->failed ? 1 : 0;
}

bool th_begin(th_suite *s, const char *op, const char *fmt, ...) {
    if (s->in_case) th_end(s);
    if (s->filter && !strstr(op, s->filter)) return false;
    char params[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(params, sizeof params, fmt, ap);
    va_end(ap);
    s->cases++;
    uint64_t case_seed = s->seed * 1000003ull + (uint64_t)s->cases;
    rng_seed(case_seed);
    snprintf(s->case_label, sizeof s->case_label, "%s %s", op, params);
    s->in_case = true;
    s->case_failed = 0;
    s->region_mark = cdz_region_mark(&s->cuda_region);
    if (s->verbose) printf("[case] %s (case seed %llu)\n", s->case_label, (unsigned long long)case_seed);
    return true;
}

void th_end(th_suite *s) {
    if (!s->in_case) return;
    for (size_t i = 0; i < s->host_count; i++) free(s->host_blocks[i]);
    free(s->host_blocks);
    s->host_blocks = NULL;
    s->host_count = s->host_cap = 0;
    if (s->cuda) {
        cdz_ctx_sync(s->cuda);
        cdz_region_release(&s->cuda_region, s->region_mark);
    }
    s->in_case = false;
}

void th_check(th_suite *s, const char *what, bool ok, const char *fmt, ...) {
    char detail[1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
    }
    const char *label = s->in_case ? s->case_label : s->program;
    if (ok) {
        s->passed++;
        if (s->verbose) printf("  ok    %s | %s %s\n", label, what, detail);
    } else {
        s->failed++;
        s->case_failed++;
        printf("  FAIL  %s | %s %s\n", label, what, detail);
    }
}

bool th_ok(th_suite *s, const char *what, cdz_status st) {
    if (st == CDZ_STATUS_OK) {
        th_check(s, what, true, "status OK");
        return true;
    }
    th_check(s, what, false, "status %s: %s", cdz_status_name(st), cdz_last_message());
    return false;
}

bool th_expect_status(th_suite *s, const char *what, cdz_status st, cdz_status expected) {
    bool ok = st == expected;
    th_check(s, what, ok, "expected %s, got %s%s%s", cdz_status_name(expected), cdz_status_name(st),
             st != CDZ_STATUS_OK ? ": " : "", st != CDZ_STATUS_OK ? cdz_last_message() : "");
    return ok;
}

void th_skip(th_suite *s, const char *what, const char *why) {
    s->skipped++;
    if (s->verbose) printf("  skip  %s | %s (%s)\n", s->in_case ? s->case_label : s->program, what, why);
}

bool th_gpu(th_suite *s, const char *what) {
    if (s->cuda) return true;
    th_skip(s, what, "no GPU");
    return false;
}

/* ---------------------------------------------------------------- memory */
void *th_alloc(th_suite *s, size_t bytes) {
    if (s->host_count == s->host_cap) {
        size_t cap = s->host_cap ? s->host_cap * 2 : 16;
        void **nb = realloc(s->host_blocks, cap * sizeof *nb);
        if (!nb) {
            fprintf(stderr, "test harness: out of host memory\n");
            exit(2);
        }
        s->host_blocks = nb;
        s->host_cap = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test harness: cannot allocate %zu bytes\n", bytes);
        exit(2);
    }
    s->host_blocks[s->host_count++] = p;
    return p;
}

double *th_alloc_f64(th_suite *s, size_t n) { return th_alloc(s, n * sizeof(double)); }

double th_get(const cdz_tensor *t, int64_t i) {
    switch (t->dtype) {
    case CDZ_DTYPE_F32: return ((const float *)t->data)[i];
    case CDZ_DTYPE_F16: return cdz_f16_to_f32(((const uint16_t *)t->data)[i]);
    case CDZ_DTYPE_BF16: return cdz_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case CDZ_DTYPE_F64: return ((const double *)t->data)[i];
    case CDZ_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case CDZ_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    default: return NAN;
    }
}

void th_set(cdz_tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case CDZ_DTYPE_F32: ((float *)t->data)[i] = (float)v; break;
    case CDZ_DTYPE_F16: ((uint16_t *)t->data)[i] = cdz_f32_to_f16((float)v); break;
    case CDZ_DTYPE_BF16: ((uint16_t *)t->data)[i] = cdz_f32_to_bf16((float)v); break;
    case CDZ_DTYPE_F64: ((double *)t->data)[i] = v; break;
    case CDZ_DTYPE_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case CDZ_DTYPE_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    default: break;
    }
}

static cdz_tensor host_tensor(th_suite *s, cdz_dtype dtype, int32_t ndim, const int64_t *shape) {
    cdz_tensor t;
    if (cdz_tensor_init(&t, NULL, dtype, (cdz_device){CDZ_DEVICE_CPU, 0}, ndim, shape) != CDZ_STATUS_OK) {
        fprintf(stderr, "test harness: bad tensor shape: %s\n", cdz_last_message());
        exit(2);
    }
    t.data = th_alloc(s, cdz_tensor_nbytes(&t) + 8);
    return t;
}

cdz_tensor th_rand(th_suite *s, cdz_dtype dtype, int32_t ndim, const int64_t *shape, float lo, float hi) {
    cdz_tensor t = host_tensor(s, dtype, ndim, shape);
    int64_t n = cdz_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) th_set(&t, i, th_rand_uniform(s, lo, hi));
    return t;
}

static uint32_t poison_pattern(cdz_dtype dtype) {
    switch (dtype) {
    case CDZ_DTYPE_F32: return TH_NAN_F32;
    case CDZ_DTYPE_F16: return TH_NAN_HALF2;
    case CDZ_DTYPE_BF16: return TH_NAN_BF162;
    default: return 0x5a5a5a5au;
    }
}

cdz_tensor th_empty(th_suite *s, cdz_dtype dtype, int32_t ndim, const int64_t *shape) {
    cdz_tensor t = host_tensor(s, dtype, ndim, shape);
    size_t bytes = cdz_tensor_nbytes(&t);
    uint32_t pat = poison_pattern(dtype);
    if (dtype == CDZ_DTYPE_F64) {
        for (int64_t i = 0; i < cdz_tensor_numel(&t); i++) ((double *)t.data)[i] = NAN;
    } else {
        for (size_t i = 0; i + 4 <= bytes + 3; i += 4) memcpy((uint8_t *)t.data + i, &pat, 4);
    }
    return t;
}

static void *cuda_alloc(th_suite *s, size_t bytes) {
    void *p = NULL;
    if (!s->cuda) {
        fprintf(stderr, "test harness: a CUDA tensor was requested without a GPU (guard with th_gpu)\n");
        exit(2);
    }
    if (cdz_region_alloc(&s->cuda_region, bytes + 16, 256, &p) != CDZ_STATUS_OK) {
        fprintf(stderr, "test harness: %s\n", cdz_last_message());
        exit(2);
    }
    return p;
}

cdz_tensor th_to_cuda(th_suite *s, const cdz_tensor *host) {
    cdz_tensor t;
    cdz_tensor_init(&t, NULL, host->dtype, cdz_ctx_device(s->cuda), host->ndim, host->shape);
    size_t bytes = cdz_tensor_nbytes(&t);
    t.data = cuda_alloc(s, bytes);
    if (!cdz_tensor_is_contiguous(host)) {
        fprintf(stderr, "test harness: th_to_cuda needs a contiguous host tensor\n");
        exit(2);
    }
    if (cdz_copy_to_device(s->cuda, t.data, host->data, bytes) != CDZ_STATUS_OK ||
        cdz_ctx_sync(s->cuda) != CDZ_STATUS_OK)
        th_check(s, "upload", false, "%s", cdz_last_message());
    return t;
}

cdz_tensor th_cuda_like(th_suite *s, const cdz_tensor *like) {
    cdz_tensor t;
    cdz_tensor_init(&t, NULL, like->dtype, cdz_ctx_device(s->cuda), like->ndim, like->shape);
    size_t bytes = cdz_tensor_nbytes(&t);
    t.data = cuda_alloc(s, bytes);
    if (cdz_fill_u32(s->cuda, t.data, poison_pattern(like->dtype), (bytes + 3) / 4) != CDZ_STATUS_OK)
        th_check(s, "poison", false, "%s", cdz_last_message());
    return t;
}

cdz_tensor th_to_host(th_suite *s, const cdz_tensor *t) {
    cdz_tensor h = host_tensor(s, t->dtype, t->ndim, t->shape);
    size_t bytes = cdz_tensor_nbytes(&h);
    if (t->device.kind == CDZ_DEVICE_CUDA) {
        if (cdz_ctx_sync(s->cuda) != CDZ_STATUS_OK || cdz_copy_to_host(s->cuda, h.data, t->data, bytes) != CDZ_STATUS_OK ||
            cdz_ctx_sync(s->cuda) != CDZ_STATUS_OK) {
            th_check(s, "download", false, "%s", cdz_last_message());
            memset(h.data, 0xff, bytes); /* NaN-ish garbage so the comparison fails too */
        }
    } else {
        memcpy(h.data, t->data, bytes);
    }
    return h;
}

/* ---------------------------------------------------------------- comparisons */
bool th_compare_arrays(th_suite *s, const char *what, const float *got, const double *ref, size_t n,
                       double tol, const char *reason) {
    double num = 0, den = 0, max_abs = 0;
    size_t nonfinite = 0, first_bad = SIZE_MAX, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i])) {
            if (nonfinite++ == 0) first_bad = i;
            continue;
        }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        if (fabs(d) > max_abs) {
            max_abs = fabs(d);
            worst = i;
        }
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = nonfinite == 0 && rel <= tol;
    char info[512];
    int k = snprintf(info, sizeof info, "rel_l2=%.3g max_abs=%.3g (tol %.3g: %s) n=%zu", rel, max_abs, tol,
                     reason ? reason : "no reason given", n);
    if (nonfinite && k > 0 && (size_t)k < sizeof info)
        snprintf(info + k, sizeof info - (size_t)k, " NON-FINITE x%zu, first at [%zu] got=%g ref=%g", nonfinite,
                 first_bad, (double)got[first_bad], ref[first_bad]);
    else if (!ok && n && k > 0 && (size_t)k < sizeof info)
        snprintf(info + k, sizeof info - (size_t)k, " worst at [%zu] got=%.9g ref=%.9g", worst, (double)got[worst],
                 ref[worst]);
    th_check(s, what, ok, "%s", info);
    if (!ok && s->verbose) {
        int shown = 0;
        for (size_t i = 0; i < n && shown < 5; i++) {
            double d = fabs((double)got[i] - ref[i]);
            if (!isfinite(got[i]) || d > tol * (fabs(ref[i]) + 1e-30) * 10) {
                printf("        [%zu] got=%.9g ref=%.9g\n", i, (double)got[i], ref[i]);
                shown++;
            }
        }
    }
    return ok;
}

static float *to_f32(th_suite *s, const cdz_tensor *t) {
    cdz_tensor h = t->device.kind == CDZ_DEVICE_CUDA ? th_to_host(s, t) : *t;
    int64_t n = cdz_tensor_numel(&h);
    float *out = th_alloc(s, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) out[i] = (float)th_get(&h, i);
    return out;
}

bool th_compare(th_suite *s, const char *what, const cdz_tensor *got, const cdz_tensor *ref, double tol,
                const char *reason) {
    int64_t n = cdz_tensor_numel(got);
    if (n != cdz_tensor_numel(ref)) {
        th_check(s, what, false, "element counts differ: %lld vs %lld", (long long)n,
                 (long long)cdz_tensor_numel(ref));
        return false;
    }
    float *g = to_f32(s, got);
    double *r = th_alloc_f64(s, (size_t)n);
    for (int64_t i = 0; i < n; i++) r[i] = th_get(ref, i);
    return th_compare_arrays(s, what, g, r, (size_t)n, tol, reason);
}

bool th_compare_f64(th_suite *s, const char *what, const cdz_tensor *got, const double *ref, double tol,
                    const char *reason) {
    float *g = to_f32(s, got);
    return th_compare_arrays(s, what, g, ref, (size_t)cdz_tensor_numel(got), tol, reason);
}

bool th_compare_bytes(th_suite *s, const char *what, const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    size_t diff = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i] && diff++ == 0) first = i;
    if (diff) th_check(s, what, false, "%zu of %zu bytes differ, first at byte %zu", diff, n, first);
    else th_check(s, what, true, "%zu bytes identical", n);
    return diff == 0;
}
