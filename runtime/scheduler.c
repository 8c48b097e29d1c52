/*
 * scheduler.c: device pool, per-model queues, dynamic batching workers (scheduler.h).
 *
 * One mutex (s->mu) guards every queue, the stream table and the counters; it is never held
 * while a backend computes nor while done() runs. Threads:
 *  - workers (workers_per_device per device): take a batch of one model, run it, finish it;
 *  - a reaper: fails queued jobs that were cancelled, whose deadline passed, or that a drain
 *    timed out, so that done() never runs on the thread that called cancel/drain and a queued
 *    job does not wait for a free worker to learn that it expired.
 * NCCL broadcast of weights between devices is not done: each device loads from the file.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "scheduler.h"

#define STREAM_BUCKETS 256
#define MAX_WORKERS (CDZ_SCHED_MAX_DEVICES * 64)

enum { NODE_QUEUED = 0, NODE_RUNNING = 1 };

typedef struct stream_ent {
    uint64_t id;
    int32_t worker;       /* global worker index */
    int32_t outstanding;  /* queued + running jobs of the stream */
    int32_t priority;     /* every job of a stream queues at its first job's priority: in order */
    int64_t idle_since;
    struct stream_ent *next;
} stream_ent;

typedef struct jnode {
    cdz_job *job;
    struct jnode *prev, *next;
    int32_t model;
    int32_t state;
    int32_t priority;
    int32_t worker;       /* affinity (stream jobs), -1: any */
    int64_t items;
    uint64_t seq;
    bool shutdown;        /* cancelled by a drain timeout: report SHUTTING_DOWN */
    stream_ent *stream;
} jnode;

typedef struct jlist { jnode *head, *tail; } jlist;

typedef struct sched_model {
    cdz_sched_model_config cfg;
    char path[4096];
    const cdz_backend *be;
    void *model[CDZ_SCHED_MAX_DEVICES];
    jlist queue;          /* by priority, then arrival */
    int32_t queued, running;
} sched_model;

typedef struct sched_device {
    cdz_device dev;
    cdz_arena *arena;
    bool healthy;
} sched_device;

typedef struct sched_worker {
    struct cdz_sched *s;
    int32_t index, device;
    cdz_ctx *ctx;
    void *plan[CDZ_SCHED_MAX_MODELS];
    pthread_t thread;
    bool started;
    int32_t rr;           /* round robin over models */
    cdz_job **batch;      /* up to max(max_batch) jobs */
    int32_t batch_cap;
} sched_worker;

struct cdz_sched {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, reaper_cv, drain_cv;
    int32_t n_models, n_devices, n_workers;
    sched_model models[CDZ_SCHED_MAX_MODELS];
    sched_device devices[CDZ_SCHED_MAX_DEVICES];
    sched_worker *workers;
    stream_ent *streams[STREAM_BUCKETS];
    jlist running;
    uint64_t seq;
    int64_t outstanding;  /* queued + running over all models */
    int32_t stream_rr;
    bool draining, drain_expired, stop, drained, reaper_started, reaper_stop;
    pthread_t reaper;
};

int64_t cdz_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void abs_timespec(int64_t mono_ns, struct timespec *ts) {
    ts->tv_sec = (time_t)(mono_ns / 1000000000LL);
    ts->tv_nsec = (long)(mono_ns % 1000000000LL);
}

/* ------------------------------------------------------------------ jobs */
void cdz_job_init(cdz_job *job, uint64_t id, const char *model, cdz_job_done_fn done, void *user) {
    if (!job) return;
    memset(job, 0, sizeof *job);
    atomic_init(&job->cancelled, false);
    job->id = id;
    if (model) snprintf(job->model, sizeof job->model, "%s", model);
    job->done = done;
    job->user = user;
    job->device_index = -1;
}

void cdz_job_free(cdz_job *job) {
    if (!job) return;
    for (int32_t i = 0; i < job->n_results && i < CDZ_JOB_MAX_TENSORS; i++) {
        free(job->results[i].data);
        memset(&job->results[i], 0, sizeof job->results[i]);
        job->result_names[i][0] = '\0';
    }
    job->n_results = 0;
}

