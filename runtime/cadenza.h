/*
 * cadenza.h: the one public C API of the cadenza inference runtime.
 *
 * Conventions (docs/architecture.md explains them at length):
 *  - Every call that can fail returns a cdz_status. CDZ_STATUS_OK is 0. On failure the
 *    calling thread's error record (cdz_last_error) holds the code, a message that
 *    names what was wrong, and a retryable flag. Nothing here calls exit() or abort().
 *  - Names are cdz_<module>_<action>[_<noun>]; init/free and create/destroy pairs.
 *  - Tensors are described by cdz_tensor (dtype, up to 6 dims, element strides, device);
 *    the runtime never guesses a layout.
 *  - Device memory comes from a per-device arena reserved once (cdz_arena); nothing on a
 *    request path calls cudaMalloc/cudaFree.
 */
#ifndef CADENZA_H
#define CADENZA_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_VERSION_MAJOR 0
#define CDZ_VERSION_MINOR 1
#define CDZ_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------
 * Status
 * ---------------------------------------------------------------------------------- */
typedef enum cdz_status {
    CDZ_STATUS_OK = 0,
    CDZ_STATUS_INVALID_ARGUMENT,   /* bad input: tensor, file, frame, config, weights */
    CDZ_STATUS_UNKNOWN_MODEL,      /* no model of that name is loaded */
    CDZ_STATUS_TOO_LARGE,          /* can never fit (limits, arena size) */
    CDZ_STATUS_BUSY,               /* over capacity now; retry later */
    CDZ_STATUS_OUT_OF_MEMORY,      /* host or device memory exhausted */
    CDZ_STATUS_DEADLINE_EXCEEDED,
    CDZ_STATUS_CANCELLED,
    CDZ_STATUS_SHUTTING_DOWN,
    CDZ_STATUS_UNAUTHENTICATED,
    CDZ_STATUS_UNSUPPORTED,        /* valid request this build/device cannot do */
    CDZ_STATUS_IO,                 /* file or socket I/O failed */
    CDZ_STATUS_DEVICE,             /* a CUDA / library call failed */
    CDZ_STATUS_INTERNAL,           /* a bug: an invariant did not hold */
    CDZ_STATUS_COUNT_
} cdz_status;

#define CDZ_ERROR_MESSAGE_MAX 1024

/* The error record of the calling thread, filled by every failing call. */
typedef struct cdz_error {
    cdz_status code;
    bool retryable;
    char message[CDZ_ERROR_MESSAGE_MAX];
} cdz_error;

/* Stable upper-case name of a code, e.g. "INVALID_ARGUMENT". */
const char *cdz_status_name(cdz_status code);
/* Default retryable flag of a code (BUSY, OUT_OF_MEMORY, DEADLINE_EXCEEDED, SHUTTING_DOWN, DEVICE). */
bool cdz_status_retryable(cdz_status code);

