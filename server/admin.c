/*
 * admin.c: the admin HTTP port (admin.h) on libmicrohttpd, and the NVML probe (dlopen).
 */
#include "admin.h"

#include <stdatomic.h>
#include <stdlib.h>

#ifdef CDZ_HAVE_MHD

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

/* ---- NVML, declared here so that building needs no NVML header ---- */
typedef struct nvml_memory { unsigned long long total, free, used; } nvml_memory;
typedef struct nvml_utilization { unsigned int gpu, memory; } nvml_utilization;
typedef void *nvml_device;

typedef struct nvml_api {
    void *lib;
    int (*init)(void);
    int (*shutdown)(void);
    int (*by_index)(unsigned int, nvml_device *);
    int (*memory)(nvml_device, nvml_memory *);
    int (*utilization)(nvml_device, nvml_utilization *);
} nvml_api;

struct cdz_admin {
    struct MHD_Daemon *daemon;
    int fd;
    uint16_t port;
    char unix_path[108];
    cdz_metrics *metrics;
    cdz_admin_stats_fn stats;
    void *stats_user;
    atomic_int state;
    pthread_mutex_t scrape_mu; /* one scrape at a time: the gauges are rebuilt, then rendered */
    bool nvml_tried, nvml_disabled;
    nvml_api nvml;
};

bool cdz_admin_available(void) { return true; }

static void nvml_load(cdz_admin *a) {
    a->nvml_tried = true;
    if (a->nvml_disabled) return;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return; /* no driver: the GPU gauges are skipped (documented) */
    nvml_api n = {.lib = lib};
    *(void **)&n.init = dlsym(lib, "nvmlInit_v2");
    *(void **)&n.shutdown = dlsym(lib, "nvmlShutdown");
    *(void **)&n.by_index = dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&n.memory = dlsym(lib, "nvmlDeviceGetMemoryInfo");
    *(void **)&n.utilization = dlsym(lib, "nvmlDeviceGetUtilizationRates");
    if (!n.init || !n.shutdown || !n.by_index || !n.memory || !n.utilization || n.init() != 0) {
        dlclose(lib);
        return;
    }
    a->nvml = n;
}

static void nvml_update(cdz_admin *a, const cdz_sched_stats *st) {
    if (!a->nvml_tried) nvml_load(a);
    if (!a->nvml.lib || !st) return;
    for (int i = 0; i < st->n_devices && i < CDZ_SCHED_MAX_DEVICES; i++) {
        cdz_device d = st->devices[i].device;
        if (d.kind != CDZ_DEVICE_CUDA || d.index < 0) continue;
        /* NVML indexes follow PCI order; CUDA ordinals match when CUDA_DEVICE_ORDER=PCI_BUS_ID
         * and CUDA_VISIBLE_DEVICES is unset (documented in docs/metrics.md). */
        nvml_device h;
        if (a->nvml.by_index((unsigned)d.index, &h) != 0) continue;
        nvml_memory mem;
        nvml_utilization util;
        double used = a->nvml.memory(h, &mem) == 0 ? (double)mem.used : -1;
        double ratio = a->nvml.utilization(h, &util) == 0 ? util.gpu / 100.0 : -1;
        char label[32];
        snprintf(label, sizeof label, "cuda:%d", (int)d.index);
        cdz_metrics_set_gpu(a->metrics, label, used, ratio);
    }
}

/* ---- HTTP ---- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned code, const char *type, char *body,
                               size_t len, enum MHD_ResponseMemoryMode mode, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned code, const char *text,
                                    const char *allow) {
    return respond(c, code, "text/plain; charset=utf-8", (char *)text, strlen(text),
                   MHD_RESPMEM_PERSISTENT, allow);
}

static enum MHD_Result serve_metrics(cdz_admin *a, struct MHD_Connection *c) {
    char *text = NULL;
    size_t len = 0;
    cdz_status st = CDZ_STATUS_OK;
    pthread_mutex_lock(&a->scrape_mu);
    if (a->metrics) {
        cdz_sched_stats *snap = NULL;
        if (a->stats && (snap = calloc(1, sizeof *snap)) != NULL) {
            a->stats(a->stats_user, snap);
            cdz_metrics_set_sched_stats(a->metrics, snap);
        }
        nvml_update(a, snap);
        free(snap);
        cdz_metrics_set_ready(a->metrics, atomic_load(&a->state) == CDZ_ADMIN_READY);
        st = cdz_metrics_render(a->metrics, &text, &len);
    } else {
        text = calloc(1, 1);
        if (!text) st = CDZ_STATUS_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&a->scrape_mu);
    if (st != CDZ_STATUS_OK) return respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics rendering failed\n", NULL);
    return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                   MHD_RESPMEM_MUST_FREE, NULL);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    cdz_admin *a = cls;
    /* Answered on the first call, before any body is read: a body is never buffered. */
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool known = strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 || strcmp(url, "/metrics") == 0;
    if (!known) return respond_text(c, MHD_HTTP_NOT_FOUND, "not found (try /healthz, /readyz, /metrics)\n", NULL);
    if (!get) return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "GET, HEAD");
    if (strcmp(url, "/healthz") == 0) return respond_text(c, MHD_HTTP_OK, "ok\n", NULL);
    if (strcmp(url, "/readyz") == 0) {
        int s = atomic_load(&a->state);
        if (s == CDZ_ADMIN_READY) return respond_text(c, MHD_HTTP_OK, "ready\n", NULL);
        return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, s == CDZ_ADMIN_DRAINING ? "draining\n" : "loading\n",
                            NULL);
    }
    return serve_metrics(a, c);
}

