/*
 * fuzz_config: libFuzzer target for the config-file parser (server/config.c).
 *
 * Each input is a config file's text. When it parses, the effective configuration is printed
 * (with secrets) as config-file text, which must parse again into the same value for every
 * setting; the cross-setting checks run too (without the api-key file: the fuzzer must not
 * make us read arbitrary paths). A refusal must leave a message. Any crash, leak, UB or
 * broken invariant is a finding.
 *
 * server/config.c is not in FUZZ_SRC (the Makefile's runtime list), so it is compiled here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cdz_server_config a, b;
static char va[40000], vb[40000];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (cdz_server_config_default(&a) != CDZ_STATUS_OK) __builtin_trap();
    if (cdz_server_config_apply_text(&a, (const char *)data, size, "fuzz.conf") != CDZ_STATUS_OK) {
        if (cdz_last_message()[0] == '\0') __builtin_trap();
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) return 0;
    cdz_server_config_print(&a, mem, true);
    fclose(mem);
    if (cdz_server_config_default(&b) != CDZ_STATUS_OK) __builtin_trap();
    if (cdz_server_config_apply_text(&b, text, len, "printed") != CDZ_STATUS_OK) {
        fprintf(stderr, "printed configuration does not parse: %s\n---\n%s---\n", cdz_last_message(), text);
        __builtin_trap();
    }
    for (int k = 0; k < CDZ_CONFIG_KEY_COUNT_; k++) {
        cdz_server_config_value_str(&a, (cdz_config_key)k, va, sizeof va);
        cdz_server_config_value_str(&b, (cdz_config_key)k, vb, sizeof vb);
        if (strcmp(va, vb) != 0) {
            fprintf(stderr, "%s: '%s' became '%s'\n", cdz_config_key_name((cdz_config_key)k), va, vb);
            __builtin_trap();
        }
    }
    free(text);
    a.api_key_file[0] = '\0';
    if (cdz_server_config_finish(&a) != CDZ_STATUS_OK && cdz_last_message()[0] == '\0') __builtin_trap();
    return 0;
}
