/*
 * config.c: settings of `cadenza serve` from defaults, a config file, CADENZA_* variables and
 * flags (docs/configuration.md). One table describes every setting; parsing, printing, the
 * usage text and the error messages all come from it, so they cannot drift apart.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

extern char **environ;

#define INVALID CDZ_STATUS_INVALID_ARGUMENT

typedef enum kind {
    K_ADDR,      /* HOST:PORT | unix:PATH */
    K_ADDR_OFF,  /* the same, or "off" */
    K_MODELS,    /* NAME=PATH (repeatable; comma-separated list in the environment) */
    K_DEVICES,   /* auto | cpu[:N] | cuda[:N], comma-separated */
    K_PATH,
    K_U32,
    K_SIZE,      /* bytes, with an optional K/M/G suffix (binary) */
    K_DURATION,  /* 0 or a number with a unit us|ms|s|m|h, stored in microseconds */
    K_LOG_LEVEL,
    K_BOOL,
    K_SECRET,    /* the API key */
    K_FRACTION,
    K_PRECISION,
} kind;

typedef struct setting {
    const char *key;  /* flag without "--", file key */
    const char *env;
    kind kind;
    size_t offset, size; /* the field in cdz_server_config (copied as a whole by load) */
    uint64_t min, max;   /* K_U32, K_SIZE, K_DURATION */
    const char *def;     /* default as text (NULL: empty) */
    const char *meta;    /* for the usage text */
    const char *help;
} setting;

#define F(field) offsetof(cdz_server_config, field), sizeof(((cdz_server_config *)0)->field)
#define MS 1000ull
#define SEC 1000000ull

static const setting settings[CDZ_CONFIG_KEY_COUNT_] = {
    [CDZ_CONFIG_LISTEN] = {"listen", "CADENZA_LISTEN", K_ADDR, F(listen), 0, 0, "127.0.0.1:7878", "ADDR",
                           "protocol address: HOST:PORT, [IPv6]:PORT or unix:PATH"},
    [CDZ_CONFIG_ADMIN] = {"admin", "CADENZA_ADMIN", K_ADDR_OFF, F(admin), 0, 0, "127.0.0.1:7879", "ADDR",
                          "HTTP address of /healthz, /readyz, /metrics: HOST:PORT or off"},
    [CDZ_CONFIG_MODEL] = {"model", "CADENZA_MODELS", K_MODELS, F(models), 0, 0, NULL, "NAME=PATH",
                          "serve PATH under NAME (repeatable; CADENZA_MODELS=a=p,b=q)"},
    [CDZ_CONFIG_DEVICES] = {"devices", "CADENZA_DEVICES", K_DEVICES, F(devices), 0, 0, "auto", "LIST",
                            "auto, or devices such as cuda:0,cuda:1 or cpu"},
    [CDZ_CONFIG_CONFIG] = {"config", "CADENZA_CONFIG", K_PATH, F(config_path), 0, 0, NULL, "FILE",
                           "read settings from FILE (key = value lines)"},
    [CDZ_CONFIG_MAX_CONNECTIONS] = {"max-connections", "CADENZA_MAX_CONNECTIONS", K_U32, F(max_connections), 1,
                                    65536, "256", "N", "connections at once; more are refused with BUSY"},
    [CDZ_CONFIG_MAX_FRAME_BYTES] = {"max-frame-bytes", "CADENZA_MAX_FRAME_BYTES", K_SIZE, F(max_frame_bytes),
                                    64u << 10, CDZ_PROTO_MAX_FRAME, "64M", "SIZE",
                                    "largest frame body a client may send (multiple of 8)"},
    [CDZ_CONFIG_MAX_STREAMS] = {"max-streams", "CADENZA_MAX_STREAMS", K_U32, F(max_streams), 1, 1024, "16", "N",
                                "open streams per connection"},
    [CDZ_CONFIG_MAX_INFLIGHT] = {"max-inflight", "CADENZA_MAX_INFLIGHT", K_U32, F(max_inflight), 1, 4096, "32",
                                 "N", "requests and streams in flight per connection"},
    [CDZ_CONFIG_QUEUE_SIZE] = {"queue-size", "CADENZA_QUEUE_SIZE", K_U32, F(queue_size), 1, 1000000, "64", "N",
                               "queued requests per model; more are refused with BUSY"},
    [CDZ_CONFIG_MAX_BATCH] = {"max-batch", "CADENZA_MAX_BATCH", K_U32, F(max_batch), 1, 1024, "8", "N",
                              "requests batched into one forward pass"},
    [CDZ_CONFIG_MAX_QUEUE_DELAY] = {"max-queue-delay", "CADENZA_MAX_QUEUE_DELAY", K_DURATION,
                                    F(max_queue_delay_us), 0, 10 * SEC, "2ms", "DURATION",
                                    "how long a partial batch waits for more requests"},
    [CDZ_CONFIG_READ_TIMEOUT] = {"read-timeout", "CADENZA_READ_TIMEOUT", K_DURATION, F(read_timeout_us), MS,
                                 3600 * SEC, "30s", "DURATION", "to receive the rest of a started frame"},
    [CDZ_CONFIG_WRITE_TIMEOUT] = {"write-timeout", "CADENZA_WRITE_TIMEOUT", K_DURATION, F(write_timeout_us), MS,
                                  3600 * SEC, "30s", "DURATION", "for a slow client to take pending output"},
    [CDZ_CONFIG_IDLE_TIMEOUT] = {"idle-timeout", "CADENZA_IDLE_TIMEOUT", K_DURATION, F(idle_timeout_us), 0,
                                 86400 * SEC, "5m", "DURATION", "close a connection idle this long (0 = never)"},
    [CDZ_CONFIG_DRAIN_TIMEOUT] = {"drain-timeout", "CADENZA_DRAIN_TIMEOUT", K_DURATION, F(drain_timeout_us), 0,
                                  3600 * SEC, "30s", "DURATION", "on SIGTERM, wait this long for in-flight work"},
    [CDZ_CONFIG_LOG_LEVEL] = {"log-level", "CADENZA_LOG_LEVEL", K_LOG_LEVEL, F(log_level), 0, 0, "info", "LEVEL",
                              "error, warn, info or debug"},
    [CDZ_CONFIG_LOG_JSON] = {"log-json", "CADENZA_LOG_JSON", K_BOOL, F(log_json), 0, 0, "false", "BOOL",
                             "log JSON lines instead of text"},
    [CDZ_CONFIG_API_KEY] = {"api-key", "CADENZA_API_KEY", K_SECRET, F(api_key), 0, 0, NULL, "KEY",
                            "clients must send KEY in HELLO (prefer api-key-file)"},
    [CDZ_CONFIG_API_KEY_FILE] = {"api-key-file", "CADENZA_API_KEY_FILE", K_PATH, F(api_key_file), 0, 0, NULL,
                                 "FILE", "read the API key from FILE"},
    [CDZ_CONFIG_ARENA_FRACTION] = {"arena-fraction", "CADENZA_ARENA_FRACTION", K_FRACTION, F(arena_fraction), 0, 0,
                                   "0.8", "F", "share of free GPU memory reserved per device, (0, 0.98]"},
    [CDZ_CONFIG_PRECISION] = {"precision", "CADENZA_PRECISION", K_PRECISION, F(precision), 0, 0, "strict", "P",
                              "strict, tf32, fp16 or bf16"},
};