/* Record an error for this thread and return `code` (so `return cdz_error_set(...)` reads well). */
cdz_status cdz_error_set(cdz_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
cdz_status cdz_error_setv(cdz_status code, const char *fmt, va_list ap);
/* Prepend context to this thread's message ("loading 'x.safetensors': <old message>") and
 * return the recorded code. */
cdz_status cdz_error_prefix(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Override the retryable flag of the current record. */
void cdz_error_set_retryable(bool retryable);
const cdz_error *cdz_last_error(void);
const char *cdz_last_message(void);
void cdz_error_clear(void);

/* ------------------------------------------------------------------------------------
 * Logging: leveled, plain or JSON lines on stderr, with an optional per-thread request id.
 * ---------------------------------------------------------------------------------- */
typedef enum cdz_log_level {
    CDZ_LOG_LEVEL_ERROR = 0,
    CDZ_LOG_LEVEL_WARN,
    CDZ_LOG_LEVEL_INFO,
    CDZ_LOG_LEVEL_DEBUG,
} cdz_log_level;

void cdz_log_set_level(cdz_log_level level);
cdz_log_level cdz_log_get_level(void);
void cdz_log_set_json(bool json);
/* Parse "error|warn|info|debug"; INVALID_ARGUMENT on anything else. */
cdz_status cdz_log_parse_level(const char *text, cdz_log_level *out);
/* Tag this thread's following lines with a request id (0 clears). */
void cdz_log_set_request_id(uint64_t id);
void cdz_log(cdz_log_level level, const char *component, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------------------------------
 * Data types and devices
 * ---------------------------------------------------------------------------------- */
typedef enum cdz_dtype {
    CDZ_DTYPE_F32 = 0,
    CDZ_DTYPE_F16,
    CDZ_DTYPE_BF16,
    CDZ_DTYPE_F64,
    CDZ_DTYPE_I64,
    CDZ_DTYPE_I32,
    CDZ_DTYPE_I16,
    CDZ_DTYPE_I8,
    CDZ_DTYPE_U8,
    CDZ_DTYPE_BOOL,
    CDZ_DTYPE_COUNT_
} cdz_dtype;

size_t cdz_dtype_size(cdz_dtype dtype);
/* Short lower-case name: "f32", "f16", "bf16", ... */
const char *cdz_dtype_name(cdz_dtype dtype);

typedef enum cdz_device_kind {
    CDZ_DEVICE_CPU = 0,
    CDZ_DEVICE_CUDA = 1,
} cdz_device_kind;

typedef struct cdz_device {
    cdz_device_kind kind;
    int32_t index; /* CUDA ordinal; logical index for cpu:N */
} cdz_device;

/* "cpu", "cpu:N", "cuda", "cuda:N". Checks the CUDA ordinal exists. */
cdz_status cdz_device_parse(const char *text, cdz_device *out);
/* Writes "cpu" or "cuda:N" into buf. */
const char *cdz_device_str(cdz_device dev, char *buf, size_t size);
/* Number of usable CUDA devices; 0 in a CPU-only build or when no driver/GPU is present. */
int cdz_cuda_device_count(void);
/* True when this library was built with CUDA. */
bool cdz_built_with_cuda(void);

typedef struct cdz_device_info {
    char name[128];
    int32_t cc_major, cc_minor;
    int32_t multiprocessors;
    size_t total_bytes, free_bytes;
    size_t l2_bytes;
    size_t shared_per_block_optin;
} cdz_device_info;
cdz_status cdz_device_get_info(cdz_device dev, cdz_device_info *out);

/* ------------------------------------------------------------------------------------
 * Tensors: a descriptor, never an owner.
 * ---------------------------------------------------------------------------------- */
#define CDZ_MAX_DIMS 6

typedef struct cdz_tensor {
    void *data;
    cdz_dtype dtype;
    int32_t ndim;
    int64_t shape[CDZ_MAX_DIMS];
    int64_t stride[CDZ_MAX_DIMS]; /* in elements; shape[ndim-1] is the fastest for contiguous */
    cdz_device device;
} cdz_tensor;

/* A contiguous descriptor; shape entries must be >= 0 and ndim in [0, CDZ_MAX_DIMS]. */
cdz_status cdz_tensor_init(cdz_tensor *t, void *data, cdz_dtype dtype, cdz_device device,
                           int32_t ndim, const int64_t *shape);
/* Convenience for up to 4 dims: pass ndim then the sizes. Returns a zeroed tensor (ndim 0)
 * when arguments are invalid; use cdz_tensor_init for checked construction. */
cdz_tensor cdz_tensor_make(void *data, cdz_dtype dtype, cdz_device device, int32_t ndim, ...);
int64_t cdz_tensor_numel(const cdz_tensor *t);
size_t cdz_tensor_nbytes(const cdz_tensor *t);
bool cdz_tensor_is_contiguous(const cdz_tensor *t);
bool cdz_tensor_same_shape(const cdz_tensor *a, const cdz_tensor *b);
/* "f32[2,3,5]@cuda:0" into buf. */
const char *cdz_tensor_str(const cdz_tensor *t, char *buf, size_t size);

/* ------------------------------------------------------------------------------------
 * Memory arena: one reservation per device at start, sub-allocated thereafter.
 *
 *  - cdz_arena_alloc/cdz_arena_free: long-lived blocks (weights, workspaces, plans),
 *    best fit over a free list with coalescing; used at load time, not per request.
 *  - cdz_arena_region_*: a contiguous region carved from the arena once, then used as a
 *    bump allocator with mark/release for activations (O(1), no locking, per worker).
 *  - Exhaustion is CDZ_STATUS_OUT_OF_MEMORY naming the request and what was free.
 * ---------------------------------------------------------------------------------- */
typedef struct cdz_arena cdz_arena;

#define CDZ_ARENA_ALIGN 256 /* default alignment: cuBLASLt/cuDNN/vector loads */

typedef struct cdz_arena_stats {
    size_t reserved;        /* bytes reserved at init */
    size_t used;            /* bytes in live blocks (incl. alignment padding) */
    size_t peak;            /* high-water mark of used */
    size_t free_bytes;      /* reserved - used */
    size_t largest_free;    /* largest single free block */
    double fragmentation;   /* 1 - largest_free / free_bytes (0 when nothing free) */
    uint64_t allocs, frees, failures;
    uint32_t live_blocks;
} cdz_arena_stats;

/* Reserve `bytes` on `dev` (cudaMalloc once for CUDA, aligned host memory for CPU).
 * bytes == 0: a default of CADENZA_ARENA_FRACTION (0.80) of free device memory (CUDA) or
 * 256 MiB (CPU). */
cdz_status cdz_arena_create(cdz_device dev, size_t bytes, cdz_arena **out);
void cdz_arena_destroy(cdz_arena *arena);
cdz_status cdz_arena_alloc(cdz_arena *arena, size_t bytes, size_t align, const char *what,
                           void **out);
/* Free a block from cdz_arena_alloc; NULL is ignored; an unknown pointer is an INTERNAL error. */
cdz_status cdz_arena_free(cdz_arena *arena, void *ptr);
void cdz_arena_get_stats(const cdz_arena *arena, cdz_arena_stats *out);
cdz_device cdz_arena_device(const cdz_arena *arena);
/* Test hook: make the n-th following allocation fail (0 disables). */
void cdz_arena_fail_after(cdz_arena *arena, uint64_t n);

typedef struct cdz_region {
    cdz_arena *arena;
    uint8_t *base;
    size_t capacity;
    size_t top;   /* bytes in use */
    size_t peak;  /* high-water mark of top */
} cdz_region;

cdz_status cdz_arena_region_init(cdz_arena *arena, size_t bytes, const char *what, cdz_region *out);
void cdz_arena_region_free(cdz_region *region);
cdz_status cdz_region_alloc(cdz_region *region, size_t bytes, size_t align, void **out);
size_t cdz_region_mark(const cdz_region *region);
void cdz_region_release(cdz_region *region, size_t mark);

/* Pinned host memory for staging (plain aligned memory in a CPU-only build). */
cdz_status cdz_host_pinned_alloc(size_t bytes, void **out);
void cdz_host_pinned_free(void *ptr);

/* ------------------------------------------------------------------------------------
 * Execution context: one device + one stream + its library handles and workspace.
 * Ops take a context; the same op runs on CPU or CUDA depending on ctx's device.
 * ---------------------------------------------------------------------------------- */
typedef struct cdz_ctx cdz_ctx;

typedef enum cdz_precision {
    CDZ_PRECISION_STRICT = 0, /* fp32, TF32 off */
    CDZ_PRECISION_TF32,       /* fp32 storage, TF32 tensor-core GEMM/conv */
    CDZ_PRECISION_FP16,       /* half operands for GEMM/conv, fp32 accumulate/statistics */
    CDZ_PRECISION_BF16,
} cdz_precision;

const char *cdz_precision_name(cdz_precision p);
cdz_status cdz_precision_parse(const char *text, cdz_precision *out);

typedef struct cdz_ctx_options {
    cdz_precision precision;
    size_t workspace_bytes; /* scratch for cuBLASLt/cuDNN/cuFFT/own kernels; 0 = 64 MiB */
} cdz_ctx_options;

/* Creates a stream, cuBLASLt/cuDNN handles and a workspace taken from `arena`
 * (arena may be NULL for a CPU context: the workspace is then plain host memory). */
cdz_status cdz_ctx_create(cdz_device dev, cdz_arena *arena, const cdz_ctx_options *opt,
                          cdz_ctx **out);
void cdz_ctx_destroy(cdz_ctx *ctx);
cdz_device cdz_ctx_device(const cdz_ctx *ctx);
cdz_precision cdz_ctx_precision(const cdz_ctx *ctx);
void cdz_ctx_set_precision(cdz_ctx *ctx, cdz_precision p);
cdz_arena *cdz_ctx_arena(const cdz_ctx *ctx);
/* Wait for all work queued on the context's stream; reports asynchronous kernel faults. */
cdz_status cdz_ctx_sync(cdz_ctx *ctx);

/* Copies between host memory and memory of ctx's device (plain memcpy on CPU).
 * Asynchronous on the stream for pinned host memory; call cdz_ctx_sync before reuse. */
cdz_status cdz_copy_to_device(cdz_ctx *ctx, void *dst, const void *src, size_t bytes);
cdz_status cdz_copy_to_host(cdz_ctx *ctx, void *dst, const void *src, size_t bytes);
cdz_status cdz_copy_device(cdz_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Fill device memory with a repeated 32-bit pattern (tests poison outputs with NaN). */
cdz_status cdz_fill_u32(cdz_ctx *ctx, void *dst, uint32_t pattern, size_t count);

/* ------------------------------------------------------------------------------------
 * Weights: safetensors files (runtime/weights.c).
 * ---------------------------------------------------------------------------------- */
typedef struct cdz_weights cdz_weights;

#define CDZ_SAFETENSORS_HEADER_MAX (100u << 20) /* bytes of JSON header we accept */
#define CDZ_SAFETENSORS_MAX_TENSORS 1000000

typedef struct cdz_weight_entry {
    const char *name;
    cdz_dtype dtype;
    int32_t ndim;
    int64_t shape[CDZ_MAX_DIMS];
    uint64_t offset; /* byte offset inside the data section */
    uint64_t nbytes;
    const void *data; /* host pointer into the mapped file */
} cdz_weight_entry;

/* mmap and validate a safetensors file: header size, JSON, dtypes, shapes, offsets
 * (bounds, overlap, byte size == shape). Errors name the tensor at fault. */
cdz_status cdz_weights_open(const char *path, cdz_weights **out);
/* Same checks over a buffer in memory (not copied; must outlive the handle). */
cdz_status cdz_weights_open_buffer(const void *data, size_t size, const char *label,
                                   cdz_weights **out);
void cdz_weights_close(cdz_weights *w);
size_t cdz_weights_count(const cdz_weights *w);
const cdz_weight_entry *cdz_weights_at(const cdz_weights *w, size_t i);
/* NULL if absent. */
const cdz_weight_entry *cdz_weights_find(const cdz_weights *w, const char *name);
/* The __metadata__ object as compact JSON text ("{}" if absent), and one value in it. */
const char *cdz_weights_metadata_json(const cdz_weights *w);
const char *cdz_weights_metadata_get(const cdz_weights *w, const char *key);
/* Fetch a tensor expecting dtype and shape (-1 in `shape` accepts any size in that dim);
 * a missing tensor or a mismatch is INVALID_ARGUMENT naming both. */
cdz_status cdz_weights_expect(const cdz_weights *w, const char *name, cdz_dtype dtype,
                              int32_t ndim, const int64_t *shape, const cdz_weight_entry **out);
/* Copy a tensor into arena memory on the arena's device; returns a descriptor. */
cdz_status cdz_weights_upload(const cdz_weights *w, const char *name, cdz_arena *arena,
                              cdz_tensor *out);
/* Print tensors, dtypes, shapes, metadata and totals (cadenza inspect). */
cdz_status cdz_weights_print(const cdz_weights *w, void *file /* FILE* */);

#ifdef __cplusplus
}
#endif
#endif /* CADENZA_H */
