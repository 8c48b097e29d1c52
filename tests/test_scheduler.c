/*
 * test_scheduler.c: the device pool / queues / dynamic batching of runtime/scheduler.c, on
 * logical CPU devices ("cpu:0,cpu:1") with the testnet backend (models/testnet.c), whose
 * outputs are checked against a float64 reference computed here from the test's own weights.
 * One case runs the htdemucs backend on the tiny checkpoint against cdz_separate.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../runtime/scheduler.h"

#define D 5
#define H 7

static float g_w1[H * D], g_b1[H], g_w2[D * H], g_b2[D];
static char g_path[256], g_fail_path[256];

/* ------------------------------------------------------------------ helpers */
static void ref_forward(const float *x, int64_t rows, double *y) {
    for (int64_t r = 0; r < rows; r++) {
        double h[H];
        for (int j = 0; j < H; j++) {
            double a = g_b1[j];
            for (int k = 0; k < D; k++) a += (double)g_w1[j * D + k] * x[r * D + k];
            h[j] = a * 0.5 * (1.0 + erf(a * M_SQRT1_2));
        }
        for (int i = 0; i < D; i++) {
            double a = g_b2[i];
            for (int j = 0; j < H; j++) a += (double)g_w2[i * H + j] * h[j];
            y[r * D + i] = a;
        }
    }
}

static bool write_testnet(th_suite *s, const char *path, bool fail_warmup) {
    cdz_weight_entry e[4] = {
        {.name = "w1", .dtype = CDZ_DTYPE_F32, .ndim = 2, .shape = {H, D}, .nbytes = sizeof g_w1, .data = g_w1},
        {.name = "b1", .dtype = CDZ_DTYPE_F32, .ndim = 1, .shape = {H}, .nbytes = sizeof g_b1, .data = g_b1},
        {.name = "w2", .dtype = CDZ_DTYPE_F32, .ndim = 2, .shape = {D, H}, .nbytes = sizeof g_w2, .data = g_w2},
        {.name = "b2", .dtype = CDZ_DTYPE_F32, .ndim = 1, .shape = {D}, .nbytes = sizeof g_b2, .data = g_b2},
    };
    return th_ok(s, "write testnet weights",
                 cdz_weights_write(path, e, 4, fail_warmup ? "{\"model\":\"testnet\",\"fail_warmup\":\"1\"}"
                                                           : "{\"model\":\"testnet\"}"));
}

static cdz_sched *make_sched(th_suite *s, int ndev, int wpd, int max_batch, int queue_size, int64_t delay_us) {
    cdz_sched_config cfg = {0};
    cfg.n_devices = ndev;
    for (int d = 0; d < ndev; d++) cfg.devices[d] = (cdz_device){CDZ_DEVICE_CPU, d};
    cfg.workers_per_device = wpd;
    cfg.arena_bytes = 0;
    cfg.n_models = 2;
    snprintf(cfg.models[0].name, CDZ_JOB_MAX_NAME, "tn");
    cfg.models[0].path = g_path;
    cfg.models[0].max_batch = max_batch;
    cfg.models[0].queue_size = queue_size;
    cfg.models[0].max_queue_delay_us = delay_us;
    snprintf(cfg.models[1].name, CDZ_JOB_MAX_NAME, "builtin");
    cfg.models[1].path = "builtin:testnet";
    cfg.models[1].max_batch = 4;
    cfg.models[1].queue_size = 16;
    cdz_sched *sc = NULL;
    if (!th_ok(s, "create", cdz_sched_create(&cfg, &sc))) return NULL;
    return sc;
}

/* A job plus its input, and a shared tally of completions. */
typedef struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t done;
    int64_t by_status[CDZ_STATUS_COUNT_];
    /* stream order check */
    int64_t last_seq[8];
    int32_t stream_dev[8];
    int64_t order_errors, dev_errors;
} tally;

typedef struct tjob {
    cdz_job job;
    float *x;
    int64_t rows;
    int64_t seq;
    int32_t stream; /* 1..7 or 0 */
    tally *t;
} tjob;

static void tally_init(tally *t) {
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    for (int i = 0; i < 8; i++) { t->last_seq[i] = -1; t->stream_dev[i] = -1; }
}

