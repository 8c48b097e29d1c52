/*
 * test_runtime: status record, tensors, device names, log levels, and the memory arena
 * (alignment, best fit, coalescing, exhaustion, injected failures, statistics, regions).
 */
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../runtime/ctx.h"
#include "../runtime/half.h"

static const cdz_device CPU = {CDZ_DEVICE_CPU, 0};

static void test_status(th_suite *s) {
    if (!th_begin(s, "status", "codes, names, retryable, prefix")) return;
    th_check(s, "OK is 0", CDZ_STATUS_OK == 0, NULL);
    bool names_ok = true;
    for (int c = 0; c < CDZ_STATUS_COUNT_; c++)
        if (!cdz_status_name((cdz_status)c) || !strcmp(cdz_status_name((cdz_status)c), "UNKNOWN_STATUS")) names_ok = false;
    th_check(s, "every code has a name", names_ok, NULL);
    th_check(s, "unknown code", !strcmp(cdz_status_name((cdz_status)999), "UNKNOWN_STATUS"), NULL);
    th_check(s, "BUSY retryable", cdz_status_retryable(CDZ_STATUS_BUSY), NULL);
    th_check(s, "INVALID_ARGUMENT not retryable", !cdz_status_retryable(CDZ_STATUS_INVALID_ARGUMENT), NULL);
    cdz_status st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "tensor '%s' is %d", "w", 3);
    th_check(s, "set returns code", st == CDZ_STATUS_INVALID_ARGUMENT, NULL);
    th_check(s, "message", !strcmp(cdz_last_message(), "tensor 'w' is 3"), "got '%s'", cdz_last_message());
    cdz_error_prefix("loading '%s'", "m.safetensors");
    th_check(s, "prefix", !strcmp(cdz_last_message(), "loading 'm.safetensors': tensor 'w' is 3"), "got '%s'",
             cdz_last_message());
    th_check(s, "prefix keeps code", cdz_last_error()->code == CDZ_STATUS_INVALID_ARGUMENT, NULL);
    cdz_error_set_retryable(true);
    th_check(s, "retryable override", cdz_last_error()->retryable, NULL);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    cdz_error_set(CDZ_STATUS_IO, "%s", big);
    cdz_error_prefix("%s", big);
    th_check(s, "long messages truncate", strlen(cdz_last_message()) == CDZ_ERROR_MESSAGE_MAX - 1, "len %zu",
             strlen(cdz_last_message()));
    cdz_error_clear();
    th_check(s, "clear", cdz_last_error()->code == CDZ_STATUS_OK && !cdz_last_message()[0], NULL);
    th_end(s);
}

static void *thread_sets_error(void *arg) {
    (void)arg;
    cdz_error_set(CDZ_STATUS_BUSY, "other thread");
    return NULL;
}

static void test_status_threads(th_suite *s) {
    if (!th_begin(s, "status", "thread-local record")) return;
    cdz_error_set(CDZ_STATUS_IO, "main thread");
    pthread_t t;
    pthread_create(&t, NULL, thread_sets_error, NULL);
    pthread_join(t, NULL);
    th_check(s, "other thread does not overwrite", cdz_last_error()->code == CDZ_STATUS_IO &&
             !strcmp(cdz_last_message(), "main thread"), "got %s '%s'", cdz_status_name(cdz_last_error()->code),
             cdz_last_message());
    th_end(s);
}