cdz_status cdz_job_add_result(cdz_job *job, const char *name, cdz_dtype dtype, int32_t ndim,
                              const int64_t *shape, cdz_tensor **out) {
    if (!job || !name || !out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "job result: NULL argument");
    if (job->n_results >= CDZ_JOB_MAX_TENSORS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "job result '%s': more than %d results", name,
                             CDZ_JOB_MAX_TENSORS);
    if (strlen(name) >= CDZ_JOB_MAX_NAME)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "job result '%s': name longer than %d bytes", name,
                             CDZ_JOB_MAX_NAME - 1);
    cdz_tensor t;
    cdz_device cpu = {CDZ_DEVICE_CPU, 0};
    cdz_status st = cdz_tensor_init(&t, NULL, dtype, cpu, ndim, shape);
    if (st) return cdz_error_prefix("job result '%s': ", name);
    size_t bytes = cdz_tensor_nbytes(&t);
    t.data = malloc(bytes ? bytes : 1);
    if (!t.data)
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "job result '%s': no host memory for %zu bytes", name, bytes);
    int32_t k = job->n_results++;
    job->results[k] = t;
    snprintf(job->result_names[k], CDZ_JOB_MAX_NAME, "%s", name);
    *out = &job->results[k];
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------ backends */
extern const cdz_backend cdz_backend_testnet;
extern const cdz_backend cdz_backend_htdemucs;

const cdz_backend *cdz_backend_find(const char *kind) {
    if (!kind) return NULL;
    if (strcmp(kind, "testnet") == 0) return &cdz_backend_testnet;
    if (strcmp(kind, "htdemucs") == 0) return &cdz_backend_htdemucs;
    return NULL;
}

/* ------------------------------------------------------------------ lists (under s->mu) */
static void list_remove(jlist *l, jnode *n) {
    if (n->prev) n->prev->next = n->next; else l->head = n->next;
    if (n->next) n->next->prev = n->prev; else l->tail = n->prev;
    n->prev = n->next = NULL;
}

static void list_push_back(jlist *l, jnode *n) {
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail) l->tail->next = n; else l->head = n;
    l->tail = n;
}

/* Ordered by priority then seq: walk back from the tail (equal priorities: O(1)). */
static void queue_insert(jlist *l, jnode *n) {
    jnode *p = l->tail;
    while (p && p->priority > n->priority) p = p->prev;
    if (!p) {
        n->prev = NULL;
        n->next = l->head;
        if (l->head) l->head->prev = n; else l->tail = n;
        l->head = n;
        return;
    }
    n->prev = p;
    n->next = p->next;
    if (p->next) p->next->prev = n; else l->tail = n;
    p->next = n;
}

static stream_ent *stream_find(cdz_sched *s, uint64_t id) {
    for (stream_ent *e = s->streams[id % STREAM_BUCKETS]; e; e = e->next)
        if (e->id == id) return e;
    return NULL;
}

/* A stream keeps its worker while idle for up to STREAM_IDLE_NS (the reaper then forgets it),
 * so that a stream whose jobs come one at a time still runs on one worker. */
#define STREAM_IDLE_NS 10000000000LL

static void stream_release(cdz_sched *s, stream_ent *e) {
    (void)s;
    if (e && --e->outstanding == 0) e->idle_since = cdz_now_ns();
}

