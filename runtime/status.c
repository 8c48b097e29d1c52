/*
 * status.c: status codes and the per-thread error record.
 *
 * A failing call writes code + message + retryable flag into a thread-local record and
 * returns the code; callers add context with cdz_error_prefix as the error travels up.
 * Thread-local so concurrent workers never see each other's messages.
 */
#include <stdio.h>
#include <string.h>

#include "cadenza.h"

static _Thread_local cdz_error tl_error;

static const char *const status_names[CDZ_STATUS_COUNT_] = {
    [CDZ_STATUS_OK] = "OK",
    [CDZ_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [CDZ_STATUS_UNKNOWN_MODEL] = "UNKNOWN_MODEL",
    [CDZ_STATUS_TOO_LARGE] = "TOO_LARGE",
    [CDZ_STATUS_BUSY] = "BUSY",
    [CDZ_STATUS_OUT_OF_MEMORY] = "OUT_OF_MEMORY",
    [CDZ_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [CDZ_STATUS_CANCELLED] = "CANCELLED",
    [CDZ_STATUS_SHUTTING_DOWN] = "SHUTTING_DOWN",
    [CDZ_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
    [CDZ_STATUS_UNSUPPORTED] = "UNSUPPORTED",
    [CDZ_STATUS_IO] = "IO",
    [CDZ_STATUS_DEVICE] = "DEVICE",
    [CDZ_STATUS_INTERNAL] = "INTERNAL",
};

const char *cdz_status_name(cdz_status code) {
    if ((unsigned)code >= CDZ_STATUS_COUNT_) return "UNKNOWN_STATUS";
    return status_names[code];
}

bool cdz_status_retryable(cdz_status code) {
    switch (code) {
    case CDZ_STATUS_BUSY:
    case CDZ_STATUS_OUT_OF_MEMORY:     /* the arena may have room once other work finishes */
    case CDZ_STATUS_DEADLINE_EXCEEDED: /* with a longer deadline or a quieter server */
    case CDZ_STATUS_SHUTTING_DOWN:     /* on another instance */
    case CDZ_STATUS_DEVICE:            /* on another device */
        return true;
    default:
        return false;
    }
}

cdz_status cdz_error_setv(cdz_status code, const char *fmt, va_list ap) {
    tl_error.code = code;
    tl_error.retryable = cdz_status_retryable(code);
    if (fmt) {
        vsnprintf(tl_error.message, sizeof tl_error.message, fmt, ap);
    } else {
        snprintf(tl_error.message, sizeof tl_error.message, "%s", cdz_status_name(code));
    }
    return code;
}

cdz_status cdz_error_set(cdz_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cdz_error_setv(code, fmt, ap);
    va_end(ap);
    return code;
}

cdz_status cdz_error_prefix(const char *fmt, ...) {
    char prefix[CDZ_ERROR_MESSAGE_MAX];
    char old[CDZ_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_error.message, sizeof old);
    /* prefix + ": " + old, truncated to the record's size */
    size_t cap = sizeof tl_error.message, n = 0;
    for (const char *parts[3] = {prefix, ": ", old}, **p = parts; p < parts + 3; p++) {
        size_t len = strlen(*p);
        if (len > cap - 1 - n) len = cap - 1 - n;
        memcpy(tl_error.message + n, *p, len);
        n += len;
    }
    tl_error.message[n] = '\0';
    return tl_error.code;
}

void cdz_error_set_retryable(bool retryable) { tl_error.retryable = retryable; }
const cdz_error *cdz_last_error(void) { return &tl_error; }
const char *cdz_last_message(void) { return tl_error.message; }

void cdz_error_clear(void) {
    tl_error.code = CDZ_STATUS_OK;
    tl_error.retryable = false;
    tl_error.message[0] = '\0';
}
