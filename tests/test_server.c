/*
 * test_server.c: the event loop (server/server.c) and the C client (server/client.c) on
 * loopback, with the built-in testnet model on logical CPU devices. Every answer of the load
 * test is compared with a float64 testnet computed here; error codes are provoked one by one;
 * hostile clients (malformed, slowloris, slow reader, disconnect mid-request) are dropped
 * while the server keeps serving; a drain with requests in flight loses none.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../server/protocol.c"
#include "../server/config.c"
#include "../server/server.c"
#include "../server/client.c"

#define D 8
#define H 16

/* ---- the testnet reference, float64 (models/testnet.c: seeded weights, exact gelu) ---- */
static double W1[H * D], W2[D * H], B1[H], B2[D];
static uint64_t sm64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static void ref_init(void) {
    uint64_t seed = 0x7e57e7ULL;
    double *arrs[4] = {W1, W2, B1, B2};
    size_t ns[4] = {H * D, D * H, H, D};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < ns[a]; i++)
            arrs[a][i] = (double)(float)((double)(sm64(&seed) >> 11) / 9007199254740992.0 - 0.5);
}
static void ref_forward(const float *x, int64_t rows, double *y) {
    for (int64_t r = 0; r < rows; r++) {
        double hid[H];
        for (int j = 0; j < H; j++) {
            double v = B1[j];
            for (int k = 0; k < D; k++) v += W1[j * D + k] * x[r * D + k];
            hid[j] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        }
        for (int i = 0; i < D; i++) {
            double v = B2[i];
            for (int j = 0; j < H; j++) v += W2[i * H + j] * hid[j];
            y[r * D + i] = v;
        }
    }
}
static bool result_ok(const cdz_proto_msg *m, const float *x, int64_t rows, double *maxerr) {
    if (m->h.type != CDZ_PROTO_RESULT || m->n_tensors != 1 || strcmp(m->tensors[0].name, "y") ||
        m->tensors[0].dtype != CDZ_DTYPE_F32 || m->tensors[0].ndim != 2 || m->tensors[0].dims[0] != rows ||
        m->tensors[0].dims[1] != D)
        return false;
    const float *y = m->tensors[0].data;
    double ref[64 * D];
    if (rows > 64) return false;
    ref_forward(x, rows, ref);
    for (int64_t i = 0; i < rows * D; i++) {
        double e = fabs(y[i] - ref[i]);
        if (!(e <= 1e-4 * (1 + fabs(ref[i])))) return false;
        if (maxerr && e > *maxerr) *maxerr = e;
    }
    return true;
}

/* ---- a server on its own thread ---- */
typedef struct running {
    cdz_server *srv;
    pthread_t th;
    char addr[160];
    cdz_status run_status;
} running;

static void *run_main(void *arg) {
    running *r = arg;
    r->run_status = cdz_server_run(r->srv);
    return NULL;
}

typedef struct srv_opts {
    const char *unix_path;
    int devices, queue_size, max_batch;
    int64_t delay_us;
    uint32_t max_conns, max_inflight, max_frame;
    uint64_t read_to_ms, write_to_ms, idle_to_ms, drain_ms;
    const char *api_key;
} srv_opts;

