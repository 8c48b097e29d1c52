/*
 * backend_htdemucs.c: the "htdemucs" scheduler backend (weights metadata "model": "htdemucs").
 *
 *   input  "mix" f32 [C, N] host, C = the model's audio channels, at the model's sample rate
 *   output one f32 [C, N] tensor per source name ("drums", "bass", ...), or the requested subset
 *   options_json {"shifts": 1, "overlap": 0.25, "seed": 0, "transition_power": 1,
 *                 "segment": seconds (0 = the model's)} -- cdz_separate's options
 *
 * Work items are segments (members x max(shifts, 1) x chunks). run() hands all its jobs to
 * cdz_separate_tracks (models/separate.c): member by member, the segments of every job fill
 * the same forward batches (up to the plan's batch), and each output is overlap-added into
 * its own job in that job's chunk order, so every job's stems are bit-identical to
 * cdz_separate on it alone. Device memory is the separator's one batch of inputs/outputs;
 * host memory the jobs' inputs and results. Each job's cancelled flag and deadline are checked
 * before every batch: a job that fails them contributes no more segments and finishes
 * CANCELLED / DEADLINE_EXCEEDED while the others go on.
 *
 * defines: cdz_backend_htdemucs
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "scheduler.h"
#include "separate.h"

typedef struct hd_model {
    cdz_htdemucs *m;
    cdz_htdemucs_info info;
    char describe[2048];
} hd_model;

typedef struct hd_plan {
    hd_model *hm;
    cdz_separator *sep;
    int32_t batch;
} hd_plan;

static cdz_status hd_load(const cdz_weights *w, cdz_arena *arena, void **out) {
    if (!w) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "htdemucs: a weights file is required");
    hd_model *hm = calloc(1, sizeof *hm);
    if (!hm) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    cdz_status st = cdz_htdemucs_load(w, arena, &hm->m);
    if (st) {
        free(hm);
        return st;
    }
    cdz_htdemucs_get_info(hm->m, &hm->info);
    const cdz_htdemucs_info *in = &hm->info;
    int n = snprintf(hm->describe, sizeof hm->describe,
                     "{\"kind\":\"htdemucs\",\"samplerate\":%d,\"members\":%d,\"segment_samples\":%lld,"
                     "\"inputs\":[{\"name\":\"mix\",\"dtype\":\"f32\",\"shape\":[%d,-1]}],\"outputs\":[",
                     in->samplerate, in->members, (long long)in->segment_samples, in->audio_channels);
    for (int32_t k = 0; k < in->sources && n > 0 && (size_t)n < sizeof hm->describe; k++)
        n += snprintf(hm->describe + n, sizeof hm->describe - (size_t)n,
                      "%s{\"name\":\"%s\",\"dtype\":\"f32\",\"shape\":[%d,-1]}", k ? "," : "",
                      in->source_names[k], in->audio_channels);
    if (n > 0 && (size_t)n < sizeof hm->describe)
        snprintf(hm->describe + n, sizeof hm->describe - (size_t)n,
                 "],\"options\":[\"shifts\",\"overlap\",\"seed\",\"transition_power\",\"segment\"]}");
    *out = hm;
    return CDZ_STATUS_OK;
}

static void hd_unload(void *model) {
    hd_model *hm = model;
    if (!hm) return;
    cdz_htdemucs_free(hm->m);
    free(hm);
}

static const char *hd_describe(void *model) { return ((hd_model *)model)->describe; }

static cdz_status parse_opts(const char *text, cdz_separate_options *o) {
    cdz_separate_options_default(o);
    if (!text || !text[0]) return CDZ_STATUS_OK;
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "options: not a JSON object (%s)", root ? "" : je.text);
    }
    const char *key;
    json_t *v;
    cdz_status st = CDZ_STATUS_OK;
    json_object_foreach(root, key, v) {
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (strcmp(key, "shifts") == 0 && json_is_integer(v) && x >= 0 && x <= 64) {
            o->shifts = (int32_t)x;
        } else if (strcmp(key, "overlap") == 0 && x >= 0 && x < 1) {
            o->overlap = x;
        } else if (strcmp(key, "seed") == 0 && json_is_integer(v) && x >= 0) {
            o->seed = (uint64_t)json_integer_value(v);
        } else if (strcmp(key, "transition_power") == 0 && x >= 1 && isfinite(x)) {
            o->transition_power = x;
        } else if (strcmp(key, "segment") == 0 && x >= 0 && isfinite(x)) {
            o->segment_seconds = x;
        } else {
            st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                               "option '%s': unknown or out of range (shifts 0..64, overlap [0, 1), seed >= 0, "
                               "transition_power >= 1, segment >= 0 s)", key);
            break;
        }
    }
    json_decref(root);
    return st;
}

static int32_t source_index(const cdz_htdemucs_info *in, const char *name) {
    for (int32_t k = 0; k < in->sources; k++)
        if (strcmp(in->source_names[k], name) == 0) return k;
    return -1;
}

static cdz_status hd_check(void *model, const cdz_job *job, int64_t *items) {
    hd_model *hm = model;
    const cdz_htdemucs_info *in = &hm->info;
    if (job->n_inputs != 1 || strcmp(job->input_names[0], "mix") != 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "htdemucs takes one input 'mix' (got %d inputs%s%s)",
                             job->n_inputs, job->n_inputs ? ", the first named " : "",
                             job->n_inputs ? job->input_names[0] : "");
    const cdz_tensor *x = &job->inputs[0];
    char buf[128];
    if (x->dtype != CDZ_DTYPE_F32 || x->ndim != 2 || x->shape[0] != in->audio_channels || x->shape[1] < 1 ||
        !x->data || x->device.kind != CDZ_DEVICE_CPU || !cdz_tensor_is_contiguous(x))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "input 'mix': expected contiguous host f32[%d channels, frames >= 1] at %d Hz, got %s",
                             in->audio_channels, in->samplerate, cdz_tensor_str(x, buf, sizeof buf));
    for (int32_t i = 0; i < job->n_outputs; i++)
        if (source_index(in, job->output_names[i]) < 0)
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "output '%s': not a source of this model",
                                 job->output_names[i]);
    cdz_separate_options o;
    cdz_status st = parse_opts(job->options_json, &o);
    if (st) return st;
    /* Outputs are held in host memory: refuse what could never be allocated sensibly. */
    const int64_t n = x->shape[1];
    const int32_t nout = job->n_outputs ? job->n_outputs : in->sources;
    if ((double)n * in->audio_channels * (nout + 1) * 4.0 > 16.0 * (1 << 30))
        return cdz_error_set(CDZ_STATUS_TOO_LARGE, "input 'mix': %lld frames x %d outputs exceed 16 GiB of results",
                             (long long)n, nout);
    int64_t seg = in->segment_samples;
    if (o.segment_seconds > 0) seg = (int64_t)(o.segment_seconds * in->samplerate);
    if (seg < 1) seg = 1;
    int64_t stride = (int64_t)((1.0 - o.overlap) * (double)seg);
    if (stride < 1) stride = 1;
    int64_t view = n + (o.shifts ? in->samplerate / 2 : 0);
    *items = (int64_t)in->members * (o.shifts ? o.shifts : 1) * ((view + stride - 1) / stride);
    return CDZ_STATUS_OK;
}

