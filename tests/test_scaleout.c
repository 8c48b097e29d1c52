/*
 * test_scaleout.c: two `cadenza serve` processes behind HAProxy on loopback (docs/deploy.md).
 *
 *   1. Two servers (testnet on the CPU) with their admin ports; HAProxy in mode tcp with
 *      `option httpchk GET /readyz` against the admin ports (tests/scaleout/haproxy.cfg.in).
 *   2. Load: 16 client threads send small INFERs through HAProxy with the C client; a third of
 *      the way in, one server is killed with SIGKILL. A request that fails with IO (the
 *      connection died) or a retryable error is sent again on a new connection (bounded
 *      retries); every answer is compared with a float64 testnet. Ledger: sent = ok, none
 *      lost, no final error; HAProxy marks the dead server DOWN.
 *   3. Drain: large requests are queued on the surviving server, then SIGTERM: /readyz answers
 *      503 while it drains, a request on an open connection gets SHUTTING_DOWN (retryable),
 *      HAProxy marks it DOWN by its health check (L7 status) while it is still running, a new
 *      connection through HAProxy is refused at once (nothing hangs), the queued requests
 *      are all answered, and the server exits 0.
 * Skips (visibly) when haproxy is not installed or the binary has no admin port. Children run
 * in their own process groups with PDEATHSIG and are killed on every exit path; a watchdog
 * ends the program after 60 s whatever happens.
 *
 * Binary: $CADENZA_BIN, else BUILD/cadenza next to BUILD/tests/test_scaleout.
 * HAProxy: $HAPROXY, else `haproxy` on PATH, /usr/sbin, /usr/local/sbin.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../server/protocol.c"
#include "../server/client.c"

#define D 8
#define H 16
enum { THREADS = 16, PER_THREAD = 250, MAX_ATTEMPTS = 12, BIG_CONNS = 4, BIG_PER_CONN = 10 };
#define BIG_ROWS (96 * 1024)
#define WATCHDOG_S 60

/* ---------------------------------------------------------------- time */
static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- testnet reference, float64
 * (models/testnet.c: seeded weights, exact gelu; the same as tests/test_server.c) */
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
static void ref_row(const float *x, double *y) {
    double hid[H];
    for (int j = 0; j < H; j++) {
        double v = B1[j];
        for (int k = 0; k < D; k++) v += W1[j * D + k] * x[k];
        hid[j] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    }
    for (int i = 0; i < D; i++) {
        double v = B2[i];
        for (int j = 0; j < H; j++) v += W2[i * H + j] * hid[j];
        y[i] = v;
    }
}
/* The RESULT holds y[rows, D] matching the reference on the first `check_rows` rows and finite
 * everywhere. */
static bool result_ok(const cdz_proto_msg *m, const float *x, int64_t rows, int64_t check_rows) {
    if (m->h.type != CDZ_PROTO_RESULT || m->n_tensors != 1 || strcmp(m->tensors[0].name, "y") ||
        m->tensors[0].dtype != CDZ_DTYPE_F32 || m->tensors[0].ndim != 2 || m->tensors[0].dims[0] != rows ||
        m->tensors[0].dims[1] != D)
        return false;
    const float *y = m->tensors[0].data;
    for (int64_t i = 0; i < rows * D; i++)
        if (!isfinite(y[i])) return false;
    for (int64_t r = 0; r < check_rows && r < rows; r++) {
        double ref[D];
        ref_row(x + r * D, ref);
        for (int i = 0; i < D; i++)
            if (!(fabs(y[r * D + i] - ref[i]) <= 1e-4 * (1 + fabs(ref[i])))) return false;
    }
    return true;
}
static void fill_x(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((double)(sm64(&seed) >> 11) / 9007199254740992.0 * 4 - 2);
}

/* ---------------------------------------------------------------- child processes */
enum { KID_A, KID_B, KID_HAPROXY, N_KIDS };
static volatile pid_t g_kid[N_KIDS]; /* 0: not running (reaped) */
static char g_dir[128];