static bool start(th_suite *s, running *r, srv_opts o) {
    cdz_server_config cfg;
    cdz_server_config_default(&cfg);
    if (o.unix_path) {
        cfg.listen.is_unix = true;
        snprintf(cfg.listen.path, sizeof cfg.listen.path, "%s", o.unix_path);
    } else {
        snprintf(cfg.listen.host, sizeof cfg.listen.host, "127.0.0.1");
        cfg.listen.port = 0;
    }
    cfg.max_connections = o.max_conns ? o.max_conns : 256;
    cfg.max_inflight = o.max_inflight ? o.max_inflight : 64;
    cfg.max_frame_bytes = o.max_frame ? o.max_frame : (1u << 20);
    cfg.read_timeout_us = (o.read_to_ms ? o.read_to_ms : 2000) * 1000;
    cfg.write_timeout_us = (o.write_to_ms ? o.write_to_ms : 2000) * 1000;
    cfg.idle_timeout_us = o.idle_to_ms * 1000;
    cfg.drain_timeout_us = (o.drain_ms ? o.drain_ms : 5000) * 1000;
    snprintf(cfg.api_key, sizeof cfg.api_key, "%s", o.api_key ? o.api_key : "");
    cdz_sched_config sc;
    memset(&sc, 0, sizeof sc);
    sc.n_devices = o.devices ? o.devices : 2;
    for (int i = 0; i < sc.n_devices; i++) sc.devices[i] = (cdz_device){CDZ_DEVICE_CPU, i};
    sc.workers_per_device = 1;
    sc.n_models = 1;
    snprintf(sc.models[0].name, sizeof sc.models[0].name, "tn");
    sc.models[0].path = "builtin:testnet";
    sc.models[0].max_batch = o.max_batch ? o.max_batch : 64;
    sc.models[0].queue_size = o.queue_size ? o.queue_size : 1024;
    sc.models[0].max_queue_delay_us = o.delay_us;
    memset(r, 0, sizeof *r);
    if (!th_ok(s, "server create", cdz_server_create_with(&cfg, &sc, &r->srv))) return false;
    if (o.unix_path) snprintf(r->addr, sizeof r->addr, "unix:%s", o.unix_path);
    else snprintf(r->addr, sizeof r->addr, "127.0.0.1:%u", cdz_server_port(r->srv));
    pthread_create(&r->th, NULL, run_main, r);
    return true;
}

static void stop(th_suite *s, running *r) {
    cdz_server_stop(r->srv);
    pthread_join(r->th, NULL);
    th_ok(s, "server run returned OK", r->run_status);
    cdz_server_destroy(r->srv);
}

static void fill_x(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((double)(sm64(&seed) >> 11) / 9007199254740992.0 * 4 - 2);
}

