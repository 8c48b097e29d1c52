/*
 * arena.c: the per-device memory arena.
 *
 * One reservation per device at start (cudaMalloc once, or aligned host memory for a CPU
 * device). Long-lived blocks (weights, workspaces, activation regions) are carved from it
 * best-fit over an offset-sorted block list with coalescing on free; this runs at load time
 * and is guarded by a mutex. Activations use a cdz_region: one block taken once, then bump
 * allocation with mark/release: O(1), no lock, owned by one worker.
 *
 * Every block size is a multiple of CDZ_ARENA_ALIGN, so block starts stay aligned; larger
 * alignments split off a padding block. Exhaustion is OUT_OF_MEMORY with the numbers that
 * explain it. Nothing here ever calls cudaMalloc after cdz_arena_create.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ctx.h"

typedef struct arena_block {
    size_t offset;
    size_t size;
    bool used;
    char what[40]; /* who asked: shows up in OOM messages and debugging */
} arena_block;

struct cdz_arena {
    cdz_device device;
    uint8_t *base;
    size_t reserved;
    pthread_mutex_t lock;
    arena_block *blocks; /* sorted by offset, tiling [0, reserved) */
    size_t count, cap;
    size_t used, peak;
    uint64_t allocs, frees, failures;
    uint64_t fail_after; /* test hook: fail the n-th following allocation */
};

static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static void fmt_bytes(char *buf, size_t cap, size_t b) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1u << 20)) snprintf(buf, cap, "%.2f MiB", (double)b / (1u << 20));
    else if (b >= (1u << 10)) snprintf(buf, cap, "%.1f KiB", (double)b / (1u << 10));
    else snprintf(buf, cap, "%zu B", b);
}

cdz_status cdz_arena_create(cdz_device dev, size_t bytes, cdz_arena **out) {
    *out = NULL;
    char devname[32];
    cdz_device_str(dev, devname, sizeof devname);
    if (bytes == 0) {
        if (dev.kind == CDZ_DEVICE_CPU) {
            bytes = 256u << 20;
        } else {
            double fraction = 0.80;
            const char *env = getenv("CADENZA_ARENA_FRACTION");
            if (env) {
                char *end = NULL;
                fraction = strtod(env, &end);
                if (!end || *end || !(fraction > 0.0 && fraction <= 0.98))
                    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                         "CADENZA_ARENA_FRACTION='%s': expected a number in (0, 0.98]", env);
            }
            cdz_device_info info;
            CDZ_TRY(cdz_device_get_info(dev, &info));
            bytes = (size_t)((double)info.free_bytes * fraction);
        }
    }
    bytes = align_up(bytes, CDZ_ARENA_ALIGN);
    cdz_arena *a = calloc(1, sizeof *a);
    if (!a) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "arena %s: out of host memory", devname);
    a->device = dev;
    a->reserved = bytes;
    a->cap = 64;
    a->blocks = calloc(a->cap, sizeof *a->blocks);
    if (!a->blocks) {
        free(a);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "arena %s: out of host memory", devname);
    }
    if (dev.kind == CDZ_DEVICE_CPU) {
        if (posix_memalign((void **)&a->base, 4096, bytes) != 0) a->base = NULL;
    } else {
#ifdef CDZ_HAVE_CUDA
        cudaError_t e = cudaSetDevice(dev.index);
        if (e == cudaSuccess) e = cudaMalloc((void **)&a->base, bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            a->base = NULL;
        }
#endif
    }
    if (!a->base) {
        char sz[32];
        fmt_bytes(sz, sizeof sz, bytes);
        free(a->blocks);
        free(a);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "arena %s: cannot reserve %s%s", devname, sz,
                             dev.kind == CDZ_DEVICE_CUDA && !cdz_built_with_cuda() ? " (no CUDA in this build)" : "");
    }
    pthread_mutex_init(&a->lock, NULL);
    a->count = 1;
    a->blocks[0] = (arena_block){.offset = 0, .size = bytes, .used = false};
    *out = a;
    return CDZ_STATUS_OK;
}

void cdz_arena_destroy(cdz_arena *a) {
    if (!a) return;
    if (a->device.kind == CDZ_DEVICE_CPU) {
        free(a->base);
    } else {
#ifdef CDZ_HAVE_CUDA
        cudaSetDevice(a->device.index);
        cudaFree(a->base);
#endif
    }
    pthread_mutex_destroy(&a->lock);
    free(a->blocks);
    free(a);
}

cdz_device cdz_arena_device(const cdz_arena *a) { return a->device; }

void cdz_arena_fail_after(cdz_arena *a, uint64_t n) {
    pthread_mutex_lock(&a->lock);
    a->fail_after = n;
    pthread_mutex_unlock(&a->lock);
}