/* CADENZA_* variables read by the runtime itself, not settings of the server: accepted. */
static const char *const runtime_env[] = {"CADENZA_SYNC_CHECK", "CADENZA_AUDIO_MAX_BYTES", "CADENZA_CONV_IMPL"};

const char *cdz_config_key_name(cdz_config_key key) {
    return (unsigned)key < CDZ_CONFIG_KEY_COUNT_ ? settings[key].key : "unknown";
}
const char *cdz_config_key_env(cdz_config_key key) {
    return (unsigned)key < CDZ_CONFIG_KEY_COUNT_ ? settings[key].env : "unknown";
}
const char *cdz_config_source_name(cdz_config_source s) {
    switch (s) {
    case CDZ_CONFIG_SOURCE_DEFAULT: return "default";
    case CDZ_CONFIG_SOURCE_FILE: return "file";
    case CDZ_CONFIG_SOURCE_ENV: return "env";
    case CDZ_CONFIG_SOURCE_FLAG: return "flag";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------------------
 * Nearest known name, for "did you mean"
 * ---------------------------------------------------------------------------------- */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean 'x'?)" or "" into buf. env: compare with the variable names. */
static const char *suggest(const char *name, bool env, const char *prefix, char *buf, size_t cap) {
    size_t best = SIZE_MAX;
    const char *pick = NULL;
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        const char *cand = env ? settings[k].env : settings[k].key;
        size_t d = edit_distance(name, cand);
        if (d < best) best = d, pick = cand;
    }
    size_t len = strlen(name);
    size_t allowed = len / 3 > 2 ? len / 3 : 2;
    if (pick && best <= allowed) snprintf(buf, cap, " (did you mean '%s%s'?)", prefix, pick);
    else buf[0] = '\0';
    return buf;
}

static int find_key(const char *name, size_t len, bool normalize) {
    char tmp[80];
    if (len >= sizeof tmp) return -1;
    for (size_t i = 0; i < len; i++) tmp[i] = normalize && name[i] == '_' ? '-' : name[i];
    tmp[len] = '\0';
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++)
        if (strcmp(tmp, settings[k].key) == 0) return k;
    return -1;
}

/* ------------------------------------------------------------------------------------
 * Value parsers. `where` names the source and key for messages ("--listen",
 * "CADENZA_LISTEN", "cadenza.conf:3: listen").
 * ---------------------------------------------------------------------------------- */
static bool parse_digits(const char *s, size_t len, uint64_t *out) {
    if (len == 0 || len > 20) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v)) return false;
    }
    *out = v;
    return true;
}

static size_t digits_len(const char *s) {
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') n++;
    return n;
}

static cdz_status parse_u64_unit(const char *where, const char *text, kind k, uint64_t *out) {
    size_t nd = digits_len(text);
    uint64_t v = 0;
    if (nd == 0 || !parse_digits(text, nd, &v))
        return cdz_error_set(INVALID, "%s: '%s' is not a %s", where, text,
                             k == K_DURATION ? "duration (e.g. 250ms, 30s, 5m)" :
                             k == K_SIZE ? "size in bytes (e.g. 65536, 64K, 16M, 1G)" : "non-negative integer");
    const char *unit = text + nd;
    uint64_t mul = 1;
    if (k == K_U32) {
        if (*unit) return cdz_error_set(INVALID, "%s: '%s' is not a non-negative integer", where, text);
    } else if (k == K_SIZE) {
        static const struct { const char *u; uint64_t m; } units[] = {
            {"", 1}, {"k", 1ull << 10}, {"K", 1ull << 10}, {"KiB", 1ull << 10}, {"m", 1ull << 20},
            {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"g", 1ull << 30}, {"G", 1ull << 30}, {"GiB", 1ull << 30}};
        bool found = false;
        for (size_t i = 0; i < sizeof units / sizeof units[0] && !found; i++)
            if (strcmp(unit, units[i].u) == 0) mul = units[i].m, found = true;
        if (!found)
            return cdz_error_set(INVALID, "%s: unknown size unit '%s' in '%s' (use K, M or G: powers of 1024)", where,
                                 unit, text);
    } else { /* K_DURATION */
        static const struct { const char *u; uint64_t m; } units[] = {
            {"us", 1}, {"ms", MS}, {"s", SEC}, {"m", 60 * SEC}, {"h", 3600 * SEC}};
        bool found = false;
        for (size_t i = 0; i < sizeof units / sizeof units[0] && !found; i++)
            if (strcmp(unit, units[i].u) == 0) mul = units[i].m, found = true;
        if (!found && !(*unit == '\0' && v == 0))
            return cdz_error_set(INVALID, "%s: '%s' needs a unit: us, ms, s, m or h (e.g. 30s)", where, text);
    }
    if (__builtin_mul_overflow(v, mul, out))
        return cdz_error_set(INVALID, "%s: '%s' is out of range", where, text);
    return CDZ_STATUS_OK;
}

