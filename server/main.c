/*
 * main.c: the `cadenza` command line. Each subcommand is a thin front over the library;
 * errors print the status name and message and exit non-zero, never abort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cadenza.h"

int cmd_separate(int argc, char **argv); /* cmd_separate.c */
int cmd_demo(int argc, char **argv);     /* cmd_demo.c */
int cmd_serve(int argc, char **argv);    /* cmd_serve.c */
int cmd_client(int argc, char **argv);   /* cmd_client.c */

static void usage(FILE *f) {
    fprintf(f,
            "cadenza %d.%d.%d: low-latency inference runtime for audio and vision models\n"
            "\n"
            "usage: cadenza <command> [options]\n"
            "\n"
            "commands:\n"
            "  separate IN... -m MODEL -o DIR\n"
            "                    split songs into stems with an HTDemucs model (cadenza separate --help)\n"
            "  demo              separate a synthetic mix with random HTDemucs weights: timing and\n"
            "                    real-time factor on this machine (cadenza demo --help)\n"
            "  serve --model NAME=PATH [options]\n"
            "                    serve models over the wire protocol (cadenza serve --help)\n"
            "  client models|health|infer|separate\n"
            "                    talk to a running server (cadenza client --help)\n"
            "  inspect FILE      list the tensors, dtypes, shapes and metadata of a safetensors file\n"
            "  devices           list the devices this build can use\n"
            "  version           print the version and the build's features\n"
            "  help              this text\n"
            "\n"
            "environment: CADENZA_LOG_LEVEL=error|warn|info|debug, CADENZA_LOG_JSON=1,\n"
            "             CADENZA_ARENA_FRACTION (share of free GPU memory reserved, default 0.80),\n"
            "             CADENZA_SYNC_CHECK=1 (synchronise after every kernel to localise faults)\n",
            CDZ_VERSION_MAJOR, CDZ_VERSION_MINOR, CDZ_VERSION_PATCH);
}

static int fail(const char *what) {
    const cdz_error *e = cdz_last_error();
    fprintf(stderr, "cadenza %s: %s: %s\n", what, cdz_status_name(e->code), e->message);
    return 1;
}

static int cmd_inspect(int argc, char **argv) {
    if (argc != 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        fprintf(stderr, "usage: cadenza inspect FILE.safetensors\n");
        return 2;
    }
    cdz_weights *w = NULL;
    if (cdz_weights_open(argv[0], &w) != CDZ_STATUS_OK) return fail("inspect");
    cdz_status st = cdz_weights_print(w, stdout);
    cdz_weights_close(w);
    return st == CDZ_STATUS_OK ? 0 : fail("inspect");
}

static int cmd_devices(void) {
    printf("cpu\n");
    int n = cdz_cuda_device_count();
    for (int i = 0; i < n; i++) {
        cdz_device_info info;
        cdz_device d = {CDZ_DEVICE_CUDA, i};
        if (cdz_device_get_info(d, &info) != CDZ_STATUS_OK) return fail("devices");
        printf("cuda:%d  %s  sm_%d%d  %d SMs  %.1f GiB (%.1f GiB free)\n", i, info.name, info.cc_major,
               info.cc_minor, info.multiprocessors, (double)info.total_bytes / (1u << 30),
               (double)info.free_bytes / (1u << 30));
    }
    if (!cdz_built_with_cuda()) printf("(built without CUDA: make CUDA=1 for GPU support)\n");
    else if (n == 0) printf("(no CUDA device visible)\n");
    return 0;
}

static int cmd_version(void) {
    printf("cadenza %d.%d.%d (%s)\n", CDZ_VERSION_MAJOR, CDZ_VERSION_MINOR, CDZ_VERSION_PATCH,
           cdz_built_with_cuda() ? "CUDA" : "CPU-only");
    return 0;
}

static int setup_logging(void) {
    const char *lv = getenv("CADENZA_LOG_LEVEL");
    if (lv) {
        cdz_log_level level;
        if (cdz_log_parse_level(lv, &level) != CDZ_STATUS_OK) return fail("CADENZA_LOG_LEVEL");
        cdz_log_set_level(level);
    }
    const char *json = getenv("CADENZA_LOG_JSON");
    cdz_log_set_json(json && *json && strcmp(json, "0") != 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (setup_logging()) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "separate")) return cmd_separate(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "client")) return cmd_client(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(cmd, "devices")) return cmd_devices();
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "cadenza: unknown command '%s' (cadenza help lists the commands of this build)\n", cmd);
    return 2;
}
