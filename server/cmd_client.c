/*
 * cmd_client.c: `cadenza client` — a command-line front over the C client (client.h).
 *
 *   cadenza client models   [--server ADDR] [--api-key K]        models and their specs, JSON lines
 *   cadenza client health   [--admin HOST:PORT|unix:PATH]        GET /healthz + /readyz; 0 = ready
 *   cadenza client infer    -m NAME --input name=FILE:SHAPE ...  raw little-endian f32 tensors
 *   cadenza client separate IN... -m NAME -o DIR [--stems a,b]   audio files -> one WAV per stem
 *
 * Errors print `CODE (retryable): message` (the server's typed ERROR frames, or the local
 * failure with the address that could not be reached); exit 1 on an error, 2 on bad usage.
 * Everything is parsed by hand (no getopt state) so tests can call client_main in-process.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "cadenza.h"
#include "check.h"
#include "client.h"
#include "protocol.h"

int cmd_client(int argc, char **argv);
int cdz_client_main(int argc, char **argv, FILE *out);

#define CC_DEFAULT_SERVER "127.0.0.1:7070"
#define CC_DEFAULT_ADMIN "127.0.0.1:7071"
#define CC_MAX_INPUTS 16

typedef struct cc_args {
    const char *server, *admin, *api_key, *model, *out_dir, *stems;
    double timeout_s, deadline_s;
    int32_t samplerate, bits;
    cdz_clip_mode clip;
    cdz_audio_format format;
    const char *inputs[CC_MAX_INPUTS]; /* infer: name=FILE:SHAPE */
    int n_inputs;
    const char *outputs[CDZ_PROTO_MAX_OUTPUTS]; /* infer: --output NAME */
    int n_outputs;
    char **files; /* separate: positional inputs */
    int n_files;
} cc_args;

static void cc_usage(FILE *f) {
    fprintf(f,
            "usage: cadenza client <command> [options]\n"
            "\n"
            "commands:\n"
            "  models                       list the server's models and their input/output specs (JSON lines)\n"
            "  health                       GET /healthz and /readyz on the admin port; exit 0 only when ready\n"
            "  infer -m NAME --input NAME=FILE:SHAPE ... [--output NAME]... [-o DIR]\n"
            "                               send raw little-endian f32 files (SHAPE like 4x8); writes each\n"
            "                               output to DIR/<name>.<dtype> (raw) and prints its shape\n"
            "  separate IN... -m NAME -o DIR [--stems a,b]\n"
            "                               separate audio files on the server; writes DIR/<track>/<stem>.wav\n"
            "\n"
            "options:\n"
            "  --server HOST:PORT|unix:PATH server address    (default: $CADENZA_SERVER or " CC_DEFAULT_SERVER ")\n"
            "  --admin HOST:PORT|unix:PATH  admin address     (default: $CADENZA_ADMIN or " CC_DEFAULT_ADMIN ")\n"
            "  --api-key K                  API key           (default: $CADENZA_API_KEY)\n"
            "  --timeout SECONDS            bound on connecting and on each answer (default: 120)\n"
            "  --deadline SECONDS           request deadline sent to the server (default: none)\n"
            "  separate: --samplerate HZ    the model's rate (protocol v1 does not carry it; default: 44100)\n"
            "            --bits 16|24|32    bits per sample, 32 = float           (default: 16)\n"
            "            --clip-mode M      rescale | clamp | tanh | none         (default: rescale)\n"
            "            --format wav|flac  output format                         (default: wav)\n");
}

static int cc_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cc_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cadenza client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (cadenza client --help)\n");
    va_end(ap);
    return 2;
}

/* The error record as `CODE (retryable): message`. */
static int cc_fail(const char *what) {
    const cdz_error *e = cdz_last_error();
    fprintf(stderr, "cadenza client: %s: %s%s: %s\n", what, cdz_status_name(e->code),
            e->retryable ? " (retryable)" : "", e->message);
    return 1;
}