static void stream_evict_idle(cdz_sched *s, int64_t now) {
    for (int32_t b = 0; b < STREAM_BUCKETS; b++) {
        for (stream_ent **pp = &s->streams[b]; *pp;) {
            stream_ent *e = *pp;
            if (e->outstanding == 0 && now - e->idle_since > STREAM_IDLE_NS) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

static bool worker_alive(cdz_sched *s, int32_t w) {
    return w >= 0 && w < s->n_workers && s->devices[s->workers[w].device].healthy;
}

static int32_t pick_worker(cdz_sched *s) {
    for (int32_t k = 0; k < s->n_workers; k++) {
        int32_t w = (s->stream_rr + k) % s->n_workers;
        if (worker_alive(s, w)) {
            s->stream_rr = w + 1;
            return w;
        }
    }
    return -1;
}

static bool any_healthy(cdz_sched *s) {
    for (int32_t d = 0; d < s->n_devices; d++)
        if (s->devices[d].healthy) return true;
    return false;
}

/* ------------------------------------------------------------------ finishing */
static void set_job_error(cdz_job *job, cdz_status st, const char *msg) {
    job->status = st;
    job->error.code = st;
    job->error.retryable = cdz_status_retryable(st);
    snprintf(job->error.message, sizeof job->error.message, "%s", msg ? msg : cdz_status_name(st));
}

/* Account for finished jobs (lock taken here), then call done() without the lock. Statuses
 * are already in the jobs. */
static void finish_jobs(cdz_sched *s, cdz_job **jobs, int32_t n) {
    int64_t now = cdz_now_ns();
    pthread_mutex_lock(&s->mu);
    for (int32_t i = 0; i < n; i++) {
        cdz_job *job = jobs[i];
        jnode *node = job->priv;
        sched_model *m = &s->models[node->model];
        if (node->state == NODE_RUNNING) {
            m->running--;
            list_remove(&s->running, node);
        } else {
            m->queued--; /* already unlinked by the caller */
        }
        if (node->shutdown && job->status == CDZ_STATUS_CANCELLED)
            set_job_error(job, CDZ_STATUS_SHUTTING_DOWN, "shutting down: the drain timeout passed while the job ran");
        if (job->status != CDZ_STATUS_OK) cdz_job_free(job);
        if (!job->t_start_ns) job->t_start_ns = now;
        job->t_end_ns = now;
        stream_release(s, node->stream);
        job->priv = NULL;
        free(node);
        s->outstanding--;
    }
    if (s->outstanding == 0) pthread_cond_broadcast(&s->drain_cv);
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < n; i++)
        if (jobs[i]->done) jobs[i]->done(jobs[i], jobs[i]->user);
}

/* Unlink queued jobs matching `pick` (under the lock) into out[]; returns how many. */
typedef cdz_status (*pick_fn)(cdz_sched *s, jnode *n, int64_t now, void *arg, const char **msg);

static int32_t collect_queued(cdz_sched *s, pick_fn pick, void *arg, cdz_job **out, int32_t cap,
                              int64_t *next_deadline) {
    int64_t now = cdz_now_ns();
    int32_t k = 0;
    for (int32_t mi = 0; mi < s->n_models && k < cap; mi++) {
        jlist *q = &s->models[mi].queue;
        for (jnode *n = q->head, *nx; n && k < cap; n = nx) {
            nx = n->next;
            const char *msg = NULL;
            cdz_status st = pick(s, n, now, arg, &msg);
            if (st != CDZ_STATUS_OK) {
                list_remove(q, n);
                set_job_error(n->job, st, msg);
                out[k++] = n->job;
            } else if (next_deadline && n->job->deadline_ns && n->job->deadline_ns < *next_deadline) {
                *next_deadline = n->job->deadline_ns;
            }
        }
    }
    return k;
}

static cdz_status pick_reap(cdz_sched *s, jnode *n, int64_t now, void *arg, const char **msg) {
    (void)arg;
    if (atomic_load(&n->job->cancelled)) { *msg = "cancelled while queued"; return CDZ_STATUS_CANCELLED; }
    if (n->job->deadline_ns && now >= n->job->deadline_ns) {
        *msg = "deadline exceeded while queued";
        return CDZ_STATUS_DEADLINE_EXCEEDED;
    }
    if (s->drain_expired) { *msg = "shutting down: the drain timeout passed before the job ran"; return CDZ_STATUS_SHUTTING_DOWN; }
    return CDZ_STATUS_OK;
}

static cdz_status pick_dead(cdz_sched *s, jnode *n, int64_t now, void *arg, const char **msg) {
    (void)now; (void)arg;
    if ((n->worker >= 0 && !worker_alive(s, n->worker)) || !any_healthy(s)) {
        *msg = "device failed: the job's device was taken out of the pool";
        return CDZ_STATUS_DEVICE;
    }
    return CDZ_STATUS_OK;
}

#define REAP_CHUNK 256

static void *reaper_main(void *arg) {
    cdz_sched *s = arg;
    cdz_job *buf[REAP_CHUNK];
    int64_t last_evict = cdz_now_ns();
    pthread_mutex_lock(&s->mu);
    while (!s->reaper_stop) {
        int64_t next = cdz_now_ns() + 100000000LL; /* 100 ms at most between sweeps */
        int32_t k = collect_queued(s, pick_reap, NULL, buf, REAP_CHUNK, &next);
        int64_t now = cdz_now_ns();
        if (now - last_evict > 1000000000LL) {
            stream_evict_idle(s, now);
            last_evict = now;
        }
        if (k > 0) {
            pthread_mutex_unlock(&s->mu);
            finish_jobs(s, buf, k);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        struct timespec ts;
        abs_timespec(next, &ts);
        pthread_cond_timedwait(&s->reaper_cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------------ workers */
static bool eligible(const jnode *n, int32_t w) { return n->worker < 0 || n->worker == w; }

static void device_failed(cdz_sched *s, sched_worker *w, const cdz_error *err) {
    cdz_job *buf[REAP_CHUNK];
    char dn[32];
    pthread_mutex_lock(&s->mu);
    s->devices[w->device].healthy = false;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    cdz_log(CDZ_LOG_LEVEL_ERROR, "sched", "device %s taken out of the pool: %s",
            cdz_device_str(s->devices[w->device].dev, dn, sizeof dn), err->message);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int32_t k = collect_queued(s, pick_dead, NULL, buf, REAP_CHUNK, NULL);
        pthread_mutex_unlock(&s->mu);
        if (!k) break;
        finish_jobs(s, buf, k);
    }
}

static void run_batch(cdz_sched *s, sched_worker *w, sched_model *m, int32_t mi, cdz_job **jobs,
                      int32_t n, int64_t items) {
    /* Deadline and cancellation when taken from the queue. */
    int32_t live = 0;
    cdz_job *dead[n > 0 ? n : 1];
    int32_t nd = 0;
    int64_t now = cdz_now_ns();
    for (int32_t i = 0; i < n; i++) {
        cdz_job *j = jobs[i];
        j->t_start_ns = now;
        j->batch_items = (int32_t)items;
        j->device_index = w->device;
        if (atomic_load(&j->cancelled)) {
            set_job_error(j, ((jnode *)j->priv)->shutdown ? CDZ_STATUS_SHUTTING_DOWN : CDZ_STATUS_CANCELLED,
                          "cancelled before it ran");
            dead[nd++] = j;
        } else if (j->deadline_ns && now >= j->deadline_ns) {
            set_job_error(j, CDZ_STATUS_DEADLINE_EXCEEDED, "deadline exceeded while queued");
            dead[nd++] = j;
        } else {
            jobs[live++] = j;
        }
    }
    if (nd) finish_jobs(s, dead, nd);
    if (!live) return;
    cdz_error_clear();
    cdz_status st = m->be->run(w->plan[mi], w->ctx, jobs, live);
    if (st != CDZ_STATUS_OK) {
        cdz_error err = *cdz_last_error();
        if (err.code != st) {
            err.code = st;
            snprintf(err.message, sizeof err.message, "%s", cdz_status_name(st));
        }
        char msg[CDZ_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "model '%s': %s", m->cfg.name, err.message);
        for (int32_t i = 0; i < live; i++) set_job_error(jobs[i], st, msg);
        if (st == CDZ_STATUS_DEVICE) {
            finish_jobs(s, jobs, live);
            device_failed(s, w, &err);
            return;
        }
    } else {
        for (int32_t i = 0; i < live; i++) {
            cdz_job *j = jobs[i];
            if (j->status == CDZ_STATUS_OK) j->error.code = CDZ_STATUS_OK;
        }
    }
    finish_jobs(s, jobs, live);
}

static void *worker_main(void *arg) {
    sched_worker *w = arg;
    cdz_sched *s = w->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->stop || !s->devices[w->device].healthy) break;
        int64_t now = cdz_now_ns(), wait_until = INT64_MAX;
        int32_t chosen = -1;
        for (int32_t k = 0; k < s->n_models; k++) {
            int32_t mi = (w->rr + k) % s->n_models;
            sched_model *m = &s->models[mi];
            jnode *first = NULL;
            int64_t total = 0;
            for (jnode *n = m->queue.head; n && total < m->cfg.max_batch; n = n->next) {
                if (!eligible(n, w->index)) continue;
                if (!first) first = n;
                total += n->items;
            }
            if (!first) continue;
            int64_t ready_at = first->job->t_submit_ns + m->cfg.max_queue_delay_us * 1000;
            if (total >= m->cfg.max_batch || m->cfg.max_queue_delay_us <= 0 || s->draining || now >= ready_at) {
                chosen = mi;
                break;
            }
            if (ready_at < wait_until) wait_until = ready_at;
        }
        if (chosen < 0) {
            if (wait_until == INT64_MAX) {
                pthread_cond_wait(&s->work_cv, &s->mu);
            } else {
                struct timespec ts;
                abs_timespec(wait_until, &ts);
                pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
            }
            continue;
        }
        w->rr = chosen + 1;
        sched_model *m = &s->models[chosen];
        int32_t n = 0;
        int64_t items = 0;
        for (jnode *nd = m->queue.head, *nx; nd && n < w->batch_cap; nd = nx) {
            nx = nd->next;
            if (!eligible(nd, w->index)) continue;
            if (n > 0 && items + nd->items > m->cfg.max_batch) break;
            list_remove(&m->queue, nd);
            nd->state = NODE_RUNNING;
            list_push_back(&s->running, nd);
            m->queued--;
            m->running++;
            items += nd->items;
            w->batch[n++] = nd->job;
        }
        pthread_mutex_unlock(&s->mu);
        run_batch(s, w, m, chosen, w->batch, n, items);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------------ create / destroy */
static void sched_free(cdz_sched *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_workers; i++) {
        sched_worker *w = &s->workers[i];
        for (int32_t mi = 0; mi < s->n_models; mi++)
            if (w->plan[mi]) s->models[mi].be->plan_destroy(w->plan[mi]);
        if (w->ctx) cdz_ctx_destroy(w->ctx);
        free(w->batch);
    }
    free(s->workers);
    for (int32_t mi = 0; mi < s->n_models; mi++)
        for (int32_t d = 0; d < s->n_devices; d++)
            if (s->models[mi].model[d]) s->models[mi].be->unload(s->models[mi].model[d]);
    for (int32_t d = 0; d < s->n_devices; d++)
        if (s->devices[d].arena) cdz_arena_destroy(s->devices[d].arena);
    for (int32_t b = 0; b < STREAM_BUCKETS; b++)
        for (stream_ent *e = s->streams[b], *nx; e; e = nx) { nx = e->next; free(e); }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->reaper_cv);
    pthread_cond_destroy(&s->drain_cv);
    free(s);
}

static cdz_status load_model(cdz_sched *s, int32_t mi) {
    sched_model *m = &s->models[mi];
    cdz_weights *wts = NULL;
    const char *kind;
    if (strncmp(m->path, "builtin:", 8) == 0) {
        kind = m->path + 8;
    } else {
        CDZ_TRY(cdz_weights_open(m->path, &wts));
        kind = cdz_weights_metadata_get(wts, "model");
        if (!kind) {
            cdz_weights_close(wts);
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "'%s' has no metadata \"model\" naming its kind",
                                 m->path);
        }
    }
    m->be = cdz_backend_find(kind);
    if (!m->be) {
        cdz_status st = cdz_error_set(CDZ_STATUS_UNSUPPORTED, "no backend for model kind '%s' (known: testnet, htdemucs)", kind);
        cdz_weights_close(wts);
        return st;
    }
    if (!wts && strcmp(kind, "testnet") != 0) {
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "'%s': only builtin:testnet exists", m->path);
    }
    for (int32_t d = 0; d < s->n_devices; d++) {
        char dn[32];
        cdz_status st = m->be->load(wts, s->devices[d].arena, &m->model[d]);
        if (st) {
            cdz_error_prefix("loading on %s: ", cdz_device_str(s->devices[d].dev, dn, sizeof dn));
            cdz_weights_close(wts);
            return st;
        }
    }
    cdz_weights_close(wts);
    return CDZ_STATUS_OK;
}

cdz_status cdz_sched_create(const cdz_sched_config *cfg, cdz_sched **out) {
    if (!cfg || !out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "scheduler: NULL argument");
    *out = NULL;
    if (cfg->n_devices < 1 || cfg->n_devices > CDZ_SCHED_MAX_DEVICES)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "scheduler: %d devices (1..%d)", cfg->n_devices,
                             CDZ_SCHED_MAX_DEVICES);
    if (cfg->n_models < 1 || cfg->n_models > CDZ_SCHED_MAX_MODELS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "scheduler: %d models (1..%d)", cfg->n_models,
                             CDZ_SCHED_MAX_MODELS);
    if (cfg->workers_per_device < 1 || cfg->workers_per_device * cfg->n_devices > MAX_WORKERS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "scheduler: workers_per_device %d (1..%d in all)",
                             cfg->workers_per_device, MAX_WORKERS);
    for (int32_t i = 0; i < cfg->n_models; i++) {
        const cdz_sched_model_config *mc = &cfg->models[i];
        if (!mc->name[0] || !mc->path)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "scheduler: model %d has no name or path", i);
        if (mc->max_batch < 1 || mc->queue_size < 1 || mc->max_queue_delay_us < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "model '%s': max_batch %d and queue_size %d must be >= 1, max_queue_delay_us %lld >= 0",
                                 mc->name, mc->max_batch, mc->queue_size, (long long)mc->max_queue_delay_us);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(cfg->models[j].name, mc->name) == 0)
                return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "model '%s' is configured twice", mc->name);
    }
    cdz_sched *s = calloc(1, sizeof *s);
    if (!s) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "scheduler: no host memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work_cv, &ca);
    pthread_cond_init(&s->reaper_cv, &ca);
    pthread_cond_init(&s->drain_cv, &ca);
    pthread_condattr_destroy(&ca);

    cdz_status st = CDZ_STATUS_OK;
    char dn[32];
    s->n_devices = cfg->n_devices;
    for (int32_t d = 0; d < cfg->n_devices; d++) {
        s->devices[d].dev = cfg->devices[d];
        s->devices[d].healthy = true;
        if ((st = cdz_arena_create(cfg->devices[d], cfg->arena_bytes, &s->devices[d].arena))) {
            cdz_error_prefix("scheduler: arena on %s: ", cdz_device_str(cfg->devices[d], dn, sizeof dn));
            goto fail;
        }
    }
    s->n_models = cfg->n_models;
    int32_t max_cap = 1;
    for (int32_t i = 0; i < cfg->n_models; i++) {
        sched_model *m = &s->models[i];
        m->cfg = cfg->models[i];
        snprintf(m->path, sizeof m->path, "%s", cfg->models[i].path);
        m->cfg.path = m->path;
        if (m->cfg.max_batch > max_cap) max_cap = m->cfg.max_batch;
        if ((st = load_model(s, i))) {
            cdz_error_prefix("model '%s' (%s): ", m->cfg.name, m->path);
            goto fail;
        }
    }
    s->workers = calloc((size_t)(cfg->n_devices * cfg->workers_per_device), sizeof *s->workers);
    if (!s->workers) { st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "scheduler: no host memory"); goto fail; }
    for (int32_t d = 0; d < cfg->n_devices; d++) {
        for (int32_t k = 0; k < cfg->workers_per_device; k++) {
            sched_worker *w = &s->workers[s->n_workers];
            w->s = s;
            w->index = s->n_workers++;
            w->device = d;
            w->batch_cap = max_cap;
            w->batch = calloc((size_t)max_cap, sizeof *w->batch);
            if (!w->batch) { st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "scheduler: no host memory"); goto fail; }
            cdz_ctx_options opt = {.precision = cfg->precision, .workspace_bytes = 0};
            if ((st = cdz_ctx_create(cfg->devices[d], s->devices[d].arena, &opt, &w->ctx))) {
                cdz_error_prefix("scheduler: worker %d context on %s: ", k, cdz_device_str(cfg->devices[d], dn, sizeof dn));
                goto fail;
            }
            for (int32_t mi = 0; mi < s->n_models; mi++) {
                sched_model *m = &s->models[mi];
                size_t bytes = 0;
                if ((st = m->be->plan_create(m->model[d], w->ctx, m->cfg.max_batch, &w->plan[mi], &bytes)) ||
                    (m->be->warmup && (st = m->be->warmup(w->plan[mi], w->ctx)))) {
                    cdz_error_prefix("model '%s' on %s, worker %d (warm-up, max_batch %d): ", m->cfg.name,
                                     cdz_device_str(cfg->devices[d], dn, sizeof dn), k, m->cfg.max_batch);
                    goto fail;
                }
            }
        }
    }
    for (int32_t i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            st = cdz_error_set(CDZ_STATUS_INTERNAL, "scheduler: cannot start worker thread %d", i);
            goto fail_threads;
        }
        s->workers[i].started = true;
    }
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        st = cdz_error_set(CDZ_STATUS_INTERNAL, "scheduler: cannot start the reaper thread");
        goto fail_threads;
    }
    s->reaper_started = true;
    *out = s;
    return CDZ_STATUS_OK;