static void hd_plan_destroy(void *plan) {
    hd_plan *p = plan;
    if (!p) return;
    cdz_separator_destroy(p->sep);
    free(p);
}

static cdz_status hd_plan_create(void *model, cdz_ctx *ctx, int32_t max_items, void **out, size_t *bytes) {
    hd_plan *p = calloc(1, sizeof *p);
    if (!p) return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory");
    p->hm = model;
    p->batch = max_items;
    cdz_status st = cdz_separator_create(p->hm->m, ctx, max_items, &p->sep);
    if (st) {
        free(p);
        return st;
    }
    if (bytes) *bytes = 0; /* member plans are made by the warm-up */
    *out = p;
    return CDZ_STATUS_OK;
}

/* Separate one segment of silence: makes every member's plan (and measures it). */
static cdz_status hd_warmup(void *plan, cdz_ctx *ctx) {
    (void)ctx;
    hd_plan *p = plan;
    const cdz_htdemucs_info *in = &p->hm->info;
    cdz_audio a;
    cdz_status st = cdz_audio_alloc(&a, in->audio_channels, in->segment_samples, in->samplerate);
    if (st) return st;
    float *buf = malloc((size_t)in->sources * in->audio_channels * in->segment_samples * sizeof(float));
    if (!buf) {
        cdz_audio_free(&a);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs warm-up: no host memory");
    }
    float *stems[CDZ_HTDEMUCS_MAX_SOURCES];
    for (int32_t k = 0; k < in->sources; k++) stems[k] = buf + (size_t)k * in->audio_channels * in->segment_samples;
    cdz_separate_options o;
    cdz_separate_options_default(&o);
    o.shifts = 0;
    st = cdz_separate(p->sep, &o, &a, stems);
    free(buf);
    cdz_audio_free(&a);
    return st;
}

