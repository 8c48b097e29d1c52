/*
 * scheduler.h: the device pool, per-model queues and per-device workers that serve requests.
 *
 * Shape (docs/architecture.md, research/runtime.md §C-D):
 *  - A pool of devices ("cuda:0,cuda:1", "cpu", "cpu:N" logical CPU devices for tests). Each
 *    device has one arena (reserved once) and one copy of every model's weights; each has
 *    `workers_per_device` worker threads, each with its own context (stream, handles) and its
 *    own plan per model sized for that model's max batch. Plans are made and warmed up at
 *    start: cdz_sched_create returns only when every model ran once on every worker.
 *  - One queue per model, bounded (`queue_size`): a full queue answers BUSY (retryable). A job
 *    that can never fit (larger than a plan allows) is TOO_LARGE at submit. Queues are ordered
 *    by priority, then arrival.
 *  - Dynamic batching: a free worker takes up to `max_batch` work items of one model, waiting at
 *    most `max_queue_delay_us` after the oldest job arrived for a fuller batch. Items of
 *    different jobs share one batch (for HTDemucs: segments of different tracks).
 *  - Deadlines are checked when a job is taken from the queue and between the steps of a job
 *    (DEADLINE_EXCEEDED); cancellation (cdz_sched_cancel) likewise (CANCELLED).
 *  - Sequence affinity: every job of one stream (stream_id != 0) runs on the same worker, in
 *    submission order.
 *  - A device whose worker fails with CDZ_STATUS_DEVICE is taken out of the pool: its queued
 *    and running jobs finish with a DEVICE error (retryable), the other devices keep serving.
 *  - Drain: after cdz_sched_drain begins, submit answers SHUTTING_DOWN; queued and running jobs
 *    finish (or fail with SHUTTING_DOWN when the timeout passes); then workers stop.
 *
 * Threading: submit/cancel/stats are thread-safe and never block on compute. A job's `done`
 * callback runs exactly once on a worker thread (or on the submitting thread when submit fails:
 * then it is NOT called; the status is returned instead).
 *
 * Backends adapt one kind of network (weights metadata "model") to the scheduler; the built-in
 * "testnet" (models/testnet.c) is a small MLP for fast CPU tests of everything above.
 *
 * defines: cdz_sched, cdz_job, cdz_backend, cdz_sched_config, cdz_sched_model_config,
 *          cdz_sched_stats, cdz_sched_create, cdz_sched_submit, cdz_sched_cancel,
 *          cdz_sched_drain, cdz_sched_destroy, cdz_sched_get_stats, cdz_sched_describe_model,
 *          cdz_job_init, cdz_job_free, cdz_job_add_result, cdz_now_ns, cdz_backend_find
 */
#ifndef CDZ_SCHEDULER_H
#define CDZ_SCHEDULER_H

#include <stdatomic.h>

#include "cadenza.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_SCHED_MAX_DEVICES 16
#define CDZ_SCHED_MAX_MODELS 32
#define CDZ_JOB_MAX_TENSORS 16
#define CDZ_JOB_MAX_NAME 64

typedef struct cdz_sched cdz_sched;
typedef struct cdz_job cdz_job;

typedef void (*cdz_job_done_fn)(cdz_job *job, void *user);

/* One request. The submitter fills the "request" part and keeps the input memory alive until
 * `done` is called; the scheduler fills the "result" part. */
struct cdz_job {
    /* ---- request ---- */
    uint64_t id;                                   /* unique per scheduler (request id) */
    char model[CDZ_JOB_MAX_NAME];
    int32_t n_inputs;
    char input_names[CDZ_JOB_MAX_TENSORS][CDZ_JOB_MAX_NAME];
    cdz_tensor inputs[CDZ_JOB_MAX_TENSORS];        /* host tensors (views; not owned) */
    int32_t n_outputs;                             /* requested outputs; 0 = all */
    char output_names[CDZ_JOB_MAX_TENSORS][CDZ_JOB_MAX_NAME];
    const char *options_json;                      /* per-request options (e.g. shifts), or NULL */
    int64_t deadline_ns;                           /* absolute CLOCK_MONOTONIC; 0 = none */
    int32_t priority;                              /* 1 most urgent .. 7 least; 0 = default (4) */
    uint64_t stream_id;                            /* != 0: same worker, in order */
    cdz_job_done_fn done;
    void *user;
    /* ---- set by cdz_sched_cancel (any thread) ---- */
    atomic_bool cancelled;
    /* ---- result (valid in `done`) ---- */
    cdz_status status;                             /* OK, or the typed error below */
    cdz_error error;
    int32_t n_results;                             /* every requested output, or 0 on error */
    char result_names[CDZ_JOB_MAX_TENSORS][CDZ_JOB_MAX_NAME];
    cdz_tensor results[CDZ_JOB_MAX_TENSORS];       /* host memory owned by the job */
    int64_t t_submit_ns, t_start_ns, t_end_ns;     /* CLOCK_MONOTONIC: queue and compute time */
    int32_t batch_items;                           /* work items in the batch it ran in */
    int32_t device_index;                          /* position in the pool it ran on */
    /* ---- scheduler-private ---- */
    void *priv;
};

