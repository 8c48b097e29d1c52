/*
 * test_client.c: `cadenza client` (server/cmd_client.c) against an in-process server on
 * loopback. testnet: models (JSON), infer (outputs checked against a float64 testnet),
 * typed errors and exit codes, unreachable server, unix socket. health: a fake admin port
 * answering 200/503. HTDemucs (tiny: $CDZ_HTDEMUCS_TINY_WEIGHTS, else seeded random "tiny"
 * weights written here): `client separate` writes stems equal to cdz_separate on the same
 * input (rel-L2 <= 1e-6), --stems writes only those, an unknown stem is a usage error.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "../server/protocol.c"
#include "../server/config.c"
#include "../server/server.c"
#include "../server/client.c"
#include "../server/cmd_client.c"

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

static bool start(th_suite *s, running *r, const char *unix_path, const char *model, const char *path) {
    cdz_server_config cfg;
    cdz_server_config_default(&cfg);
    if (unix_path) {
        cfg.listen.is_unix = true;
        snprintf(cfg.listen.path, sizeof cfg.listen.path, "%s", unix_path);
    } else {
        snprintf(cfg.listen.host, sizeof cfg.listen.host, "127.0.0.1");
        cfg.listen.port = 0;
    }
    cfg.max_frame_bytes = 16u << 20;
    cdz_sched_config sc;
    memset(&sc, 0, sizeof sc);
    sc.n_devices = 1;
    sc.devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
    sc.workers_per_device = 1;
    sc.n_models = 1;
    snprintf(sc.models[0].name, sizeof sc.models[0].name, "%s", model);
    sc.models[0].path = path;
    sc.models[0].max_batch = 4;
    sc.models[0].queue_size = 64;
    memset(r, 0, sizeof *r);
    if (!th_ok(s, "server create", cdz_server_create_with(&cfg, &sc, &r->srv))) return false;
    if (unix_path) snprintf(r->addr, sizeof r->addr, "unix:%s", unix_path);
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

/* Run `cadenza client ARGS...` in-process; the command's stdout is captured into out. */
static int client(char *out, size_t cap, const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "client";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    FILE *f = tmpfile();
    int rc = cdz_client_main(argc, argv, f ? f : stdout);
    if (out) out[0] = 0;
    if (f) {
        rewind(f);
        size_t n = out ? fread(out, 1, cap - 1, f) : 0;
        if (out) out[n] = 0;
        fclose(f);
    }
    return rc;
}

static char tmpdir[128];

static bool write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

static void case_testnet(th_suite *s, const char *unix_path) {
    if (!th_begin(s, "client-testnet", "%s", unix_path ? "unix" : "tcp")) return;
    running r;
    if (!start(s, &r, unix_path, "tn", "builtin:testnet")) {
        th_end(s);
        return;
    }
    char out[4096];
    int rc = client(out, sizeof out, "models", "--server", r.addr, NULL);
    th_check(s, "models exit 0", rc == 0, "rc %d", rc);
    th_check(s, "models lists tn with its specs", strstr(out, "\"name\":\"tn\"") && strstr(out, "\"shape\":[-1,8]") &&
             strstr(out, "\"name\":\"y\""), "got: %s", out);

    const int64_t rows = 5;
    float x[5 * D];
    for (int i = 0; i < rows * D; i++) x[i] = (float)th_rand_uniform(s, -2, 2);
    char xpath[256], spec[320], odir[256], ypath[300];
    snprintf(xpath, sizeof xpath, "%s/x.f32", tmpdir);
    snprintf(odir, sizeof odir, "%s/out-%s", tmpdir, unix_path ? "unix" : "tcp");
    snprintf(ypath, sizeof ypath, "%s/y.f32", odir);
    write_bytes(xpath, x, sizeof x);
    snprintf(spec, sizeof spec, "x=%s:5x8", xpath);
    rc = client(out, sizeof out, "infer", "-m", "tn", "--input", spec, "-o", odir, "--server", r.addr, NULL);
    th_check(s, "infer exit 0", rc == 0, "rc %d", rc);
    th_check(s, "infer prints the output shape", strstr(out, "y: f32[5,8]") != NULL, "got: %s", out);
    float y[5 * D + 1];
    FILE *f = fopen(ypath, "rb");
    size_t n = f ? fread(y, 1, sizeof y, f) : 0;
    if (f) fclose(f);
    th_check(s, "output file has 5x8 f32", n == sizeof(float) * rows * D, "%zu bytes", n);
    double ref[5 * D];
    ref_forward(x, rows, ref);
    th_compare_arrays(s, "infer output vs float64 testnet", y, ref, (size_t)(rows * D), 1e-5,
                      "fp32 MLP of 8x16x8 against a float64 reference");

    /* errors: typed server errors and local ones exit 1, usage errors 2 */
    rc = client(out, sizeof out, "infer", "-m", "nope", "--input", spec, "-o", odir, "--server", r.addr, NULL);
    th_check(s, "unknown model exits 1", rc == 1, "rc %d", rc);
    snprintf(spec, sizeof spec, "z=%s:5x8", xpath);
    rc = client(out, sizeof out, "infer", "-m", "tn", "--input", spec, "--server", r.addr, "-o", odir, NULL);
    th_check(s, "unknown input name exits 1", rc == 1, "rc %d", rc);
    snprintf(spec, sizeof spec, "x=%s:5x7", xpath);
    rc = client(out, sizeof out, "infer", "-m", "tn", "--input", spec, "--server", r.addr, "-o", odir, NULL);
    th_check(s, "file size not matching SHAPE exits 1", rc == 1, "rc %d", rc);
    rc = client(out, sizeof out, "infer", "-m", "tn", "--server", r.addr, NULL);
    th_check(s, "infer without --input is a usage error", rc == 2, "rc %d", rc);
    rc = client(out, sizeof out, "models", "--bogus", "1", NULL);
    th_check(s, "unknown option is a usage error", rc == 2, "rc %d", rc);
    rc = client(out, sizeof out, "separate", xpath, "-m", "tn", "-o", odir, "--server", r.addr, NULL);
    th_check(s, "separate on a non-separation model exits 1", rc == 1, "rc %d", rc);
    stop(s, &r);
    if (!unix_path) {
        /* the server is gone: unreachable names the address */
        rc = client(out, sizeof out, "models", "--server", r.addr, "--timeout", "2", NULL);
        th_check(s, "unreachable server exits 1", rc == 1, "rc %d", rc);
        th_check(s, "the error names the address", strstr(cdz_last_message(), r.addr) != NULL, "message: %s",
                 cdz_last_message());
    }
    th_end(s);
}

