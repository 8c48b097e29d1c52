/*
 * device.c: device discovery and execution contexts (device + stream + library handles +
 * workspace), host<->device copies and pinned staging memory.
 *
 * A CPU-only build (no CDZ_HAVE_CUDA) keeps every entry point: CUDA requests get a clear
 * UNSUPPORTED error instead of a link failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ctx.h"

#define CDZ_DEFAULT_WORKSPACE (64u << 20)

bool cdz_built_with_cuda(void) {
#ifdef CDZ_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

int cdz_cuda_device_count(void) {
#ifdef CDZ_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

const char *cdz_device_str(cdz_device dev, char *buf, size_t size) {
    if (dev.kind == CDZ_DEVICE_CUDA) snprintf(buf, size, "cuda:%d", dev.index);
    else if (dev.index > 0) snprintf(buf, size, "cpu:%d", dev.index);
    else snprintf(buf, size, "cpu");
    return buf;
}

static bool parse_index(const char *s, int32_t *out) {
    if (!*s) return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 1023) return false;
    *out = (int32_t)v;
    return true;
}

cdz_status cdz_device_parse(const char *text, cdz_device *out) {
    if (!text) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "device: no name given");
    cdz_device d = {CDZ_DEVICE_CPU, 0};
    if (strcmp(text, "cpu") == 0) {
        *out = d;
        return CDZ_STATUS_OK;
    }
    if (strncmp(text, "cpu:", 4) == 0) {
        if (!parse_index(text + 4, &d.index))
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "device '%s': expected cpu:N", text);
        *out = d;
        return CDZ_STATUS_OK;
    }
    if (strcmp(text, "cuda") == 0 || strncmp(text, "cuda:", 5) == 0) {
        d.kind = CDZ_DEVICE_CUDA;
        if (text[4] == ':' && !parse_index(text + 5, &d.index))
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "device '%s': expected cuda:N", text);
        if (!cdz_built_with_cuda())
            return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                                 "device '%s': this build of cadenza has no CUDA support (built with CUDA=0)", text);
        int n = cdz_cuda_device_count();
        if (d.index >= n)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "device '%s': %d CUDA device%s visible",
                                 text, n, n == 1 ? "" : "s");
        *out = d;
        return CDZ_STATUS_OK;
    }
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                         "device '%s' is not one of cpu, cpu:N, cuda, cuda:N", text);
}

cdz_status cdz_device_get_info(cdz_device dev, cdz_device_info *out) {
    memset(out, 0, sizeof *out);
    if (dev.kind == CDZ_DEVICE_CPU) {
        snprintf(out->name, sizeof out->name, "cpu");
        return CDZ_STATUS_OK;
    }
#ifdef CDZ_HAVE_CUDA
    struct cudaDeviceProp p;
    CDZ_CUDA_CHECK(cudaGetDeviceProperties(&p, dev.index));
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->multiprocessors = p.multiProcessorCount;
    out->l2_bytes = (size_t)p.l2CacheSize;
    out->shared_per_block_optin = p.sharedMemPerBlockOptin;
    CDZ_CUDA_CHECK(cudaSetDevice(dev.index));
    CDZ_CUDA_CHECK(cudaMemGetInfo(&out->free_bytes, &out->total_bytes));
    return CDZ_STATUS_OK;
#else
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "device info: this build has no CUDA support");
#endif
}

const char *cdz_precision_name(cdz_precision p) {
    switch (p) {
    case CDZ_PRECISION_STRICT: return "strict";
    case CDZ_PRECISION_TF32: return "tf32";
    case CDZ_PRECISION_FP16: return "fp16";
    case CDZ_PRECISION_BF16: return "bf16";
    }
    return "invalid";
}

cdz_status cdz_precision_parse(const char *text, cdz_precision *out) {
    static const cdz_precision all[] = {CDZ_PRECISION_STRICT, CDZ_PRECISION_TF32,
                                        CDZ_PRECISION_FP16, CDZ_PRECISION_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (text && strcmp(text, cdz_precision_name(all[i])) == 0) {
            *out = all[i];
            return CDZ_STATUS_OK;
        }
    }
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                         "precision '%s' is not one of strict, tf32, fp16, bf16", text ? text : "(null)");
}

/* ---------------------------------------------------------------- contexts */

static bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

