/*
 * test_config: configuration of `cadenza serve` (server/config.c, docs/configuration.md).
 *
 * Proves: the defaults; every setting read from a file, the environment and flags; the
 * precedence file < env < flag (config path included); model lists replaced, not merged,
 * by a higher source; every validation error names its source and key (with a suggestion
 * for misspelt keys); the api-key file; cross-setting checks; the printed configuration
 * parses back to the same values; the usage text lists every setting.
 *
 * server/ is not part of libcadenza, so the sources are compiled into this program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "../server/config.c"

static char tmpdir[64];
static cdz_server_config cfg, cfg2;

static bool expect_err(th_suite *s, const char *what, cdz_status st, cdz_status code, const char *substr) {
    bool ok = th_expect_status(s, what, st, code);
    if (substr) {
        char label[200];
        snprintf(label, sizeof label, "%s: message", what);
        th_check(s, label, strstr(cdz_last_message(), substr) != NULL, "'%s' not in '%s'", substr, cdz_last_message());
    }
    return ok;
}

static const char *write_tmp(const char *name, const char *text, size_t len) {
    static char path[8][160];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 160, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
    return p;
}

static const char *val(cdz_config_key k) {
    static char buf[8][40000];
    static int next;
    char *b = buf[next++ % 8];
    return cdz_server_config_value_str(&cfg, k, b, 40000);
}

static cdz_status from_text(const char *text) {
    cdz_server_config_default(&cfg);
    return cdz_server_config_apply_text(&cfg, text, strlen(text), "test.conf");
}

/* ------------------------------------------------------------------------------------ */
static void test_defaults(th_suite *s) {
    if (!th_begin(s, "defaults", "values, sources, finish without models")) return;
    th_ok(s, "default", cdz_server_config_default(&cfg));
    th_check(s, "listen 127.0.0.1:7878", !strcmp(val(CDZ_CONFIG_LISTEN), "127.0.0.1:7878") && cfg.listen.port == 7878 &&
                                             !cfg.listen.is_unix, "%s", val(CDZ_CONFIG_LISTEN));
    th_check(s, "admin 127.0.0.1:7879", !strcmp(val(CDZ_CONFIG_ADMIN), "127.0.0.1:7879") && cfg.admin.enabled, NULL);
    th_check(s, "no models", cfg.models.count == 0, NULL);
    th_check(s, "devices auto", cfg.devices.all && !strcmp(val(CDZ_CONFIG_DEVICES), "auto"), NULL);
    th_check(s, "numbers", cfg.max_connections == 256 && cfg.max_frame_bytes == (64u << 20) && cfg.max_streams == 16 &&
                               cfg.max_inflight == 32 && cfg.queue_size == 64 && cfg.max_batch == 8, NULL);
    th_check(s, "durations", cfg.max_queue_delay_us == 2000 && cfg.read_timeout_us == 30000000 &&
                                 cfg.write_timeout_us == 30000000 && cfg.idle_timeout_us == 300000000 &&
                                 cfg.drain_timeout_us == 30000000, NULL);
    th_check(s, "log, key, arena, precision", cfg.log_level == CDZ_LOG_LEVEL_INFO && !cfg.log_json && !cfg.api_key[0] &&
                                                  cfg.arena_fraction == 0.8 && cfg.precision == CDZ_PRECISION_STRICT, NULL);
    bool all_default = true;
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++)
        if (cfg.source[k] != CDZ_CONFIG_SOURCE_DEFAULT) all_default = false;
    th_check(s, "every source is default", all_default, NULL);
    th_check(s, "canonical text", !strcmp(val(CDZ_CONFIG_MAX_FRAME_BYTES), "64M") && !strcmp(val(CDZ_CONFIG_IDLE_TIMEOUT), "5m") &&
                                      !strcmp(val(CDZ_CONFIG_MAX_QUEUE_DELAY), "2ms") && !strcmp(val(CDZ_CONFIG_ARENA_FRACTION), "0.8"),
             "%s %s %s", val(CDZ_CONFIG_MAX_FRAME_BYTES), val(CDZ_CONFIG_IDLE_TIMEOUT), val(CDZ_CONFIG_MAX_QUEUE_DELAY));
    expect_err(s, "finish without models", cdz_server_config_finish(&cfg), CDZ_STATUS_INVALID_ARGUMENT, "no models to serve");
    th_check(s, "names", !strcmp(cdz_config_key_name(CDZ_CONFIG_MAX_BATCH), "max-batch") &&
                             !strcmp(cdz_config_key_env(CDZ_CONFIG_MODEL), "CADENZA_MODELS") &&
                             !strcmp(cdz_config_source_name(CDZ_CONFIG_SOURCE_ENV), "env"), NULL);
    th_end(s);
}

