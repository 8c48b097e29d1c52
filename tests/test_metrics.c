/*
 * test_metrics: the metrics registry and the admin HTTP port (server/metrics.c, server/admin.c,
 * docs/metrics.md).
 *
 * Proves: the Prometheus text of a known registry byte for byte (HELP/TYPE, sorted families and
 * series, cumulative buckets, _sum/_count); escaping of label values and HELP; bucket edges
 * (le is <=); value formatting; registration errors; the bounds (series cap, long values) drop
 * and count instead of growing; 8 threads incrementing concurrently sum exactly; the standard
 * set from request_done and a scheduler snapshot; the admin port on 127.0.0.1:0 answers
 * /healthz, /readyz 503 -> 200 -> 503 as the state flips, /metrics whose every line matches the
 * exposition grammar, 404, 405, and 8 x 25 concurrent scrapes; a unix-socket admin port.
 *
 * server/ is not part of libcadenza, so the sources are compiled into this program.
 */
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "harness.h"
#include "../server/metrics.c"
#include "../server/admin.c"

/* ------------------------------------------------------------------ registry */

static const double B3[] = {0.1, 1, 2.5};

static void test_render_exact(th_suite *s) {
    if (!th_begin(s, "render", "known registry")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create_empty(&m));
    cdz_metric *c, *g, *h;
    th_ok(s, "counter", cdz_metrics_register(m, CDZ_METRIC_COUNTER, "t_requests_total", "Requests.", 2,
                                             (const char *const[]){"model", "code"}, 0, NULL, &c));
    th_ok(s, "gauge", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "t_a_gauge", "A gauge.", 0, NULL, 0, NULL, &g));
    th_ok(s, "histogram", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "t_latency_seconds", "Latency.", 1,
                                               (const char *const[]){"model"}, 3, B3, &h));
    cdz_metric_add(c, (const char *const[]){"zeta", "ok"}, 1);
    cdz_metric_add(c, (const char *const[]){"alpha", "ok"}, 2);
    cdz_metric_add(c, (const char *const[]){"alpha", "BUSY"}, 1);
    cdz_metric_add(c, (const char *const[]){"alpha", "ok"}, 3);
    cdz_metric_set(g, NULL, -1.5);
    cdz_metric_observe(h, (const char *const[]){"m"}, 0.05);
    cdz_metric_observe(h, (const char *const[]){"m"}, 0.1);
    cdz_metric_observe(h, (const char *const[]){"m"}, 2);
    cdz_metric_observe(h, (const char *const[]){"m"}, 7);
    char *text = NULL;
    size_t len = 0;
    th_ok(s, "render", cdz_metrics_render(m, &text, &len));
    const char *want =
        "# HELP t_a_gauge A gauge.\n"
        "# TYPE t_a_gauge gauge\n"
        "t_a_gauge -1.5\n"
        "# HELP t_latency_seconds Latency.\n"
        "# TYPE t_latency_seconds histogram\n"
        "t_latency_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
        "t_latency_seconds_bucket{model=\"m\",le=\"1\"} 2\n"
        "t_latency_seconds_bucket{model=\"m\",le=\"2.5\"} 3\n"
        "t_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
        "t_latency_seconds_sum{model=\"m\"} 9.15\n"
        "t_latency_seconds_count{model=\"m\"} 4\n"
        "# HELP t_requests_total Requests.\n"
        "# TYPE t_requests_total counter\n"
        "t_requests_total{model=\"alpha\",code=\"BUSY\"} 1\n"
        "t_requests_total{model=\"alpha\",code=\"ok\"} 5\n"
        "t_requests_total{model=\"zeta\",code=\"ok\"} 1\n";
    th_check(s, "text exact", text && strcmp(text, want) == 0, "got:\n%s\nwant:\n%s", text ? text : "(null)", want);
    th_check(s, "length", text && len == strlen(text), "len %zu", len);
    free(text);
    /* a second render is identical (stable) */
    char *again = NULL;
    th_ok(s, "render again", cdz_metrics_render(m, &again, NULL));
    th_check(s, "stable", again && strcmp(again, want) == 0, "differs");
    free(again);
    cdz_metrics_destroy(m);
    th_end(s);
}