static cdz_status infer_rows(cdz_client *c, uint64_t rid, const float *x, int64_t rows, uint64_t deadline_us,
                             cdz_proto_msg *reply) {
    cdz_tensor t = cdz_tensor_make((void *)x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, rows, (int64_t)D);
    const char *names[1] = {"x"};
    return cdz_client_infer(c, rid, "tn", 1, names, &t, 0, NULL, deadline_us, reply, 10000);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Encode an INFER into a malloc'd frame (for raw and pipelined sends). */
static uint8_t *encode_infer(uint64_t rid, const char *model, const char *in_name, const float *x, int64_t rows,
                             int64_t cols, uint64_t deadline_us, size_t *size) {
    cdz_proto_msg *m = malloc(sizeof *m);
    cdz_proto_msg_init(m, CDZ_PROTO_INFER);
    m->h.request_id = rid;
    m->h.deadline_us = deadline_us;
    snprintf(m->model, sizeof m->model, "%s", model);
    m->n_tensors = 1;
    cdz_tensor t = cdz_tensor_make((void *)x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, rows, cols);
    cdz_proto_tensor_set(&m->tensors[0], in_name, &t);
    uint8_t *buf = NULL;
    if (cdz_proto_encode(m, NULL, 0, size) == CDZ_STATUS_OK) {
        buf = malloc(*size);
        cdz_proto_encode(m, buf, *size, size);
    }
    free(m);
    return buf;
}

/* ---------------------------------------------------------------- cases */

static void case_roundtrip(th_suite *s, const char *unix_path) {
    if (!th_begin(s, "roundtrip", "%s", unix_path ? "unix" : "tcp")) return;
    running r;
    if (!start(s, &r, (srv_opts){.unix_path = unix_path})) { th_end(s); return; }
    cdz_client *c = NULL;
    cdz_proto_msg *m = th_alloc(s, sizeof *m);
    if (th_ok(s, "connect", cdz_client_connect(r.addr, NULL, 5000, &c))) {
        float x[5 * D];
        fill_x(x, 5 * D, 1);
        double err = 0;
        th_ok(s, "infer", infer_rows(c, 7, x, 5, 0, m));
        th_check(s, "result matches f64 testnet", result_ok(m, x, 5, &err), "max err %g", err);
        th_check(s, "request id echoed", m->h.request_id == 7, "%llu", (unsigned long long)m->h.request_id);
        th_ok(s, "list models", cdz_client_list_models(c, m, 5000));
        th_check(s, "model list", m->h.type == CDZ_PROTO_MODEL_LIST && m->n_models == 1 && !strcmp(m->models[0].name, "tn") &&
                 m->models[0].n_inputs == 1 && m->models[0].n_outputs == 1 && !strcmp(m->tensors[0].name, "x") &&
                 m->tensors[0].dims[1] == D, "n_models %u", m->n_models);
        /* requested output by name, and a missing one */
        cdz_tensor t = cdz_tensor_make(x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, (int64_t)5, (int64_t)D);
        const char *in[1] = {"x"}, *outs[1] = {"y"}, *bad[1] = {"z"};
        th_ok(s, "infer output y", cdz_client_infer(c, 8, "tn", 1, in, &t, 1, outs, 0, m, 5000));
        th_check(s, "named output", result_ok(m, x, 5, NULL), "%s", "");
        th_expect_status(s, "unknown output", cdz_client_infer(c, 9, "tn", 1, in, &t, 1, bad, 0, m, 5000), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "unknown model", cdz_client_infer(c, 10, "nope", 1, in, &t, 0, NULL, 0, m, 5000), CDZ_STATUS_UNKNOWN_MODEL);
        const char *wrong[1] = {"q"};
        th_expect_status(s, "wrong input name", cdz_client_infer(c, 11, "tn", 1, wrong, &t, 0, NULL, 0, m, 5000), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_tensor t3 = cdz_tensor_make(x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, (int64_t)4, (int64_t)3);
        th_expect_status(s, "wrong input shape", cdz_client_infer(c, 12, "tn", 1, in, &t3, 0, NULL, 0, m, 5000), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "deadline 1us", infer_rows(c, 13, x, 5, 1, m), CDZ_STATUS_DEADLINE_EXCEEDED);
        th_check(s, "deadline retryable", cdz_last_error()->retryable, "%s", "");
        /* a second HELLO and a stream on an unknown model: typed errors, connection stays */
        cdz_proto_msg_init(m, CDZ_PROTO_HELLO);
        m->h.request_id = 14;
        cdz_client_send(c, m);
        th_ok(s, "recv", cdz_client_recv(c, m, 5000));
        th_check(s, "second HELLO -> INVALID_ARGUMENT", m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_INVALID_ARGUMENT &&
                 !(m->h.flags & CDZ_PROTO_FLAG_CLOSING), "code %d", m->code);
        cdz_proto_msg_init(m, CDZ_PROTO_STREAM_OPEN);
        m->h.request_id = 15;
        m->h.stream_id = 1;
        snprintf(m->model, sizeof m->model, "nope"); /* streams themselves: tests/test_stream.c */
        cdz_client_send(c, m);
        th_ok(s, "recv", cdz_client_recv(c, m, 5000));
        th_check(s, "STREAM_OPEN unknown model -> UNKNOWN_MODEL", m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_UNKNOWN_MODEL, "code %d", m->code);
        th_ok(s, "still serving", infer_rows(c, 16, x, 5, 0, m));
        /* too large: a frame over max_frame_bytes -> TOO_LARGE + CLOSING */
        static float big[(1 << 20) / 4 + 4096];
        size_t n = 0;
        uint8_t *f = encode_infer(17, "tn", "x", big, (int64_t)(sizeof big / 4 / D), D, 0, &n);
        cdz_client_send_raw(c, f, n);
        free(f);
        cdz_status st = cdz_client_recv(c, m, 5000);
        th_check(s, "oversized frame -> TOO_LARGE + CLOSING", st == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_ERROR &&
                 m->code == CDZ_STATUS_TOO_LARGE && (m->h.flags & CDZ_PROTO_FLAG_CLOSING), "st %d code %d", st, m->code);
        cdz_client_close(c);
    }
    stop(s, &r);
    th_end(s);
}

static int raw_connect(const char *addr) {
    int fd = -1;
    dial(addr, &fd);
    return fd;
}
/* Read until EOF or timeout; returns true on EOF within timeout_ms. */
static bool wait_eof(int fd, int timeout_ms) {
    uint8_t b[4096];
    int64_t end = cdz_now_ns() + (int64_t)timeout_ms * 1000000;
    while (cdz_now_ns() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n <= 0) return true;
    }
    return false;
}

static void case_hostile(th_suite *s) {
    if (!th_begin(s, "hostile", "malformed, preauth, slowloris, api key, max connections")) return;
    running r;
    if (!start(s, &r, (srv_opts){.read_to_ms = 500, .api_key = "s3cret", .max_conns = 4})) { th_end(s); return; }
    cdz_client *c = NULL;
    th_expect_status(s, "wrong api key", cdz_client_connect(r.addr, "nope", 5000, &c), CDZ_STATUS_UNAUTHENTICATED);
    th_expect_status(s, "no api key", cdz_client_connect(r.addr, NULL, 5000, &c), CDZ_STATUS_UNAUTHENTICATED);
    /* bad magic */
    int fd = raw_connect(r.addr);
    uint8_t junk[64];
    memset(junk, 'Z', sizeof junk);
    send(fd, junk, sizeof junk, MSG_NOSIGNAL);
    th_check(s, "bad magic -> closed", wait_eof(fd, 3000), "%s", "");
    close(fd);
    /* INFER before HELLO */
    float x[2 * D];
    fill_x(x, 2 * D, 3);
    size_t n = 0;
    uint8_t *f = encode_infer(1, "tn", "x", x, 2, D, 0, &n);
    fd = raw_connect(r.addr);
    send(fd, f, n, MSG_NOSIGNAL);
    th_check(s, "INFER before HELLO -> closed", wait_eof(fd, 3000), "%s", "");
    close(fd);
    /* truncated frame, then the client goes away */
    fd = raw_connect(r.addr);
    send(fd, f, 30, MSG_NOSIGNAL);
    close(fd);
    /* slowloris: one byte per 100 ms */
    fd = raw_connect(r.addr);
    int64_t t0 = cdz_now_ns();
    bool dropped = false;
    for (size_t i = 0; i < n && cdz_now_ns() - t0 < 3000000000LL; i++) {
        if (send(fd, f + i, 1, MSG_NOSIGNAL) != 1) { dropped = true; break; }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) { dropped = wait_eof(fd, 1000); break; }
    }
    double secs = (double)(cdz_now_ns() - t0) * 1e-9;
    th_check(s, "slowloris dropped near the 0.5 s read timeout", dropped && secs < 1.5, "after %.2f s", secs);
    close(fd);
    free(f);
    /* max connections: 4 allowed, the 5th gets BUSY + close */
    cdz_client *cs[4] = {0};
    bool all = true;
    for (int i = 0; i < 4; i++) all &= cdz_client_connect(r.addr, "s3cret", 5000, &cs[i]) == CDZ_STATUS_OK;
    th_check(s, "4 connections", all, "%s", "");
    cdz_client *extra = NULL;
    th_expect_status(s, "5th connection BUSY", cdz_client_connect(r.addr, "s3cret", 5000, &extra), CDZ_STATUS_BUSY);
    cdz_proto_msg *m = th_alloc(s, sizeof *m);
    th_ok(s, "others still served", cs[0] ? infer_rows(cs[0], 5, x, 2, 0, m) : CDZ_STATUS_IO);
    th_check(s, "answer right", result_ok(m, x, 2, NULL), "%s", "");
    for (int i = 0; i < 4; i++) cdz_client_close(cs[i]);
    cdz_server_stats st;
    cdz_server_get_stats(r.srv, &st);
    th_check(s, "stats: read timeout and protocol drops", st.dropped_read_timeout >= 1 && st.dropped_protocol >= 1 &&
             st.connections_refused >= 1, "rt %llu proto %llu refused %llu", (unsigned long long)st.dropped_read_timeout,
             (unsigned long long)st.dropped_protocol, (unsigned long long)st.connections_refused);
    stop(s, &r);
    th_end(s);
}