static const char *full_file =
    "\xEF\xBB\xBF# cadenza serve configuration\r\n"
    "\r\n"
    "listen = unix:/run/cadenza.sock\r\n"
    "admin=0.0.0.0:9100\n"
    "  model = htdemucs=/models/htdemucs.safetensors   # the 4-stem model\n"
    "model = \"ft=/models/my models/ft #1.safetensors\"\n"
    "devices = cuda:0,cuda:1,cpu\n"
    "max_connections = 1000\n"
    "max-frame-bytes = 16M\n"
    "max-streams = 4\n"
    "max-inflight = 100\n"
    "queue-size = 500\n"
    "max-batch = 16\n"
    "max-queue-delay = 500us\n"
    "read-timeout = 2m\n"
    "write-timeout = 1500ms\n"
    "idle-timeout = 0\n"
    "drain-timeout = 1h\n"
    "log-level = DEBUG\n"
    "log-json = yes\n"
    "api-key = abc#def\n"
    "arena-fraction = 0.5\n"
    "precision = tf32\n"
    "\t# trailing comment\n";

static void test_file(th_suite *s) {
    if (!th_begin(s, "file", "every key; BOM, CRLF, comments, quotes, underscores")) return;
    th_ok(s, "parse", from_text(full_file));
    th_check(s, "listen unix", cfg.listen.is_unix && !strcmp(cfg.listen.path, "/run/cadenza.sock"), NULL);
    th_check(s, "admin", !strcmp(cfg.admin.host, "0.0.0.0") && cfg.admin.port == 9100, NULL);
    th_check(s, "two models, quoted path with spaces and '#'", cfg.models.count == 2 &&
                                                                   !strcmp(cfg.models.spec[0].name, "htdemucs") &&
                                                                   !strcmp(cfg.models.spec[0].path, "/models/htdemucs.safetensors") &&
                                                                   !strcmp(cfg.models.spec[1].path, "/models/my models/ft #1.safetensors"),
             "%s", val(CDZ_CONFIG_MODEL));
    th_check(s, "each model keeps its line", cfg.models.spec[0].line == 5 && cfg.models.spec[1].line == 6, NULL);
    th_check(s, "devices", !cfg.devices.all && cfg.devices.count == 3 && cfg.devices.dev[1].kind == CDZ_DEVICE_CUDA &&
                               cfg.devices.dev[1].index == 1 && cfg.devices.dev[2].kind == CDZ_DEVICE_CPU, NULL);
    th_check(s, "numbers", cfg.max_connections == 1000 && cfg.max_frame_bytes == (16u << 20) && cfg.max_streams == 4 &&
                               cfg.max_inflight == 100 && cfg.queue_size == 500 && cfg.max_batch == 16, NULL);
    th_check(s, "durations", cfg.max_queue_delay_us == 500 && cfg.read_timeout_us == 120000000 &&
                                 cfg.write_timeout_us == 1500000 && cfg.idle_timeout_us == 0 &&
                                 cfg.drain_timeout_us == 3600000000ull, NULL);
    th_check(s, "others", cfg.log_level == CDZ_LOG_LEVEL_DEBUG && cfg.log_json && !strcmp(cfg.api_key, "abc#def") &&
                              cfg.arena_fraction == 0.5 && cfg.precision == CDZ_PRECISION_TF32, NULL);
    th_check(s, "sources and lines", cfg.source[CDZ_CONFIG_LISTEN] == CDZ_CONFIG_SOURCE_FILE &&
                                         cfg.line[CDZ_CONFIG_LISTEN] == 3 && cfg.line[CDZ_CONFIG_PRECISION] == 23 &&
                                         cfg.source[CDZ_CONFIG_CONFIG] == CDZ_CONFIG_SOURCE_DEFAULT,
             "listen line %u, precision line %u", cfg.line[CDZ_CONFIG_LISTEN], cfg.line[CDZ_CONFIG_PRECISION]);
    th_ok(s, "IPv6 and host names", from_text("listen = [::1]:0\nadmin = metrics.example-host.internal:80\n"));
    th_check(s, "[::1]:0", !strcmp(cfg.listen.host, "::1") && cfg.listen.port == 0 && !strcmp(val(CDZ_CONFIG_LISTEN), "[::1]:0"),
             "%s", val(CDZ_CONFIG_LISTEN));
    th_ok(s, "admin off, sizes", from_text("admin = off\nmax-frame-bytes = 131072\n"));
    th_check(s, "off", !cfg.admin.enabled && !strcmp(val(CDZ_CONFIG_ADMIN), "off") && !strcmp(val(CDZ_CONFIG_MAX_FRAME_BYTES), "128K"),
             NULL);
    th_ok(s, "empty text", from_text(""));
    th_ok(s, "no final newline", from_text("max-batch = 3"));
    th_check(s, "max-batch 3", cfg.max_batch == 3, NULL);
    th_ok(s, "read from a file", cdz_server_config_default(&cfg));
    th_ok(s, "apply_file", cdz_server_config_apply_file(&cfg, write_tmp("full.conf", full_file, strlen(full_file))));
    th_check(s, "file label in origin", strstr(cfg.file_label, "full.conf") != NULL && cfg.models.count == 2, NULL);
    th_end(s);
}