/* ---- a fake admin port: answers every request with `status` ---- */
typedef struct fake_admin {
    int fd, status, served;
    pthread_t th;
} fake_admin;

static void *fake_main(void *arg) {
    fake_admin *fa = arg;
    for (int i = 0; i < 2; i++) { /* /healthz, /readyz */
        int c = accept(fa->fd, NULL, NULL);
        if (c < 0) return NULL;
        char buf[1024];
        ssize_t k = recv(c, buf, sizeof buf - 1, 0);
        (void)k;
        char resp[256];
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 6\r\n\r\n%s\n", fa->status,
                         fa->status == 200 ? "ready" : "drain");
        ssize_t w = send(c, resp, (size_t)n, MSG_NOSIGNAL);
        (void)w;
        close(c);
        fa->served++;
    }
    return NULL;
}

static void case_health(th_suite *s) {
    if (!th_begin(s, "client-health", "fake admin port")) return;
    for (int status = 200; status <= 503; status += 303) {
        fake_admin fa = {.status = status};
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        fa.fd = socket(AF_INET, SOCK_STREAM, 0);
        bind(fa.fd, (struct sockaddr *)&sa, sizeof sa);
        listen(fa.fd, 4);
        getsockname(fa.fd, (struct sockaddr *)&sa, &sl);
        char addr[64], out[512];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
        pthread_create(&fa.th, NULL, fake_main, &fa);
        int rc = client(out, sizeof out, "health", "--admin", addr, "--timeout", "5", NULL);
        pthread_join(fa.th, NULL);
        close(fa.fd);
        th_check(s, status == 200 ? "ready: exit 0" : "503: exit 1", rc == (status == 200 ? 0 : 1), "rc %d out %s", rc, out);
        th_check(s, "both endpoints asked", fa.served == 2, "%d", fa.served);
    }
    int rc = client(NULL, 0, "health", "--admin", "127.0.0.1:1", "--timeout", "2", NULL);
    th_check(s, "unreachable admin port: exit 1", rc == 1, "rc %d", rc);
    th_end(s);
}

