/*
 * server.c: the epoll event loop of `cadenza serve` (server.h explains the shape).
 *
 * Ownership: connections and their buffers belong to the I/O thread alone. A request (struct
 * req) is owned by its connection until submitted; from then on the scheduler holds it until
 * done(), which pushes it onto a locked list and pokes the eventfd; the I/O thread pops it and
 * either writes the answer or, when its connection has gone (req->c == NULL), frees it
 * unwritten. So a request is freed exactly once, by the I/O thread, after its done().
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "protocol.h"

#define LOG_COMPONENT "server"
#define SWEEP_NS 20000000LL /* timeouts are checked every 20 ms */
#define IN_INITIAL (64u << 10)

typedef struct conn conn;
typedef struct strm strm;

/* An open stream (docs/serving.md "Streams"): owned by its connection, I/O thread only. Each
 * STREAM_CHUNK becomes a job with stream_id (the scheduler runs them in order on one worker);
 * each finished job becomes the next RESULT; the end of the input and no job left sends the
 * final RESULT with END_OF_STREAM. What a stream buffers is its chunks in flight, bounded by
 * the connection's max-inflight (a chunk over it is BUSY and ends the stream). */
struct strm {
    uint64_t sid, rid;
    cdz_proto_stream ps;
    char model[CDZ_JOB_MAX_NAME];
    int32_t n_outputs;
    char outputs[CDZ_JOB_MAX_TENSORS][CDZ_JOB_MAX_NAME];
    int32_t priority;
    int64_t deadline_ns;     /* whole stream; 0 = none */
    uint64_t out_seq;        /* next RESULT sequence */
    uint32_t pending;        /* chunk jobs in flight */
    bool input_done;
    strm *next;
};

typedef struct req {
    cdz_job job;
    conn *c;             /* NULL once the connection has gone */
    uint64_t request_id; /* the client's */
    uint8_t *frame;      /* copy of the INFER frame: inputs are views into it */
    struct req *prev, *next; /* in c's in-flight list */
    struct req *done_next;
    cdz_server *srv;
    strm *st;            /* the stream of a STREAM_CHUNK job; NULL once that stream ended */
    bool is_stream;
    uint64_t chunk_seq;
} req;

struct conn {
    int fd;
    uint64_t id;
    bool authed, closing, dead;
    uint32_t ep_mask;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap; /* pending bytes: out[out_off .. out_len) */
    int64_t frame_start_ns;           /* first byte of the current partial frame, or 0 */
    int64_t last_frame_ns;            /* for the idle timeout */
    int64_t write_stall_ns;           /* when pending output last made no progress, or 0 */
    uint32_t inflight;
    req *reqs;
    strm *streams;
    uint32_t n_streams;
    conn *prev, *next;
};

struct cdz_server {
    cdz_server_config cfg;
    cdz_sched *sched;
    int listen_fd, ep_fd, wake_fd;
    uint16_t port;
    bool unix_sock;
    char unix_path[CDZ_CONFIG_MAX_UNIX_PATH];
    atomic_bool stop_requested, drain_done, ready;
    bool draining;
    pthread_t drain_thread;
    bool drain_thread_started;
    conn *conns;
    conn *graveyard; /* closed this iteration; freed at its end so no pointer dangles */
    uint32_t n_conns;
    uint64_t next_conn_id;
    atomic_uint_fast64_t next_job_id;
    pthread_mutex_t done_mu;
    req *done_head, *done_tail;
    pthread_mutex_t stats_mu;
    cdz_server_stats stats;
    atomic_uint_fast64_t inflight;
    atomic_uint_fast64_t streams_open; /* across connections (tests read it) */
    size_t out_high;             /* stop reading a connection with this much output pending */
    cdz_server_hooks hooks;
    cdz_proto_msg msg;           /* decode/encode scratch, I/O thread only */
    uint8_t small[4096];
};

static int64_t now_ns(void) { return cdz_now_ns(); }

static void stat_add(cdz_server *s, uint64_t *field, uint64_t v) {
    pthread_mutex_lock(&s->stats_mu);
    *field += v;
    pthread_mutex_unlock(&s->stats_mu);
}

static void wake(cdz_server *s) {
    uint64_t one = 1;
    ssize_t r = write(s->wake_fd, &one, sizeof one); /* async-signal-safe */
    (void)r;
}

/* ------------------------------------------------------------------ output */

static bool out_reserve(conn *c, size_t n) {
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n <= c->out_cap) return true;
    if (c->out_off > 0) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap) return true;
    }
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + n) cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p) return false;
    c->out = p;
    c->out_cap = cap;
    return true;
}

static size_t out_pending(const conn *c) { return c->out_len - c->out_off; }

static void conn_close(cdz_server *s, conn *c, const char *why);

/* Append an encoded message; on encode failure an INTERNAL error is sent instead. */
static void send_msg(cdz_server *s, conn *c, const cdz_proto_msg *m) {
    size_t size = 0;
    cdz_status st = cdz_proto_encode(m, NULL, 0, &size);
    if (st == CDZ_STATUS_OK && out_reserve(c, size))
        st = cdz_proto_encode(m, c->out + c->out_len, c->out_cap - c->out_len, &size);
    else if (st == CDZ_STATUS_OK)
        st = CDZ_STATUS_OUT_OF_MEMORY;
    if (st == CDZ_STATUS_OK) {
        c->out_len += size;
        return;
    }
    /* an answer that cannot be encoded (e.g. a result over the frame limit) becomes an error */
    const cdz_error *e = cdz_last_error();
    char msg[600];
    snprintf(msg, sizeof msg, "%s answer could not be sent: %s", cdz_proto_type_name(m->h.type),
             e->message);
    size_t n = 0;
    if (out_reserve(c, 2048) &&
        cdz_proto_encode_error(c->out + c->out_len, c->out_cap - c->out_len, m->h.request_id,
                               m->h.stream_id, m->h.sequence,
                               st == CDZ_STATUS_OUT_OF_MEMORY ? st : CDZ_STATUS_TOO_LARGE, false,
                               false, msg, &n) == CDZ_STATUS_OK)
        c->out_len += n;
}

static void send_error(cdz_server *s, conn *c, uint64_t request_id, uint64_t stream_id,
                       uint64_t sequence, cdz_status code, bool retryable, bool closing,
                       const char *message) {
    size_t n = 0;
    if (code > CDZ_STATUS_OK && code < CDZ_STATUS_COUNT_) stat_add(s, &s->stats.errors_by_code[code], 1);
    stat_add(s, &s->stats.errors, 1);
    if (!out_reserve(c, 2048)) {
        conn_close(s, c, "out of memory");
        return;
    }
    if (cdz_proto_encode_error(c->out + c->out_len, c->out_cap - c->out_len, request_id, stream_id,
                               sequence, code, retryable, closing, message, &n) == CDZ_STATUS_OK)
        c->out_len += n;
    if (closing) c->closing = true;
}