static int cc_parse(int argc, char **argv, cc_args *a) {
    memset(a, 0, sizeof *a);
    a->server = getenv("CADENZA_SERVER") ? getenv("CADENZA_SERVER") : CC_DEFAULT_SERVER;
    a->admin = getenv("CADENZA_ADMIN") ? getenv("CADENZA_ADMIN") : CC_DEFAULT_ADMIN;
    a->api_key = getenv("CADENZA_API_KEY");
    a->timeout_s = 120;
    a->samplerate = 44100;
    a->bits = 16;
    a->clip = CDZ_CLIP_RESCALE;
    a->format = CDZ_AUDIO_FORMAT_WAV;
    a->out_dir = NULL;
    a->files = calloc((size_t)argc + 1, sizeof *a->files);
    if (!a->files) return cc_usage_error("out of memory");
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (o[0] != '-' || !strcmp(o, "-")) {
            a->files[a->n_files++] = argv[i];
            continue;
        }
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) return -1;
        /* every option takes a value: --opt VALUE or --opt=VALUE */
        const char *v = NULL;
        char name[64];
        const char *eq = strchr(o, '=');
        if (eq && (size_t)(eq - o) < sizeof name) {
            memcpy(name, o, (size_t)(eq - o));
            name[eq - o] = 0;
            v = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", o);
            if (i + 1 >= argc) return cc_usage_error("option %s needs a value", o);
            v = argv[++i];
        }
        char *end = NULL;
        if (!strcmp(name, "--server")) a->server = v;
        else if (!strcmp(name, "--admin")) a->admin = v;
        else if (!strcmp(name, "--api-key")) a->api_key = v;
        else if (!strcmp(name, "-m") || !strcmp(name, "--model")) a->model = v;
        else if (!strcmp(name, "-o") || !strcmp(name, "--out")) a->out_dir = v;
        else if (!strcmp(name, "--stems")) a->stems = v;
        else if (!strcmp(name, "--input") || !strcmp(name, "-i")) {
            if (a->n_inputs >= CC_MAX_INPUTS) return cc_usage_error("at most %d --input", CC_MAX_INPUTS);
            a->inputs[a->n_inputs++] = v;
        } else if (!strcmp(name, "--output")) {
            if (a->n_outputs >= CDZ_PROTO_MAX_OUTPUTS) return cc_usage_error("too many --output");
            a->outputs[a->n_outputs++] = v;
        } else if (!strcmp(name, "--timeout") || !strcmp(name, "--deadline")) {
            double x = strtod(v, &end);
            if (end == v || *end || !(x > 0) || x > 86400)
                return cc_usage_error("%s '%s': expected seconds in (0, 86400]", name, v);
            if (name[2] == 't') a->timeout_s = x;
            else a->deadline_s = x;
        } else if (!strcmp(name, "--samplerate") || !strcmp(name, "--bits")) {
            long x = strtol(v, &end, 10);
            if (end == v || *end || x < 1 || x > 1000000) return cc_usage_error("%s '%s': not a valid number", name, v);
            if (name[2] == 's') a->samplerate = (int32_t)x;
            else if (x != 16 && x != 24 && x != 32) return cc_usage_error("--bits %ld: 16, 24 or 32", x);
            else a->bits = (int32_t)x;
        } else if (!strcmp(name, "--clip-mode")) {
            if (cdz_clip_mode_parse(v, &a->clip) != CDZ_STATUS_OK) return cc_usage_error("--clip-mode '%s': %s", v, cdz_last_message());
        } else if (!strcmp(name, "--format")) {
            if (cdz_audio_format_parse(v, &a->format) != CDZ_STATUS_OK) return cc_usage_error("--format '%s': %s", v, cdz_last_message());
        } else {
            return cc_usage_error("unknown option %s", o);
        }
    }
    return 0;
}

static int cc_timeout_ms(const cc_args *a) { return (int)(a->timeout_s * 1000.0 + 0.5); }

static int cc_connect(const cc_args *a, cdz_client **c) {
    if (cdz_client_connect(a->server, a->api_key, cc_timeout_ms(a), c) != CDZ_STATUS_OK) {
        const cdz_error *e = cdz_last_error();
        /* the dialer names the address for socket errors; say it for HELLO refusals too */
        if (!strstr(e->message, a->server)) {
            cdz_error saved = *e;
            cdz_error_set(saved.code, "server %s: %s", a->server, saved.message);
            cdz_error_set_retryable(saved.retryable);
        }
        return cc_fail("connect");
    }
    return 0;
}

/* ------------------------------------------------------------------ models */

