/*
 * test_stream.c: streaming separation and server streams.
 *  - models/stream_htdemucs: the incremental apply_model on the tiny HTDemucs
 *    ($CDZ_HTDEMUCS_TINY_WEIGHTS, else seeded random "tiny" weights written here) equals
 *    cdz_separate with the same choice (normalize = false, shifts = 0) within rel-L2 1e-6 for
 *    chunks of 1 s, 0.37 s and one chunk of the whole track; the input held never exceeds
 *    segment + one chunk; the latency (output behind input) is at most segment + stride + chunk;
 *    shifts are refused.
 *  - the server over loopback with testnet (rows in, rows out): an in-order stream equals INFER
 *    of the same rows; a gap, a reorder and a duplicate are INVALID_ARGUMENT naming the
 *    sequence numbers and end the stream; more than max-streams is BUSY; CANCEL ends a stream
 *    with CANCELLED; a disconnect mid-stream frees every stream and job (server counters);
 *    time to the first chunk is measured and bounded.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "stream_htdemucs.h"
#include "../server/protocol.c"
#include "../server/config.c"
#include "../server/server.c"
#include "../server/client.c"

static char tmpdir[200];

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- the incremental separator ---- */
typedef struct fwd_ctx {
    cdz_htdemucs_plan *plan;
    int32_t C, S;
    int64_t F;
} fwd_ctx;

static cdz_status raw_forward(void *user, const float *in, float *out, int32_t b) {
    fwd_ctx *f = user;
    cdz_tensor x, y;
    const cdz_device cpu = {CDZ_DEVICE_CPU, 0};
    CDZ_TRY(cdz_tensor_init(&x, (void *)in, CDZ_DTYPE_F32, cpu, 3, (int64_t[]){b, f->C, f->F}));
    CDZ_TRY(cdz_tensor_init(&y, out, CDZ_DTYPE_F32, cpu, 4, (int64_t[]){b, f->S, f->C, f->F}));
    return cdz_htdemucs_forward(f->plan, &x, &y);
}

