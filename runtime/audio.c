/*
 * audio.c: audio files in and out (libsndfile), resampling (libsoxr), channel conversion
 * and demucs' clip prevention. The API and its rules are in cadenza.h ("Audio I/O").
 *
 * Samples are planar f32. Reading decodes in blocks of BLOCK_FRAMES interleaved frames
 * into one planar buffer: the header's frame count reserves it only up to one frame per
 * byte of file (no real format is denser; compressed ones may be, and grow), so a lying
 * header cannot make us allocate more than the samples that are actually there.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cadenza.h"
#include "check.h"

#ifdef CDZ_HAVE_SNDFILE
#include <sndfile.h>
#endif
#ifdef CDZ_HAVE_SOXR
#include <soxr.h>
#endif

#define BLOCK_FRAMES 16384
#define MAX_CHANNELS 1024
#define MAX_SAMPLERATE 1536000
#define DEFAULT_MAX_BYTES (8ull << 30)

bool cdz_audio_can_read(void) {
#ifdef CDZ_HAVE_SNDFILE
    return true;
#else
    return false;
#endif
}

bool cdz_audio_can_resample(void) {
#ifdef CDZ_HAVE_SOXR
    return true;
#else
    return false;
#endif
}

/* CADENZA_AUDIO_MAX_BYTES: the largest decoded (f32) track accepted. */
static uint64_t max_audio_bytes(void) {
    const char *v = getenv("CADENZA_AUDIO_MAX_BYTES");
    if (v && *v) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno == 0 && end && *end == '\0' && n > 0) return n;
    }
    return DEFAULT_MAX_BYTES;
}

static cdz_status check_audio(const cdz_audio *a, const char *what) {
    if (!a) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: audio is NULL", what);
    if (!a->data)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: audio has no samples (data is NULL)", what);
    if (a->channels < 1 || a->channels > MAX_CHANNELS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %d channels (1..%d)", what, a->channels,
                             MAX_CHANNELS);
    if (a->frames < 1)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: %lld frames (at least 1)", what,
                             (long long)a->frames);
    if (a->samplerate < 1 || a->samplerate > MAX_SAMPLERATE)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "%s: sample rate %d Hz (1..%d)", what,
                             a->samplerate, MAX_SAMPLERATE);
    return CDZ_STATUS_OK;
}

cdz_status cdz_audio_alloc(cdz_audio *a, int32_t channels, int64_t frames, int32_t samplerate) {
    if (!a) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio alloc: audio is NULL");
    memset(a, 0, sizeof *a);
    if (channels < 1 || channels > MAX_CHANNELS || frames < 1 || samplerate < 1 ||
        samplerate > MAX_SAMPLERATE)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "audio alloc: %d channels x %lld frames at %d Hz (need >= 1 of each, "
                             "<= %d channels, <= %d Hz)",
                             channels, (long long)frames, samplerate, MAX_CHANNELS, MAX_SAMPLERATE);
    uint64_t bytes = (uint64_t)channels * (uint64_t)frames * sizeof(float);
    if ((uint64_t)frames > UINT64_MAX / sizeof(float) / (uint64_t)channels || bytes > max_audio_bytes())
        return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                             "audio alloc: %d channels x %lld frames is more than the %llu bytes "
                             "allowed (CADENZA_AUDIO_MAX_BYTES)",
                             channels, (long long)frames, (unsigned long long)max_audio_bytes());
    a->data = calloc((size_t)frames * (size_t)channels, sizeof(float));
    if (!a->data)
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "audio alloc: no host memory for %llu bytes",
                             (unsigned long long)bytes);
    a->channels = channels;
    a->frames = frames;
    a->samplerate = samplerate;
    return CDZ_STATUS_OK;
}

void cdz_audio_free(cdz_audio *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------------------
 * reading
 * ---------------------------------------------------------------------------------- */
#ifdef CDZ_HAVE_SNDFILE

/* Grow a planar buffer from cap to new_cap frames per channel, keeping n frames of each. */
static cdz_status planar_grow(float **data, int32_t channels, int64_t n, int64_t cap, int64_t new_cap,
                              const char *path) {
    uint64_t bytes = (uint64_t)new_cap * (uint64_t)channels * sizeof(float);
    if (bytes > max_audio_bytes())
        return cdz_error_set(CDZ_STATUS_TOO_LARGE,
                             "audio: '%s' decodes to more than %llu bytes of samples "
                             "(CADENZA_AUDIO_MAX_BYTES)",
                             path, (unsigned long long)max_audio_bytes());
    float *p = realloc(*data, (size_t)bytes);
    if (!p)
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "audio: no host memory for %llu bytes decoding '%s'",
                             (unsigned long long)bytes, path);
    /* move channels from the last down so no channel overwrites one not moved yet */
    for (int32_t c = channels - 1; c >= 1 && new_cap > cap; c--)
        memmove(p + (size_t)c * (size_t)new_cap, p + (size_t)c * (size_t)cap, (size_t)n * sizeof(float));
    *data = p;
    return CDZ_STATUS_OK;
}

