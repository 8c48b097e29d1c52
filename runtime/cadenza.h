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
/* f32, f16 or bf16: the dtypes the float ops compute on. */
bool cdz_dtype_is_float(cdz_dtype dtype);
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

/* ------------------------------------------------------------------------------------
 * Models: HTDemucs (Demucs v4 hybrid transformer source separation; docs/models/htdemucs.md)
 *
 *  - cdz_htdemucs: the weights of one model or a bag of models (htdemucs_ft) on one device,
 *    immutable after load, shared by every worker of that device. The architecture comes
 *    from the file's metadata "config" (weights-tools/cadenza-convert); every tensor is
 *    checked against the shapes that config implies.
 *  - cdz_htdemucs_plan: one worker's activations for one member, one context and up to
 *    `batch` segments, measured once and reserved as one region of the context's arena.
 *  - cdz_htdemucs_forward is HTDemucs.forward for exactly one segment per batch item; it
 *    queues work on the context's stream and never waits for the device.
 * ---------------------------------------------------------------------------------- */
#define CDZ_HTDEMUCS_MAX_MEMBERS 8
#define CDZ_HTDEMUCS_MAX_SOURCES 8

typedef struct cdz_htdemucs cdz_htdemucs;

typedef struct cdz_htdemucs_info {
    int32_t members, sources, audio_channels, samplerate;
    int64_t segment_samples;  /* the shortest member segment (all members: member_segment) */
    int64_t member_segment[CDZ_HTDEMUCS_MAX_MEMBERS];
    char source_names[CDZ_HTDEMUCS_MAX_SOURCES][16];
    float weights[CDZ_HTDEMUCS_MAX_MEMBERS][CDZ_HTDEMUCS_MAX_SOURCES]; /* bag [member][source] */
    size_t weight_bytes;      /* device bytes of parameters and derived tables */
} cdz_htdemucs_info;

/* Config from the metadata; every tensor checked (name, dtype f32/f16/bf16/f64, shape derived
 * from the config) with errors naming it; missing and extra tensors refused; unsupported
 * settings refused naming the setting. Uploads (as f32) to the arena's device. */
cdz_status cdz_htdemucs_load(const cdz_weights *w, cdz_arena *arena, cdz_htdemucs **out);
void cdz_htdemucs_free(cdz_htdemucs *m);
void cdz_htdemucs_get_info(const cdz_htdemucs *m, cdz_htdemucs_info *out);

typedef struct cdz_htdemucs_plan cdz_htdemucs_plan;
/* ctx must be on the model's device. A CPU context without an arena gets a private one. */
cdz_status cdz_htdemucs_plan_create(const cdz_htdemucs *m, int32_t member, cdz_ctx *ctx,
                                    int32_t batch, cdz_htdemucs_plan **out);
/* Work queued with the plan must be finished (cdz_ctx_sync) before it is destroyed. */
void cdz_htdemucs_plan_destroy(cdz_htdemucs_plan *p);
size_t cdz_htdemucs_plan_bytes(const cdz_htdemucs_plan *p); /* activation bytes reserved */
/* mix [B, C, segment] f32 on ctx's device -> out [B, S, C, segment] f32, B <= plan batch. */
cdz_status cdz_htdemucs_forward(cdz_htdemucs_plan *p, const cdz_tensor *mix, cdz_tensor *out);
/* Called (on the forward's thread) with each named intermediate, e.g. "forward.freq.enc.0";
 * names and layouts as weights-tools/make_demucs_reference.py records them. The tensor lives
 * on ctx's device and is valid during the call only; a CUDA tap must synchronise itself. */
typedef void (*cdz_tap_fn)(void *user, const char *name, const cdz_tensor *t);
void cdz_htdemucs_plan_set_tap(cdz_htdemucs_plan *p, cdz_tap_fn fn, void *user);