fail_threads:
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
fail:;
    cdz_error saved = *cdz_last_error();
    sched_free(s);
    cdz_error_set(saved.code, "%s", saved.message);
    return st;
}

/* ------------------------------------------------------------------ submit / cancel */
static sched_model *find_model(cdz_sched *s, const char *name) {
    for (int32_t i = 0; i < s->n_models; i++)
        if (strncmp(s->models[i].cfg.name, name, CDZ_JOB_MAX_NAME) == 0) return &s->models[i];
    return NULL;
}

cdz_status cdz_sched_submit(cdz_sched *s, cdz_job *job) {
    if (!s || !job) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "submit: NULL argument");
    if (!job->done) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "submit: job %llu has no done callback",
                                         (unsigned long long)job->id);
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    if (draining) return cdz_error_set(CDZ_STATUS_SHUTTING_DOWN, "submit: the server is shutting down");
    job->model[CDZ_JOB_MAX_NAME - 1] = '\0';
    sched_model *m = find_model(s, job->model);
    if (!m) return cdz_error_set(CDZ_STATUS_UNKNOWN_MODEL, "no model named '%s' is loaded", job->model);
    if (job->n_inputs < 0 || job->n_inputs > CDZ_JOB_MAX_TENSORS || job->n_outputs < 0 ||
        job->n_outputs > CDZ_JOB_MAX_TENSORS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "model '%s': %d inputs / %d outputs (0..%d)", job->model,
                             job->n_inputs, job->n_outputs, CDZ_JOB_MAX_TENSORS);
    int32_t prio = job->priority ? job->priority : 4;
    if (prio < 1 || prio > 7)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "model '%s': priority %d (1..7, 0 = default)", job->model,
                             job->priority);
    int64_t now = cdz_now_ns();
    if (job->deadline_ns && now >= job->deadline_ns)
        return cdz_error_set(CDZ_STATUS_DEADLINE_EXCEEDED, "model '%s': the deadline had passed at submission",
                             job->model);
    /* Models are immutable after load: check outside the lock, on any device's copy. */
    int64_t items = 0;
    int32_t mi = (int32_t)(m - s->models);
    cdz_status st = m->be->check(m->model[0], job, &items);
    if (st) return cdz_error_prefix("model '%s': ", job->model);
    if (items < 1) items = 1;
    jnode *node = calloc(1, sizeof *node);
    if (!node) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "submit: no host memory");
    node->job = job;
    node->model = mi;
    node->items = items;
    node->priority = prio;
    node->worker = -1;

    pthread_mutex_lock(&s->mu);
    if (s->draining) st = cdz_error_set(CDZ_STATUS_SHUTTING_DOWN, "submit: the server is shutting down");
    else if (!any_healthy(s)) st = cdz_error_set(CDZ_STATUS_DEVICE, "submit: no healthy device is left in the pool");
    else if (m->queued >= m->cfg.queue_size)
        st = cdz_error_set(CDZ_STATUS_BUSY, "model '%s': queue full (%d jobs waiting)", m->cfg.name, m->queued);
    if (st == CDZ_STATUS_OK && job->stream_id) {
        stream_ent *e = stream_find(s, job->stream_id);
        if (!e) {
            e = calloc(1, sizeof *e);
            if (!e) {
                st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "submit: no host memory");
            } else {
                e->id = job->stream_id;
                e->worker = pick_worker(s);
                e->priority = prio;
                e->next = s->streams[e->id % STREAM_BUCKETS];
                s->streams[e->id % STREAM_BUCKETS] = e;
            }
        } else if (!worker_alive(s, e->worker)) {
            e->worker = pick_worker(s);
        }
        if (e) {
            e->outstanding++;
            node->stream = e;
            node->worker = e->worker;
            node->priority = e->priority;
        }
    }
    if (st != CDZ_STATUS_OK) {
        pthread_mutex_unlock(&s->mu);
        free(node);
        return st;
    }
    job->status = CDZ_STATUS_OK;
    memset(&job->error, 0, sizeof job->error);
    job->n_results = 0;
    job->t_submit_ns = now;
    job->t_start_ns = job->t_end_ns = 0;
    job->batch_items = 0;
    job->device_index = -1;
    atomic_store(&job->cancelled, false);
    job->priv = node;
    node->seq = ++s->seq;
    queue_insert(&m->queue, node);
    m->queued++;
    s->outstanding++;
    pthread_cond_broadcast(&s->work_cv);
    if (job->deadline_ns) pthread_cond_signal(&s->reaper_cv);
    pthread_mutex_unlock(&s->mu);
    return CDZ_STATUS_OK;
}

