/*
 * cmd_demo.c: `cadenza demo` (make demo): the separation pipeline end to end with nothing
 * but this build.
 *
 *   1. writes DIR/htdemucs-random.safetensors: a seeded random HTDemucs checkpoint made by
 *      cdz_htdemucs_write_random from the loader's own tensor list (no Python, no download),
 *      and loads it (its rate and channel count shape the mix);
 *   2. synthesises a short stereo test mix (bass line, chords, kick/snare/hi-hat, a vibrato
 *      lead) and writes it as DIR/mix.wav;
 *   3. loads the checkpoint and separates the mix with cdz_separator / cdz_separate, the path
 *      of `cadenza separate`, on the best device (cuda:0 when a GPU is usable, else cpu);
 *      on CUDA it runs twice, the first run paying for plans and algorithm choice;
 *   4. writes DIR/mix/<source>.wav and prints per-stage timing and the real-time factor,
 *      then says plainly that random weights give meaningless stems and where
 *      docs/weights.md explains converting the published checkpoints.
 *
 * Without a GPU a full-size htdemucs forward takes minutes per 7.8 s segment with the CPU
 * reference ops, so the CPU default is the `small` preset (a sixth of the width, same
 * structure and token grid), and the output says so.
 *
 * tests/test_demo.c includes this file to run demo_run() on a tiny preset.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cadenza.h"

int cmd_demo(int argc, char **argv);

#define DEMO_MAX_SECONDS 3600.0

typedef struct demo_args {
    const char *device;    /* NULL: cuda:0 when usable, else cpu */
    const char *out_dir;   /* default build/demo */
    const char *preset;    /* NULL: htdemucs on CUDA, small on CPU */
    const char *precision; /* NULL: strict */
    double seconds;
    uint64_t seed;
    int32_t shifts; /* cdz_separate's shift trick, 1 as in `cadenza separate` (tests: 0) */
} demo_args;

static void demo_usage(FILE *f) {
    fprintf(f,
            "usage: cadenza demo [options]\n"
            "\n"
            "Runs HTDemucs source separation end to end on built-in material: writes a seeded random\n"
            "checkpoint (DIR/htdemucs-random.safetensors), synthesises a test mix (DIR/mix.wav), separates\n"
            "it on the best device and prints timing and the real-time factor. The weights are untrained,\n"
            "so the stems are meaningless; docs/weights.md converts the published checkpoints.\n"
            "\n"
            "options:\n"
            "      --device DEV     cpu | cuda | cuda:N          (default: cuda:0 when present, else cpu)\n"
            "      --out DIR        output folder                                 (default: build/demo)\n"
            "      --seconds S      length of the test mix, in (0, 3600]                 (default: 10)\n"
            "      --preset P       htdemucs | htdemucs_6s | small | tiny\n"
            "                       (default: htdemucs on a GPU, small on the CPU)\n"
            "      --seed N         seed of the weights, the mix's noise and the shifts   (default: 0)\n"
            "      --precision P    strict | tf32 | fp16 | bf16                      (default: strict)\n"
            "  -h, --help           this text\n");
}

