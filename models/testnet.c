/*
 * testnet.c: the built-in test network backend ("testnet") for scheduler and server tests.
 *
 *   y = W2 . gelu(W1 . x + b1) + b2     x, y: [rows, D] f32; W1 [H, D], b1 [H], W2 [D, H], b2 [D]
 *   gelu(v) = v/2 (1 + erf(v / sqrt 2))  (torch.nn.functional.gelu, exact)
 *
 * Work items are rows: the rows of every job of a run() are packed into batches of up to the
 * plan's max_items rows, so rows of different jobs share one batch. The math runs on the host
 * whatever the device (weights are host copies); it exists to test scheduling, not kernels.
 *
 * Weights: "builtin:testnet" (D = 8, H = 16, seeded) or a safetensors file with metadata
 * {"model": "testnet"} and f32 tensors w1, b1, w2, b2; metadata "fail_warmup": "1" makes the
 * warm-up fail (a test of fail-fast start-up).
 * Options (per job, JSON): {"fail_device": true} makes run() fail as the device would
 * (CDZ_STATUS_DEVICE); {"delay_ms": N} sleeps N ms before the job's rows, in 1 ms steps
 * checking cancellation and the deadline (tests of running-job cancel and drain).
 *
 * defines: cdz_backend_testnet
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "scheduler.h"

#define TESTNET_MAX_ROWS (1 << 20)

typedef struct testnet {
    int32_t d, h;
    float *w1, *b1, *w2, *b2; /* host copies */
    bool fail_warmup;
    char describe[512];
} testnet;

typedef struct testnet_plan {
    testnet *m;
    int32_t max_items;
    float *x, *y;             /* [max_items, D] */
    double *hid;              /* [H] */
    int32_t *job_of;          /* batch row -> job */
    int64_t *row_of;          /* batch row -> row in the job */
} testnet_plan;

typedef struct tn_opts {
    bool fail_device;
    int64_t delay_ms;
} tn_opts;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void tn_free(testnet *m) {
    if (!m) return;
    free(m->w1); free(m->b1); free(m->w2); free(m->b2);
    free(m);
}

static cdz_status copy_weight(const cdz_weights *w, const char *name, int32_t ndim, const int64_t *shape,
                              float *dst) {
    const cdz_weight_entry *e;
    if (cdz_weights_expect(w, name, CDZ_DTYPE_F32, ndim, shape, &e)) return cdz_error_prefix("testnet: ");
    memcpy(dst, e->data, e->nbytes);
    return CDZ_STATUS_OK;
}

