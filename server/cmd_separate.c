/*
 * cmd_separate.c: `cadenza separate IN... -m MODEL.safetensors -o DIR` (docs/separate.md).
 *
 * Reads each file (libsndfile), converts it to the model's channel count and rate (stated in
 * the log), runs cdz_separate, applies demucs' clip prevention per stem and writes
 * DIR/<track>/<stem>.<ext> (through a ".partial" file renamed at the end, so an interrupted
 * run never leaves a truncated stem under its final name). With -j N, N tracks run at once,
 * each on its own context and plans over the one loaded model.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cadenza.h"

int cmd_separate(int argc, char **argv);

typedef struct sep_args {
    const char *model, *out_dir, *stems, *device, *precision;
    int32_t shifts, batch, jobs, bits;
    double overlap, segment;
    uint64_t seed;
    cdz_audio_format format;
    cdz_clip_mode clip;
    char **inputs;
    int n_inputs;
} sep_args;

static void separate_usage(FILE *f) {
    fprintf(f,
            "usage: cadenza separate IN... -m MODEL.safetensors -o DIR [options]\n"
            "\n"
            "Splits each audio file IN into the model's sources and writes DIR/<track>/<stem>.<ext>.\n"
            "MODEL is an HTDemucs checkpoint (or bag) converted by weights-tools/cadenza-convert demucs.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE       converted HTDemucs weights (.safetensors)            (required)\n"
            "  -o, --out DIR          output folder                                        (required)\n"
            "      --stems a,b        write only these sources (default: all)\n"
            "      --device DEV       cpu | cuda | cuda:N         (default: cuda:0 when present, else cpu)\n"
            "      --precision P      strict | tf32 | fp16 | bf16                    (default: strict)\n"
            "      --shifts N         shift trick: average N random time shifts (0 = off) (default: 1)\n"
            "      --overlap F        overlap between segments, in [0, 1)               (default: 0.25)\n"
            "      --segment SECONDS  segment length, at most the model's     (default: the model's)\n"
            "      --batch N          segments per forward pass          (default: 4 on CUDA, 1 on CPU)\n"
            "      --seed N           seed of the shift offsets                            (default: 0)\n"
            "      --format wav|flac  output format                                     (default: wav)\n"
            "      --bits 16|24|32    bits per sample; 32 = float (WAV only)               (default: 16)\n"
            "      --clip-mode M      rescale | clamp | tanh | none (demucs prevent_clip) (default: rescale)\n"
            "  -j, --jobs N           tracks separated at the same time                    (default: 1)\n"
            "  -h, --help             this text\n"
            "\n"
            "Mono input is duplicated to the model's channels and other rates are resampled (libsoxr);\n"
            "both are stated in the log. Stems are written at the model's rate.\n");
}

static int opt_error(const char *opt, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int opt_error(const char *opt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cadenza separate: %s: ", opt);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static bool parse_i32(const char *s, int32_t lo, int32_t hi, int32_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || end == s || *end || v < lo || v > hi) return false;
    *out = (int32_t)v;
    return true;
}

static bool parse_f64(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* 0: ok; otherwise the exit code. */
static int parse_args(int argc, char **argv, sep_args *a) {
    enum { O_STEMS = 256, O_DEVICE, O_PRECISION, O_SHIFTS, O_OVERLAP, O_SEGMENT, O_BATCH, O_SEED,
           O_FORMAT, O_BITS, O_CLIP };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},       {"out", required_argument, 0, 'o'},
        {"jobs", required_argument, 0, 'j'},        {"help", no_argument, 0, 'h'},
        {"stems", required_argument, 0, O_STEMS},   {"device", required_argument, 0, O_DEVICE},
        {"precision", required_argument, 0, O_PRECISION}, {"shifts", required_argument, 0, O_SHIFTS},
        {"overlap", required_argument, 0, O_OVERLAP}, {"segment", required_argument, 0, O_SEGMENT},
        {"batch", required_argument, 0, O_BATCH},   {"seed", required_argument, 0, O_SEED},
        {"format", required_argument, 0, O_FORMAT}, {"bits", required_argument, 0, O_BITS},
        {"clip-mode", required_argument, 0, O_CLIP}, {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->shifts = 1;
    a->overlap = 0.25;
    a->bits = 16;
    a->jobs = 1;
    a->format = CDZ_AUDIO_FORMAT_WAV;
    a->clip = CDZ_CLIP_RESCALE;
    optind = 1; /* argv[0] is "separate" */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:j:h", longs, NULL)) != -1) {
        const char *v = optarg;
        switch (c) {
        case 'm': a->model = v; break;
        case 'o': a->out_dir = v; break;
        case 'h': separate_usage(stdout); return -1;
        case 'j':
            if (!parse_i32(v, 1, 64, &a->jobs)) return opt_error("--jobs", "'%s' is not a whole number in 1..64", v);
            break;
        case O_STEMS: a->stems = v; break;
        case O_DEVICE: a->device = v; break;
        case O_PRECISION: {
            cdz_precision p;
            if (cdz_precision_parse(v, &p) != CDZ_STATUS_OK)
                return opt_error("--precision", "'%s' is not one of strict, tf32, fp16, bf16", v);
            a->precision = v;
            break;
        }
        case O_SHIFTS:
            if (!parse_i32(v, 0, 1000, &a->shifts))
                return opt_error("--shifts", "'%s' is not a whole number in 0..1000", v);
            break;
        case O_OVERLAP:
            if (!parse_f64(v, &a->overlap) || a->overlap < 0.0 || a->overlap >= 1.0)
                return opt_error("--overlap", "'%s' is not a number in [0, 1)", v);
            break;
        case O_SEGMENT:
            if (!parse_f64(v, &a->segment) || a->segment <= 0.0)
                return opt_error("--segment", "'%s' is not a positive number of seconds", v);
            break;
        case O_BATCH:
            if (!parse_i32(v, 1, 4096, &a->batch)) return opt_error("--batch", "'%s' is not a whole number in 1..4096", v);
            break;
        case O_SEED: {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || !end || end == v || *end || v[0] == '-')
                return opt_error("--seed", "'%s' is not a non-negative whole number", v);
            a->seed = s;
            break;
        }
        case O_FORMAT:
            if (cdz_audio_format_parse(v, &a->format) != CDZ_STATUS_OK)
                return opt_error("--format", "'%s' is not one of wav, flac", v);
            break;
        case O_BITS:
            if (!parse_i32(v, 16, 32, &a->bits) || (a->bits != 16 && a->bits != 24 && a->bits != 32))
                return opt_error("--bits", "'%s' is not one of 16, 24, 32", v);
            break;
        case O_CLIP:
            if (cdz_clip_mode_parse(v, &a->clip) != CDZ_STATUS_OK)
                return opt_error("--clip-mode", "'%s' is not one of rescale, clamp, tanh, none", v);
            break;
        case ':':
            return opt_error(argv[optind - 1], "needs a value");
        default:
            if (optopt && optopt < 256) return opt_error("options", "unknown option '-%c' (cadenza separate --help)", optopt);
            return opt_error("options", "unknown option or missing value in '%s' (cadenza separate --help)",
                             argv[optind - 1]);
        }
    }
    a->inputs = argv + optind;
    a->n_inputs = argc - optind;
    if (!a->model) return opt_error("-m/--model", "is required (a .safetensors made by cadenza-convert demucs)");
    if (!a->out_dir) return opt_error("-o/--out", "is required (the output folder)");
    if (a->n_inputs < 1) return opt_error("IN", "no input file given");
    if (a->format == CDZ_AUDIO_FORMAT_FLAC && a->bits == 32)
        return opt_error("--bits", "32 (float) cannot be stored in FLAC; use --bits 16|24 or --format wav");
    return 0;
}