/* ------------------------------------------------------------------ connections */

static void conn_update_events(cdz_server *s, conn *c) {
    uint32_t m = 0;
    bool reading = !c->closing && out_pending(c) < s->out_high;
    if (reading) m |= EPOLLIN;
    if (out_pending(c) > 0) m |= EPOLLOUT;
    m |= EPOLLRDHUP;
    if (m == c->ep_mask) return;
    struct epoll_event ev = {.events = m, .data.ptr = c};
    epoll_ctl(s->ep_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->ep_mask = m;
}

static void conn_close(cdz_server *s, conn *c, const char *why) {
    if (c->dead) return;
    c->dead = true;
    epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    uint32_t n_cancel = 0;
    for (req *r = c->reqs; r; r = r->next) {
        r->c = NULL; /* its done() frees it unwritten */
        cdz_sched_cancel(s->sched, &r->job);
        n_cancel++;
    }
    c->reqs = NULL;
    uint32_t n_streams = 0;
    while (c->streams) {
        strm *st = c->streams;
        c->streams = st->next;
        free(st);
        n_streams++;
    }
    c->n_streams = 0;
    atomic_fetch_sub(&s->streams_open, n_streams);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    stat_add(s, &s->stats.connections_open, (uint64_t)-1);
    if (s->hooks.connections) s->hooks.connections(s->hooks.user, -1);
    cdz_log(CDZ_LOG_LEVEL_DEBUG, LOG_COMPONENT, "connection %llu closed (%s; %u requests cancelled, %u streams freed)",
            (unsigned long long)c->id, why, n_cancel, n_streams);
    c->next = s->graveyard;
    s->graveyard = c;
}

static void bury(cdz_server *s) {
    while (s->graveyard) {
        conn *c = s->graveyard;
        s->graveyard = c->next;
        free(c->in);
        free(c->out);
        free(c);
    }
}

/* Write what is pending; false when the connection was closed. */
static bool conn_flush(cdz_server *s, conn *c) {
    while (out_pending(c) > 0) {
        ssize_t n = send(c->fd, c->out + c->out_off, out_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->write_stall_ns = 0;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->write_stall_ns) c->write_stall_ns = now_ns();
            break;
        }
        conn_close(s, c, "write failed");
        return false;
    }
    if (out_pending(c) == 0) {
        c->out_off = c->out_len = 0;
        c->write_stall_ns = 0;
        if (c->closing) {
            conn_close(s, c, "closed after error");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ frames */

static uint64_t raw_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static bool key_equal(const char *a, const char *b) {
    /* constant time in the configured key's length: no early exit on the first mismatch */
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
    return diff == 0;
}

static void job_done(cdz_job *job, void *user) {
    req *r = user;
    cdz_server *s = r->srv;
    (void)job;
    pthread_mutex_lock(&s->done_mu);
    r->done_next = NULL;
    if (s->done_tail) s->done_tail->done_next = r;
    else s->done_head = r;
    s->done_tail = r;
    pthread_mutex_unlock(&s->done_mu);
    wake(s);
}

static void req_free(req *r) {
    cdz_job_free(&r->job);
    free(r->frame);
    free(r);
}

static void handle_infer(cdz_server *s, conn *c, const uint8_t *frame, size_t len, int64_t t_recv) {
    uint64_t rid = raw_u64(frame + 16), sid = raw_u64(frame + 24), seq = raw_u64(frame + 32);
    if (s->draining) {
        send_error(s, c, rid, sid, seq, CDZ_STATUS_SHUTTING_DOWN, true, false,
                   "the server is shutting down; send the request to another instance");
        return;
    }
    if (c->inflight >= s->cfg.max_inflight) {
        char m[160];
        snprintf(m, sizeof m, "connection has %u requests in flight (max-inflight %u)", c->inflight,
                 s->cfg.max_inflight);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_BUSY, true, false, m);
        return;
    }
    for (req *o = c->reqs; o; o = o->next)
        if (o->request_id == rid) {
            char m[160];
            snprintf(m, sizeof m, "request_id %llu is already in flight on this connection",
                     (unsigned long long)rid);
            send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false, m);
            return;
        }
    req *r = calloc(1, sizeof *r);
    uint8_t *copy = r ? malloc(len) : NULL;
    if (!copy) {
        free(r);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_OUT_OF_MEMORY, true, false, "out of host memory");
        return;
    }
    memcpy(copy, frame, len);
    r->frame = copy;
    r->srv = s;
    r->request_id = rid;
    cdz_proto_limits lim = {.max_body = s->cfg.max_frame_bytes, .authenticated = true};
    cdz_proto_msg *m = &s->msg;
    cdz_status st = cdz_proto_decode(copy, len, &lim, m);
    uint64_t jid = atomic_fetch_add(&s->next_job_id, 1);
    cdz_job_init(&r->job, jid, m->model, job_done, r);
    if (st == CDZ_STATUS_OK && m->n_tensors > CDZ_JOB_MAX_TENSORS)
        st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "INFER: %u inputs, at most %d per request",
                           m->n_tensors, CDZ_JOB_MAX_TENSORS);
    if (st == CDZ_STATUS_OK && m->n_outputs > CDZ_JOB_MAX_TENSORS)
        st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "INFER: %u outputs requested, at most %d",
                           m->n_outputs, CDZ_JOB_MAX_TENSORS);
    if (st == CDZ_STATUS_OK && strlen(m->model) >= CDZ_JOB_MAX_NAME)
        st = cdz_error_set(CDZ_STATUS_UNKNOWN_MODEL, "INFER: model name '%s' is too long", m->model);
    for (uint32_t i = 0; st == CDZ_STATUS_OK && i < m->n_tensors; i++) {
        st = cdz_proto_tensor_view(&m->tensors[i], &r->job.inputs[i]);
        snprintf(r->job.input_names[i], CDZ_JOB_MAX_NAME, "%s", m->tensors[i].name);
    }
    if (st == CDZ_STATUS_OK) {
        r->job.n_inputs = (int32_t)m->n_tensors;
        r->job.n_outputs = (int32_t)m->n_outputs;
        for (uint32_t i = 0; i < m->n_outputs; i++)
            snprintf(r->job.output_names[i], CDZ_JOB_MAX_NAME, "%s", m->outputs[i]);
        r->job.deadline_ns = m->h.deadline_us ? t_recv + (int64_t)m->h.deadline_us * 1000 : 0;
        r->job.priority = m->h.priority;
        /* linked before submit: done() may run on a worker before submit returns */
        r->c = c;
        r->next = c->reqs;
        if (c->reqs) c->reqs->prev = r;
        c->reqs = r;
        c->inflight++;
        atomic_fetch_add(&s->inflight, 1);
        st = cdz_sched_submit(s->sched, &r->job);
        if (st != CDZ_STATUS_OK) {
            atomic_fetch_sub(&s->inflight, 1);
            c->inflight--;
            if (r->prev) r->prev->next = r->next;
            else c->reqs = r->next;
            if (r->next) r->next->prev = r->prev;
        }
    }
    stat_add(s, &s->stats.requests, 1);
    if (st != CDZ_STATUS_OK) {
        const cdz_error *e = cdz_last_error();
        cdz_log_set_request_id(jid);
        cdz_log(CDZ_LOG_LEVEL_DEBUG, LOG_COMPONENT, "request %llu refused: %s: %s",
                (unsigned long long)rid, cdz_status_name(st), e->message);
        cdz_log_set_request_id(0);
        if (s->hooks.request_done)
            s->hooks.request_done(s->hooks.user, r->job.model, st, -1, -1,
                                  (double)(cdz_now_ns() - t_recv) * 1e-9, 0);
        send_error(s, c, rid, sid, seq, st, e->code == st ? e->retryable : cdz_status_retryable(st),
                   false, e->code == st ? e->message : cdz_status_name(st));
        req_free(r);
    }
}

