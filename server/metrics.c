/*
 * metrics.c: the metrics registry and its Prometheus text rendering (metrics.h).
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct metric_series {
    const char *values[CDZ_METRICS_MAX_LABELS]; /* point into the same allocation */
    double value;                               /* counter / gauge */
    double sum;                                 /* histogram */
    uint64_t count;
    uint64_t buckets[];                         /* histogram: per bucket, not cumulative */
} metric_series;

struct cdz_metric {
    cdz_metrics *reg;
    cdz_metric_type type;
    char name[128];
    char *help;
    int n_labels;
    char labels[CDZ_METRICS_MAX_LABELS][64];
    int n_buckets;
    double bounds[CDZ_METRICS_MAX_BUCKETS];
    pthread_mutex_t mu;
    metric_series **series; /* sorted by label values */
    size_t n_series, cap;
};

struct cdz_metrics {
    pthread_mutex_t mu;
    cdz_metric *fam[CDZ_METRICS_MAX_FAMILIES];
    int n_fam;
    cdz_metrics_std std;
};

/* ------------------------------------------------------------------ registry */

static bool valid_name(const char *s, bool allow_colon) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                     (allow_colon && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
    }
    return true;
}

cdz_status cdz_metrics_create_empty(cdz_metrics **out) {
    if (!out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: out is NULL");
    cdz_metrics *m = calloc(1, sizeof *m);
    if (!m) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "metrics: out of host memory");
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CDZ_STATUS_OK;
}

static void family_free(cdz_metric *f) {
    for (size_t i = 0; i < f->n_series; i++) free(f->series[i]);
    free(f->series);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void cdz_metrics_destroy(cdz_metrics *m) {
    if (!m) return;
    for (int i = 0; i < m->n_fam; i++) family_free(m->fam[i]);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

cdz_status cdz_metrics_register(cdz_metrics *m, cdz_metric_type type, const char *name,
                                const char *help, int n_labels, const char *const *label_names,
                                int n_buckets, const double *buckets, cdz_metric **out) {
    if (!m || !name)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: registry or name is NULL");
    if (!valid_name(name, true) || strlen(name) >= sizeof(((cdz_metric *)0)->name))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: invalid metric name '%s'", name);
    if (type != CDZ_METRIC_COUNTER && type != CDZ_METRIC_GAUGE && type != CDZ_METRIC_HISTOGRAM)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: unknown type %d", name, (int)type);
    if (n_labels < 0 || n_labels > CDZ_METRICS_MAX_LABELS || (n_labels > 0 && !label_names))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: %d labels (0..%d)", name,
                             n_labels, CDZ_METRICS_MAX_LABELS);
    for (int i = 0; i < n_labels; i++) {
        const char *l = label_names[i];
        if (!valid_name(l, false) || strlen(l) >= 64 || strncmp(l, "__", 2) == 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: invalid label name '%s'",
                                 name, l ? l : "(null)");
        if (type == CDZ_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "metrics: %s: a histogram cannot have a label named 'le'", name);
        for (int j = 0; j < i; j++)
            if (strcmp(label_names[j], l) == 0)
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: label '%s' twice", name, l);
    }
    if (type == CDZ_METRIC_HISTOGRAM) {
        if (n_buckets < 1 || n_buckets > CDZ_METRICS_MAX_BUCKETS || !buckets)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: %d buckets (1..%d)",
                                 name, n_buckets, CDZ_METRICS_MAX_BUCKETS);
        for (int i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                     "metrics: %s: bucket bounds must be finite and strictly ascending (bound %d)",
                                     name, i);
    } else if (n_buckets != 0) {
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: %s: buckets on a non-histogram", name);
    }

    cdz_metric *f = calloc(1, sizeof *f);
    if (!f) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "metrics: out of host memory");
    f->help = strdup(help ? help : "");
    if (!f->help) {
        free(f);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "metrics: out of host memory");
    }
    f->reg = m;
    f->type = type;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->n_labels = n_labels;
    for (int i = 0; i < n_labels; i++) snprintf(f->labels[i], sizeof f->labels[i], "%s", label_names[i]);
    f->n_buckets = type == CDZ_METRIC_HISTOGRAM ? n_buckets : 0;
    for (int i = 0; i < f->n_buckets; i++) f->bounds[i] = buckets[i];
    pthread_mutex_init(&f->mu, NULL);

    cdz_status st = CDZ_STATUS_OK;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_fam && st == CDZ_STATUS_OK; i++)
        if (strcmp(m->fam[i]->name, name) == 0)
            st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: '%s' is already registered", name);
    if (st == CDZ_STATUS_OK && m->n_fam >= CDZ_METRICS_MAX_FAMILIES)
        st = cdz_error_set(CDZ_STATUS_TOO_LARGE, "metrics: more than %d families", CDZ_METRICS_MAX_FAMILIES);
    if (st == CDZ_STATUS_OK) m->fam[m->n_fam++] = f;
    pthread_mutex_unlock(&m->mu);
    if (st != CDZ_STATUS_OK) {
        family_free(f);
        return st;
    }
    if (out) *out = f;
    return CDZ_STATUS_OK;
}

