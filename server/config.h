/*
 * config.h: the configuration of `cadenza serve` (docs/configuration.md lists every setting).
 *
 * Each setting has a flag (--max-batch 8 or --max-batch=8), an environment variable
 * (CADENZA_MAX_BATCH) and a config-file key (max-batch = 8). Precedence, lowest to highest:
 * built-in default < config file < environment < flag. Values are validated where they are
 * read; an error names the source and the key ("CADENZA_LISTEN: '127.0.0.1' is not HOST:PORT
 * or unix:PATH", "/etc/cadenza.conf:7: unknown key 'max-conections' (did you mean
 * 'max-connections'?)"). Every value remembers where it came from, and the effective
 * configuration can be printed with its sources.
 *
 * Config file: UTF-8 text, one `key = value` per line, '#' starts a comment (at the start of a
 * line, or after whitespace following a value); a value may be put in double quotes to keep
 * spaces or '#'. `model` may be repeated; other keys may appear once.
 *
 * Nothing here opens a socket or a device: addresses, model specs and device names are
 * checked for syntax; existence is checked when the server starts.
 */
#ifndef CDZ_SERVER_CONFIG_H
#define CDZ_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cadenza.h"
#include "protocol.h"

// defines: cdz_server_config, cdz_config_key, cdz_config_source, cdz_server_config_load and
//          the steps it is made of (_default, _apply_file, _apply_text, _apply_env,
//          _apply_flags, _finish), _print, _usage

