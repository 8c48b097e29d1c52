/*
 * harness.h: the small test framework shared by every cadenza test program.
 *
 * In the spirit of ggml's test-backend-ops: a case is one op with printed parameters and a
 * printed seed; each comparison inside it is one counted check with its tolerance and the
 * reason for that tolerance written beside it. CUDA checks count as *skipped* (visibly)
 * when no GPU is present. Every program ends with "N passed, M failed, K skipped".
 *
 * Typical op case:
 *
 *   if (!th_begin(s, "groupnorm", "N=%d C=%d L=%d G=%d", n, c, l, g)) return;
 *   cdz_tensor x = th_rand(s, CDZ_DTYPE_F32, 3, (int64_t[]){n, c, l}, -2.f, 2.f);
 *   cdz_tensor y = th_empty(s, CDZ_DTYPE_F32, 3, x.shape);
 *   th_ok(s, "cpu", cdz_groupnorm(s->cpu, &x, &w, &b, g, 1e-5f, &y));
 *   th_compare_f64(s, "cpu-vs-f64", &y, ref64, 1e-6, "fp32 sums over C/G*L terms");
 *   if (th_gpu(s, "cuda-vs-cpu")) {
 *       cdz_tensor dx = th_to_cuda(s, &x), dy = th_cuda_like(s, &y);
 *       th_ok(s, "cuda", cdz_groupnorm(s->cuda, &dx, &dw, &db, g, 1e-5f, &dy));
 *       th_compare(s, "cuda-vs-cpu", &dy, &y, 1e-6, "same math, other reduction order");
 *   }
 *   th_end(s);
 *
 * Memory: th_rand/th_empty/th_alloc host buffers and th_to_cuda/th_cuda_like device buffers
 * live until th_end (device ones in a region of the CUDA arena; host ones in a list).
 * Outputs made by th_empty / th_cuda_like are poisoned with NaN so unwritten elements fail.
 */
#ifndef CDZ_TEST_HARNESS_H
#define CDZ_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../runtime/cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct th_suite {
    const char *program;   /* for the summary line */
    const char *filter;    /* run only cases whose op name contains this (NULL: all) */
    bool verbose;          /* print every check, not only failures */
    cdz_ctx *cpu;          /* always present */
    cdz_ctx *cuda;         /* NULL when no GPU (or --cpu-only) */
    cdz_arena *cuda_arena;
    cdz_region cuda_region; /* per-case device allocations */
    uint64_t seed;         /* base seed; each case derives its own and prints it */
    uint64_t rng;          /* current case's generator state */
    int passed, failed, skipped;
    int cases;
    /* current case */
    char case_label[320];
    bool in_case;
    int case_failed;
    void **host_blocks;
    size_t host_count, host_cap;
    size_t region_mark;
} th_suite;

/* Parse argv (--filter OP, --seed N, --verbose, --cpu-only, --gpu), create contexts.
 * With --gpu, a missing GPU is a failure (make test-gpu must not pass on a CPU box). */
bool th_init(th_suite *s, const char *program, int argc, char **argv);
/* Print "N passed, M failed, K skipped"; return the process exit code. */
int th_finish(th_suite *s);

/* Begin a case; false when filtered out (then do not call th_end). */
bool th_begin(th_suite *s, const char *op, const char *params_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void th_end(th_suite *s);

/* ---- counted checks ---- */
void th_check(th_suite *s, const char *what, bool ok, const char *detail_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Passes when st == CDZ_STATUS_OK; on failure prints the error record. */
bool th_ok(th_suite *s, const char *what, cdz_status st);
/* Passes when st == expected (error-path tests); prints the message it got. */
bool th_expect_status(th_suite *s, const char *what, cdz_status st, cdz_status expected);
void th_skip(th_suite *s, const char *what, const char *why);
/* true when a CUDA context exists; otherwise counts one skip named `what` and returns false. */
bool th_gpu(th_suite *s, const char *what);

/* Relative L2 error ||got-ref|| / ||ref|| <= tol and every element finite.
 * `got` may live on the CPU or CUDA (it is downloaded); `ref` must be on the CPU; both
 * f32/f16/bf16, same element count. Prints rel-L2, max |err| and the first mismatches. */
bool th_compare(th_suite *s, const char *what, const cdz_tensor *got, const cdz_tensor *ref,
                double tol, const char *reason);
/* Same against a float64 host reference of numel(got) elements. */
bool th_compare_f64(th_suite *s, const char *what, const cdz_tensor *got, const double *ref,
                    double tol, const char *reason);
/* Raw arrays. */
bool th_compare_arrays(th_suite *s, const char *what, const float *got, const double *ref,
                       size_t n, double tol, const char *reason);
/* Exact equality of bytes (determinism, bit-exact ops). */
bool th_compare_bytes(th_suite *s, const char *what, const void *a, const void *b, size_t n);

/* ---- random numbers (xoshiro256**, seeded per case) ---- */
uint64_t th_rand_u64(th_suite *s);
double th_rand_uniform(th_suite *s, double lo, double hi);
double th_rand_normal(th_suite *s);
int th_rand_int(th_suite *s, int lo, int hi_inclusive);

/* ---- case-scoped memory ---- */
void *th_alloc(th_suite *s, size_t bytes); /* host, zeroed; freed at th_end */
double *th_alloc_f64(th_suite *s, size_t n);
/* Host tensor of uniform values in [lo, hi) (converted to dtype). */
cdz_tensor th_rand(th_suite *s, cdz_dtype dtype, int32_t ndim, const int64_t *shape, float lo,
                   float hi);
/* Host tensor poisoned with NaN (integers: 0x5A bytes). */
cdz_tensor th_empty(th_suite *s, cdz_dtype dtype, int32_t ndim, const int64_t *shape);
/* Copy a host tensor to the CUDA device (case-scoped). Requires s->cuda. */
cdz_tensor th_to_cuda(th_suite *s, const cdz_tensor *host);
/* CUDA tensor shaped like `t`, poisoned with NaN. */
cdz_tensor th_cuda_like(th_suite *s, const cdz_tensor *t);
/* Host copy of a tensor (downloads CUDA tensors; copies host ones). */
cdz_tensor th_to_host(th_suite *s, const cdz_tensor *t);
/* Element i of a host f32/f16/bf16/f64 tensor as double (contiguous index). */
double th_get(const cdz_tensor *t, int64_t i);
void th_set(cdz_tensor *t, int64_t i, double v);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_TEST_HARNESS_H */