cdz_metric *cdz_metrics_find(cdz_metrics *m, const char *name) {
    if (!m || !name) return NULL;
    cdz_metric *found = NULL;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_fam && !found; i++)
        if (strcmp(m->fam[i]->name, name) == 0) found = m->fam[i];
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* ------------------------------------------------------------------ series */

static void count_dropped(cdz_metric *f) {
    cdz_metric *d = f->reg->std.dropped;
    if (d && d != f) cdz_metric_add(d, NULL, 1);
}

static int values_cmp(const cdz_metric *f, const char *const *a, const char *const *b) {
    for (int i = 0; i < f->n_labels; i++) {
        int c = strcmp(a[i], b[i]);
        if (c) return c;
    }
    return 0;
}

/* Binary search; *pos = insertion point when absent. Caller holds f->mu. */
static metric_series *series_lookup(cdz_metric *f, const char *const *values, size_t *pos) {
    size_t lo = 0, hi = f->n_series;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = values_cmp(f, f->series[mid]->values, values);
        if (c == 0) return f->series[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *pos = lo;
    return NULL;
}

/* The series for `values`, created when absent; NULL (and counted as dropped) past the bounds.
 * Caller holds f->mu. */
static metric_series *series_get(cdz_metric *f, const char *const *values, bool *dropped) {
    static const char *const none[1] = {""};
    if (f->n_labels == 0) values = none;
    size_t lens[CDZ_METRICS_MAX_LABELS], total = 0;
    for (int i = 0; i < f->n_labels; i++) {
        if (!values || !values[i]) {
            *dropped = true;
            return NULL;
        }
        lens[i] = strlen(values[i]);
        if (lens[i] > CDZ_METRICS_MAX_LABEL_VALUE) {
            *dropped = true;
            return NULL;
        }
        total += lens[i] + 1;
    }
    size_t pos = 0;
    metric_series *s = series_lookup(f, values, &pos);
    if (s) return s;
    if (f->n_series >= CDZ_METRICS_MAX_SERIES) {
        *dropped = true;
        return NULL;
    }
    if (f->n_series == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        metric_series **grown = realloc(f->series, cap * sizeof *grown);
        if (!grown) {
            *dropped = true;
            return NULL;
        }
        f->series = grown;
        f->cap = cap;
    }
    size_t head = sizeof *s + (size_t)f->n_buckets * sizeof(uint64_t);
    s = calloc(1, head + total);
    if (!s) {
        *dropped = true;
        return NULL;
    }
    char *p = (char *)s + head;
    for (int i = 0; i < f->n_labels; i++) {
        memcpy(p, values[i], lens[i] + 1);
        s->values[i] = p;
        p += lens[i] + 1;
    }
    memmove(f->series + pos + 1, f->series + pos, (f->n_series - pos) * sizeof *f->series);
    f->series[pos] = s;
    f->n_series++;
    return s;
}

typedef enum { OP_ADD, OP_SET, OP_OBSERVE } metric_op;

static void metric_apply(cdz_metric *f, const char *const *values, double v, metric_op op) {
    if (!f) return;
    bool ok_kind = (op == OP_ADD && f->type != CDZ_METRIC_HISTOGRAM &&
                    !(f->type == CDZ_METRIC_COUNTER && !(v >= 0))) ||
                   (op == OP_SET && f->type == CDZ_METRIC_GAUGE) ||
                   (op == OP_OBSERVE && f->type == CDZ_METRIC_HISTOGRAM && !isnan(v));
    if (!ok_kind) {
        count_dropped(f);
        return;
    }
    bool dropped = false;
    pthread_mutex_lock(&f->mu);
    metric_series *s = series_get(f, values, &dropped);
    if (s) {
        if (op == OP_ADD) s->value += v;
        else if (op == OP_SET) s->value = v;
        else {
            /* le is "less than or equal": v == bound lands in that bucket */
            int b = 0;
            while (b < f->n_buckets && v > f->bounds[b]) b++;
            if (b < f->n_buckets) s->buckets[b]++;
            s->sum += v;
            s->count++;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (dropped) count_dropped(f);
}

void cdz_metric_add(cdz_metric *f, const char *const *values, double v) { metric_apply(f, values, v, OP_ADD); }
void cdz_metric_set(cdz_metric *f, const char *const *values, double v) { metric_apply(f, values, v, OP_SET); }
void cdz_metric_observe(cdz_metric *f, const char *const *values, double v) {
    metric_apply(f, values, v, OP_OBSERVE);
}

void cdz_metric_clear(cdz_metric *f) {
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n_series; i++) free(f->series[i]);
    f->n_series = 0;
    pthread_mutex_unlock(&f->mu);
}

bool cdz_metric_get(cdz_metric *f, const char *const *values, double *v) {
    static const char *const none[1] = {""};
    if (!f) return false;
    if (f->n_labels == 0) values = none;
    for (int i = 0; i < f->n_labels; i++)
        if (!values || !values[i]) return false;
    pthread_mutex_lock(&f->mu);
    size_t pos;
    metric_series *s = series_lookup(f, values, &pos);
    if (s && v) *v = f->type == CDZ_METRIC_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&f->mu);
    return s != NULL;
}

/* ------------------------------------------------------------------ rendering */

const char *cdz_metrics_format_double(double v, char *buf, size_t size) {
    if (isnan(v)) snprintf(buf, size, "NaN");
    else if (isinf(v)) snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, size, "%.0f", v == 0 ? 0.0 : v);
    else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
    return buf;
}