static void kill_kids(void) { /* async-signal-safe */
    for (int i = 0; i < N_KIDS; i++)
        if (g_kid[i] > 0) kill(-g_kid[i], SIGKILL);
}
static void reap_kids(void) {
    kill_kids();
    for (int i = 0; i < N_KIDS; i++)
        if (g_kid[i] > 0) {
            waitpid(g_kid[i], NULL, 0);
            g_kid[i] = 0;
        }
}
static void on_watchdog(int sig) {
    (void)sig;
    kill_kids();
    static const char msg[] = "test_scaleout: watchdog: past the global deadline, children killed\n"
                              "0 passed, 1 failed, 0 skipped\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

/* fork + exec argv with stdout/stderr to `log`, in a new process group, killed if we die */
static pid_t spawn(char *const argv[], const char *log) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with kill(-pid) */
    return pid;
}

/* Wait up to timeout_ms for kid i to exit; returns its wait status, -1 on timeout. */
static int wait_kid(int i, int timeout_ms) {
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(g_kid[i], &st, WNOHANG);
        if (r == g_kid[i]) {
            g_kid[i] = 0;
            return st;
        }
        if (now_ms() > end) return -1;
        sleep_ms(10);
    }
}
static bool kid_alive(int i) {
    if (g_kid[i] <= 0) return false;
    int st;
    pid_t r = waitpid(g_kid[i], &st, WNOHANG);
    if (r == g_kid[i]) {
        g_kid[i] = 0;
        return false;
    }
    return true;
}

static void print_tail(const char *path, int max_lines) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *lines[64] = {0};
    int n = 0;
    char buf[512];
    if (max_lines > 64) max_lines = 64;
    while (fgets(buf, sizeof buf, f)) {
        free(lines[n % max_lines]);
        lines[n % max_lines] = strdup(buf);
        n++;
    }
    fclose(f);
    fprintf(stderr, "  --- last lines of %s\n", path);
    for (int k = n > max_lines ? n - max_lines : 0; k < n; k++) fprintf(stderr, "  | %s", lines[k % max_lines]);
    for (int k = 0; k < max_lines; k++) free(lines[k]);
}

/* ---------------------------------------------------------------- finding programs */
static bool is_exec(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}
static bool find_haproxy(char *out, size_t cap) {
    const char *env = getenv("HAPROXY");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return is_exec(out);
    }
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/usr/local/sbin:/sbin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/haproxy", d);
        if (is_exec(out)) return true;
    }
    return false;
}
static bool exe_dir(char *out, size_t cap) { /* BUILD/tests */
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0) return false;
    out[n] = 0;
    char *slash = strrchr(out, '/');
    if (!slash) return false;
    *slash = 0;
    return true;
}
static bool find_cadenza(char *out, size_t cap) {
    const char *env = getenv("CADENZA_BIN");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return is_exec(out);
    }
    char dir[900];
    if (!exe_dir(dir, sizeof dir)) return false;
    snprintf(out, cap, "%s/../cadenza", dir);
    return is_exec(out);
}
/* tests/scaleout/haproxy.cfg.in: from the working directory (the repository root under `make
 * test`) or above the program's folder. */
static char *read_template(void) {
    char cands[6][1024];
    int n = 0;
    snprintf(cands[n++], sizeof cands[0], "tests/scaleout/haproxy.cfg.in");
    char dir[900];
    if (exe_dir(dir, sizeof dir)) {
        const char *up = "";
        for (int k = 0; k < 4; k++) {
            up = k == 0 ? "/.." : k == 1 ? "/../.." : k == 2 ? "/../../.." : "/../../../..";
            snprintf(cands[n++], sizeof cands[0], "%s%s/tests/scaleout/haproxy.cfg.in", dir, up);
        }
    }
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(cands[i], "r");
        if (!f) continue;
        char *buf = calloc(1, 1 << 16);
        size_t len = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
        fclose(f);
        if (buf && len > 0) return buf;
        free(buf);
    }
    return NULL;
}
/* Replace every @KEY@ of tmpl; writes the result to path. */
static bool write_config(const char *tmpl, const char *path, const char *const *keys, const char *const *vals, int n) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    for (const char *p = tmpl; *p;) {
        bool done = false;
        if (*p == '@')
            for (int i = 0; i < n; i++) {
                size_t kl = strlen(keys[i]);
                if (!strncmp(p + 1, keys[i], kl) && p[1 + kl] == '@') {
                    fputs(vals[i], f);
                    p += kl + 2;
                    done = true;
                    break;
                }
            }
        if (!done) fputc(*p++, f);
    }
    return fclose(f) == 0;
}

