/*
 * log.c: leveled logging to stderr, plain or JSON lines (one object per line), with the
 * calling thread's request id when one is set. One fprintf per line so lines from
 * different threads never interleave mid-line.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cadenza.h"

static cdz_log_level g_level = CDZ_LOG_LEVEL_INFO;
static bool g_json = false;
static _Thread_local uint64_t tl_request_id;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void cdz_log_set_level(cdz_log_level level) { g_level = level; }
cdz_log_level cdz_log_get_level(void) { return g_level; }
void cdz_log_set_json(bool json) { g_json = json; }
void cdz_log_set_request_id(uint64_t id) { tl_request_id = id; }

cdz_status cdz_log_parse_level(const char *text, cdz_log_level *out) {
    for (int i = 0; i <= CDZ_LOG_LEVEL_DEBUG; i++) {
        if (text && strcasecmp(text, level_names[i]) == 0) {
            *out = (cdz_log_level)i;
            return CDZ_STATUS_OK;
        }
    }
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                         "log level '%s' is not one of error, warn, info, debug",
                         text ? text : "(null)");
}

/* Escape for a JSON string value: quotes, backslashes and control characters. */
static size_t json_escape(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", *p);
        } else {
            dst[n++] = (char)*p;
        }
    }
    dst[n] = '\0';
    return n;
}

void cdz_log(cdz_log_level level, const char *component, const char *fmt, ...) {
    if (level > g_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
    const char *lv = level_names[level];
    char rid[40] = "";
    if (g_json) {
        char esc[4096];
        json_escape(esc, sizeof esc, msg);
        if (tl_request_id) snprintf(rid, sizeof rid, ",\"request_id\":%llu", (unsigned long long)tl_request_id);
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\"%s,\"msg\":\"%s\"}\n",
                when, lv, component ? component : "cadenza", rid, esc);
    } else {
        if (tl_request_id) snprintf(rid, sizeof rid, " req=%llu", (unsigned long long)tl_request_id);
        fprintf(stderr, "%s %-5s [%s]%s %s\n", when, lv, component ? component : "cadenza", rid, msg);
    }
}
