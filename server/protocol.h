/*
 * protocol.h: the cadenza wire protocol, version 1 (docs/protocol.md is the specification).
 *
 * Frames are a fixed 56-byte little-endian header followed by a body whose length is in the
 * header and is a multiple of 8. The code here is pure: it reads and writes byte buffers and
 * never allocates, blocks or touches a socket.
 *
 *  - cdz_proto_frame_peek looks at the first bytes of a receive buffer and says how many bytes
 *    the frame needs, failing as soon as the bytes it has show a bad magic, version, type,
 *    flags or an oversized body (a server drops a hostile client before it sends the body).
 *  - cdz_proto_decode checks one whole frame and fills a cdz_proto_msg: names and strings are
 *    copied into the message (bounded, NUL-terminated); tensor payloads are views into the
 *    buffer (never copied). Every limit is a named constant, checked before it is used.
 *  - cdz_proto_encode writes a message with the same checks, so a peer never receives a frame
 *    the decoder would refuse; decode(encode(m)) == m and encode(decode(f)) == f.
 *  - cdz_proto_stream_* track the sequence numbers of one stream (gaps, reordering, chunks
 *    after the end are errors; nothing is ever skipped).
 * Every failure is a cdz_status with a message naming the frame, the field and the limit.
 */
#ifndef CDZ_SERVER_PROTOCOL_H
#define CDZ_SERVER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cadenza.h"

// defines: cdz_proto_type, cdz_proto_header, cdz_proto_tensor, cdz_proto_model, cdz_proto_msg,
//          cdz_proto_limits, cdz_proto_frame_peek, cdz_proto_decode, cdz_proto_encode,
//          cdz_proto_encode_error, cdz_proto_encode_empty, cdz_proto_stream_*

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants (docs/protocol.md "Limits") ---- */
#define CDZ_PROTO_MAGIC "CDZP"                /* bytes 0x43 0x44 0x5A 0x50 */
#define CDZ_PROTO_VERSION 1
#define CDZ_PROTO_HEADER_SIZE 56
#define CDZ_PROTO_ALIGN 8                     /* body length and payload offsets */
#define CDZ_PROTO_MAX_FRAME (64u << 20)       /* body bytes of any frame (servers may lower it) */
#define CDZ_PROTO_MAX_PREAUTH_BODY 1024       /* body bytes before HELLO is accepted */
#define CDZ_PROTO_MAX_NAME 64                 /* model and tensor names, bytes */
#define CDZ_PROTO_MAX_TENSORS 128             /* tensors (or model-list specs) per frame */
#define CDZ_PROTO_MAX_OUTPUTS 64              /* requested output names per INFER/STREAM_OPEN */
#define CDZ_PROTO_MAX_MODELS 64               /* models per MODEL_LIST */
#define CDZ_PROTO_MAX_API_KEY 256
#define CDZ_PROTO_MAX_AGENT 128
#define CDZ_PROTO_MAX_MESSAGE 1023            /* ERROR message bytes (fits a cdz_error) */
#define CDZ_PROTO_MAX_DEADLINE_US 86400000000ull /* 24 h */
#define CDZ_PROTO_MAX_PRIORITY 7              /* 0 = default, 1 = most urgent .. 7 = least */
#define CDZ_PROTO_PRIORITY_DEFAULT 4          /* the level priority 0 stands for */

/* ---- frame types (values are the wire codes) ---- */
typedef enum cdz_proto_type {
    CDZ_PROTO_HELLO = 1,        /* C->S: first frame; optional API key, agent */
    CDZ_PROTO_WELCOME = 2,      /* S->C: answer to HELLO; the server's limits */
    CDZ_PROTO_INFER = 3,        /* C->S: one request: model, inputs, requested outputs */
    CDZ_PROTO_STREAM_OPEN = 4,  /* C->S: open stream_id on a model */
    CDZ_PROTO_STREAM_CHUNK = 5, /* C->S: next input chunk of a stream */
    CDZ_PROTO_STREAM_CLOSE = 6, /* C->S: no more chunks */
    CDZ_PROTO_CANCEL = 7,       /* C->S: cancel request_id (an INFER or a stream) */
    CDZ_PROTO_LIST_MODELS = 8,  /* C->S */
    CDZ_PROTO_MODEL_LIST = 9,   /* S->C: answer to LIST_MODELS */
    CDZ_PROTO_RESULT = 10,      /* S->C: outputs of an INFER, or the next output of a stream */
    CDZ_PROTO_ERROR = 11,       /* S->C: typed error for a request, a stream or the connection */
    CDZ_PROTO_TYPE_COUNT_
} cdz_proto_type;