static void test_env(th_suite *s) {
    if (!th_begin(s, "env", "CADENZA_* variables")) return;
    char *env[] = {"PATH=/usr/bin",
                   "CADENZA_LISTEN=0.0.0.0:7000",
                   "CADENZA_MODELS= a=/m/a.safetensors , b=/m/b.safetensors",
                   "CADENZA_DEVICES=cuda",
                   "CADENZA_MAX_BATCH=4",
                   "CADENZA_LOG_JSON=1",
                   "CADENZA_API_KEY=k3y",
                   "CADENZA_SYNC_CHECK=1",        /* the runtime's own: accepted */
                   "CADENZA_AUDIO_MAX_BYTES=1000",
                   "CADENZA_IDLE_TIMEOUT=",       /* empty: as if unset */
                   "CADENZA_PRECISION=bf16",
                   NULL};
    cdz_server_config_default(&cfg);
    th_ok(s, "apply_env", cdz_server_config_apply_env(&cfg, env));
    th_check(s, "listen", cfg.listen.port == 7000 && cfg.source[CDZ_CONFIG_LISTEN] == CDZ_CONFIG_SOURCE_ENV, NULL);
    th_check(s, "models split on commas, trimmed", cfg.models.count == 2 && !strcmp(cfg.models.spec[0].name, "a") &&
                                                       !strcmp(cfg.models.spec[1].path, "/m/b.safetensors"),
             "%s", val(CDZ_CONFIG_MODEL));
    th_check(s, "cuda = cuda:0", cfg.devices.count == 1 && cfg.devices.dev[0].kind == CDZ_DEVICE_CUDA &&
                                     cfg.devices.dev[0].index == 0, NULL);
    th_check(s, "others", cfg.max_batch == 4 && cfg.log_json && !strcmp(cfg.api_key, "k3y") &&
                              cfg.precision == CDZ_PRECISION_BF16, NULL);
    th_check(s, "empty variable ignored", cfg.idle_timeout_us == 300000000 &&
                                              cfg.source[CDZ_CONFIG_IDLE_TIMEOUT] == CDZ_CONFIG_SOURCE_DEFAULT, NULL);
    char *typo[] = {"CADENZA_MAX_CONECTIONS=5", NULL};
    cdz_server_config_default(&cfg);
    expect_err(s, "unknown variable", cdz_server_config_apply_env(&cfg, typo), CDZ_STATUS_INVALID_ARGUMENT,
               "unknown variable CADENZA_MAX_CONECTIONS (did you mean 'CADENZA_MAX_CONNECTIONS'?)");
    char *bad[] = {"CADENZA_MAX_BATCH=0", NULL};
    cdz_server_config_default(&cfg);
    expect_err(s, "bad value names the variable", cdz_server_config_apply_env(&cfg, bad), CDZ_STATUS_INVALID_ARGUMENT,
               "CADENZA_MAX_BATCH: '0' is below the minimum of 1");
    char *empty_item[] = {"CADENZA_MODELS=a=/x,,b=/y", NULL};
    cdz_server_config_default(&cfg);
    expect_err(s, "empty model item", cdz_server_config_apply_env(&cfg, empty_item), CDZ_STATUS_INVALID_ARGUMENT,
               "CADENZA_MODELS: empty item");
    th_end(s);
}

