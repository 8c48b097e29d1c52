/*
 * client.c: the blocking protocol client (client.h).
 */
#include "client.h"

#include "check.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>


struct cdz_client {
    int fd;
    int timeout_ms;
    uint32_t max_body;
    uint16_t max_streams;
    uint8_t *buf; /* one frame at a time, from its start: payload views stay 8-aligned */
    size_t cap;
    uint8_t *sbuf;
    size_t scap;
};

static cdz_status wait_fd(int fd, short ev, int timeout_ms, const char *what) {
    struct pollfd p = {.fd = fd, .events = ev};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r > 0) return CDZ_STATUS_OK;
        if (r == 0) return cdz_error_set(CDZ_STATUS_IO, "client: %s timed out after %d ms", what, timeout_ms);
        if (errno != EINTR) return cdz_error_set(CDZ_STATUS_IO, "client: poll: %s", strerror(errno));
    }
}

cdz_status cdz_client_send_raw(cdz_client *c, const void *bytes, size_t len) {
    const uint8_t *p = bytes;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            CDZ_TRY(wait_fd(c->fd, POLLOUT, c->timeout_ms, "send"));
            continue;
        }
        return cdz_error_set(CDZ_STATUS_IO, "client: send: %s", strerror(errno));
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_client_send(cdz_client *c, const cdz_proto_msg *m) {
    size_t size = 0;
    CDZ_TRY(cdz_proto_encode(m, NULL, 0, &size));
    if (size > c->scap) {
        uint8_t *p = realloc(c->sbuf, size);
        if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "client: %zu bytes", size);
        c->sbuf = p;
        c->scap = size;
    }
    CDZ_TRY(cdz_proto_encode(m, c->sbuf, c->scap, &size));
    return cdz_client_send_raw(c, c->sbuf, size);
}

static cdz_status read_exact(cdz_client *c, uint8_t *dst, size_t len, int timeout_ms) {
    while (len) {
        ssize_t n = recv(c->fd, dst, len, MSG_DONTWAIT);
        if (n > 0) {
            dst += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0) return cdz_error_set(CDZ_STATUS_IO, "client: the server closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            CDZ_TRY(wait_fd(c->fd, POLLIN, timeout_ms, "receive"));
            continue;
        }
        return cdz_error_set(CDZ_STATUS_IO, "client: recv: %s", strerror(errno));
    }
    return CDZ_STATUS_OK;
}

cdz_status cdz_client_recv(cdz_client *c, cdz_proto_msg *m, int timeout_ms) {
    if (timeout_ms <= 0) timeout_ms = c->timeout_ms;
    cdz_proto_limits lim = {.types = CDZ_PROTO_TYPES_FROM_SERVER, .authenticated = true};
    if (c->cap < CDZ_PROTO_HEADER_SIZE) {
        uint8_t *p = realloc(c->buf, 1 << 16);
        if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "client: receive buffer");
        c->buf = p;
        c->cap = 1 << 16;
    }
    CDZ_TRY(read_exact(c, c->buf, CDZ_PROTO_HEADER_SIZE, timeout_ms));
    size_t need = 0;
    CDZ_TRY(cdz_proto_frame_peek(c->buf, CDZ_PROTO_HEADER_SIZE, &lim, &need));
    if (need > c->cap) {
        uint8_t *p = realloc(c->buf, need);
        if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "client: %zu-byte frame", need);
        c->buf = p;
        c->cap = need;
    }
    CDZ_TRY(read_exact(c, c->buf + CDZ_PROTO_HEADER_SIZE, need - CDZ_PROTO_HEADER_SIZE, timeout_ms));
    return cdz_proto_decode(c->buf, need, &lim, m);
}

static cdz_status dial(const char *addr, int *out) {
    int fd = -1;
    if (!strncmp(addr, "unix:", 5)) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof un.sun_path)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: unix path too long: %s", addr);
        strcpy(un.sun_path, addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof un) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return cdz_error_set(CDZ_STATUS_IO, "client: connect %s: %s", addr, strerror(e));
        }
    } else {
        char host[256];
        const char *colon = strrchr(addr, ':');
        if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: '%s' is not HOST:PORT or unix:PATH", addr);
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        char *h = host;
        if (h[0] == '[' && h[strlen(h) - 1] == ']') { /* [v6]:port */
            h[strlen(h) - 1] = 0;
            h++;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(h, colon + 1, &hints, &res);
        if (rc != 0) return cdz_error_set(CDZ_STATUS_IO, "client: %s: %s", addr, gai_strerror(rc));
        int e = 0;
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
            e = errno;
            if (fd >= 0) close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) return cdz_error_set(CDZ_STATUS_IO, "client: connect %s: %s", addr, strerror(e));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    *out = fd;
    return CDZ_STATUS_OK;
}