static const char *duration_str(uint64_t us, char *buf, size_t cap) {
    static const struct { const char *u; uint64_t m; } units[] = {
        {"h", 3600 * SEC}, {"m", 60 * SEC}, {"s", SEC}, {"ms", MS}, {"us", 1}};
    if (us == 0) {
        snprintf(buf, cap, "0");
        return buf;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (us % units[i].m == 0) {
            snprintf(buf, cap, "%" PRIu64 "%s", us / units[i].m, units[i].u);
            break;
        }
    return buf;
}

static const char *size_str(uint64_t b, char *buf, size_t cap) {
    if (b && b % (1ull << 30) == 0) snprintf(buf, cap, "%" PRIu64 "G", b >> 30);
    else if (b && b % (1ull << 20) == 0) snprintf(buf, cap, "%" PRIu64 "M", b >> 20);
    else if (b && b % (1ull << 10) == 0) snprintf(buf, cap, "%" PRIu64 "K", b >> 10);
    else snprintf(buf, cap, "%" PRIu64, b);
    return buf;
}

static bool is_hostname(const char *h) {
    size_t len = strlen(h), label = 0;
    if (len == 0 || len > CDZ_CONFIG_MAX_HOST) return false;
    for (size_t i = 0; i <= len; i++) {
        char c = h[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || h[i - 1] == '-') return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static cdz_status parse_addr(const char *where, const char *text, bool allow_off, cdz_net_addr *out) {
    cdz_net_addr a;
    memset(&a, 0, sizeof a);
    a.enabled = true;
    if (allow_off && strcmp(text, "off") == 0) {
        a.enabled = false;
        *out = a;
        return CDZ_STATUS_OK;
    }
    const char *expect = allow_off ? "HOST:PORT, [IPv6]:PORT or off" : "HOST:PORT, [IPv6]:PORT or unix:PATH";
    if (strncmp(text, "unix:", 5) == 0) {
        if (allow_off)
            return cdz_error_set(INVALID, "%s: '%s': the admin HTTP port listens on TCP only (%s)", where, text, expect);
        const char *path = text + 5;
        size_t len = strlen(path);
        if (len == 0) return cdz_error_set(INVALID, "%s: '%s': empty socket path", where, text);
        if (len >= CDZ_CONFIG_MAX_UNIX_PATH)
            return cdz_error_set(INVALID, "%s: socket path of %zu bytes exceeds the limit of %d (CDZ_CONFIG_MAX_UNIX_PATH)",
                                 where, len, CDZ_CONFIG_MAX_UNIX_PATH - 1);
        a.is_unix = true;
        memcpy(a.path, path, len + 1);
        *out = a;
        return CDZ_STATUS_OK;
    }
    const char *colon = strrchr(text, ':');
    if (!colon) return cdz_error_set(INVALID, "%s: '%s' is not %s", where, text, expect);
    size_t hlen = (size_t)(colon - text);
    const char *host = text;
    bool v6 = false;
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        host = text + 1;
        hlen -= 2;
        v6 = true;
    }
    if (hlen == 0) return cdz_error_set(INVALID, "%s: '%s': no host before the port (%s)", where, text, expect);
    if (hlen > CDZ_CONFIG_MAX_HOST)
        return cdz_error_set(INVALID, "%s: host of %zu bytes exceeds the limit of %d", where, hlen, CDZ_CONFIG_MAX_HOST);
    memcpy(a.host, host, hlen);
    a.host[hlen] = '\0';
    uint64_t port;
    const char *ps = colon + 1;
    if (!parse_digits(ps, strlen(ps), &port) || port > 65535)
        return cdz_error_set(INVALID, "%s: '%s': port '%s' is not a number in 0..65535", where, text, ps);
    a.port = (uint16_t)port;
    unsigned char bin[16];
    if (v6) {
        if (inet_pton(AF_INET6, a.host, bin) != 1)
            return cdz_error_set(INVALID, "%s: '%s': '%s' is not an IPv6 address", where, text, a.host);
    } else if (strchr(a.host, ':')) {
        return cdz_error_set(INVALID, "%s: '%s': write IPv6 addresses in brackets, e.g. [::1]:7878", where, text);
    } else if (a.host[strspn(a.host, "0123456789.")] == '\0') {
        if (inet_pton(AF_INET, a.host, bin) != 1)
            return cdz_error_set(INVALID, "%s: '%s': '%s' is not an IPv4 address", where, text, a.host);
    } else if (!is_hostname(a.host)) {
        return cdz_error_set(INVALID, "%s: '%s': '%s' is not a host name (letters, digits, '-' and '.')", where,
                             text, a.host);
    }
    *out = a;
    return CDZ_STATUS_OK;
}

static const char *addr_str(const cdz_net_addr *a, char *buf, size_t cap) {
    if (!a->enabled) snprintf(buf, cap, "off");
    else if (a->is_unix) snprintf(buf, cap, "unix:%s", a->path);
    else if (strchr(a->host, ':')) snprintf(buf, cap, "[%s]:%u", a->host, a->port);
    else snprintf(buf, cap, "%s:%u", a->host, a->port);
    return buf;
}

static bool has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

static cdz_status parse_path(const char *where, const char *text, char *dst) {
    size_t len = strlen(text);
    if (len >= CDZ_CONFIG_MAX_PATH)
        return cdz_error_set(INVALID, "%s: path of %zu bytes exceeds the limit of %d (CDZ_CONFIG_MAX_PATH)", where, len,
                             CDZ_CONFIG_MAX_PATH - 1);
    if (has_control(text)) return cdz_error_set(INVALID, "%s: path contains a control character", where);
    memcpy(dst, text, len + 1);
    return CDZ_STATUS_OK;
}

/* One NAME=PATH appended to cfg->models. */
static cdz_status add_model(cdz_server_config *cfg, const char *where, const char *spec, size_t len) {
    char text[CDZ_PROTO_MAX_NAME + CDZ_CONFIG_MAX_PATH + 2];
    if (len >= sizeof text)
        return cdz_error_set(INVALID, "%s: model spec of %zu bytes is too long", where, len);
    memcpy(text, spec, len);
    text[len] = '\0';
    char *eq = strchr(text, '=');
    if (!eq || eq == text || !eq[1])
        return cdz_error_set(INVALID, "%s: '%s' is not NAME=PATH", where, text);
    *eq = '\0';
    const char *name = text, *path = eq + 1;
    size_t nlen = strlen(name);
    if (nlen > CDZ_PROTO_MAX_NAME)
        return cdz_error_set(INVALID, "%s: model name of %zu bytes exceeds the limit of %d (CDZ_PROTO_MAX_NAME)", where,
                             nlen, CDZ_PROTO_MAX_NAME);
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == ',')
            return cdz_error_set(INVALID, "%s: model name '%s' has a character other than printable ASCII "
                                 "(no spaces or commas)", where, name);
    }
    if (cfg->models.count >= CDZ_CONFIG_MAX_MODELS)
        return cdz_error_set(INVALID, "%s: more than %d models (CDZ_CONFIG_MAX_MODELS)", where, CDZ_CONFIG_MAX_MODELS);
    for (uint32_t i = 0; i < cfg->models.count; i++)
        if (strcmp(cfg->models.spec[i].name, name) == 0)
            return cdz_error_set(INVALID, "%s: model '%s' is given twice", where, name);
    cdz_model_spec *m = &cfg->models.spec[cfg->models.count];
    cdz_status st = parse_path(where, path, m->path);
    if (st != CDZ_STATUS_OK) return st;
    memcpy(m->name, name, nlen + 1);
    cfg->models.count++;
    return CDZ_STATUS_OK;
}