static void test_escaping(th_suite *s) {
    if (!th_begin(s, "escaping", "label values and help")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create_empty(&m));
    cdz_metric *g;
    th_ok(s, "gauge", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "t_g", "back\\slash\nnewline \"quotes\"", 1,
                                           (const char *const[]){"v"}, 0, NULL, &g));
    cdz_metric_set(g, (const char *const[]){"a\"b\\c\nd"}, 1);
    cdz_metric_set(g, (const char *const[]){""}, 2);
    char *text = NULL;
    th_ok(s, "render", cdz_metrics_render(m, &text, NULL));
    const char *want = "# HELP t_g back\\\\slash\\nnewline \"quotes\"\n"
                       "# TYPE t_g gauge\n"
                       "t_g{v=\"\"} 2\n"
                       "t_g{v=\"a\\\"b\\\\c\\nd\"} 1\n";
    th_check(s, "escaped", text && strcmp(text, want) == 0, "got:\n%s\nwant:\n%s", text ? text : "", want);
    free(text);
    cdz_metrics_destroy(m);
    th_end(s);
}

static void test_buckets_and_format(th_suite *s) {
    if (!th_begin(s, "buckets", "edges, cumulative counts, value format")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create_empty(&m));
    cdz_metric *h;
    th_ok(s, "histogram", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "t_h", "h", 0, NULL, 3, B3, &h));
    const double obs[] = {-1, 0.1, 0.10000000000000002, 1, 2.5, 2.6, INFINITY};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) cdz_metric_observe(h, NULL, obs[i]);
    cdz_metric_observe(h, NULL, NAN); /* dropped: NaN has no bucket */
    char *text = NULL;
    th_ok(s, "render", cdz_metrics_render(m, &text, NULL));
    const char *want = "# HELP t_h h\n# TYPE t_h histogram\n"
                       "t_h_bucket{le=\"0.1\"} 2\n"
                       "t_h_bucket{le=\"1\"} 4\n"
                       "t_h_bucket{le=\"2.5\"} 5\n"
                       "t_h_bucket{le=\"+Inf\"} 7\n"
                       "t_h_sum +Inf\n"
                       "t_h_count 7\n";
    th_check(s, "le is <=, cumulative", text && strcmp(text, want) == 0, "got:\n%s", text ? text : "");
    free(text);
    cdz_metrics_destroy(m);

    struct { double v; const char *s; } f[] = {
        {0, "0"}, {-0.0, "0"}, {42, "42"}, {-3, "-3"}, {0.1, "0.1"}, {1e-9, "1e-09"},
        {1.0 / 3, "0.3333333333333333"}, {1e20, "1e+20"}, {INFINITY, "+Inf"}, {-INFINITY, "-Inf"},
        {NAN, "NaN"}, {123456789012.5, "123456789012.5"},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char buf[40], what[64];
        cdz_metrics_format_double(f[i].v, buf, sizeof buf);
        snprintf(what, sizeof what, "format %s", f[i].s);
        th_check(s, what, strcmp(buf, f[i].s) == 0, "got %s", buf);
    }
    th_end(s);
}

static void test_register_errors(th_suite *s) {
    if (!th_begin(s, "register", "validation")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create_empty(&m));
    const double bad[] = {1, 1};
    const double inf[] = {1, INFINITY};
    th_expect_status(s, "bad name", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "9x", "", 0, NULL, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "bad name chars", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "a-b", "", 0, NULL, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "bad label", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "g", "", 1, (const char *const[]){"a:b"},
                                                          0, NULL, NULL), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "reserved label", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "g", "", 1,
                                                               (const char *const[]){"__x"}, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "dup label", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "g", "", 2,
                                                          (const char *const[]){"a", "a"}, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "le on histogram", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "h", "", 1,
                                                                (const char *const[]){"le"}, 3, B3, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "no buckets", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "h", "", 0, NULL, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "equal bounds", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "h", "", 0, NULL, 2, bad, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "inf bound", cdz_metrics_register(m, CDZ_METRIC_HISTOGRAM, "h", "", 0, NULL, 2, inf, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "buckets on gauge", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "g", "", 0, NULL, 3, B3, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_ok(s, "valid", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "ns:g_1", "", 0, NULL, 0, NULL, NULL));
    th_expect_status(s, "duplicate", cdz_metrics_register(m, CDZ_METRIC_GAUGE, "ns:g_1", "", 0, NULL, 0, NULL, NULL),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "find", cdz_metrics_find(m, "ns:g_1") != NULL && cdz_metrics_find(m, "nope") == NULL, "find");
    cdz_metrics_destroy(m);
    th_end(s);
}