static cdz_status tn_load(const cdz_weights *w, cdz_arena *arena, void **out) {
    (void)arena;
    testnet *m = calloc(1, sizeof *m);
    if (!m) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "testnet: no host memory");
    if (w) {
        const cdz_weight_entry *e = cdz_weights_find(w, "w1");
        if (!e || e->ndim != 2 || e->shape[0] < 1 || e->shape[1] < 1 || e->shape[0] > 4096 || e->shape[1] > 4096) {
            tn_free(m);
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "testnet: tensor 'w1' [H, D] missing or not 2-D (1..4096)");
        }
        m->h = (int32_t)e->shape[0];
        m->d = (int32_t)e->shape[1];
        const char *fw = cdz_weights_metadata_get(w, "fail_warmup");
        m->fail_warmup = fw && strcmp(fw, "1") == 0;
    } else {
        m->d = 8;
        m->h = 16;
    }
    size_t dh = (size_t)m->d * m->h;
    m->w1 = malloc(dh * sizeof(float));
    m->w2 = malloc(dh * sizeof(float));
    m->b1 = malloc((size_t)m->h * sizeof(float));
    m->b2 = malloc((size_t)m->d * sizeof(float));
    if (!m->w1 || !m->w2 || !m->b1 || !m->b2) {
        tn_free(m);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "testnet: no host memory");
    }
    if (w) {
        cdz_status st;
        if ((st = copy_weight(w, "w1", 2, (int64_t[]){m->h, m->d}, m->w1)) ||
            (st = copy_weight(w, "b1", 1, (int64_t[]){m->h}, m->b1)) ||
            (st = copy_weight(w, "w2", 2, (int64_t[]){m->d, m->h}, m->w2)) ||
            (st = copy_weight(w, "b2", 1, (int64_t[]){m->d}, m->b2))) {
            tn_free(m);
            return st;
        }
    } else {
        uint64_t seed = 0x7e57e7ULL;
        for (size_t i = 0; i < dh; i++) m->w1[i] = (float)((double)(splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
        for (size_t i = 0; i < dh; i++) m->w2[i] = (float)((double)(splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
        for (int32_t i = 0; i < m->h; i++) m->b1[i] = (float)((double)(splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
        for (int32_t i = 0; i < m->d; i++) m->b2[i] = (float)((double)(splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
    }
    snprintf(m->describe, sizeof m->describe,
             "{\"kind\":\"testnet\",\"inputs\":[{\"name\":\"x\",\"dtype\":\"f32\",\"shape\":[-1,%d]}],"
             "\"outputs\":[{\"name\":\"y\",\"dtype\":\"f32\",\"shape\":[-1,%d]}],\"hidden\":%d,"
             "\"options\":[\"fail_device\",\"delay_ms\"]}",
             m->d, m->d, m->h);
    *out = m;
    return CDZ_STATUS_OK;
}

static void tn_unload(void *model) { tn_free(model); }
static const char *tn_describe(void *model) { return ((testnet *)model)->describe; }

static cdz_status parse_opts(const char *text, tn_opts *o) {
    memset(o, 0, sizeof *o);
    if (!text || !text[0]) return CDZ_STATUS_OK;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "options: not a JSON object (%s)", root ? "" : je.text);
    }
    const char *key;
    json_t *v;
    cdz_status st = CDZ_STATUS_OK;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "fail_device") == 0 && json_is_boolean(v)) {
            o->fail_device = json_is_true(v);
        } else if (strcmp(key, "delay_ms") == 0 && json_is_integer(v) && json_integer_value(v) >= 0 &&
                   json_integer_value(v) <= 60000) {
            o->delay_ms = json_integer_value(v);
        } else {
            st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                               "option '%s': unknown or of the wrong type (testnet takes fail_device: bool, "
                               "delay_ms: 0..60000)", key);
            break;
        }
    }
    json_decref(root);
    return st;
}

static cdz_status tn_check(void *model, const cdz_job *job, int64_t *items) {
    testnet *m = model;
    if (job->n_inputs != 1 || strcmp(job->input_names[0], "x") != 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "testnet takes one input 'x' (got %d inputs%s%s)",
                             job->n_inputs, job->n_inputs ? ", the first named " : "",
                             job->n_inputs ? job->input_names[0] : "");
    const cdz_tensor *x = &job->inputs[0];
    char buf[128];
    if (x->dtype != CDZ_DTYPE_F32 || x->ndim != 2 || x->shape[1] != m->d || x->shape[0] < 1 || !x->data ||
        x->device.kind != CDZ_DEVICE_CPU || !cdz_tensor_is_contiguous(x))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "input 'x': expected contiguous host f32[rows >= 1, %d], got %s", m->d,
                             cdz_tensor_str(x, buf, sizeof buf));
    if (x->shape[0] > TESTNET_MAX_ROWS)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "input 'x': %lld rows, more than testnet's limit of %d",
                             (long long)x->shape[0], TESTNET_MAX_ROWS);
    for (int32_t i = 0; i < job->n_outputs; i++)
        if (strcmp(job->output_names[i], "y") != 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "output '%s': testnet has only output 'y'",
                                 job->output_names[i]);
    tn_opts o;
    cdz_status st = parse_opts(job->options_json, &o);
    if (st) return st;
    *items = x->shape[0];
    return CDZ_STATUS_OK;
}

static void tn_plan_destroy(void *plan) {
    testnet_plan *p = plan;
    if (!p) return;
    free(p->x); free(p->y); free(p->hid); free(p->job_of); free(p->row_of);
    free(p);
}

static cdz_status tn_plan_create(void *model, cdz_ctx *ctx, int32_t max_items, void **out, size_t *bytes) {
    (void)ctx;
    testnet *m = model;
    testnet_plan *p = calloc(1, sizeof *p);
    if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "testnet: no host memory for a plan");
    p->m = m;
    p->max_items = max_items;
    p->x = malloc((size_t)max_items * m->d * sizeof(float));
    p->y = malloc((size_t)max_items * m->d * sizeof(float));
    p->hid = malloc((size_t)m->h * sizeof(double));
    p->job_of = malloc((size_t)max_items * sizeof(int32_t));
    p->row_of = malloc((size_t)max_items * sizeof(int64_t));
    if (!p->x || !p->y || !p->hid || !p->job_of || !p->row_of) {
        tn_plan_destroy(p);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "testnet: no host memory for a plan of %d rows", max_items);
    }
    if (bytes) *bytes = 0; /* nothing from the arena */
    *out = p;
    return CDZ_STATUS_OK;
}