/* Syntax only: a CPU-only build still accepts cuda:N here; the server checks existence. */
static cdz_status parse_devices(const char *where, const char *text, cdz_server_config *cfg) {
    memset(&cfg->devices, 0, sizeof cfg->devices);
    if (strcmp(text, "auto") == 0) {
        cfg->devices.all = true;
        return CDZ_STATUS_OK;
    }
    const char *p = text;
    for (;;) {
        size_t n = strcspn(p, ",");
        char item[32];
        if (n == 0 || n >= sizeof item)
            return cdz_error_set(INVALID, "%s: '%s': empty or overlong device in the list (auto, or e.g. cuda:0,cuda:1)",
                                 where, text);
        memcpy(item, p, n);
        item[n] = '\0';
        cdz_device d = {CDZ_DEVICE_CPU, 0};
        const char *idx = NULL;
        if (strcmp(item, "cpu") == 0) {
        } else if (strncmp(item, "cpu:", 4) == 0) {
            idx = item + 4;
        } else if (strcmp(item, "cuda") == 0) {
            d.kind = CDZ_DEVICE_CUDA;
        } else if (strncmp(item, "cuda:", 5) == 0) {
            d.kind = CDZ_DEVICE_CUDA;
            idx = item + 5;
        } else {
            return cdz_error_set(INVALID, "%s: '%s' is not a device: auto, cpu, cpu:N, cuda or cuda:N%s", where, item,
                                 strcmp(item, "all") == 0 ? " ('auto' means every GPU)" : "");
        }
        if (idx) {
            uint64_t v;
            if (!parse_digits(idx, strlen(idx), &v) || v > 1023)
                return cdz_error_set(INVALID, "%s: '%s': device index is not a number in 0..1023", where, item);
            d.index = (int32_t)v;
        }
        for (uint32_t i = 0; i < cfg->devices.count; i++)
            if (cfg->devices.dev[i].kind == d.kind && cfg->devices.dev[i].index == d.index)
                return cdz_error_set(INVALID, "%s: '%s': device %s is listed twice", where, text, item);
        if (cfg->devices.count >= CDZ_CONFIG_MAX_DEVICES)
            return cdz_error_set(INVALID, "%s: more than %d devices (CDZ_CONFIG_MAX_DEVICES)", where,
                                 CDZ_CONFIG_MAX_DEVICES);
        cfg->devices.dev[cfg->devices.count++] = d;
        if (p[n] == '\0') break;
        p += n + 1;
    }
    return CDZ_STATUS_OK;
}

static const char *devices_str(const cdz_server_config *cfg, char *buf, size_t cap) {
    if (cfg->devices.all || cfg->devices.count == 0) {
        snprintf(buf, cap, "auto");
        return buf;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < cfg->devices.count && n < cap; i++) {
        cdz_device d = cfg->devices.dev[i];
        const char *sep = i ? "," : "";
        if (d.kind == CDZ_DEVICE_CUDA) n += (size_t)snprintf(buf + n, cap - n, "%scuda:%d", sep, (int)d.index);
        else if (d.index == 0) n += (size_t)snprintf(buf + n, cap - n, "%scpu", sep);
        else n += (size_t)snprintf(buf + n, cap - n, "%scpu:%d", sep, (int)d.index);
    }
    return buf;
}

static cdz_status parse_bool(const char *where, const char *text, bool *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) return *out = true, CDZ_STATUS_OK;
        if (strcasecmp(text, no[i]) == 0) return *out = false, CDZ_STATUS_OK;
    }
    return cdz_error_set(INVALID, "%s: '%s' is not a boolean (true/false, 1/0, yes/no, on/off)", where, text);
}