/* Zero a job and set its id, model and callback. */
void cdz_job_init(cdz_job *job, uint64_t id, const char *model, cdz_job_done_fn done, void *user);
/* Free the results (host memory) a job holds; the job struct itself is the caller's. */
void cdz_job_free(cdz_job *job);
/* For backends: allocate result `name` (host, contiguous) shaped like `shape`; returns it. */
cdz_status cdz_job_add_result(cdz_job *job, const char *name, cdz_dtype dtype, int32_t ndim,
                              const int64_t *shape, cdz_tensor **out);
int64_t cdz_now_ns(void); /* CLOCK_MONOTONIC */

/* ---- backends ---- */
typedef struct cdz_backend {
    const char *kind; /* weights metadata "model" value, e.g. "htdemucs", "testnet" */
    /* Load weights onto the arena's device (once per device, at start). */
    cdz_status (*load)(const cdz_weights *w, cdz_arena *arena, void **model);
    void (*unload)(void *model);
    /* Describe the model for LIST_MODELS: inputs and outputs as JSON text (static or owned by
     * the model). */
    const char *(*describe)(void *model);
    /* Validate a job (input names, dtypes, shapes, options; requested outputs exist) and say
     * how many work items it is (testnet: rows; htdemucs: segments x shifts x members).
     * INVALID_ARGUMENT names what is wrong; TOO_LARGE if it can never run. */
    cdz_status (*check)(void *model, const cdz_job *job, int64_t *items);
    /* A worker's plan for up to max_items items per batch on ctx; *bytes = arena bytes used. */
    cdz_status (*plan_create)(void *model, cdz_ctx *ctx, int32_t max_items, void **plan,
                              size_t *bytes);
    void (*plan_destroy)(void *plan);
    /* Run jobs[0..n) together (their items share batches), filling each job's results or
     * setting job->status/error for that job alone. Must check each job's `cancelled` flag and
     * deadline between steps. Returns non-OK only for failures of the worker itself (DEVICE,
     * INTERNAL), which fail every job of the call. */
    cdz_status (*run)(void *plan, cdz_ctx *ctx, cdz_job *const *jobs, int32_t n);
    /* Run the plan once on dummy data of the plan's full size (cdz_sched_create calls it on
     * every worker before serving, so the first request pays for nothing). */
    cdz_status (*warmup)(void *plan, cdz_ctx *ctx);
} cdz_backend;

/* Built-in backends by kind ("testnet", "htdemucs"); NULL when unknown. */
const cdz_backend *cdz_backend_find(const char *kind);

/* ---- configuration ---- */
typedef struct cdz_sched_model_config {
    char name[CDZ_JOB_MAX_NAME];  /* the name clients use */
    const char *path;             /* safetensors file, or "builtin:testnet" */
    int32_t max_batch;            /* work items per batch (>= 1) */
    int32_t queue_size;           /* jobs waiting; more -> BUSY */
    int64_t max_queue_delay_us;   /* wait this long for a fuller batch (0 = never wait) */
} cdz_sched_model_config;

typedef struct cdz_sched_config {
    int32_t n_devices;
    cdz_device devices[CDZ_SCHED_MAX_DEVICES];
    int32_t workers_per_device;   /* >= 1 */
    size_t arena_bytes;           /* per device; 0 = the arena's default */
    cdz_precision precision;
    int32_t n_models;
    cdz_sched_model_config models[CDZ_SCHED_MAX_MODELS];
} cdz_sched_config;

/* Load, validate and warm up every model on every device; fails fast naming the model and
 * device at fault. */
cdz_status cdz_sched_create(const cdz_sched_config *cfg, cdz_sched **out);
/* Queue a job. Errors (job->done NOT called): UNKNOWN_MODEL, INVALID_ARGUMENT, TOO_LARGE, BUSY,
 * SHUTTING_DOWN, DEADLINE_EXCEEDED (already past). */
cdz_status cdz_sched_submit(cdz_sched *s, cdz_job *job);
/* Cancel a queued or running job (no-op if unknown or finished). Its done() reports CANCELLED
 * unless it had already completed. */
void cdz_sched_cancel(cdz_sched *s, cdz_job *job);
/* Refuse new work, let queued and running jobs finish for up to timeout_ns, then fail what is
 * left with SHUTTING_DOWN. Returns when every done() has been called. */
cdz_status cdz_sched_drain(cdz_sched *s, int64_t timeout_ns);
/* Drain (with no wait), stop the workers, free devices. */
void cdz_sched_destroy(cdz_sched *s);

typedef struct cdz_sched_model_stats {
    char name[CDZ_JOB_MAX_NAME];
    char kind[32];
    int32_t queued, running;
    int32_t max_batch, queue_size;
} cdz_sched_model_stats;

typedef struct cdz_sched_device_stats {
    cdz_device device;
    bool healthy;                 /* false once taken out of the pool */
    cdz_arena_stats arena;
} cdz_sched_device_stats;

typedef struct cdz_sched_stats {
    int32_t n_models, n_devices;
    cdz_sched_model_stats models[CDZ_SCHED_MAX_MODELS];
    cdz_sched_device_stats devices[CDZ_SCHED_MAX_DEVICES];
    bool draining;
} cdz_sched_stats;

void cdz_sched_get_stats(cdz_sched *s, cdz_sched_stats *out);
/* JSON description of one model (backend describe()), or NULL if unknown. */
const char *cdz_sched_describe_model(cdz_sched *s, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_SCHEDULER_H */