/* One batch: p->y[0..rows) = net(p->x[0..rows)). */
static void tn_forward(testnet_plan *p, int32_t rows) {
    const testnet *m = p->m;
    for (int32_t r = 0; r < rows; r++) {
        const float *x = p->x + (size_t)r * m->d;
        for (int32_t j = 0; j < m->h; j++) {
            double a = m->b1[j];
            for (int32_t k = 0; k < m->d; k++) a += (double)m->w1[(size_t)j * m->d + k] * x[k];
            p->hid[j] = 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
        }
        float *y = p->y + (size_t)r * m->d;
        for (int32_t i = 0; i < m->d; i++) {
            double a = m->b2[i];
            for (int32_t j = 0; j < m->h; j++) a += (double)m->w2[(size_t)i * m->h + j] * p->hid[j];
            y[i] = (float)a;
        }
    }
}

static cdz_status tn_warmup(void *plan, cdz_ctx *ctx) {
    (void)ctx;
    testnet_plan *p = plan;
    if (p->m->fail_warmup) return cdz_error_set(CDZ_STATUS_DEVICE, "testnet: warm-up failed (metadata fail_warmup)");
    memset(p->x, 0, (size_t)p->max_items * p->m->d * sizeof(float));
    tn_forward(p, p->max_items);
    return CDZ_STATUS_OK;
}

static void sleep_1ms(void) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
}

static void job_fail(cdz_job *job, cdz_status st, const char *msg) {
    job->status = st;
    job->error.code = st;
    job->error.retryable = cdz_status_retryable(st);
    snprintf(job->error.message, sizeof job->error.message, "%s", msg);
}

static void tn_flush(testnet_plan *p, float *const *outs, int32_t fill) {
    const int32_t d = p->m->d;
    tn_forward(p, fill);
    for (int32_t b = 0; b < fill; b++)
        memcpy(outs[p->job_of[b]] + (size_t)p->row_of[b] * d, p->y + (size_t)b * d, (size_t)d * sizeof(float));
}

static cdz_status tn_run(void *plan, cdz_ctx *ctx, cdz_job *const *jobs, int32_t n) {
    (void)ctx;
    testnet_plan *p = plan;
    const int32_t d = p->m->d;
    float *outs[n > 0 ? n : 1];
    for (int32_t i = 0; i < n; i++) {
        cdz_job *job = jobs[i];
        outs[i] = NULL;
        tn_opts o;
        if (parse_opts(job->options_json, &o)) {
            job_fail(job, CDZ_STATUS_INVALID_ARGUMENT, cdz_last_message());
            continue;
        }
        if (o.fail_device)
            return cdz_error_set(CDZ_STATUS_DEVICE, "testnet: injected device failure (option fail_device)");
        for (int64_t t = 0; t < o.delay_ms && job->status == CDZ_STATUS_OK; t++) {
            if (atomic_load(&job->cancelled)) job_fail(job, CDZ_STATUS_CANCELLED, "cancelled while running");
            else if (job->deadline_ns && cdz_now_ns() >= job->deadline_ns)
                job_fail(job, CDZ_STATUS_DEADLINE_EXCEEDED, "deadline exceeded while running");
            else sleep_1ms();
        }
        if (job->status != CDZ_STATUS_OK) continue;
        cdz_tensor *y;
        if (cdz_job_add_result(job, "y", CDZ_DTYPE_F32, 2, (int64_t[]){job->inputs[0].shape[0], d}, &y)) {
            job_fail(job, cdz_last_error()->code, cdz_last_message());
            continue;
        }
        outs[i] = y->data;
    }
    /* Pack rows of all live jobs into batches of max_items. */
    int32_t fill = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!outs[i]) continue;
        const float *x = jobs[i]->inputs[0].data;
        for (int64_t r = 0; r < jobs[i]->inputs[0].shape[0]; r++) {
            memcpy(p->x + (size_t)fill * d, x + (size_t)r * d, (size_t)d * sizeof(float));
            p->job_of[fill] = i;
            p->row_of[fill] = r;
            if (++fill == p->max_items) {
                tn_flush(p, outs, fill);
                fill = 0;
            }
        }
    }
    if (fill) tn_flush(p, outs, fill);
    return CDZ_STATUS_OK;
}

const cdz_backend cdz_backend_testnet = {
    .kind = "testnet",
    .load = tn_load,
    .unload = tn_unload,
    .describe = tn_describe,
    .check = tn_check,
    .plan_create = tn_plan_create,
    .plan_destroy = tn_plan_destroy,
    .run = tn_run,
    .warmup = tn_warmup,
};