typedef struct text_buf {
    char *p;
    size_t len, cap;
    bool failed;
} text_buf;

static void tb_reserve(text_buf *b, size_t extra) {
    if (b->failed || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
        b->failed = true;
        return;
    }
    b->p = q;
    b->cap = cap;
}

static void tb_put(text_buf *b, const char *s, size_t n) {
    tb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tb_str(text_buf *b, const char *s) { tb_put(b, s, strlen(s)); }

/* help: escape \ and newline; label values: also " */
static void tb_escaped(text_buf *b, const char *s, bool quote) {
    for (const char *p = s; *p; p++) {
        if (*p == '\\') tb_put(b, "\\\\", 2);
        else if (*p == '\n') tb_put(b, "\\n", 2);
        else if (quote && *p == '"') tb_put(b, "\\\"", 2);
        else tb_put(b, p, 1);
    }
}

static void tb_num(text_buf *b, double v) {
    char num[40];
    tb_str(b, cdz_metrics_format_double(v, num, sizeof num));
}

/* name[suffix]{labels[,le="..."]} value */
static void render_sample(text_buf *b, const cdz_metric *f, const metric_series *s,
                          const char *suffix, const char *le, double v) {
    tb_str(b, f->name);
    tb_str(b, suffix);
    if (f->n_labels > 0 || le) {
        tb_str(b, "{");
        for (int i = 0; i < f->n_labels; i++) {
            if (i) tb_str(b, ",");
            tb_str(b, f->labels[i]);
            tb_str(b, "=\"");
            tb_escaped(b, s->values[i], true);
            tb_str(b, "\"");
        }
        if (le) {
            if (f->n_labels) tb_str(b, ",");
            tb_str(b, "le=\"");
            tb_str(b, le);
            tb_str(b, "\"");
        }
        tb_str(b, "}");
    }
    tb_str(b, " ");
    tb_num(b, v);
    tb_str(b, "\n");
}

static void render_family(text_buf *b, cdz_metric *f) {
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    tb_str(b, "# HELP ");
    tb_str(b, f->name);
    tb_str(b, " ");
    tb_escaped(b, f->help, false);
    tb_str(b, "\n# TYPE ");
    tb_str(b, f->name);
    tb_str(b, " ");
    tb_str(b, type_names[f->type]);
    tb_str(b, "\n");
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n_series; i++) {
        const metric_series *s = f->series[i];
        if (f->type != CDZ_METRIC_HISTOGRAM) {
            render_sample(b, f, s, "", NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        char le[40];
        for (int k = 0; k < f->n_buckets; k++) {
            cum += s->buckets[k];
            render_sample(b, f, s, "_bucket", cdz_metrics_format_double(f->bounds[k], le, sizeof le),
                          (double)cum);
        }
        render_sample(b, f, s, "_bucket", "+Inf", (double)s->count);
        render_sample(b, f, s, "_sum", NULL, s->sum);
        render_sample(b, f, s, "_count", NULL, (double)s->count);
    }
    pthread_mutex_unlock(&f->mu);
}

static int family_cmp(const void *a, const void *b) {
    return strcmp((*(cdz_metric *const *)a)->name, (*(cdz_metric *const *)b)->name);
}

cdz_status cdz_metrics_render(cdz_metrics *m, char **text, size_t *len) {
    if (!m || !text) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "metrics: render: NULL argument");
    cdz_metric *fams[CDZ_METRICS_MAX_FAMILIES];
    pthread_mutex_lock(&m->mu);
    int n = m->n_fam;
    memcpy(fams, m->fam, (size_t)n * sizeof *fams);
    pthread_mutex_unlock(&m->mu);
    qsort(fams, (size_t)n, sizeof *fams, family_cmp);
    text_buf b = {0};
    tb_reserve(&b, 0);
    for (int i = 0; i < n; i++) render_family(&b, fams[i]);
    if (b.failed) {
        free(b.p);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "metrics: render: out of host memory");
    }
    *text = b.p;
    if (len) *len = b.len;
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ the standard set */

cdz_status cdz_metrics_create(cdz_metrics **out) {
    cdz_metrics *m;
    cdz_status st0 = cdz_metrics_create_empty(&m);
    if (st0 != CDZ_STATUS_OK) return st0;
    static const double lat[] = {CDZ_METRICS_LATENCY_BUCKETS};
    static const double batch[] = {CDZ_METRICS_BATCH_BUCKETS};
    const int n_lat = (int)(sizeof lat / sizeof lat[0]), n_batch = (int)(sizeof batch / sizeof batch[0]);
    static const char *const l_model[] = {"model"};
    static const char *const l_model_code[] = {"model", "code"};
    static const char *const l_device[] = {"device"};
    static const char *const l_device_kind[] = {"device", "kind"};
    static const char *const l_version[] = {"version"};
    cdz_metrics_std *d = &m->std;
    struct {
        cdz_metric **slot;
        cdz_metric_type type;
        const char *name, *help;
        int n_labels;
        const char *const *labels;
        int n_buckets;
        const double *buckets;
    } defs[] = {
        {&d->requests_total, CDZ_METRIC_COUNTER, "cadenza_requests_total",
         "Requests answered, by model and result code (ok or the error code name).", 2, l_model_code, 0, NULL},
        {&d->request_duration, CDZ_METRIC_HISTOGRAM, "cadenza_request_duration_seconds",
         "Time from submission to response, seconds.", 1, l_model, n_lat, lat},
        {&d->queue_duration, CDZ_METRIC_HISTOGRAM, "cadenza_queue_duration_seconds",
         "Time a request waited in its model queue, seconds.", 1, l_model, n_lat, lat},
        {&d->compute_duration, CDZ_METRIC_HISTOGRAM, "cadenza_compute_duration_seconds",
         "Time from the start to the end of a request's compute, seconds.", 1, l_model, n_lat, lat},
        {&d->batch_items, CDZ_METRIC_HISTOGRAM, "cadenza_batch_items",
         "Work items in the batch each request ran in.", 1, l_model, n_batch, batch},
        {&d->stream_first_chunk, CDZ_METRIC_HISTOGRAM, "cadenza_stream_first_chunk_seconds",
         "Time from a stream's first input to its first output chunk, seconds.", 1, l_model, n_lat, lat},
        {&d->queue_depth, CDZ_METRIC_GAUGE, "cadenza_queue_depth",
         "Requests waiting in the model's queue (at scrape time).", 1, l_model, 0, NULL},
        {&d->inflight, CDZ_METRIC_GAUGE, "cadenza_inflight",
         "Requests of the model being computed (at scrape time).", 1, l_model, 0, NULL},
        {&d->arena_bytes, CDZ_METRIC_GAUGE, "cadenza_arena_bytes",
         "Device memory arena bytes: reserved at start, used now, peak used.", 2, l_device_kind, 0, NULL},
        {&d->device_healthy, CDZ_METRIC_GAUGE, "cadenza_device_healthy",
         "1 while the device is in the pool, 0 once it was taken out after a failure.", 1, l_device, 0, NULL},
        {&d->connections, CDZ_METRIC_GAUGE, "cadenza_connections",
         "Open protocol connections.", 0, NULL, 0, NULL},
        {&d->gpu_memory_used, CDZ_METRIC_GAUGE, "cadenza_gpu_memory_used_bytes",
         "GPU memory used on the device, all processes (NVML).", 1, l_device, 0, NULL},
        {&d->gpu_utilization, CDZ_METRIC_GAUGE, "cadenza_gpu_utilization_ratio",
         "Fraction of the last sample period a kernel ran on the GPU, 0..1 (NVML).", 1, l_device, 0, NULL},
        {&d->ready, CDZ_METRIC_GAUGE, "cadenza_ready",
         "1 when the server is ready (/readyz answers 200), else 0.", 0, NULL, 0, NULL},
        {&d->build_info, CDZ_METRIC_GAUGE, "cadenza_build_info",
         "Always 1; the version label says which cadenza this is.", 1, l_version, 0, NULL},
        {&d->dropped, CDZ_METRIC_COUNTER, "cadenza_metrics_dropped_total",
         "Observations dropped by the registry's bounds (too many series, long label values, wrong kind).",
         0, NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        cdz_status st = cdz_metrics_register(m, defs[i].type, defs[i].name, defs[i].help, defs[i].n_labels,
                                             defs[i].labels, defs[i].n_buckets, defs[i].buckets, defs[i].slot);
        if (st != CDZ_STATUS_OK) {
            cdz_metrics_destroy(m);
            return st;
        }
    }
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", CDZ_VERSION_MAJOR, CDZ_VERSION_MINOR, CDZ_VERSION_PATCH);
    cdz_metric_set(d->build_info, (const char *const[]){version}, 1);
    cdz_metric_set(d->connections, NULL, 0);
    cdz_metric_set(d->ready, NULL, 0);
    cdz_metric_add(d->dropped, NULL, 0);
    *out = m;
    return CDZ_STATUS_OK;
}

const cdz_metrics_std *cdz_metrics_standard(const cdz_metrics *m) { return m ? &m->std : NULL; }

void cdz_metrics_request_done(cdz_metrics *m, const char *model, cdz_status status, double queue_s,
                              double compute_s, double total_s, int32_t batch_items) {
    if (!m || !m->std.requests_total) return;
    if (!model) model = "";
    const char *code = status == CDZ_STATUS_OK ? "ok" : cdz_status_name(status);
    cdz_metric_add(m->std.requests_total, (const char *const[]){model, code ? code : "unknown"}, 1);
    const char *const lm[] = {model};
    if (queue_s >= 0) cdz_metric_observe(m->std.queue_duration, lm, queue_s);
    if (compute_s >= 0) cdz_metric_observe(m->std.compute_duration, lm, compute_s);
    if (total_s >= 0) cdz_metric_observe(m->std.request_duration, lm, total_s);
    if (batch_items > 0) cdz_metric_observe(m->std.batch_items, lm, batch_items);
}

void cdz_metrics_stream_first_chunk(cdz_metrics *m, const char *model, double seconds) {
    if (!m || !m->std.stream_first_chunk || !(seconds >= 0)) return;
    cdz_metric_observe(m->std.stream_first_chunk, (const char *const[]){model ? model : ""}, seconds);
}

void cdz_metrics_connections_add(cdz_metrics *m, int delta) {
    if (m && m->std.connections) cdz_metric_add(m->std.connections, NULL, delta);
}

void cdz_metrics_set_ready(cdz_metrics *m, bool ready) {
    if (m && m->std.ready) cdz_metric_set(m->std.ready, NULL, ready ? 1 : 0);
}

void cdz_metrics_set_gpu(cdz_metrics *m, const char *device, double used_bytes, double utilization_ratio) {
    if (!m || !m->std.gpu_memory_used || !device) return;
    const char *const ld[] = {device};
    if (used_bytes >= 0) cdz_metric_set(m->std.gpu_memory_used, ld, used_bytes);
    if (utilization_ratio >= 0) cdz_metric_set(m->std.gpu_utilization, ld, utilization_ratio);
}

void cdz_metrics_set_sched_stats(cdz_metrics *m, const cdz_sched_stats *st) {
    if (!m || !m->std.queue_depth || !st) return;
    const cdz_metrics_std *d = &m->std;
    /* rebuilt from the snapshot so that a scrape never shows a stale model or device */
    cdz_metric_clear(d->queue_depth);
    cdz_metric_clear(d->inflight);
    cdz_metric_clear(d->arena_bytes);
    cdz_metric_clear(d->device_healthy);
    int nm = st->n_models < 0 ? 0 : st->n_models > CDZ_SCHED_MAX_MODELS ? CDZ_SCHED_MAX_MODELS : st->n_models;
    int nd = st->n_devices < 0 ? 0 : st->n_devices > CDZ_SCHED_MAX_DEVICES ? CDZ_SCHED_MAX_DEVICES : st->n_devices;
    for (int i = 0; i < nm; i++) {
        char name[CDZ_JOB_MAX_NAME + 1];
        snprintf(name, sizeof name, "%.*s", (int)sizeof st->models[i].name, st->models[i].name);
        const char *const lm[] = {name};
        cdz_metric_set(d->queue_depth, lm, st->models[i].queued);
        cdz_metric_set(d->inflight, lm, st->models[i].running);
    }
    for (int i = 0; i < nd; i++) {
        /* "cpu:N" rather than cdz_device_str's "cpu": logical CPU devices must stay distinct */
        char dev[32];
        snprintf(dev, sizeof dev, "%s:%d", st->devices[i].device.kind == CDZ_DEVICE_CUDA ? "cuda" : "cpu",
                 (int)st->devices[i].device.index);
        const cdz_arena_stats *a = &st->devices[i].arena;
        cdz_metric_set(d->arena_bytes, (const char *const[]){dev, "reserved"}, (double)a->reserved);
        cdz_metric_set(d->arena_bytes, (const char *const[]){dev, "used"}, (double)a->used);
        cdz_metric_set(d->arena_bytes, (const char *const[]){dev, "peak"}, (double)a->peak);
        cdz_metric_set(d->device_healthy, (const char *const[]){dev}, st->devices[i].healthy ? 1 : 0);
    }
}