static void case_engine(th_suite *s) {
    if (!th_begin(s, "stream-separate", "tiny htdemucs, normalize off, shifts 0")) return;
    char wpath[512];
    const char *env = getenv("CDZ_HTDEMUCS_TINY_WEIGHTS");
    struct stat sb;
    if (env && stat(env, &sb) == 0) {
        snprintf(wpath, sizeof wpath, "%s", env);
    } else {
        snprintf(wpath, sizeof wpath, "%s/tiny.safetensors", tmpdir);
        if (!th_ok(s, "write random tiny weights", cdz_htdemucs_write_random(wpath, "tiny", 7))) {
            th_end(s);
            return;
        }
    }
    cdz_weights *w = NULL;
    cdz_arena *arena = NULL;
    cdz_htdemucs *m = NULL;
    cdz_separator *sep = NULL;
    cdz_audio mix = {0};
    fwd_ctx f = {0};
    if (!th_ok(s, "open weights", cdz_weights_open(wpath, &w))) goto out;
    size_t bytes = 64u << 20;
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        bytes += (size_t)(e->nbytes / cdz_dtype_size(e->dtype)) * 5;
    }
    if (!th_ok(s, "cpu arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, bytes, &arena))) goto out;
    if (!th_ok(s, "load", cdz_htdemucs_load(w, arena, &m))) goto out;
    if (!th_ok(s, "separator", cdz_separator_create(m, s->cpu, 2, &sep))) goto out;
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(m, &info);
    const int32_t C = info.audio_channels, S = info.sources, sr = info.samplerate;
    const int64_t seg = info.member_segment[0];
    const int64_t L = 2 * seg + seg / 3 + 17; /* several chunks and a partial tail */
    if (!th_ok(s, "alloc mix", cdz_audio_alloc(&mix, C, L, sr))) goto out;
    for (int64_t i = 0; i < C * L; i++) mix.data[i] = (float)(0.3 * th_rand_normal(s));
    cdz_separate_options opt;
    cdz_separate_options_default(&opt);
    opt.shifts = 0;
    opt.normalize = false;
    float *ref[CDZ_HTDEMUCS_MAX_SOURCES], *got[CDZ_HTDEMUCS_MAX_SOURCES];
    for (int32_t k = 0; k < S; k++) {
        ref[k] = th_alloc(s, sizeof(float) * (size_t)(C * L));
        got[k] = th_alloc(s, sizeof(float) * (size_t)(C * L));
    }
    if (!th_ok(s, "cdz_separate (offline reference)", cdz_separate(sep, &opt, &mix, ref))) goto out;
    if (!th_ok(s, "plan", cdz_htdemucs_plan_create(m, 0, s->cpu, 1, &f.plan))) goto out;
    f.C = C;
    f.S = S;
    f.F = seg;
    printf("  tiny htdemucs: %d Hz, segment %lld samples, track %lld samples\n", sr, (long long)seg, (long long)L);
    const int64_t chunks[3] = {sr, (int64_t)(0.37 * sr), L};
    const char *names[3] = {"1 s", "0.37 s", "one chunk"};
    for (int ci = 0; ci < 3; ci++) {
        const int64_t ch = chunks[ci] < 1 ? 1 : chunks[ci];
        cdz_stream_sep_config cfg = {.channels = C, .sources = S, .segment = seg, .overlap = opt.overlap,
                                     .transition_power = opt.transition_power, .max_push = ch};
        cdz_stream_sep *ss = NULL;
        if (!th_ok(s, "create", cdz_stream_sep_create(&cfg, &ss))) continue;
        const int64_t stride = (int64_t)((1.0 - opt.overlap) * (double)seg);
        int64_t max_buf = 0, max_lag = 0, first_out_at = -1;
        cdz_status st = CDZ_STATUS_OK;
        for (int64_t p = 0; p < L && st == CDZ_STATUS_OK; p += ch) {
            const int64_t n = p + ch <= L ? ch : L - p;
            st = cdz_stream_sep_push(ss, mix.data + p, n, L);
            if (cdz_stream_sep_buffered(ss) > max_buf) max_buf = cdz_stream_sep_buffered(ss);
            if (st == CDZ_STATUS_OK && p + n == L) st = cdz_stream_sep_end(ss);
            if (st == CDZ_STATUS_OK) st = cdz_stream_sep_drive(ss, raw_forward, &f);
            const int64_t at = cdz_stream_sep_taken(ss), r = cdz_stream_sep_ready(ss);
            float *dst[CDZ_HTDEMUCS_MAX_SOURCES];
            for (int32_t k = 0; k < S; k++) dst[k] = got[k] + at;
            if (st == CDZ_STATUS_OK) st = cdz_stream_sep_take(ss, dst, L, r);
            if (r > 0 && first_out_at < 0) first_out_at = p + n;
            if (p + n < L && p + n - (at + r) > max_lag) max_lag = p + n - (at + r);
        }
        th_ok(s, "stream", st);
        th_check(s, "finished", cdz_stream_sep_finished(ss), "%s", names[ci]);
        for (int32_t k = 0; k < S; k++) {
            double e = rel_l2(got[k], ref[k], (size_t)(C * L));
            th_check(s, "streamed == offline (rel-L2 <= 1e-6)", e <= 1e-6, "chunk %s, %s: rel-L2 %.3g", names[ci],
                     info.source_names[k], e);
        }
        th_check(s, "input held <= segment + one chunk", max_buf <= seg + ch, "chunk %s: held %lld, bound %lld",
                 names[ci], (long long)max_buf, (long long)(seg + ch));
        th_check(s, "latency <= segment + stride + chunk", max_lag <= seg + stride + ch, "chunk %s: %lld samples",
                 names[ci], (long long)max_lag);
        printf("  chunk %-9s: first output after %.3f s of input; output at most %.3f s behind the input; "
               "input held <= %lld samples\n", names[ci], (double)first_out_at / sr, (double)max_lag / sr,
               (long long)max_buf);
        cdz_stream_sep_destroy(ss);
    }
    cdz_stream_sep_config bad = {.channels = C, .sources = S, .segment = seg, .overlap = 0.25,
                                 .transition_power = 1, .max_push = 100, .shifts = 1};
    cdz_stream_sep *ss = NULL;
    th_expect_status(s, "shifts 1 refused", cdz_stream_sep_create(&bad, &ss), CDZ_STATUS_INVALID_ARGUMENT);
    bad.shifts = 0;
    if (th_ok(s, "create", cdz_stream_sep_create(&bad, &ss))) {
        th_expect_status(s, "push over max_push", cdz_stream_sep_push(ss, mix.data, 101, L), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "empty stream end", cdz_stream_sep_end(ss), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_stream_sep_destroy(ss);
    }
out:
    cdz_htdemucs_plan_destroy(f.plan);
    cdz_audio_free(&mix);
    cdz_separator_destroy(sep);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    th_end(s);
}

/* ---- server streams (testnet) ---- */
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

static bool start(th_suite *s, running *r, uint32_t max_streams) {
    cdz_server_config cfg;
    cdz_server_config_default(&cfg);
    snprintf(cfg.listen.host, sizeof cfg.listen.host, "127.0.0.1");
    cfg.listen.port = 0;
    cfg.max_streams = max_streams;
    cdz_sched_config sc;
    memset(&sc, 0, sizeof sc);
    sc.n_devices = 1;
    sc.devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
    sc.workers_per_device = 1;
    sc.n_models = 1;
    snprintf(sc.models[0].name, sizeof sc.models[0].name, "tn");
    sc.models[0].path = "builtin:testnet";
    sc.models[0].max_batch = 64;
    sc.models[0].queue_size = 256;
    memset(r, 0, sizeof *r);
    if (!th_ok(s, "server create", cdz_server_create_with(&cfg, &sc, &r->srv))) return false;
    snprintf(r->addr, sizeof r->addr, "127.0.0.1:%u", cdz_server_port(r->srv));
    pthread_create(&r->th, NULL, run_main, r);
    return true;
}

static void stop(th_suite *s, running *r) {
    cdz_server_stop(r->srv);
    pthread_join(r->th, NULL);
    th_ok(s, "server run returned OK", r->run_status);
    cdz_server_destroy(r->srv);
}

#define D 8
#define ROWS 5

static cdz_tensor rows_tensor(float *x, int64_t rows) {
    cdz_tensor t;
    cdz_tensor_init(&t, x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, (int64_t[]){rows, D});
    return t;
}

/* Send chunks in the order seqs[0..n) and expect an ERROR INVALID_ARGUMENT for the stream
 * whose message names `want` (after `good` RESULTs). */
static void bad_order(th_suite *s, cdz_client *c, cdz_proto_msg *m, const char *what, uint64_t sid,
                      const uint64_t *seqs, int n, int good, const char *want) {
    float x[ROWS * D];
    for (int i = 0; i < ROWS * D; i++) x[i] = (float)th_rand_normal(s);
    cdz_tensor t = rows_tensor(x, ROWS);
    const char *nm = "x";
    uint64_t rid = 100 + sid;
    if (!th_ok(s, "open", cdz_client_stream_open(c, rid, sid, "tn", 0, NULL, 0, m))) return;
    for (int i = 0; i < n; i++) cdz_client_stream_chunk(c, rid, sid, seqs[i], 1, &nm, &t, false, m);
    cdz_proto_stream res;
    cdz_proto_stream_begin(&res, sid, rid);
    int results = 0;
    bool end = false;
    cdz_status st;
    while ((st = cdz_client_stream_recv(c, &res, m, &end, 5000)) == CDZ_STATUS_OK && !end) results++;
    /* chunks before the bad one may still be running when the error is sent: they are dropped */
    th_check(s, what, st == CDZ_STATUS_INVALID_ARGUMENT && results <= good && strstr(cdz_last_message(), want),
             "status %s after %d results: %s", cdz_status_name(st), results, cdz_last_message());
    printf("  %s: %s\n", what, cdz_last_message());
    /* frames after the error find the stream closed: one ERROR each */
    while (cdz_client_recv(c, m, 300) == CDZ_STATUS_OK) {
        th_check(s, "later frames of the ended stream -> ERROR", m->h.type == CDZ_PROTO_ERROR && m->h.request_id == rid,
                 "type %u", m->h.type);
    }
}

static void case_server(th_suite *s) {
    if (!th_begin(s, "stream-server", "testnet over loopback")) return;
    running r;
    if (!start(s, &r, 3)) {
        th_end(s);
        return;
    }
    cdz_client *c = NULL;
    cdz_proto_msg *m = th_alloc(s, sizeof *m);
    if (!th_ok(s, "connect", cdz_client_connect(r.addr, NULL, 5000, &c))) goto out;
    th_check(s, "WELCOME max_streams", cdz_client_max_streams(c) == 3, "%u", cdz_client_max_streams(c));
    /* in order: equals INFER of the same rows, chunk by chunk */
    {
        enum { NCH = 12 };
        float x[NCH][ROWS * D];
        for (int k = 0; k < NCH; k++)
            for (int i = 0; i < ROWS * D; i++) x[k][i] = (float)th_rand_normal(s);
        const char *nm = "x";
        int64_t t0 = cdz_now_ns(), t_first = 0;
        th_ok(s, "open", cdz_client_stream_open(c, 7, 1, "tn", 0, NULL, 0, m));
        cdz_proto_stream res;
        cdz_proto_stream_begin(&res, 1, 7);
        bool end = false;
        int got = 0, same = 0;
        for (int k = 0; k < NCH; k++) {
            cdz_tensor t = rows_tensor(x[k], ROWS);
            th_ok(s, "chunk", cdz_client_stream_chunk(c, 7, 1, (uint64_t)k, 1, &nm, &t, false, m));
            /* one chunk in, one result out: read it before the next (latency per chunk) */
            if (!th_ok(s, "result", cdz_client_stream_recv(c, &res, m, &end, 5000))) break;
            if (!t_first) t_first = cdz_now_ns();
            static float y[ROWS * D];
            bool ok = m->n_tensors == 1 && m->tensors[0].nbytes == sizeof y;
            if (ok) memcpy(y, m->tensors[0].data, sizeof y);
            got++;
            /* the same rows by INFER on a second request id */
            cdz_proto_msg *q = th_alloc(s, sizeof *q);
            if (ok && cdz_client_infer(c, 900 + (uint64_t)k, "tn", 1, &nm, &t, 0, NULL, 0, q, 5000) == CDZ_STATUS_OK &&
                q->tensors[0].nbytes == sizeof y && memcmp(q->tensors[0].data, y, sizeof y) == 0)
                same++;
        }
        th_ok(s, "close", cdz_client_stream_close(c, 7, 1, NCH));
        cdz_status st = cdz_client_stream_recv(c, &res, m, &end, 5000);
        th_check(s, "final RESULT is END_OF_STREAM with no tensors", st == CDZ_STATUS_OK && end && m->n_tensors == 0 &&
                 m->h.sequence == NCH, "st %s end %d n %u seq %llu", cdz_status_name(st), end, m->n_tensors,
                 (unsigned long long)m->h.sequence);
        th_check(s, "every chunk answered, equal to INFER", got == NCH && same == NCH, "%d results, %d equal", got, same);
        double ttfc = (double)(t_first - t0) * 1e-6;
        th_check(s, "time to first chunk < 500 ms", t_first && ttfc < 500, "%.2f ms", ttfc);
        printf("  in-order stream: %d chunks of %d rows, time to first chunk %.2f ms\n", NCH, ROWS, ttfc);
    }
    /* a pipelined stream with END_OF_STREAM on the last chunk */
    {
        float x[ROWS * D];
        for (int i = 0; i < ROWS * D; i++) x[i] = (float)th_rand_normal(s);
        cdz_tensor t = rows_tensor(x, ROWS);
        const char *nm = "x";
        th_ok(s, "open", cdz_client_stream_open(c, 8, 2, "tn", 1, (const char *[]){"y"}, 0, m));
        for (int k = 0; k < 6; k++) cdz_client_stream_chunk(c, 8, 2, (uint64_t)k, 1, &nm, &t, k == 5, m);
        cdz_proto_stream res;
        cdz_proto_stream_begin(&res, 2, 8);
        bool end = false;
        int got = 0;
        cdz_status st;
        while ((st = cdz_client_stream_recv(c, &res, m, &end, 5000)) == CDZ_STATUS_OK && !end) got++;
        th_check(s, "pipelined: 6 RESULTs in order then END_OF_STREAM", st == CDZ_STATUS_OK && end && got == 6,
                 "st %s got %d", cdz_status_name(st), got);
    }
    bad_order(s, c, m, "gap 0,2 -> INVALID_ARGUMENT", 3, (const uint64_t[]){0, 2}, 2, 1, "sequence 2 where 1");
    bad_order(s, c, m, "reorder 1,0 -> INVALID_ARGUMENT", 4, (const uint64_t[]){1, 0}, 2, 0, "sequence 1 where 0");
    bad_order(s, c, m, "duplicate 0,1,1 -> INVALID_ARGUMENT", 5, (const uint64_t[]){0, 1, 1}, 3, 2, "sequence 1 where 2");
    /* the stream is gone after its error: a chunk for it names it */
    th_check(s, "no stream left open after errors", atomic_load(&r.srv->streams_open) == 0, "%llu",
             (unsigned long long)atomic_load(&r.srv->streams_open));
    /* max-streams: the 4th open stream is BUSY (retryable) */
    {
        for (uint64_t i = 0; i < 3; i++) th_ok(s, "open", cdz_client_stream_open(c, 20 + i, 20 + i, "tn", 0, NULL, 0, m));
        cdz_client_stream_open(c, 30, 30, "tn", 0, NULL, 0, m);
        cdz_status st = cdz_client_recv(c, m, 5000);
        th_check(s, "4th stream -> BUSY retryable", st == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_ERROR &&
                 m->code == CDZ_STATUS_BUSY && m->retryable && m->h.stream_id == 30, "type %u code %d: %s", m->h.type,
                 m->code, m->message);
        /* CANCEL ends one with CANCELLED */
        cdz_client_cancel(c, 20);
        st = cdz_client_recv(c, m, 5000);
        th_check(s, "CANCEL -> ERROR CANCELLED", st == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_ERROR &&
                 m->code == CDZ_STATUS_CANCELLED && m->h.stream_id == 20, "code %d", m->code);
        cdz_client_stream_open(c, 31, 31, "tn", 0, NULL, 0, m);
        cdz_client_stream_close(c, 31, 31, 0);
        cdz_proto_stream res;
        cdz_proto_stream_begin(&res, 31, 31);
        bool end = false;
        st = cdz_client_stream_recv(c, &res, m, &end, 5000);
        th_check(s, "room again after the cancel: empty stream ends", st == CDZ_STATUS_OK && end, "%s", cdz_last_message());
        /* unknown model; htdemucs-style models are refused elsewhere (UNSUPPORTED) */
        cdz_client_stream_open(c, 40, 40, "nope", 0, NULL, 0, m);
        st = cdz_client_recv(c, m, 5000);
        th_check(s, "unknown model -> UNKNOWN_MODEL", st == CDZ_STATUS_OK && m->code == CDZ_STATUS_UNKNOWN_MODEL, "code %d", m->code);
    }
    /* disconnect mid-stream: chunks in flight, then gone */
    {
        float x[ROWS * D];
        for (int i = 0; i < ROWS * D; i++) x[i] = (float)th_rand_normal(s);
        cdz_tensor t = rows_tensor(x, ROWS);
        const char *nm = "x";
        for (int k = 0; k < 8; k++) cdz_client_stream_chunk(c, 21, 21, (uint64_t)k, 1, &nm, &t, false, m);
        th_check(s, "streams open before the disconnect", atomic_load(&r.srv->streams_open) == 2, "%llu",
                 (unsigned long long)atomic_load(&r.srv->streams_open));
        cdz_client_close(c);
        c = NULL;
        cdz_server_stats stt;
        for (int i = 0; i < 500; i++) {
            cdz_server_get_stats(r.srv, &stt);
            if (stt.connections_open == 0 && stt.inflight == 0 && atomic_load(&r.srv->streams_open) == 0) break;
            usleep(10000);
        }
        cdz_server_get_stats(r.srv, &stt);
        th_check(s, "disconnect frees streams, jobs, connection", stt.connections_open == 0 && stt.inflight == 0 &&
                 atomic_load(&r.srv->streams_open) == 0, "connections %llu inflight %llu streams %llu",
                 (unsigned long long)stt.connections_open, (unsigned long long)stt.inflight,
                 (unsigned long long)atomic_load(&r.srv->streams_open));
        printf("  disconnect: connections %llu, jobs in flight %llu, streams %llu, orphaned jobs %llu\n",
               (unsigned long long)stt.connections_open, (unsigned long long)stt.inflight,
               (unsigned long long)atomic_load(&r.srv->streams_open), (unsigned long long)stt.orphaned_jobs);
    }
out:
    cdz_client_close(c);
    stop(s, &r);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_stream", argc, argv)) return 1;
    signal(SIGPIPE, SIG_IGN);
    cdz_log_set_level(CDZ_LOG_LEVEL_WARN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cadenza-test-stream-%d", (int)getpid());
    mkdir(tmpdir, 0700);
    case_server(&s);
    case_engine(&s);
    char cmd[260];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return th_finish(&s);
}