/* ------------------------------------------------------------------ streams */

/* A model whose requests can be cut into independent chunks (rows in, rows out: testnet).
 * HTDemucs streams need windows of raw forward passes (models/stream_htdemucs.h) that the
 * htdemucs backend does not offer yet: refused as UNSUPPORTED. */
static bool model_streamable(const char *desc) {
    if (!desc) return false;
    json_t *root = json_loads(desc, 0, NULL);
    const char *knd = root ? json_string_value(json_object_get(root, "kind")) : NULL;
    bool ok = knd && strcmp(knd, "testnet") == 0;
    json_decref(root);
    return ok;
}

static strm *stream_find(conn *c, uint64_t sid) {
    for (strm *st = c->streams; st; st = st->next)
        if (st->sid == sid) return st;
    return NULL;
}

/* Close a stream: its chunk jobs still in flight are cancelled and freed unwritten. */
static void stream_end(cdz_server *s, conn *c, strm *st) {
    for (req *r = c->reqs; r; r = r->next)
        if (r->st == st) {
            r->st = NULL;
            cdz_sched_cancel(s->sched, &r->job);
        }
    for (strm **pp = &c->streams; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    c->n_streams--;
    atomic_fetch_sub(&s->streams_open, 1);
    free(st);
}

/* The input ended and every chunk was answered: the final RESULT (END_OF_STREAM, no tensors). */
static void stream_maybe_finish(cdz_server *s, conn *c, strm *st) {
    if (!st->input_done || st->pending) return;
    cdz_proto_msg *m = &s->msg;
    cdz_proto_msg_init(m, CDZ_PROTO_RESULT);
    m->h.request_id = st->rid;
    m->h.stream_id = st->sid;
    m->h.sequence = st->out_seq++;
    m->h.flags = CDZ_PROTO_FLAG_END_OF_STREAM;
    send_msg(s, c, m);
    stat_add(s, &s->stats.results, 1);
    stream_end(s, c, st);
}

static void handle_stream_open(cdz_server *s, conn *c, const uint8_t *frame, size_t len, int64_t t_recv) {
    uint64_t rid = raw_u64(frame + 16), sid = raw_u64(frame + 24), seq = raw_u64(frame + 32);
    cdz_proto_limits lim = {.max_body = s->cfg.max_frame_bytes, .authenticated = true};
    cdz_proto_msg *m = &s->msg;
    char msg[256];
    cdz_status st = cdz_proto_decode(frame, len, &lim, m);
    stat_add(s, &s->stats.requests, 1);
    if (st != CDZ_STATUS_OK) {
        send_error(s, c, rid, sid, seq, st, false, false, cdz_last_error()->message);
        return;
    }
    if (s->draining) {
        send_error(s, c, rid, sid, seq, CDZ_STATUS_SHUTTING_DOWN, true, false,
                   "the server is shutting down; open the stream on another instance");
        return;
    }
    if (stream_find(c, sid)) {
        snprintf(msg, sizeof msg, "STREAM_OPEN: stream %llu is already open on this connection",
                 (unsigned long long)sid);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false, msg);
        return;
    }
    for (strm *o = c->streams; o; o = o->next)
        if (o->rid == rid) {
            snprintf(msg, sizeof msg, "STREAM_OPEN: request_id %llu is already the id of stream %llu",
                     (unsigned long long)rid, (unsigned long long)o->sid);
            send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false, msg);
            return;
        }
    if (c->n_streams >= s->cfg.max_streams) {
        snprintf(msg, sizeof msg, "STREAM_OPEN: the connection has %u open streams (max-streams %u)",
                 c->n_streams, s->cfg.max_streams);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_BUSY, true, false, msg);
        return;
    }
    const char *desc = strlen(m->model) < CDZ_JOB_MAX_NAME ? cdz_sched_describe_model(s->sched, m->model) : NULL;
    if (!desc) {
        snprintf(msg, sizeof msg, "STREAM_OPEN: no model named '%.64s' is served", m->model);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_UNKNOWN_MODEL, false, false, msg);
        return;
    }
    if (!model_streamable(desc)) {
        snprintf(msg, sizeof msg, "STREAM_OPEN: model '%.64s' cannot be streamed by this server yet "
                 "(streams serve row models such as testnet); use INFER", m->model);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_UNSUPPORTED, false, false, msg);
        return;
    }
    if (m->n_tensors > 0 || m->n_outputs > CDZ_JOB_MAX_TENSORS) {
        snprintf(msg, sizeof msg, "STREAM_OPEN: %u parameter tensors (none accepted) and %u outputs (at most %d)",
                 m->n_tensors, m->n_outputs, CDZ_JOB_MAX_TENSORS);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false, msg);
        return;
    }
    strm *sp = calloc(1, sizeof *sp);
    if (!sp) {
        send_error(s, c, rid, sid, seq, CDZ_STATUS_OUT_OF_MEMORY, true, false, "out of host memory");
        return;
    }
    sp->sid = sid;
    sp->rid = rid;
    cdz_proto_stream_begin(&sp->ps, sid, rid);
    snprintf(sp->model, sizeof sp->model, "%s", m->model);
    sp->n_outputs = (int32_t)m->n_outputs;
    for (uint32_t i = 0; i < m->n_outputs; i++) snprintf(sp->outputs[i], CDZ_JOB_MAX_NAME, "%s", m->outputs[i]);
    sp->priority = m->h.priority;
    sp->deadline_ns = m->h.deadline_us ? t_recv + (int64_t)m->h.deadline_us * 1000 : 0;
    sp->next = c->streams;
    c->streams = sp;
    c->n_streams++;
    atomic_fetch_add(&s->streams_open, 1);
}