/* ---------------------------------------------------------------- loopback helpers */
static int free_port(int *hold_fd) { /* the socket is kept open until all ports are picked */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *hold_fd = fd;
    return ntohs(a.sin_port);
}

static int connect_timeout(struct sockaddr *a, socklen_t al, int timeout_ms) {
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, a, al) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
        close(fd);
        return -1;
    }
    return fd;
}
/* Send `req` and read until EOF (bounded by timeout_ms and cap); returns bytes read, -1 on error. */
static int talk(int fd, const char *req, char *out, size_t cap, int timeout_ms) {
    int64_t end = now_ms() + timeout_ms;
    size_t len = strlen(req), off = 0, got = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) return -1;
        if (w > 0) off += (size_t)w;
        else sleep_ms(1);
        if (now_ms() > end) return -1;
    }
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0) return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) != 1) return -1;
        ssize_t r = recv(fd, out + got, cap - 1 - got, 0);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (got >= cap - 1) break;
    }
    out[got] = 0;
    return (int)got;
}
/* GET http://127.0.0.1:port/path: the status code (body in out), -1 when nothing answers. */
static int http_get(int port, const char *path, char *out, size_t cap, int timeout_ms) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = connect_timeout((struct sockaddr *)&a, sizeof a, timeout_ms);
    if (fd < 0) return -1;
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    int n = talk(fd, req, out, cap, timeout_ms);
    close(fd);
    int code = -1;
    if (n > 12 && sscanf(out, "HTTP/1.%*d %d", &code) != 1) code = -1;
    return code;
}