static json_t *cc_spec_json(const cdz_proto_tensor *t) {
    json_t *dims = json_array();
    for (int32_t d = 0; d < t->ndim; d++) json_array_append_new(dims, json_integer(t->dims[d]));
    return json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype", cdz_dtype_name(t->dtype), "shape", dims);
}

static int cc_models(const cc_args *a, FILE *out) {
    cdz_client *c = NULL;
    if (cc_connect(a, &c)) return 1;
    cdz_proto_msg *m = malloc(sizeof *m);
    if (!m) {
        cdz_client_close(c);
        return cc_fail("models");
    }
    int rc = 0;
    if (cdz_client_list_models(c, m, cc_timeout_ms(a)) != CDZ_STATUS_OK) {
        rc = cc_fail("models");
    } else {
        for (uint32_t i = 0; i < m->n_models; i++) {
            const cdz_proto_model *pm = &m->models[i];
            json_t *ins = json_array(), *outs = json_array();
            for (uint16_t k = 0; k < pm->n_inputs; k++)
                json_array_append_new(ins, cc_spec_json(&m->tensors[pm->first_input + k]));
            for (uint16_t k = 0; k < pm->n_outputs; k++)
                json_array_append_new(outs, cc_spec_json(&m->tensors[pm->first_output + k]));
            json_t *o = json_pack("{s:s, s:b, s:b, s:o, s:o}", "name", pm->name, "infer",
                                  (pm->flags & CDZ_PROTO_MODEL_INFER) != 0, "stream",
                                  (pm->flags & CDZ_PROTO_MODEL_STREAM) != 0, "inputs", ins, "outputs", outs);
            char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            if (text) fprintf(out, "%s\n", text);
            free(text);
            json_decref(o);
        }
    }
    free(m);
    cdz_client_close(c);
    return rc;
}

/* ------------------------------------------------------------------ health */

/* One HTTP/1.0 GET on a fresh socket; *code = the status code. */
static cdz_status cc_http_get(const char *addr, const char *path, int timeout_ms, int *code, char *body,
                              size_t body_cap) {
    int fd = -1;
    char host[256] = "localhost";
    if (!strncmp(addr, "unix:", 5)) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof un.sun_path)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "admin: unix path too long: %s", addr);
        strcpy(un.sun_path, addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return cdz_error_set(CDZ_STATUS_IO, "cannot reach the admin port %s: %s", addr, strerror(e));
        }
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "admin: '%s' is not HOST:PORT or unix:PATH", addr);
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        char *h = host;
        if (h[0] == '[' && h[strlen(h) - 1] == ']') {
            h[strlen(h) - 1] = 0;
            h++;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(h, colon + 1, &hints, &res);
        if (rc != 0) return cdz_error_set(CDZ_STATUS_IO, "cannot reach the admin port %s: %s", addr, gai_strerror(rc));
        int e = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
            e = errno;
            if (fd >= 0) close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) return cdz_error_set(CDZ_STATUS_IO, "cannot reach the admin port %s: %s", addr, strerror(e));
    }
    char http_req[512];
    int n = snprintf(http_req, sizeof http_req, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
    if (send(fd, http_req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return cdz_error_set(CDZ_STATUS_IO, "admin %s: send: %s", addr, strerror(errno));
    }
    char buf[4096];
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) {
            close(fd);
            return cdz_error_set(CDZ_STATUS_DEADLINE_EXCEEDED, "admin %s%s: no answer within %d ms", addr, path, timeout_ms);
        }
        if (r < 0 && errno == EINTR) continue;
        ssize_t k = r > 0 ? recv(fd, buf + len, sizeof buf - 1 - len, 0) : -1;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            close(fd);
            return cdz_error_set(CDZ_STATUS_IO, "admin %s%s: recv: %s", addr, path, strerror(errno));
        }
        if (k == 0 || (len += (size_t)k) >= sizeof buf - 1) break;
    }
    close(fd);
    buf[len] = 0;
    int major = 0, minor = 0;
    if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, code) != 3)
        return cdz_error_set(CDZ_STATUS_IO, "admin %s%s: not an HTTP answer", addr, path);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, body_cap, "%s", b ? b + 4 : "");
    size_t bl = strlen(body);
    while (bl && (body[bl - 1] == '\n' || body[bl - 1] == '\r')) body[--bl] = 0;
    return CDZ_STATUS_OK;
}