/* STREAM_CHUNK / STREAM_CLOSE: in sequence order only; anything else ends the stream. */
static void handle_stream_input(cdz_server *s, conn *c, const uint8_t *frame, size_t len, int64_t t_recv) {
    uint64_t rid = raw_u64(frame + 16), sid = raw_u64(frame + 24), seq = raw_u64(frame + 32);
    char msg[256];
    strm *st = stream_find(c, sid);
    if (!st) {
        snprintf(msg, sizeof msg, "stream %llu is not open on this connection (sequence %llu)",
                 (unsigned long long)sid, (unsigned long long)seq);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false, msg);
        return;
    }
    req *r = calloc(1, sizeof *r);
    uint8_t *copy = r ? malloc(len) : NULL;
    if (!copy) {
        free(r);
        send_error(s, c, rid, sid, seq, CDZ_STATUS_OUT_OF_MEMORY, true, false, "out of host memory");
        stream_end(s, c, st);
        return;
    }
    memcpy(copy, frame, len);
    r->frame = copy;
    r->srv = s;
    r->request_id = st->rid;
    r->is_stream = true;
    r->chunk_seq = seq;
    cdz_proto_limits lim = {.max_body = s->cfg.max_frame_bytes, .authenticated = true};
    cdz_proto_msg *m = &s->msg;
    cdz_status rc = cdz_proto_decode(copy, len, &lim, m);
    if (rc == CDZ_STATUS_OK) rc = cdz_proto_stream_accept(&st->ps, &m->h);
    if (rc == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_STREAM_CHUNK && m->n_tensors > CDZ_JOB_MAX_TENSORS)
        rc = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "stream %llu: chunk %llu has %u tensors, at most %d",
                           (unsigned long long)sid, (unsigned long long)seq, m->n_tensors, CDZ_JOB_MAX_TENSORS);
    if (rc == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_STREAM_CHUNK && m->n_tensors > 0 &&
        c->inflight >= s->cfg.max_inflight)
        rc = cdz_error_set(CDZ_STATUS_BUSY, "stream %llu: chunk %llu over the connection's %u requests in flight "
                           "(max-inflight); the stream ends (a chunk is never skipped)",
                           (unsigned long long)sid, (unsigned long long)seq, s->cfg.max_inflight);
    if (rc != CDZ_STATUS_OK) {
        const cdz_error *e = cdz_last_error();
        send_error(s, c, rid, sid, seq, rc, e->code == rc ? e->retryable : cdz_status_retryable(rc), false,
                   e->code == rc ? e->message : cdz_status_name(rc));
        free(copy);
        free(r);
        stream_end(s, c, st);
        return;
    }
    if (m->h.type == CDZ_PROTO_STREAM_CLOSE || m->n_tensors == 0 || st->ps.ended) st->input_done = st->ps.ended;
    if (m->h.type == CDZ_PROTO_STREAM_CLOSE || m->n_tensors == 0) {
        free(copy);
        free(r);
        stream_maybe_finish(s, c, st);
        return;
    }
    uint64_t jid = atomic_fetch_add(&s->next_job_id, 1);
    cdz_job_init(&r->job, jid, st->model, job_done, r);
    for (uint32_t i = 0; rc == CDZ_STATUS_OK && i < m->n_tensors; i++) {
        rc = cdz_proto_tensor_view(&m->tensors[i], &r->job.inputs[i]);
        snprintf(r->job.input_names[i], CDZ_JOB_MAX_NAME, "%s", m->tensors[i].name);
    }
    r->job.n_inputs = (int32_t)m->n_tensors;
    r->job.n_outputs = st->n_outputs;
    for (int32_t i = 0; i < st->n_outputs; i++) snprintf(r->job.output_names[i], CDZ_JOB_MAX_NAME, "%s", st->outputs[i]);
    int64_t dl = m->h.deadline_us ? t_recv + (int64_t)m->h.deadline_us * 1000 : 0;
    if (st->deadline_ns && (!dl || st->deadline_ns < dl)) dl = st->deadline_ns;
    r->job.deadline_ns = dl;
    r->job.priority = st->priority;
    r->job.stream_id = sid;
    if (rc == CDZ_STATUS_OK) {
        r->c = c;
        r->st = st;
        r->next = c->reqs;
        if (c->reqs) c->reqs->prev = r;
        c->reqs = r;
        c->inflight++;
        st->pending++;
        atomic_fetch_add(&s->inflight, 1);
        rc = cdz_sched_submit(s->sched, &r->job);
        if (rc != CDZ_STATUS_OK) {
            atomic_fetch_sub(&s->inflight, 1);
            c->inflight--;
            st->pending--;
            if (r->prev) r->prev->next = r->next;
            else c->reqs = r->next;
            if (r->next) r->next->prev = r->prev;
        }
    }
    if (rc != CDZ_STATUS_OK) {
        const cdz_error *e = cdz_last_error();
        send_error(s, c, rid, sid, seq, rc, e->code == rc ? e->retryable : cdz_status_retryable(rc), false,
                   e->code == rc ? e->message : cdz_status_name(rc));
        req_free(r);
        stream_end(s, c, st);
    }
}