/* Insert a block at index i (blocks after it shift up). */
static bool insert_block(cdz_arena *a, size_t i, arena_block b) {
    if (a->count == a->cap) {
        size_t cap = a->cap * 2;
        arena_block *nb = realloc(a->blocks, cap * sizeof *nb);
        if (!nb) return false;
        a->blocks = nb;
        a->cap = cap;
    }
    memmove(&a->blocks[i + 1], &a->blocks[i], (a->count - i) * sizeof *a->blocks);
    a->blocks[i] = b;
    a->count++;
    return true;
}

/* Bytes to skip at `offset` so the absolute address is aligned (the base itself is only
 * guaranteed 256-byte aligned by cudaMalloc / 4096 by posix_memalign). */
static size_t pad_for(const cdz_arena *a, size_t offset, size_t align) {
    uintptr_t addr = (uintptr_t)a->base + offset;
    return (size_t)(align_up(addr, align) - addr);
}

static void remove_block(cdz_arena *a, size_t i) {
    memmove(&a->blocks[i], &a->blocks[i + 1], (a->count - i - 1) * sizeof *a->blocks);
    a->count--;
}

static void stats_locked(const cdz_arena *a, cdz_arena_stats *s) {
    memset(s, 0, sizeof *s);
    s->reserved = a->reserved;
    s->used = a->used;
    s->peak = a->peak;
    s->free_bytes = a->reserved - a->used;
    for (size_t i = 0; i < a->count; i++) {
        if (a->blocks[i].used) s->live_blocks++;
        else if (a->blocks[i].size > s->largest_free) s->largest_free = a->blocks[i].size;
    }
    s->fragmentation = s->free_bytes ? 1.0 - (double)s->largest_free / (double)s->free_bytes : 0.0;
    s->allocs = a->allocs;
    s->frees = a->frees;
    s->failures = a->failures;
}

static cdz_status oom_locked(cdz_arena *a, size_t bytes, const char *what, const char *why) {
    cdz_arena_stats s;
    a->failures++;
    stats_locked(a, &s);
    char req[32], fr[32], lg[32], rs[32], dev[32];
    fmt_bytes(req, sizeof req, bytes);
    fmt_bytes(fr, sizeof fr, s.free_bytes);
    fmt_bytes(lg, sizeof lg, s.largest_free);
    fmt_bytes(rs, sizeof rs, s.reserved);
    return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY,
                         "arena %s: cannot allocate %s for %s%s: %s free of %s reserved, largest free block %s",
                         cdz_device_str(a->device, dev, sizeof dev), req, what ? what : "(unnamed)", why, fr,
                         rs, lg);
}

cdz_status cdz_arena_alloc(cdz_arena *a, size_t bytes, size_t align, const char *what, void **out) {
    *out = NULL;
    if (align == 0) align = CDZ_ARENA_ALIGN;
    if (align & (align - 1))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "arena: alignment %zu is not a power of two", align);
    if (align < CDZ_ARENA_ALIGN) align = CDZ_ARENA_ALIGN;
    if (bytes > a->reserved)
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "arena: %zu bytes for %s exceed the whole reservation (%zu)",
                             bytes, what ? what : "(unnamed)", a->reserved);
    size_t need = align_up(bytes ? bytes : 1, CDZ_ARENA_ALIGN);
    pthread_mutex_lock(&a->lock);
    if (a->fail_after && --a->fail_after == 0) {
        cdz_status st = oom_locked(a, bytes, what, " (injected failure)");
        pthread_mutex_unlock(&a->lock);
        return st;
    }
    /* best fit: the smallest free block that holds the aligned request */
    size_t best = SIZE_MAX, best_waste = SIZE_MAX;
    for (size_t i = 0; i < a->count; i++) {
        arena_block *b = &a->blocks[i];
        if (b->used) continue;
        size_t pad = pad_for(a, b->offset, align);
        if (pad + need > b->size) continue;
        size_t waste = b->size - need;
        if (waste < best_waste) {
            best = i;
            best_waste = waste;
        }
    }
    if (best == SIZE_MAX) {
        cdz_status st = oom_locked(a, bytes, what, "");
        pthread_mutex_unlock(&a->lock);
        return st;
    }
    /* room for up to two extra blocks (padding before, remainder after) */
    if (a->count + 2 > a->cap) {
        size_t cap = a->cap * 2;
        arena_block *nb = realloc(a->blocks, cap * sizeof *nb);
        if (!nb) {
            pthread_mutex_unlock(&a->lock);
            return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "arena: out of host memory for block list");
        }
        a->blocks = nb;
        a->cap = cap;
    }
    arena_block *b = &a->blocks[best];
    size_t pad = pad_for(a, b->offset, align);
    if (pad) {
        arena_block padb = {.offset = b->offset, .size = pad, .used = false};
        b->offset += pad;
        b->size -= pad;
        insert_block(a, best, padb);
        best++;
        b = &a->blocks[best];
    }
    if (b->size > need) {
        arena_block rest = {.offset = b->offset + need, .size = b->size - need, .used = false};
        b->size = need;
        insert_block(a, best + 1, rest);
        b = &a->blocks[best];
    }
    b->used = true;
    snprintf(b->what, sizeof b->what, "%s", what ? what : "");
    a->used += b->size;
    if (a->used > a->peak) a->peak = a->used;
    a->allocs++;
    *out = a->base + b->offset;
    pthread_mutex_unlock(&a->lock);
    return CDZ_STATUS_OK;
}