static void test_flags(th_suite *s) {
    if (!th_begin(s, "flags", "--key value, --key=value, booleans, repeats, help")) return;
    char *argv[] = {"--listen", "127.0.0.1:1234", "--model=a=/m/a.safetensors", "--model", "b=/m/b,c.safetensors",
                    "--log-json", "--max-queue-delay=0", "--devices", "cpu:1,cpu:2", "--api-key-file", "/k"};
    cdz_server_config_default(&cfg);
    th_ok(s, "apply_flags", cdz_server_config_apply_flags(&cfg, 11, argv));
    th_check(s, "listen", cfg.listen.port == 1234 && cfg.source[CDZ_CONFIG_LISTEN] == CDZ_CONFIG_SOURCE_FLAG, NULL);
    th_check(s, "repeated --model, comma kept in a flag's path", cfg.models.count == 2 &&
                                                                     !strcmp(cfg.models.spec[1].path, "/m/b,c.safetensors"),
             "%s", val(CDZ_CONFIG_MODEL));
    th_check(s, "bare boolean", cfg.log_json, NULL);
    th_check(s, "0 duration", cfg.max_queue_delay_us == 0, NULL);
    th_check(s, "cpu:N", cfg.devices.count == 2 && cfg.devices.dev[1].index == 2 && !strcmp(val(CDZ_CONFIG_DEVICES), "cpu:1,cpu:2"),
             "%s", val(CDZ_CONFIG_DEVICES));
    char *off[] = {"--log-json=false"};
    cdz_server_config_default(&cfg);
    th_ok(s, "--log-json=false", cdz_server_config_apply_flags(&cfg, 1, off));
    th_check(s, "off", !cfg.log_json && cfg.source[CDZ_CONFIG_LOG_JSON] == CDZ_CONFIG_SOURCE_FLAG, NULL);
    char *help[] = {"--max-batch", "2", "-h"};
    cdz_server_config_default(&cfg);
    th_ok(s, "-h", cdz_server_config_apply_flags(&cfg, 3, help));
    th_check(s, "help set", cfg.help, NULL);
    th_ok(s, "load with --help", cdz_server_config_load(&cfg, 3, help, (char *[]){"CADENZA_MAX_BATCH=x", NULL}));
    th_check(s, "load returns early on --help", cfg.help && cfg.max_batch == 8, NULL);
    th_end(s);
}

static void test_precedence(th_suite *s) {
    if (!th_begin(s, "precedence", "default < file < env < flag")) return;
    const char *text = "listen = 127.0.0.1:1001\nadmin = 127.0.0.1:2001\nmax-batch = 4\nmodel = f=/f.safetensors\n"
                       "queue-size = 40\nprecision = fp16\n";
    const char *path = write_tmp("prec.conf", text, strlen(text));
    const char *other = write_tmp("other.conf", "max-batch = 2\nmodel = o=/o\n", 27);
    char cfgvar[300];
    snprintf(cfgvar, sizeof cfgvar, "CADENZA_CONFIG=%s", path);
    char *env[] = {cfgvar, "CADENZA_LISTEN=127.0.0.1:1002", "CADENZA_ADMIN=127.0.0.1:2002",
                   "CADENZA_MODELS=e1=/e1,e2=/e2", NULL};
    char *argv[] = {"--listen", "127.0.0.1:1003"};
    th_ok(s, "load", cdz_server_config_load(&cfg, 2, argv, env));
    th_check(s, "listen from the flag", cfg.listen.port == 1003 && cfg.source[CDZ_CONFIG_LISTEN] == CDZ_CONFIG_SOURCE_FLAG, NULL);
    th_check(s, "admin from env over file", cfg.admin.port == 2002 && cfg.source[CDZ_CONFIG_ADMIN] == CDZ_CONFIG_SOURCE_ENV,
             NULL);
    th_check(s, "max-batch from the file", cfg.max_batch == 4 && cfg.source[CDZ_CONFIG_MAX_BATCH] == CDZ_CONFIG_SOURCE_FILE &&
                                               cfg.line[CDZ_CONFIG_MAX_BATCH] == 3, NULL);
    th_check(s, "models from env replace the file's", cfg.models.count == 2 && !strcmp(cfg.models.spec[0].name, "e1") &&
                                                          cfg.source[CDZ_CONFIG_MODEL] == CDZ_CONFIG_SOURCE_ENV,
             "%s", val(CDZ_CONFIG_MODEL));
    th_check(s, "max-connections default", cfg.max_connections == 256 &&
                                               cfg.source[CDZ_CONFIG_MAX_CONNECTIONS] == CDZ_CONFIG_SOURCE_DEFAULT, NULL);
    th_check(s, "config path from env", !strcmp(cfg.config_path, path) && cfg.source[CDZ_CONFIG_CONFIG] == CDZ_CONFIG_SOURCE_ENV,
             NULL);
    /* flags' models replace env's; --config replaces CADENZA_CONFIG */
    char *argv2[] = {"--model", "x=/x", "--config", (char *)other, "--max-batch=1"};
    th_ok(s, "load 2", cdz_server_config_load(&cfg, 5, argv2, env));
    th_check(s, "models from the flag only", cfg.models.count == 1 && !strcmp(cfg.models.spec[0].name, "x") &&
                                                 cfg.source[CDZ_CONFIG_MODEL] == CDZ_CONFIG_SOURCE_FLAG, NULL);
    th_check(s, "--config wins: queue-size not read from the env's file", cfg.queue_size == 64 &&
                                                                           !strcmp(cfg.config_path, other) &&
                                                                           cfg.source[CDZ_CONFIG_CONFIG] == CDZ_CONFIG_SOURCE_FLAG,
             "queue-size %u path %s", cfg.queue_size, cfg.config_path);
    th_check(s, "flag over the file", cfg.max_batch == 1 && cfg.source[CDZ_CONFIG_MAX_BATCH] == CDZ_CONFIG_SOURCE_FLAG, NULL);
    /* print shows the sources */
    char *text_out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text_out, &len);
    cdz_server_config_print(&cfg, mem, false);
    fclose(mem);
    th_check(s, "print: flag source", strstr(text_out, "listen = 127.0.0.1:1002  # env CADENZA_LISTEN") &&
                                          strstr(text_out, "max-batch = 1  # flag --max-batch") &&
                                          strstr(text_out, "max-connections = 256  # default"),
             "%s", text_out);
    free(text_out);
    /* errors from a file given by the environment name the file */
    const char *broken = write_tmp("broken.conf", "max-batch = 4\nmax-bach = 5\n", 27);
    snprintf(cfgvar, sizeof cfgvar, "CADENZA_CONFIG=%s", broken);
    expect_err(s, "file error through load", cdz_server_config_load(&cfg, 0, NULL, env), CDZ_STATUS_INVALID_ARGUMENT,
               "broken.conf:2: unknown key 'max-bach' (did you mean 'max-batch'?)");
    snprintf(cfgvar, sizeof cfgvar, "CADENZA_CONFIG=%s/missing.conf", tmpdir);
    expect_err(s, "missing config file", cdz_server_config_load(&cfg, 0, NULL, env), CDZ_STATUS_IO, "missing.conf");
    th_end(s);
}