static void test_bounds(th_suite *s) {
    if (!th_begin(s, "bounds", "series cap, long values, wrong kind")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create(&m));
    const cdz_metrics_std *d = cdz_metrics_standard(m);
    char name[32];
    for (int i = 0; i < CDZ_METRICS_MAX_SERIES + 10; i++) {
        snprintf(name, sizeof name, "m%05d", i);
        cdz_metric_set(d->queue_depth, (const char *const[]){name}, i);
    }
    char big[CDZ_METRICS_MAX_LABEL_VALUE + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cdz_metric_set(d->queue_depth, (const char *const[]){big}, 1);
    cdz_metric_set(d->requests_total, (const char *const[]){"a", "ok"}, 1); /* set on a counter */
    cdz_metric_add(d->requests_total, (const char *const[]){"a", "ok"}, -1); /* counters only go up */
    double v = 0;
    th_check(s, "dropped counted", cdz_metric_get(d->dropped, NULL, &v) && v == 10 + 1 + 2, "dropped %g", v);
    th_check(s, "last kept", cdz_metric_get(d->queue_depth, (const char *const[]){"m04095"}, &v) && v == 4095, "v %g", v);
    th_check(s, "past cap absent", !cdz_metric_get(d->queue_depth, (const char *const[]){"m04096"}, &v), "present");
    th_check(s, "counter untouched", !cdz_metric_get(d->requests_total, (const char *const[]){"a", "ok"}, &v), "present");
    cdz_metric_clear(d->queue_depth);
    th_check(s, "clear", !cdz_metric_get(d->queue_depth, (const char *const[]){"m00000"}, &v), "present");
    cdz_metrics_destroy(m);
    th_end(s);
}

/* ------------------------------------------------------------------ concurrency */

#define N_THREADS 8
#define N_INCS 50000

typedef struct inc_arg {
    cdz_metrics *m;
    int id;
} inc_arg;

static void *inc_thread(void *p) {
    inc_arg *a = p;
    const char *models[2] = {"a", "b"};
    for (int i = 0; i < N_INCS; i++) {
        const char *model = models[(i + a->id) & 1];
        cdz_metrics_request_done(a->m, model, (i % 10 == 0) ? CDZ_STATUS_BUSY : CDZ_STATUS_OK,
                                 0.001, 0.002, 0.25, 1 + (i & 7));
        if ((i & 1023) == 0) {
            char *t = NULL;
            if (cdz_metrics_render(a->m, &t, NULL) == CDZ_STATUS_OK) free(t);
        }
    }
    return NULL;
}

static void test_concurrent(th_suite *s) {
    if (!th_begin(s, "concurrent", "%d threads x %d requests", N_THREADS, N_INCS)) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create(&m));
    pthread_t t[N_THREADS];
    inc_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (inc_arg){m, i};
        pthread_create(&t[i], NULL, inc_thread, &args[i]);
    }
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
    const cdz_metrics_std *d = cdz_metrics_standard(m);
    double ok_a = 0, ok_b = 0, busy_a = 0, busy_b = 0, n_a = 0, n_b = 0, n_batch = 0;
    cdz_metric_get(d->requests_total, (const char *const[]){"a", "ok"}, &ok_a);
    cdz_metric_get(d->requests_total, (const char *const[]){"b", "ok"}, &ok_b);
    cdz_metric_get(d->requests_total, (const char *const[]){"a", "BUSY"}, &busy_a);
    cdz_metric_get(d->requests_total, (const char *const[]){"b", "BUSY"}, &busy_b);
    cdz_metric_get(d->request_duration, (const char *const[]){"a"}, &n_a);
    cdz_metric_get(d->request_duration, (const char *const[]){"b"}, &n_b);
    cdz_metric_get(d->batch_items, (const char *const[]){"a"}, &n_batch);
    double total = (double)N_THREADS * N_INCS;
    th_check(s, "counter sum exact", ok_a + ok_b + busy_a + busy_b == total, "%g + %g + %g + %g != %g", ok_a, ok_b,
             busy_a, busy_b, total);
    th_check(s, "busy exact", busy_a + busy_b == N_THREADS * (double)((N_INCS + 9) / 10), "busy %g", busy_a + busy_b);
    th_check(s, "per model split", ok_a + busy_a == total / 2 && ok_b + busy_b == total / 2, "a %g b %g",
             ok_a + busy_a, ok_b + busy_b);
    th_check(s, "histogram counts exact", n_a + n_b == total && n_batch == total / 2, "%g %g %g", n_a, n_b, n_batch);
    char *text = NULL;
    th_ok(s, "render", cdz_metrics_render(m, &text, NULL));
    /* 0.25 s lands in le=0.25 (<=): every request of model a is in that bucket */
    char line[128];
    snprintf(line, sizeof line, "cadenza_request_duration_seconds_bucket{model=\"a\",le=\"0.25\"} %.0f\n", total / 2);
    th_check(s, "bucket line", text && strstr(text, line), "missing %s", line);
    snprintf(line, sizeof line, "cadenza_request_duration_seconds_bucket{model=\"a\",le=\"0.1\"} 0\n");
    th_check(s, "bucket below", text && strstr(text, line), "missing %s", line);
    free(text);
    cdz_metrics_destroy(m);
    th_end(s);
}