/* Shrink to exactly n frames per channel. */
static void planar_shrink(float **data, int32_t channels, int64_t n, int64_t cap) {
    if (n == cap) return;
    for (int32_t c = 1; c < channels; c++)
        memmove(*data + (size_t)c * (size_t)n, *data + (size_t)c * (size_t)cap, (size_t)n * sizeof(float));
    float *p = realloc(*data, (size_t)n * (size_t)channels * sizeof(float));
    if (p) *data = p; /* a failed shrink keeps the larger block, which is still valid */
}

static void format_name(int format, char *buf, size_t size) {
    SF_FORMAT_INFO major = {.format = format & SF_FORMAT_TYPEMASK};
    SF_FORMAT_INFO sub = {.format = format & SF_FORMAT_SUBMASK};
    const char *a = sf_command(NULL, SFC_GET_FORMAT_INFO, &major, sizeof major) == 0 && major.name ? major.name : "?";
    const char *b = sf_command(NULL, SFC_GET_FORMAT_INFO, &sub, sizeof sub) == 0 && sub.name ? sub.name : "?";
    snprintf(buf, size, "%s, %s", a, b);
}

cdz_status cdz_audio_read(const char *path, cdz_audio *out) {
    if (!out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio read: output is NULL");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio read: empty path");
    /* Classify open failures ourselves: libsndfile reports them all as "unknown format". */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cdz_error_set(CDZ_STATUS_IO, "audio: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    int fst = fstat(fd, &st);
    int saved = errno;
    close(fd);
    if (fst != 0) return cdz_error_set(CDZ_STATUS_IO, "audio: cannot stat '%s': %s", path, strerror(saved));
    if (S_ISDIR(st.st_mode))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' is a directory, not an audio file", path);
    if (!S_ISREG(st.st_mode))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' is not a regular file", path);
    if (st.st_size == 0)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' is empty (0 bytes)", path);

    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "audio: cannot decode '%s': %s (libsndfile reads WAV, FLAC, OGG/Vorbis, "
                             "Opus, AIFF, CAF, W64, RF64)",
                             path, sf_strerror(NULL));
    cdz_status status = CDZ_STATUS_OK;
    float *data = NULL, *block = NULL;
    int64_t n = 0, cap = 0;
    const int32_t channels = info.channels;
    char fmt[64];
    format_name(info.format, fmt, sizeof fmt);
    if (channels < 1 || channels > MAX_CHANNELS) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' has %d channels (1..%d)", path,
                               channels, MAX_CHANNELS);
        goto done;
    }
    if (info.samplerate < 1 || info.samplerate > MAX_SAMPLERATE) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' has sample rate %d Hz (1..%d)", path,
                               info.samplerate, MAX_SAMPLERATE);
        goto done;
    }
    if (info.frames == 0) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' holds no audio (0 frames; %s)", path, fmt);
        goto done;
    }
    /* Reserve what the header announces, but at most one frame per byte of file. */
    int64_t hint = info.frames > 0 ? (int64_t)info.frames : BLOCK_FRAMES;
    if (hint > (int64_t)st.st_size) hint = (int64_t)st.st_size;
    if (hint < 1) hint = 1;
    status = planar_grow(&data, channels, 0, 0, hint, path);
    if (status != CDZ_STATUS_OK) goto done;
    cap = hint;
    block = malloc((size_t)BLOCK_FRAMES * (size_t)channels * sizeof(float));
    if (!block) {
        status = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "audio: no host memory for a read block");
        goto done;
    }
    for (;;) {
        sf_count_t got = sf_readf_float(sf, block, BLOCK_FRAMES);
        if (got <= 0) break;
        if (n + got > cap) {
            /* double, but not past the cap on decoded bytes (planar_grow refuses beyond it) */
            const int64_t limit = (int64_t)(max_audio_bytes() / sizeof(float) / (uint64_t)channels);
            int64_t new_cap = cap * 2 < limit ? cap * 2 : limit;
            if (new_cap < n + got) new_cap = n + got;
            status = planar_grow(&data, channels, n, cap, new_cap, path);
            if (status != CDZ_STATUS_OK) goto done;
            cap = new_cap;
        }
        for (sf_count_t i = 0; i < got; i++) {
            for (int32_t c = 0; c < channels; c++) {
                float v = block[(size_t)i * (size_t)channels + (size_t)c];
                if (!isfinite(v)) {
                    status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                           "audio: '%s': sample %lld of channel %d is %s", path,
                                           (long long)(n + i), c, isnan(v) ? "NaN" : "infinite");
                    goto done;
                }
                data[(size_t)c * (size_t)cap + (size_t)(n + i)] = v;
            }
        }
        n += got;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: decoding '%s' failed after %lld frames: %s",
                               path, (long long)n, sf_strerror(sf));
        goto done;
    }
    if (n == 0) {
        status = cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio: '%s' holds no audio (0 frames decoded; %s)",
                               path, fmt);
        goto done;
    }
    if (info.frames > 0 && n != (int64_t)info.frames)
        cdz_log(CDZ_LOG_LEVEL_WARN, "audio", "'%s': the header announces %lld frames, %lld were decoded "
                "(truncated file?)", path, (long long)info.frames, (long long)n);
    planar_shrink(&data, channels, n, cap);
    out->data = data;
    data = NULL;
    out->channels = channels;
    out->samplerate = info.samplerate;
    out->frames = n;
    snprintf(out->format, sizeof out->format, "%s", fmt);