/* Writes a seeded random HTDemucs checkpoint that cdz_htdemucs_load accepts: the tensor list
 * is the loader's own (every name and shape the config implies), values drawn as
 * weights-tools/make_demucs_reference.py does (conv/linear N(0, 1/fan_in), biases N(0, 0.01),
 * norm weights U(0.5, 1.5), LayerScale U(0.1, 1), frequency embedding N(0, 0.01)), f32.
 * `preset_or_config` is a preset name -- "htdemucs" (the published 955717e8 configuration),
 * "htdemucs_6s", "small" (htdemucs at a sixth of the width: a CPU-sized demo), "tiny" (the
 * test configuration of docs/weights.md) -- or JSON text: a whole metadata "config" object
 * (with "models"), or an object of HTDemucs kwargs applied over the htdemucs preset.
 * Same seed, same bytes. The weights are untrained: their output is meaningless audio. */
cdz_status cdz_htdemucs_write_random(const char *path, const char *preset_or_config, uint64_t seed);
/* The preset names above, NULL-terminated. */
const char *const *cdz_htdemucs_presets(void);

/* ------------------------------------------------------------------------------------
 * Audio I/O (runtime/audio.c) and track separation (models/separate.c); docs/separate.md
 *
 *  - cdz_audio holds planar f32 samples: channel c is data[c*frames .. (c+1)*frames).
 *    Files are read and written through libsndfile (WAV, FLAC, OGG, AIFF, ... any bit
 *    depth), integers scaled to [-1, 1) as libsndfile does (x / 2^(bits-1)).
 *  - Nothing is converted silently: resampling (libsoxr, high quality) and channel
 *    conversion are separate calls the caller logs; more than 2 channels are refused.
 *  - Reading allocates the decoded samples once (the header's frame count is trusted only
 *    up to one frame per byte of file; more is grown as it is decoded), never more than
 *    CADENZA_AUDIO_MAX_BYTES (default 8 GiB) of samples: TOO_LARGE beyond.
 *  - Errors: IO (cannot open / create / write), INVALID_ARGUMENT (not audio, unsupported
 *    format, 0 frames, NaN/Inf samples, bad arguments), UNSUPPORTED (built without
 *    libsndfile / libsoxr).
 * ---------------------------------------------------------------------------------- */
typedef struct cdz_audio {
    float *data;        /* planar [channels][frames]; owned, freed by cdz_audio_free */
    int32_t channels;
    int32_t samplerate; /* Hz */
    int64_t frames;
    char format[64];    /* what cdz_audio_read found, e.g. "FLAC (FLAC Lossless Audio Codec), Signed 24 bit PCM" */
} cdz_audio;

typedef enum cdz_audio_format {
    CDZ_AUDIO_FORMAT_AUTO = 0, /* from the file name's extension (.wav, .flac) */
    CDZ_AUDIO_FORMAT_WAV,
    CDZ_AUDIO_FORMAT_FLAC,
} cdz_audio_format;

/* demucs.audio.prevent_clip, applied to one stem (all its channels) before writing. */
typedef enum cdz_clip_mode {
    CDZ_CLIP_RESCALE = 0, /* x / max(1.01 * max|x|, 1) */
    CDZ_CLIP_CLAMP,       /* clamp(x, -0.99, 0.99) */
    CDZ_CLIP_TANH,        /* tanh(x) */
    CDZ_CLIP_NONE,        /* as is (PCM writes saturate at full scale) */
} cdz_clip_mode;

/* Zero-filled planar buffer; channels >= 1, frames >= 1, samplerate >= 1. */
cdz_status cdz_audio_alloc(cdz_audio *a, int32_t channels, int64_t frames, int32_t samplerate);
/* Frees the samples and zeroes the struct (safe on a zeroed or already freed struct). */
void cdz_audio_free(cdz_audio *a);
cdz_status cdz_audio_read(const char *path, cdz_audio *out);
/* bits: 16 or 24 (PCM) or 32 (float, WAV only). Refuses NaN/Inf samples. Writes the file
 * in one pass; WAV data beyond 4 GiB is written as RF64. */
cdz_status cdz_audio_write(const char *path, const cdz_audio *a, cdz_audio_format format,
                           int32_t bits);