#ifdef CDZ_HAVE_CUDA
static cdz_status ctx_init_cuda(cdz_ctx *ctx) {
    CDZ_CUDA_CHECK(cudaSetDevice(ctx->device.index));
    struct cudaDeviceProp p;
    CDZ_CUDA_CHECK(cudaGetDeviceProperties(&p, ctx->device.index));
    ctx->sm_count = p.multiProcessorCount;
    ctx->smem_optin = p.sharedMemPerBlockOptin;
    CDZ_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    CDZ_CUBLAS_CHECK(cublasLtCreate(&ctx->cublaslt));
    CDZ_CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    CDZ_CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));
    return CDZ_STATUS_OK;
}
#endif

cdz_status cdz_ctx_create(cdz_device dev, cdz_arena *arena, const cdz_ctx_options *opt,
                          cdz_ctx **out) {
    *out = NULL;
    if (arena && (cdz_arena_device(arena).kind != dev.kind ||
                  (dev.kind == CDZ_DEVICE_CUDA && cdz_arena_device(arena).index != dev.index)))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "context: arena belongs to another device");
    if (dev.kind == CDZ_DEVICE_CUDA) {
#ifndef CDZ_HAVE_CUDA
        return cdz_error_set(CDZ_STATUS_UNSUPPORTED, "context: this build has no CUDA support");
#else
        if (!arena) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "context: a CUDA context needs an arena");
#endif
    }
    cdz_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "context: out of host memory");
    ctx->device = dev;
    ctx->arena = arena;
    ctx->precision = opt ? opt->precision : CDZ_PRECISION_STRICT;
    ctx->sync_check = env_flag("CADENZA_SYNC_CHECK");
    ctx->workspace_bytes = opt && opt->workspace_bytes ? opt->workspace_bytes : CDZ_DEFAULT_WORKSPACE;
    cdz_status st = CDZ_STATUS_OK;
#ifdef CDZ_HAVE_CUDA
    if (dev.kind == CDZ_DEVICE_CUDA) st = ctx_init_cuda(ctx);
#endif
    if (st == CDZ_STATUS_OK) {
        if (arena) st = cdz_arena_alloc(arena, ctx->workspace_bytes, CDZ_ARENA_ALIGN, "context workspace", &ctx->workspace);
        else if (!(ctx->workspace = malloc(ctx->workspace_bytes)))
            st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "context: no host memory for a %zu-byte workspace",
                               ctx->workspace_bytes);
    }
    if (st != CDZ_STATUS_OK) {
        cdz_error prev = *cdz_last_error();
        cdz_ctx_destroy(ctx);
        cdz_error_set(prev.code, "%s", prev.message);
        return st;
    }
    *out = ctx;
    return CDZ_STATUS_OK;
}

void cdz_ctx_destroy(cdz_ctx *ctx) {
    if (!ctx) return;
#ifdef CDZ_HAVE_CUDA
    if (ctx->device.kind == CDZ_DEVICE_CUDA) {
        cudaSetDevice(ctx->device.index);
        if (ctx->stream) cudaStreamSynchronize(ctx->stream);
        if (ctx->cudnn) cudnnDestroy(ctx->cudnn);
        if (ctx->cublaslt) cublasLtDestroy(ctx->cublaslt);
        if (ctx->stream) cudaStreamDestroy(ctx->stream);
    }
#endif
    if (ctx->workspace) {
        if (ctx->arena) cdz_arena_free(ctx->arena, ctx->workspace);
        else free(ctx->workspace);
    }
    free(ctx);
}

cdz_device cdz_ctx_device(const cdz_ctx *ctx) { return ctx->device; }
cdz_precision cdz_ctx_precision(const cdz_ctx *ctx) { return ctx->precision; }
void cdz_ctx_set_precision(cdz_ctx *ctx, cdz_precision p) { ctx->precision = p; }
cdz_arena *cdz_ctx_arena(const cdz_ctx *ctx) { return ctx->arena; }

cdz_status cdz_ctx_workspace(cdz_ctx *ctx, size_t bytes, const char *op, void **out) {
    if (bytes > ctx->workspace_bytes)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                             "%s: needs %zu bytes of workspace, the context has %zu "
                             "(raise cdz_ctx_options.workspace_bytes)",
                             op, bytes, ctx->workspace_bytes);
    *out = ctx->workspace;
    return CDZ_STATUS_OK;
}

