/*
 * test_audio: audio files, resampling, channel conversion and clip prevention (runtime/audio.c).
 *
 * Round trips write then read WAV 16/24/float, FLAC 16/24 and (through libsndfile directly)
 * AIFF and OGG, with tolerances from the bit depth. The resampler is measured on a sine: its
 * frequency (zero crossings) and amplitude (least-squares fit) must survive 48000 -> 44100
 * and back. Clip modes are compared with demucs' formulas written here in f32. Error paths:
 * missing files, folders, 0-byte and 0-frame files, text, a 3-channel file, NaN samples,
 * truncated data, the size cap, bad write arguments.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#ifdef CDZ_HAVE_SNDFILE
#include <sndfile.h>
#endif

static char tmpdir[64];

static const char *tmp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", tmpdir, name);
    return buf;
}

static bool has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* Random planar audio in [-amp, amp). */
static void fill_random(th_suite *s, cdz_audio *a, double amp) {
    for (int64_t i = 0; i < a->frames * a->channels; i++) a->data[i] = (float)th_rand_uniform(s, -amp, amp);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN counts as worst */
    }
    return m;
}

/* A hand-made WAV file: format 1 (PCM) or 3 (float), `frames` frames of `data` (may be
 * shorter than announced when truncate_to >= 0). */
static void write_raw_wav(const char *path, int fmt, int channels, int rate, int bits, int64_t frames,
                          const void *data, int64_t truncate_to) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    uint32_t block = (uint32_t)(channels * bits / 8), data_bytes = (uint32_t)(frames * block);
    uint32_t riff = 36 + data_bytes, fmt_len = 16, byterate = (uint32_t)rate * block;
    uint16_t tag = (uint16_t)fmt, ch = (uint16_t)channels, ba = (uint16_t)block, bps = (uint16_t)bits;
    uint32_t r = (uint32_t)rate;
    fwrite("RIFF", 1, 4, f);
    fwrite(&riff, 4, 1, f);
    fwrite("WAVEfmt ", 1, 8, f);
    fwrite(&fmt_len, 4, 1, f);
    fwrite(&tag, 2, 1, f);
    fwrite(&ch, 2, 1, f);
    fwrite(&r, 4, 1, f);
    fwrite(&byterate, 4, 1, f);
    fwrite(&ba, 2, 1, f);
    fwrite(&bps, 2, 1, f);
    fwrite("data", 1, 4, f);
    fwrite(&data_bytes, 4, 1, f);
    int64_t n = truncate_to >= 0 ? truncate_to : frames;
    if (n > 0 && data) fwrite(data, block, (size_t)n, f);
    fclose(f);
}

/* ------------------------------------------------------------------------------------ */

