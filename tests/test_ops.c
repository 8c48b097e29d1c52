/*
 * test_ops: every op, CPU reference vs float64 (delicate ops) and CUDA vs CPU.
 *   build/tests/test_ops [--filter OP] [--seed N] [--verbose] [--cpu-only | --gpu]
 * Without a GPU the CUDA checks are counted as skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/families.h"

typedef struct family {
    const char *name;
    void (*run)(th_suite *s);
} family;

#define CDZ_FAMILY_ENTRY(name) {#name, test_ops_##name},
static const family families[] = {CDZ_OP_FAMILIES(CDZ_FAMILY_ENTRY)};
#undef CDZ_FAMILY_ENTRY

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_ops", argc, argv)) return 2;
    bool subset = getenv("CDZ_TEST_OPS_SUBSET") != NULL; /* set by `make OPS=...` builds */
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (families[i].run) {
            families[i].run(&s);
        } else if (!subset) {
            th_check(&s, families[i].name, false, "op family '%s' is not linked into test_ops",
                     families[i].name);
        }
    }
    return th_finish(&s);
}