/* ------------------------------------------------------------------------------------
 * files and names
 * ---------------------------------------------------------------------------------- */
/* basename without its last extension */
static void track_name(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, size, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = '\0';
    if (!buf[0]) snprintf(buf, size, "track");
}

static cdz_status mkdir_p(const char *dir) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "path too long: '%s'", dir);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char keep = *p;
            *p = '\0';
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
                return cdz_error_set(CDZ_STATUS_IO, "cannot create folder '%s': %s", tmp, strerror(errno));
            struct stat st;
            if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
                return cdz_error_set(CDZ_STATUS_IO, "'%s' exists and is not a folder", tmp);
            *p = keep;
            if (!keep) break;
        }
    }
    return CDZ_STATUS_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_duration(double s, char *buf, size_t size) {
    long m = (long)(s / 60.0);
    snprintf(buf, size, "%ld:%04.1f", m, s - 60.0 * (double)m);
}

/* ------------------------------------------------------------------------------------
 * progress (stderr, only when it is a terminal)
 * ---------------------------------------------------------------------------------- */
#define MAX_JOBS 64

typedef struct progress {
    pthread_mutex_t lock;
    bool tty, shown;
    int64_t done[MAX_JOBS], total[MAX_JOBS];
    const char *name[MAX_JOBS];
    int files_done, files_total;
} progress;