static void test_roundtrip(th_suite *s) {
    static const struct {
        cdz_audio_format fmt;
        const char *ext;
        int bits;
        double tol; /* max |read - written| */
        const char *why;
    } cases[] = {
        {CDZ_AUDIO_FORMAT_WAV, "wav", 16, 1.0 / 16384, "16-bit: x*32767 rounded, read as /32768: < 1.5 * 2^-15"},
        {CDZ_AUDIO_FORMAT_WAV, "wav", 24, 1.0 / 4194304, "24-bit: x*(2^23-1) rounded, read /2^23: < 1.5 * 2^-23"},
        {CDZ_AUDIO_FORMAT_WAV, "wav", 32, 0.0, "float WAV stores f32 exactly"},
        {CDZ_AUDIO_FORMAT_FLAC, "flac", 16, 1.0 / 16384, "FLAC is lossless over 16-bit PCM"},
        {CDZ_AUDIO_FORMAT_FLAC, "flac", 24, 1.0 / 4194304, "FLAC is lossless over 24-bit PCM"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int channels = 1; channels <= 2; channels++) {
            if (!th_begin(s, "roundtrip", "%s %d-bit, %d ch", cases[k].ext, cases[k].bits, channels)) continue;
            if (!cdz_audio_can_read()) {
                th_skip(s, "roundtrip", "built without libsndfile");
                th_end(s);
                continue;
            }
            const int rate = channels == 1 ? 22050 : 44100;
            const int64_t frames = 12345 + channels;
            cdz_audio a, b;
            th_ok(s, "alloc", cdz_audio_alloc(&a, channels, frames, rate));
            fill_random(s, &a, 0.95);
            a.data[0] = 0.f;
            a.data[1] = -1.f; /* full scale is representable on the negative side */
            char path[128], name[32];
            snprintf(name, sizeof name, "rt%zu_%d.%s", k, channels, cases[k].ext);
            /* AUTO picks the format from the extension */
            th_ok(s, "write", cdz_audio_write(tmp_path(path, sizeof path, name), &a, CDZ_AUDIO_FORMAT_AUTO,
                                              cases[k].bits));
            if (th_ok(s, "read", cdz_audio_read(path, &b))) {
                th_check(s, "shape", b.channels == channels && b.frames == frames && b.samplerate == rate,
                         "%d ch x %lld frames at %d Hz", b.channels, (long long)b.frames, b.samplerate);
                th_check(s, "format name", has(b.format, cases[k].fmt == CDZ_AUDIO_FORMAT_FLAC ? "FLAC" : "WAV"),
                         "'%s'", b.format);
                if (b.frames == frames) {
                    double err = max_abs_diff(a.data, b.data, (size_t)(frames * channels));
                    th_check(s, "values", err <= cases[k].tol, "max |err| %.3g <= %.3g (%s)", err, cases[k].tol,
                             cases[k].why);
                }
            }
            /* explicit format, and saturation of out-of-range samples in PCM */
            if (cases[k].bits != 32) {
                a.data[2] = 1.7f;
                a.data[3] = -3.f;
                snprintf(name, sizeof name, "clip%zu_%d.bin", k, channels);
                th_ok(s, "write explicit", cdz_audio_write(tmp_path(path, sizeof path, name), &a, cases[k].fmt,
                                                           cases[k].bits));
                cdz_audio c;
                if (th_ok(s, "read explicit", cdz_audio_read(path, &c)))
                    th_check(s, "saturates", c.data[2] > 0.999f && c.data[3] == -1.f,
                             "1.7 -> %.6f, -3 -> %.6f (must not wrap)", (double)c.data[2], (double)c.data[3]);
                cdz_audio_free(&c);
            }
            cdz_audio_free(&a);
            cdz_audio_free(&b);
            th_end(s);
        }
    }
}

/* A FLAC of constants decodes to far more frames than the file has bytes: the read buffer
 * starts at one frame per byte and grows (moving the channel planes) as it decodes. */
static void test_growth(th_suite *s) {
    if (!th_begin(s, "read-growth", "FLAC of constants, 300000 stereo frames in a few KB")) return;
    if (!cdz_audio_can_read()) {
        th_skip(s, "growth", "built without libsndfile");
        th_end(s);
        return;
    }
    const int64_t frames = 300000;
    cdz_audio a, b;
    th_ok(s, "alloc", cdz_audio_alloc(&a, 2, frames, 44100));
    for (int64_t i = 0; i < frames; i++) a.data[frames + i] = 0.25f; /* left 0, right 0.25 */
    a.data[frames - 1] = -0.5f;                                     /* the last left sample */
    char path[128];
    th_ok(s, "write", cdz_audio_write(tmp_path(path, sizeof path, "const.flac"), &a, CDZ_AUDIO_FORMAT_AUTO, 16));
    struct stat st;
    memset(&st, 0, sizeof st);
    const bool stat_ok = stat(path, &st) == 0;
    th_check(s, "compressed", stat_ok && st.st_size < frames / 4, "%lld bytes for %lld frames",
             (long long)st.st_size, (long long)frames);
    if (th_ok(s, "read", cdz_audio_read(path, &b))) {
        th_check(s, "length", b.frames == frames && b.channels == 2, "%lld frames", (long long)b.frames);
        bool left = true, right = true;
        for (int64_t i = 0; i < frames - 1 && b.frames == frames; i++) left &= b.data[i] == 0.f;
        for (int64_t i = 0; i < frames && b.frames == frames; i++) right &= b.data[frames + i] == 0.25f;
        th_check(s, "planes intact after growth", left && right && b.data[frames - 1] == -0.5f,
                 "left zeros %d, right 0.25 %d, last left %g", left, right, (double)b.data[frames - 1]);
    }
    cdz_audio_free(&a);
    cdz_audio_free(&b);
    th_end(s);
}