static void case_queue(th_suite *s) {
    if (!th_begin(s, "queue", "busy, cancel, disconnect mid-request, slow reader")) return;
    running r;
    if (!start(s, &r, (srv_opts){.devices = 1, .queue_size = 4, .max_batch = 64, .delay_us = 300000})) {
        th_end(s);
        return;
    }
    cdz_client *c = NULL;
    cdz_proto_msg *m = th_alloc(s, sizeof *m);
    float x[2 * D];
    fill_x(x, 2 * D, 5);
    if (th_ok(s, "connect", cdz_client_connect(r.addr, NULL, 5000, &c))) {
        /* cancel: a request waiting for a fuller batch */
        size_t n = 0;
        uint8_t *f = encode_infer(100, "tn", "x", x, 2, D, 0, &n);
        cdz_client_send_raw(c, f, n);
        free(f);
        cdz_client_cancel(c, 100);
        th_ok(s, "recv", cdz_client_recv(c, m, 5000));
        th_check(s, "cancelled", m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_CANCELLED && m->h.request_id == 100, "type %u code %d", m->h.type, m->code);
        /* busy: 12 pipelined into a queue of 4 */
        for (int i = 0; i < 12; i++) {
            f = encode_infer(200 + (uint64_t)i, "tn", "x", x, 2, D, 0, &n);
            cdz_client_send_raw(c, f, n);
            free(f);
        }
        int ok = 0, busy = 0, other = 0;
        for (int i = 0; i < 12; i++) {
            if (cdz_client_recv(c, m, 5000) != CDZ_STATUS_OK) { other++; continue; }
            if (m->h.type == CDZ_PROTO_RESULT && result_ok(m, x, 2, NULL)) ok++;
            else if (m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_BUSY && m->retryable) busy++;
            else other++;
        }
        th_check(s, "busy: every request answered, some BUSY", ok + busy == 12 && busy >= 1 && ok >= 1, "ok %d busy %d other %d", ok, busy, other);
        cdz_client_close(c);
    }
    /* disconnect mid-request: jobs complete into a dead connection and are freed */
    if (cdz_client_connect(r.addr, NULL, 5000, &c) == CDZ_STATUS_OK) {
        for (int i = 0; i < 4; i++) {
            size_t n = 0;
            uint8_t *f = encode_infer(300 + (uint64_t)i, "tn", "x", x, 2, D, 0, &n);
            cdz_client_send_raw(c, f, n);
            free(f);
        }
        usleep(50000);
        cdz_client_close(c);
    }
    cdz_server_stats st;
    for (int i = 0; i < 100; i++) {
        cdz_server_get_stats(r.srv, &st);
        if (st.inflight == 0) break;
        usleep(20000);
    }
    th_check(s, "disconnect: every job returned and freed", st.inflight == 0 && st.orphaned_jobs >= 4, "inflight %llu orphans %llu",
             (unsigned long long)st.inflight, (unsigned long long)st.orphaned_jobs);
    stop(s, &r);
    /* slow reader: sends big requests, never reads */
    if (!start(s, &r, (srv_opts){.devices = 1, .write_to_ms = 500})) {
        th_end(s);
        return;
    }
    int fd = raw_connect(r.addr);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    cdz_proto_msg_init(m, CDZ_PROTO_HELLO);
    size_t n = 0;
    uint8_t hb[256];
    cdz_proto_encode(m, hb, sizeof hb, &n);
    send(fd, hb, n, MSG_NOSIGNAL);
    static float bigx[4096 * D];
    fill_x(bigx, 4096 * D, 9);
    uint8_t *f = encode_infer(1, "tn", "x", bigx, 4096, D, 0, &n);
    for (int i = 0; i < 64; i++) {
        f[16] = (uint8_t)(i + 1);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 200) <= 0) break;
        if (send(fd, f, n, MSG_NOSIGNAL | MSG_DONTWAIT) <= 0) break;
    }
    free(f);
    bool served = false;
    if (cdz_client_connect(r.addr, NULL, 5000, &c) == CDZ_STATUS_OK) {
        served = infer_rows(c, 1, x, 2, 0, m) == CDZ_STATUS_OK && result_ok(m, x, 2, NULL);
        cdz_client_close(c);
    }
    th_check(s, "others served while a reader stalls", served, "%s", "");
    for (int i = 0; i < 150; i++) {
        cdz_server_get_stats(r.srv, &st);
        if (st.dropped_write_timeout) break;
        usleep(20000);
    }
    th_check(s, "slow reader dropped at the write timeout", st.dropped_write_timeout >= 1, "%llu", (unsigned long long)st.dropped_write_timeout);
    close(fd);
    stop(s, &r);
    th_end(s);
}