/* Bit masks of types, for cdz_proto_limits.types. */
#define CDZ_PROTO_TYPE_BIT(t) (1u << (t))
#define CDZ_PROTO_TYPES_FROM_CLIENT                                                                \
    (CDZ_PROTO_TYPE_BIT(CDZ_PROTO_HELLO) | CDZ_PROTO_TYPE_BIT(CDZ_PROTO_INFER) |                   \
     CDZ_PROTO_TYPE_BIT(CDZ_PROTO_STREAM_OPEN) | CDZ_PROTO_TYPE_BIT(CDZ_PROTO_STREAM_CHUNK) |      \
     CDZ_PROTO_TYPE_BIT(CDZ_PROTO_STREAM_CLOSE) | CDZ_PROTO_TYPE_BIT(CDZ_PROTO_CANCEL) |           \
     CDZ_PROTO_TYPE_BIT(CDZ_PROTO_LIST_MODELS))
#define CDZ_PROTO_TYPES_FROM_SERVER                                                                \
    (CDZ_PROTO_TYPE_BIT(CDZ_PROTO_WELCOME) | CDZ_PROTO_TYPE_BIT(CDZ_PROTO_MODEL_LIST) |            \
     CDZ_PROTO_TYPE_BIT(CDZ_PROTO_RESULT) | CDZ_PROTO_TYPE_BIT(CDZ_PROTO_ERROR))

/* ---- header flags ---- */
#define CDZ_PROTO_FLAG_END_OF_STREAM 0x1u /* STREAM_CHUNK: last chunk; RESULT: last output */
#define CDZ_PROTO_FLAG_CLOSING 0x2u       /* ERROR: the server closes the connection after it */

/* MODEL_LIST per-model flags */
#define CDZ_PROTO_MODEL_INFER 0x1u  /* accepts INFER */
#define CDZ_PROTO_MODEL_STREAM 0x2u /* accepts STREAM_OPEN */

typedef struct cdz_proto_header {
    uint16_t version;     /* CDZ_PROTO_VERSION (set by the encoder when 0) */
    uint16_t type;        /* cdz_proto_type */
    uint32_t flags;
    uint32_t body_len;    /* filled by decode and encode */
    uint64_t request_id;
    uint64_t stream_id;
    uint64_t sequence;
    uint64_t deadline_us; /* relative to the server's receipt of the frame; 0 = none */
    uint8_t priority;     /* 0 = default (level CDZ_PROTO_PRIORITY_DEFAULT), 1..7 */
} cdz_proto_header;

/* A tensor in a frame. In INFER/STREAM_CHUNK/RESULT frames `data` is a view of `nbytes`
 * bytes inside the frame buffer; its offset from the frame's start is a multiple of 8.
 * In MODEL_LIST specs `data` is NULL, nbytes 0, and dims may be -1 (any size). */