static void progress_render_locked(progress *p) {
    int64_t done = 0, total = 0;
    int active = 0, last = -1;
    for (int i = 0; i < MAX_JOBS; i++) {
        if (!p->name[i]) continue;
        done += p->done[i];
        total += p->total[i];
        active++;
        last = i;
    }
    if (!active || total <= 0) return;
    enum { width = 30 };
    int fill = (int)(width * done / total);
    char bar[width + 1];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    char what[96];
    if (active == 1) snprintf(what, sizeof what, "%s", p->name[last]);
    else snprintf(what, sizeof what, "%d tracks", active);
    fprintf(stderr, "\r\033[K[%s] %3d%%  %" PRId64 "/%" PRId64 " segments  %s  (%d/%d done)", bar,
            (int)(100 * done / total), done, total, what, p->files_done, p->files_total);
    fflush(stderr);
    p->shown = true;
}

static void progress_clear_locked(progress *p) {
    if (p->tty && p->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->shown = false;
    }
}

typedef struct progress_slot {
    progress *p;
    int index;
} progress_slot;

static void on_progress(void *user, int64_t done, int64_t total) {
    progress_slot *s = user;
    pthread_mutex_lock(&s->p->lock);
    s->p->done[s->index] = done;
    s->p->total[s->index] = total;
    if (s->p->tty) progress_render_locked(s->p);
    pthread_mutex_unlock(&s->p->lock);
}

/* ------------------------------------------------------------------------------------
 * work
 * ---------------------------------------------------------------------------------- */
typedef struct shared {
    const sep_args *args;
    const cdz_htdemucs *model;
    cdz_htdemucs_info info;
    cdz_device device;
    cdz_precision precision;
    cdz_arena *arena; /* device arena (CUDA); NULL on CPU */
    bool want[CDZ_HTDEMUCS_MAX_SOURCES];
    progress prog;
    pthread_mutex_t lock;
    int next;
    int failed;
    double audio_s, busy_s;
} shared;

static void say(shared *sh, FILE *f, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void say(shared *sh, FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&sh->prog.lock);
    progress_clear_locked(&sh->prog);
    vfprintf(f, fmt, ap);
    fflush(f);
    pthread_mutex_unlock(&sh->prog.lock);
    va_end(ap);
}

static void log_info(shared *sh, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void log_info(shared *sh, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&sh->prog.lock);
    progress_clear_locked(&sh->prog);
    cdz_log(CDZ_LOG_LEVEL_INFO, "separate", "%s", msg);
    pthread_mutex_unlock(&sh->prog.lock);
}

