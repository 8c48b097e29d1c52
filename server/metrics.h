/*
 * metrics.h: a small thread-safe metrics registry rendered as Prometheus text (exposition format
 * 0.0.4), and the standard metric set `cadenza serve` records (docs/metrics.md).
 *
 * Model: a registry holds *families* (one name, one type, one HELP text, fixed label names);
 * a family holds *series* (one per distinct tuple of label values), created on first use.
 *  - counter: only goes up (cdz_metric_add with v >= 0; negative adds are ignored).
 *  - gauge: set or add.
 *  - histogram: fixed upper bounds given at registration (ascending, finite); renders
 *    name_bucket{...,le="b"} cumulative counts, le="+Inf", name_sum and name_count.
 * Rendering is stable: families sorted by name, series by their label values (tuple-wise
 * strcmp), labels in registration order. Label values are escaped (\\ \" \n), HELP text too
 * (\\ \n). Every name starts with "cadenza_" (the standard set) — cdz_metrics_register checks
 * the Prometheus name/label grammar but not the prefix, so tests can use any valid name.
 * Bounds: at most CDZ_METRICS_MAX_SERIES series per family and label values up to
 * CDZ_METRICS_MAX_LABEL_VALUE bytes; observations past those limits are dropped and counted in
 * cadenza_metrics_dropped_total (never an unbounded memory growth from client-chosen labels).
 *
 * Threading: every function is thread-safe (one mutex per family; lookups of a series are a
 * binary search). Observations never fail visibly: a metric is not worth failing a request for.
 *
 * The standard set (registered by cdz_metrics_create; see docs/metrics.md):
 *   cadenza_requests_total{model,code}            counter   code = "ok" or cdz_status_name()
 *   cadenza_request_duration_seconds{model}       histogram submit -> response
 *   cadenza_queue_duration_seconds{model}         histogram submit -> compute start
 *   cadenza_compute_duration_seconds{model}       histogram compute start -> end
 *   cadenza_batch_items{model}                    histogram work items in the batch a job ran in
 *   cadenza_stream_first_chunk_seconds{model}     histogram stream open -> first chunk sent
 *   cadenza_queue_depth{model}                    gauge     (set at scrape from the scheduler)
 *   cadenza_inflight{model}                       gauge     (set at scrape)
 *   cadenza_arena_bytes{device,kind}              gauge     kind = reserved|used|peak (scrape)
 *   cadenza_device_healthy{device}                gauge     1/0 (scrape)
 *   cadenza_connections                           gauge     open protocol connections
 *   cadenza_gpu_memory_used_bytes{device}         gauge     NVML, at scrape, when present
 *   cadenza_gpu_utilization_ratio{device}         gauge     NVML, 0..1, when present
 *   cadenza_ready                                 gauge     1 when /readyz answers 200
 *   cadenza_build_info{version}                   gauge     always 1
 *   cadenza_metrics_dropped_total                 counter   observations dropped by the bounds
 *
 * Typical use by the server:
 *   cdz_metrics *m; cdz_metrics_create(&m);
 *   cdz_metrics_connections_add(m, +1);   ... on accept; -1 on close
 *   cdz_metrics_request_done(m, job->model, job->status,
 *                            queue_s, compute_s, total_s, job->batch_items);
 *   cdz_metrics_stream_first_chunk(m, model, seconds);
 *   cdz_metrics_render(m, &text, &len); ... free(text)   (the admin port does this)
 *
 * defines: cdz_metrics, cdz_metric, cdz_metric_type, cdz_metrics_create, cdz_metrics_destroy,
 *          cdz_metrics_register, cdz_metrics_find, cdz_metric_add, cdz_metric_set,
 *          cdz_metric_observe, cdz_metric_clear, cdz_metric_get, cdz_metrics_render,
 *          cdz_metrics_create_empty, cdz_metrics_request_done, cdz_metrics_stream_first_chunk,
 *          cdz_metrics_connections_add, cdz_metrics_set_sched_stats, cdz_metrics_set_gpu,
 *          cdz_metrics_set_ready, cdz_metrics_std, cdz_metrics_standard,
 *          cdz_metrics_format_double,
 *          CDZ_METRICS_LATENCY_BUCKETS, CDZ_METRICS_BATCH_BUCKETS
 */
#ifndef CDZ_METRICS_H
#define CDZ_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cadenza.h"
#include "scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_METRICS_MAX_LABELS 8
#define CDZ_METRICS_MAX_BUCKETS 32
#define CDZ_METRICS_MAX_SERIES 4096
#define CDZ_METRICS_MAX_LABEL_VALUE 256
#define CDZ_METRICS_MAX_FAMILIES 128

typedef struct cdz_metrics cdz_metrics;
typedef struct cdz_metric cdz_metric; /* one family */