static void job_fail(cdz_job *job, cdz_status st, const char *msg) {
    job->status = st;
    job->error.code = st;
    job->error.retryable = cdz_status_retryable(st);
    snprintf(job->error.message, sizeof job->error.message, "%s", msg);
}

/* Between forward batches: a cancelled job or one past its deadline stops contributing. */
static cdz_status hd_job_check(void *user, int32_t track) {
    cdz_job *job = ((cdz_job *const *)user)[track];
    if (atomic_load(&job->cancelled)) return cdz_error_set(CDZ_STATUS_CANCELLED, "cancelled while it ran");
    if (job->deadline_ns && cdz_now_ns() >= job->deadline_ns)
        return cdz_error_set(CDZ_STATUS_DEADLINE_EXCEEDED, "deadline exceeded while it ran");
    return CDZ_STATUS_OK;
}

static cdz_status hd_run(void *plan, cdz_ctx *ctx, cdz_job *const *jobs, int32_t n) {
    (void)ctx;
    hd_plan *p = plan;
    const cdz_htdemucs_info *in = &p->hm->info;
    if (n <= 0) return CDZ_STATUS_OK;
    cdz_separate_track *tr = calloc((size_t)n, sizeof *tr);
    cdz_job **live = calloc((size_t)n, sizeof *live);
    if (!tr || !live) {
        free(tr);
        free(live);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "htdemucs: no host memory for %d jobs", n);
    }
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        cdz_job *job = jobs[i];
        cdz_status st = hd_job_check(&job, 0);
        if (st) {
            job_fail(job, st, st == CDZ_STATUS_CANCELLED ? "cancelled before it ran" : "deadline exceeded before it ran");
            continue;
        }
        cdz_separate_track *t = &tr[k];
        if (parse_opts(job->options_json, &t->opt)) {
            job_fail(job, CDZ_STATUS_INVALID_ARGUMENT, cdz_last_message());
            continue;
        }
        const cdz_tensor *x = &job->inputs[0];
        const int32_t nout = job->n_outputs ? job->n_outputs : in->sources;
        for (int32_t r = 0; r < nout && !st; r++) {
            int32_t s = job->n_outputs ? source_index(in, job->output_names[r]) : r;
            cdz_tensor *res;
            st = cdz_job_add_result(job, in->source_names[s], CDZ_DTYPE_F32, 2, x->shape, &res);
            if (!st) t->stems[s] = res->data;
        }
        if (st) {
            job_fail(job, st, cdz_last_message());
            continue;
        }
        t->mix = (cdz_audio){.data = (float *)x->data, .channels = (int32_t)x->shape[0],
                             .samplerate = in->samplerate, .frames = x->shape[1]};
        live[k++] = job;
    }
    cdz_status st = cdz_separate_tracks(p->sep, tr, k, hd_job_check, live);
    for (int32_t i = 0; i < k; i++)
        if (tr[i].status) job_fail(live[i], tr[i].status, tr[i].error.message);
    free(tr);
    free(live);
    return st == CDZ_STATUS_DEVICE || st == CDZ_STATUS_INTERNAL ? st : CDZ_STATUS_OK;
}

const cdz_backend cdz_backend_htdemucs = {
    .kind = "htdemucs",
    .load = hd_load,
    .unload = hd_unload,
    .describe = hd_describe,
    .check = hd_check,
    .plan_create = hd_plan_create,
    .plan_destroy = hd_plan_destroy,
    .run = hd_run,
    .warmup = hd_warmup,
};