cdz_status cdz_arena_free(cdz_arena *a, void *ptr) {
    if (!ptr) return CDZ_STATUS_OK;
    uint8_t *p = ptr;
    if (p < a->base || p >= a->base + a->reserved)
        return cdz_error_set(CDZ_STATUS_INTERNAL, "arena: free of a pointer outside the arena");
    size_t off = (size_t)(p - a->base);
    pthread_mutex_lock(&a->lock);
    size_t lo = 0, hi = a->count;
    while (lo < hi) { /* first block with offset >= off */
        size_t mid = (lo + hi) / 2;
        if (a->blocks[mid].offset < off) lo = mid + 1;
        else hi = mid;
    }
    if (lo == a->count || a->blocks[lo].offset != off || !a->blocks[lo].used) {
        pthread_mutex_unlock(&a->lock);
        return cdz_error_set(CDZ_STATUS_INTERNAL, "arena: free of a pointer that is not a live block (offset %zu)", off);
    }
    size_t i = lo;
    a->blocks[i].used = false;
    a->blocks[i].what[0] = '\0';
    a->used -= a->blocks[i].size;
    a->frees++;
    if (i + 1 < a->count && !a->blocks[i + 1].used) { /* merge with the next */
        a->blocks[i].size += a->blocks[i + 1].size;
        remove_block(a, i + 1);
    }
    if (i > 0 && !a->blocks[i - 1].used) { /* merge into the previous */
        a->blocks[i - 1].size += a->blocks[i].size;
        remove_block(a, i);
    }
    pthread_mutex_unlock(&a->lock);
    return CDZ_STATUS_OK;
}

void cdz_arena_get_stats(const cdz_arena *a, cdz_arena_stats *out) {
    pthread_mutex_lock((pthread_mutex_t *)&a->lock);
    stats_locked(a, out);
    pthread_mutex_unlock((pthread_mutex_t *)&a->lock);
}

/* ---------------------------------------------------------------- regions */

cdz_status cdz_arena_region_init(cdz_arena *a, size_t bytes, const char *what, cdz_region *out) {
    memset(out, 0, sizeof *out);
    void *p = NULL;
    CDZ_TRY(cdz_arena_alloc(a, bytes, CDZ_ARENA_ALIGN, what, &p));
    out->arena = a;
    out->base = p;
    out->capacity = align_up(bytes ? bytes : 1, CDZ_ARENA_ALIGN);
    return CDZ_STATUS_OK;
}

void cdz_arena_region_free(cdz_region *r) {
    if (r->arena && r->base) cdz_arena_free(r->arena, r->base);
    memset(r, 0, sizeof *r);
}

cdz_status cdz_region_alloc(cdz_region *r, size_t bytes, size_t align, void **out) {
    *out = NULL;
    if (align == 0) align = CDZ_ARENA_ALIGN;
    if (align & (align - 1))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "region: alignment %zu is not a power of two", align);
    size_t start = (size_t)(align_up((uintptr_t)r->base + r->top, align) - (uintptr_t)r->base);
    if (start > r->capacity || bytes > r->capacity - start) {
        char req[32], cap[32], fr[32];
        fmt_bytes(req, sizeof req, bytes);
        fmt_bytes(cap, sizeof cap, r->capacity);
        fmt_bytes(fr, sizeof fr, start <= r->capacity ? r->capacity - start : 0);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY,
                             "activation region: cannot allocate %s: %s free of %s", req, fr, cap);
    }
    *out = r->base + start;
    r->top = start + bytes;
    if (r->top > r->peak) r->peak = r->top;
    return CDZ_STATUS_OK;
}

size_t cdz_region_mark(const cdz_region *r) { return r->top; }

void cdz_region_release(cdz_region *r, size_t mark) {
    if (mark <= r->top) r->top = mark;
}
