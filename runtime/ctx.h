/*
 * ctx.h: the inside of cdz_ctx, for runtime/ and kernels/ (not part of the public API).
 *
 * A context is one device + one stream + the library handles bound to that stream + one
 * workspace. Ops queue work on ctx->stream and never synchronise unless they must
 * (and then say so in their header). A context is used by one thread at a time.
 *
 * defines: struct cdz_ctx, cdz_ctx_is_cuda, cdz_ctx_workspace
 */
#ifndef CDZ_CTX_H
#define CDZ_CTX_H

#include "cadenza.h"

#ifdef CDZ_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <cublasLt.h>
#include <cudnn.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct cdz_ctx {
    cdz_device device;
    cdz_precision precision;
    cdz_arena *arena;          /* where the workspace came from (NULL: host malloc) */
    void *workspace;           /* scratch for one op call at a time, stream-ordered */
    size_t workspace_bytes;
    bool sync_check;           /* CADENZA_SYNC_CHECK=1: synchronise after each launch */
#ifdef CDZ_HAVE_CUDA
    cudaStream_t stream;
    cublasLtHandle_t cublaslt;
    cudnnHandle_t cudnn;
    int sm_count;              /* multiprocessors, for grid sizing */
    size_t smem_optin;         /* max dynamic shared memory per block after opt-in */
#endif
};

static inline bool cdz_ctx_is_cuda(const cdz_ctx *ctx) {
    return ctx->device.kind == CDZ_DEVICE_CUDA;
}

/* The context's workspace if it holds `bytes`, else TOO_LARGE naming the op. */
cdz_status cdz_ctx_workspace(cdz_ctx *ctx, size_t bytes, const char *op, void **out);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_CTX_H */