/* Parse `value` for setting k into cfg. Does not record the source. */
static cdz_status set_value(cdz_server_config *cfg, cdz_config_key k, const char *value, const char *where) {
    const setting *s = &settings[k];
    void *field = (char *)cfg + s->offset;
    if (value[0] == '\0')
        return cdz_error_set(INVALID, "%s: empty value%s", where,
                             s->def ? "" : " (leave the setting out instead)");
    cdz_status st;
    switch (s->kind) {
    case K_ADDR:
    case K_ADDR_OFF:
        return parse_addr(where, value, s->kind == K_ADDR_OFF, field);
    case K_MODELS: /* one spec; the environment's comma list is split by the caller */
        return add_model(cfg, where, value, strlen(value));
    case K_DEVICES:
        return parse_devices(where, value, cfg);
    case K_PATH:
        return parse_path(where, value, field);
    case K_U32:
    case K_SIZE:
    case K_DURATION: {
        uint64_t v = 0;
        if ((st = parse_u64_unit(where, value, s->kind, &v)) != CDZ_STATUS_OK) return st;
        char lo[32], hi[32];
        const char *(*fmt)(uint64_t, char *, size_t) = s->kind == K_DURATION ? duration_str : size_str;
        if (v < s->min || v > s->max) {
            if (s->kind == K_U32) {
                snprintf(lo, sizeof lo, "%" PRIu64, s->min);
                snprintf(hi, sizeof hi, "%" PRIu64, s->max);
            } else {
                fmt(s->min, lo, sizeof lo);
                fmt(s->max, hi, sizeof hi);
            }
            return cdz_error_set(INVALID, "%s: '%s' is %s the %s of %s", where, value, v < s->min ? "below" : "above",
                                 v < s->min ? "minimum" : "maximum", v < s->min ? lo : hi);
        }
        if (k == CDZ_CONFIG_MAX_FRAME_BYTES && v % CDZ_PROTO_ALIGN)
            return cdz_error_set(INVALID, "%s: '%s' is not a multiple of %d", where, value, CDZ_PROTO_ALIGN);
        if (s->size == sizeof(uint32_t)) *(uint32_t *)field = (uint32_t)v;
        else *(uint64_t *)field = v;
        return CDZ_STATUS_OK;
    }
    case K_LOG_LEVEL:
        if (cdz_log_parse_level(value, field) != CDZ_STATUS_OK)
            return cdz_error_set(INVALID, "%s: '%s' is not one of error, warn, info, debug", where, value);
        return CDZ_STATUS_OK;
    case K_BOOL:
        return parse_bool(where, value, field);
    case K_SECRET: {
        size_t len = strlen(value);
        if (len > CDZ_PROTO_MAX_API_KEY)
            return cdz_error_set(INVALID, "%s: %zu bytes exceeds the limit of %d (CDZ_PROTO_MAX_API_KEY)", where, len,
                                 CDZ_PROTO_MAX_API_KEY);
        for (size_t i = 0; i < len; i++) /* never echo the key itself */
            if ((unsigned char)value[i] <= 0x20 || (unsigned char)value[i] >= 0x7f)
                return cdz_error_set(INVALID, "%s: byte %zu of the key is not printable ASCII (spaces are not allowed)",
                                     where, i);
        memcpy(field, value, len + 1);
        return CDZ_STATUS_OK;
    }
    case K_FRACTION: {
        char *end = NULL;
        errno = 0;
        double v = strtod(value, &end);
        if (!end || *end || errno || !(v > 0.0 && v <= 0.98))
            return cdz_error_set(INVALID, "%s: '%s' is not a number in (0, 0.98]", where, value);
        *(double *)field = v;
        return CDZ_STATUS_OK;
    }
    case K_PRECISION:
        if (cdz_precision_parse(value, field) != CDZ_STATUS_OK)
            return cdz_error_set(INVALID, "%s: '%s' is not one of strict, tf32, fp16, bf16", where, value);
        return CDZ_STATUS_OK;
    }
    return cdz_error_set(CDZ_STATUS_INTERNAL, "%s: setting without a parser", where);
}

/* Apply one value from `src`. A setting may be given once per source, except `model`, which
 * accumulates within a source and replaces the models of lower sources. */