typedef enum cdz_metric_type {
    CDZ_METRIC_COUNTER = 0,
    CDZ_METRIC_GAUGE,
    CDZ_METRIC_HISTOGRAM,
} cdz_metric_type;

/* Latency buckets (seconds) of the standard histograms: 1 ms .. 300 s. */
#define CDZ_METRICS_LATENCY_BUCKETS \
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300
/* Batch-size buckets (work items). */
#define CDZ_METRICS_BATCH_BUCKETS 1, 2, 4, 8, 16, 32, 64, 128, 256

/* A registry with the standard set registered. */
cdz_status cdz_metrics_create(cdz_metrics **out);
/* An empty registry (tests; embedding programs with their own metrics). */
cdz_status cdz_metrics_create_empty(cdz_metrics **out);
void cdz_metrics_destroy(cdz_metrics *m);

/* Register a family. Names: [a-zA-Z_:][a-zA-Z0-9_:]*, labels: [a-zA-Z_][a-zA-Z0-9_]* (no "__"
 * prefix, no "le" on histograms, no duplicates). Histograms need 1..CDZ_METRICS_MAX_BUCKETS
 * strictly ascending finite bounds; others pass n_buckets = 0. A duplicate name is
 * INVALID_ARGUMENT. The family lives as long as the registry. */
cdz_status cdz_metrics_register(cdz_metrics *m, cdz_metric_type type, const char *name,
                                const char *help, int n_labels, const char *const *label_names,
                                int n_buckets, const double *buckets, cdz_metric **out);
/* A family by name, or NULL. */
cdz_metric *cdz_metrics_find(cdz_metrics *m, const char *name);

/* Observations. `values` has one string per label name of the family (NULL when it has none).
 * add: counters (v >= 0) and gauges; set: gauges only; observe: histograms only. A call of the
 * wrong kind for the family is ignored (and counted as dropped). */
void cdz_metric_add(cdz_metric *f, const char *const *values, double v);
void cdz_metric_set(cdz_metric *f, const char *const *values, double v);
void cdz_metric_observe(cdz_metric *f, const char *const *values, double v);
/* Remove every series of a family (scrape-time gauges rebuilt from a snapshot). */
void cdz_metric_clear(cdz_metric *f);
/* Read one series' value (counter/gauge value; histogram: its count); false if absent. */
bool cdz_metric_get(cdz_metric *f, const char *const *values, double *v);

/* Render the whole registry as Prometheus text 0.0.4 into a malloc'd NUL-terminated buffer. */
cdz_status cdz_metrics_render(cdz_metrics *m, char **text, size_t *len);

/* Prometheus sample value: integers exactly ("42"), otherwise the shortest %.{15,16,17}g that
 * reads back exactly; "+Inf", "-Inf", "NaN". Returns buf. */
const char *cdz_metrics_format_double(double v, char *buf, size_t size);

/* ---- the standard set (no-ops on a registry made by cdz_metrics_create_empty) ---- */

/* One finished request: counts it by (model, code) — code "ok" for CDZ_STATUS_OK, else
 * cdz_status_name(status) — and observes the durations; a negative duration (the request
 * never reached that stage, e.g. BUSY at submit) is not observed; batch_items <= 0 likewise. */
void cdz_metrics_request_done(cdz_metrics *m, const char *model, cdz_status status,
                              double queue_s, double compute_s, double total_s,
                              int32_t batch_items);
/* Time from a stream's first input chunk (or open) to its first output chunk. */
void cdz_metrics_stream_first_chunk(cdz_metrics *m, const char *model, double seconds);
/* Open connections: +1 on accept, -1 on close. */
void cdz_metrics_connections_add(cdz_metrics *m, int delta);
/* Replace the scrape-time gauges (queue depth, in-flight, arena bytes, device health) with a
 * scheduler snapshot. */
void cdz_metrics_set_sched_stats(cdz_metrics *m, const cdz_sched_stats *st);
/* GPU gauges for one device label (NVML values; the admin port calls this at scrape). */
void cdz_metrics_set_gpu(cdz_metrics *m, const char *device, double used_bytes,
                         double utilization_ratio);
void cdz_metrics_set_ready(cdz_metrics *m, bool ready);

/* The standard families (NULL on an empty registry), for direct use. */
typedef struct cdz_metrics_std {
    cdz_metric *requests_total, *request_duration, *queue_duration, *compute_duration,
        *batch_items, *stream_first_chunk, *queue_depth, *inflight, *arena_bytes,
        *device_healthy, *connections, *gpu_memory_used, *gpu_utilization, *ready, *build_info,
        *dropped;
} cdz_metrics_std;
const cdz_metrics_std *cdz_metrics_standard(const cdz_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_METRICS_H */