static int cc_health(const cc_args *a, FILE *out) {
    int code = 0;
    char body[256];
    if (cc_http_get(a->admin, "/healthz", cc_timeout_ms(a), &code, body, sizeof body) != CDZ_STATUS_OK)
        return cc_fail("health");
    fprintf(out, "healthz: %d %s\n", code, body);
    int live = code == 200;
    if (cc_http_get(a->admin, "/readyz", cc_timeout_ms(a), &code, body, sizeof body) != CDZ_STATUS_OK)
        return cc_fail("health");
    fprintf(out, "readyz: %d %s\n", code, body);
    return live && code == 200 ? 0 : 1;
}

/* ------------------------------------------------------------------ infer */

static cdz_status cc_read_file(const char *path, void **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return cdz_error_set(CDZ_STATUS_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cdz_error_set(CDZ_STATUS_IO, "'%s' is not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *p = malloc(n ? n : 8);
    if (!p) {
        fclose(f);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "'%s': %zu bytes", path, n);
    }
    if (fread(p, 1, n, f) != n) {
        free(p);
        fclose(f);
        return cdz_error_set(CDZ_STATUS_IO, "cannot read '%s'", path);
    }
    fclose(f);
    *data = p;
    *size = n;
    return CDZ_STATUS_OK;
}

/* "name=FILE:SHAPE" with SHAPE like 4x8 (or 4,8; "scalar" for ndim 0). The file's size must
 * be exactly prod(SHAPE) * 4 bytes. */
static cdz_status cc_load_input(const char *spec, char *name, size_t name_cap, cdz_tensor *t, void **owned) {
    const char *eq = strchr(spec, '='), *colon = strrchr(spec, ':');
    if (!eq || eq == spec || !colon || colon < eq)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': expected NAME=FILE.f32:SHAPE (e.g. x=in.f32:4x8)", spec);
    if ((size_t)(eq - spec) >= name_cap)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': name too long", spec);
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = 0;
    char path[PATH_MAX];
    if ((size_t)(colon - eq - 1) >= sizeof path || colon == eq + 1)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': bad file name", spec);
    memcpy(path, eq + 1, (size_t)(colon - eq - 1));
    path[colon - eq - 1] = 0;
    int64_t shape[CDZ_MAX_DIMS];
    int32_t ndim = 0;
    const char *p = colon + 1;
    uint64_t numel = 1;
    if (strcmp(p, "scalar") != 0) {
        for (;;) {
            char *end = NULL;
            errno = 0;
            long long d = strtoll(p, &end, 10);
            if (end == p || d < 0 || errno || ndim >= CDZ_MAX_DIMS)
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': SHAPE must be up to %d sizes >= 0 like 4x8",
                                     spec, CDZ_MAX_DIMS);
            shape[ndim++] = d;
            if (d && numel > UINT64_MAX / 4 / (uint64_t)d)
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': shape too large", spec);
            numel *= (uint64_t)d;
            if (!*end) break;
            if (*end != 'x' && *end != ',')
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input '%s': bad SHAPE character '%c'", spec, *end);
            p = end + 1;
        }
    }
    size_t size = 0;
    CDZ_TRY(cc_read_file(path, owned, &size));
    if ((uint64_t)size != numel * 4) {
        free(*owned);
        *owned = NULL;
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "--input %s: '%s' has %zu bytes; f32[%s] needs %llu", name, path,
                             size, colon + 1, (unsigned long long)(numel * 4));
    }
    return cdz_tensor_init(t, *owned, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, ndim, shape);
}

static uint64_t cc_deadline_us(const cc_args *a) { return a->deadline_s > 0 ? (uint64_t)(a->deadline_s * 1e6) : 0; }

static void cc_shape_str(const cdz_proto_tensor *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s[", cdz_dtype_name(t->dtype));
    for (int32_t d = 0; d < t->ndim && n > 0 && (size_t)n < cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%lld", d ? "," : "", (long long)t->dims[d]);
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "]");
}

static cdz_status cc_write_file(const char *path, const void *data, size_t n) {
    char partial[PATH_MAX + 16];
    snprintf(partial, sizeof partial, "%s.partial", path);
    FILE *f = fopen(partial, "wb");
    if (!f) return cdz_error_set(CDZ_STATUS_IO, "cannot create '%s': %s", partial, strerror(errno));
    bool ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(partial, path) != 0) {
        unlink(partial);
        return cdz_error_set(CDZ_STATUS_IO, "cannot write '%s'", path);
    }
    return CDZ_STATUS_OK;
}