/* HAProxy's `show stat` for backend server `sv`: status ("UP", "DOWN", ...) and last check. */
typedef struct sv_state {
    char status[32], check[32];
    long stot; /* sessions sent to it so far */
} sv_state;
static bool haproxy_state(const char *sv, sv_state *out) {
    memset(out, 0, sizeof *out);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/haproxy.sock", g_dir);
    int fd = connect_timeout((struct sockaddr *)&a, sizeof a, 1000);
    if (fd < 0) return false;
    static char buf[1 << 16];
    int n = talk(fd, "show stat\n", buf, sizeof buf, 1000);
    close(fd);
    if (n <= 0 || strncmp(buf, "# ", 2)) return false;
    /* the header names the columns */
    int c_px = -1, c_sv = -1, c_status = -1, c_check = -1, c_stot = -1;
    char *line_end = strchr(buf, '\n');
    if (!line_end) return false;
    *line_end = 0;
    int col = 0;
    for (char *save = NULL, *t = strtok_r(buf + 2, ",", &save); t; t = strtok_r(NULL, ",", &save), col++) {
        if (!strcmp(t, "pxname")) c_px = col;
        else if (!strcmp(t, "svname")) c_sv = col;
        else if (!strcmp(t, "status")) c_status = col;
        else if (!strcmp(t, "check_status")) c_check = col;
        else if (!strcmp(t, "stot")) c_stot = col;
    }
    if (c_px < 0 || c_sv < 0 || c_status < 0 || c_check < 0 || c_stot < 0) return false;
    for (char *line = line_end + 1; *line;) {
        char *next = strchr(line, '\n');
        if (next) *next = 0;
        char *f[128];
        int nf = 0;
        for (char *p = line; nf < 128;) { /* fields may be empty: no strtok */
            f[nf++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = 0;
            p = comma + 1;
        }
        if (nf > c_check && nf > c_status && nf > c_stot && !strcmp(f[c_px], "cadenza_servers") &&
            !strcmp(f[c_sv], sv)) {
            snprintf(out->status, sizeof out->status, "%s", f[c_status]);
            snprintf(out->check, sizeof out->check, "%s", f[c_check]);
            out->stot = atol(f[c_stot]);
            return true;
        }
        if (!next) break;
        line = next + 1;
    }
    return false;
}
/* Poll until server `sv` has the status `want` ("UP", "DOWN") and a last check starting with
 * `check` (NULL: any), bounded. */
static bool wait_haproxy(const char *sv, const char *want, const char *check, int timeout_ms, sv_state *st) {
    int64_t end = now_ms() + timeout_ms;
    do {
        if (haproxy_state(sv, st) && !strcmp(st->status, want) && (!check || !strncmp(st->check, check, strlen(check))))
            return true;
        sleep_ms(20);
    } while (now_ms() < end);
    return false;
}

/* ---------------------------------------------------------------- phase 2: load with a kill */
typedef struct ledger {
    atomic_int sent, ok, wrong, lost, retried, reconnects, final_err;
    atomic_int attempt_err[CDZ_STATUS_COUNT_]; /* failed attempts by code (then retried) */
    atomic_int err_by_code[CDZ_STATUS_COUNT_]; /* final errors by code */
    atomic_int ok_after_reconnect;
    int64_t deadline_ms;
} ledger;

typedef struct load_arg {
    const char *addr;
    int id;
    ledger *L;
} load_arg;

static cdz_status infer_rows(cdz_client *c, uint64_t rid, const float *x, int64_t rows, cdz_proto_msg *reply) {
    cdz_tensor t = cdz_tensor_make((void *)x, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2, rows, (int64_t)D);
    const char *names[1] = {"x"};
    return cdz_client_infer(c, rid, "tn", 1, names, &t, 0, NULL, 0, reply, 5000);
}

static void *load_main(void *arg) {
    load_arg *A = arg;
    ledger *L = A->L;
    cdz_client *c = NULL;
    cdz_proto_msg *m = malloc(sizeof *m);
    float x[8 * D];
    bool reconnected = false;
    for (int i = 0; i < PER_THREAD && m; i++) {
        int64_t rows = 1 + (i * 7 + A->id) % 8;
        fill_x(x, rows * D, (uint64_t)(A->id * 100003 + i));
        atomic_fetch_add(&L->sent, 1);
        bool done = false;
        for (int attempt = 0; attempt < MAX_ATTEMPTS && !done && now_ms() < L->deadline_ms; attempt++) {
            if (attempt > 0) {
                atomic_fetch_add(&L->retried, 1);
                sleep_ms(20 * attempt); /* back off: the balancer needs a moment to notice */
            }
            if (!c) {
                cdz_status cs = cdz_client_connect(A->addr, NULL, 3000, &c);
                if (cs != CDZ_STATUS_OK) {
                    atomic_fetch_add(&L->attempt_err[cs], 1);
                    c = NULL;
                    continue;
                }
                if (i > 0 || attempt > 0) {
                    atomic_fetch_add(&L->reconnects, 1);
                    reconnected = true;
                }
            }
            cdz_status st = infer_rows(c, (uint64_t)i + 1, x, rows, m);
            if (st == CDZ_STATUS_OK) {
                if (result_ok(m, x, rows, rows)) {
                    atomic_fetch_add(&L->ok, 1);
                    if (reconnected) atomic_fetch_add(&L->ok_after_reconnect, 1);
                } else {
                    atomic_fetch_add(&L->wrong, 1);
                }
                done = true;
            } else if (st == CDZ_STATUS_IO || cdz_last_error()->retryable) {
                /* the connection (or its server) is gone or going: a new one goes elsewhere */
                atomic_fetch_add(&L->attempt_err[st], 1);
                cdz_client_close(c);
                c = NULL;
            } else {
                atomic_fetch_add(&L->err_by_code[st], 1);
                atomic_fetch_add(&L->final_err, 1);
                fprintf(stderr, "  thread %d request %d: %s: %s\n", A->id, i, cdz_status_name(st), cdz_last_message());
                done = true;
            }
        }
        if (!done) atomic_fetch_add(&L->lost, 1);
    }
    cdz_client_close(c);
    free(m);
    return NULL;
}

static void print_codes(const char *label, atomic_int *by_code) {
    printf("    %s:", label);
    int any = 0;
    for (int k = 0; k < CDZ_STATUS_COUNT_; k++) {
        int v = atomic_load(&by_code[k]);
        if (v) {
            printf(" %s=%d", cdz_status_name((cdz_status)k), v);
            any = 1;
        }
    }
    printf("%s\n", any ? "" : " none");
}

/* ---------------------------------------------------------------- the test */
static void run_scaleout(th_suite *s) {
    char haproxy[1024], cadenza[1024];
    if (!find_haproxy(haproxy, sizeof haproxy)) {
        printf("  SKIP  scale-out behind haproxy: haproxy is not installed (apt-get install haproxy)\n");
        th_skip(s, "scale-out behind haproxy", "haproxy is not installed (apt-get install haproxy)");
        return;
    }
    if (!th_begin(s, "scaleout", "2 servers behind haproxy, %d threads x %d requests, kill -9 + drain",
                  THREADS, PER_THREAD))
        return;
    bool have_bin = find_cadenza(cadenza, sizeof cadenza);
    th_check(s, "cadenza binary found", have_bin, "%s (else set CADENZA_BIN)", cadenza);
    char *tmpl = read_template();
    th_check(s, "haproxy template tests/scaleout/haproxy.cfg.in", tmpl != NULL, "%s", tmpl ? "read" : "not found");
    snprintf(g_dir, sizeof g_dir, "/tmp/cdz-scaleout-XXXXXX");
    bool have_dir = mkdtemp(g_dir) != NULL;
    th_check(s, "temporary folder", have_dir, "%s", have_dir ? g_dir : strerror(errno));
    if (!have_bin || !tmpl || !have_dir) {
        if (have_dir) rmdir(g_dir);
        free(tmpl);
        th_end(s);
        return;
    }
    int64_t t_start = now_ms();
    bool keep_logs = false;
    char logs[N_KIDS][256];
    for (int k = 0; k < N_KIDS; k++)
        snprintf(logs[k], sizeof logs[k], "%s/%s.log", g_dir, k == KID_A ? "server-a" : k == KID_B ? "server-b" : "haproxy");
    static char body[1 << 16];

    /* ---- ports: frontend, a, a-admin, b, b-admin (held open until all are chosen) */
    int hold[5], port[5];
    bool ports_ok = true;
    for (int i = 0; i < 5; i++) {
        port[i] = free_port(&hold[i]);
        if (port[i] < 0) ports_ok = false;
    }
    for (int i = 0; i < 5; i++)
        if (port[i] >= 0) close(hold[i]);
    th_check(s, "free loopback ports", ports_ok, "%s", ports_ok ? "5 picked" : "bind 127.0.0.1:0 failed");
    if (!ports_ok) goto out;
    const int FRONT = port[0], A_PORT = port[1], A_ADMIN = port[2], B_PORT = port[3], B_ADMIN = port[4];

    /* ---- two servers */
    for (int k = 0; k < 2; k++) {
        char listen[64], admin[64];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", k ? B_PORT : A_PORT);
        snprintf(admin, sizeof admin, "127.0.0.1:%d", k ? B_ADMIN : A_ADMIN);
        char *argv[] = {cadenza, "serve", "--model", "tn=builtin:testnet", "--devices", "cpu",
                        "--listen", listen, "--admin", admin, "--drain-timeout", "20s",
                        "--log-level", "info", NULL};
        g_kid[k] = spawn(argv, logs[k]);
    }
    bool ready[2] = {false, false};
    int64_t t_ready0 = now_ms();
    for (int64_t end = now_ms() + 15000; now_ms() < end && !(ready[0] && ready[1]);) {
        for (int k = 0; k < 2; k++)
            if (!ready[k]) ready[k] = http_get(k ? B_ADMIN : A_ADMIN, "/readyz", body, sizeof body, 500) == 200;
        if (!kid_alive(KID_A) || !kid_alive(KID_B)) break;
        sleep_ms(20);
    }
    if (!(ready[0] && ready[1])) {
        /* a build without libmicrohttpd has no admin port: nothing to health-check */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "grep -q 'admin port disabled' %s/server-a.log", g_dir);
        if (system(cmd) == 0) {
            printf("  SKIP  scale-out behind haproxy: cadenza was built without libmicrohttpd (no admin port)\n");
            th_skip(s, "scale-out behind haproxy", "cadenza was built without libmicrohttpd (no admin port)");
            goto out;
        }
    }
    th_check(s, "both servers ready (/readyz 200)", ready[0] && ready[1], "a=%d b=%d after %lld ms", ready[0],
             ready[1], (long long)(now_ms() - t_ready0));
    if (!(ready[0] && ready[1])) {
        keep_logs = true;
        goto out;
    }
    printf("  servers ready in %lld ms (a %d/%d, b %d/%d)\n", (long long)(now_ms() - t_ready0), A_PORT, A_ADMIN,
           B_PORT, B_ADMIN);

    /* ---- haproxy */
    {
        char sf[16], sa[16], saa[16], sb[16], sba[16];
        snprintf(sf, sizeof sf, "%d", FRONT);
        snprintf(sa, sizeof sa, "%d", A_PORT);
        snprintf(saa, sizeof saa, "%d", A_ADMIN);
        snprintf(sb, sizeof sb, "%d", B_PORT);
        snprintf(sba, sizeof sba, "%d", B_ADMIN);
        const char *keys[] = {"DIR", "FRONT_PORT", "A_PORT", "A_ADMIN", "B_PORT", "B_ADMIN"};
        const char *vals[] = {g_dir, sf, sa, saa, sb, sba};
        char cfg[256];
        snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", g_dir);
        bool wrote = write_config(tmpl, cfg, keys, vals, 6);
        th_check(s, "haproxy config written", wrote, "%s", cfg);
        char *argv[] = {haproxy, "-db", "-f", cfg, NULL};
        g_kid[KID_HAPROXY] = spawn(argv, logs[KID_HAPROXY]);
    }
    sv_state sa_st, sb_st;
    /* UP with a passed /readyz check (HAProxy starts servers UP before checking them) */
    bool up = wait_haproxy("a", "UP", "L7OK", 10000, &sa_st) && wait_haproxy("b", "UP", "L7OK", 5000, &sb_st);
    th_check(s, "haproxy: both servers UP, /readyz checks pass", up, "a=%s/%s b=%s/%s", sa_st.status, sa_st.check, sb_st.status,
             sb_st.check);
    if (!up) {
        keep_logs = true;
        goto out;
    }
    char front[64];
    snprintf(front, sizeof front, "127.0.0.1:%d", FRONT);

    /* ---- phase 2: load through haproxy; kill -9 server a a third of the way in */
    {
        static ledger L;
        memset(&L, 0, sizeof L);
        L.deadline_ms = now_ms() + 20000;
        load_arg args[THREADS];
        pthread_t th[THREADS];
        int64_t t0 = now_ms();
        for (int i = 0; i < THREADS; i++) {
            args[i] = (load_arg){.addr = front, .id = i, .L = &L};
            pthread_create(&th[i], NULL, load_main, &args[i]);
        }
        const int total = THREADS * PER_THREAD;
        while (atomic_load(&L.ok) < total / 3 && now_ms() < L.deadline_ms) sleep_ms(2);
        haproxy_state("a", &sa_st);
        haproxy_state("b", &sb_st);
        long a_sessions = sa_st.stot, b_sessions = sb_st.stot;
        int ok_at_kill = atomic_load(&L.ok);
        int64_t t_kill = now_ms();
        kill(-g_kid[KID_A], SIGKILL);
        int a_status = wait_kid(KID_A, 5000);
        th_check(s, "server a killed by SIGKILL", a_status >= 0 && WIFSIGNALED(a_status) &&
                 WTERMSIG(a_status) == SIGKILL, "wait status %d", a_status);
        bool a_down = wait_haproxy("a", "DOWN", NULL, 5000, &sa_st);
        int64_t t_down = now_ms();
        for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
        int64_t t1 = now_ms();
        th_check(s, "haproxy marks the killed server DOWN", a_down, "a=%s/%s", sa_st.status, sa_st.check);
        int sent = atomic_load(&L.sent), ok = atomic_load(&L.ok);
        printf("  ledger (kill -9 of server a after %d answers, %lld ms into the run):\n", ok_at_kill,
               (long long)(t_kill - t0));
        printf("    sent %d  ok %d  wrong %d  lost %d  final errors %d\n", sent, ok, atomic_load(&L.wrong),
               atomic_load(&L.lost), atomic_load(&L.final_err));
        printf("    retried attempts %d  reconnects %d  answered after a reconnect %d\n", atomic_load(&L.retried),
               atomic_load(&L.reconnects), atomic_load(&L.ok_after_reconnect));
        print_codes("failed attempts (then retried)", L.attempt_err);
        print_codes("final errors by code", L.err_by_code);
        printf("    haproxy sessions before the kill: a %ld, b %ld; a DOWN (%s) %lld ms after the kill;"
               " run %lld ms\n", a_sessions, b_sessions, sa_st.check, (long long)(t_down - t_kill),
               (long long)(t1 - t0));
        th_check(s, "both servers took connections before the kill", a_sessions > 0 && b_sessions > 0,
                 "a %ld b %ld", a_sessions, b_sessions);
        th_check(s, "every request sent", sent == total, "sent %d of %d", sent, total);
        th_check(s, "every request answered OK (after retries)", ok == total, "ok %d of %d", ok, total);
        th_check(s, "no wrong answer", atomic_load(&L.wrong) == 0, "wrong %d", atomic_load(&L.wrong));
        th_check(s, "none lost", atomic_load(&L.lost) == 0, "lost %d", atomic_load(&L.lost));
        th_check(s, "no non-retryable error", atomic_load(&L.final_err) == 0, "%d", atomic_load(&L.final_err));
        th_check(s, "the kill was seen and retried on the other server",
                 atomic_load(&L.retried) > 0 && atomic_load(&L.ok_after_reconnect) > 0, "retried %d",
                 atomic_load(&L.retried));
        if (ok != total) keep_logs = true;
    }

    /* ---- phase 3: drain of server b under queued work */
    {
        static float xbig[BIG_ROWS * D];
        fill_x(xbig, (int64_t)BIG_ROWS * D, 42);
        cdz_client *big[BIG_CONNS] = {0}, *probe = NULL;
        cdz_proto_msg *m = malloc(sizeof *m);
        bool conns = m != NULL;
        for (int i = 0; i < BIG_CONNS && conns; i++) conns = cdz_client_connect(front, NULL, 3000, &big[i]) == CDZ_STATUS_OK;
        if (conns) conns = cdz_client_connect(front, NULL, 3000, &probe) == CDZ_STATUS_OK;
        th_check(s, "drain: connections through haproxy", conns, "%s", cdz_last_message());
        int queued = 0;
        for (int i = 0; i < BIG_CONNS && conns; i++)
            for (int j = 0; j < BIG_PER_CONN; j++) {
                cdz_proto_msg_init(m, CDZ_PROTO_INFER);
                m->h.request_id = (uint64_t)j + 1;
                snprintf(m->model, sizeof m->model, "tn");
                m->n_tensors = 1;
                cdz_tensor t = cdz_tensor_make(xbig, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2,
                                               (int64_t)BIG_ROWS, (int64_t)D);
                if (cdz_proto_tensor_set(&m->tensors[0], "x", &t) == CDZ_STATUS_OK && cdz_client_send(big[i], m) == CDZ_STATUS_OK)
                    queued++;
            }
        th_check(s, "drain: large requests sent", queued == BIG_CONNS * BIG_PER_CONN, "%d", queued);
        /* wait until server b has them (queue depth on /metrics), then SIGTERM */
        bool in_queue = false;
        for (int64_t end = now_ms() + 5000; conns && now_ms() < end && !in_queue; sleep_ms(10)) {
            if (http_get(B_ADMIN, "/metrics", body, sizeof body, 1000) != 200) continue;
            char *q = strstr(body, "\ncadenza_queue_depth{model=\"tn\"} ");
            in_queue = q && atof(q + strlen("\ncadenza_queue_depth{model=\"tn\"} ")) >= 2;
        }
        th_check(s, "drain: work queued on server b (cadenza_queue_depth >= 2)", in_queue, "%s", in_queue ? "yes" : "no");
        int64_t t_term = now_ms();
        kill(g_kid[KID_B], SIGTERM);
        int code = 0;
        int64_t t_503 = -1;
        for (int64_t end = now_ms() + 5000; now_ms() < end; sleep_ms(5)) {
            code = http_get(B_ADMIN, "/readyz", body, sizeof body, 500);
            if (code != 200) break;
        }
        if (code == 503) t_503 = now_ms();
        const char *rbody = code > 0 && strstr(body, "\r\n\r\n") ? strstr(body, "\r\n\r\n") + 4 : "";
        th_check(s, "drain: /readyz 503 draining", code == 503 && !strncmp(rbody, "draining", 8),
                 "got %d %.40s", code, rbody);
        /* an open connection: new work is refused, retryable */
        cdz_status pst = CDZ_STATUS_INTERNAL;
        bool pretry = false;
        if (probe) {
            float xs[D];
            fill_x(xs, D, 7);
            pst = infer_rows(probe, 99, xs, 1, m);
            pretry = cdz_last_error()->retryable;
        }
        th_check(s, "drain: a new request gets SHUTTING_DOWN (retryable)", pst == CDZ_STATUS_SHUTTING_DOWN && pretry,
                 "%s retryable=%d", cdz_status_name(pst), pretry);
        /* haproxy stops routing because of the health check while b still runs */
        bool b_down = wait_haproxy("b", "DOWN", "L7STS", 5000, &sb_st);
        int64_t t_bdown = now_ms();
        bool b_alive = kid_alive(KID_B);
        th_check(s, "drain: haproxy marks b DOWN by its health check while b drains",
                 b_down && b_alive, "b=%s/%s alive=%d", sb_st.status,
                 sb_st.check, b_alive);
        /* no server left: a new connection is refused at once, it does not hang */
        cdz_client *late = NULL;
        int64_t t_late = now_ms();
        cdz_status lst = cdz_client_connect(front, NULL, 3000, &late);
        int64_t late_ms = now_ms() - t_late;
        cdz_client_close(late);
        th_check(s, "drain: no server UP: a new connection fails fast", lst != CDZ_STATUS_OK && late_ms < 2500,
                 "%s after %lld ms", cdz_status_name(lst), (long long)late_ms);
        /* every queued request is answered */
        /* every large request is answered: OK when the server had it before SIGTERM, else
         * SHUTTING_DOWN (retryable; a frame still in transit when the drain began) */
        int big_ok = 0, big_shut = 0, other = 0;
        for (int i = 0; i < BIG_CONNS && conns; i++)
            for (int j = 0; j < BIG_PER_CONN; j++) {
                cdz_status rs = cdz_client_recv(big[i], m, 15000);
                if (rs != CDZ_STATUS_OK) break;
                if (result_ok(m, xbig, BIG_ROWS, 64)) big_ok++;
                else if (m->h.type == CDZ_PROTO_ERROR && m->code == CDZ_STATUS_SHUTTING_DOWN && m->retryable) big_shut++;
                else {
                    other++;
                    fprintf(stderr, "  large request %d/%d: %s %s: %s\n", i, j, cdz_proto_type_name(m->h.type),
                            m->h.type == CDZ_PROTO_ERROR ? cdz_status_name(m->code) : "", m->message);
                }
            }
        int64_t t_answers = now_ms();
        th_check(s, "drain: every large request answered (OK, or SHUTTING_DOWN if it came after SIGTERM)",
                 big_ok + big_shut == queued && other == 0 && big_ok >= 2, "%d ok, %d SHUTTING_DOWN, %d other, of %d",
                 big_ok, big_shut, other, queued);
        int b_status = wait_kid(KID_B, 15000);
        int64_t t_exit = now_ms();
        th_check(s, "drain: server b exits 0", b_status >= 0 && WIFEXITED(b_status) && WEXITSTATUS(b_status) == 0,
                 "wait status %d", b_status);
        printf("  drain: %d large requests (%d rows) sent, %d answered OK, %d SHUTTING_DOWN; SIGTERM -> /readyz 503 %lld ms, haproxy DOWN (%s)"
               " %lld ms, last answer %lld ms, exit %lld ms; late connect failed in %lld ms (%s)\n",
               queued, BIG_ROWS, big_ok, big_shut, (long long)(t_503 - t_term), sb_st.check, (long long)(t_bdown - t_term),
               (long long)(t_answers - t_term), (long long)(t_exit - t_term), (long long)late_ms,
               cdz_status_name(lst));
        for (int i = 0; i < BIG_CONNS; i++) cdz_client_close(big[i]);
        cdz_client_close(probe);
        free(m);
    }
    printf("  total %lld ms\n", (long long)(now_ms() - t_start));

out:
    reap_kids();
    free(tmpl);
    if (s->case_failed || keep_logs) {
        for (int k = 0; k < N_KIDS; k++) print_tail(logs[k], 15);
        fprintf(stderr, "  logs kept in %s\n", g_dir);
    } else {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", g_dir);
    }
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_scaleout", argc, argv)) return 1;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog;
    sigaction(SIGALRM, &sa, NULL);
    alarm(WATCHDOG_S);
    atexit(reap_kids);
    ref_init();
    run_scaleout(&s);
    alarm(0);
    return th_finish(&s);
}
