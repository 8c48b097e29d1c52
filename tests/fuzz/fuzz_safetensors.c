/*
 * fuzz_safetensors: libFuzzer target for the safetensors reader (runtime/weights.c).
 *
 * Each input is a whole file given to cdz_weights_open_buffer. When it opens, everything a
 * loader would touch is walked: every entry (name, dtype, shape, the bytes of its data
 * range), find by name, expect with the entry's own dtype/shape, every metadata value, and
 * the inspect listing (written to /dev/null). Built with ASan + UBSan by `make fuzz`; any
 * out-of-bounds read, leak, undefined behaviour or abort is a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cadenza.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull) devnull = fopen("/dev/null", "w");
    cdz_weights *w = NULL;
    if (cdz_weights_open_buffer(data, size, "fuzz", &w) != CDZ_STATUS_OK) {
        /* a failure must leave a message and no handle */
        if (w || cdz_last_message()[0] == '\0') __builtin_trap();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        if (!e || cdz_weights_find(w, e->name) != e) __builtin_trap();
        if (cdz_weights_expect(w, e->name, e->dtype, e->ndim, e->shape, NULL) != CDZ_STATUS_OK)
            __builtin_trap();
        /* touch the first and last byte of the range: ASan checks they are in bounds */
        if (e->nbytes) {
            const uint8_t *p = e->data;
            sink ^= p[0] ^ p[e->nbytes - 1];
        }
    }
    (void)cdz_weights_find(w, "");
    (void)cdz_weights_find(w, "missing.tensor");
    (void)cdz_weights_expect(w, "missing.tensor", CDZ_DTYPE_F32, 0, NULL, NULL);
    /* every metadata value through the public getter */
    json_t *meta = json_loads(cdz_weights_metadata_json(w), 0, NULL);
    if (!meta) __builtin_trap(); /* our own compact text must parse */
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        const char *got = cdz_weights_metadata_get(w, key);
        if (!got || strcmp(got, json_string_value(value)) != 0) __builtin_trap();
    }
    json_decref(meta);
    if (devnull) cdz_weights_print(w, devnull);
    cdz_weights_close(w);
    (void)sink;
    return 0;
}