cdz_status cdz_client_connect(const char *addr, const char *api_key, int timeout_ms, cdz_client **out) {
    *out = NULL;
    cdz_client *c = calloc(1, sizeof *c);
    cdz_proto_msg *m = malloc(sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "client: out of host memory");
    }
    c->fd = -1;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    cdz_status st = dial(addr, &c->fd);
    if (st == CDZ_STATUS_OK) {
        cdz_proto_msg_init(m, CDZ_PROTO_HELLO);
        snprintf(m->api_key, sizeof m->api_key, "%s", api_key ? api_key : "");
        snprintf(m->agent, sizeof m->agent, "cadenza-c-client/%d.%d.%d", CDZ_VERSION_MAJOR,
                 CDZ_VERSION_MINOR, CDZ_VERSION_PATCH);
        st = cdz_client_send(c, m);
    }
    if (st == CDZ_STATUS_OK) st = cdz_client_recv(c, m, c->timeout_ms);
    if (st == CDZ_STATUS_OK && m->h.type == CDZ_PROTO_ERROR) st = cdz_proto_error_raise(m);
    else if (st == CDZ_STATUS_OK && m->h.type != CDZ_PROTO_WELCOME)
        st = cdz_error_set(CDZ_STATUS_IO, "client: expected WELCOME, got %s", cdz_proto_type_name(m->h.type));
    if (st == CDZ_STATUS_OK) {
        c->max_body = m->max_body;
        c->max_streams = m->max_streams;
    }
    free(m);
    if (st != CDZ_STATUS_OK) {
        cdz_error saved = *cdz_last_error();
        cdz_client_close(c);
        cdz_error_set(saved.code, "%s", saved.message);
        cdz_error_set_retryable(saved.retryable);
        return saved.code;
    }
    *out = c;
    return CDZ_STATUS_OK;
}

void cdz_client_close(cdz_client *c) {
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    free(c->sbuf);
    free(c);
}

int cdz_client_fd(const cdz_client *c) { return c->fd; }
uint32_t cdz_client_max_body(const cdz_client *c) { return c->max_body; }

/* Wait for the answer to request_id (answers to other requests are skipped: this call is for
 * one request at a time). */
static cdz_status await(cdz_client *c, uint64_t rid, cdz_proto_msg *reply, int timeout_ms) {
    for (;;) {
        CDZ_TRY(cdz_client_recv(c, reply, timeout_ms));
        if (reply->h.type == CDZ_PROTO_ERROR && (reply->h.request_id == rid || reply->h.request_id == 0))
            return cdz_proto_error_raise(reply);
        if (reply->h.request_id == rid) return CDZ_STATUS_OK;
    }
}