static cdz_status listen_socket(const cdz_admin_options *opt, cdz_admin *a) {
    if (opt->unix_path && opt->unix_path[0]) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(opt->unix_path) >= sizeof sun.sun_path)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "admin: unix socket path '%s' is longer than %zu bytes",
                                 opt->unix_path, sizeof sun.sun_path - 1);
        memcpy(sun.sun_path, opt->unix_path, strlen(opt->unix_path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return cdz_error_set(CDZ_STATUS_IO, "admin: socket(AF_UNIX): %s", strerror(errno));
        unlink(opt->unix_path); /* a stale socket file from an earlier run */
        if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 64) != 0) {
            int e = errno;
            close(fd);
            return cdz_error_set(CDZ_STATUS_IO, "admin: cannot listen on unix:%s: %s", opt->unix_path, strerror(e));
        }
        snprintf(a->unix_path, sizeof a->unix_path, "%s", opt->unix_path);
        a->fd = fd;
        return CDZ_STATUS_OK;
    }
    const char *host = opt->host && opt->host[0] ? opt->host : "127.0.0.1";
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)opt->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "admin: cannot resolve '%s': %s", host, gai_strerror(gai));
    int err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
            a->fd = fd;
            freeaddrinfo(res);
            return CDZ_STATUS_OK;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return cdz_error_set(CDZ_STATUS_IO, "admin: cannot listen on %s:%u: %s", host, (unsigned)opt->port,
                         strerror(err ? err : EADDRNOTAVAIL));
}

cdz_status cdz_admin_start(const cdz_admin_options *opt, cdz_admin **out) {
    if (!opt || !out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "admin: options or out is NULL");
    *out = NULL;
    cdz_admin *a = calloc(1, sizeof *a);
    if (!a) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "admin: out of host memory");
    a->fd = -1;
    a->metrics = opt->metrics;
    a->stats = opt->stats;
    a->stats_user = opt->stats_user;
    a->nvml_disabled = opt->disable_nvml;
    atomic_init(&a->state, CDZ_ADMIN_LOADING);
    pthread_mutex_init(&a->scrape_mu, NULL);
    cdz_status st = listen_socket(opt, a);
    if (st != CDZ_STATUS_OK) {
        pthread_mutex_destroy(&a->scrape_mu);
        free(a);
        return st;
    }
    fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) | O_NONBLOCK);
    unsigned threads = opt->threads ? opt->threads : 2;
    unsigned max_conn = opt->max_connections ? opt->max_connections : 32;
    unsigned timeout = opt->timeout_s ? opt->timeout_s : 10;
    a->daemon = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL, NULL,
                                 handle, a, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)a->fd,
                                 MHD_OPTION_THREAD_POOL_SIZE, threads,
                                 MHD_OPTION_CONNECTION_LIMIT, max_conn,
                                 MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
                                 MHD_OPTION_END);
    if (!a->daemon) {
        close(a->fd);
        if (a->unix_path[0]) unlink(a->unix_path);
        pthread_mutex_destroy(&a->scrape_mu);
        free(a);
        return cdz_error_set(CDZ_STATUS_IO, "admin: libmicrohttpd could not start on the admin socket");
    }
    if (a->metrics) cdz_metrics_set_ready(a->metrics, false);
    *out = a;
    return CDZ_STATUS_OK;
}

uint16_t cdz_admin_port(const cdz_admin *a) { return a ? a->port : 0; }

void cdz_admin_set_state(cdz_admin *a, cdz_admin_state state) {
    if (!a) return;
    atomic_store(&a->state, (int)state);
    if (a->metrics) cdz_metrics_set_ready(a->metrics, state == CDZ_ADMIN_READY);
}

void cdz_admin_set_stats(cdz_admin *a, cdz_admin_stats_fn stats, void *user) {
    if (!a) return;
    pthread_mutex_lock(&a->scrape_mu); /* a scrape in progress finishes with the old provider */
    a->stats = stats;
    a->stats_user = user;
    pthread_mutex_unlock(&a->scrape_mu);
}

cdz_admin_state cdz_admin_state_get(const cdz_admin *a) {
    return a ? (cdz_admin_state)atomic_load(&((cdz_admin *)a)->state) : CDZ_ADMIN_LOADING;
}

void cdz_admin_stop(cdz_admin *a) {
    if (!a) return;
    /* quiesce hands the listening socket back, so that we close it ourselves exactly once */
    MHD_socket fd = MHD_quiesce_daemon(a->daemon);
    MHD_stop_daemon(a->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    if (a->unix_path[0]) unlink(a->unix_path);
    if (a->nvml.lib) {
        a->nvml.shutdown();
        dlclose(a->nvml.lib);
    }
    pthread_mutex_destroy(&a->scrape_mu);
    free(a);
}

#else /* !CDZ_HAVE_MHD */

struct cdz_admin {
    int unused;
};

bool cdz_admin_available(void) { return false; }

cdz_status cdz_admin_start(const cdz_admin_options *opt, cdz_admin **out) {
    if (out) *out = NULL;
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                         "admin: this build has no libmicrohttpd, so there is no admin HTTP port "
                         "(apt-get install libmicrohttpd-dev and rebuild, or set admin = off)");
}
uint16_t cdz_admin_port(const cdz_admin *a) { return 0; }
void cdz_admin_set_state(cdz_admin *a, cdz_admin_state state) {}
void cdz_admin_set_stats(cdz_admin *a, cdz_admin_stats_fn stats, void *user) {}
cdz_admin_state cdz_admin_state_get(const cdz_admin *a) { return CDZ_ADMIN_LOADING; }
void cdz_admin_stop(cdz_admin *a) {}

#endif /* CDZ_HAVE_MHD */
