/*
 * families.h: one entry function per op family test file (tests/ops/test_<family>.c).
 * Each runs all cases of its family; th_begin filters by op name.
 */
#ifndef CDZ_TEST_OPS_FAMILIES_H
#define CDZ_TEST_OPS_FAMILIES_H

#include "../harness.h"

#define CDZ_OP_FAMILIES(X) \
    X(gemm)                \
    X(softmax)             \
    X(attention)           \
    X(rope)                \
    X(conv)                \
    X(norm)                \
    X(activation)          \
    X(elementwise)         \
    X(reduce)              \
    X(layout)              \
    X(stft)

/* Weak while families are being written (make OPS=... builds a subset); test_ops reports a
 * family that is not linked in as a failure in a full build. */
#define CDZ_DECLARE_FAMILY(name) __attribute__((weak)) void test_ops_##name(th_suite *s);
CDZ_OP_FAMILIES(CDZ_DECLARE_FAMILY)
#undef CDZ_DECLARE_FAMILY

#endif