done:
    free(block);
    free(data);
    sf_close(sf);
    return status;
}

#else /* !CDZ_HAVE_SNDFILE */

cdz_status cdz_audio_read(const char *path, cdz_audio *out) {
    if (out) memset(out, 0, sizeof *out);
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                         "audio: cannot read '%s': this build has no libsndfile "
                         "(apt-get install libsndfile1-dev, then rebuild)",
                         path ? path : "(null)");
}

#endif

/* ------------------------------------------------------------------------------------
 * writing
 * ---------------------------------------------------------------------------------- */
static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

cdz_status cdz_audio_format_parse(const char *text, cdz_audio_format *out) {
    if (text && !strcasecmp(text, "wav")) *out = CDZ_AUDIO_FORMAT_WAV;
    else if (text && !strcasecmp(text, "flac")) *out = CDZ_AUDIO_FORMAT_FLAC;
    else
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio format '%s' is not one of wav, flac",
                             text ? text : "(null)");
    return CDZ_STATUS_OK;
}

cdz_status cdz_audio_write(const char *path, const cdz_audio *a, cdz_audio_format format, int32_t bits) {
    if (!path || !*path) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio write: empty path");
    CDZ_TRY(check_audio(a, "audio write"));
    if (format == CDZ_AUDIO_FORMAT_AUTO) {
        if (ends_with(path, ".wav")) format = CDZ_AUDIO_FORMAT_WAV;
        else if (ends_with(path, ".flac")) format = CDZ_AUDIO_FORMAT_FLAC;
        else
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "audio write: cannot tell the format of '%s' from its extension "
                                 "(.wav or .flac), and none was given", path);
    }
    if (format != CDZ_AUDIO_FORMAT_WAV && format != CDZ_AUDIO_FORMAT_FLAC)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio write: unknown format %d", (int)format);
    if (bits != 16 && bits != 24 && bits != 32)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio write: %d bits per sample (16, 24 or 32 float)",
                             bits);
    if (format == CDZ_AUDIO_FORMAT_FLAC && bits == 32)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "audio write: FLAC stores integers of up to 24 bits; '%s' asks for 32-bit "
                             "float (use 16/24 bits, or WAV for float)", path);
    if (format == CDZ_AUDIO_FORMAT_FLAC && a->channels > 8)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio write: FLAC holds at most 8 channels, got %d",
                             a->channels);
    const size_t total = (size_t)a->frames * (size_t)a->channels;
    for (size_t i = 0; i < total; i++) {
        if (!isfinite(a->data[i]))
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                                 "audio write: '%s': sample %lld of channel %lld is %s; refusing to write it",
                                 path, (long long)(i % (size_t)a->frames), (long long)(i / (size_t)a->frames),
                                 isnan(a->data[i]) ? "NaN" : "infinite");
    }
#ifndef CDZ_HAVE_SNDFILE
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                         "audio: cannot write '%s': this build has no libsndfile "
                         "(apt-get install libsndfile1-dev, then rebuild)", path);