typedef struct bad_case {
    const char *what;
    const char *text; /* file text */
    const char *substr;
} bad_case;

static void test_file_errors(th_suite *s) {
    if (!th_begin(s, "file-errors", "every validation error names the file, line and key")) return;
    const bad_case cases[] = {
        {"unknown key", "max-conections = 5\n", "test.conf:1: unknown key 'max-conections' (did you mean 'max-connections'?)"},
        {"unknown key, far from any", "colour = red\n", "unknown key 'colour'"},
        {"no '='", "listen 127.0.0.1:1\n", "test.conf:1: expected '=' after 'listen'"},
        {"no key", "= 5\n", "expected 'key = value'"},
        {"key twice", "max-batch = 2\n\nmax-batch = 3\n", "test.conf:3: max-batch: already set on line 1"},
        {"config inside a file", "config = /x\n", "'config' cannot be set inside a config file"},
        {"empty value", "listen =\n", "test.conf:1: listen: empty value"},
        {"unterminated quote", "listen = \"127.0.0.1:1\n", "unterminated quote"},
        {"text after a quote", "listen = \"127.0.0.1:1\" x\n", "text after the closing quote"},
        {"quote inside a value", "model = a=/x\"y\n", "a '\"' inside a value"},
        {"control character", "model = a=/x\x01y\n", "control character 0x01"},
        {"listen no port", "listen = 127.0.0.1\n", "listen: '127.0.0.1' is not HOST:PORT"},
        {"listen port 70000", "listen = 127.0.0.1:70000\n", "port '70000' is not a number in 0..65535"},
        {"listen bad IPv4", "listen = 300.1.2.3:80\n", "'300.1.2.3' is not an IPv4 address"},
        {"listen bare IPv6", "listen = ::1:80\n", "write IPv6 addresses in brackets"},
        {"listen bad IPv6", "listen = [fe80::zz]:80\n", "is not an IPv6 address"},
        {"listen bad host", "listen = my_host:80\n", "'my_host' is not a host name"},
        {"listen no host", "listen = :80\n", "no host before the port"},
        {"unix empty path", "listen = unix:\n", "empty socket path"},
        {"unix path too long",
         "listen = unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
         "exceeds the limit of 107 (CDZ_CONFIG_MAX_UNIX_PATH)"},
        {"admin on a unix socket", "admin = unix:/x\n", "admin HTTP port listens on TCP only"},
        {"model without '='", "model = htdemucs\n", "model: 'htdemucs' is not NAME=PATH"},
        {"model empty path", "model = a=\n", "is not NAME=PATH"},
        {"model twice", "model = a=/x\nmodel = a=/y\n", "test.conf:2: model: model 'a' is given twice"},
        {"model name with a comma", "model = a,b=/x\n", "no spaces or commas"},
        {"model name too long", "model = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=/x\n",
         "exceeds the limit of 64 (CDZ_PROTO_MAX_NAME)"},
        {"devices bad", "devices = gpu0\n", "'gpu0' is not a device"},
        {"devices all", "devices = all\n", "'auto' means every GPU"},
        {"devices duplicate", "devices = cuda:0,cuda:0\n", "listed twice"},
        {"devices empty item", "devices = cuda:0,,cpu\n", "empty or overlong device"},
        {"devices bad index", "devices = cuda:x\n", "device index is not a number"},
        {"devices index 5000", "devices = cuda:5000\n", "0..1023"},
        {"max-connections 0", "max-connections = 0\n", "max-connections: '0' is below the minimum of 1"},
        {"max-connections huge", "max-connections = 100000\n", "is above the maximum of 65536"},
        {"max-batch negative", "max-batch = -1\n", "'-1' is not a non-negative integer"},
        {"max-batch with unit", "max-batch = 8x\n", "'8x' is not a non-negative integer"},
        {"max-batch overflow", "max-batch = 99999999999999999999999\n", "is not a non-negative integer"},
        {"max-frame-bytes over the protocol limit", "max-frame-bytes = 1G\n", "is above the maximum of 64M"},
        {"max-frame-bytes too small", "max-frame-bytes = 1K\n", "is below the minimum of 64K"},
        {"max-frame-bytes not a multiple of 8", "max-frame-bytes = 65537\n", "not a multiple of 8"},
        {"max-frame-bytes bad unit", "max-frame-bytes = 16MB\n", "unknown size unit 'MB'"},
        {"duration without unit", "read-timeout = 30\n", "read-timeout: '30' needs a unit"},
        {"duration bad unit", "read-timeout = 30sec\n", "needs a unit"},
        {"duration too short", "read-timeout = 0\n", "is below the minimum of 1ms"},
        {"duration too long", "drain-timeout = 2h\n", "is above the maximum of 1h"},
        {"duration overflow", "idle-timeout = 18446744073709551615h\n", "out of range"},
        {"log level", "log-level = verbose\n", "'verbose' is not one of error, warn, info, debug"},
        {"log-json", "log-json = maybe\n", "'maybe' is not a boolean"},
        {"api key with a space", "api-key = \"a b\"\n", "byte 1 of the key is not printable ASCII"},
        {"api key too long",
         "api-key = kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n",
         "bytes exceeds the limit of 256 (CDZ_PROTO_MAX_API_KEY)"},
        {"arena-fraction 0", "arena-fraction = 0\n", "'0' is not a number in (0, 0.98]"},
        {"arena-fraction 1", "arena-fraction = 1\n", "not a number in (0, 0.98]"},
        {"arena-fraction nan", "arena-fraction = nan\n", "not a number"},
        {"arena-fraction text", "arena-fraction = 0.5x\n", "not a number"},
        {"precision", "precision = fp8\n", "'fp8' is not one of strict, tf32, fp16, bf16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_err(s, cases[i].what, from_text(cases[i].text), CDZ_STATUS_INVALID_ARGUMENT, cases[i].substr);
    /* limits of the text itself */
    char *big = malloc(CDZ_CONFIG_MAX_FILE + 2);
    memset(big, '#', CDZ_CONFIG_MAX_FILE + 1);
    cdz_server_config_default(&cfg);
    expect_err(s, "file over CDZ_CONFIG_MAX_FILE",
               cdz_server_config_apply_text(&cfg, big, CDZ_CONFIG_MAX_FILE + 1, "big.conf"), CDZ_STATUS_TOO_LARGE,
               "exceeds the limit of 1048576 (CDZ_CONFIG_MAX_FILE)");
    expect_err(s, "big file on disk", cdz_server_config_apply_file(&cfg, write_tmp("big.conf", big, CDZ_CONFIG_MAX_FILE + 1)),
               CDZ_STATUS_TOO_LARGE, "CDZ_CONFIG_MAX_FILE");
    memset(big, 'x', CDZ_CONFIG_MAX_LINE + 1);
    big[CDZ_CONFIG_MAX_LINE + 1] = '\n';
    expect_err(s, "line over CDZ_CONFIG_MAX_LINE", cdz_server_config_apply_text(&cfg, big, CDZ_CONFIG_MAX_LINE + 2, "l.conf"),
               CDZ_STATUS_INVALID_ARGUMENT, "l.conf:1: line of 4097 bytes exceeds the limit of 4096");
    free(big);
    expect_err(s, "NUL byte", cdz_server_config_apply_text(&cfg, "max-batch = 1\nb\0 = 2\n", 21, "n.conf"), CDZ_STATUS_INVALID_ARGUMENT,
               "n.conf:2: NUL byte");
    expect_err(s, "missing file", cdz_server_config_apply_file(&cfg, "/nonexistent/cadenza.conf"), CDZ_STATUS_IO,
               "/nonexistent/cadenza.conf");
    expect_err(s, "a directory", cdz_server_config_apply_file(&cfg, tmpdir), CDZ_STATUS_INVALID_ARGUMENT, "not a regular file");
    /* too many models: 33 lines */
    char many[4096];
    size_t n = 0;
    for (int i = 0; i < 33; i++) n += (size_t)snprintf(many + n, sizeof many - n, "model = m%d=/m%d\n", i, i);
    expect_err(s, "33 models", from_text(many), CDZ_STATUS_INVALID_ARGUMENT, "more than 32 models (CDZ_CONFIG_MAX_MODELS)");
    th_end(s);
}

static void test_flag_errors(th_suite *s) {
    if (!th_begin(s, "flag-errors", "unknown, missing values, positionals, repeats")) return;
    struct {
        const char *what;
        int argc;
        char *argv[4];
        const char *substr;
    } cases[] = {
        {"unknown flag", 2, {"--max-conections", "5"}, "unknown option '--max-conections' (did you mean '--max-connections'?)"},
        {"single dash", 1, {"-x"}, "unknown option '-x'"},
        {"positional", 1, {"serve"}, "unexpected argument 'serve'"},
        {"bare --", 1, {"--"}, "unknown option '--'"},
        {"missing value", 1, {"--listen"}, "--listen needs a value (ADDR)"},
        {"given twice", 4, {"--listen", "1.2.3.4:5", "--listen", "1.2.3.4:6"}, "--listen: given twice"},
        {"bad value", 2, {"--max-batch", "lots"}, "--max-batch: 'lots' is not a non-negative integer"},
        {"empty value", 1, {"--precision="}, "--precision: empty value"},
        {"boolean with a separate value", 2, {"--log-json", "false"}, "unexpected argument 'false'"},
        {"underscore spelling", 2, {"--max_batch", "2"}, "did you mean '--max-batch'?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cdz_server_config_default(&cfg);
        expect_err(s, cases[i].what, cdz_server_config_apply_flags(&cfg, cases[i].argc, cases[i].argv),
                   CDZ_STATUS_INVALID_ARGUMENT, cases[i].substr);
    }
    th_end(s);
}

static void test_finish(th_suite *s) {
    if (!th_begin(s, "finish", "api-key-file, cross-setting checks, warnings")) return;
    const char *key = write_tmp("key", "sekret-123\n", 11);
    chmod(key, 0600);
    char kf[256];
    snprintf(kf, sizeof kf, "CADENZA_API_KEY_FILE=%s", key);
    char *env[] = {kf, "CADENZA_MODELS=a=/a", NULL};
    th_ok(s, "load with a key file", cdz_server_config_load(&cfg, 0, NULL, env));
    th_check(s, "key read, newline stripped", !strcmp(cfg.api_key, "sekret-123") &&
                                                  cfg.source[CDZ_CONFIG_API_KEY] == CDZ_CONFIG_SOURCE_ENV, "%s", cfg.api_key);
    th_check(s, "no warnings", cfg.n_warnings == 0, "%s", cfg.warnings[0]);
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    cdz_server_config_print(&cfg, mem, false);
    fclose(mem);
    th_check(s, "print hides the key", !strstr(out, "sekret") && strstr(out, "# api-key = ***"), "%s", out);
    free(out);
    chmod(key, 0644);
    th_ok(s, "world-readable key file", cdz_server_config_load(&cfg, 0, NULL, env));
    th_check(s, "warned", cfg.n_warnings == 1 && strstr(cfg.warnings[0], "readable by other users"), NULL);
    char *both[] = {kf, "CADENZA_MODELS=a=/a", "CADENZA_API_KEY=x", NULL};
    expect_err(s, "api-key and api-key-file", cdz_server_config_load(&cfg, 0, NULL, both), CDZ_STATUS_INVALID_ARGUMENT,
               "api-key (env CADENZA_API_KEY) and api-key-file (env CADENZA_API_KEY_FILE) are both set");
    snprintf(kf, sizeof kf, "CADENZA_API_KEY_FILE=%s", write_tmp("empty-key", "\n", 1));
    expect_err(s, "empty key file", cdz_server_config_load(&cfg, 0, NULL, env), CDZ_STATUS_INVALID_ARGUMENT, "empty");
    snprintf(kf, sizeof kf, "CADENZA_API_KEY_FILE=%s", write_tmp("bad-key", "a b\n", 4));
    expect_err(s, "key file with a space", cdz_server_config_load(&cfg, 0, NULL, env), CDZ_STATUS_INVALID_ARGUMENT,
               "not printable ASCII");
    snprintf(kf, sizeof kf, "CADENZA_API_KEY_FILE=%s/nokey", tmpdir);
    expect_err(s, "missing key file", cdz_server_config_load(&cfg, 0, NULL, env), CDZ_STATUS_IO, "nokey");
    char *same[] = {"--model", "a=/a", "--listen", "127.0.0.1:7879"};
    expect_err(s, "listen == admin", cdz_server_config_load(&cfg, 4, same, (char *[]){NULL}), CDZ_STATUS_INVALID_ARGUMENT,
               "listen (flag --listen) and admin (default) are the same address 127.0.0.1:7879");
    char *batch[] = {"--model", "a=/a", "--max-batch", "100", "--queue-size", "50"};
    expect_err(s, "max-batch > queue-size", cdz_server_config_load(&cfg, 6, batch, (char *[]){NULL}),
               CDZ_STATUS_INVALID_ARGUMENT, "max-batch 100 (flag --max-batch) exceeds queue-size 50 (flag --queue-size)");
    char *open_port[] = {"--model", "a=/a", "--listen", "0.0.0.0:7000"};
    th_ok(s, "0.0.0.0 without a key", cdz_server_config_load(&cfg, 4, open_port, (char *[]){NULL}));
    th_check(s, "warned about the open port", cfg.n_warnings == 1 && strstr(cfg.warnings[0], "without an API key"), NULL);
    char *unknown_env[] = {"CADENZA_LISTN=1", NULL};
    expect_err(s, "unknown env through load", cdz_server_config_load(&cfg, 2, (char *[]){"--model", "a=/a"}, unknown_env),
               CDZ_STATUS_INVALID_ARGUMENT, "CADENZA_LISTN (did you mean 'CADENZA_LISTEN'?)");
    th_end(s);
}

static void test_print_roundtrip(th_suite *s) {
    if (!th_begin(s, "print", "printed configuration parses back to the same values; usage")) return;
    th_ok(s, "parse", from_text(full_file));
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    cdz_server_config_print(&cfg, mem, true);
    fclose(mem);
    cdz_server_config_default(&cfg2);
    if (th_ok(s, "printed text parses", cdz_server_config_apply_text(&cfg2, out, len, "printed"))) {
        int diff = 0;
        for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
            char a[40000], b[40000];
            cdz_server_config_value_str(&cfg, (cdz_config_key)k, a, sizeof a);
            cdz_server_config_value_str(&cfg2, (cdz_config_key)k, b, sizeof b);
            if (strcmp(a, b)) {
                diff++;
                th_check(s, cdz_config_key_name((cdz_config_key)k), false, "'%s' vs '%s'", a, b);
            }
        }
        th_check(s, "every value equal", diff == 0, NULL);
    }
    th_check(s, "quoted where needed", strstr(out, "model = \"ft=/models/my models/ft #1.safetensors\"") != NULL, "%s", out);
    free(out);
    out = NULL;
    mem = open_memstream(&out, &len);
    cdz_server_config_usage(mem);
    fclose(mem);
    int missing = 0;
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s ", cdz_config_key_name((cdz_config_key)k));
        if (!strstr(out, flag) || !strstr(out, cdz_config_key_env((cdz_config_key)k))) missing++;
    }
    th_check(s, "usage lists every flag and variable", missing == 0, "%d missing", missing);
    free(out);
    th_end(s);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_config", argc, argv)) return 2;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/cdz_config.XXXXXX", base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "test_config: cannot create a temporary directory\n");
        return 2;
    }
    test_defaults(&s);
    test_file(&s);
    test_env(&s);
    test_flags(&s);
    test_precedence(&s);
    test_file_errors(&s);
    test_flag_errors(&s);
    test_finish(&s);
    test_print_roundtrip(&s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "test_config: could not remove %s\n", tmpdir);
    return th_finish(&s);
}