static cdz_status cc_mkdir_p(const char *dir) {
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "path too long");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return cdz_error_set(CDZ_STATUS_IO, "cannot create '%s': %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    return CDZ_STATUS_OK;
}

static int cc_infer(const cc_args *a, FILE *out) {
    if (!a->model) return cc_usage_error("infer: -m NAME is required");
    if (a->n_inputs == 0) return cc_usage_error("infer: at least one --input NAME=FILE:SHAPE is required");
    char names[CC_MAX_INPUTS][CDZ_PROTO_MAX_NAME + 1];
    const char *name_ptr[CC_MAX_INPUTS];
    cdz_tensor ts[CC_MAX_INPUTS];
    void *owned[CC_MAX_INPUTS] = {0};
    int rc = 0;
    cdz_client *c = NULL;
    cdz_proto_msg *m = NULL;
    for (int i = 0; i < a->n_inputs; i++) {
        if (cc_load_input(a->inputs[i], names[i], sizeof names[i], &ts[i], &owned[i]) != CDZ_STATUS_OK) {
            rc = cc_fail("infer");
            goto done;
        }
        name_ptr[i] = names[i];
    }
    const char *dir = a->out_dir ? a->out_dir : ".";
    if (cc_mkdir_p(dir) != CDZ_STATUS_OK) {
        rc = cc_fail("infer");
        goto done;
    }
    if ((m = malloc(sizeof *m)) == NULL || cc_connect(a, &c)) {
        rc = 1;
        goto done;
    }
    if (cdz_client_infer(c, 1, a->model, a->n_inputs, name_ptr, ts, a->n_outputs, a->outputs, cc_deadline_us(a), m,
                         cc_timeout_ms(a)) != CDZ_STATUS_OK) {
        rc = cc_fail("infer");
        goto done;
    }
    fprintf(out, "%s: queued %.3f ms, computed %.3f ms\n", a->model, (double)m->queue_us / 1000,
            (double)m->compute_us / 1000);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const cdz_proto_tensor *t = &m->tensors[i];
        char shape[128], path[PATH_MAX];
        cc_shape_str(t, shape, sizeof shape);
        snprintf(path, sizeof path, "%s/%s.%s", dir, t->name, cdz_dtype_name(t->dtype));
        if (cc_write_file(path, t->data, (size_t)t->nbytes) != CDZ_STATUS_OK) {
            rc = cc_fail("infer");
            goto done;
        }
        fprintf(out, "%s: %s -> %s\n", t->name, shape, path);
    }
done:
    for (int i = 0; i < a->n_inputs; i++) free(owned[i]);
    free(m);
    cdz_client_close(c);
    return rc;
}

/* ------------------------------------------------------------------ separate */

static void cc_track_name(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, size, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
}

/* The model's "mix" input channels and its outputs, from MODEL_LIST. */
static cdz_status cc_find_model(cdz_client *c, const char *model, int timeout_ms, cdz_proto_msg *m,
                                int32_t *channels, const cdz_proto_model **pm_out) {
    CDZ_TRY(cdz_client_list_models(c, m, timeout_ms));
    for (uint32_t i = 0; i < m->n_models; i++) {
        const cdz_proto_model *pm = &m->models[i];
        if (strcmp(pm->name, model) != 0) continue;
        if (pm->n_inputs != 1 || strcmp(m->tensors[pm->first_input].name, "mix") != 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "model '%s' does not take one input 'mix': not a separation model", model);
        const cdz_proto_tensor *mix = &m->tensors[pm->first_input];
        if (mix->dtype != CDZ_DTYPE_F32 || mix->ndim != 2 || mix->dims[0] < 1)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "model '%s': input 'mix' is not f32 [channels, -1]", model);
        *channels = (int32_t)mix->dims[0];
        *pm_out = pm;
        return CDZ_STATUS_OK;
    }
    return cdz_error_set(CDZ_STATUS_UNKNOWN_MODEL, "the server has no model '%s' (cadenza client models lists them)", model);
}