#else
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.channels = a->channels;
    info.samplerate = a->samplerate;
    int sub = bits == 16 ? SF_FORMAT_PCM_16 : bits == 24 ? SF_FORMAT_PCM_24 : SF_FORMAT_FLOAT;
    if (format == CDZ_AUDIO_FORMAT_FLAC) {
        info.format = SF_FORMAT_FLAC | sub;
    } else {
        /* a RIFF chunk size is 32 bits: larger data goes to RF64 (its 64-bit successor) */
        uint64_t data_bytes = (uint64_t)total * (uint64_t)(bits / 8);
        info.format = (data_bytes > 0xFFFFFF00ull ? SF_FORMAT_RF64 : SF_FORMAT_WAV) | sub;
    }
    if (!sf_format_check(&info))
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "audio write: libsndfile cannot write %d channels at "
                             "%d Hz, %d bits as %s", a->channels, a->samplerate, bits,
                             format == CDZ_AUDIO_FORMAT_FLAC ? "FLAC" : "WAV");
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) return cdz_error_set(CDZ_STATUS_IO, "audio: cannot create '%s': %s", path, sf_strerror(NULL));
    /* saturate out-of-range samples instead of letting the integer conversion wrap */
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    cdz_status status = CDZ_STATUS_OK;
    float *block = malloc((size_t)BLOCK_FRAMES * (size_t)a->channels * sizeof(float));
    if (!block) {
        status = cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "audio write: no host memory for a block");
        goto done;
    }
    for (int64_t f0 = 0; f0 < a->frames; f0 += BLOCK_FRAMES) {
        int64_t nf = a->frames - f0 < BLOCK_FRAMES ? a->frames - f0 : BLOCK_FRAMES;
        for (int64_t i = 0; i < nf; i++)
            for (int32_t c = 0; c < a->channels; c++)
                block[(size_t)i * (size_t)a->channels + (size_t)c] =
                    a->data[(size_t)c * (size_t)a->frames + (size_t)(f0 + i)];
        sf_count_t put = sf_writef_float(sf, block, nf);
        if (put != nf) {
            status = cdz_error_set(CDZ_STATUS_IO, "audio: writing '%s' failed after %lld frames: %s", path,
                                   (long long)(f0 + (put > 0 ? put : 0)), sf_strerror(sf));
            goto done;
        }
    }
done:
    free(block);
    if (sf_close(sf) != 0 && status == CDZ_STATUS_OK)
        status = cdz_error_set(CDZ_STATUS_IO, "audio: closing '%s' failed", path);
    return status;
#endif
}

/* ------------------------------------------------------------------------------------
 * conversions
 * ---------------------------------------------------------------------------------- */
cdz_status cdz_audio_resample(const cdz_audio *in, int32_t samplerate, cdz_audio *out) {
    if (!out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "resample: output is NULL");
    if (out == in) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "resample: output must not be the input");
    memset(out, 0, sizeof *out);
    CDZ_TRY(check_audio(in, "resample"));
    if (samplerate < 1 || samplerate > MAX_SAMPLERATE)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "resample: target rate %d Hz (1..%d)", samplerate,
                             MAX_SAMPLERATE);
    if (samplerate == in->samplerate) {
        CDZ_TRY(cdz_audio_alloc(out, in->channels, in->frames, samplerate));
        memcpy(out->data, in->data, (size_t)in->frames * (size_t)in->channels * sizeof(float));
        memcpy(out->format, in->format, sizeof out->format);
        return CDZ_STATUS_OK;
    }
    const double exact = (double)in->frames * (double)samplerate / (double)in->samplerate;
    const int64_t frames = (int64_t)llround(exact);
    if (frames < 1)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "resample: %lld frames at %d Hz leave no sample at %d Hz",
                             (long long)in->frames, in->samplerate, samplerate);
#ifndef CDZ_HAVE_SOXR
    return cdz_error_set(CDZ_STATUS_UNSUPPORTED,
                         "resample: %d Hz -> %d Hz needs libsoxr, which this build lacks "
                         "(apt-get install libsoxr-dev, then rebuild; or resample the file first)",
                         in->samplerate, samplerate);
