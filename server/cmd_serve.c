/*
 * cmd_serve.c: `cadenza serve` — load and warm every model, then serve the wire protocol
 * (server.c) and the admin port (admin.c: /healthz, /readyz, /metrics) until SIGTERM/SIGINT,
 * which drains in-flight work and exits 0 (docs/serving.md).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "metrics.h"
#include "server.h"

static cdz_server *g_server; /* for the signal handler */

static void on_signal(int sig) {
    (void)sig;
    if (g_server) cdz_server_stop(g_server); /* an atomic store and an eventfd write */
}

static void hook_done(void *user, const char *model, cdz_status st, double q, double c, double t,
                      int32_t items) {
    cdz_metrics_request_done(user, model, st, q, c, t, items);
}
static void hook_conns(void *user, int delta) { cdz_metrics_connections_add(user, delta); }

static cdz_admin *g_admin;
static void hook_ready(void *user, bool ready) {
    cdz_metrics_set_ready(user, ready);
    if (g_admin) cdz_admin_set_state(g_admin, ready ? CDZ_ADMIN_READY : CDZ_ADMIN_DRAINING);
}

static int fail(const char *what) {
    const cdz_error *e = cdz_last_error();
    cdz_log(CDZ_LOG_LEVEL_ERROR, "serve", "%s: %s: %s", what, cdz_status_name(e->code), e->message);
    fprintf(stderr, "cadenza serve: %s: %s: %s\n", what, cdz_status_name(e->code), e->message);
    return 1;
}

int cmd_serve(int argc, char **argv) {
    cdz_server_config cfg;
    if (cdz_server_config_load(&cfg, argc - 1, argv + 1, NULL) != CDZ_STATUS_OK) {
        fail("configuration");
        return 2;
    }
    if (cfg.help) {
        printf("usage: cadenza serve --model NAME=PATH [options]\n\n");
        cdz_server_config_usage(stdout);
        return 0;
    }
    cdz_log_set_level(cfg.log_level);
    cdz_log_set_json(cfg.log_json);
    for (uint32_t i = 0; i < cfg.n_warnings; i++) cdz_log(CDZ_LOG_LEVEL_WARN, "serve", "%s", cfg.warnings[i]);

    cdz_metrics *metrics = NULL;
    if (cdz_metrics_create(&metrics) != CDZ_STATUS_OK) return fail("metrics");
    /* the admin port first: /healthz answers and /readyz says "loading" during warm-up */
    if (cfg.admin.enabled) {
        cdz_admin_options ao = {.host = cfg.admin.is_unix ? NULL : cfg.admin.host,
                                .port = cfg.admin.port,
                                .unix_path = cfg.admin.is_unix ? cfg.admin.path : NULL,
                                .metrics = metrics};
        if (cdz_admin_start(&ao, &g_admin) != CDZ_STATUS_OK) {
            if (cdz_last_error()->code != CDZ_STATUS_UNSUPPORTED) {
                cdz_metrics_destroy(metrics);
                return fail("admin port");
            }
            cdz_log(CDZ_LOG_LEVEL_WARN, "serve", "admin port disabled: %s", cdz_last_message());
        }
    }
    cdz_server *srv = NULL;
    if (cdz_server_create(&cfg, &srv) != CDZ_STATUS_OK) {
        int rc = fail("start");
        cdz_admin_stop(g_admin);
        cdz_metrics_destroy(metrics);
        return rc;
    }
    cdz_server_hooks hooks = {.user = metrics, .request_done = hook_done, .connections = hook_conns,
                              .ready = hook_ready};
    cdz_server_set_hooks(srv, &hooks);
    g_server = srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (g_admin) {
        /* /metrics snapshots the scheduler's queues, arenas and device health at each scrape */
        cdz_admin_set_stats(g_admin, cdz_admin_stats_from_sched, cdz_server_sched(srv));
        cdz_admin_set_state(g_admin, CDZ_ADMIN_READY);
    }
    cdz_metrics_set_ready(metrics, true);
    if (cfg.listen.is_unix)
        cdz_log(CDZ_LOG_LEVEL_INFO, "serve", "ready: listening on unix:%s (%u models)", cfg.listen.path, cfg.models.count);
    else
        cdz_log(CDZ_LOG_LEVEL_INFO, "serve", "ready: listening on %s:%u (%u models)", cfg.listen.host,
                cdz_server_port(srv), cfg.models.count);
    fprintf(stderr, "cadenza serve: listening on %s%s:%u\n", cfg.listen.is_unix ? "unix:" : "",
            cfg.listen.is_unix ? cfg.listen.path : cfg.listen.host,
            cfg.listen.is_unix ? 0 : cdz_server_port(srv));
    cdz_status st = cdz_server_run(srv);
    g_server = NULL;
    if (g_admin) cdz_admin_set_stats(g_admin, NULL, NULL); /* before the scheduler goes */
    cdz_server_destroy(srv);
    cdz_admin_stop(g_admin);
    g_admin = NULL;
    cdz_metrics_destroy(metrics);
    if (st != CDZ_STATUS_OK) return fail("serve");
    cdz_log(CDZ_LOG_LEVEL_INFO, "serve", "stopped cleanly");
    return 0;
}