cdz_status cdz_ctx_sync(cdz_ctx *ctx) {
#ifdef CDZ_HAVE_CUDA
    if (cdz_ctx_is_cuda(ctx)) {
        CDZ_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        CDZ_CUDA_CHECK(cudaGetLastError());
    }
#endif
    (void)ctx;
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- copies */

#ifdef CDZ_HAVE_CUDA
static cdz_status ctx_copy(cdz_ctx *ctx, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    if (bytes == 0) return CDZ_STATUS_OK;
    CDZ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream));
    return CDZ_STATUS_OK;
}
#endif

cdz_status cdz_copy_to_device(cdz_ctx *ctx, void *dst, const void *src, size_t bytes) {
#ifdef CDZ_HAVE_CUDA
    if (cdz_ctx_is_cuda(ctx)) return ctx_copy(ctx, dst, src, bytes, cudaMemcpyHostToDevice);
#endif
    if (bytes) memcpy(dst, src, bytes);
    return CDZ_STATUS_OK;
}

cdz_status cdz_copy_to_host(cdz_ctx *ctx, void *dst, const void *src, size_t bytes) {
#ifdef CDZ_HAVE_CUDA
    if (cdz_ctx_is_cuda(ctx)) return ctx_copy(ctx, dst, src, bytes, cudaMemcpyDeviceToHost);
#endif
    if (bytes) memcpy(dst, src, bytes);
    return CDZ_STATUS_OK;
}

cdz_status cdz_copy_device(cdz_ctx *ctx, void *dst, const void *src, size_t bytes) {
#ifdef CDZ_HAVE_CUDA
    if (cdz_ctx_is_cuda(ctx)) return ctx_copy(ctx, dst, src, bytes, cudaMemcpyDeviceToDevice);
#endif
    if (bytes) memmove(dst, src, bytes);
    return CDZ_STATUS_OK;
}

cdz_status cdz_fill_u32(cdz_ctx *ctx, void *dst, uint32_t pattern, size_t count) {
#ifdef CDZ_HAVE_CUDA
    if (cdz_ctx_is_cuda(ctx)) {
        /* No kernel in this C file: copy one block of the pattern, then double it with
         * device-to-device copies. Used for test poisoning and set-up, not per request. */
        uint32_t block[1024];
        for (size_t i = 0; i < 1024; i++) block[i] = pattern;
        size_t done = count < 1024 ? count : 1024;
        if (done == 0) return CDZ_STATUS_OK;
        CDZ_CUDA_CHECK(cudaMemcpyAsync(dst, block, done * 4, cudaMemcpyHostToDevice, ctx->stream));
        while (done < count) {
            size_t n = count - done < done ? count - done : done;
            CDZ_CUDA_CHECK(cudaMemcpyAsync((uint32_t *)dst + done, dst, n * 4, cudaMemcpyDeviceToDevice, ctx->stream));
            done += n;
        }
        /* the pageable staging block must not go out of scope before the copy is done */
        CDZ_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        return CDZ_STATUS_OK;
    }
#endif
    uint32_t *p = dst;
    for (size_t i = 0; i < count; i++) p[i] = pattern;
    return CDZ_STATUS_OK;
}

/* ---------------------------------------------------------------- pinned host memory */

cdz_status cdz_host_pinned_alloc(size_t bytes, void **out) {
    *out = NULL;
#ifdef CDZ_HAVE_CUDA
    if (cdz_cuda_device_count() > 0) {
        cudaError_t e = cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocPortable);
        if (e == cudaSuccess) return CDZ_STATUS_OK;
        cudaGetLastError();
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "pinned host memory: cannot allocate %zu bytes (%s)",
                             bytes, cudaGetErrorString(e));
    }
#endif
    if (posix_memalign(out, 4096, bytes ? bytes : 1) != 0) {
        *out = NULL;
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "host memory: cannot allocate %zu bytes", bytes);
    }
    return CDZ_STATUS_OK;
}

void cdz_host_pinned_free(void *ptr) {
    if (!ptr) return;
#ifdef CDZ_HAVE_CUDA
    /* cudaFreeHost refuses memory it did not allocate: fall back to free() for that. */
    struct cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, ptr) == cudaSuccess && attr.type == cudaMemoryTypeHost) {
        cudaFreeHost(ptr);
        return;
    }
    cudaGetLastError();
#endif
    free(ptr);
}
