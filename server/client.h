/*
 * client.h: a small blocking C client for the cadenza wire protocol (docs/protocol.md §7).
 *
 * One cdz_client is one connection (TCP "HOST:PORT" or "unix:PATH"), used by one thread at a
 * time. cdz_client_connect sends HELLO and waits for WELCOME. Requests may be pipelined with
 * cdz_client_send + cdz_client_recv; cdz_client_infer is the one-request convenience.
 * A received message's tensor payloads are views into the client's receive buffer, valid
 * until the next receive. Server ERROR frames become the call's status with the thread's
 * error record set from the frame (code, retryable, message).
 *
 * defines: cdz_client, cdz_client_connect, cdz_client_close, cdz_client_send,
 *          cdz_client_send_raw, cdz_client_recv, cdz_client_infer, cdz_client_list_models,
 *          cdz_client_cancel, cdz_client_fd, cdz_client_max_body, cdz_client_max_streams,
 *          cdz_client_stream_open, cdz_client_stream_chunk, cdz_client_stream_close,
 *          cdz_client_stream_recv
 */
#ifndef CDZ_SERVER_CLIENT_H
#define CDZ_SERVER_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "cadenza.h"
#include "protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cdz_client cdz_client;

/* Connect, HELLO (api_key may be NULL), WELCOME. timeout_ms bounds every step (<= 0: 30 s). */
cdz_status cdz_client_connect(const char *addr, const char *api_key, int timeout_ms,
                              cdz_client **out);
void cdz_client_close(cdz_client *c);
int cdz_client_fd(const cdz_client *c);
uint32_t cdz_client_max_body(const cdz_client *c); /* from WELCOME */

/* Encode and send one frame (blocking until written or timeout). */
cdz_status cdz_client_send(cdz_client *c, const cdz_proto_msg *m);
cdz_status cdz_client_send_raw(cdz_client *c, const void *bytes, size_t len);
/* Receive one frame into *m (any type; an ERROR is returned as a message, status OK).
 * IO when the connection closes or timeout_ms passes. */
cdz_status cdz_client_recv(cdz_client *c, cdz_proto_msg *m, int timeout_ms);

/* One INFER and its answer. On OK *reply is the RESULT; an ERROR answer is returned as its
 * code with the error record set (reply holds the ERROR). */
cdz_status cdz_client_infer(cdz_client *c, uint64_t request_id, const char *model, int n_inputs,
                            const char *const *names, const cdz_tensor *inputs, int n_outputs,
                            const char *const *outputs, uint64_t deadline_us,
                            cdz_proto_msg *reply, int timeout_ms);
cdz_status cdz_client_list_models(cdz_client *c, cdz_proto_msg *reply, int timeout_ms);
cdz_status cdz_client_cancel(cdz_client *c, uint64_t request_id);

/* ---- streams (docs/protocol.md "Streams"); `scratch` is any message the caller owns ----
 * Open stream `stream_id` as request `request_id` on `model` (n_outputs 0 = every output). */
uint16_t cdz_client_max_streams(const cdz_client *c); /* from WELCOME */
cdz_status cdz_client_stream_open(cdz_client *c, uint64_t request_id, uint64_t stream_id, const char *model,
                                  int n_outputs, const char *const *outputs, uint64_t deadline_us,
                                  cdz_proto_msg *scratch);
/* Chunk `sequence` (0, 1, 2, ... -- the caller numbers them); end = END_OF_STREAM. */
cdz_status cdz_client_stream_chunk(cdz_client *c, uint64_t request_id, uint64_t stream_id, uint64_t sequence,
                                   int n, const char *const *names, const cdz_tensor *tensors, bool end,
                                   cdz_proto_msg *scratch);
/* STREAM_CLOSE after `chunks_sent` chunks. */
cdz_status cdz_client_stream_close(cdz_client *c, uint64_t request_id, uint64_t stream_id, uint64_t chunks_sent);
/* The next frame of the stream `results` tracks (cdz_proto_stream_begin'd by the caller with the
 * stream and request ids): a RESULT is checked with cdz_proto_stream_accept (its sequence must
 * be the next one; *end set on END_OF_STREAM) and returned in *m; an ERROR for the stream is
 * returned as its code (error record set). Frames of other requests are INVALID_ARGUMENT. */
cdz_status cdz_client_stream_recv(cdz_client *c, cdz_proto_stream *results, cdz_proto_msg *m, bool *end,
                                  int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_SERVER_CLIENT_H */