#ifdef __cplusplus
extern "C" {
#endif

#define CDZ_CONFIG_MAX_MODELS 32
#define CDZ_CONFIG_MAX_DEVICES 16
#define CDZ_CONFIG_MAX_PATH 1024         /* bytes of a path, with its NUL */
#define CDZ_CONFIG_MAX_UNIX_PATH 108     /* sun_path, with its NUL */
#define CDZ_CONFIG_MAX_HOST 253
#define CDZ_CONFIG_MAX_FILE (1u << 20)   /* bytes of a config file */
#define CDZ_CONFIG_MAX_LINE 4096         /* bytes of one config-file line */
#define CDZ_CONFIG_MAX_KEY_FILE 4096     /* bytes of an api-key file */
#define CDZ_CONFIG_MAX_WARNINGS 4

typedef enum cdz_config_key {
    CDZ_CONFIG_LISTEN = 0,
    CDZ_CONFIG_ADMIN,
    CDZ_CONFIG_MODEL,
    CDZ_CONFIG_DEVICES,
    CDZ_CONFIG_CONFIG,
    CDZ_CONFIG_MAX_CONNECTIONS,
    CDZ_CONFIG_MAX_FRAME_BYTES,
    CDZ_CONFIG_MAX_STREAMS,
    CDZ_CONFIG_MAX_INFLIGHT,
    CDZ_CONFIG_QUEUE_SIZE,
    CDZ_CONFIG_MAX_BATCH,
    CDZ_CONFIG_MAX_QUEUE_DELAY,
    CDZ_CONFIG_READ_TIMEOUT,
    CDZ_CONFIG_WRITE_TIMEOUT,
    CDZ_CONFIG_IDLE_TIMEOUT,
    CDZ_CONFIG_DRAIN_TIMEOUT,
    CDZ_CONFIG_LOG_LEVEL,
    CDZ_CONFIG_LOG_JSON,
    CDZ_CONFIG_API_KEY,
    CDZ_CONFIG_API_KEY_FILE,
    CDZ_CONFIG_ARENA_FRACTION,
    CDZ_CONFIG_PRECISION,
    CDZ_CONFIG_KEY_COUNT_
} cdz_config_key;

typedef enum cdz_config_source {
    CDZ_CONFIG_SOURCE_DEFAULT = 0,
    CDZ_CONFIG_SOURCE_FILE,
    CDZ_CONFIG_SOURCE_ENV,
    CDZ_CONFIG_SOURCE_FLAG,
} cdz_config_source;

/* HOST:PORT ([v6]:PORT for IPv6) or unix:PATH; admin may also be "off". */
typedef struct cdz_net_addr {
    bool enabled;                           /* false: "off" (admin only) */
    bool is_unix;
    char host[CDZ_CONFIG_MAX_HOST + 1];     /* IPv4, IPv6 (no brackets) or a host name */
    uint16_t port;                          /* 0: the OS picks a free port */
    char path[CDZ_CONFIG_MAX_UNIX_PATH];    /* unix socket path */
} cdz_net_addr;

typedef struct cdz_model_spec {
    char name[CDZ_PROTO_MAX_NAME + 1];      /* the name clients use in INFER */
    char path[CDZ_CONFIG_MAX_PATH];         /* converted .safetensors file */
    uint32_t line;                          /* config-file line, when it came from the file */
} cdz_model_spec;

typedef struct cdz_server_config {
    cdz_net_addr listen;
    cdz_net_addr admin;
    struct {
        uint32_t count;
        cdz_model_spec spec[CDZ_CONFIG_MAX_MODELS];
    } models;
    struct {
        bool all;       /* "auto": every CUDA device, or the CPU when there is none */
        uint32_t count;
        cdz_device dev[CDZ_CONFIG_MAX_DEVICES];
    } devices;
    char config_path[CDZ_CONFIG_MAX_PATH];   /* "" = no config file */
    uint32_t max_connections;
    uint32_t max_frame_bytes;                /* <= CDZ_PROTO_MAX_FRAME */
    uint32_t max_streams;                    /* open streams per connection */
    uint32_t max_inflight;                   /* requests + streams in flight per connection */
    uint32_t queue_size;                     /* queued requests per model (then BUSY) */
    uint32_t max_batch;
    uint64_t max_queue_delay_us;
    uint64_t read_timeout_us;                /* to receive the rest of a started frame */
    uint64_t write_timeout_us;               /* for a slow reader to accept pending bytes */
    uint64_t idle_timeout_us;                /* without any frame (0 = never) */
    uint64_t drain_timeout_us;               /* SIGTERM: wait for in-flight work this long */
    cdz_log_level log_level;
    bool log_json;
    char api_key[CDZ_PROTO_MAX_API_KEY + 1]; /* "" = no authentication */
    char api_key_file[CDZ_CONFIG_MAX_PATH];
    double arena_fraction;
    cdz_precision precision;

    bool help; /* -h/--help was among the flags (load returns without validating) */
    /* where each value came from */
    cdz_config_source source[CDZ_CONFIG_KEY_COUNT_];
    uint32_t line[CDZ_CONFIG_KEY_COUNT_];    /* config-file line, for SOURCE_FILE */
    char file_label[CDZ_CONFIG_MAX_PATH];    /* the config file's name, for messages */
    uint32_t n_warnings;                     /* non-fatal findings, for the server's log */
    char warnings[CDZ_CONFIG_MAX_WARNINGS][256];
} cdz_server_config;

const char *cdz_config_key_name(cdz_config_key key);     /* "max-batch" */
const char *cdz_config_key_env(cdz_config_key key);      /* "CADENZA_MAX_BATCH" */
const char *cdz_config_source_name(cdz_config_source s); /* "default", "file", "env", "flag" */

/* The whole sequence: defaults; the file named by --config or CADENZA_CONFIG (if any); the
 * CADENZA_* variables of envp (NULL: the process environment); the flags; then _finish.
 * argv holds the options only (no program or command name). With -h/--help among the
 * flags, returns OK with cfg->help set and nothing else applied. */
cdz_status cdz_server_config_load(cdz_server_config *cfg, int argc, char *const *argv, char *const *envp);

/* The steps, for tests and tools. Each applies one source over what cfg holds. */
cdz_status cdz_server_config_default(cdz_server_config *cfg);
cdz_status cdz_server_config_apply_file(cdz_server_config *cfg, const char *path);
/* `label` names the text in messages (a path). The text need not be NUL-terminated. */
cdz_status cdz_server_config_apply_text(cdz_server_config *cfg, const char *text, size_t len, const char *label);
/* Unknown CADENZA_* variables are errors, except the runtime's own (docs/configuration.md). */
cdz_status cdz_server_config_apply_env(cdz_server_config *cfg, char *const *envp);
cdz_status cdz_server_config_apply_flags(cdz_server_config *cfg, int argc, char *const *argv);
/* Reads api-key-file and checks what involves several settings (at least one model, not both
 * api-key and api-key-file, listen != admin, max-batch <= queue-size). */
cdz_status cdz_server_config_finish(cdz_server_config *cfg);

/* The effective configuration as config-file text, each line commented with its source
 * ("max-batch = 8  # env CADENZA_MAX_BATCH"); the API key is printed as *** unless
 * show_secrets. The output parses back with cdz_server_config_apply_text. */
void cdz_server_config_print(const cdz_server_config *cfg, FILE *f, bool show_secrets);
/* The canonical text of one setting's value (models: "a=p,b=q"). */
const char *cdz_server_config_value_str(const cdz_server_config *cfg, cdz_config_key key, char *buf, size_t cap);
/* Flag help for `cadenza serve --help`, generated from the same table. */
void cdz_server_config_usage(FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* CDZ_SERVER_CONFIG_H */