/* A chunk job came back (r is unlinked from the connection; the caller frees it). */
static void deliver_stream(cdz_server *s, conn *c, req *r) {
    strm *st = r->st;
    cdz_job *j = &r->job;
    if (!st) return; /* its stream ended (error, cancel): freed unwritten */
    st->pending--;
    if (j->status != CDZ_STATUS_OK) {
        char msg[CDZ_PROTO_MAX_MESSAGE + 1];
        snprintf(msg, sizeof msg, "stream %llu chunk %llu: %s", (unsigned long long)st->sid,
                 (unsigned long long)r->chunk_seq, j->error.message[0] ? j->error.message : cdz_status_name(j->status));
        send_error(s, c, st->rid, st->sid, r->chunk_seq, j->status,
                   j->error.code == j->status ? j->error.retryable : cdz_status_retryable(j->status), false, msg);
        stream_end(s, c, st);
        return;
    }
    cdz_proto_msg *m = &s->msg;
    cdz_proto_msg_init(m, CDZ_PROTO_RESULT);
    m->h.request_id = st->rid;
    m->h.stream_id = st->sid;
    m->h.sequence = st->out_seq++;
    m->queue_us = j->t_start_ns > j->t_submit_ns ? (uint64_t)(j->t_start_ns - j->t_submit_ns) / 1000 : 0;
    m->compute_us = j->t_end_ns > j->t_start_ns ? (uint64_t)(j->t_end_ns - j->t_start_ns) / 1000 : 0;
    cdz_status rc = CDZ_STATUS_OK;
    for (int32_t i = 0; i < j->n_results && rc == CDZ_STATUS_OK; i++)
        rc = cdz_proto_tensor_set(&m->tensors[i], j->result_names[i], &j->results[i]);
    m->n_tensors = (uint32_t)j->n_results;
    if (rc != CDZ_STATUS_OK) {
        send_error(s, c, st->rid, st->sid, r->chunk_seq, CDZ_STATUS_INTERNAL, false, false, cdz_last_error()->message);
        stream_end(s, c, st);
        return;
    }
    send_msg(s, c, m);
    stat_add(s, &s->stats.results, 1);
    stream_maybe_finish(s, c, st);
}

/* MODEL_LIST from the backends' JSON descriptions ({"inputs":[{"name","dtype","shape"}],
 * "outputs":[...]}); a description that does not parse lists the model without specs. */
static void add_specs(cdz_proto_msg *m, json_t *arr, uint16_t *count) {
    size_t i;
    json_t *t;
    if (!json_is_array(arr)) return;
    json_array_foreach(arr, i, t) {
        if (m->n_tensors >= CDZ_PROTO_MAX_TENSORS) return;
        cdz_proto_tensor *p = &m->tensors[m->n_tensors];
        memset(p, 0, sizeof *p);
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *dt = json_string_value(json_object_get(t, "dtype"));
        if (!name) continue;
        snprintf(p->name, sizeof p->name, "%s", name);
        p->dtype = CDZ_DTYPE_F32;
        for (int d = 0; dt && d < CDZ_DTYPE_COUNT_; d++)
            if (!strcmp(dt, cdz_dtype_name((cdz_dtype)d))) p->dtype = (cdz_dtype)d;
        json_t *shape = json_object_get(t, "shape");
        size_t k;
        json_t *dim;
        json_array_foreach(shape, k, dim) {
            if (p->ndim >= CDZ_MAX_DIMS) break;
            p->dims[p->ndim++] = json_is_integer(dim) ? json_integer_value(dim) : -1;
        }
        m->n_tensors++;
        (*count)++;
    }
}

static void handle_list_models(cdz_server *s, conn *c, uint64_t rid) {
    cdz_sched_stats st;
    cdz_sched_get_stats(s->sched, &st);
    cdz_proto_msg *m = &s->msg;
    cdz_proto_msg_init(m, CDZ_PROTO_MODEL_LIST);
    m->h.request_id = rid;
    for (int32_t i = 0; i < st.n_models && m->n_models < CDZ_PROTO_MAX_MODELS; i++) {
        cdz_proto_model *pm = &m->models[m->n_models++];
        snprintf(pm->name, sizeof pm->name, "%s", st.models[i].name);
        pm->flags = CDZ_PROTO_MODEL_INFER;
        pm->first_input = (uint16_t)m->n_tensors;
        const char *desc = cdz_sched_describe_model(s->sched, st.models[i].name);
        json_t *root = desc ? json_loads(desc, 0, NULL) : NULL;
        if (model_streamable(desc)) pm->flags |= CDZ_PROTO_MODEL_STREAM;
        if (root) {
            add_specs(m, json_object_get(root, "inputs"), &pm->n_inputs);
            pm->first_output = (uint16_t)m->n_tensors;
            add_specs(m, json_object_get(root, "outputs"), &pm->n_outputs);
            json_decref(root);
        } else {
            pm->first_output = (uint16_t)m->n_tensors;
        }
    }
    send_msg(s, c, m);
}

static void handle_hello(cdz_server *s, conn *c, const uint8_t *frame, size_t len) {
    cdz_proto_limits lim = {.max_body = CDZ_PROTO_MAX_PREAUTH_BODY, .authenticated = false};
    cdz_proto_msg *m = &s->msg;
    cdz_status st = cdz_proto_decode(frame, len, &lim, m);
    if (st != CDZ_STATUS_OK) {
        send_error(s, c, raw_u64(frame + 16), 0, 0, st, false, true, cdz_last_error()->message);
        return;
    }
    if (s->cfg.api_key[0] && !key_equal(s->cfg.api_key, m->api_key)) {
        cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT, "connection %llu: HELLO with a wrong API key",
                (unsigned long long)c->id);
        send_error(s, c, m->h.request_id, 0, 0, CDZ_STATUS_UNAUTHENTICATED, false, true,
                   "HELLO: the API key is missing or wrong");
        return;
    }
    uint64_t rid = m->h.request_id;
    cdz_proto_msg_init(m, CDZ_PROTO_WELCOME);
    m->h.request_id = rid;
    m->max_body = s->cfg.max_frame_bytes;
    m->max_streams = (uint16_t)(s->cfg.max_streams > 65535 ? 65535 : s->cfg.max_streams);
    snprintf(m->agent, sizeof m->agent, "cadenza/%d.%d.%d", CDZ_VERSION_MAJOR, CDZ_VERSION_MINOR,
             CDZ_VERSION_PATCH);
    c->authed = true;
    send_msg(s, c, m);
}