void cdz_sched_cancel(cdz_sched *s, cdz_job *job) {
    if (!s || !job) return;
    pthread_mutex_lock(&s->mu);
    jnode *node = job->priv;
    if (node) {
        atomic_store(&job->cancelled, true);
        if (node->state == NODE_QUEUED) pthread_cond_signal(&s->reaper_cv);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ drain / destroy */
cdz_status cdz_sched_drain(cdz_sched *s, int64_t timeout_ns) {
    if (!s) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "drain: NULL scheduler");
    pthread_mutex_lock(&s->mu);
    if (s->drained) {
        pthread_mutex_unlock(&s->mu);
        return CDZ_STATUS_OK;
    }
    s->draining = true;
    pthread_cond_broadcast(&s->work_cv); /* batches stop waiting for fuller ones */
    int64_t until = cdz_now_ns() + (timeout_ns > 0 ? timeout_ns : 0);
    while (s->outstanding > 0 && cdz_now_ns() < until) {
        struct timespec ts;
        abs_timespec(until, &ts);
        pthread_cond_timedwait(&s->drain_cv, &s->mu, &ts);
    }
    int64_t left = s->outstanding;
    if (left > 0) {
        s->drain_expired = true;
        for (jnode *n = s->running.head; n; n = n->next) {
            n->shutdown = true;
            atomic_store(&n->job->cancelled, true);
        }
        pthread_cond_signal(&s->reaper_cv);
        while (s->outstanding > 0) pthread_cond_wait(&s->drain_cv, &s->mu);
    }
    s->stop = true;
    s->reaper_stop = true;
    s->drained = true;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->reaper_cv);
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) {
            pthread_join(s->workers[i].thread, NULL);
            s->workers[i].started = false;
        }
    if (s->reaper_started) {
        pthread_join(s->reaper, NULL);
        s->reaper_started = false;
    }
    if (left > 0)
        return cdz_error_set(CDZ_STATUS_SHUTTING_DOWN, "drain: %lld jobs were failed with SHUTTING_DOWN after the timeout",
                             (long long)left);
    return CDZ_STATUS_OK;
}