static int cc_separate(const cc_args *a, FILE *out) {
    if (!a->model) return cc_usage_error("separate: -m NAME is required");
    if (!a->out_dir) return cc_usage_error("separate: -o DIR is required");
    if (a->n_files == 0) return cc_usage_error("separate: no input files");
    if (!cdz_audio_can_read()) {
        cdz_error_set(CDZ_STATUS_UNSUPPORTED, "built without libsndfile: cannot read audio");
        return cc_fail("separate");
    }
    cdz_client *c = NULL;
    cdz_proto_msg *list = malloc(sizeof *list), *m = malloc(sizeof *m);
    const char *want[CDZ_PROTO_MAX_OUTPUTS];
    char want_buf[CDZ_PROTO_MAX_OUTPUTS][CDZ_PROTO_MAX_NAME + 1];
    int n_want = 0, rc = 0;
    int32_t channels = 0;
    const cdz_proto_model *pm = NULL;
    if (!list || !m) {
        rc = cc_usage_error("out of memory");
        goto done;
    }
    if (cc_connect(a, &c)) {
        rc = 1;
        goto done;
    }
    if (cc_find_model(c, a->model, cc_timeout_ms(a), list, &channels, &pm) != CDZ_STATUS_OK) {
        rc = cc_fail("separate");
        goto done;
    }
    if (a->stems) { /* every name must be an output of the model */
        const char *p = a->stems;
        while (*p) {
            size_t l = strcspn(p, ",");
            if (l == 0 || l > CDZ_PROTO_MAX_NAME || n_want >= CDZ_PROTO_MAX_OUTPUTS) {
                rc = cc_usage_error("--stems '%s': expected names separated by commas", a->stems);
                goto done;
            }
            memcpy(want_buf[n_want], p, l);
            want_buf[n_want][l] = 0;
            bool found = false;
            for (uint16_t k = 0; k < pm->n_outputs; k++)
                found |= !strcmp(list->tensors[pm->first_output + k].name, want_buf[n_want]);
            if (!found) {
                char all[1024] = "";
                for (uint16_t k = 0; k < pm->n_outputs; k++)
                    snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", k ? "," : "",
                             list->tensors[pm->first_output + k].name);
                rc = cc_usage_error("--stems: model '%s' has no stem '%s' (it has %s)", a->model, want_buf[n_want], all);
                goto done;
            }
            want[n_want] = want_buf[n_want];
            n_want++;
            p += l;
            if (*p == ',') p++;
        }
    }
    for (int f = 0; f < a->n_files && rc == 0; f++) {
        const char *path = a->files[f];
        cdz_audio in = {0}, conv = {0}, res = {0};
        cdz_audio *cur = &in;
        cdz_status st = cdz_audio_read(path, &in);
        if (st == CDZ_STATUS_OK && in.channels != channels) {
            st = cdz_audio_to_channels(&in, channels, &conv);
            if (st == CDZ_STATUS_OK) {
                fprintf(stderr, "cadenza client: %s: %d channel%s converted to %d (the model takes %d)\n", path,
                        in.channels, in.channels == 1 ? "" : "s", channels, channels);
                cur = &conv;
            }
        }
        if (st == CDZ_STATUS_OK && cur->samplerate != a->samplerate) {
            fprintf(stderr, "cadenza client: %s: resampling %d Hz -> %d Hz (libsoxr, high quality)\n", path,
                    cur->samplerate, a->samplerate);
            st = cdz_audio_resample(cur, a->samplerate, &res);
            if (st == CDZ_STATUS_OK) cur = &res;
        }
        /* one INFER frame carries the whole track: refuse before sending what the server would */
        uint64_t bytes = st == CDZ_STATUS_OK ? (uint64_t)cur->frames * (uint64_t)cur->channels * 4 : 0;
        if (st == CDZ_STATUS_OK && bytes + 1024 > cdz_client_max_body(c))
            st = cdz_error_set(CDZ_STATUS_TOO_LARGE,
                               "%s: %.1f s of audio is %llu bytes, over the server's frame limit of %u bytes "
                               "(about %.0f s at %d channels, %d Hz); split the file (streams are not supported yet)",
                               path, (double)cur->frames / cur->samplerate, (unsigned long long)bytes,
                               cdz_client_max_body(c),
                               (double)(cdz_client_max_body(c) - 1024) / 4.0 / channels / a->samplerate, channels,
                               a->samplerate);
        cdz_tensor x;
        if (st == CDZ_STATUS_OK)
            st = cdz_tensor_init(&x, cur->data, CDZ_DTYPE_F32, (cdz_device){CDZ_DEVICE_CPU, 0}, 2,
                                 (int64_t[]){cur->channels, cur->frames});
        const char *mix_name = "mix";
        if (st == CDZ_STATUS_OK)
            st = cdz_client_infer(c, (uint64_t)f + 1, a->model, 1, &mix_name, &x, n_want, want, cc_deadline_us(a), m,
                                  cc_timeout_ms(a));
        char track[256], dir[PATH_MAX];
        cc_track_name(path, track, sizeof track);
        if (st == CDZ_STATUS_OK && snprintf(dir, sizeof dir, "%s/%s", a->out_dir, track) >= (int)sizeof dir)
            st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "output path too long");
        if (st == CDZ_STATUS_OK) st = cc_mkdir_p(dir);
        const char *ext = a->format == CDZ_AUDIO_FORMAT_FLAC ? "flac" : "wav";
        for (uint32_t k = 0; st == CDZ_STATUS_OK && k < m->n_tensors; k++) {
            const cdz_proto_tensor *t = &m->tensors[k];
            if (t->dtype != CDZ_DTYPE_F32 || t->ndim != 2 || t->dims[0] != cur->channels || t->dims[1] != cur->frames) {
                char shape[128];
                cc_shape_str(t, shape, sizeof shape);
                st = cdz_error_set(CDZ_STATUS_INTERNAL, "stem '%s' came back as %s, expected f32[%d,%lld]", t->name,
                                   shape, cur->channels, (long long)cur->frames);
                break;
            }
            /* a copy: prevent_clip works in place, the payload is the client's receive buffer */
            cdz_audio stem = {0};
            st = cdz_audio_alloc(&stem, cur->channels, cur->frames, cur->samplerate);
            if (st) break;
            memcpy(stem.data, t->data, (size_t)t->nbytes);
            char file[PATH_MAX + 80], partial[PATH_MAX + 96];
            snprintf(file, sizeof file, "%s/%s.%s", dir, t->name, ext);
            snprintf(partial, sizeof partial, "%s.partial", file);
            st = cdz_audio_prevent_clip(&stem, a->clip);
            if (st == CDZ_STATUS_OK) st = cdz_audio_write(partial, &stem, a->format, a->bits);
            if (st == CDZ_STATUS_OK && rename(partial, file) != 0)
                st = cdz_error_set(CDZ_STATUS_IO, "cannot rename '%s' to '%s': %s", partial, file, strerror(errno));
            if (st != CDZ_STATUS_OK) unlink(partial);
            cdz_audio_free(&stem);
        }
        if (st == CDZ_STATUS_OK)
            fprintf(out, "%s: %u stems -> %s/ (queued %.1f ms, computed %.1f ms)\n", path, m->n_tensors, dir,
                    (double)m->queue_us / 1000, (double)m->compute_us / 1000);
        else
            rc = cc_fail(path);
        cdz_audio_free(&in);
        cdz_audio_free(&conv);
        cdz_audio_free(&res);
    }