/* ------------------------------------------------------------------ standard set */

static void fake_stats(void *user, cdz_sched_stats *st) {
    int *calls = user;
    __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    memset(st, 0, sizeof *st);
    st->n_models = 2;
    snprintf(st->models[0].name, sizeof st->models[0].name, "demucs");
    st->models[0].queued = 3;
    st->models[0].running = 2;
    snprintf(st->models[1].name, sizeof st->models[1].name, "testnet");
    st->models[1].queued = 0;
    st->models[1].running = 1;
    st->n_devices = 2;
    st->devices[0].device = (cdz_device){CDZ_DEVICE_CPU, 0};
    st->devices[0].healthy = true;
    st->devices[0].arena = (cdz_arena_stats){.reserved = 268435456, .used = 1024, .peak = 4096};
    st->devices[1].device = (cdz_device){CDZ_DEVICE_CPU, 1};
    st->devices[1].healthy = false;
    st->devices[1].arena = (cdz_arena_stats){.reserved = 1000, .used = 0, .peak = 10};
}

static void test_standard(th_suite *s) {
    if (!th_begin(s, "standard", "request_done, snapshot gauges")) return;
    cdz_metrics *m;
    th_ok(s, "create", cdz_metrics_create(&m));
    cdz_metrics_request_done(m, "demucs", CDZ_STATUS_OK, 0.01, 1.5, 1.52, 4);
    cdz_metrics_request_done(m, "demucs", CDZ_STATUS_BUSY, -1, -1, 0.0001, 0);
    cdz_metrics_stream_first_chunk(m, "sign", 0.03);
    cdz_metrics_connections_add(m, +1);
    cdz_metrics_connections_add(m, +1);
    cdz_metrics_connections_add(m, -1);
    int calls = 0;
    cdz_sched_stats st;
    fake_stats(&calls, &st);
    cdz_metrics_set_sched_stats(m, &st);
    char *text = NULL;
    th_ok(s, "render", cdz_metrics_render(m, &text, NULL));
    const char *lines[] = {
        "cadenza_requests_total{model=\"demucs\",code=\"ok\"} 1\n",
        "cadenza_requests_total{model=\"demucs\",code=\"BUSY\"} 1\n",
        "cadenza_queue_duration_seconds_count{model=\"demucs\"} 1\n",
        "cadenza_compute_duration_seconds_sum{model=\"demucs\"} 1.5\n",
        "cadenza_request_duration_seconds_count{model=\"demucs\"} 2\n",
        "cadenza_batch_items_bucket{model=\"demucs\",le=\"4\"} 1\n",
        "cadenza_batch_items_bucket{model=\"demucs\",le=\"2\"} 0\n",
        "cadenza_stream_first_chunk_seconds_count{model=\"sign\"} 1\n",
        "cadenza_connections 1\n",
        "cadenza_queue_depth{model=\"demucs\"} 3\n",
        "cadenza_inflight{model=\"demucs\"} 2\n",
        "cadenza_inflight{model=\"testnet\"} 1\n",
        "cadenza_arena_bytes{device=\"cpu:0\",kind=\"reserved\"} 268435456\n",
        "cadenza_arena_bytes{device=\"cpu:0\",kind=\"peak\"} 4096\n",
        "cadenza_arena_bytes{device=\"cpu:1\",kind=\"used\"} 0\n",
        "cadenza_device_healthy{device=\"cpu:0\"} 1\n",
        "cadenza_device_healthy{device=\"cpu:1\"} 0\n",
        "cadenza_build_info{version=\"0.1.0\"} 1\n",
        "cadenza_ready 0\n",
        "cadenza_metrics_dropped_total 0\n",
        "# TYPE cadenza_request_duration_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char what[160];
        snprintf(what, sizeof what, "has %.*s", (int)strcspn(lines[i], "\n"), lines[i]);
        th_check(s, what, text && strstr(text, lines[i]), "missing");
    }
    /* a snapshot without a model removes its gauges */
    st.n_models = 1;
    cdz_metrics_set_sched_stats(m, &st);
    free(text);
    th_ok(s, "render 2", cdz_metrics_render(m, &text, NULL));
    th_check(s, "stale model gone", text && !strstr(text, "cadenza_inflight{model=\"testnet\"}"), "still there");
    free(text);
    cdz_metrics_destroy(m);
    th_end(s);
}

