/*
 * check.h: one check macro per library; each returns a cdz_status up the stack.
 *
 * Like ggml's CUDA_CHECK_GEN, the failure records the statement text, the current device,
 * the function and file:line; unlike it, nothing aborts: the enclosing function returns
 * CDZ_STATUS_DEVICE (CDZ_STATUS_OUT_OF_MEMORY for allocation failures) with the message in
 * the thread's error record. Use only inside functions that return cdz_status.
 *
 * defines: CDZ_CUDA_CHECK, CDZ_CUBLAS_CHECK, CDZ_CUDNN_CHECK, CDZ_CUFFT_CHECK, CDZ_NCCL_CHECK,
 *          CDZ_LAUNCH_CHECK, CDZ_TRY, CDZ_REQUIRE, cdz_check_tensor
 */
#ifndef CDZ_CHECK_H
#define CDZ_CHECK_H

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records "<lib> error <name> (<code>) in `stmt` at func (file:line) on cuda:N". */
cdz_status cdz_check_fail(const char *lib, int code, const char *name, bool oom, const char *stmt,
                          const char *func, const char *file, int line);
const char *cdz_cufft_result_name(int result);

/* Propagate a failing cdz_status unchanged. */
#define CDZ_TRY(expr)                        \
    do {                                     \
        cdz_status s_ = (expr);              \
        if (s_ != CDZ_STATUS_OK) return s_;  \
    } while (0)

/* Input precondition: INVALID_ARGUMENT with a formatted message. */
#define CDZ_REQUIRE(cond, ...)                                              \
    do {                                                                    \
        if (!(cond)) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, __VA_ARGS__); \
    } while (0)

#define CDZ_CUDA_CHECK(stmt)                                                            \
    do {                                                                                \
        cudaError_t e_ = (stmt);                                                        \
        if (e_ != cudaSuccess)                                                          \
            return cdz_check_fail("CUDA", (int)e_, cudaGetErrorString(e_),              \
                                  e_ == cudaErrorMemoryAllocation, #stmt, __func__,     \
                                  __FILE__, __LINE__);                                  \
    } while (0)

#define CDZ_CUBLAS_CHECK(stmt)                                                          \
    do {                                                                                \
        cublasStatus_t e_ = (stmt);                                                     \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                \
            return cdz_check_fail("cuBLAS", (int)e_, cublasGetStatusString(e_),         \
                                  e_ == CUBLAS_STATUS_ALLOC_FAILED, #stmt, __func__,    \
                                  __FILE__, __LINE__);                                  \
    } while (0)

#define CDZ_CUDNN_CHECK(stmt)                                                           \
    do {                                                                                \
        cudnnStatus_t e_ = (stmt);                                                      \
        if (e_ != CUDNN_STATUS_SUCCESS)                                                 \
            return cdz_check_fail("cuDNN", (int)e_, cudnnGetErrorString(e_),            \
                                  e_ == CUDNN_STATUS_ALLOC_FAILED, #stmt, __func__,     \
                                  __FILE__, __LINE__);                                  \
    } while (0)

#define CDZ_CUFFT_CHECK(stmt)                                                           \
    do {                                                                                \
        cufftResult e_ = (stmt);                                                        \
        if (e_ != CUFFT_SUCCESS)                                                        \
            return cdz_check_fail("cuFFT", (int)e_, cdz_cufft_result_name((int)e_),     \
                                  e_ == CUFFT_ALLOC_FAILED, #stmt, __func__, __FILE__,  \
                                  __LINE__);                                            \
    } while (0)

#define CDZ_NCCL_CHECK(stmt)                                                            \
    do {                                                                                \
        ncclResult_t e_ = (stmt);                                                       \
        if (e_ != ncclSuccess)                                                          \
            return cdz_check_fail("NCCL", (int)e_, ncclGetErrorString(e_), false,       \
                                  #stmt, __func__, __FILE__, __LINE__);                 \
    } while (0)

/* After every kernel launch: the launch error, and with CADENZA_SYNC_CHECK=1 a stream
 * synchronisation so asynchronous faults are reported at the kernel that caused them. */
#define CDZ_LAUNCH_CHECK(ctx)                                                           \
    do {                                                                                \
        CDZ_CUDA_CHECK(cudaGetLastError());                                             \
        if ((ctx)->sync_check) CDZ_CUDA_CHECK(cudaStreamSynchronize((ctx)->stream));    \
    } while (0)

/* Op entry precondition on a tensor: dtype (CDZ_DTYPE_COUNT_ = any), ndim (-1 = any),
 * contiguous, on the context's device, non-NULL data unless empty.
 * Message: "<op>: <name> must be f32 (got f16[2,3]@cpu)". */
cdz_status cdz_check_tensor(const cdz_ctx *ctx, const char *op, const char *name,
                            const cdz_tensor *t, cdz_dtype dtype, int32_t ndim);

/* Element and byte counts of t fit in int64 (descriptors can be built by hand):
 * INVALID_ARGUMENT "<op>: <name> has too many elements" / "is too large" otherwise. */
cdz_status cdz_check_tensor_size(const char *op, const char *name, const cdz_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_CHECK_H */