static cdz_status apply(cdz_server_config *cfg, cdz_config_key k, const char *value, cdz_config_source src,
                        uint32_t line, const char *where) {
    if (cfg->source[k] == src && src != CDZ_CONFIG_SOURCE_DEFAULT && k != CDZ_CONFIG_MODEL) {
        if (src == CDZ_CONFIG_SOURCE_FILE)
            return cdz_error_set(INVALID, "%s: already set on line %u", where, cfg->line[k]);
        return cdz_error_set(INVALID, "%s: given twice", where);
    }
    if (k == CDZ_CONFIG_MODEL && cfg->source[k] != src) memset(&cfg->models, 0, sizeof cfg->models);
    uint32_t models_before = cfg->models.count;
    cdz_status st;
    if (k == CDZ_CONFIG_MODEL && src == CDZ_CONFIG_SOURCE_ENV) {
        /* CADENZA_MODELS=a=/p/a.safetensors,b=/p/b.safetensors */
        const char *p = value;
        st = CDZ_STATUS_OK;
        for (;;) {
            while (*p == ' ' || *p == '\t') p++;
            size_t n = strcspn(p, ",");
            size_t m = n;
            while (m && (p[m - 1] == ' ' || p[m - 1] == '\t')) m--;
            if (m == 0) {
                st = cdz_error_set(INVALID, "%s: empty item in the comma-separated list '%s'", where, value);
                break;
            }
            if ((st = add_model(cfg, where, p, m)) != CDZ_STATUS_OK) break;
            if (p[n] == '\0') break;
            p += n + 1;
        }
    } else {
        st = set_value(cfg, k, value, where);
    }
    if (st != CDZ_STATUS_OK) return st;
    for (uint32_t i = models_before; k == CDZ_CONFIG_MODEL && i < cfg->models.count; i++) cfg->models.spec[i].line = line;
    cfg->source[k] = src;
    cfg->line[k] = line;
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * Sources
 * ---------------------------------------------------------------------------------- */
cdz_status cdz_server_config_default(cdz_server_config *cfg) {
    if (!cfg) return cdz_error_set(INVALID, "config: NULL");
    memset(cfg, 0, sizeof *cfg);
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        if (!settings[k].def) continue;
        char where[96];
        snprintf(where, sizeof where, "default of %s", settings[k].key);
        cdz_status st = set_value(cfg, (cdz_config_key)k, settings[k].def, where);
        if (st != CDZ_STATUS_OK) return cdz_error_set(CDZ_STATUS_INTERNAL, "config: %s", cdz_last_message());
    }
    return CDZ_STATUS_OK;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

cdz_status cdz_server_config_apply_text(cdz_server_config *cfg, const char *text, size_t len, const char *label) {
    if (!cfg || (!text && len)) return cdz_error_set(INVALID, "config text: NULL argument");
    if (!label) label = "config";
    if (len > CDZ_CONFIG_MAX_FILE)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "%s: %zu bytes exceeds the limit of %u (CDZ_CONFIG_MAX_FILE)", label,
                             len, CDZ_CONFIG_MAX_FILE);
    snprintf(cfg->file_label, sizeof cfg->file_label, "%s", label);
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* UTF-8 byte order mark */
    char tl_line[CDZ_CONFIG_MAX_LINE + 1];
    for (uint32_t lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        const char *src = text + pos;
        pos += n + (nl ? 1 : 0);
        if (n && src[n - 1] == '\r') n--;
        if (n > CDZ_CONFIG_MAX_LINE)
            return cdz_error_set(INVALID, "%s:%u: line of %zu bytes exceeds the limit of %d (CDZ_CONFIG_MAX_LINE)",
                                 label, lineno, n, CDZ_CONFIG_MAX_LINE);
        if (memchr(src, '\0', n)) return cdz_error_set(INVALID, "%s:%u: NUL byte (not a text file?)", label, lineno);
        memcpy(tl_line, src, n);
        tl_line[n] = '\0';
        char *p = tl_line;
        while (is_blank(*p)) p++;
        if (*p == '\0' || *p == '#') continue;
        char *key = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') p++;
        size_t klen = (size_t)(p - key);
        char *after_key = p;
        while (is_blank(*p)) p++;
        if (klen == 0 || *p != '=') {
            if (klen == 0)
                return cdz_error_set(INVALID, "%s:%u: expected 'key = value'", label, lineno);
            char k[80];
            snprintf(k, sizeof k, "%.*s", (int)(klen < 64 ? klen : 64), key);
            return cdz_error_set(INVALID, "%s:%u: expected '=' after '%s' (lines are 'key = value')", label, lineno, k);
        }
        *after_key = '\0';
        p++;
        while (is_blank(*p)) p++;
        char *value = p, *end;
        if (*p == '"') {
            value = p + 1;
            char *q = strchr(value, '"');
            if (!q) return cdz_error_set(INVALID, "%s:%u: %s: unterminated quote", label, lineno, key);
            *q = '\0';
            end = q + 1;
            while (is_blank(*end)) end++;
            if (*end != '\0' && *end != '#')
                return cdz_error_set(INVALID, "%s:%u: %s: text after the closing quote", label, lineno, key);
        } else {
            /* an unquoted value ends at a '#' that follows whitespace */
            end = value;
            while (*end && !(*end == '#' && end > value && is_blank(end[-1]))) end++;
            *end = '\0';
            while (end > value && is_blank(end[-1])) *--end = '\0';
            if (strchr(value, '"'))
                return cdz_error_set(INVALID, "%s:%u: %s: a '\"' inside a value (quote whole values only)", label,
                                     lineno, key);
        }
        for (const char *c = value; *c; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                return cdz_error_set(INVALID, "%s:%u: %s: control character 0x%02x in the value", label, lineno, key,
                                     (unsigned char)*c);
        int k = find_key(key, klen, true);
        char where[CDZ_CONFIG_MAX_PATH + 96];
        if (k < 0) {
            char sug[96];
            char kk[80];
            snprintf(kk, sizeof kk, "%.*s", (int)(klen < 64 ? klen : 64), key);
            return cdz_error_set(INVALID, "%s:%u: unknown key '%s'%s", label, lineno, kk,
                                 suggest(kk, false, "", sug, sizeof sug));
        }
        if (k == CDZ_CONFIG_CONFIG)
            return cdz_error_set(INVALID, "%s:%u: 'config' cannot be set inside a config file", label, lineno);
        snprintf(where, sizeof where, "%s:%u: %s", label, lineno, settings[k].key);
        cdz_status st = apply(cfg, (cdz_config_key)k, value, CDZ_CONFIG_SOURCE_FILE, lineno, where);
        if (st != CDZ_STATUS_OK) return st;
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_server_config_apply_file(cdz_server_config *cfg, const char *path) {
    if (!cfg || !path) return cdz_error_set(INVALID, "config file: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return cdz_error_set(CDZ_STATUS_IO, "config file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cdz_error_set(INVALID, "config file '%s': not a regular file", path);
    }
    if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size > CDZ_CONFIG_MAX_FILE) {
        fclose(f);
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "config file '%s': %lld bytes exceeds the limit of %u (CDZ_CONFIG_MAX_FILE)",
                             path, (long long)sb.st_size, CDZ_CONFIG_MAX_FILE);
    }
    char *buf = malloc(CDZ_CONFIG_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "config file '%s': out of memory", path);
    }
    size_t n = fread(buf, 1, CDZ_CONFIG_MAX_FILE + 1, f);
    bool err = ferror(f);
    fclose(f);
    cdz_status st;
    if (err) st = cdz_error_set(CDZ_STATUS_IO, "config file '%s': read error", path);
    else if (n > CDZ_CONFIG_MAX_FILE)
        st = cdz_error_set(CDZ_STATUS_TOO_LARGE, "config file '%s': exceeds the limit of %u bytes (CDZ_CONFIG_MAX_FILE)",
                           path, CDZ_CONFIG_MAX_FILE);
    else st = cdz_server_config_apply_text(cfg, buf, n, path);
    free(buf);
    return st;
}

cdz_status cdz_server_config_apply_env(cdz_server_config *cfg, char *const *envp) {
    if (!cfg) return cdz_error_set(INVALID, "config env: NULL");
    if (!envp) envp = environ;
    for (char *const *e = envp; e && *e; e++) {
        const char *var = *e;
        if (strncmp(var, "CADENZA_", 8) != 0) continue;
        const char *eq = strchr(var, '=');
        if (!eq) continue;
        size_t nlen = (size_t)(eq - var);
        const char *value = eq + 1;
        char name[80];
        if (nlen >= sizeof name) return cdz_error_set(INVALID, "environment: variable name '%.60s...' too long", var);
        memcpy(name, var, nlen);
        name[nlen] = '\0';
        int k = -1;
        for (int i = 0; i < CDZ_CONFIG_KEY_COUNT_ && k < 0; i++)
            if (strcmp(name, settings[i].env) == 0) k = i;
        if (k < 0) {
            bool runtime = false;
            for (size_t i = 0; i < sizeof runtime_env / sizeof runtime_env[0]; i++)
                if (strcmp(name, runtime_env[i]) == 0) runtime = true;
            if (runtime) continue;
            char sug[96];
            return cdz_error_set(INVALID, "environment: unknown variable %s%s", name, suggest(name, true, "", sug, sizeof sug));
        }
        if (value[0] == '\0') continue; /* set but empty: as if unset (container templates) */
        cdz_status st = apply(cfg, (cdz_config_key)k, value, CDZ_CONFIG_SOURCE_ENV, 0, name);
        if (st != CDZ_STATUS_OK) return st;
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_server_config_apply_flags(cdz_server_config *cfg, int argc, char *const *argv) {
    if (!cfg || (argc > 0 && !argv)) return cdz_error_set(INVALID, "config flags: NULL argument");
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!arg) return cdz_error_set(INVALID, "flags: NULL argument %d", i);
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            cfg->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (arg[0] == '-')
                return cdz_error_set(INVALID, "unknown option '%s' (options are --name VALUE; --help lists them)", arg);
            return cdz_error_set(INVALID, "unexpected argument '%s' (options are --name VALUE; --help lists them)", arg);
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_key(name, nlen, false);
        if (k < 0) {
            char sug[96], nm[80];
            snprintf(nm, sizeof nm, "%.*s", (int)(nlen < 64 ? nlen : 64), name);
            return cdz_error_set(INVALID, "unknown option '--%s'%s", nm, suggest(nm, false, "--", sug, sizeof sug));
        }
        const char *value;
        if (eq) value = eq + 1;
        else if (settings[k].kind == K_BOOL) value = "true"; /* --log-json; --log-json=false to turn off */
        else if (i + 1 < argc && argv[i + 1]) value = argv[++i];
        else return cdz_error_set(INVALID, "--%s needs a value (%s)", settings[k].key, settings[k].meta);
        char where[96];
        snprintf(where, sizeof where, "--%s", settings[k].key);
        cdz_status st = apply(cfg, (cdz_config_key)k, value, CDZ_CONFIG_SOURCE_FLAG, 0, where);
        if (st != CDZ_STATUS_OK) return st;
    }
    return CDZ_STATUS_OK;
}