/* One complete frame at frame[0..len). */
static void handle_frame(cdz_server *s, conn *c, const uint8_t *frame, size_t len, int64_t t) {
    uint16_t type = (uint16_t)(frame[6] | (frame[7] << 8));
    uint64_t rid = raw_u64(frame + 16), sid = raw_u64(frame + 24), seq = raw_u64(frame + 32);
    c->last_frame_ns = t;
    if (!c->authed) { /* peek let only a small HELLO through */
        handle_hello(s, c, frame, len);
        return;
    }
    switch (type) {
    case CDZ_PROTO_INFER:
        handle_infer(s, c, frame, len, t);
        return;
    case CDZ_PROTO_HELLO:
        send_error(s, c, rid, sid, seq, CDZ_STATUS_INVALID_ARGUMENT, false, false,
                   "HELLO: the connection is already authenticated");
        return;
    case CDZ_PROTO_STREAM_OPEN:
        handle_stream_open(s, c, frame, len, t);
        return;
    case CDZ_PROTO_STREAM_CHUNK:
    case CDZ_PROTO_STREAM_CLOSE:
        handle_stream_input(s, c, frame, len, t);
        return;
    default:
        break;
    }
    cdz_proto_limits lim = {.max_body = s->cfg.max_frame_bytes, .authenticated = true};
    cdz_status st = cdz_proto_decode(frame, len, &lim, &s->msg);
    if (st != CDZ_STATUS_OK) {
        send_error(s, c, rid, sid, seq, st, false, false, cdz_last_error()->message);
        return;
    }
    if (type == CDZ_PROTO_CANCEL) {
        for (strm *sp = c->streams; sp; sp = sp->next)
            if (sp->rid == rid) {
                send_error(s, c, rid, sp->sid, 0, CDZ_STATUS_CANCELLED, false, false,
                           "the stream was cancelled by CANCEL");
                stream_end(s, c, sp);
                break;
            }
        for (req *r = c->reqs; r; r = r->next)
            if (r->request_id == rid) cdz_sched_cancel(s->sched, &r->job);
    } else if (type == CDZ_PROTO_LIST_MODELS) {
        handle_list_models(s, c, rid);
    }
}

/* Handle the complete frames buffered; false when the connection was closed. */
static bool conn_process(cdz_server *s, conn *c) {
    size_t off = 0;
    int64_t t = now_ns();
    cdz_proto_limits lim = {.max_body = s->cfg.max_frame_bytes,
                            .types = CDZ_PROTO_TYPES_FROM_CLIENT,
                            .authenticated = c->authed};
    while (!c->closing && out_pending(c) < s->out_high && c->in_len - off >= 1) {
        size_t need = 0;
        lim.authenticated = c->authed;
        cdz_status st = cdz_proto_frame_peek(c->in + off, c->in_len - off, &lim, &need);
        if (st != CDZ_STATUS_OK) {
            /* the framing cannot be trusted: one ERROR + CLOSING, then close */
            stat_add(s, &s->stats.dropped_protocol, 1);
            cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT, "connection %llu: bad frame: %s",
                    (unsigned long long)c->id, cdz_last_error()->message);
            send_error(s, c, 0, 0, 0, st, false, true, cdz_last_error()->message);
            off = c->in_len;
            break;
        }
        if (c->in_len - off < need) {
            if (need > c->in_cap) { /* grow to exactly this frame (need is bounded by peek) */
                if (off) {
                    memmove(c->in, c->in + off, c->in_len - off);
                    c->in_len -= off;
                    off = 0;
                }
                uint8_t *p = realloc(c->in, need);
                if (!p) {
                    conn_close(s, c, "out of memory");
                    return false;
                }
                c->in = p;
                c->in_cap = need;
            }
            break;
        }
        handle_frame(s, c, c->in + off, need, t);
        if (c->dead) return false;
        off += need;
        c->frame_start_ns = c->in_len > off ? t : 0;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0) c->frame_start_ns = 0;
    /* a mostly-idle connection gives back a grown buffer */
    if (c->in_len == 0 && c->in_cap > IN_INITIAL) {
        uint8_t *p = realloc(c->in, IN_INITIAL);
        if (p) {
            c->in = p;
            c->in_cap = IN_INITIAL;
        }
    }
    return true;
}

static void conn_read(cdz_server *s, conn *c) {
    for (;;) {
        if (c->closing || out_pending(c) >= s->out_high) break;
        if (c->in_len == c->in_cap) {
            if (!conn_process(s, c)) return;
            if (c->in_len == c->in_cap) break; /* backpressure: frames wait for output room */
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n > 0) {
            if (c->in_len == 0) c->frame_start_ns = now_ns();
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(s, c, n == 0 ? "peer closed" : "read failed");
        return;
    }
    if (!conn_process(s, c)) return;
    if (!conn_flush(s, c)) return;
    conn_update_events(s, c);
}

static void accept_all(cdz_server *s) {
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                cdz_log(CDZ_LOG_LEVEL_WARN, LOG_COMPONENT, "accept: %s", strerror(errno));
            return;
        }
        stat_add(s, &s->stats.connections_accepted, 1);
        if (s->n_conns >= s->cfg.max_connections) {
            char m[128];
            size_t n = 0;
            snprintf(m, sizeof m, "the server has %u connections (max-connections)", s->n_conns);
            if (cdz_proto_encode_error(s->small, sizeof s->small, 0, 0, 0, CDZ_STATUS_BUSY, true,
                                       true, m, &n) == CDZ_STATUS_OK) {
                ssize_t w = send(fd, s->small, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)w;
            }
            close(fd);
            stat_add(s, &s->stats.connections_refused, 1);
            stat_add(s, &s->stats.errors_by_code[CDZ_STATUS_BUSY], 1);
            continue;
        }
        if (!s->unix_sock) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        conn *c = calloc(1, sizeof *c);
        uint8_t *in = c ? malloc(IN_INITIAL) : NULL;
        if (!in) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->in = in;
        c->in_cap = IN_INITIAL;
        c->id = ++s->next_conn_id;
        c->last_frame_ns = now_ns();
        c->ep_mask = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->ep_mask, .data.ptr = c};
        if (epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(in);
            free(c);
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        stat_add(s, &s->stats.connections_open, 1);
        if (s->hooks.connections) s->hooks.connections(s->hooks.user, +1);
    }
}

/* ------------------------------------------------------------------ finished jobs */

