/*
 * server.h: the cadenza server's event loop (docs/serving.md).
 *
 * One I/O thread owns every socket and every connection: an epoll loop over the listener
 * (TCP or unix), the connections, an eventfd the scheduler's workers poke when a job is done,
 * and a periodic sweep for timeouts. Compute happens on the scheduler's workers; a finished
 * job is handed back through a locked list + the eventfd, so connection state is only ever
 * touched by the I/O thread.
 *
 * Bounds: at most max_connections connections (extra ones get ERROR BUSY + CLOSING); per
 * connection an input buffer of header + max_frame_bytes, at most max_inflight requests, and
 * an output high-water mark above which the connection is not read (backpressure); a client
 * that accepts no bytes for write_timeout is dropped; a frame not completed within
 * read_timeout, or no frame for idle_timeout, closes the connection.
 *
 * Lifecycle: cdz_server_create loads and warms up every model (cdz_sched_create) and only then
 * binds the listener; cdz_server_run serves until cdz_server_stop (async-signal-safe), then
 * drains: new requests get SHUTTING_DOWN, in-flight ones finish for up to drain_timeout, every
 * answer is flushed (bounded by write_timeout), and run returns OK.
 *
 * defines: cdz_server, cdz_server_stats, cdz_server_create, cdz_server_create_with,
 *          cdz_server_run, cdz_server_stop, cdz_server_destroy, cdz_server_port,
 *          cdz_server_get_stats, cdz_server_ready
 */
#ifndef CDZ_SERVER_SERVER_H
#define CDZ_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "cadenza.h"
#include "config.h"
#include "scheduler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdz_server cdz_server;

typedef struct cdz_server_stats {
    uint64_t connections_accepted, connections_refused, connections_open;
    uint64_t requests, results, errors;
    uint64_t errors_by_code[CDZ_STATUS_COUNT_];
    uint64_t dropped_read_timeout, dropped_idle, dropped_write_timeout, dropped_protocol;
    uint64_t orphaned_jobs; /* finished after their connection went: freed, not written */
    uint64_t inflight;      /* jobs submitted and not yet returned by the scheduler */
} cdz_server_stats;

/* Observers (metrics): called on the I/O thread; every field may be NULL. */
typedef struct cdz_server_hooks {
    void *user;
    /* one finished request (answered or refused); durations < 0 when a stage was not reached */
    void (*request_done)(void *user, const char *model, cdz_status status, double queue_s,
                         double compute_s, double total_s, int32_t batch_items);
    void (*connections)(void *user, int delta); /* +1 accept, -1 close */
    void (*ready)(void *user, bool ready);      /* false when the drain begins */
} cdz_server_hooks;

/* Create the scheduler from cfg (models, devices, batching) and bind cfg->listen. */
cdz_status cdz_server_create(const cdz_server_config *cfg, cdz_server **out);
/* Same with a scheduler config the caller built (tests: several logical CPU devices). */
cdz_status cdz_server_create_with(const cdz_server_config *cfg, const cdz_sched_config *scfg,
                                  cdz_server **out);
/* The bound TCP port (useful with port 0); 0 for a unix socket. */
uint16_t cdz_server_port(const cdz_server *s);
/* Serve on the calling thread until stopped and drained. */
cdz_status cdz_server_run(cdz_server *s);
/* Begin the drain (any thread, or a signal handler). */
void cdz_server_stop(cdz_server *s);
/* True after create until stop: models warm, listener bound, not draining. */
bool cdz_server_ready(const cdz_server *s);
void cdz_server_set_hooks(cdz_server *s, const cdz_server_hooks *hooks); /* before run */
void cdz_server_get_stats(cdz_server *s, cdz_server_stats *out);
cdz_sched *cdz_server_sched(cdz_server *s);
/* Close the listener, free every connection, destroy the scheduler. After run returned. */
void cdz_server_destroy(cdz_server *s);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_SERVER_SERVER_H */