static void warn(cdz_server_config *cfg, const char *fmt, const char *a) {
    if (cfg->n_warnings < CDZ_CONFIG_MAX_WARNINGS) snprintf(cfg->warnings[cfg->n_warnings++], sizeof cfg->warnings[0], fmt, a);
}

static const char *origin(const cdz_server_config *cfg, cdz_config_key k, char *buf, size_t cap) {
    switch (cfg->source[k]) {
    case CDZ_CONFIG_SOURCE_FILE: snprintf(buf, cap, "file %s:%u", cfg->file_label, cfg->line[k]); break;
    case CDZ_CONFIG_SOURCE_ENV: snprintf(buf, cap, "env %s", settings[k].env); break;
    case CDZ_CONFIG_SOURCE_FLAG: snprintf(buf, cap, "flag --%s", settings[k].key); break;
    default: snprintf(buf, cap, "default"); break;
    }
    return buf;
}

static cdz_status read_key_file(cdz_server_config *cfg) {
    const char *path = cfg->api_key_file;
    FILE *f = fopen(path, "rb");
    if (!f) return cdz_error_set(CDZ_STATUS_IO, "api-key-file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        warn(cfg, "api-key-file '%s' is readable by other users (chmod 600 it)", path);
    char buf[CDZ_CONFIG_MAX_KEY_FILE + 1];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n > CDZ_CONFIG_MAX_KEY_FILE)
        return cdz_error_set(INVALID, "api-key-file '%s': larger than %d bytes", path, CDZ_CONFIG_MAX_KEY_FILE);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || is_blank(buf[n - 1]))) n--; /* editors add a newline */
    buf[n] = '\0';
    if (n == 0) return cdz_error_set(INVALID, "api-key-file '%s': empty", path);
    if (memchr(buf, '\0', n)) return cdz_error_set(INVALID, "api-key-file '%s': NUL byte in the key", path);
    char where[CDZ_CONFIG_MAX_PATH + 32];
    snprintf(where, sizeof where, "api-key-file '%s'", path);
    return set_value(cfg, CDZ_CONFIG_API_KEY, buf, where);
}

cdz_status cdz_server_config_finish(cdz_server_config *cfg) {
    if (!cfg) return cdz_error_set(INVALID, "config: NULL");
    char o1[CDZ_CONFIG_MAX_PATH + 32], o2[CDZ_CONFIG_MAX_PATH + 32];
    if (cfg->api_key[0] && cfg->api_key_file[0])
        return cdz_error_set(INVALID, "api-key (%s) and api-key-file (%s) are both set: give one",
                             origin(cfg, CDZ_CONFIG_API_KEY, o1, sizeof o1),
                             origin(cfg, CDZ_CONFIG_API_KEY_FILE, o2, sizeof o2));
    if (cfg->api_key_file[0]) {
        cdz_status st = read_key_file(cfg);
        if (st != CDZ_STATUS_OK) return st;
        cfg->source[CDZ_CONFIG_API_KEY] = cfg->source[CDZ_CONFIG_API_KEY_FILE];
        cfg->line[CDZ_CONFIG_API_KEY] = cfg->line[CDZ_CONFIG_API_KEY_FILE];
    }
    if (cfg->models.count == 0)
        return cdz_error_set(INVALID, "no models to serve: give --model NAME=PATH, CADENZA_MODELS=NAME=PATH,... or "
                                      "'model = NAME=PATH' in the config file");
    const cdz_net_addr *l = &cfg->listen, *a = &cfg->admin;
    if (a->enabled && !l->is_unix && l->port != 0 && l->port == a->port && strcmp(l->host, a->host) == 0)
        return cdz_error_set(INVALID, "listen (%s) and admin (%s) are the same address %s:%u",
                             origin(cfg, CDZ_CONFIG_LISTEN, o1, sizeof o1), origin(cfg, CDZ_CONFIG_ADMIN, o2, sizeof o2),
                             l->host, l->port);
    if (cfg->max_batch > cfg->queue_size)
        return cdz_error_set(INVALID, "max-batch %u (%s) exceeds queue-size %u (%s): batches are formed from queued requests",
                             cfg->max_batch, origin(cfg, CDZ_CONFIG_MAX_BATCH, o1, sizeof o1), cfg->queue_size,
                             origin(cfg, CDZ_CONFIG_QUEUE_SIZE, o2, sizeof o2));
    if (!l->is_unix && strcmp(l->host, "127.0.0.1") != 0 && strcmp(l->host, "::1") != 0 &&
        strcmp(l->host, "localhost") != 0 && !cfg->api_key[0])
        warn(cfg, "listening on %s without an API key: any host that reaches this port can use the server", l->host);
    return CDZ_STATUS_OK;
}