/* ---- load: many client threads, every answer checked ---- */
typedef struct load_ctx {
    const char *addr;
    int n_req;
    int seed;
    atomic_int *sent, *ok, *wrong, *lost;
    atomic_int *by_code;
    bool pipelined_drain; /* drain test: accept SHUTTING_DOWN */
} load_ctx;

static void *load_main(void *arg) {
    load_ctx *L = arg;
    cdz_client *c = NULL;
    cdz_proto_msg *m = malloc(sizeof *m);
    if (cdz_client_connect(L->addr, NULL, 20000, &c) != CDZ_STATUS_OK) {
        atomic_fetch_add(L->lost, L->n_req);
        free(m);
        return NULL;
    }
    float x[8 * D];
    for (int i = 0; i < L->n_req; i++) {
        int64_t rows = 1 + (i * 7 + L->seed) % 8;
        fill_x(x, rows * D, (uint64_t)(L->seed * 100003 + i));
        atomic_fetch_add(L->sent, 1);
        cdz_status st = infer_rows(c, (uint64_t)i + 1, x, rows, 0, m);
        if (st == CDZ_STATUS_OK) {
            if (result_ok(m, x, rows, NULL)) atomic_fetch_add(L->ok, 1);
            else atomic_fetch_add(L->wrong, 1);
        } else if (st == CDZ_STATUS_IO) {
            atomic_fetch_add(L->lost, 1);
            break;
        } else {
            atomic_fetch_add(&L->by_code[st], 1);
        }
    }
    cdz_client_close(c);
    free(m);
    return NULL;
}