/* ---- HTDemucs: client separate == cdz_separate ---- */
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void case_separate(th_suite *s) {
    if (!th_begin(s, "client-separate", "tiny htdemucs")) return;
    if (!cdz_audio_can_read()) {
        th_skip(s, "client separate", "built without libsndfile");
        th_end(s);
        return;
    }
    char wpath[512];
    const char *env = getenv("CDZ_HTDEMUCS_TINY_WEIGHTS");
    struct stat sb;
    if (env && stat(env, &sb) == 0) {
        snprintf(wpath, sizeof wpath, "%s", env);
    } else { /* the same configuration, seeded random weights written here */
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
    running r;
    bool started = false;
    cdz_audio mix = {0}, back = {0};
    float *ref[CDZ_HTDEMUCS_MAX_SOURCES] = {0};
    if (!th_ok(s, "open weights", cdz_weights_open(wpath, &w))) goto out;
    size_t bytes = 64u << 20;
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        bytes += (size_t)(e->nbytes / cdz_dtype_size(e->dtype)) * 5;
    }
    if (!th_ok(s, "cpu arena", cdz_arena_create((cdz_device){CDZ_DEVICE_CPU, 0}, bytes, &arena))) goto out;
    if (!th_ok(s, "load", cdz_htdemucs_load(w, arena, &m))) goto out;
    if (!th_ok(s, "separator", cdz_separator_create(m, s->cpu, 4, &sep))) goto out;
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(m, &info);
    const int32_t C = info.audio_channels;
    const int64_t L = info.segment_samples + info.segment_samples / 2 + 17; /* two chunks, a partial one */
    if (!th_ok(s, "alloc mix", cdz_audio_alloc(&mix, C, L, info.samplerate))) goto out;
    for (int64_t i = 0; i < C * L; i++) mix.data[i] = (float)(0.3 * th_rand_normal(s));
    char in_path[300], odir[300], rate[32];
    snprintf(in_path, sizeof in_path, "%s/song.wav", tmpdir);
    snprintf(odir, sizeof odir, "%s/stems", tmpdir);
    snprintf(rate, sizeof rate, "%d", info.samplerate);
    if (!th_ok(s, "write input", cdz_audio_write(in_path, &mix, CDZ_AUDIO_FORMAT_WAV, 32))) goto out;
    if (!th_ok(s, "read input back", cdz_audio_read(in_path, &back))) goto out;
    cdz_separate_options opt;
    cdz_separate_options_default(&opt);
    for (int32_t k = 0; k < info.sources; k++) ref[k] = th_alloc(s, sizeof(float) * (size_t)(C * L));
    if (!th_ok(s, "cdz_separate reference", cdz_separate(sep, &opt, &back, ref))) goto out;

    if (!start(s, &r, NULL, "sep", wpath)) goto out;
    started = true;
    char out_text[2048];
    int rc = client(out_text, sizeof out_text, "separate", in_path, "-m", "sep", "-o", odir, "--server", r.addr,
                    "--bits", "32", "--clip-mode", "none", "--samplerate", rate, NULL);
    th_check(s, "separate exit 0", rc == 0, "rc %d: %s", rc, cdz_last_message());
    for (int32_t k = 0; k < info.sources; k++) {
        char p[700];
        snprintf(p, sizeof p, "%s/song/%s.wav", odir, info.source_names[k]);
        cdz_audio st = {0};
        if (!th_ok(s, p, cdz_audio_read(p, &st))) continue;
        bool shape_ok = st.channels == C && st.frames == L && st.samplerate == info.samplerate;
        th_check(s, "stem shape and rate", shape_ok, "%s: %d ch %lld frames %d Hz", p, st.channels,
                 (long long)st.frames, st.samplerate);
        if (shape_ok) {
            double e = rel_l2(st.data, ref[k], (size_t)(C * L));
            th_check(s, "stem == cdz_separate (rel-L2 <= 1e-6)", e <= 1e-6, "%s: rel-L2 %.3g", info.source_names[k], e);
        }
        cdz_audio_free(&st);
    }
    /* --stems: only those are written */
    char odir2[320], only[64], p2[800];
    snprintf(odir2, sizeof odir2, "%s/stems2", tmpdir);
    snprintf(only, sizeof only, "%s", info.source_names[info.sources - 1]);
    rc = client(out_text, sizeof out_text, "separate", in_path, "-m", "sep", "-o", odir2, "--server", r.addr,
                "--stems", only, "--samplerate", rate, NULL);
    th_check(s, "separate --stems exit 0", rc == 0, "rc %d", rc);
    snprintf(p2, sizeof p2, "%s/song/%s.wav", odir2, only);
    th_check(s, "the requested stem is written", stat(p2, &sb) == 0, "%s", p2);
    snprintf(p2, sizeof p2, "%s/song/%s.wav", odir2, info.source_names[0]);
    th_check(s, "other stems are not", stat(p2, &sb) != 0, "%s exists", p2);
    rc = client(out_text, sizeof out_text, "separate", in_path, "-m", "sep", "-o", odir2, "--server", r.addr,
                "--stems", "kazoo", NULL);
    th_check(s, "unknown stem is a usage error", rc == 2, "rc %d", rc);
    snprintf(p2, sizeof p2, "%s/missing.wav", tmpdir);
    rc = client(out_text, sizeof out_text, "separate", p2, "-m", "sep", "-o", odir2, "--server", r.addr, NULL);
    th_check(s, "missing input file exits 1", rc == 1, "rc %d", rc);
out:
    if (started) stop(s, &r);
    cdz_audio_free(&mix);
    cdz_audio_free(&back);
    cdz_separator_destroy(sep);
    cdz_htdemucs_free(m);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_client", argc, argv)) return 1;
    signal(SIGPIPE, SIG_IGN);
    cdz_log_set_level(CDZ_LOG_LEVEL_WARN);
    ref_init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cadenza-test-client-%d", (int)getpid());
    mkdir(tmpdir, 0700);
    case_testnet(&s, NULL);
    char path[160];
    snprintf(path, sizeof path, "%s/s.sock", tmpdir);
    case_testnet(&s, path);
    case_health(&s);
    case_separate(&s);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return th_finish(&s);
}
