/*
 * fuzz_protocol: libFuzzer target for the frame decoder (server/protocol.c).
 *
 * Each input is a receive buffer. Peek is run on every prefix of the header, under the
 * server's limits before and after HELLO and with no limits; when peek finds a complete
 * frame at the start of the buffer, that frame is decoded. A decoded frame must re-encode to
 * exactly the same bytes (frames are canonical), decode again to the same bytes, and every
 * payload view must lie inside the frame (touched first and last byte: ASan checks). A
 * refusal must leave a message. Any crash, leak, UB or broken invariant is a finding.
 *
 * server/protocol.c is not in FUZZ_SRC (the Makefile's runtime list), so it is compiled here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/protocol.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cdz_proto_msg msg, msg2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const cdz_proto_limits pre = {.max_body = 1u << 20, .types = CDZ_PROTO_TYPES_FROM_CLIENT, .authenticated = false};
    const cdz_proto_limits post = {.max_body = 1u << 20, .types = CDZ_PROTO_TYPES_FROM_CLIENT, .authenticated = true};
    size_t need = 0;
    /* peek must be monotonic: once a prefix is refused, longer ones are too */
    bool refused = false;
    for (size_t len = 0; len <= size && len <= CDZ_PROTO_HEADER_SIZE; len++) {
        cdz_status st = cdz_proto_frame_peek(data, len, NULL, &need);
        if (st != CDZ_STATUS_OK && cdz_last_message()[0] == '\0') __builtin_trap();
        if (refused && st == CDZ_STATUS_OK) __builtin_trap();
        if (st != CDZ_STATUS_OK) refused = true;
        else if (need < CDZ_PROTO_HEADER_SIZE || need > CDZ_PROTO_HEADER_SIZE + (size_t)CDZ_PROTO_MAX_FRAME) __builtin_trap();
        (void)cdz_proto_frame_peek(data, len, &pre, &need);
        (void)cdz_proto_frame_peek(data, len, &post, &need);
    }
    if (cdz_proto_frame_peek(data, size, NULL, &need) != CDZ_STATUS_OK || need > size) {
        /* incomplete or refused: decoding the whole buffer must fail the same way */
        if (cdz_proto_decode(data, size, NULL, &msg) == CDZ_STATUS_OK) __builtin_trap();
        return 0;
    }
    /* the server's view of the same frame */
    (void)cdz_proto_decode(data, need, &pre, &msg);
    (void)cdz_proto_decode(data, need, &post, &msg);
    if (cdz_proto_decode(data, need, NULL, &msg) != CDZ_STATUS_OK) {
        if (cdz_last_message()[0] == '\0') __builtin_trap();
        return 0;
    }
    /* payload views inside the frame */
    volatile uint8_t sink = 0;
    for (uint32_t i = 0; i < msg.n_tensors; i++) {
        const cdz_proto_tensor *t = &msg.tensors[i];
        if (!t->nbytes) continue;
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + need) __builtin_trap();
        if ((size_t)(p - data) % CDZ_PROTO_ALIGN) __builtin_trap();
        sink ^= p[0] ^ p[t->nbytes - 1];
        cdz_tensor view;
        (void)cdz_proto_tensor_view(t, &view);
    }
    (void)sink;
    if (msg.h.type == CDZ_PROTO_ERROR) (void)cdz_proto_error_raise(&msg);
    if (msg.h.stream_id) {
        cdz_proto_stream s;
        cdz_proto_stream_begin(&s, msg.h.stream_id, msg.h.request_id);
        (void)cdz_proto_stream_accept(&s, &msg.h);
    }
    /* canonical: re-encoding gives the same bytes */
    size_t size2 = 0;
    if (cdz_proto_encode(&msg, NULL, 0, &size2) != CDZ_STATUS_OK || size2 != need) __builtin_trap();
    uint8_t *buf = malloc(need);
    if (!buf) return 0;
    if (cdz_proto_encode(&msg, buf, need, &size2) != CDZ_STATUS_OK || size2 != need || memcmp(buf, data, need) != 0)
        __builtin_trap();
    if (cdz_proto_decode(buf, need, NULL, &msg2) != CDZ_STATUS_OK) __builtin_trap();
    if (need > CDZ_PROTO_HEADER_SIZE && cdz_proto_encode(&msg2, buf, need - 1, &size2) == CDZ_STATUS_OK) __builtin_trap();
    free(buf);
    return 0;
}