/* One track, start to finish. Errors are in the thread's record. */
static cdz_status separate_file(shared *sh, cdz_separator *sep, const char *path, progress_slot *ps) {
    const sep_args *a = sh->args;
    const cdz_htdemucs_info *info = &sh->info;
    const double t0 = now_s();
    cdz_audio in = {0}, conv = {0}, res = {0};
    float *stems[CDZ_HTDEMUCS_MAX_SOURCES] = {0};
    cdz_status st = cdz_audio_read(path, &in);
    if (st != CDZ_STATUS_OK) return st;
    const double duration = (double)in.frames / (double)in.samplerate;
    char dur[32];
    fmt_duration(duration, dur, sizeof dur);
    log_info(sh, "%s: %s of audio, %d channel%s at %d Hz (%s)", path, dur, in.channels, in.channels == 1 ? "" : "s",
             in.samplerate, in.format);
    cdz_audio *cur = &in;
    if (in.channels != info->audio_channels) {
        st = cdz_audio_to_channels(&in, info->audio_channels, &conv);
        if (st != CDZ_STATUS_OK) goto done;
        log_info(sh, "%s: mono duplicated to %d channels (the model takes %d)", path, info->audio_channels,
                 info->audio_channels);
        cdz_audio_free(&in);
        cur = &conv;
    }
    if (cur->samplerate != info->samplerate) {
        log_info(sh, "%s: resampling %d Hz -> %d Hz (libsoxr, high quality); stems are written at %d Hz", path,
                 cur->samplerate, info->samplerate, info->samplerate);
        st = cdz_audio_resample(cur, info->samplerate, &res);
        if (st != CDZ_STATUS_OK) goto done;
        cdz_audio_free(cur);
        cur = &res;
    }
    const size_t n = (size_t)cur->frames * (size_t)cur->channels;
    for (int32_t k = 0; k < info->sources; k++) {
        if (!sh->want[k]) continue;
        stems[k] = malloc(n * sizeof(float));
        if (!stems[k]) {
            st = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "no host memory for the %s stem (%zu bytes)",
                               info->source_names[k], n * sizeof(float));
            goto done;
        }
    }
    cdz_separate_options opt;
    cdz_separate_options_default(&opt);
    opt.shifts = a->shifts;
    opt.overlap = a->overlap;
    opt.segment_seconds = a->segment;
    opt.seed = a->seed;
    opt.progress = on_progress;
    opt.progress_user = ps;
    pthread_mutex_lock(&sh->prog.lock);
    sh->prog.name[ps->index] = path;
    sh->prog.done[ps->index] = 0;
    sh->prog.total[ps->index] = 0;
    pthread_mutex_unlock(&sh->prog.lock);
    st = cdz_separate(sep, &opt, cur, stems);
    pthread_mutex_lock(&sh->prog.lock);
    sh->prog.name[ps->index] = NULL;
    pthread_mutex_unlock(&sh->prog.lock);
    if (st != CDZ_STATUS_OK) goto done;

    char name[256], dir[PATH_MAX], file[PATH_MAX], partial[PATH_MAX + 16];
    track_name(path, name, sizeof name);
    if (snprintf(dir, sizeof dir, "%s/%s", a->out_dir, name) >= (int)sizeof dir) {
        st = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "output path too long");
        goto done;
    }
    st = mkdir_p(dir);
    if (st != CDZ_STATUS_OK) goto done;
    const char *ext = a->format == CDZ_AUDIO_FORMAT_FLAC ? "flac" : "wav";
    for (int32_t k = 0; k < info->sources; k++) {
        if (!stems[k]) continue;
        cdz_audio stem = {.data = stems[k], .channels = cur->channels, .samplerate = cur->samplerate,
                          .frames = cur->frames};
        st = cdz_audio_prevent_clip(&stem, a->clip);
        if (st != CDZ_STATUS_OK) goto done;
        snprintf(file, sizeof file, "%s/%s.%s", dir, info->source_names[k], ext);
        snprintf(partial, sizeof partial, "%s.partial", file);
        st = cdz_audio_write(partial, &stem, a->format, a->bits);
        if (st == CDZ_STATUS_OK && rename(partial, file) != 0)
            st = cdz_error_set(CDZ_STATUS_IO, "cannot rename '%s' to '%s': %s", partial, file, strerror(errno));
        if (st != CDZ_STATUS_OK) {
            unlink(partial);
            goto done;
        }
    }
    const double el = now_s() - t0;
    pthread_mutex_lock(&sh->lock);
    sh->audio_s += duration;
    sh->busy_s += el;
    pthread_mutex_unlock(&sh->lock);
    pthread_mutex_lock(&sh->prog.lock);
    sh->prog.files_done++;
    pthread_mutex_unlock(&sh->prog.lock);
    say(sh, stdout, "%s: %s of audio in %.2f s (real-time factor %.3g, %.3gx real time) -> %s/\n", path, dur, el,
        el / duration, duration / el, dir);