static void case_load(th_suite *s) {
    enum { THREADS = 64, PER = 160 };
    if (!th_begin(s, "load", "%d threads x %d requests", THREADS, PER)) return;
    running r;
    if (!start(s, &r, (srv_opts){.devices = 2, .max_batch = 64, .queue_size = 4096})) { th_end(s); return; }
    atomic_int sent = 0, ok = 0, wrong = 0, lost = 0;
    atomic_int by_code[CDZ_STATUS_COUNT_] = {0};
    load_ctx L[THREADS];
    pthread_t th[THREADS];
    long rss0 = 0;
    int64_t t0 = cdz_now_ns();
    for (int round = 0; round < 2; round++) {
        int per = round == 0 ? 10 : PER; /* a short warm-up round, then the measured one */
        if (round == 1) { rss0 = rss_kib(); t0 = cdz_now_ns(); sent = ok = wrong = lost = 0; }
        for (int i = 0; i < THREADS; i++) {
            L[i] = (load_ctx){.addr = r.addr, .n_req = per, .seed = i + round * 1000, .sent = &sent, .ok = &ok,
                              .wrong = &wrong, .lost = &lost, .by_code = by_code};
            pthread_create(&th[i], NULL, load_main, &L[i]);
        }
        for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    }
    double secs = (double)(cdz_now_ns() - t0) * 1e-9;
    long rss1 = rss_kib();
    int errs = 0;
    char codes[512] = "";
    for (int i = 1; i < CDZ_STATUS_COUNT_; i++)
        if (by_code[i]) {
            errs += by_code[i];
            snprintf(codes + strlen(codes), sizeof codes - strlen(codes), " %s=%d", cdz_status_name(i), by_code[i]);
        }
    int lost_total = sent - ok - wrong - errs + lost;
    printf("  load: sent %d, answered %d (correct %d, wrong %d), errors %d%s, lost %d; %.1f s, %.0f req/s; RSS %ld -> %ld KiB\n",
           (int)sent, ok + wrong + errs, (int)ok, (int)wrong, errs, codes, lost_total, secs, sent / secs, rss0, rss1);
    th_check(s, "load: >= 10000 sent, all correct, none lost", sent >= 10000 && ok == sent && lost_total == 0,
             "sent %d ok %d lost %d", (int)sent, (int)ok, lost_total);
    th_check(s, "host RSS stable (< 8 MiB growth)", rss1 - rss0 < 8192, "%ld -> %ld KiB", rss0, rss1);
    stop(s, &r);
    th_end(s);
}