static void deliver(cdz_server *s, req *r) {
    atomic_fetch_sub(&s->inflight, 1);
    conn *c = r->c;
    cdz_job *j = &r->job;
    cdz_log_set_request_id(j->id);
    if (s->hooks.request_done) {
        int64_t t = now_ns();
        s->hooks.request_done(s->hooks.user, j->model, j->status,
                              j->t_start_ns ? (double)(j->t_start_ns - j->t_submit_ns) * 1e-9 : -1,
                              j->t_end_ns && j->t_start_ns ? (double)(j->t_end_ns - j->t_start_ns) * 1e-9 : -1,
                              (double)(t - j->t_submit_ns) * 1e-9, j->batch_items);
    }
    if (!c) {
        stat_add(s, &s->stats.orphaned_jobs, 1);
        cdz_log_set_request_id(0);
        req_free(r);
        return;
    }
    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    c->inflight--;
    if (r->is_stream) {
        deliver_stream(s, c, r);
    } else if (j->status == CDZ_STATUS_OK) {
        cdz_proto_msg *m = &s->msg;
        cdz_proto_msg_init(m, CDZ_PROTO_RESULT);
        m->h.request_id = r->request_id;
        m->queue_us = j->t_start_ns > j->t_submit_ns ? (uint64_t)(j->t_start_ns - j->t_submit_ns) / 1000 : 0;
        m->compute_us = j->t_end_ns > j->t_start_ns ? (uint64_t)(j->t_end_ns - j->t_start_ns) / 1000 : 0;
        cdz_status st = CDZ_STATUS_OK;
        for (int32_t i = 0; i < j->n_results && st == CDZ_STATUS_OK; i++)
            st = cdz_proto_tensor_set(&m->tensors[i], j->result_names[i], &j->results[i]);
        m->n_tensors = (uint32_t)j->n_results;
        if (st == CDZ_STATUS_OK) {
            send_msg(s, c, m);
            stat_add(s, &s->stats.results, 1);
        } else {
            send_error(s, c, r->request_id, 0, 0, CDZ_STATUS_INTERNAL, false, false,
                       cdz_last_error()->message);
        }
    } else {
        cdz_log(CDZ_LOG_LEVEL_DEBUG, LOG_COMPONENT, "request %llu failed: %s: %s",
                (unsigned long long)r->request_id, cdz_status_name(j->status), j->error.message);
        send_error(s, c, r->request_id, 0, 0, j->status,
                   j->error.code == j->status ? j->error.retryable : cdz_status_retryable(j->status),
                   false, j->error.message[0] ? j->error.message : cdz_status_name(j->status));
    }
    cdz_log_set_request_id(0);
    req_free(r);
    if (c->dead) return;
    /* room again for input that waited on this connection's output */
    if (conn_flush(s, c)) {
        if (c->in_len && !conn_process(s, c)) return;
        if (conn_flush(s, c)) conn_update_events(s, c);
    }
}

static void deliver_all(cdz_server *s) {
    pthread_mutex_lock(&s->done_mu);
    req *r = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->done_mu);
    while (r) {
        req *n = r->done_next;
        deliver(s, r);
        r = n;
    }
}

/* ------------------------------------------------------------------ timeouts */

static void sweep(cdz_server *s, int64_t t) {
    conn *next;
    for (conn *c = s->conns; c; c = next) {
        next = c->next;
        if (out_pending(c) > 0 && c->write_stall_ns &&
            t - c->write_stall_ns > (int64_t)s->cfg.write_timeout_us * 1000) {
            stat_add(s, &s->stats.dropped_write_timeout, 1);
            cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT,
                    "connection %llu dropped: %zu bytes unread for the write timeout",
                    (unsigned long long)c->id, out_pending(c));
            conn_close(s, c, "write timeout");
            continue;
        }
        if (c->closing) continue;
        if (c->frame_start_ns && c->in_len > 0 &&
            t - c->frame_start_ns > (int64_t)s->cfg.read_timeout_us * 1000) {
            stat_add(s, &s->stats.dropped_read_timeout, 1);
            cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT, "connection %llu dropped: frame incomplete after the read timeout",
                    (unsigned long long)c->id);
            send_error(s, c, 0, 0, 0, CDZ_STATUS_DEADLINE_EXCEEDED, false, true,
                       "read timeout: the frame was not completed in time");
            if (conn_flush(s, c)) conn_update_events(s, c);
            continue;
        }
        if (s->cfg.idle_timeout_us && c->in_len == 0 && c->inflight == 0 && out_pending(c) == 0 &&
            t - c->last_frame_ns > (int64_t)s->cfg.idle_timeout_us * 1000) {
            stat_add(s, &s->stats.dropped_idle, 1);
            send_error(s, c, 0, 0, 0, CDZ_STATUS_DEADLINE_EXCEEDED, false, true,
                       "idle timeout: no frame received in time");
            if (conn_flush(s, c)) conn_update_events(s, c);
        }
    }
}

/* ------------------------------------------------------------------ lifecycle */

static cdz_status bind_listener(cdz_server *s) {
    const cdz_net_addr *a = &s->cfg.listen;
    int fd;
    if (a->is_unix) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", a->path);
        struct stat sb;
        if (stat(a->path, &sb) == 0 && S_ISSOCK(sb.st_mode)) unlink(a->path); /* stale socket */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) != 0 || listen(fd, 512) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return cdz_error_set(CDZ_STATUS_IO, "listen unix:%s: %s", a->path, strerror(e));
        }
        s->unix_sock = true;
        snprintf(s->unix_path, sizeof s->unix_path, "%s", a->path);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
        struct addrinfo *res = NULL;
        char port[16];
        snprintf(port, sizeof port, "%u", a->port);
        int rc = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, &res);
        if (rc != 0)
            return cdz_error_set(CDZ_STATUS_IO, "listen %s:%u: %s", a->host, a->port, gai_strerror(rc));
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 512) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            freeaddrinfo(res);
            return cdz_error_set(CDZ_STATUS_IO, "listen %s:%u: %s", a->host, a->port, strerror(e));
        }
        freeaddrinfo(res);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    }
    s->listen_fd = fd;
    return CDZ_STATUS_OK;
}

static void sched_config_from(const cdz_server_config *cfg, cdz_sched_config *sc) {
    memset(sc, 0, sizeof *sc);
    if (cfg->devices.all || cfg->devices.count == 0) {
        int n = cdz_cuda_device_count();
        if (n == 0) {
            sc->n_devices = 1;
            sc->devices[0] = (cdz_device){CDZ_DEVICE_CPU, 0};
        }
        for (int i = 0; i < n && i < CDZ_SCHED_MAX_DEVICES; i++)
            sc->devices[sc->n_devices++] = (cdz_device){CDZ_DEVICE_CUDA, i};
    } else {
        for (uint32_t i = 0; i < cfg->devices.count && i < CDZ_SCHED_MAX_DEVICES; i++)
            sc->devices[sc->n_devices++] = cfg->devices.dev[i];
    }
    sc->workers_per_device = 1;
    sc->precision = cfg->precision;
    for (uint32_t i = 0; i < cfg->models.count && i < CDZ_SCHED_MAX_MODELS; i++) {
        cdz_sched_model_config *m = &sc->models[sc->n_models++];
        snprintf(m->name, sizeof m->name, "%s", cfg->models.spec[i].name);
        m->path = cfg->models.spec[i].path;
        m->max_batch = (int32_t)cfg->max_batch;
        m->queue_size = (int32_t)cfg->queue_size;
        m->max_queue_delay_us = (int64_t)cfg->max_queue_delay_us;
    }
}

cdz_status cdz_server_create(const cdz_server_config *cfg, cdz_server **out) {
    cdz_sched_config sc;
    sched_config_from(cfg, &sc);
    return cdz_server_create_with(cfg, &sc, out);
}