typedef struct cdz_proto_tensor {
    char name[CDZ_PROTO_MAX_NAME + 1];
    cdz_dtype dtype;
    int32_t ndim; /* 0..CDZ_MAX_DIMS */
    int64_t dims[CDZ_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} cdz_proto_tensor;

typedef struct cdz_proto_model {
    char name[CDZ_PROTO_MAX_NAME + 1];
    uint16_t flags;        /* CDZ_PROTO_MODEL_* */
    uint16_t first_input;  /* index of its first input spec in msg.tensors */
    uint16_t n_inputs;
    uint16_t first_output; /* == first_input + n_inputs */
    uint16_t n_outputs;
} cdz_proto_model;

/* One decoded (or to-be-encoded) frame. Which fields are used depends on the type
 * (docs/protocol.md "Bodies"); the others are ignored by the encoder and zero after decode. */
typedef struct cdz_proto_msg {
    cdz_proto_header h;
    /* HELLO: api_key (may be empty) + agent; WELCOME: agent, max_body, max_streams */
    char api_key[CDZ_PROTO_MAX_API_KEY + 1];
    char agent[CDZ_PROTO_MAX_AGENT + 1];
    uint32_t max_body;
    uint16_t max_streams;
    /* INFER, STREAM_OPEN */
    char model[CDZ_PROTO_MAX_NAME + 1];
    uint32_t n_outputs; /* 0 = every output of the model */
    char outputs[CDZ_PROTO_MAX_OUTPUTS][CDZ_PROTO_MAX_NAME + 1];
    /* INFER/STREAM_OPEN inputs, STREAM_CHUNK inputs, RESULT outputs, MODEL_LIST specs */
    uint32_t n_tensors;
    cdz_proto_tensor tensors[CDZ_PROTO_MAX_TENSORS];
    /* RESULT: where the time went, microseconds */
    uint64_t queue_us, compute_us;
    /* ERROR */
    cdz_status code;
    bool retryable;
    char message[CDZ_PROTO_MAX_MESSAGE + 1];
    /* MODEL_LIST */
    uint32_t n_models;
    cdz_proto_model models[CDZ_PROTO_MAX_MODELS];
} cdz_proto_msg;

/* What a receiver accepts. NULL limits = every type, body <= CDZ_PROTO_MAX_FRAME, authenticated. */
typedef struct cdz_proto_limits {
    uint32_t max_body;  /* 0 = CDZ_PROTO_MAX_FRAME; larger values are clamped to it */
    uint32_t types;     /* CDZ_PROTO_TYPE_BIT mask of accepted types; 0 = every type */
    bool authenticated; /* false: only HELLO, body <= CDZ_PROTO_MAX_PREAUTH_BODY */
} cdz_proto_limits;

const char *cdz_proto_type_name(uint32_t type); /* "INFER"; "UNKNOWN" for other values */

/* Zero `m` and set its type and version. */
void cdz_proto_msg_init(cdz_proto_msg *m, cdz_proto_type type);

/* Look at the first `len` bytes of a receive buffer. On OK, *need is the size of the whole
 * frame when the header is complete, else CDZ_PROTO_HEADER_SIZE: the frame is complete when
 * len >= *need. Fails (INVALID_ARGUMENT, UNSUPPORTED for a version, UNAUTHENTICATED before
 * HELLO, TOO_LARGE for the body length) as soon as the bytes present show the problem. */
cdz_status cdz_proto_frame_peek(const void *buf, size_t len, const cdz_proto_limits *lim,
                                size_t *need);

/* Decode exactly one frame: `len` must be the frame's size (header + body). `out` receives
 * copies of the names and views of the payloads (valid while `buf` is). No allocation. */
cdz_status cdz_proto_decode(const void *buf, size_t len, const cdz_proto_limits *lim,
                            cdz_proto_msg *out);

/* Encode `m` into buf[0..cap). *size is set to the frame's size whenever `m` is valid; with
 * buf == NULL only the size is computed; cap < *size is INVALID_ARGUMENT (grow and retry).
 * h.body_len is computed; h.version 0 means CDZ_PROTO_VERSION. */
cdz_status cdz_proto_encode(const cdz_proto_msg *m, void *buf, size_t cap, size_t *size);

/* ERROR frame answering (request_id, stream_id, sequence); `message` is truncated to
 * CDZ_PROTO_MAX_MESSAGE bytes (at a UTF-8 character boundary). `closing` sets FLAG_CLOSING. */
cdz_status cdz_proto_encode_error(void *buf, size_t cap, uint64_t request_id, uint64_t stream_id,
                                  uint64_t sequence, cdz_status code, bool retryable, bool closing,
                                  const char *message, size_t *size);
/* The calling thread's error record (cdz_last_error) as an ERROR frame. */
cdz_status cdz_proto_encode_last_error(void *buf, size_t cap, uint64_t request_id,
                                       uint64_t stream_id, uint64_t sequence, bool closing,
                                       size_t *size);
/* A frame with an empty body: STREAM_CLOSE, CANCEL, LIST_MODELS. */
cdz_status cdz_proto_encode_empty(void *buf, size_t cap, cdz_proto_type type, uint64_t request_id,
                                  uint64_t stream_id, uint64_t sequence, size_t *size);

/* An ERROR message into this thread's error record; returns its code (client side). */
cdz_status cdz_proto_error_raise(const cdz_proto_msg *m);

/* A host cdz_tensor over a decoded payload (no copy). INVALID_ARGUMENT when the payload is
 * not aligned to its element size (the frame was not at an 8-aligned address). */
cdz_status cdz_proto_tensor_view(const cdz_proto_tensor *t, cdz_tensor *out);
/* Describe a contiguous host tensor for encoding under `name`. */
cdz_status cdz_proto_tensor_set(cdz_proto_tensor *out, const char *name, const cdz_tensor *t);

/* ---- streams: sequence numbers (docs/protocol.md "Streams") ----
 * The receiver of a stream keeps one cdz_proto_stream per open stream id. Chunks (or stream
 * RESULTs on the client side) must carry sequence numbers 0, 1, 2, ... with no gap and no
 * repeat; STREAM_CLOSE carries the number of chunks sent; nothing follows END_OF_STREAM or
 * STREAM_CLOSE. A violation is INVALID_ARGUMENT and the stream is failed, never skipped. */
typedef struct cdz_proto_stream {
    uint64_t stream_id;
    uint64_t request_id; /* of the STREAM_OPEN; every frame of the stream carries it */
    uint64_t next;       /* sequence number expected next */
    bool ended;
} cdz_proto_stream;

void cdz_proto_stream_begin(cdz_proto_stream *s, uint64_t stream_id, uint64_t request_id);
/* Check a STREAM_CHUNK, STREAM_CLOSE or stream RESULT header against the stream and advance. */
cdz_status cdz_proto_stream_accept(cdz_proto_stream *s, const cdz_proto_header *h);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_SERVER_PROTOCOL_H */