#else
    CDZ_TRY(cdz_audio_alloc(out, in->channels, frames, samplerate));
    const void **ip = malloc((size_t)in->channels * sizeof *ip);
    void **op = malloc((size_t)in->channels * sizeof *op);
    if (!ip || !op) {
        free(ip);
        free(op);
        cdz_audio_free(out);
        return cdz_error_set(CDZ_STATUS_OUT_OF_MEMORY, "resample: no host memory");
    }
    for (int32_t c = 0; c < in->channels; c++) {
        ip[c] = in->data + (size_t)c * (size_t)in->frames;
        op[c] = out->data + (size_t)c * (size_t)frames;
    }
    /* planar f32 in and out; high quality (20-bit, linear phase); one thread */
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_S, SOXR_FLOAT32_S);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_runtime_spec_t rt = soxr_runtime_spec(1);
    size_t idone = 0, odone = 0;
    soxr_error_t err = soxr_oneshot((double)in->samplerate, (double)samplerate, (unsigned)in->channels,
                                    (soxr_in_t)ip, (size_t)in->frames, &idone, (soxr_out_t)op, (size_t)frames,
                                    &odone, &io, &q, &rt);
    free(ip);
    free(op);
    if (err) {
        cdz_audio_free(out);
        return cdz_error_set(CDZ_STATUS_INTERNAL, "resample: libsoxr %d Hz -> %d Hz failed: %s",
                             in->samplerate, samplerate, soxr_strerror(err));
    }
    if ((int64_t)odone != frames) {
        int64_t want = frames;
        cdz_audio_free(out);
        return cdz_error_set(CDZ_STATUS_INTERNAL, "resample: libsoxr produced %zu frames, expected %lld", odone,
                             (long long)want);
    }
    memcpy(out->format, in->format, sizeof out->format);
    return CDZ_STATUS_OK;
#endif
}

cdz_status cdz_audio_to_channels(const cdz_audio *in, int32_t channels, cdz_audio *out) {
    if (!out) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "channels: output is NULL");
    if (out == in) return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "channels: output must not be the input");
    memset(out, 0, sizeof *out);
    CDZ_TRY(check_audio(in, "channels"));
    if (channels < 1 || channels > MAX_CHANNELS)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "channels: target of %d channels", channels);
    if (in->channels != channels && in->channels != 1)
        return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT,
                             "the audio has %d channels and the model takes %d: only mono is converted "
                             "(duplicated); downmix or pick channels yourself (e.g. sox in.wav out.wav "
                             "remix 1 2)",
                             in->channels, channels);
    CDZ_TRY(cdz_audio_alloc(out, channels, in->frames, in->samplerate));
    const size_t n = (size_t)in->frames;
    for (int32_t c = 0; c < channels; c++)
        memcpy(out->data + (size_t)c * n, in->data + (in->channels == 1 ? 0 : (size_t)c * n), n * sizeof(float));
    memcpy(out->format, in->format, sizeof out->format);
    return CDZ_STATUS_OK;
}

/* ------------------------------------------------------------------------------------
 * clipping (demucs/audio.py prevent_clip)
 * ---------------------------------------------------------------------------------- */
static const char *const clip_names[] = {"rescale", "clamp", "tanh", "none"};

const char *cdz_clip_mode_name(cdz_clip_mode mode) {
    return (unsigned)mode < 4 ? clip_names[mode] : "?";
}

cdz_status cdz_clip_mode_parse(const char *text, cdz_clip_mode *out) {
    for (int i = 0; i < 4; i++) {
        if (text && !strcasecmp(text, clip_names[i])) {
            *out = (cdz_clip_mode)i;
            return CDZ_STATUS_OK;
        }
    }
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "clip mode '%s' is not one of rescale, clamp, tanh, none",
                         text ? text : "(null)");
}

cdz_status cdz_audio_prevent_clip(cdz_audio *a, cdz_clip_mode mode) {
    CDZ_TRY(check_audio(a, "prevent clip"));
    const size_t n = (size_t)a->frames * (size_t)a->channels;
    float *x = a->data;
    switch (mode) {
    case CDZ_CLIP_NONE:
        return CDZ_STATUS_OK;
    case CDZ_CLIP_RESCALE: {
        /* wav / max(1.01 * wav.abs().max(), 1): f32 product, Python's max keeps the tensor
         * unless 1 is strictly larger */
        float peak = 0.f;
        for (size_t i = 0; i < n; i++) {
            float v = fabsf(x[i]);
            if (v > peak || isnan(v)) peak = v;
        }
        if (isnan(peak))
            return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "prevent clip: the audio contains NaN");
        float d = 1.01f * peak;
        if (1.f > d) d = 1.f;
        for (size_t i = 0; i < n; i++) x[i] = x[i] / d;
        return CDZ_STATUS_OK;
    }
    case CDZ_CLIP_CLAMP:
        for (size_t i = 0; i < n; i++) x[i] = x[i] < -0.99f ? -0.99f : x[i] > 0.99f ? 0.99f : x[i];
        return CDZ_STATUS_OK;
    case CDZ_CLIP_TANH:
        for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
        return CDZ_STATUS_OK;
    }
    return cdz_error_set(CDZ_STATUS_INVALID_ARGUMENT, "prevent clip: unknown mode %d", (int)mode);
}