static const char *env_lookup(char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

cdz_status cdz_server_config_load(cdz_server_config *cfg, int argc, char *const *argv, char *const *envp) {
    if (!cfg) return cdz_error_set(INVALID, "config: NULL");
    if (!envp) envp = environ;
    cdz_status st = cdz_server_config_default(cfg);
    if (st != CDZ_STATUS_OK) return st;
    /* Flags go into a scratch copy first: --config must be known before the file is read,
     * and flags win over everything, so they are laid over the result at the end. */
    cdz_server_config *fl = malloc(sizeof *fl);
    if (!fl) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "config: out of memory");
    if ((st = cdz_server_config_default(fl)) != CDZ_STATUS_OK ||
        (st = cdz_server_config_apply_flags(fl, argc, argv)) != CDZ_STATUS_OK)
        goto done;
    if (fl->help) {
        cfg->help = true;
        goto done;
    }
    const char *path = NULL;
    if (fl->source[CDZ_CONFIG_CONFIG] == CDZ_CONFIG_SOURCE_FLAG) {
        path = fl->config_path;
    } else if ((path = env_lookup(envp, "CADENZA_CONFIG")) && path[0]) {
        char checked[CDZ_CONFIG_MAX_PATH];
        if ((st = parse_path("CADENZA_CONFIG", path, checked)) != CDZ_STATUS_OK) goto done;
    }
    if (path && path[0] && (st = cdz_server_config_apply_file(cfg, path)) != CDZ_STATUS_OK) goto done;
    if ((st = cdz_server_config_apply_env(cfg, envp)) != CDZ_STATUS_OK) goto done;
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        if (fl->source[k] != CDZ_CONFIG_SOURCE_FLAG) continue;
        memcpy((char *)cfg + settings[k].offset, (char *)fl + settings[k].offset, settings[k].size);
        cfg->source[k] = CDZ_CONFIG_SOURCE_FLAG;
        cfg->line[k] = 0;
    }
    st = cdz_server_config_finish(cfg);
done:
    free(fl);
    return st;
}

/* ------------------------------------------------------------------------------------
 * Printing
 * ---------------------------------------------------------------------------------- */
const char *cdz_server_config_value_str(const cdz_server_config *cfg, cdz_config_key k, char *buf, size_t cap) {
    if (!cap) return buf;
    buf[0] = '\0';
    if (!cfg || (unsigned)k >= CDZ_CONFIG_KEY_COUNT_) return buf;
    const setting *s = &settings[k];
    const void *field = (const char *)cfg + s->offset;
    switch (s->kind) {
    case K_ADDR:
    case K_ADDR_OFF: return addr_str(field, buf, cap);
    case K_MODELS: {
        size_t n = 0;
        for (uint32_t i = 0; i < cfg->models.count && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s=%s", i ? "," : "", cfg->models.spec[i].name,
                                  cfg->models.spec[i].path);
        return buf;
    }
    case K_DEVICES: return devices_str(cfg, buf, cap);
    case K_PATH:
    case K_SECRET: snprintf(buf, cap, "%s", (const char *)field); return buf;
    case K_U32: snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)field); return buf;
    case K_SIZE: return size_str(*(const uint32_t *)field, buf, cap);
    case K_DURATION: return duration_str(*(const uint64_t *)field, buf, cap);
    case K_LOG_LEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        unsigned v = (unsigned)*(const cdz_log_level *)field;
        snprintf(buf, cap, "%s", v < 4 ? names[v] : "?");
        return buf;
    }
    case K_BOOL: snprintf(buf, cap, "%s", *(const bool *)field ? "true" : "false"); return buf;
    case K_FRACTION: {
        double v = *(const double *)field;
        snprintf(buf, cap, "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
        return buf;
    }
    case K_PRECISION: snprintf(buf, cap, "%s", cdz_precision_name(*(const cdz_precision *)field)); return buf;
    }
    return buf;
}

/* A value as config-file text: quoted when it would not survive unquoted. */
static void print_kv(FILE *f, const char *key, const char *value, const char *comment) {
    size_t len = strlen(value);
    bool quote = len == 0 || is_blank(value[0]) || is_blank(value[len - 1]) || value[0] == '"' || value[0] == '#';
    for (size_t i = 1; i < len && !quote; i++)
        if (value[i] == '#' && is_blank(value[i - 1])) quote = true;
    fprintf(f, quote ? "%s = \"%s\"" : "%s = %s", key, value);
    fprintf(f, "  # %s\n", comment);
}

void cdz_server_config_print(const cdz_server_config *cfg, FILE *f, bool show_secrets) {
    if (!cfg || !f) return;
    char value[CDZ_CONFIG_MAX_MODELS * (CDZ_PROTO_MAX_NAME + CDZ_CONFIG_MAX_PATH + 2)];
    char from[CDZ_CONFIG_MAX_PATH + 64];
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        const setting *s = &settings[k];
        origin(cfg, (cdz_config_key)k, from, sizeof from);
        if (k == CDZ_CONFIG_CONFIG) { /* not a file key: shown as a comment */
            fprintf(f, "# config: %s  (%s)\n", cfg->config_path[0] ? cfg->config_path : "none", from);
            continue;
        }
        if (k == CDZ_CONFIG_MODEL) {
            if (cfg->models.count == 0) fprintf(f, "# model: none  (%s)\n", from);
            for (uint32_t i = 0; i < cfg->models.count; i++) {
                snprintf(value, sizeof value, "%s=%s", cfg->models.spec[i].name, cfg->models.spec[i].path);
                if (cfg->source[k] == CDZ_CONFIG_SOURCE_FILE)
                    snprintf(from, sizeof from, "file %s:%u", cfg->file_label, cfg->models.spec[i].line);
                print_kv(f, s->key, value, from);
            }
            continue;
        }
        cdz_server_config_value_str(cfg, (cdz_config_key)k, value, sizeof value);
        if (value[0] == '\0') { /* unset optional string: a file cannot say "empty" */
            fprintf(f, "# %s: not set  (%s)\n", s->key, from);
            continue;
        }
        if (k == CDZ_CONFIG_API_KEY && !show_secrets) {
            fprintf(f, "# %s = ***  (%s)\n", s->key, from);
            continue;
        }
        print_kv(f, s->key, value, from);
    }
}

void cdz_server_config_usage(FILE *f) {
    fprintf(f, "settings (flag / environment variable / config-file key; flags > environment > file > default):\n");
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        const setting *s = &settings[k];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", s->key, s->meta);
        fprintf(f, "  %-28s %s\n  %-28s %s; default: %s\n", flag, s->help, "", s->env, s->def ? s->def : "none");
    }
    fprintf(f, "  %-28s this text\n", "-h, --help");
}
