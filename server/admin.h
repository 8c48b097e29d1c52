/*
 * admin.h: the admin HTTP port of `cadenza serve` (libmicrohttpd), for orchestrators and
 * Prometheus (docs/metrics.md).
 *
 *   GET /healthz  200 "ok\n" while the process serves (liveness).
 *   GET /readyz   200 "ready\n" when the state is READY; 503 "loading\n" / "draining\n"
 *                 otherwise (readiness: load balancers stop routing on 503).
 *   GET /metrics  200 text/plain; version=0.0.4: the registry, after refreshing the
 *                 scrape-time gauges from `stats` (scheduler snapshot) and from NVML.
 *   other paths 404; methods other than GET/HEAD 405 (with "Allow: GET, HEAD").
 * Bounded: at most max_connections connections, a per-connection timeout, a small
 * per-connection memory limit; request bodies are never read.
 *
 * Decoupling: the admin port never calls the scheduler itself. It calls `stats(user, &snap)`
 * at each scrape; the server passes cdz_admin_stats_from_sched (below) with its cdz_sched, and
 * tests pass a fake provider. NVML (GPU memory used, utilisation) is loaded with dlopen
 * ("libnvidia-ml.so.1") at the first scrape; when it is absent the GPU gauges are skipped
 * silently. Only CUDA devices present in the snapshot get GPU gauges.
 *
 * Readiness is owned by the server: LOADING at start, cdz_admin_set_state(READY) after
 * warm-up, DRAINING on SIGTERM (readyz reads only this flag: it never waits on the scheduler).
 *
 * Built without libmicrohttpd (no CDZ_HAVE_MHD): cdz_admin_start returns UNSUPPORTED with a
 * message saying how to get it; the metrics registry still works.
 *
 * defines: cdz_admin, cdz_admin_state, cdz_admin_stats_fn, cdz_admin_options,
 *          cdz_admin_start, cdz_admin_stop, cdz_admin_port, cdz_admin_set_state, cdz_admin_set_stats,
 *          cdz_admin_state_get, cdz_admin_stats_from_sched, cdz_admin_available
 */
#ifndef CDZ_ADMIN_H
#define CDZ_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "cadenza.h"
#include "metrics.h"
#include "scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdz_admin cdz_admin;

typedef enum cdz_admin_state {
    CDZ_ADMIN_LOADING = 0,
    CDZ_ADMIN_READY,
    CDZ_ADMIN_DRAINING,
} cdz_admin_state;

/* Fill *out with a scheduler snapshot (called on an admin thread, once per scrape). */
typedef void (*cdz_admin_stats_fn)(void *user, cdz_sched_stats *out);

typedef struct cdz_admin_options {
    const char *host;          /* "127.0.0.1" (default when NULL), "0.0.0.0", "::1", a name */
    uint16_t port;             /* 0: the OS picks one (read it with cdz_admin_port) */
    const char *unix_path;     /* non-NULL and non-empty: listen on this unix socket instead */
    cdz_metrics *metrics;      /* rendered at /metrics; NULL: an empty page */
    cdz_admin_stats_fn stats;  /* NULL: no scheduler gauges */
    void *stats_user;
    uint32_t max_connections;  /* 0: 32 */
    uint32_t timeout_s;        /* per-connection idle timeout; 0: 10 */
    uint32_t threads;          /* 0: 2 (a thread pool; scrapes never block the server) */
    bool disable_nvml;         /* tests: skip the NVML probe */
} cdz_admin_options;

/* True when built with libmicrohttpd. */
bool cdz_admin_available(void);
/* Bind, listen and start serving (state LOADING). Errors: INVALID_ARGUMENT (bad host),
 * IO (bind/listen failed, naming the address and errno text), UNSUPPORTED (no libmicrohttpd). */
cdz_status cdz_admin_start(const cdz_admin_options *opt, cdz_admin **out);
/* The bound TCP port (0 for a unix socket). */
uint16_t cdz_admin_port(const cdz_admin *a);
void cdz_admin_set_state(cdz_admin *a, cdz_admin_state state);
/* Attach (or, with NULL, detach) the stats provider after start: the admin port starts before
 * the scheduler exists (so /healthz answers during warm-up); detach before destroying it. */
void cdz_admin_set_stats(cdz_admin *a, cdz_admin_stats_fn stats, void *user);
cdz_admin_state cdz_admin_state_get(const cdz_admin *a);
/* Stop serving, close the socket (unlinking a unix socket path), free. NULL is ignored. */
void cdz_admin_stop(cdz_admin *a);

/* The stats provider for a real scheduler: opt.stats = cdz_admin_stats_from_sched,
 * opt.stats_user = sched. (Inline so that admin.c does not link the scheduler.) */
static inline void cdz_admin_stats_from_sched(void *sched, cdz_sched_stats *out) {
    cdz_sched_get_stats((cdz_sched *)sched, out);
}

#ifdef __cplusplus
}
#endif
#endif /* CDZ_ADMIN_H */