static void on_done(cdz_job *job, void *user) {
    tjob *tj = user;
    tally *t = tj->t;
    pthread_mutex_lock(&t->mu);
    t->by_status[job->status]++;
    if (tj->stream) {
        if (tj->seq <= t->last_seq[tj->stream]) t->order_errors++;
        t->last_seq[tj->stream] = tj->seq;
        if (t->stream_dev[tj->stream] < 0) t->stream_dev[tj->stream] = job->device_index;
        else if (t->stream_dev[tj->stream] != job->device_index) t->dev_errors++;
    }
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void tally_wait(tally *t, int64_t n) {
    pthread_mutex_lock(&t->mu);
    while (t->done < n) pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

static void tjob_setup(tjob *tj, tally *t, uint64_t id, const char *model, float *x, int64_t rows) {
    memset(tj, 0, sizeof *tj);
    cdz_job_init(&tj->job, id, model, on_done, tj);
    tj->x = x;
    tj->rows = rows;
    tj->t = t;
    tj->job.n_inputs = 1;
    snprintf(tj->job.input_names[0], CDZ_JOB_MAX_NAME, "x");
    tj->job.inputs[0] = cdz_tensor_make(x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, rows, (int64_t)D);
}

static void fill_rand(th_suite *s, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)th_rand_uniform(s, -2, 2);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static cdz_status submit_retry(cdz_sched *sc, cdz_job *job) {
    for (;;) {
        cdz_status st = cdz_sched_submit(sc, job);
        if (st != CDZ_STATUS_BUSY) return st;
        sleep_ms(1);
    }
}

static void wait_running(cdz_sched *sc, int model, int n) {
    for (int i = 0; i < 5000; i++) {
        cdz_sched_stats st;
        cdz_sched_get_stats(sc, &st);
        if (st.models[model].running >= n) return;
        sleep_ms(1);
    }
}

/* ------------------------------------------------------------------ many jobs, many threads */
#define MT_THREADS 4
#define MT_JOBS 600

typedef struct mt_arg {
    cdz_sched *sc;
    tjob *jobs;
    int n;
    int64_t bad_submits;
} mt_arg;

static void *mt_submitter(void *p) {
    mt_arg *a = p;
    for (int i = 0; i < a->n; i++)
        if (submit_retry(a->sc, &a->jobs[i].job) != CDZ_STATUS_OK) a->bad_submits++;
    return NULL;
}

static void test_many(th_suite *s) {
    if (!th_begin(s, "sched-many", "threads=%d jobs=%d devices=cpu:0,cpu:1 workers=2 max_batch=16 delay=500us",
                  MT_THREADS, MT_THREADS * MT_JOBS)) return;
    cdz_sched *sc = make_sched(s, 2, 2, 16, 256, 500);
    if (!sc) { th_end(s); return; }
    const int n = MT_THREADS * MT_JOBS;
    tjob *jobs = th_alloc(s, sizeof(tjob) * n);
    tally t;
    tally_init(&t);
    for (int i = 0; i < n; i++) {
        int64_t rows = th_rand_int(s, 1, 5);
        float *x = th_alloc(s, sizeof(float) * rows * D);
        fill_rand(s, x, rows * D);
        tjob_setup(&jobs[i], &t, (uint64_t)i + 1, "tn", x, rows);
    }
    pthread_t th[MT_THREADS];
    mt_arg args[MT_THREADS];
    for (int k = 0; k < MT_THREADS; k++) {
        args[k] = (mt_arg){sc, jobs + k * MT_JOBS, MT_JOBS, 0};
        pthread_create(&th[k], NULL, mt_submitter, &args[k]);
    }
    int64_t bad = 0;
    for (int k = 0; k < MT_THREADS; k++) { pthread_join(th[k], NULL); bad += args[k].bad_submits; }
    th_check(s, "submits accepted", bad == 0, "%lld submits failed", (long long)bad);
    tally_wait(&t, n - bad);
    th_check(s, "all done OK", t.by_status[CDZ_STATUS_OK] == n, "%lld of %d OK", (long long)t.by_status[0], n);
    int64_t wrong = 0, maxb = 0, batched = 0, dev_seen[2] = {0, 0};
    double maxerr = 0;
    for (int i = 0; i < n; i++) {
        cdz_job *j = &jobs[i].job;
        if (j->status || j->n_results != 1 || strcmp(j->result_names[0], "y") ||
            j->results[0].shape[0] != jobs[i].rows) { wrong++; continue; }
        double y[5 * D];
        ref_forward(jobs[i].x, jobs[i].rows, y);
        const float *g = j->results[0].data;
        for (int64_t e = 0; e < jobs[i].rows * D; e++) {
            double err = fabs(g[e] - y[e]);
            if (!(err <= 1e-5)) wrong++;
            if (err > maxerr) maxerr = err;
        }
        if (j->batch_items > maxb) maxb = j->batch_items;
        if (j->batch_items > jobs[i].rows) batched++;
        if (j->device_index >= 0 && j->device_index < 2) dev_seen[j->device_index]++;
        cdz_job_free(j);
    }
    th_check(s, "each job gets its own rows (vs f64 reference, tol 1e-5: fp32 output of a double sum)",
             wrong == 0, "%lld wrong, max err %.3g", (long long)wrong, maxerr);
    th_check(s, "batches of several jobs formed", batched > 0, "%lld jobs shared a batch", (long long)batched);
    th_check(s, "max_batch respected", maxb <= 16, "largest batch %lld items", (long long)maxb);
    th_check(s, "both devices served", dev_seen[0] > 0 && dev_seen[1] > 0, "cpu:0 %lld, cpu:1 %lld",
             (long long)dev_seen[0], (long long)dev_seen[1]);
    th_ok(s, "drain", cdz_sched_drain(sc, 1000000000LL));
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ delay and batch size */
static void test_delay(th_suite *s) {
    if (!th_begin(s, "sched-delay", "1 worker, max_batch=8, max_queue_delay=50ms")) return;
    cdz_sched *sc = make_sched(s, 1, 1, 8, 64, 50000);
    if (!sc) { th_end(s); return; }
    tally t;
    tally_init(&t);
    tjob *jobs = th_alloc(s, sizeof(tjob) * 9);
    float *x = th_alloc(s, sizeof(float) * D * 9);
    fill_rand(s, x, D * 9);
    tjob_setup(&jobs[0], &t, 1, "tn", x, 1);
    th_ok(s, "submit one", cdz_sched_submit(sc, &jobs[0].job));
    tally_wait(&t, 1);
    double waited = (jobs[0].job.t_start_ns - jobs[0].job.t_submit_ns) / 1e6;
    th_check(s, "lone job waits max_queue_delay", waited >= 49 && waited < 1000, "waited %.1f ms", waited);
    th_check(s, "lone job batch of 1", jobs[0].job.batch_items == 1, "batch %d", jobs[0].job.batch_items);
    for (int i = 1; i <= 8; i++) {
        tjob_setup(&jobs[i], &t, (uint64_t)i + 1, "tn", x + i * D, 1);
        th_ok(s, "submit", cdz_sched_submit(sc, &jobs[i].job));
    }
    tally_wait(&t, 9);
    int full = 0;
    for (int i = 1; i <= 8; i++) full += jobs[i].job.batch_items == 8;
    double w1 = (jobs[1].job.t_start_ns - jobs[1].job.t_submit_ns) / 1e6;
    th_check(s, "full batch runs without waiting the delay", full == 8 && w1 < 45, "%d of 8 in a batch of 8, first waited %.1f ms", full, w1);
    for (int i = 0; i <= 8; i++) cdz_job_free(&jobs[i].job);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ submit errors */
static void test_errors(th_suite *s) {
    if (!th_begin(s, "sched-errors", "validation at submit")) return;
    cdz_sched *sc = make_sched(s, 1, 1, 8, 4, 0);
    if (!sc) { th_end(s); return; }
    tally t;
    tally_init(&t);
    float x[3 * D] = {0.5f};
    tjob j;
    tjob_setup(&j, &t, 1, "nope", x, 3);
    th_expect_status(s, "unknown model", cdz_sched_submit(sc, &j.job), CDZ_STATUS_UNKNOWN_MODEL);
    tjob_setup(&j, &t, 1, "tn", x, 3);
    snprintf(j.job.input_names[0], CDZ_JOB_MAX_NAME, "z");
    th_expect_status(s, "wrong input name", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "message names the input", strstr(cdz_last_message(), "'x'") != NULL, "%s", cdz_last_message());
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.inputs[0].dtype = CDZ_DTYPE_F16;
    th_expect_status(s, "wrong dtype", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.inputs[0] = cdz_tensor_make(x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, (int64_t)D, (int64_t)3);
    th_expect_status(s, "wrong shape", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "message names the input", strstr(cdz_last_message(), "input 'x'") != NULL, "%s", cdz_last_message());
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.options_json = "{\"shiftz\":1}";
    th_expect_status(s, "unknown option", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "message names the option", strstr(cdz_last_message(), "shiftz") != NULL, "%s", cdz_last_message());
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.n_outputs = 1;
    snprintf(j.job.output_names[0], CDZ_JOB_MAX_NAME, "logits");
    th_expect_status(s, "unknown output", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "message names the output", strstr(cdz_last_message(), "logits") != NULL, "%s", cdz_last_message());
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.inputs[0].shape[0] = 2000000; /* descriptor only: check() never reads it */
    th_expect_status(s, "too large", cdz_sched_submit(sc, &j.job), CDZ_STATUS_TOO_LARGE);
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.deadline_ns = cdz_now_ns() - 1;
    th_expect_status(s, "deadline already past", cdz_sched_submit(sc, &j.job), CDZ_STATUS_DEADLINE_EXCEEDED);
    tjob_setup(&j, &t, 1, "tn", x, 3);
    j.job.priority = 9;
    th_expect_status(s, "bad priority", cdz_sched_submit(sc, &j.job), CDZ_STATUS_INVALID_ARGUMENT);
    const char *desc = cdz_sched_describe_model(sc, "builtin");
    th_check(s, "describe builtin", desc && strstr(desc, "testnet") && strstr(desc, "\"x\""), "%s", desc ? desc : "NULL");
    th_check(s, "describe unknown is NULL", cdz_sched_describe_model(sc, "nope") == NULL, " ");

    /* Queue full -> BUSY, done not called for it. */
    tjob busy[6];
    tjob_setup(&busy[0], &t, 10, "tn", x, 1);
    busy[0].job.options_json = "{\"delay_ms\":200}";
    th_ok(s, "submit slow", cdz_sched_submit(sc, &busy[0].job));
    wait_running(sc, 0, 1);
    int ok = 0;
    for (int i = 1; i <= 4; i++) {
        tjob_setup(&busy[i], &t, 10 + i, "tn", x, 1);
        ok += cdz_sched_submit(sc, &busy[i].job) == CDZ_STATUS_OK;
    }
    th_check(s, "queue_size jobs accepted", ok == 4, "%d of 4", ok);
    tjob_setup(&busy[5], &t, 15, "tn", x, 1);
    th_expect_status(s, "queue full", cdz_sched_submit(sc, &busy[5].job), CDZ_STATUS_BUSY);
    th_check(s, "BUSY is retryable", cdz_last_error()->retryable, " ");
    tally_wait(&t, 5);
    sleep_ms(20);
    th_check(s, "done not called for refused jobs", t.done == 5 && t.by_status[CDZ_STATUS_OK] == 5, "done %lld",
             (long long)t.done);
    for (int i = 0; i <= 4; i++) cdz_job_free(&busy[i].job);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ deadline and cancel */
static void test_deadline_cancel(th_suite *s) {
    if (!th_begin(s, "sched-cancel", "deadline in queue, cancel queued and running")) return;
    cdz_sched *sc = make_sched(s, 1, 1, 8, 16, 0);
    if (!sc) { th_end(s); return; }
    tally t;
    tally_init(&t);
    float x[D] = {1.f, -1.f, 0.5f, 0.25f, 2.f};
    tjob j[4];
    tjob_setup(&j[0], &t, 1, "tn", x, 1);
    j[0].job.options_json = "{\"delay_ms\":400}";
    th_ok(s, "submit slow", cdz_sched_submit(sc, &j[0].job));
    wait_running(sc, 0, 1);
    tjob_setup(&j[1], &t, 2, "tn", x, 1);
    j[1].job.deadline_ns = cdz_now_ns() + 50000000LL;
    th_ok(s, "submit with 50 ms deadline", cdz_sched_submit(sc, &j[1].job));
    tjob_setup(&j[2], &t, 3, "tn", x, 1);
    th_ok(s, "submit to cancel", cdz_sched_submit(sc, &j[2].job));
    cdz_sched_cancel(sc, &j[2].job);
    tally_wait(&t, 2);
    pthread_mutex_lock(&t.mu);
    pthread_mutex_unlock(&t.mu);
    th_expect_status(s, "cancelled while queued", j[2].job.status, CDZ_STATUS_CANCELLED);
    sleep_ms(150);
    th_expect_status(s, "deadline expired in queue", j[1].job.status, CDZ_STATUS_DEADLINE_EXCEEDED);
    double late = (j[1].job.t_end_ns - j[1].job.deadline_ns) / 1e6;
    th_check(s, "expired job answered promptly (before the busy worker frees)", j[1].job.t_end_ns && late < 200,
             "answered %.1f ms after its deadline", late);
    tally_wait(&t, 3);
    th_expect_status(s, "slow job OK", j[0].job.status, CDZ_STATUS_OK);
    /* cancel a running job */
    tjob_setup(&j[3], &t, 4, "tn", x, 1);
    j[3].job.options_json = "{\"delay_ms\":5000}";
    th_ok(s, "submit long", cdz_sched_submit(sc, &j[3].job));
    wait_running(sc, 0, 1);
    int64_t t0 = cdz_now_ns();
    cdz_sched_cancel(sc, &j[3].job);
    tally_wait(&t, 4);
    th_expect_status(s, "cancelled while running", j[3].job.status, CDZ_STATUS_CANCELLED);
    th_check(s, "cancel took effect within 1 s", cdz_now_ns() - t0 < 1000000000LL, " ");
    th_check(s, "no results on error", j[3].job.n_results == 0, "%d", j[3].job.n_results);
    cdz_sched_cancel(sc, &j[3].job); /* finished: a no-op */
    cdz_job_free(&j[0].job);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ stream affinity */
static void test_streams(th_suite *s) {
    if (!th_begin(s, "sched-streams", "5 streams x 200 jobs, 2 devices x 2 workers")) return;
    cdz_sched *sc = make_sched(s, 2, 2, 8, 2048, 200);
    if (!sc) { th_end(s); return; }
    tally t;
    tally_init(&t);
    const int n = 1000;
    tjob *jobs = th_alloc(s, sizeof(tjob) * n);
    float *x = th_alloc(s, sizeof(float) * D * n);
    fill_rand(s, x, D * n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        tjob_setup(&jobs[i], &t, (uint64_t)i + 1, "tn", x + i * D, 1);
        jobs[i].stream = 1 + i % 5;
        jobs[i].seq = i;
        jobs[i].job.stream_id = 1000 + (uint64_t)jobs[i].stream;
        bad += submit_retry(sc, &jobs[i].job) != CDZ_STATUS_OK;
    }
    tally_wait(&t, n - bad);
    th_check(s, "all OK", t.by_status[0] == n, "%lld of %d", (long long)t.by_status[0], n);
    th_check(s, "each stream in submission order", t.order_errors == 0, "%lld out of order", (long long)t.order_errors);
    th_check(s, "each stream on one device", t.dev_errors == 0, "%lld moved", (long long)t.dev_errors);
    for (int i = 0; i < n; i++) cdz_job_free(&jobs[i].job);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ drain */
static void test_drain(th_suite *s) {
    if (!th_begin(s, "sched-drain", "graceful, then with a timeout")) return;
    tally t;
    tally_init(&t);
    float x[D] = {1, 2, 3, 4, 5};
    cdz_sched *sc = make_sched(s, 2, 1, 4, 512, 0);
    if (!sc) { th_end(s); return; }
    tjob *jobs = th_alloc(s, sizeof(tjob) * 200);
    for (int i = 0; i < 200; i++) {
        tjob_setup(&jobs[i], &t, (uint64_t)i + 1, "tn", x, 1);
        jobs[i].job.options_json = "{\"delay_ms\":1}";
        th_check(s, "submit", cdz_sched_submit(sc, &jobs[i].job) == CDZ_STATUS_OK, "%s", cdz_last_message());
    }
    th_ok(s, "drain completes in time", cdz_sched_drain(sc, 30000000000LL));
    th_check(s, "every queued job completed", t.done == 200 && t.by_status[0] == 200, "done %lld ok %lld",
             (long long)t.done, (long long)t.by_status[0]);
    tjob late;
    tjob_setup(&late, &t, 999, "tn", x, 1);
    th_expect_status(s, "submit after drain", cdz_sched_submit(sc, &late.job), CDZ_STATUS_SHUTTING_DOWN);
    for (int i = 0; i < 200; i++) cdz_job_free(&jobs[i].job);
    cdz_sched_destroy(sc);

    tally_init(&t);
    sc = make_sched(s, 1, 1, 4, 512, 0);
    if (!sc) { th_end(s); return; }
    int sent = 0;
    for (int i = 0; i < 20; i++) {
        tjob_setup(&jobs[i], &t, (uint64_t)i + 1, "tn", x, 1);
        jobs[i].job.options_json = "{\"delay_ms\":100}";
        sent += cdz_sched_submit(sc, &jobs[i].job) == CDZ_STATUS_OK;
    }
    wait_running(sc, 0, 1);
    int64_t t0 = cdz_now_ns();
    th_expect_status(s, "drain times out", cdz_sched_drain(sc, 50000000LL), CDZ_STATUS_SHUTTING_DOWN);
    double took = (cdz_now_ns() - t0) / 1e6;
    th_check(s, "none lost: done == sent", t.done == sent && sent == 20, "sent %d done %lld", sent, (long long)t.done);
    th_check(s, "the rest failed SHUTTING_DOWN", t.by_status[CDZ_STATUS_SHUTTING_DOWN] >= 19 &&
             t.by_status[0] + t.by_status[CDZ_STATUS_SHUTTING_DOWN] == 20, "ok %lld shutting down %lld",
             (long long)t.by_status[0], (long long)t.by_status[CDZ_STATUS_SHUTTING_DOWN]);
    th_check(s, "drain returned promptly", took < 1000, "%.1f ms", took);
    for (int i = 0; i < 20; i++) cdz_job_free(&jobs[i].job);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ failing device */
static void test_device_failure(th_suite *s) {
    if (!th_begin(s, "sched-device-fail", "fail_device on one of 2 devices")) return;
    cdz_sched *sc = make_sched(s, 2, 1, 4, 512, 0);
    if (!sc) { th_end(s); return; }
    tally t;
    tally_init(&t);
    float x[D] = {1, 2, 3, 4, 5};
    tjob f;
    tjob_setup(&f, &t, 1, "tn", x, 1);
    f.job.options_json = "{\"fail_device\":true}";
    th_ok(s, "submit failing", cdz_sched_submit(sc, &f.job));
    tally_wait(&t, 1);
    th_expect_status(s, "job fails with DEVICE", f.job.status, CDZ_STATUS_DEVICE);
    th_check(s, "DEVICE is retryable", f.job.error.retryable, "%s", f.job.error.message);
    cdz_sched_stats st;
    cdz_sched_get_stats(sc, &st);
    int bad_dev = f.job.device_index;
    th_check(s, "that device is out of the pool", bad_dev >= 0 && bad_dev < 2 && !st.devices[bad_dev].healthy &&
             st.devices[1 - bad_dev].healthy, "device %d", bad_dev);
    tjob *jobs = th_alloc(s, sizeof(tjob) * 200);
    int on_bad = 0;
    for (int i = 0; i < 200; i++) {
        tjob_setup(&jobs[i], &t, (uint64_t)i + 2, "tn", x, 1);
        th_check(s, "submit", submit_retry(sc, &jobs[i].job) == CDZ_STATUS_OK, "%s", cdz_last_message());
    }
    tally_wait(&t, 201);
    for (int i = 0; i < 200; i++) { on_bad += jobs[i].job.device_index == bad_dev; cdz_job_free(&jobs[i].job); }
    th_check(s, "the other device keeps serving", t.by_status[0] == 200 && on_bad == 0, "ok %lld on failed device %d",
             (long long)t.by_status[0], on_bad);
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ start-up failures */
static void test_startup(th_suite *s) {
    if (!th_begin(s, "sched-startup", "warm-up failure, missing file")) return;
    cdz_sched_config cfg = {0};
    cfg.n_devices = 2;
    cfg.devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
    cfg.devices[1] = (cdz_device){CDZ_DEVICE_CPU, 1};
    cfg.workers_per_device = 1;
    cfg.n_models = 1;
    snprintf(cfg.models[0].name, CDZ_JOB_MAX_NAME, "broken-net");
    cfg.models[0].path = g_fail_path;
    cfg.models[0].max_batch = 4;
    cfg.models[0].queue_size = 4;
    cdz_sched *sc = NULL;
    cdz_status st = cdz_sched_create(&cfg, &sc);
    th_check(s, "warm-up failure fails create", st != CDZ_STATUS_OK && sc == NULL, "%s", cdz_status_name(st));
    th_check(s, "message names the model and warm-up", strstr(cdz_last_message(), "broken-net") &&
             strstr(cdz_last_message(), "warm-up"), "%s", cdz_last_message());
    cfg.models[0].path = "/nonexistent/x.safetensors";
    st = cdz_sched_create(&cfg, &sc);
    th_check(s, "missing file fails create naming the model", st != CDZ_STATUS_OK &&
             strstr(cdz_last_message(), "broken-net"), "%s", cdz_last_message());
    th_end(s);
}

/* ------------------------------------------------------------------ soak: host memory */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_soak(th_suite *s) {
    if (!th_begin(s, "sched-soak", "20000 jobs in waves of 500, RSS before/after")) return;
    cdz_sched *sc = make_sched(s, 2, 2, 16, 1024, 100);
    if (!sc) { th_end(s); return; }
    const int wave = 500, waves = 40;
    tjob *jobs = th_alloc(s, sizeof(tjob) * wave);
    float *x = th_alloc(s, sizeof(float) * D * 4 * wave);
    fill_rand(s, x, D * 4 * wave);
    long rss0 = 0;
    int64_t ok = 0, sent = 0;
    for (int w = 0; w < waves; w++) {
        tally t;
        tally_init(&t);
        int n = 0;
        for (int i = 0; i < wave; i++) {
            tjob_setup(&jobs[i], &t, (uint64_t)(w * wave + i + 1), "tn", x + i * 4 * D, 1 + i % 4);
            n += submit_retry(sc, &jobs[i].job) == CDZ_STATUS_OK;
        }
        sent += n;
        tally_wait(&t, n);
        ok += t.by_status[0];
        for (int i = 0; i < wave; i++) cdz_job_free(&jobs[i].job);
        pthread_mutex_destroy(&t.mu);
        pthread_cond_destroy(&t.cv);
        if (w == 3) rss0 = rss_kib();
    }
    long rss1 = rss_kib();
    th_check(s, "all OK", ok == sent && sent == wave * waves, "sent %lld ok %lld", (long long)sent, (long long)ok);
#if defined(__SANITIZE_ADDRESS__)
    th_skip(s, "host memory stable", "ASan's quarantine keeps freed memory resident");
    (void)rss0; (void)rss1;
#else
    th_check(s, "host memory stable (RSS growth < 2 MiB after wave 4)", rss1 - rss0 < 2048, "RSS %ld -> %ld KiB", rss0,
             rss1);
#endif
    cdz_sched_destroy(sc);
    th_end(s);
}

/* ------------------------------------------------------------------ htdemucs backend */
typedef struct one_done { pthread_mutex_t mu; pthread_cond_t cv; bool done; } one_done;
static void on_one(cdz_job *job, void *user) {
    (void)job;
    one_done *o = user;
    pthread_mutex_lock(&o->mu);
    o->done = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void test_htdemucs(th_suite *s) {
    if (!th_begin(s, "sched-htdemucs", "tiny checkpoint, shifts=1 overlap=0.25 seed=3 vs cdz_separate")) return;
    const char *path = getenv("CDZ_HTDEMUCS_TINY_WEIGHTS");
    char tmp[256];
    if (!path || access(path, R_OK) != 0) {
        snprintf(tmp, sizeof tmp, "/tmp/cdz-sched-tiny-%d.safetensors", (int)getpid());
        if (cdz_htdemucs_write_random(tmp, "tiny", 7) != CDZ_STATUS_OK) {
            th_skip(s, "htdemucs", "no tiny checkpoint (CDZ_HTDEMUCS_TINY_WEIGHTS) and cannot write one");
            th_end(s);
            return;
        }
        printf("  (CDZ_HTDEMUCS_TINY_WEIGHTS absent: using random tiny weights %s)\n", tmp);
        path = tmp;
    }
    cdz_sched_config cfg = {0};
    cfg.n_devices = 1;
    cfg.devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
    cfg.workers_per_device = 1;
    cfg.n_models = 1;
    snprintf(cfg.models[0].name, CDZ_JOB_MAX_NAME, "demucs");
    cfg.models[0].path = path;
    cfg.models[0].max_batch = 2;
    cfg.models[0].queue_size = 4;
    cdz_sched *sc = NULL;
    if (!th_ok(s, "create", cdz_sched_create(&cfg, &sc))) { if (path == tmp) unlink(tmp); th_end(s); return; }
    cdz_weights *w = NULL;
    cdz_htdemucs *m = NULL;
    cdz_separator *sep = NULL;
    th_ok(s, "open", cdz_weights_open(path, &w));
    cdz_arena *arena = NULL;
    th_ok(s, "arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, 0, &arena));
    th_ok(s, "load", cdz_htdemucs_load(w, arena, &m));
    if (!m) { cdz_arena_destroy(arena); cdz_weights_close(w); cdz_sched_destroy(sc); th_end(s); return; }
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(m, &info);
    const int64_t N = 9000;
    const int C = info.audio_channels;
    cdz_tensor mix = th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){C, N}, -0.5f, 0.5f);
    one_done od = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    cdz_job job;
    cdz_job_init(&job, 1, "demucs", on_one, &od);
    job.n_inputs = 1;
    snprintf(job.input_names[0], CDZ_JOB_MAX_NAME, "mix");
    job.inputs[0] = mix;
    job.n_outputs = 2;
    snprintf(job.output_names[0], CDZ_JOB_MAX_NAME, "%s", info.source_names[2]);
    snprintf(job.output_names[1], CDZ_JOB_MAX_NAME, "%s", info.source_names[0]);
    job.options_json = "{\"shifts\":1,\"overlap\":0.25,\"seed\":3}";
    th_ok(s, "submit", cdz_sched_submit(sc, &job));
    pthread_mutex_lock(&od.mu);
    while (!od.done) pthread_cond_wait(&od.cv, &od.mu);
    pthread_mutex_unlock(&od.mu);
    th_ok(s, "job status", job.status);
    th_check(s, "the two requested outputs, in order", job.n_results == 2 &&
             !strcmp(job.result_names[0], info.source_names[2]) && !strcmp(job.result_names[1], info.source_names[0]),
             "%d results", job.n_results);
    th_ok(s, "separator", cdz_separator_create(m, s->cpu, 2, &sep));
    cdz_separate_options o;
    cdz_separate_options_default(&o);
    o.shifts = 1; o.overlap = 0.25; o.seed = 3;
    float *stems[CDZ_HTDEMUCS_MAX_SOURCES] = {0};
    for (int k = 0; k < info.sources; k++) stems[k] = th_alloc(s, sizeof(float) * C * N);
    cdz_audio a = {.data = mix.data, .channels = C, .samplerate = info.samplerate, .frames = N};
    th_ok(s, "cdz_separate", cdz_separate(sep, &o, &a, stems));
    if (job.status == CDZ_STATUS_OK && job.n_results == 2) {
        th_compare_bytes(s, "output 0 == cdz_separate (same code, same batch: bit-exact)", job.results[0].data, stems[2],
                         sizeof(float) * C * N);
        th_compare_bytes(s, "output 1 == cdz_separate", job.results[1].data, stems[0], sizeof(float) * C * N);
    }
    cdz_job_free(&job);
    cdz_separator_destroy(sep);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    cdz_sched_destroy(sc);
    if (path == tmp) unlink(tmp);
    th_end(s);
}

/* ------------------------------------------------------------------ htdemucs: segments of different jobs in one batch */
#define XB_JOBS 4
typedef struct xb_cancel { cdz_job *job; int64_t at_ns; } xb_cancel;
static void *xb_canceller(void *p) {
    xb_cancel *c = p;
    while (cdz_now_ns() < c->at_ns) sleep_ms(1);
    atomic_store(&c->job->cancelled, true);
    return NULL;
}

/* The work items hd_check counts (tests the scheduler's batch_items against it). */
static int64_t xb_items(const cdz_htdemucs_info *in, int64_t n, int shifts, double overlap) {
    const int64_t seg = in->segment_samples, stride = (int64_t)((1.0 - overlap) * (double)seg);
    const int64_t view = n + (shifts ? in->samplerate / 2 : 0);
    return (int64_t)in->members * (shifts ? shifts : 1) * ((view + stride - 1) / stride);
}

static void test_htdemucs_xbatch(th_suite *s) {
    if (!th_begin(s, "sched-htdemucs-xbatch", "segments of 3 jobs share batches; bit-exact vs cdz_separate; cancel/deadline between batches")) return;
    /* the tiny preset at 8 kHz with 0.25 s segments: every forward is cheap on one core */
    char path[256];
    snprintf(path, sizeof path, "/tmp/cdz-sched-xb-%d.safetensors", (int)getpid());
    const char *spec = "{\"segment\":[1,4],\"samplerate\":8000,\"channels\":16,\"nfft\":512,\"depth\":3,"
                       "\"dconv_mode\":3,\"bottom_channels\":32,\"t_layers\":3,\"t_heads\":2}";
    if (!th_ok(s, "write random 8 kHz tiny model", cdz_htdemucs_write_random(path, spec, 11))) { th_end(s); return; }
    cdz_weights *w = NULL;
    cdz_htdemucs *m = NULL;
    cdz_arena *arena = NULL;
    th_ok(s, "open", cdz_weights_open(path, &w));
    th_ok(s, "arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, 0, &arena));
    if (w && arena) th_ok(s, "load", cdz_htdemucs_load(w, arena, &m));
    if (!m) { cdz_arena_destroy(arena); cdz_weights_close(w); unlink(path); th_end(s); return; }
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(m, &info);
    const int C = info.audio_channels, S = info.sources;
    const int64_t seg = info.segment_samples;
    /* A shorter than a segment; B, C several segments; D = C again (the deadline run) */
    const int64_t len[XB_JOBS] = {seg / 2 + 3, 3 * seg + 17, 2 * seg + 5, 2 * seg + 5};
    const int shifts[XB_JOBS] = {0, 1, 1, 1};
    const double overlap[XB_JOBS] = {0.25, 0.5, 0.25, 0.25};
    const int seed[XB_JOBS] = {1, 5, 9, 9};
    char opts[XB_JOBS][128];
    cdz_tensor mix[XB_JOBS];
    float *ref[XB_JOBS][CDZ_HTDEMUCS_MAX_SOURCES], *ref2[XB_JOBS][CDZ_HTDEMUCS_MAX_SOURCES];
    int64_t items[XB_JOBS], total = 0;
    for (int j = 0; j < XB_JOBS; j++) {
        snprintf(opts[j], sizeof opts[j], "{\"shifts\":%d,\"overlap\":%g,\"seed\":%d}", shifts[j], overlap[j], seed[j]);
        mix[j] = j == 3 ? mix[2] : th_rand(s, CDZ_DTYPE_F32, 2, (int64_t[]){C, len[j]}, -0.5f, 0.5f);
        items[j] = xb_items(&info, len[j], shifts[j], overlap[j]);
        if (j < 3) total += items[j];
    }
    /* references: each job alone through cdz_separate, with the plan batch of each part below */
    int64_t t_fwd = 0;
    for (int part = 0; part < 2; part++) {
        cdz_separator *sep = NULL;
        th_ok(s, "separator", cdz_separator_create(m, s->cpu, part ? 2 : (int32_t)total, &sep));
        for (int j = 0; j < 3 && sep; j += part ? 2 : 1) {
            cdz_separate_options o;
            cdz_separate_options_default(&o);
            o.shifts = shifts[j]; o.overlap = overlap[j]; o.seed = (uint64_t)seed[j];
            float **r = part ? ref2[j] : ref[j];
            for (int k = 0; k < S; k++) r[k] = th_alloc(s, sizeof(float) * C * len[j]);
            cdz_audio a = {.data = mix[j].data, .channels = C, .samplerate = info.samplerate, .frames = len[j]};
            const int64_t t0 = cdz_now_ns();
            th_ok(s, "cdz_separate (reference)", cdz_separate(sep, &o, &a, r));
            if (j == 0 && part == 0) t_fwd = cdz_now_ns() - t0; /* one segment: one forward of one item */
        }
        cdz_separator_destroy(sep);
    }

    /* 1. through the scheduler: max_batch = the 3 jobs' items, so one run() takes them together */
    cdz_sched_config cfg = {0};
    cfg.n_devices = 1;
    cfg.devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
    cfg.workers_per_device = 1;
    cfg.n_models = 1;
    snprintf(cfg.models[0].name, CDZ_JOB_MAX_NAME, "demucs");
    cfg.models[0].path = path;
    cfg.models[0].max_batch = (int32_t)total;
    cfg.models[0].queue_size = 8;
    cfg.models[0].max_queue_delay_us = 10 * 1000 * 1000; /* wait for a full batch */
    cdz_sched *sc = NULL;
    if (th_ok(s, "create", cdz_sched_create(&cfg, &sc))) {
        tally t;
        tally_init(&t);
        tjob tj[3];
        for (int j = 0; j < 3; j++) {
            memset(&tj[j], 0, sizeof tj[j]);
            tj[j].t = &t;
            cdz_job_init(&tj[j].job, 100 + (uint64_t)j, "demucs", on_done, &tj[j]);
            tj[j].job.n_inputs = 1;
            snprintf(tj[j].job.input_names[0], CDZ_JOB_MAX_NAME, "mix");
            tj[j].job.inputs[0] = mix[j];
            tj[j].job.options_json = opts[j];
            th_ok(s, "submit", cdz_sched_submit(sc, &tj[j].job));
        }
        tally_wait(&t, 3);
        for (int j = 0; j < 3; j++) {
            cdz_job *job = &tj[j].job;
            th_ok(s, "job status", job->status);
            th_check(s, "batch_items: the 3 jobs ran in one batch", job->batch_items == total && total > items[j],
                     "job %d: batch_items %d, its own items %lld, all %lld", j, job->batch_items,
                     (long long)items[j], (long long)total);
            th_check(s, "all sources returned", job->n_results == S, "%d results", job->n_results);
            for (int k = 0; k < S && k < job->n_results && job->status == CDZ_STATUS_OK; k++)
                th_compare_bytes(s, "mixed batches == cdz_separate alone (bit-exact)", job->results[k].data,
                                 ref[j][k], sizeof(float) * C * len[j]);
            cdz_job_free(job);
        }
        cdz_sched_destroy(sc);
    }

    /* 2. the backend's run() directly with a plan of 2 items: many batches mixing jobs; job 1 is
     * cancelled and job 3's deadline passes during the first batch; 0 and 2 complete exactly */
    const cdz_backend *be = cdz_backend_find("htdemucs");
    void *model = NULL, *plan = NULL;
    th_ok(s, "backend load", be->load(w, arena, &model));
    if (model) th_ok(s, "backend plan", be->plan_create(model, s->cpu, 2, &plan, NULL));
    if (plan) {
        cdz_job jobs[XB_JOBS];
        cdz_job *jp[XB_JOBS];
        for (int j = 0; j < XB_JOBS; j++) {
            int64_t it;
            cdz_job_init(&jobs[j], 200 + (uint64_t)j, "demucs", NULL, NULL);
            jobs[j].n_inputs = 1;
            snprintf(jobs[j].input_names[0], CDZ_JOB_MAX_NAME, "mix");
            jobs[j].inputs[0] = mix[j];
            jobs[j].options_json = opts[j];
            th_ok(s, "backend check", be->check(model, &jobs[j], &it));
            jp[j] = &jobs[j];
        }
        /* the first batch (2 items) takes about 2 t_fwd: stop jobs 1 and 3 half a forward in */
        const int64_t t0 = cdz_now_ns(), at = t0 + (t_fwd > 0 ? t_fwd / 2 : 1000000);
        jobs[3].deadline_ns = at;
        xb_cancel xc = {&jobs[1], at};
        pthread_t th;
        pthread_create(&th, NULL, xb_canceller, &xc);
        th_ok(s, "backend run", be->run(plan, s->cpu, jp, XB_JOBS));
        pthread_join(th, NULL);
        const int64_t t_run = cdz_now_ns() - t0;
        th_expect_status(s, "job 1 cancelled while it ran", jobs[1].status, CDZ_STATUS_CANCELLED);
        th_expect_status(s, "job 3 past its deadline while it ran", jobs[3].status, CDZ_STATUS_DEADLINE_EXCEEDED);
        th_check(s, "messages say while it ran", strstr(jobs[1].error.message, "while it ran") &&
                 strstr(jobs[3].error.message, "while it ran"), "'%s' / '%s'", jobs[1].error.message,
                 jobs[3].error.message);
        for (int j = 0; j < 3; j += 2) {
            th_ok(s, "job status", jobs[j].status);
            for (int k = 0; k < S && k < jobs[j].n_results && jobs[j].status == CDZ_STATUS_OK; k++)
                th_compare_bytes(s, "2-item batches with a job dropped == cdz_separate alone", jobs[j].results[k].data,
                                 ref2[j][k], sizeof(float) * C * len[j]);
        }
        /* informational (timing is too noisy on shared CI cores to assert): dropped jobs stop early */
        printf("  (run of 4 jobs with 2 dropped: %.3f s; one forward %.3f s; %lld items if none were dropped)\n",
               t_run * 1e-9, t_fwd * 1e-9, (long long)(items[0] + items[1] + items[2] + items[3]));
        for (int j = 0; j < XB_JOBS; j++) cdz_job_free(&jobs[j]);
        be->plan_destroy(plan);
    }
    if (model) be->unload(model);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    unlink(path);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_scheduler", argc, argv)) return 1;
    if (th_begin(&s, "sched-setup", "testnet weights D=%d H=%d", D, H)) {
        for (int i = 0; i < H * D; i++) { g_w1[i] = (float)th_rand_uniform(&s, -0.6, 0.6); g_w2[i] = (float)th_rand_uniform(&s, -0.6, 0.6); }
        for (int i = 0; i < H; i++) g_b1[i] = (float)th_rand_uniform(&s, -0.3, 0.3);
        for (int i = 0; i < D; i++) g_b2[i] = (float)th_rand_uniform(&s, -0.3, 0.3);
        snprintf(g_path, sizeof g_path, "/tmp/cdz-sched-testnet-%d.safetensors", (int)getpid());
        snprintf(g_fail_path, sizeof g_fail_path, "/tmp/cdz-sched-testnet-fail-%d.safetensors", (int)getpid());
        write_testnet(&s, g_path, false);
        write_testnet(&s, g_fail_path, true);
        th_end(&s);
    }
    test_many(&s);
    test_delay(&s);
    test_errors(&s);
    test_deadline_cancel(&s);
    test_streams(&s);
    test_drain(&s);
    test_device_failure(&s);
    test_startup(&s);
    test_soak(&s);
    test_htdemucs(&s);
    test_htdemucs_xbatch(&s);
    unlink(g_path);
    unlink(g_fail_path);
    return th_finish(&s);
}