cdz_status cdz_server_create_with(const cdz_server_config *cfg, const cdz_sched_config *scfg,
                                  cdz_server **out) {
    *out = NULL;
    cdz_server *s = calloc(1, sizeof *s);
    if (!s) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "server: out of host memory");
    s->cfg = *cfg;
    if (!s->cfg.max_frame_bytes || s->cfg.max_frame_bytes > CDZ_PROTO_MAX_FRAME)
        s->cfg.max_frame_bytes = CDZ_PROTO_MAX_FRAME;
    if (!s->cfg.max_inflight) s->cfg.max_inflight = 1;
    s->out_high = (size_t)s->cfg.max_frame_bytes + CDZ_PROTO_HEADER_SIZE;
    if (s->out_high < (1u << 20)) s->out_high = 1u << 20;
    s->listen_fd = s->ep_fd = s->wake_fd = -1;
    atomic_init(&s->next_job_id, 1);
    pthread_mutex_init(&s->done_mu, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    /* every model is loaded and warmed up before anything listens */
    cdz_status st = cdz_sched_create(scfg, &s->sched);
    if (st == CDZ_STATUS_OK) st = bind_listener(s);
    if (st == CDZ_STATUS_OK) {
        s->ep_fd = epoll_create1(EPOLL_CLOEXEC);
        s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event a = {.events = EPOLLIN, .data.ptr = &s->listen_fd};
        struct epoll_event b = {.events = EPOLLIN, .data.ptr = &s->wake_fd};
        if (s->ep_fd < 0 || s->wake_fd < 0 || epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->listen_fd, &a) ||
            epoll_ctl(s->ep_fd, EPOLL_CTL_ADD, s->wake_fd, &b))
            st = cdz_error_set(CDZ_STATUS_IO, "server: epoll/eventfd: %s", strerror(errno));
    }
    if (st != CDZ_STATUS_OK) {
        cdz_error saved = *cdz_last_error();
        cdz_server_destroy(s);
        return cdz_error_set(saved.code, "%s", saved.message);
    }
    atomic_store(&s->ready, true);
    *out = s;
    return CDZ_STATUS_OK;
}

uint16_t cdz_server_port(const cdz_server *s) { return s->port; }
bool cdz_server_ready(const cdz_server *s) { return atomic_load(&((cdz_server *)s)->ready); }
cdz_sched *cdz_server_sched(cdz_server *s) { return s->sched; }

void cdz_server_stop(cdz_server *s) {
    atomic_store(&s->stop_requested, true);
    wake(s);
}

void cdz_server_set_hooks(cdz_server *s, const cdz_server_hooks *hooks) { s->hooks = *hooks; }

void cdz_server_get_stats(cdz_server *s, cdz_server_stats *out) {
    pthread_mutex_lock(&s->stats_mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->stats_mu);
    out->inflight = atomic_load(&s->inflight);
}

static void *drain_main(void *arg) {
    cdz_server *s = arg;
    cdz_sched_drain(s->sched, (int64_t)s->cfg.drain_timeout_us * 1000);
    atomic_store(&s->drain_done, true);
    wake(s);
    return NULL;
}

cdz_status cdz_server_run(cdz_server *s) {
    struct epoll_event evs[64];
    int64_t last_sweep = now_ns(), flush_deadline = 0;
    bool finishing = false;
    for (;;) {
        int n = epoll_wait(s->ep_fd, evs, 64, 20);
        if (n < 0 && errno != EINTR) return cdz_error_set(CDZ_STATUS_IO, "epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->listen_fd) {
                accept_all(s);
            } else if (p == &s->wake_fd) {
                uint64_t v;
                ssize_t r = read(s->wake_fd, &v, sizeof v);
                (void)r;
            } else {
                conn *c = p;
                if (c->dead) continue;
                if (evs[i].events & EPOLLOUT) {
                    if (!conn_flush(s, c)) continue;
                    if (c->in_len && !conn_process(s, c)) continue;
                    if (!conn_flush(s, c)) continue;
                }
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_read(s, c);
                else conn_update_events(s, c);
            }
        }
        /* conn pointers of this batch may be freed above; none is used after this point */
        deliver_all(s);
        int64_t t = now_ns();
        if (atomic_load(&s->stop_requested) && !s->draining) {
            s->draining = true;
            atomic_store(&s->ready, false);
            if (s->hooks.ready) s->hooks.ready(s->hooks.user, false);
            cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT, "draining: %llu requests in flight, up to %llu ms",
                    (unsigned long long)atomic_load(&s->inflight),
                    (unsigned long long)(s->cfg.drain_timeout_us / 1000));
            if (pthread_create(&s->drain_thread, NULL, drain_main, s) == 0) s->drain_thread_started = true;
            else atomic_store(&s->drain_done, true);
        }
        if (atomic_load(&s->drain_done) && !finishing) {
            deliver_all(s); /* every done() has run: hand out the last answers */
            finishing = true;
            flush_deadline = t + (int64_t)s->cfg.write_timeout_us * 1000;
            epoll_ctl(s->ep_fd, EPOLL_CTL_DEL, s->listen_fd, NULL);
            conn *next;
            for (conn *c = s->conns; c; c = next) {
                next = c->next;
                c->closing = true;
                if (conn_flush(s, c)) conn_update_events(s, c);
            }
        }
        if (finishing && (!s->conns || t > flush_deadline)) {
            while (s->conns) conn_close(s, s->conns, "server stopped");
            bury(s);
            cdz_log(CDZ_LOG_LEVEL_INFO, LOG_COMPONENT, "drained; stopping");
            return CDZ_STATUS_OK;
        }
        if (t - last_sweep >= SWEEP_NS) {
            sweep(s, t);
            last_sweep = t;
        }
        bury(s);
    }
}

void cdz_server_destroy(cdz_server *s) {
    if (!s) return;
    if (s->drain_thread_started) pthread_join(s->drain_thread, NULL);
    while (s->conns) conn_close(s, s->conns, "server destroyed");
    bury(s);
    if (s->sched) cdz_sched_destroy(s->sched); /* every done() runs: orphans land in the list */
    pthread_mutex_lock(&s->done_mu);
    req *r = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->done_mu);
    while (r) {
        req *n = r->done_next;
        req_free(r);
        r = n;
    }
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->unix_sock) unlink(s->unix_path);
    if (s->ep_fd >= 0) close(s->ep_fd);
    if (s->wake_fd >= 0) close(s->wake_fd);
    pthread_mutex_destroy(&s->done_mu);
    pthread_mutex_destroy(&s->stats_mu);
    free(s);
}