#ifdef CDZ_HAVE_SNDFILE
/* Formats cadenza does not write but must read: AIFF 24-bit and OGG Vorbis (lossy). */
static void test_other_formats(th_suite *s) {
    static const struct {
        int format;
        const char *name;
        double tol;
        const char *why;
    } cases[] = {
        {SF_FORMAT_AIFF | SF_FORMAT_PCM_24, "aiff", 1.0 / 4194304, "24-bit PCM"},
        {SF_FORMAT_OGG | SF_FORMAT_VORBIS, "ogg", 0.2, "Vorbis is lossy: only the rough waveform survives"},
    };
    for (size_t k = 0; k < 2; k++) {
        if (!th_begin(s, "read-format", "%s", cases[k].name)) continue;
        SF_INFO info = {.samplerate = 44100, .channels = 2, .format = cases[k].format};
        if (!sf_format_check(&info)) {
            th_skip(s, cases[k].name, "this libsndfile cannot write it");
            th_end(s);
            continue;
        }
        const int64_t frames = 44100;
        float *inter = th_alloc(s, (size_t)frames * 2 * sizeof(float));
        for (int64_t i = 0; i < frames; i++)
            for (int c = 0; c < 2; c++) inter[i * 2 + c] = 0.5f * sinf(2.f * 3.14159265f * 440.f * (float)i / 44100.f + (float)c);
        char path[128];
        tmp_path(path, sizeof path, cases[k].name);
        SNDFILE *f = sf_open(path, SFM_WRITE, &info);
        th_check(s, "libsndfile write", f != NULL, "%s", f ? "ok" : sf_strerror(NULL));
        if (f) {
            sf_writef_float(f, inter, frames);
            sf_close(f);
            cdz_audio a;
            if (th_ok(s, "read", cdz_audio_read(path, &a))) {
                th_check(s, "shape", a.channels == 2 && a.frames == frames && a.samplerate == 44100,
                         "%d ch x %lld frames at %d Hz", a.channels, (long long)a.frames, a.samplerate);
                double err = 0;
                for (int64_t i = 0; i < a.frames && a.frames == frames; i++)
                    for (int c = 0; c < 2; c++) {
                        double d = fabs((double)a.data[c * frames + i] - inter[i * 2 + c]);
                        if (d > err) err = d;
                    }
                th_check(s, "values (planar)", err <= cases[k].tol, "max |err| %.3g <= %.3g (%s)", err, cases[k].tol,
                         cases[k].why);
            }
            cdz_audio_free(&a);
        }
        th_end(s);
    }
}
#endif