/* ------------------------------------------------------------------ exposition grammar */

static regex_t re_help, re_type, re_sample;

static void grammar_init(void) {
    regcomp(&re_help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* ([^\\\\\n]|\\\\\\\\|\\\\n)*$", REG_EXTENDED | REG_NOSUB);
    regcomp(&re_type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$",
            REG_EXTENDED | REG_NOSUB);
    regcomp(&re_sample,
            "^[a-zA-Z_:][a-zA-Z0-9_:]*"
            "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
            "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\")*\\})?"
            " (NaN|[+-]Inf|[-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)$",
            REG_EXTENDED | REG_NOSUB);
}

/* Every line is HELP, TYPE or a sample of the last TYPE'd family; returns the bad line count. */
static int grammar_check(th_suite *s, const char *text, int *n_samples) {
    int bad = 0;
    char family[128] = "";
    *n_samples = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            bad++; /* the last line must end with \n */
            break;
        }
        char line[1024];
        size_t n = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        bool ok;
        if (strncmp(line, "# HELP ", 7) == 0) ok = regexec(&re_help, line, 0, NULL, 0) == 0;
        else if (strncmp(line, "# TYPE ", 7) == 0) {
            ok = regexec(&re_type, line, 0, NULL, 0) == 0;
            sscanf(line + 7, "%127s", family);
        } else {
            ok = regexec(&re_sample, line, 0, NULL, 0) == 0 && family[0] &&
                 strncmp(line, family, strlen(family)) == 0;
            (*n_samples)++;
        }
        if (!ok) {
            bad++;
            if (bad < 4) th_check(s, "grammar line", false, "bad line: '%s'", line);
        }
        p = nl + 1;
    }
    return bad;
}

/* ------------------------------------------------------------------ admin port */

typedef struct http_reply {
    int code;
    char body[256 * 1024];
    size_t len;
} http_reply;

/* A tiny HTTP/1.0 client: one request, read to EOF. */
static bool http_req(const char *unix_path, uint16_t port, const char *method, const char *path, http_reply *r) {
    int fd;
    if (unix_path) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", unix_path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
            if (fd >= 0) close(fd);
            return false;
        }
    } else {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
            if (fd >= 0) close(fd);
            return false;
        }
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n%s\r\n", method, path,
                     strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return false;
    }
    static __thread char raw[256 * 1024 + 4096];
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, raw + got, sizeof raw - 1 - got);
        if (k <= 0) break;
        got += (size_t)k;
        if (got == sizeof raw - 1) break;
    }
    close(fd);
    raw[got] = '\0';
    r->code = 0;
    if (sscanf(raw, "HTTP/1.%*d %d", &r->code) != 1) return false;
    const char *body = strstr(raw, "\r\n\r\n");
    if (!body) return false;
    body += 4;
    r->len = got - (size_t)(body - raw);
    if (r->len >= sizeof r->body) r->len = sizeof r->body - 1;
    memcpy(r->body, body, r->len);
    r->body[r->len] = '\0';
    return true;
}