/* libsoxr, SOXR_HQ; out gets round(frames * rate / in rate) frames. Same rate: a copy. */
cdz_status cdz_audio_resample(const cdz_audio *in, int32_t samplerate, cdz_audio *out);
/* Same count: a copy; 1 -> N: the channel duplicated (demucs convert_audio_channels);
 * anything else (e.g. 3 -> 2) is INVALID_ARGUMENT naming both counts. */
cdz_status cdz_audio_to_channels(const cdz_audio *in, int32_t channels, cdz_audio *out);
/* In place, over all channels of `a`, in f32 exactly as demucs' torch code. */
cdz_status cdz_audio_prevent_clip(cdz_audio *a, cdz_clip_mode mode);
cdz_status cdz_clip_mode_parse(const char *text, cdz_clip_mode *out);
const char *cdz_clip_mode_name(cdz_clip_mode mode);
/* "wav" | "flac" (case-insensitive). */
cdz_status cdz_audio_format_parse(const char *text, cdz_audio_format *out);
bool cdz_audio_can_read(void);     /* built with libsndfile */
bool cdz_audio_can_resample(void); /* built with libsoxr */

/* Track separation: demucs.apply.apply_model around the HTDemucs forward, with the track
 * normalisation of demucs.api.Separator (docs/separate.md gives the exact semantics). */
typedef void (*cdz_progress_fn)(void *user, int64_t done, int64_t total);

typedef struct cdz_separate_options {
    int32_t shifts;           /* shift trick: predictions averaged over this many random
                                 offsets in [0, samplerate/2] (demucs default 1; 0 = off) */
    double overlap;           /* [0, 1): chunk overlap (0.25) */
    double transition_power;  /* >= 1: sharpness of the cross-fade weight (1) */
    double segment_seconds;   /* chunk length; 0: each member's training segment; never longer */
    uint64_t seed;            /* generator of the shift offsets (deterministic per seed) */
    const int64_t *shift_offsets; /* NULL, or [members][shifts] offsets to use instead (tests) */
    bool normalize;           /* (x - mean) / (std + 1e-8) of the channel mean, undone after (true) */
    cdz_progress_fn progress; /* segments done / total, after each batch; may be NULL */
    void *progress_user;
} cdz_separate_options;

void cdz_separate_options_default(cdz_separate_options *o);

/* One worker's separation state: the model, a context on its device, and (made on first
 * use, kept until destroy) one cdz_htdemucs_plan per bag member for `batch` segments. */
typedef struct cdz_separator cdz_separator;
cdz_status cdz_separator_create(const cdz_htdemucs *m, cdz_ctx *ctx, int32_t batch,
                                cdz_separator **out);
void cdz_separator_destroy(cdz_separator *s);
/* mix: the track at the model's rate and channel count (host memory). stems[k] (host,
 * planar [channels][frames]) receives source k, or is NULL to skip it; members whose bag
 * weights are 0 for every requested source are not run. Returns after the device is idle. */
cdz_status cdz_separate(cdz_separator *s, const cdz_separate_options *opt, const cdz_audio *mix,
                        float *const *stems);

/* ------------------------------------------------------------------------------------
 * Weights writing (runtime/weights_write.c)
 * ---------------------------------------------------------------------------------- */
/* Writes a safetensors file that cdz_weights_open accepts: the entries' tensors back to back
 * in the order given (their `offset` is ignored; `nbytes` must equal numel x dtype size;
 * `data` is host memory), the JSON header padded with spaces to 8 bytes, and
 * `metadata_json` (a JSON object of string values, or NULL) as __metadata__. Names are 1..1024
 * bytes of UTF-8, unique, not "__metadata__". Everything is checked before writing
 * (INVALID_ARGUMENT naming the entry); the bytes go to a temporary file beside `path`, renamed
 * into place at the end, so a failure (IO, naming the path) leaves no file behind. */
cdz_status cdz_weights_write(const char *path, const cdz_weight_entry *entries, size_t n,
                             const char *metadata_json);

#ifdef __cplusplus
}
#endif
#endif /* CADENZA_H */