static void test_channels(th_suite *s) {
    if (!th_begin(s, "to-channels", "mono->stereo, stereo->stereo, refusals")) return;
    cdz_audio m, st, out;
    th_ok(s, "alloc mono", cdz_audio_alloc(&m, 1, 1001, 44100));
    fill_random(s, &m, 1.0);
    if (th_ok(s, "1 -> 2", cdz_audio_to_channels(&m, 2, &out))) {
        th_check(s, "shape", out.channels == 2 && out.frames == 1001 && out.samplerate == 44100, "%d x %lld",
                 out.channels, (long long)out.frames);
        th_compare_bytes(s, "left = mono", out.data, m.data, 1001 * sizeof(float));
        th_compare_bytes(s, "right = mono", out.data + 1001, m.data, 1001 * sizeof(float));
    }
    cdz_audio_free(&out);
    th_ok(s, "alloc stereo", cdz_audio_alloc(&st, 2, 77, 48000));
    fill_random(s, &st, 1.0);
    if (th_ok(s, "2 -> 2", cdz_audio_to_channels(&st, 2, &out)))
        th_compare_bytes(s, "copy", out.data, st.data, 2 * 77 * sizeof(float));
    cdz_audio_free(&out);
    th_expect_status(s, "2 -> 1 refused", cdz_audio_to_channels(&st, 1, &out), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_audio three;
    th_ok(s, "alloc 3 ch", cdz_audio_alloc(&three, 3, 10, 44100));
    th_expect_status(s, "3 -> 2 refused", cdz_audio_to_channels(&three, 2, &out), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "message names the count", has(cdz_last_message(), "3 channels"), "%s", cdz_last_message());
    th_expect_status(s, "NULL input", cdz_audio_to_channels(NULL, 2, &out), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "0 channels", cdz_audio_to_channels(&m, 0, &out), CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "alloc 0 frames", cdz_audio_alloc(&out, 2, 0, 44100), CDZ_STATUS_INVALID_ARGUMENT);
    cdz_audio_free(&m);
    cdz_audio_free(&st);
    cdz_audio_free(&three);
    cdz_audio_free(&out); /* a second free of a zeroed struct is harmless */
    th_end(s);
}

/* Least-squares fit of a*sin + b*cos at frequency f over [lo, hi): amplitude and the
 * residual RMS relative to it. */
static void sine_fit(const float *x, int64_t lo, int64_t hi, double f, double rate, double *amp, double *resid) {
    double ss = 0, cc = 0, sc = 0, xs = 0, xc = 0;
    for (int64_t i = lo; i < hi; i++) {
        double w = 2 * M_PI * f * (double)i / rate, sn = sin(w), cs = cos(w);
        ss += sn * sn;
        cc += cs * cs;
        sc += sn * cs;
        xs += x[i] * sn;
        xc += x[i] * cs;
    }
    double det = ss * cc - sc * sc, a = (xs * cc - xc * sc) / det, b = (xc * ss - xs * sc) / det;
    double r = 0;
    for (int64_t i = lo; i < hi; i++) {
        double w = 2 * M_PI * f * (double)i / rate, d = x[i] - (a * sin(w) + b * cos(w));
        r += d * d;
    }
    *amp = sqrt(a * a + b * b);
    *resid = sqrt(r / (double)(hi - lo)) / (*amp / sqrt(2.0));
}

/* Frequency from the first and last rising zero crossings (linear interpolation). */
static double zero_crossing_freq(const float *x, int64_t lo, int64_t hi, double rate) {
    double first = -1, last = -1;
    int64_t count = 0;
    for (int64_t i = lo; i + 1 < hi; i++) {
        if (x[i] < 0 && x[i + 1] >= 0) {
            double t = (double)i + (double)x[i] / ((double)x[i] - (double)x[i + 1]);
            if (first < 0) first = t;
            last = t;
            count++;
        }
    }
    return count > 1 ? (double)(count - 1) * rate / (last - first) : 0;
}

static void test_resample(th_suite *s) {
    static const struct {
        int from, to;
        double f;
    } cases[] = {{48000, 44100, 1000.0}, {44100, 48000, 997.0}, {48000, 44100, 15000.0}, {22050, 44100, 440.0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (!th_begin(s, "resample", "%d -> %d Hz, sine %.0f Hz", cases[k].from, cases[k].to, cases[k].f)) continue;
        if (!cdz_audio_can_resample()) {
            th_skip(s, "resample", "built without libsoxr");
            th_end(s);
            continue;
        }
        const int64_t frames = cases[k].from; /* 1 s */
        const double amp = 0.5;
        cdz_audio in, out;
        th_ok(s, "alloc", cdz_audio_alloc(&in, 2, frames, cases[k].from));
        for (int64_t i = 0; i < frames; i++) {
            in.data[i] = (float)(amp * sin(2 * M_PI * cases[k].f * (double)i / cases[k].from));
            in.data[frames + i] = (float)(0.5 * amp * cos(2 * M_PI * cases[k].f * (double)i / cases[k].from));
        }
        if (th_ok(s, "resample", cdz_audio_resample(&in, cases[k].to, &out))) {
            const int64_t want = (int64_t)llround((double)frames * cases[k].to / cases[k].from);
            th_check(s, "length", out.frames == want && out.channels == 2 && out.samplerate == cases[k].to,
                     "%lld frames (expected round(%lld * %d / %d) = %lld)", (long long)out.frames, (long long)frames,
                     cases[k].to, cases[k].from, (long long)want);
            /* away from the edges, where the filter sees the implicit silence */
            const int64_t lo = out.frames / 10, hi = out.frames - out.frames / 10;
            for (int c = 0; c < 2; c++) {
                const float *x = out.data + (size_t)c * (size_t)out.frames;
                double a, resid, expect = c == 0 ? amp : 0.5 * amp;
                sine_fit(x, lo, hi, cases[k].f, cases[k].to, &a, &resid);
                th_check(s, c ? "amplitude R" : "amplitude L", fabs(a / expect - 1) < 1e-3,
                         "%.6f vs %.6f (passband ripple of SOXR_HQ is far below 0.1%%)", a, expect);
                th_check(s, c ? "pure sine R" : "pure sine L", resid < 1e-3,
                         "residual/RMS %.3g < 1e-3 (aliasing, imaging, wrong frequency all raise it)", resid);
                double f = zero_crossing_freq(x, lo, hi, cases[k].to);
                th_check(s, c ? "frequency R" : "frequency L", fabs(f - cases[k].f) < 1e-5 * cases[k].f,
                         "%.5f Hz vs %.1f Hz (1e-5 relative: linear interpolation of crossings at 3 "
                         "samples per period is that coarse)", f, cases[k].f);
            }
        }
        cdz_audio_free(&out);
        cdz_audio same;
        if (th_ok(s, "same rate", cdz_audio_resample(&in, cases[k].from, &same)))
            th_compare_bytes(s, "same rate is a copy", same.data, in.data, (size_t)frames * 2 * sizeof(float));
        cdz_audio_free(&same);
        th_expect_status(s, "rate 0", cdz_audio_resample(&in, 0, &out), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "in place", cdz_audio_resample(&in, 44100, &in), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_audio_free(&in);
        th_end(s);
    }
}

static void test_clip(th_suite *s) {
    for (int mode = 0; mode < 4; mode++) {
        for (int loud = 0; loud < 2; loud++) {
            const char *name = cdz_clip_mode_name((cdz_clip_mode)mode);
            if (!th_begin(s, "clip", "%s, %s", name, loud ? "peak 1.7" : "peak 0.9")) continue;
            cdz_audio a;
            th_ok(s, "alloc", cdz_audio_alloc(&a, 2, 999, 44100));
            fill_random(s, &a, loud ? 1.2 : 0.8);
            a.data[500] = loud ? -1.7f : 0.9f;
            float *x = th_alloc(s, 2 * 999 * sizeof(float)), *want = th_alloc(s, 2 * 999 * sizeof(float));
            memcpy(x, a.data, 2 * 999 * sizeof(float));
            /* demucs/audio.py prevent_clip, in f32 as torch evaluates it */
            float peak = 0;
            for (int i = 0; i < 2 * 999; i++) peak = fabsf(x[i]) > peak ? fabsf(x[i]) : peak;
            const float div = 1.01f * peak > 1.f ? 1.01f * peak : 1.f;
            for (int i = 0; i < 2 * 999; i++) {
                switch (mode) {
                case CDZ_CLIP_RESCALE: want[i] = x[i] / div; break;
                case CDZ_CLIP_CLAMP: want[i] = fminf(fmaxf(x[i], -0.99f), 0.99f); break;
                case CDZ_CLIP_TANH: want[i] = tanhf(x[i]); break;
                default: want[i] = x[i]; break;
                }
            }
            cdz_clip_mode parsed;
            th_ok(s, "parse name", cdz_clip_mode_parse(name, &parsed));
            th_check(s, "parse round trip", parsed == (cdz_clip_mode)mode, "%d", (int)parsed);
            th_ok(s, "prevent_clip", cdz_audio_prevent_clip(&a, (cdz_clip_mode)mode));
            th_compare_bytes(s, "= formula", a.data, want, 2 * 999 * sizeof(float));
            if (mode == CDZ_CLIP_RESCALE) {
                float m = 0;
                for (int i = 0; i < 2 * 999; i++) m = fabsf(a.data[i]) > m ? fabsf(a.data[i]) : m;
                th_check(s, "rescale peak", loud ? fabsf(m - 1.f / 1.01f) < 1e-6f : m == 0.9f,
                         "peak after = %.7f", (double)m);
            }
            cdz_audio_free(&a);
            th_end(s);
        }
    }
    if (th_begin(s, "clip", "parse errors")) {
        cdz_clip_mode m;
        th_expect_status(s, "unknown mode", cdz_clip_mode_parse("soft", &m), CDZ_STATUS_INVALID_ARGUMENT);
        th_expect_status(s, "NULL mode", cdz_clip_mode_parse(NULL, &m), CDZ_STATUS_INVALID_ARGUMENT);
        cdz_audio_format f;
        th_ok(s, "format FLAC", cdz_audio_format_parse("FLAC", &f));
        th_check(s, "format value", f == CDZ_AUDIO_FORMAT_FLAC, "%d", (int)f);
        th_expect_status(s, "format mp3", cdz_audio_format_parse("mp3", &f), CDZ_STATUS_INVALID_ARGUMENT);
        th_end(s);
    }
}

static void test_read_errors(th_suite *s) {
    if (!th_begin(s, "read-errors", "missing, folder, empty, text, 0 frames, 3 ch, NaN, truncated, cap")) return;
    if (!cdz_audio_can_read()) {
        th_expect_status(s, "no libsndfile", cdz_audio_read("x.wav", &(cdz_audio){0}), CDZ_STATUS_UNSUPPORTED);
        th_end(s);
        return;
    }
    char path[128];
    cdz_audio a;
    th_expect_status(s, "missing file", cdz_audio_read(tmp_path(path, sizeof path, "missing.wav"), &a), CDZ_STATUS_IO);
    th_check(s, "message names the file", has(cdz_last_message(), "missing.wav"), "%s", cdz_last_message());
    th_check(s, "output zeroed", a.data == NULL && a.frames == 0, "data %p", (void *)a.data);
    th_expect_status(s, "folder", cdz_audio_read(tmpdir, &a), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "says folder", has(cdz_last_message(), "directory"), "%s", cdz_last_message());
    th_expect_status(s, "empty path", cdz_audio_read("", &a), CDZ_STATUS_INVALID_ARGUMENT);

    FILE *f = fopen(tmp_path(path, sizeof path, "empty.wav"), "wb");
    if (f) fclose(f);
    th_expect_status(s, "0-byte file", cdz_audio_read(path, &a), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "says empty", has(cdz_last_message(), "empty"), "%s", cdz_last_message());

    f = fopen(tmp_path(path, sizeof path, "notes.wav"), "wb");
    if (f) {
        fputs("these are not the samples you are looking for\n", f);
        fclose(f);
    }
    th_expect_status(s, "text file", cdz_audio_read(path, &a), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "says cannot decode", has(cdz_last_message(), "cannot decode") && has(cdz_last_message(), "notes.wav"),
             "%s", cdz_last_message());

    write_raw_wav(tmp_path(path, sizeof path, "zero.wav"), 1, 2, 44100, 16, 0, NULL, -1);
    th_expect_status(s, "0 frames", cdz_audio_read(path, &a), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "says no audio", has(cdz_last_message(), "no audio"), "%s", cdz_last_message());

    /* a 3-channel file reads; converting it for a stereo model is refused, naming the count */
    int16_t pcm3[3 * 100];
    for (int i = 0; i < 300; i++) pcm3[i] = (int16_t)(i * 97 - 14000);
    write_raw_wav(tmp_path(path, sizeof path, "three.wav"), 1, 3, 44100, 16, 100, pcm3, -1);
    if (th_ok(s, "3-channel read", cdz_audio_read(path, &a))) {
        th_check(s, "3 channels planar", a.channels == 3 && a.frames == 100 && a.data[100] == pcm3[1] / 32768.f,
                 "%d ch, ch1[0] = %g", a.channels, (double)a.data[100]);
        cdz_audio b;
        th_expect_status(s, "3 ch for a stereo model", cdz_audio_to_channels(&a, 2, &b), CDZ_STATUS_INVALID_ARGUMENT);
        th_check(s, "names 3 channels", has(cdz_last_message(), "3 channels"), "%s", cdz_last_message());
    }
    cdz_audio_free(&a);

    float fl[2 * 50];
    for (int i = 0; i < 100; i++) fl[i] = 0.01f * (float)i;
    fl[2 * 31 + 1] = NAN;
    write_raw_wav(tmp_path(path, sizeof path, "nan.wav"), 3, 2, 44100, 32, 50, fl, -1);
    th_expect_status(s, "NaN sample", cdz_audio_read(path, &a), CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "names NaN, frame and channel", has(cdz_last_message(), "NaN") && has(cdz_last_message(), "sample 31 of channel 1"),
             "%s", cdz_last_message());
    fl[2 * 31 + 1] = INFINITY;
    write_raw_wav(path, 3, 2, 44100, 32, 50, fl, -1);
    th_expect_status(s, "Inf sample", cdz_audio_read(path, &a), CDZ_STATUS_INVALID_ARGUMENT);

    /* the header announces 100000 frames, the file holds 10: read what is there */
    write_raw_wav(tmp_path(path, sizeof path, "trunc.wav"), 1, 1, 8000, 16, 100000, pcm3, 10);
    if (th_ok(s, "truncated read", cdz_audio_read(path, &a)))
        th_check(s, "truncated length", a.frames == 10, "%lld frames", (long long)a.frames);
    cdz_audio_free(&a);

    /* the cap on decoded bytes */
    cdz_audio big;
    th_ok(s, "alloc", cdz_audio_alloc(&big, 2, 5000, 44100));
    th_ok(s, "write 5000 frames", cdz_audio_write(tmp_path(path, sizeof path, "cap.wav"), &big, CDZ_AUDIO_FORMAT_WAV, 16));
    setenv("CADENZA_AUDIO_MAX_BYTES", "20000", 1);
    th_expect_status(s, "over CADENZA_AUDIO_MAX_BYTES", cdz_audio_read(path, &a), CDZ_STATUS_TOO_LARGE);
    th_check(s, "names the limit", has(cdz_last_message(), "CADENZA_AUDIO_MAX_BYTES"), "%s", cdz_last_message());
    unsetenv("CADENZA_AUDIO_MAX_BYTES");
    if (th_ok(s, "under the default cap", cdz_audio_read(path, &a)))
        th_check(s, "length", a.frames == 5000, "%lld", (long long)a.frames);
    cdz_audio_free(&a);
    cdz_audio_free(&big);
    th_end(s);
}

static void test_write_errors(th_suite *s) {
    if (!th_begin(s, "write-errors", "bits, FLAC float, extension, NaN, missing folder")) return;
    char path[128];
    cdz_audio a;
    th_ok(s, "alloc", cdz_audio_alloc(&a, 2, 100, 44100));
    fill_random(s, &a, 0.5);
    th_expect_status(s, "20 bits", cdz_audio_write(tmp_path(path, sizeof path, "b.wav"), &a, CDZ_AUDIO_FORMAT_AUTO, 20),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_expect_status(s, "FLAC 32-bit float", cdz_audio_write(tmp_path(path, sizeof path, "b.flac"), &a, CDZ_AUDIO_FORMAT_AUTO, 32),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "says FLAC", has(cdz_last_message(), "FLAC"), "%s", cdz_last_message());
    th_expect_status(s, "unknown extension", cdz_audio_write(tmp_path(path, sizeof path, "b.mp3"), &a, CDZ_AUDIO_FORMAT_AUTO, 16),
                     CDZ_STATUS_INVALID_ARGUMENT);
    a.data[150] = NAN;
    th_expect_status(s, "NaN sample", cdz_audio_write(tmp_path(path, sizeof path, "n.wav"), &a, CDZ_AUDIO_FORMAT_WAV, 16),
                     CDZ_STATUS_INVALID_ARGUMENT);
    th_check(s, "names frame and channel", has(cdz_last_message(), "sample 50 of channel 1"), "%s", cdz_last_message());
    th_check(s, "nothing written", access(path, F_OK) != 0, "%s exists", path);
    a.data[150] = 0.f;
    th_expect_status(s, "prevent_clip NaN", (a.data[3] = NAN, cdz_audio_prevent_clip(&a, CDZ_CLIP_RESCALE)),
                     CDZ_STATUS_INVALID_ARGUMENT);
    a.data[3] = 0.f;
    if (cdz_audio_can_read())
        th_expect_status(s, "missing folder",
                         cdz_audio_write(tmp_path(path, sizeof path, "no/such/dir.wav"), &a, CDZ_AUDIO_FORMAT_WAV, 16),
                         CDZ_STATUS_IO);
    cdz_audio empty = {0};
    th_expect_status(s, "no samples", cdz_audio_write(tmp_path(path, sizeof path, "e.wav"), &empty, CDZ_AUDIO_FORMAT_WAV, 16),
                     CDZ_STATUS_INVALID_ARGUMENT);
    cdz_audio_free(&a);
    th_end(s);
}

static void cleanup(void) {
    static const char *names[] = {"rt0_1.wav", "rt0_2.wav", "rt1_1.wav", "rt1_2.wav", "rt2_1.wav", "rt2_2.wav",
                                  "rt3_1.flac", "rt3_2.flac", "rt4_1.flac", "rt4_2.flac", "clip0_1.bin",
                                  "clip0_2.bin", "clip1_1.bin", "clip1_2.bin", "clip3_1.bin", "clip3_2.bin",
                                  "clip4_1.bin", "clip4_2.bin", "aiff", "ogg", "empty.wav", "notes.wav", "zero.wav",
                                  "three.wav", "nan.wav", "trunc.wav", "cap.wav", "b.wav", "b.flac", "b.mp3",
                                  "n.wav", "e.wav", "const.flac"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(path, sizeof path, names[i]));
    rmdir(tmpdir);
}

int main(int argc, char **argv) {
    th_suite s;
    if (!th_init(&s, "test_audio", argc, argv)) return 2;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/cdz_audio.XXXXXX", base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "test_audio: cannot create a temporary directory\n");
        return 2;
    }
    test_roundtrip(&s);
    test_growth(&s);
#ifdef CDZ_HAVE_SNDFILE
    test_other_formats(&s);
#endif
    test_channels(&s);
    test_resample(&s);
    test_clip(&s);
    test_read_errors(&s);
    test_write_errors(&s);
    cleanup();
    return th_finish(&s);
}