cdz_status cdz_client_infer(cdz_client *c, uint64_t request_id, const char *model, int n_inputs,
                            const char *const *names, const cdz_tensor *inputs, int n_outputs,
                            const char *const *outputs, uint64_t deadline_us,
                            cdz_proto_msg *reply, int timeout_ms) {
    if (n_inputs < 0 || n_inputs > CDZ_PROTO_MAX_TENSORS || n_outputs < 0 || n_outputs > CDZ_PROTO_MAX_OUTPUTS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: %d inputs, %d outputs", n_inputs, n_outputs);
    cdz_proto_msg_init(reply, CDZ_PROTO_INFER);
    reply->h.request_id = request_id;
    reply->h.deadline_us = deadline_us;
    snprintf(reply->model, sizeof reply->model, "%s", model);
    reply->n_outputs = (uint32_t)n_outputs;
    for (int i = 0; i < n_outputs; i++) snprintf(reply->outputs[i], sizeof reply->outputs[i], "%s", outputs[i]);
    reply->n_tensors = (uint32_t)n_inputs;
    for (int i = 0; i < n_inputs; i++) CDZ_TRY(cdz_proto_tensor_set(&reply->tensors[i], names[i], &inputs[i]));
    CDZ_TRY(cdz_client_send(c, reply));
    return await(c, request_id, reply, timeout_ms);
}

cdz_status cdz_client_list_models(cdz_client *c, cdz_proto_msg *reply, int timeout_ms) {
    size_t n = 0;
    uint8_t frame[CDZ_PROTO_HEADER_SIZE];
    CDZ_TRY(cdz_proto_encode_empty(frame, sizeof frame, CDZ_PROTO_LIST_MODELS, 1, 0, 0, &n));
    CDZ_TRY(cdz_client_send_raw(c, frame, n));
    return await(c, 1, reply, timeout_ms);
}

cdz_status cdz_client_cancel(cdz_client *c, uint64_t request_id) {
    size_t n = 0;
    uint8_t frame[CDZ_PROTO_HEADER_SIZE];
    CDZ_TRY(cdz_proto_encode_empty(frame, sizeof frame, CDZ_PROTO_CANCEL, request_id, 0, 0, &n));
    return cdz_client_send_raw(c, frame, n);
}

/* ---- streams ---- */

uint16_t cdz_client_max_streams(const cdz_client *c) { return c->max_streams; }

cdz_status cdz_client_stream_open(cdz_client *c, uint64_t request_id, uint64_t stream_id, const char *model,
                                  int n_outputs, const char *const *outputs, uint64_t deadline_us,
                                  cdz_proto_msg *m) {
    if (n_outputs < 0 || n_outputs > CDZ_PROTO_MAX_OUTPUTS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: %d stream outputs", n_outputs);
    cdz_proto_msg_init(m, CDZ_PROTO_STREAM_OPEN);
    m->h.request_id = request_id;
    m->h.stream_id = stream_id;
    m->h.deadline_us = deadline_us;
    snprintf(m->model, sizeof m->model, "%s", model);
    m->n_outputs = (uint32_t)n_outputs;
    for (int i = 0; i < n_outputs; i++) snprintf(m->outputs[i], sizeof m->outputs[i], "%s", outputs[i]);
    return cdz_client_send(c, m);
}

cdz_status cdz_client_stream_chunk(cdz_client *c, uint64_t request_id, uint64_t stream_id, uint64_t sequence,
                                   int n, const char *const *names, const cdz_tensor *tensors, bool end,
                                   cdz_proto_msg *m) {
    if (n < 0 || n > CDZ_PROTO_MAX_TENSORS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: %d tensors in a chunk", n);
    cdz_proto_msg_init(m, CDZ_PROTO_STREAM_CHUNK);
    m->h.request_id = request_id;
    m->h.stream_id = stream_id;
    m->h.sequence = sequence;
    m->h.flags = end ? CDZ_PROTO_FLAG_END_OF_STREAM : 0;
    m->n_tensors = (uint32_t)n;
    for (int i = 0; i < n; i++) CDZ_TRY(cdz_proto_tensor_set(&m->tensors[i], names[i], &tensors[i]));
    return cdz_client_send(c, m);
}

cdz_status cdz_client_stream_close(cdz_client *c, uint64_t request_id, uint64_t stream_id, uint64_t chunks_sent) {
    size_t n = 0;
    uint8_t frame[CDZ_PROTO_HEADER_SIZE];
    CDZ_TRY(cdz_proto_encode_empty(frame, sizeof frame, CDZ_PROTO_STREAM_CLOSE, request_id, stream_id, chunks_sent, &n));
    return cdz_client_send_raw(c, frame, n);
}

cdz_status cdz_client_stream_recv(cdz_client *c, cdz_proto_stream *results, cdz_proto_msg *m, bool *end,
                                  int timeout_ms) {
    *end = false;
    CDZ_TRY(cdz_client_recv(c, m, timeout_ms));
    if (m->h.type == CDZ_PROTO_ERROR && (m->h.request_id == results->request_id || m->h.request_id == 0))
        return cdz_proto_error_raise(m);
    if (m->h.type != CDZ_PROTO_RESULT || m->h.request_id != results->request_id)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "client: stream %llu: got a %s of request %llu",
                             (unsigned long long)results->stream_id, cdz_proto_type_name(m->h.type),
                             (unsigned long long)m->h.request_id);
    CDZ_TRY(cdz_proto_stream_accept(results, &m->h));
    *end = (m->h.flags & CDZ_PROTO_FLAG_END_OF_STREAM) != 0;
    return CDZ_STATUS_OK;
}