void cdz_sched_destroy(cdz_sched *s) {
    if (!s) return;
    cdz_sched_drain(s, 0);
    sched_free(s);
}

/* ------------------------------------------------------------------ introspection */
void cdz_sched_get_stats(cdz_sched *s, cdz_sched_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    out->n_models = s->n_models;
    out->n_devices = s->n_devices;
    out->draining = s->draining;
    for (int32_t i = 0; i < s->n_models; i++) {
        const sched_model *m = &s->models[i];
        cdz_sched_model_stats *o = &out->models[i];
        snprintf(o->name, sizeof o->name, "%s", m->cfg.name);
        snprintf(o->kind, sizeof o->kind, "%s", m->be ? m->be->kind : "");
        o->queued = m->queued;
        o->running = m->running;
        o->max_batch = m->cfg.max_batch;
        o->queue_size = m->cfg.queue_size;
    }
    for (int32_t d = 0; d < s->n_devices; d++) {
        out->devices[d].device = s->devices[d].dev;
        out->devices[d].healthy = s->devices[d].healthy;
        if (s->devices[d].arena) cdz_arena_get_stats(s->devices[d].arena, &out->devices[d].arena);
    }
    pthread_mutex_unlock(&s->mu);
}

const char *cdz_sched_describe_model(cdz_sched *s, const char *name) {
    if (!s || !name) return NULL;
    sched_model *m = find_model(s, name);
    if (!m || !m->be->describe) return NULL;
    return m->be->describe(m->model[0]);
}