done:
    free(list);
    free(m);
    cdz_client_close(c);
    return rc;
}

/* ------------------------------------------------------------------ entry */

/* argv[0] = "client"; writes results to `out`, diagnostics to stderr. */
int cdz_client_main(int argc, char **argv, FILE *out) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        cc_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    cc_args a;
    int pr = cc_parse(argc - 2, argv + 2, &a);
    int rc;
    if (pr < 0) {
        cc_usage(stdout);
        rc = 0;
    } else if (pr > 0) {
        rc = pr;
    } else if (!strcmp(cmd, "models")) {
        rc = a.n_files ? cc_usage_error("models takes no arguments") : cc_models(&a, out);
    } else if (!strcmp(cmd, "health")) {
        rc = a.n_files ? cc_usage_error("health takes no arguments") : cc_health(&a, out);
    } else if (!strcmp(cmd, "infer")) {
        rc = a.n_files ? cc_usage_error("infer: unexpected argument '%s'", a.files[0]) : cc_infer(&a, out);
    } else if (!strcmp(cmd, "separate")) {
        rc = cc_separate(&a, out);
    } else {
        rc = cc_usage_error("unknown command '%s'", cmd);
    }
    free(a.files);
    return rc;
}

int cmd_client(int argc, char **argv) { return cdz_client_main(argc, argv, stdout); }