done:
    for (int32_t k = 0; k < CDZ_HTDEMUCS_MAX_SOURCES; k++) free(stems[k]);
    cdz_audio_free(&in);
    cdz_audio_free(&conv);
    cdz_audio_free(&res);
    return st;
}

typedef struct worker {
    shared *sh;
    int index;
    pthread_t thread;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    shared *sh = w->sh;
    const sep_args *a = sh->args;
    cdz_ctx *ctx = NULL;
    cdz_separator *sep = NULL;
    progress_slot ps = {&sh->prog, w->index};
    cdz_ctx_options copt = {.precision = sh->precision};
    cdz_status st = cdz_ctx_create(sh->device, sh->arena, &copt, &ctx);
    if (st == CDZ_STATUS_OK) st = cdz_separator_create(sh->model, ctx, a->batch, &sep);
    if (st != CDZ_STATUS_OK) {
        const cdz_error *e = cdz_last_error();
        say(sh, stderr, "cadenza separate: worker %d: %s: %s\n", w->index, cdz_status_name(e->code), e->message);
    }
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        int i = sh->next < a->n_inputs ? sh->next++ : -1;
        pthread_mutex_unlock(&sh->lock);
        if (i < 0) break;
        const char *path = a->inputs[i];
        if (st == CDZ_STATUS_OK) {
            cdz_status fs = separate_file(sh, sep, path, &ps);
            if (fs == CDZ_STATUS_OK) continue;
            const cdz_error *e = cdz_last_error();
            say(sh, stderr, "cadenza separate: %s: %s: %s\n", path, cdz_status_name(e->code), e->message);
        } else {
            say(sh, stderr, "cadenza separate: %s: not separated (the worker could not start)\n", path);
        }
        pthread_mutex_lock(&sh->lock);
        sh->failed++;
        pthread_mutex_unlock(&sh->lock);
    }
    cdz_separator_destroy(sep);
    cdz_ctx_destroy(ctx);
    return NULL;
}

static int fail_with(const char *what) {
    const cdz_error *e = cdz_last_error();
    fprintf(stderr, "cadenza separate: %s: %s: %s\n", what, cdz_status_name(e->code), e->message);
    return 1;
}

/* --stems a,b -> want[]; 0 or the exit code */
static int select_stems(const char *list, const cdz_htdemucs_info *info, bool *want) {
    if (!list) {
        for (int32_t k = 0; k < info->sources; k++) want[k] = true;
        return 0;
    }
    char known[CDZ_HTDEMUCS_MAX_SOURCES * 18] = "";
    for (int32_t k = 0; k < info->sources; k++) {
        strcat(known, k ? ", " : "");
        strcat(known, info->source_names[k]);
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    int count = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int32_t k = 0;
        while (k < info->sources && strcmp(tok, info->source_names[k]) != 0) k++;
        if (k == info->sources)
            return opt_error("--stems", "'%s' is not a source of this model (it has: %s)", tok, known);
        want[k] = true;
        count++;
    }
    if (!count) return opt_error("--stems", "no stem named (this model has: %s)", known);
    return 0;
}