typedef struct scrape_arg {
    uint16_t port;
    int ok, bad;
} scrape_arg;

static void *scrape_thread(void *p) {
    scrape_arg *a = p;
    static __thread http_reply r;
    for (int i = 0; i < 25; i++) {
        if (http_req(NULL, a->port, "GET", i % 5 == 4 ? "/readyz" : "/metrics", &r) &&
            r.code == 200 && (i % 5 == 4 || strstr(r.body, "cadenza_queue_depth{model=\"demucs\"} 3\n")))
            a->ok++;
        else
            a->bad++;
    }
    return NULL;
}

static void test_admin(th_suite *s) {
    if (!th_begin(s, "admin", "127.0.0.1:0")) return;
    if (!cdz_admin_available()) {
        cdz_admin *a = NULL;
        th_expect_status(s, "unsupported", cdz_admin_start(&(cdz_admin_options){0}, &a), CDZ_STATUS_UNSUPPORTED);
        th_skip(s, "admin http", "built without libmicrohttpd");
        th_end(s);
        return;
    }
    cdz_metrics *m;
    th_ok(s, "metrics", cdz_metrics_create(&m));
    int calls = 0;
    cdz_admin *a = NULL;
    cdz_admin_options opt = {.host = "127.0.0.1", .port = 0, .metrics = m, .threads = 2, .disable_nvml = false};
    if (!th_ok(s, "start", cdz_admin_start(&opt, &a))) {
        cdz_metrics_destroy(m);
        th_end(s);
        return;
    }
    uint16_t port = cdz_admin_port(a);
    th_check(s, "port picked", port != 0, "port 0");
    http_reply *r = calloc(1, sizeof *r);
    /* before a scheduler is attached: no scheduler gauges, still valid text */
    int n_samples0 = 0;
    th_check(s, "metrics without stats", http_req(NULL, port, "GET", "/metrics", r) && r->code == 200 &&
             grammar_check(s, r->body, &n_samples0) == 0 && !strstr(r->body, "cadenza_queue_depth{"), "code %d", r->code);
    cdz_admin_set_stats(a, fake_stats, &calls);
    th_check(s, "healthz", http_req(NULL, port, "GET", "/healthz", r) && r->code == 200 && strcmp(r->body, "ok\n") == 0,
             "code %d body '%s'", r->code, r->body);
    th_check(s, "readyz loading", http_req(NULL, port, "GET", "/readyz", r) && r->code == 503 &&
             strcmp(r->body, "loading\n") == 0, "code %d body '%s'", r->code, r->body);
    cdz_admin_set_state(a, CDZ_ADMIN_READY);
    th_check(s, "readyz ready", http_req(NULL, port, "GET", "/readyz", r) && r->code == 200, "code %d", r->code);
    th_check(s, "head readyz", http_req(NULL, port, "HEAD", "/readyz", r) && r->code == 200 && r->len == 0,
             "code %d len %zu", r->code, r->len);
    cdz_metrics_request_done(m, "demucs", CDZ_STATUS_OK, 0.01, 1.5, 1.52, 4);
    bool got = http_req(NULL, port, "GET", "/metrics", r);
    th_check(s, "metrics 200", got && r->code == 200, "code %d", r->code);
    int n_samples = 0;
    int bad = grammar_check(s, r->body, &n_samples);
    th_check(s, "metrics grammar", bad == 0 && n_samples > 50, "%d bad lines of %d samples", bad, n_samples);
    th_check(s, "metrics snapshot", strstr(r->body, "cadenza_queue_depth{model=\"demucs\"} 3\n") &&
             strstr(r->body, "cadenza_device_healthy{device=\"cpu:1\"} 0\n") && calls >= 1, "calls %d", calls);
    th_check(s, "metrics request", strstr(r->body, "cadenza_requests_total{model=\"demucs\",code=\"ok\"} 1\n") != NULL,
             "missing");
    th_check(s, "metrics ready gauge", strstr(r->body, "\ncadenza_ready 1\n") != NULL, "missing");
    th_check(s, "no gpu gauges for cpu devices", strstr(r->body, "cadenza_gpu_memory_used_bytes{") == NULL, "present");
    th_check(s, "404", http_req(NULL, port, "GET", "/nope", r) && r->code == 404, "code %d", r->code);
    th_check(s, "404 root", http_req(NULL, port, "GET", "/", r) && r->code == 404, "code %d", r->code);
    th_check(s, "405 post", http_req(NULL, port, "POST", "/metrics", r) && r->code == 405, "code %d", r->code);
    th_check(s, "405 delete", http_req(NULL, port, "DELETE", "/healthz", r) && r->code == 405, "code %d", r->code);

    pthread_t t[8];
    scrape_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (scrape_arg){.port = port};
        pthread_create(&t[i], NULL, scrape_thread, &args[i]);
    }
    int ok = 0, nbad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ok += args[i].ok;
        nbad += args[i].bad;
    }
    th_check(s, "concurrent scrapes", ok == 8 * 25 && nbad == 0, "%d ok, %d failed", ok, nbad);

    cdz_admin_set_state(a, CDZ_ADMIN_DRAINING);
    th_check(s, "readyz draining", http_req(NULL, port, "GET", "/readyz", r) && r->code == 503 &&
             strcmp(r->body, "draining\n") == 0, "code %d body '%s'", r->code, r->body);
    th_check(s, "healthz while draining", http_req(NULL, port, "GET", "/healthz", r) && r->code == 200, "code %d", r->code);
    th_check(s, "ready gauge 0", http_req(NULL, port, "GET", "/metrics", r) && strstr(r->body, "\ncadenza_ready 0\n"),
             "missing");
    cdz_admin_stop(a);
    th_check(s, "closed after stop", !http_req(NULL, port, "GET", "/healthz", r), "still answering");

    /* a port in use is an IO error naming the address */
    cdz_admin *a1 = NULL, *a2 = NULL;
    th_ok(s, "start again", cdz_admin_start(&opt, &a1));
    cdz_admin_options busy = opt;
    busy.port = cdz_admin_port(a1);
    th_expect_status(s, "port in use", cdz_admin_start(&busy, &a2), CDZ_STATUS_IO);
    th_check(s, "message names address", strstr(cdz_last_message(), "127.0.0.1:") != NULL, "'%s'", cdz_last_message());
    cdz_admin_stop(a1);
    cdz_admin_options badhost = opt;
    badhost.host = "no-such-host.invalid";
    th_expect_status(s, "bad host", cdz_admin_start(&badhost, &a2), CDZ_STATUS_INVALID_ARGUMENT);

    /* unix socket */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cdz-admin-test-%d.sock", (int)getpid());
    cdz_admin_options uo = {.unix_path = path, .metrics = m, .disable_nvml = true};
    if (th_ok(s, "unix start", cdz_admin_start(&uo, &a1))) {
        th_check(s, "unix healthz", http_req(path, 0, "GET", "/healthz", r) && r->code == 200, "code %d", r->code);
        th_check(s, "unix metrics", http_req(path, 0, "GET", "/metrics", r) && r->code == 200 &&
                 grammar_check(s, r->body, &n_samples) == 0, "code %d", r->code);
        cdz_admin_stop(a1);
        th_check(s, "unix path removed", access(path, F_OK) != 0, "still there");
    }
    free(r);
    cdz_metrics_destroy(m);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_metrics", argc, argv)) return 2;
    grammar_init();
    test_render_exact(&s);
    test_escaping(&s);
    test_buckets_and_format(&s);
    test_register_errors(&s);
    test_bounds(&s);
    test_concurrent(&s);
    test_standard(&s);
    test_admin(&s);
    regfree(&re_help);
    regfree(&re_type);
    regfree(&re_sample);
    return th_finish(&s);
}