static void case_drain(th_suite *s) {
    if (!th_begin(s, "drain", "stop with requests in flight")) return;
    running r;
    if (!start(s, &r, (srv_opts){.devices = 1, .max_batch = 4, .queue_size = 1024, .delay_us = 2000})) { th_end(s); return; }
    enum { CONNS = 4, PER = 50 };
    cdz_client *c[CONNS];
    cdz_proto_msg *m = th_alloc(s, sizeof *m);
    float x[2 * D];
    fill_x(x, 2 * D, 11);
    int connected = 0;
    for (int i = 0; i < CONNS; i++) connected += cdz_client_connect(r.addr, NULL, 5000, &c[i]) == CDZ_STATUS_OK;
    if (connected == CONNS) {
        for (int k = 0; k < PER; k++)
            for (int i = 0; i < CONNS; i++) {
                size_t n = 0;
                uint8_t *f = encode_infer((uint64_t)k + 1, "tn", "x", x, 2, D, 0, &n);
                cdz_client_send_raw(c[i], f, n);
                free(f);
            }
        cdz_server_stop(r.srv); /* SIGTERM's handler does exactly this */
        int ok = 0, shut = 0, other = 0, lost = 0;
        for (int i = 0; i < CONNS; i++)
            for (int k = 0; k < PER; k++) {
                if (cdz_client_recv(c[i], m, 10000) != CDZ_STATUS_OK) { lost++; continue; }
                if (m->h.type == CDZ_PROTO_RESULT && result_ok(m, x, 2, NULL)) ok++;
                else if (m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_SHUTTING_DOWN) shut++;
                else other++;
            }
        printf("  drain: sent %d, results %d, SHUTTING_DOWN %d, other %d, lost %d\n", CONNS * PER, ok, shut, other, lost);
        th_check(s, "drain: every request answered (RESULT or SHUTTING_DOWN)", ok + shut == CONNS * PER && lost == 0,
                 "ok %d shut %d other %d lost %d", ok, shut, other, lost);
        th_check(s, "connections closed after the drain", wait_eof(cdz_client_fd(c[0]), 5000), "%s", "");
    }
    for (int i = 0; i < connected; i++) cdz_client_close(c[i]);
    pthread_join(r.th, NULL);
    th_ok(s, "run returned OK", r.run_status);
    cdz_server_destroy(r.srv);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_server", argc, argv)) return 1;
    signal(SIGPIPE, SIG_IGN);
    cdz_log_set_level(CDZ_LOG_LEVEL_WARN);
    ref_init();
    case_roundtrip(&s, NULL);
    char path[96];
    snprintf(path, sizeof path, "/tmp/cadenza-test-%d.sock", (int)getpid());
    case_roundtrip(&s, path);
    case_hostile(&s);
    case_queue(&s);
    case_drain(&s);
    case_load(&s);
    return th_finish(&s);
}