int cmd_separate(int argc, char **argv) {
    if (argc < 2) {
        separate_usage(stderr);
        return 2;
    }
    sep_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;

    /* names must not collide in DIR */
    for (int i = 0; i < a.n_inputs; i++) {
        char ni[256], nj[256];
        track_name(a.inputs[i], ni, sizeof ni);
        for (int j = 0; j < i; j++) {
            track_name(a.inputs[j], nj, sizeof nj);
            if (!strcmp(ni, nj))
                return opt_error("IN", "'%s' and '%s' would both be written to %s/%s/", a.inputs[j], a.inputs[i],
                                 a.out_dir, ni);
        }
    }
    if (!cdz_audio_can_read())
        return opt_error("IN", "this build has no libsndfile (apt-get install libsndfile1-dev, then rebuild)");

    cdz_device dev = {CDZ_DEVICE_CPU, 0};
    if (a.device) {
        if (cdz_device_parse(a.device, &dev) != CDZ_STATUS_OK)
            return opt_error("--device", "%s", cdz_last_message());
    } else if (cdz_cuda_device_count() > 0) {
        dev = (cdz_device){CDZ_DEVICE_CUDA, 0};
    }
    if (dev.kind == CDZ_DEVICE_CUDA && !cdz_built_with_cuda())
        return opt_error("--device", "this build has no CUDA support (make CUDA=1)");
    cdz_precision precision = CDZ_PRECISION_STRICT;
    if (a.precision) cdz_precision_parse(a.precision, &precision);
    if (a.batch == 0) a.batch = dev.kind == CDZ_DEVICE_CUDA ? 4 : 1;

    cdz_weights *w = NULL;
    if (cdz_weights_open(a.model, &w) != CDZ_STATUS_OK) return fail_with("-m/--model");
    const char *kind = cdz_weights_metadata_get(w, "model");
    if (!kind || strcmp(kind, "htdemucs") != 0) {
        fprintf(stderr,
                "cadenza separate: -m/--model: '%s' is not an HTDemucs checkpoint (its metadata \"model\" is %s%s%s; "
                "convert demucs checkpoints with weights-tools/cadenza-convert demucs IN.th -o OUT.safetensors)\n",
                a.model, kind ? "'" : "", kind ? kind : "missing", kind ? "'" : "");
        cdz_weights_close(w);
        return 1;
    }

    shared sh;
    memset(&sh, 0, sizeof sh);
    sh.args = &a;
    sh.device = dev;
    sh.precision = precision;
    cdz_arena *arena = NULL;
    cdz_htdemucs *model = NULL;
    worker *workers = NULL;
    int exit_code = 1;
    size_t weight_bytes = 0; /* the weights as f32, as cdz_htdemucs_load keeps them */
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        const cdz_weight_entry *e = cdz_weights_at(w, i);
        weight_bytes += (size_t)(e->nbytes / cdz_dtype_size(e->dtype)) * sizeof(float);
    }
    /* CPU: room for the weights as f32 and their derived tables; CUDA: the default share */
    size_t arena_bytes = dev.kind == CDZ_DEVICE_CPU ? weight_bytes + weight_bytes / 8 + (64u << 20) : 0;
    if (cdz_arena_create(dev, arena_bytes, &arena) != CDZ_STATUS_OK) {
        fail_with("device memory");
        goto out;
    }
    if (cdz_htdemucs_load(w, arena, &model) != CDZ_STATUS_OK) {
        fail_with(a.model);
        goto out;
    }
    sh.model = model;
    sh.arena = dev.kind == CDZ_DEVICE_CUDA ? arena : NULL;
    cdz_htdemucs_get_info(model, &sh.info);
    rc = select_stems(a.stems, &sh.info, sh.want);
    if (rc) {
        exit_code = rc;
        goto out;
    }
    if (a.segment > 0.0 && (int64_t)((double)sh.info.samplerate * a.segment) > sh.info.segment_samples) {
        exit_code = opt_error("--segment", "%g s is longer than the model's %.4g s (a Transformer model cannot run "
                              "longer segments than it was trained on)",
                              a.segment, (double)sh.info.segment_samples / sh.info.samplerate);
        goto out;
    }
    if (a.segment > 0.0 && (int64_t)((double)sh.info.samplerate * a.segment) < 1) {
        exit_code = opt_error("--segment", "%g s is less than one sample at %d Hz", a.segment, sh.info.samplerate);
        goto out;
    }
    {
        char devname[32], names[CDZ_HTDEMUCS_MAX_SOURCES * 18] = "";
        for (int32_t k = 0; k < sh.info.sources; k++) {
            strcat(names, k ? ", " : "");
            strcat(names, sh.info.source_names[k]);
        }
        cdz_log(CDZ_LOG_LEVEL_INFO, "separate",
                "model %s: %d source%s (%s), %d member%s, %d ch, %d Hz, segment %.3f s; on %s, precision %s, "
                "batch %d, shifts %d, overlap %g, seed %" PRIu64 ", jobs %d",
                a.model, sh.info.sources, sh.info.sources == 1 ? "" : "s", names, sh.info.members,
                sh.info.members == 1 ? "" : "s", sh.info.audio_channels, sh.info.samplerate,
                (double)sh.info.segment_samples / sh.info.samplerate, cdz_device_str(dev, devname, sizeof devname),
                cdz_precision_name(precision), a.batch, a.shifts, a.overlap, a.seed, a.jobs);
    }
    if (mkdir_p(a.out_dir) != CDZ_STATUS_OK) {
        fail_with("-o/--out");
        goto out;
    }

    pthread_mutex_init(&sh.lock, NULL);
    pthread_mutex_init(&sh.prog.lock, NULL);
    sh.prog.tty = isatty(STDERR_FILENO);
    sh.prog.files_total = a.n_inputs;
    int jobs = a.jobs < a.n_inputs ? a.jobs : a.n_inputs;
    workers = calloc((size_t)jobs, sizeof *workers);
    if (!workers) {
        fprintf(stderr, "cadenza separate: out of host memory\n");
        goto out_locks;
    }
    const double t0 = now_s();
    int started = 0;
    for (int i = 0; i < jobs; i++) {
        workers[i] = (worker){.sh = &sh, .index = i};
        if (jobs == 1) {
            worker_main(&workers[i]);
            continue;
        }
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) break;
        started++;
    }
    if (jobs > 1 && started == 0) worker_main(&workers[0]);
    for (int i = 0; i < started; i++) pthread_join(workers[i].thread, NULL);
    pthread_mutex_lock(&sh.prog.lock);
    progress_clear_locked(&sh.prog);
    pthread_mutex_unlock(&sh.prog.lock);
    const double total = now_s() - t0;
    const int ok = a.n_inputs - sh.failed;
    if (a.n_inputs > 1 || sh.failed) {
        char dur[32];
        fmt_duration(sh.audio_s, dur, sizeof dur);
        printf("%d of %d track%s separated: %s of audio in %.2f s (%.3gx real time)\n", ok, a.n_inputs,
               a.n_inputs == 1 ? "" : "s", dur, total, total > 0 ? sh.audio_s / total : 0.0);
    }
    exit_code = sh.failed ? 1 : 0;
out_locks:
    pthread_mutex_destroy(&sh.lock);
    pthread_mutex_destroy(&sh.prog.lock);
out:
    free(workers);
    cdz_htdemucs_free(model);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    return exit_code;
}