static void test_tensor(th_suite *s) {
    if (!th_begin(s, "tensor", "init, contiguity, names")) return;
    cdz_tensor t;
    int64_t shape[3] = {2, 3, 5};
    th_ok(s, "init", cdz_tensor_init(&t, (void *)0x1000, CDZ_DTYPE_F16, CPU, 3, shape));
    th_check(s, "numel", cdz_tensor_numel(&t) == 30, NULL);
    th_check(s, "nbytes", cdz_tensor_nbytes(&t) == 60, NULL);
    th_check(s, "strides", t.stride[0] == 15 && t.stride[1] == 5 && t.stride[2] == 1, NULL);
    th_check(s, "contiguous", cdz_tensor_is_contiguous(&t), NULL);
    cdz_tensor v = t;
    v.shape[2] = 4; /* a slice: no longer contiguous */
    th_check(s, "slice not contiguous", !cdz_tensor_is_contiguous(&v), NULL);
    int64_t empty_shape[4] = {1, 2, 0, 8};
    cdz_tensor e;
    th_ok(s, "init empty", cdz_tensor_init(&e, NULL, CDZ_DTYPE_F32, CPU, 4, empty_shape));
    th_check(s, "empty is contiguous", cdz_tensor_is_contiguous(&e) && cdz_tensor_numel(&e) == 0, NULL);
    char buf[64];
    th_check(s, "str", !strcmp(cdz_tensor_str(&t, buf, sizeof buf), "f16[2,3,5]@cpu"), "got %s", buf);
    int64_t bad[2] = {3, -1};
    th_expect_status(s, "negative dim", cdz_tensor_init(&t, NULL, CDZ_DTYPE_F32, CPU, 2, bad),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "7 dims", cdz_tensor_init(&t, NULL, CDZ_DTYPE_F32, CPU, 7, shape),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "bad dtype", cdz_tensor_init(&t, NULL, (cdz_dtype)77, CPU, 1, shape),
                     CDZ_STATUS_INVALID_ARGUMENT);
    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    th_expect_status(s, "overflow", cdz_tensor_init(&t, NULL, CDZ_DTYPE_F32, CPU, 3, huge), CDZ_STATUS_TOO_LARGE);
    cdz_tensor m = cdz_tensor_make(NULL, CDZ_DTYPE_F32, CPU, 2, (int64_t)4, (int64_t)7);
    th_check(s, "make", m.ndim == 2 && m.shape[1] == 7 && m.stride[0] == 7, NULL);
    th_check(s, "dtype sizes", cdz_dtype_size(CDZ_DTYPE_BF16) == 2 && cdz_dtype_size(CDZ_DTYPE_I64) == 8 &&
             cdz_dtype_size((cdz_dtype)99) == 0, NULL);
    th_end(s);
}

static void test_half(th_suite *s) {
    if (!th_begin(s, "half", "f16/bf16 round trips")) return;
    bool ok = true;
    for (uint32_t h = 0; h < 65536; h++) { /* every f16 value survives f16 -> f32 -> f16 */
        float f = cdz_f16_to_f32((uint16_t)h);
        uint16_t back = cdz_f32_to_f16(f);
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) ok = false;
    }
    th_check(s, "f16 exhaustive round trip", ok, NULL);
    th_check(s, "f16 rounding to even", cdz_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 &&
             cdz_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, NULL);
    th_check(s, "f16 overflow to inf", cdz_f32_to_f16(70000.f) == 0x7c00, NULL);
    th_check(s, "f16 subnormal", cdz_f16_to_f32(0x0001) == 0x1p-24f && cdz_f32_to_f16(0x1p-24f) == 1, NULL);
    th_check(s, "bf16 rounding", cdz_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && cdz_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
             NULL);
    th_end(s);
}