static int demo_opt_error(FILE *err, const char *opt, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int demo_opt_error(FILE *err, const char *opt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(err, "cadenza demo: %s: ", opt);
    vfprintf(err, fmt, ap);
    fprintf(err, "\n");
    va_end(ap);
    return 2;
}

static bool demo_known_preset(const char *p) {
    if (p[0] == '{') return true; /* JSON config text: cdz_htdemucs_write_random checks it */
    for (const char *const *n = cdz_htdemucs_presets(); *n; n++)
        if (!strcmp(p, *n)) return true;
    return false;
}

/* 0: run; -1: --help printed; otherwise the exit code. */
static int demo_parse_args(int argc, char **argv, demo_args *a, FILE *err) {
    enum { O_DEVICE = 256, O_OUT, O_SECONDS, O_PRESET, O_SEED, O_PRECISION };
    static const struct option longs[] = {
        {"device", required_argument, 0, O_DEVICE}, {"out", required_argument, 0, O_OUT},
        {"seconds", required_argument, 0, O_SECONDS}, {"preset", required_argument, 0, O_PRESET},
        {"seed", required_argument, 0, O_SEED},     {"precision", required_argument, 0, O_PRECISION},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->out_dir = "build/demo";
    a->seconds = 10.0;
    a->shifts = 1;
    optind = 1; /* argv[0] is "demo" */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        const char *v = optarg;
        switch (c) {
        case 'h': demo_usage(stdout); return -1;
        case O_DEVICE: a->device = v; break;
        case O_OUT:
            if (!v[0]) return demo_opt_error(err, "--out", "the folder name is empty");
            a->out_dir = v;
            break;
        case O_SECONDS: {
            char *end = NULL;
            errno = 0;
            const double s = strtod(v, &end);
            if (errno || !end || end == v || *end || !isfinite(s) || s <= 0.0 || s > DEMO_MAX_SECONDS)
                return demo_opt_error(err, "--seconds", "'%s' is not a number of seconds in (0, %g]", v,
                                      DEMO_MAX_SECONDS);
            a->seconds = s;
            break;
        }
        case O_PRESET:
            if (!demo_known_preset(v))
                return demo_opt_error(err, "--preset", "'%s' is not one of htdemucs, htdemucs_6s, small, tiny", v);
            a->preset = v;
            break;
        case O_SEED: {
            char *end = NULL;
            errno = 0;
            const unsigned long long s = strtoull(v, &end, 0);
            if (errno || !end || end == v || *end || v[0] == '-')
                return demo_opt_error(err, "--seed", "'%s' is not a non-negative whole number", v);
            a->seed = s;
            break;
        }
        case O_PRECISION: {
            cdz_precision p;
            if (cdz_precision_parse(v, &p) != CDZ_STATUS_OK)
                return demo_opt_error(err, "--precision", "'%s' is not one of strict, tf32, fp16, bf16", v);
            a->precision = v;
            break;
        }
        case ':': return demo_opt_error(err, argv[optind - 1], "needs a value");
        default:
            return demo_opt_error(err, "options", "unknown option '%s' (cadenza demo --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) return demo_opt_error(err, "arguments", "unexpected '%s' (cadenza demo --help)", argv[optind]);
    return 0;
}

/* ------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------- */
static double demo_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cdz_status demo_mkdir_p(const char *dir) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "path too long: '%s'", dir);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            const char keep = *p;
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
    if (access(dir, W_OK | X_OK) != 0)
        return cdz_error_set(CDZ_STATUS_IO, "cannot write into folder '%s': %s", dir, strerror(errno));
    return CDZ_STATUS_OK;
}

static const char *demo_mib(double bytes, char *buf, size_t n) {
    snprintf(buf, n, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

/* ------------------------------------------------------------------------------------
 * the test mix: 120 bpm in A minor (Am F C G, one bar each), deterministic for a seed
 * ---------------------------------------------------------------------------------- */
typedef struct demo_noise {
    uint64_t s;
} demo_noise;

static double demo_noise_next(demo_noise *n) { /* uniform [-1, 1) (xorshift64*) */
    n->s ^= n->s >> 12;
    n->s ^= n->s << 25;
    n->s ^= n->s >> 27;
    return (double)((n->s * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-52 - 1.0;
}

static double demo_midi_hz(double note) { return 440.0 * pow(2.0, (note - 69.0) / 12.0); }

/* planar mix [channels][frames] at samplerate; peak normalised to -1 dBFS */
static cdz_status demo_synth_mix(cdz_audio *mix, int32_t channels, int32_t samplerate, double seconds,
                                 uint64_t seed) {
    const int64_t frames = (int64_t)llround(seconds * samplerate);
    if (frames < 1)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "demo: %g s is less than one sample at %d Hz",
                             seconds, samplerate);
    const cdz_status st = cdz_audio_alloc(mix, channels, frames, samplerate);
    if (st != CDZ_STATUS_OK) return st;
    static const int roots[4] = {45, 41, 48, 43};        /* A2 F2 C3 G2 */
    static const int minor[4] = {1, 0, 0, 0};             /* Am F C G */
    static const int melody[16] = {69, 72, 76, 74, 72, 69, 72, 77, 76, 72, 67, 71, 74, 71, 67, 69};
    const double sr = samplerate, beat = 0.5, bar = 4 * beat, PI2 = 6.283185307179586;
    demo_noise nz = {seed * 0x9E3779B97F4A7C15ull ^ 0xD1B54A32D192ED03ull};
    if (!nz.s) nz.s = 1;
    double lead_phase = 0, peak = 0;
    float *L = mix->data, *R = channels > 1 ? mix->data + frames : NULL;
    for (int64_t i = 0; i < frames; i++) {
        const double t = (double)i / sr;
        const int b = (int)(t / bar);
        const double tb = t - b * bar;                  /* time in the bar */
        const int beat_i = (int)(tb / beat);
        const double tbeat = tb - beat_i * beat;        /* time in the beat */
        const double t8 = fmod(tb, beat / 2);           /* time in the eighth */
        const int root = roots[b % 4];
        double l = 0, r = 0;
        /* bass: root on the beat, octave on the off-beat, plucked */
        {
            const double note = root + ((int)(tb / (beat / 2)) % 2 ? 12 : 0);
            const double f = demo_midi_hz(note), env = (1 - exp(-t8 / 0.004)) * exp(-t8 / 0.18);
            const double v = 0.32 * env * (sin(PI2 * f * t) + 0.35 * sin(2 * PI2 * f * t) + 0.12 * sin(3 * PI2 * f * t));
            l += v, r += v;
        }
        /* chords: a triad an octave up, six harmonics (saw-like), slightly detuned left/right */
        {
            const int third = minor[b % 4] ? 3 : 4, iv[3] = {0, third, 7};
            const double env = (1 - exp(-tb / 0.03)) * (0.6 + 0.4 * exp(-tb / 0.6));
            for (int k = 0; k < 3; k++) {
                const double f = demo_midi_hz(root + 24 + iv[k]);
                for (int h = 1; h <= 6; h++) {
                    l += 0.045 / h * env * sin(PI2 * f * 0.9983 * h * t);
                    r += 0.045 / h * env * sin(PI2 * f * 1.0017 * h * t + 0.3 * h);
                }
            }
        }
        /* kick on 1 and 3: a sine sweeping 120 -> 45 Hz */
        if (beat_i % 2 == 0) { /* phase: the integral of 45 + 75 exp(-t / 0.03) Hz */
            const double ph = PI2 * (45 * tbeat + 75 * 0.03 * (1 - exp(-tbeat / 0.03)));
            const double v = 0.75 * exp(-tbeat / 0.14) * sin(ph);
            l += v, r += v;
        }
        /* snare on 2 and 4: a noise burst over a 190 Hz body */
        if (beat_i % 2 == 1) {
            const double v = 0.30 * exp(-tbeat / 0.07) * demo_noise_next(&nz) +
                             0.20 * exp(-tbeat / 0.05) * sin(PI2 * 190 * tbeat);
            l += 0.9 * v, r += v;
        }
        /* hi-hat on every eighth: short bright noise, a little right */
        {
            const double v = 0.07 * exp(-t8 / 0.015) * demo_noise_next(&nz);
            l += 0.7 * v, r += v;
        }
        /* "vocal": a lead with 5.5 Hz vibrato and a few formant-weighted harmonics, half notes */
        {
            const int n = (int)(t / (2 * beat));
            const double tn = t - n * 2 * beat;
            const double f = demo_midi_hz(melody[n % 16] + 0.25 * sin(PI2 * 5.5 * t) * (1 - exp(-tn / 0.25)));
            lead_phase += PI2 * f / sr;
            if (lead_phase > 1e6) lead_phase = fmod(lead_phase, PI2);
            const double env = (1 - exp(-tn / 0.04)) * (tn < 0.9 ? 1.0 : exp(-(tn - 0.9) / 0.03));
            const double v = 0.22 * env * (sin(lead_phase) + 0.5 * sin(2 * lead_phase) + 0.35 * sin(3 * lead_phase) +
                                           0.2 * sin(4 * lead_phase) + 0.12 * sin(5 * lead_phase));
            l += v, r += v;
        }
        if (R) {
            L[i] = (float)l;
            R[i] = (float)r;
        } else {
            L[i] = (float)(0.5 * (l + r));
        }
        peak = fmax(peak, fmax(fabs(l), fabs(r)));
    }
    /* any further channels repeat the first two */
    for (int32_t c = 2; c < channels; c++) memcpy(mix->data + c * frames, mix->data + (c % 2) * frames, (size_t)frames * sizeof(float));
    const float g = (float)(peak > 0 ? 0.891 / peak : 1.0);
    for (int64_t i = 0; i < frames * channels; i++) mix->data[i] *= g;
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * progress of the separation
 * ---------------------------------------------------------------------------------- */
typedef struct demo_progress {
    FILE *out;
    bool tty;
    double t0, last;
} demo_progress;

static void demo_on_progress(void *user, int64_t done, int64_t total) {
    demo_progress *p = user;
    const double now = demo_now();
    if (p->tty) {
        fprintf(p->out, "\r      %" PRId64 "/%" PRId64 " segments  %.1f s", done, total, now - p->t0);
        if (done == total) fputs("\r\033[K", p->out);
    } else if (done == total || now - p->last >= 2.0) {
        fprintf(p->out, "      %" PRId64 "/%" PRId64 " segments  %.1f s\n", done, total, now - p->t0);
        p->last = now;
    }
    fflush(p->out);
}

/* ------------------------------------------------------------------------------------
 * the demo
 * ---------------------------------------------------------------------------------- */
static int demo_fail(FILE *err, const char *what) {
    const cdz_error *e = cdz_last_error();
    fprintf(err, "cadenza demo: %s: %s: %s\n", what, cdz_status_name(e->code), e->message);
    return 1;
}

static double demo_rms_db(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    s = n ? sqrt(s / (double)n) : 0;
    return s > 0 ? 20 * log10(s) : -INFINITY;
}

static int demo_run(const demo_args *a, FILE *out, FILE *err) {
    const bool tty = isatty(fileno(out));
    cdz_device dev = {CDZ_DEVICE_CPU, 0};
    const char *why_dev = "no CUDA device is usable";
    if (!cdz_built_with_cuda()) why_dev = "this build has no CUDA: make CUDA=1 on a GPU machine";
    if (a->device) {
        if (cdz_device_parse(a->device, &dev) != CDZ_STATUS_OK)
            return demo_opt_error(err, "--device", "%s", cdz_last_message());
        if (dev.kind == CDZ_DEVICE_CUDA && !cdz_built_with_cuda())
            return demo_opt_error(err, "--device", "this build has no CUDA support (make CUDA=1)");
        why_dev = "--device";
    } else if (cdz_cuda_device_count() > 0) {
        dev = (cdz_device){CDZ_DEVICE_CUDA, 0};
        why_dev = "the first GPU";
    }
    const bool cuda = dev.kind == CDZ_DEVICE_CUDA;
    cdz_precision precision = CDZ_PRECISION_STRICT;
    if (a->precision) cdz_precision_parse(a->precision, &precision);
    const char *preset = a->preset ? a->preset : cuda ? "htdemucs" : "small";
    const int32_t batch = cuda ? 4 : 1;

    char devname[32], path[PATH_MAX], mix_path[PATH_MAX], stem_dir[PATH_MAX], buf[64];
    cdz_device_str(dev, devname, sizeof devname);
    if (snprintf(path, sizeof path, "%s/htdemucs-random.safetensors", a->out_dir) >= (int)sizeof path ||
        snprintf(mix_path, sizeof mix_path, "%s/mix.wav", a->out_dir) >= (int)sizeof mix_path ||
        snprintf(stem_dir, sizeof stem_dir, "%s/mix", a->out_dir) >= (int)sizeof stem_dir)
        return demo_opt_error(err, "--out", "the folder name is too long");
    if (demo_mkdir_p(a->out_dir) != CDZ_STATUS_OK) return demo_fail(err, "--out");

    fprintf(out, "cadenza demo: HTDemucs source separation on built-in random weights and a synthetic mix\n");
    if (cuda) {
        cdz_device_info info;
        if (cdz_device_get_info(dev, &info) == CDZ_STATUS_OK)
            fprintf(out, "  device     %s (%s, %s), precision %s\n", devname, info.name, why_dev,
                    cdz_precision_name(precision));
    } else {
        fprintf(out, "  device     cpu (%s), precision %s\n", why_dev, cdz_precision_name(precision));
    }
    if (!a->preset && !cuda)
        fprintf(out, "  preset     small: no GPU, so htdemucs at a sixth of the width (channels 8, transformer 64)\n"
                     "             -- the full-size model takes minutes per 7.8 s segment on the CPU reference\n"
                     "             ops; --preset htdemucs runs it anyway\n");
    else
        fprintf(out, "  preset     %s%s\n", preset,
                !strcmp(preset, "htdemucs") ? " (the published 955717e8 configuration: 4 sources, channels 48, "
                                              "depth 4, nfft 4096, transformer 5 x 512)" : "");
    fprintf(out, "  output     %s/\n", a->out_dir);

    int rc = 1;
    cdz_weights *w = NULL;
    cdz_arena *arena = NULL;
    cdz_htdemucs *model = NULL;
    cdz_ctx *ctx = NULL;
    cdz_separator *sep = NULL;
    cdz_audio mix = {0};
    float *stems[CDZ_HTDEMUCS_MAX_SOURCES] = {0};
    double t_write = 0, t_mix = 0, t_load = 0, t_sep = 0, t_warm = -1, t_stems = 0;

    /* 1. the checkpoint */
    fprintf(out, "[1/4] writing %s (preset %s, seed %" PRIu64 ") ...\n", path, preset, a->seed);
    fflush(out);
    double t0 = demo_now();
    if (cdz_htdemucs_write_random(path, preset, a->seed) != CDZ_STATUS_OK) {
        demo_fail(err, "writing the checkpoint");
        goto done;
    }
    t_write = demo_now() - t0;
    if (cdz_weights_open(path, &w) != CDZ_STATUS_OK) {
        demo_fail(err, path);
        goto done;
    }
    size_t weight_bytes = 0, params = 0;
    for (size_t i = 0; i < cdz_weights_count(w); i++) {
        weight_bytes += (size_t)cdz_weights_at(w, i)->nbytes;
        params += (size_t)(cdz_weights_at(w, i)->nbytes / sizeof(float));
    }
    fprintf(out, "      %zu tensors, %.2f M parameters, %s in %.2f s\n", cdz_weights_count(w), (double)params / 1e6,
            demo_mib((double)weight_bytes, buf, sizeof buf), t_write);

    /* 2. the model (before the mix: its rate and channel count shape the mix) */
    t0 = demo_now();
    const size_t arena_bytes = cuda ? 0 : weight_bytes + weight_bytes / 8 + (64u << 20);
    if (cdz_arena_create(dev, arena_bytes, &arena) != CDZ_STATUS_OK) {
        demo_fail(err, "device memory");
        goto done;
    }
    if (cdz_htdemucs_load(w, arena, &model) != CDZ_STATUS_OK) {
        demo_fail(err, path);
        goto done;
    }
    cdz_htdemucs_info info;
    cdz_htdemucs_get_info(model, &info);
    cdz_ctx_options copt = {.precision = precision};
    if (cdz_ctx_create(dev, cuda ? arena : NULL, &copt, &ctx) != CDZ_STATUS_OK ||
        cdz_separator_create(model, ctx, batch, &sep) != CDZ_STATUS_OK) {
        demo_fail(err, devname);
        goto done;
    }
    t_load = demo_now() - t0;
    fprintf(out, "[2/4] loaded on %s in %.2f s: %d sources (", devname, t_load, info.sources);
    for (int32_t k = 0; k < info.sources; k++) fprintf(out, "%s%s", k ? ", " : "", info.source_names[k]);
    fprintf(out, "), segment %.2f s, %s of weights\n", (double)info.segment_samples / info.samplerate,
            demo_mib((double)info.weight_bytes, buf, sizeof buf));

    /* 3. the mix */
    fprintf(out, "[3/4] synthesising a %.1f s test mix (%d ch, %d Hz): bass, chords, drums, a vibrato lead\n",
            a->seconds, info.audio_channels, info.samplerate);
    t0 = demo_now();
    if (demo_synth_mix(&mix, info.audio_channels, info.samplerate, a->seconds, a->seed) != CDZ_STATUS_OK) {
        demo_fail(err, "--seconds");
        goto done;
    }
    const bool can_write = cdz_audio_can_read();
    if (can_write) {
        if (cdz_audio_write(mix_path, &mix, CDZ_AUDIO_FORMAT_WAV, 16) != CDZ_STATUS_OK) {
            demo_fail(err, mix_path);
            goto done;
        }
        fprintf(out, "      -> %s\n", mix_path);
    } else {
        fprintf(out, "      (this build has no libsndfile: the mix and stems stay in memory)\n");
    }
    t_mix = demo_now() - t0;

    /* 4. separation */
    const size_t n = (size_t)mix.frames * (size_t)mix.channels;
    for (int32_t k = 0; k < info.sources; k++)
        if (!(stems[k] = malloc(n * sizeof(float)))) {
            cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "no host memory for the stems");
            demo_fail(err, "stems");
            goto done;
        }
    cdz_separate_options opt;
    cdz_separate_options_default(&opt);
    opt.seed = a->seed;
    opt.shifts = a->shifts;
    demo_progress prog = {.out = out, .tty = tty};
    opt.progress = demo_on_progress;
    opt.progress_user = &prog;
    fprintf(out, "[4/4] separating on %s (batch %d, shifts %d, overlap %g)%s ...\n", devname, batch, opt.shifts,
            opt.overlap, cuda ? ", twice: the first run makes the plans" : "");
    fflush(out);
    for (int run = 0; run < (cuda ? 2 : 1); run++) {
        prog.t0 = prog.last = t0 = demo_now();
        if (cdz_separate(sep, &opt, &mix, stems) != CDZ_STATUS_OK) {
            demo_fail(err, "separating");
            goto done;
        }
        *(run ? &t_warm : &t_sep) = demo_now() - t0;
    }
    t0 = demo_now();
    if (can_write) {
        if (demo_mkdir_p(stem_dir) != CDZ_STATUS_OK) {
            demo_fail(err, stem_dir);
            goto done;
        }
    }
    for (int32_t k = 0; k < info.sources; k++) {
        cdz_audio stem = {.data = stems[k], .channels = mix.channels, .samplerate = mix.samplerate, .frames = mix.frames};
        const double db = demo_rms_db(stems[k], (int64_t)n);
        bool finite = true;
        for (size_t i = 0; i < n && finite; i++) finite = isfinite(stems[k][i]);
        if (!finite) {
            fprintf(err, "cadenza demo: the %s stem has non-finite samples (a bug: please report it)\n",
                    info.source_names[k]);
            goto done;
        }
        char file[PATH_MAX + 32];
        snprintf(file, sizeof file, "%s/%s.wav", stem_dir, info.source_names[k]);
        if (can_write && (cdz_audio_prevent_clip(&stem, CDZ_CLIP_RESCALE) != CDZ_STATUS_OK ||
                          cdz_audio_write(file, &stem, CDZ_AUDIO_FORMAT_WAV, 16) != CDZ_STATUS_OK)) {
            demo_fail(err, file);
            goto done;
        }
        fprintf(out, "      %-8s rms %6.1f dBFS%s%s\n", info.source_names[k], db, can_write ? "  -> " : "",
                can_write ? file : "");
    }
    t_stems = demo_now() - t0;

    const double sep_t = t_warm >= 0 ? t_warm : t_sep, audio_s = (double)mix.frames / mix.samplerate;
    fprintf(out, "\ntiming (%s, preset %s, %.1f s of audio)\n", devname, preset, audio_s);
    fprintf(out, "  write random checkpoint  %8.3f s\n", t_write);
    fprintf(out, "  load model               %8.3f s\n", t_load);
    fprintf(out, "  synthesise + write mix   %8.3f s\n", t_mix);
    if (t_warm >= 0) {
        fprintf(out, "  separate (first run)     %8.3f s   (includes plan set-up and algorithm choice)\n", t_sep);
        fprintf(out, "  separate (second run)    %8.3f s\n", t_warm);
    } else {
        fprintf(out, "  separate                 %8.3f s\n", t_sep);
    }
    fprintf(out, "  write stems              %8.3f s\n", t_stems);
    fprintf(out, "  real-time factor         %8.4f     (%.3g s of compute per second of audio; %.3gx real time)\n",
            sep_t / audio_s, sep_t / audio_s, audio_s / sep_t);
    /* Memory: the arena's high-water mark (weights + plans + staging on a GPU) and the
     * process's peak RSS, beside the track buffers it must hold (mix + stems, f32). */
    cdz_arena_stats as;
    cdz_arena_get_stats(arena, &as);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double mib = 1024.0 * 1024.0;
    const double track_bytes = (double)mix.frames * mix.channels * sizeof(float) * (1 + info.sources);
    fprintf(out, "\nmemory\n");
    fprintf(out, "  arena peak (%s)        %8.1f MiB of %.1f MiB reserved\n", devname, as.peak / mib,
            as.reserved / mib);
    fprintf(out, "  host peak RSS            %8.1f MiB   (mix + stems buffers: %.1f MiB)\n",
            ru.ru_maxrss / 1024.0, track_bytes / mib);
    fprintf(out,
            "\nNOTE: these weights are RANDOM (seed %" PRIu64 "), not trained. The stems are meaningless: they only\n"
            "show that the pipeline runs end to end and how fast. To separate real music, convert a published\n"
            "checkpoint as docs/weights.md explains, then run cadenza separate, e.g.\n"
            "  weights-tools/cadenza-convert demucs 955717e8-8726e21a.th -o htdemucs.safetensors\n"
            "  cadenza separate song.wav -m htdemucs.safetensors -o stems/\n",
            a->seed);
    rc = 0;
done:
    for (int32_t k = 0; k < CDZ_HTDEMUCS_MAX_SOURCES; k++) free(stems[k]);
    cdz_audio_free(&mix);
    cdz_separator_destroy(sep);
    cdz_ctx_destroy(ctx);
    cdz_htdemucs_free(model);
    cdz_arena_destroy(arena);
    cdz_weights_close(w);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    demo_args a;
    const int rc = demo_parse_args(argc, argv, &a, stderr);
    if (rc) return rc < 0 ? 0 : rc;
    return demo_run(&a, stdout, stderr);
}