static void test_device(th_suite *s) {
    if (!th_begin(s, "device", "parse")) return;
    cdz_device d;
    th_ok(s, "cpu", cdz_device_parse("cpu", &d));
    th_ok(s, "cpu:3", cdz_device_parse("cpu:3", &d));
    th_check(s, "cpu:3 index", d.kind == CDZ_DEVICE_CPU && d.index == 3, NULL);
    th_expect_status(s, "gpu", cdz_device_parse("gpu", &d), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "cpu:x", cdz_device_parse("cpu:x", &d), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "cuda:-1", cdz_device_parse("cuda:-1", &d),
                     cdz_built_with_cuda() ? CDZ_STATUS_INVALID_ARGUMENT : CDZ_STATUS_INVALID_ARGUMENT);
    if (cdz_cuda_device_count() == 0)
        th_check(s, "cuda without a GPU is refused", cdz_device_parse("cuda:0", &d) != CDZ_STATUS_OK, "%s",
                 cdz_last_message());
    cdz_precision p;
    th_ok(s, "precision tf32", cdz_precision_parse("tf32", &p));
    th_expect_status(s, "precision fp8", cdz_precision_parse("fp8", &p), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_log_level lv;
    th_ok(s, "log level debug", cdz_log_parse_level("DEBUG", &lv));
    th_expect_status(s, "log level loud", cdz_log_parse_level("loud", &lv), CDZ_STATUS_INVALID_ARGUMENT);
    th_end(s);
}

/* Arena checks shared by the CPU and CUDA arenas (no data access: pointers only). */
static void arena_suite(th_suite *s, cdz_device dev, const char *label) {
    if (!th_begin(s, "arena", "%s alloc/free/coalesce", label)) return;
    const size_t MiB = 1u << 20;
    cdz_arena *a = NULL;
    if (!th_ok(s, "create 4 MiB", cdz_arena_create(dev, 4 * MiB, &a))) return;
    void *p1, *p2, *p3, *p4;
    th_ok(s, "alloc 1", cdz_arena_alloc(a, 1000, 0, "one", &p1));
    th_ok(s, "alloc 2 (4096-aligned)", cdz_arena_alloc(a, 5000, 4096, "two", &p2));
    th_ok(s, "alloc 3", cdz_arena_alloc(a, 1 * MiB, 0, "three", &p3));
    th_check(s, "default alignment", ((uintptr_t)p1 % CDZ_ARENA_ALIGN) == 0 && ((uintptr_t)p3 % CDZ_ARENA_ALIGN) == 0, NULL);
    th_check(s, "4096 alignment", ((uintptr_t)p2 % 4096) == 0, NULL);
    th_check(s, "no overlap", (uint8_t *)p1 + 1000 <= (uint8_t *)p2 || (uint8_t *)p2 + 5000 <= (uint8_t *)p1, NULL);
    cdz_arena_stats st;
    cdz_arena_get_stats(a, &st);
    th_check(s, "stats used", st.used >= 1 * MiB + 6000 && st.live_blocks == 3, "used %zu live %u", st.used, st.live_blocks);
    th_expect_status(s, "exhaustion is OUT_OF_MEMORY", cdz_arena_alloc(a, 3 * MiB, 0, "too big", &p4),
                     CDZ_STATUS_OUT_OF_MEMORY);
    th_check(s, "OOM message names the request", strstr(cdz_last_message(), "too big") != NULL, "%s", cdz_last_message());
    th_expect_status(s, "larger than reservation is TOO_LARGE", cdz_arena_alloc(a, 5 * MiB, 0, "huge", &p4),
                     CDZ_STATUS_TOO_LARGE);
    th_expect_status(s, "bad alignment", cdz_arena_alloc(a, 10, 48, "odd", &p4), CDZ_STATUS_INVALID_ARGUMENT);
    /* free the middle block: a hole; fragmentation becomes visible */
    th_ok(s, "free 2", cdz_arena_free(a, p2));
    cdz_arena_get_stats(a, &st);
    th_check(s, "fragmentation > 0 with a hole", st.fragmentation > 0.0, "%.4f", st.fragmentation);
    th_expect_status(s, "double free is INTERNAL", cdz_arena_free(a, p2), CDZ_STATUS_INTERNAL);
    int x;
    th_expect_status(s, "foreign pointer", cdz_arena_free(a, &x), CDZ_STATUS_INTERNAL);
    th_ok(s, "free 1", cdz_arena_free(a, p1));
    th_ok(s, "free 3", cdz_arena_free(a, p3));
    cdz_arena_get_stats(a, &st);
    th_check(s, "all coalesced", st.used == 0 && st.largest_free == st.reserved && st.fragmentation == 0.0,
             "used %zu largest %zu", st.used, st.largest_free);
    th_check(s, "peak kept", st.peak >= 1 * MiB + 6000, "peak %zu", st.peak);
    th_ok(s, "whole arena in one block", cdz_arena_alloc(a, 4 * MiB, 0, "all", &p4));
    th_ok(s, "free all", cdz_arena_free(a, p4));
    /* injected failure */
    cdz_arena_fail_after(a, 2);
    th_ok(s, "first alloc after injection", cdz_arena_alloc(a, 100, 0, "ok", &p1));
    th_expect_status(s, "second alloc fails (injected)", cdz_arena_alloc(a, 100, 0, "injected", &p2),
                     CDZ_STATUS_OUT_OF_MEMORY);
    th_ok(s, "third alloc works again", cdz_arena_alloc(a, 100, 0, "ok", &p2));
    cdz_arena_free(a, p1);
    cdz_arena_free(a, p2);
    /* regions */
    cdz_region r;
    th_ok(s, "region", cdz_arena_region_init(a, 1 * MiB, "activations", &r));
    size_t m = cdz_region_mark(&r);
    th_ok(s, "region alloc", cdz_region_alloc(&r, 1000, 0, &p1));
    th_ok(s, "region alloc 2", cdz_region_alloc(&r, 1000, 1024, &p2));
    th_check(s, "region alignment", ((uintptr_t)p2 % 1024) == 0 && p2 > p1, NULL);
    th_expect_status(s, "region exhaustion", cdz_region_alloc(&r, 1 * MiB, 0, &p3), CDZ_STATUS_OUT_OF_MEMORY);
    cdz_region_release(&r, m);
    th_ok(s, "after release the space is back", cdz_region_alloc(&r, 1 * MiB - 256, 0, &p3));
    th_check(s, "region peak", r.peak >= 1 * MiB - 256, NULL);
    cdz_arena_region_free(&r);
    cdz_arena_get_stats(a, &st);
    th_check(s, "region freed", st.used == 0, "used %zu", st.used);
    cdz_arena_destroy(a);
    th_end(s);
}

/* Random alloc/free against a shadow list: blocks never overlap and stats stay exact. */
static void test_arena_random(th_suite *s) {
    if (!th_begin(s, "arena", "random alloc/free x5000")) return;
    cdz_arena *a = NULL;
    size_t cap = 8u << 20;
    if (!th_ok(s, "create", cdz_arena_create(CPU, cap, &a))) return;
    enum { SLOTS = 64 };
    uint8_t *ptr[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    bool overlap = false, accounting = true;
    int ooms = 0;
    for (int it = 0; it < 5000; it++) {
        int i = th_rand_int(s, 0, SLOTS - 1);
        if (ptr[i]) {
            cdz_arena_free(a, ptr[i]);
            ptr[i] = NULL;
        } else {
            size_t n = (size_t)th_rand_int(s, 1, 400000);
            size_t al = (size_t)1 << th_rand_int(s, 8, 13);
            void *p;
            if (cdz_arena_alloc(a, n, al, "random", &p) == CDZ_STATUS_OK) {
                if ((uintptr_t)p % al) overlap = true;
                for (int j = 0; j < SLOTS; j++)
                    if (ptr[j] && (uint8_t *)p < ptr[j] + len[j] && ptr[j] < (uint8_t *)p + n) overlap = true;
                ptr[i] = p;
                len[i] = n;
            } else {
                ooms++;
            }
        }
        cdz_arena_stats st;
        cdz_arena_get_stats(a, &st);
        size_t live = 0;
        for (int j = 0; j < SLOTS; j++) live += ptr[j] ? 1 : 0;
        if (st.live_blocks != live || st.used > cap) accounting = false;
    }
    th_check(s, "no overlaps, alignment honoured", !overlap, NULL);
    th_check(s, "live blocks and used bytes consistent", accounting, NULL);
    for (int j = 0; j < SLOTS; j++) cdz_arena_free(a, ptr[j]);
    cdz_arena_stats st;
    cdz_arena_get_stats(a, &st);
    th_check(s, "everything coalesces back", st.used == 0 && st.largest_free == cap, "ooms during run: %d", ooms);
    cdz_arena_destroy(a);
    th_end(s);
}

static void test_ctx(th_suite *s) {
    if (!th_begin(s, "ctx", "workspace and copies")) return;
    cdz_ctx *ctx = NULL;
    cdz_ctx_options opt = {CDZ_PRECISION_TF32, 4096};
    th_ok(s, "cpu ctx", cdz_ctx_create(CPU, NULL, &opt, &ctx));
    th_check(s, "precision", cdz_ctx_precision(ctx) == CDZ_PRECISION_TF32, NULL);
    th_expect_status(s, "workspace too small is TOO_LARGE", cdz_ctx_workspace(ctx, 8192, "someop", &(void *){0}),
                     CDZ_STATUS_TOO_LARGE);
    th_check(s, "message names the op", strstr(cdz_last_message(), "someop") != NULL, "%s", cdz_last_message());
    cdz_ctx_destroy(ctx);
    cdz_arena *a = NULL;
    cdz_arena_create(CPU, 1u << 16, &a);
    opt.workspace_bytes = 1u << 20;
    th_expect_status(s, "workspace larger than the arena", cdz_ctx_create(CPU, a, &opt, &ctx), CDZ_STATUS_TOO_LARGE);
    cdz_arena_stats st;
    cdz_arena_get_stats(a, &st);
    th_check(s, "nothing leaked into the arena", st.used == 0, NULL);
    cdz_arena_destroy(a);
    if (th_gpu(s, "cuda arena + fill + copies")) {
        arena_suite(s, cdz_ctx_device(s->cuda), "cuda");
        if (!th_begin(s, "ctx", "cuda fill/copy round trip")) return;
        cdz_tensor h = th_rand(s, CDZ_DTYPE_F32, 1, (int64_t[]){100003}, -1, 1);
        cdz_tensor d = th_cuda_like(s, &h);
        cdz_tensor back = th_to_host(s, &d);
        bool poisoned = true;
        for (int64_t i = 0; i < 100003; i++)
            if (((uint32_t *)back.data)[i] != 0x7fc00000u) poisoned = false;
        th_check(s, "fill_u32 writes every element", poisoned, NULL);
        cdz_tensor d2 = th_to_cuda(s, &h);
        th_compare(s, "upload/download", &d2, &h, 0.0, "a copy is exact");
    }
    th_end(s);
}

/* Capture what cdz_log writes to stderr. */
static void capture_log(char *out, size_t cap, bool json, uint64_t request_id, const char *msg) {
    char path[] = "/tmp/cadenza-log-XXXXXX";
    int fd = mkstemp(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cdz_log_set_json(json);
    cdz_log_set_request_id(request_id);
    cdz_log_set_level(CDZ_LOG_LEVEL_INFO);
    cdz_log(CDZ_LOG_LEVEL_DEBUG, "test", "hidden below the level");
    cdz_log(CDZ_LOG_LEVEL_INFO, "test", "%s", msg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cdz_log_set_json(false);
    cdz_log_set_request_id(0);
    cdz_log_set_level(CDZ_LOG_LEVEL_WARN);
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
}

static void test_log(th_suite *s) {
    if (!th_begin(s, "log", "plain and JSON lines")) return;
    char out[2048];
    capture_log(out, sizeof out, false, 0, "hello");
    th_check(s, "plain line", strstr(out, "info  [test] hello\n") != NULL && !strstr(out, "hidden"), "got '%s'", out);
    capture_log(out, sizeof out, true, 42, "say \"hi\"\n\tnow");
    th_check(s, "json line", strstr(out, "\"level\":\"info\",\"component\":\"test\",\"request_id\":42,"
             "\"msg\":\"say \\\"hi\\\"\\u000a\\u0009now\"}\n") != NULL, "got '%s'", out);
    th_check(s, "one line per message", strchr(out, '\n') == out + strlen(out) - 1, NULL);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_runtime", argc, argv)) return 2;
    test_status(&s);
    test_status_threads(&s);
    test_tensor(&s);
    test_half(&s);
    test_device(&s);
    test_log(&s);
    arena_suite(&s, CPU, "cpu");
    test_arena_random(&s);
    test_ctx(&s);
    return th_finish(&s);
}
