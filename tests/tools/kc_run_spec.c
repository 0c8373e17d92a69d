/* Launch one kernel of a JSON spec file through kcache on the GPU, with
 * arguments read from and written to files: the GPU tests drive it from
 * Python to compare kcache's launches of imported Triton binaries with
 * Triton's own (tests/gpu/triton_roundtrip.py).
 *
 *   kc_run_spec STORE SPEC NAME [--repeat N] ARG...
 *
 * ARG, one per spec argument, in order:
 *   in:FILE            a device buffer holding FILE's bytes
 *   out:FILE:BYTES     a zeroed buffer of BYTES, written to FILE after
 *   inout:FILE:OUTFILE a buffer holding FILE's bytes, written to OUTFILE after
 *   i:VALUE | f:VALUE  an integer or float scalar
 * Pointer dims are 1-D: bytes / the element size of the spec's dtype.
 * Prints the kernel's stats as one JSON line. The CUDA driver is opened
 * with dlopen, so this builds (and says it cannot run) without one.
 * KC_RUN_SPEC_FAULTS=1 lists the page faults of each part of the first call
 * on stderr (tools/fault_log.c). */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fault_log.h"
#include "kcache/launch.h"

typedef int (*cu_init_t)(unsigned);
typedef int (*cu_dev_get_t)(int *, int);
typedef int (*cu_retain_t)(void **, int);
typedef int (*cu_set_t)(void *);
typedef int (*cu_alloc_t)(uint64_t *, size_t);
typedef int (*cu_htod_t)(uint64_t, const void *, size_t);
typedef int (*cu_dtoh_t)(void *, uint64_t, size_t);
typedef int (*cu_memset_t)(uint64_t, unsigned char, size_t);
typedef int (*cu_sync_t)(void);

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "kc_run_spec: libcuda lacks %s\n", name);
        exit(2);
    }
    return p;
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    void *buf = NULL;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "kc_run_spec: cannot read %s\n", path);
        exit(2);
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "kc_run_spec: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* This thread's CPU time (user and system) in microseconds, and how often
 * it blocked (voluntary context switches): a part whose wall time exceeds
 * its CPU time waited. */
static double cpu_us(long *waits)
{
    struct timespec ts;
    struct rusage ru;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    *waits = getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double us_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 +
           (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: kc_run_spec STORE SPEC NAME [--repeat N] ARG...\n");
        return 2;
    }
    int first = 4, repeat = 1;
    if (argc > 5 && strcmp(argv[4], "--repeat") == 0) {
        repeat = atoi(argv[5]);
        first = 6;
    }
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "kc_run_spec: no CUDA driver here: %s\n", dlerror());
        return 77;
    }
    cu_alloc_t alloc = (cu_alloc_t)sym(lib, "cuMemAlloc_v2");
    cu_htod_t htod = (cu_htod_t)sym(lib, "cuMemcpyHtoD_v2");
    cu_dtoh_t dtoh = (cu_dtoh_t)sym(lib, "cuMemcpyDtoH_v2");
    cu_memset_t memset_d8 = (cu_memset_t)sym(lib, "cuMemsetD8_v2");
    cu_sync_t sync = (cu_sync_t)sym(lib, "cuCtxSynchronize");
    void *ctx = NULL;
    int dev = 0;
    if (((cu_init_t)sym(lib, "cuInit"))(0) ||
        ((cu_dev_get_t)sym(lib, "cuDeviceGet"))(&dev, 0) ||
        ((cu_retain_t)sym(lib, "cuDevicePrimaryCtxRetain"))(&ctx, dev) ||
        ((cu_set_t)sym(lib, "cuCtxSetCurrent"))(ctx)) {
        fprintf(stderr, "kc_run_spec: no usable GPU\n");
        return 77;
    }

    struct timespec t0 = {0}, t1 = {0}, t_created = {0}, t_opened = {0}, t_loaded = {0},
                    t_launched = {0};
    double first_us = 0;
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.store_dir = argv[1];
    o.no_remote = 1;
    kc_launcher_t *l = NULL;
    kc_kernel_t **ks = NULL, *k = NULL;
    size_t nk = 0;
    /* The arguments are made first: the timed part is what a process pays
     * from a ready context to its first result (create, load, launch). */
    kc_arg_t *args = NULL;
    int rc = KC_OK;
    size_t n = (size_t)(argc - first);
    args = calloc(n + 1, sizeof(*args));
    int64_t *dims = calloc(n + 1, sizeof(*dims));
    const char **outs = calloc(n + 1, sizeof(*outs));
    size_t *out_len = calloc(n + 1, sizeof(*out_len));
    for (size_t i = 0; i < n; i++) {
        char *a = argv[first + i];
        if (strncmp(a, "in:", 3) == 0 || strncmp(a, "inout:", 6) == 0) {
            size_t len;
            char *path = strchr(a, ':') + 1;
            if (a[2] == 'o') { /* inout:FILE:OUTFILE */
                char *colon = strchr(path, ':');
                if (!colon)
                    return 2;
                *colon = '\0';
                outs[i] = colon + 1;
            }
            void *data = read_file(path, &len);
            out_len[i] = len;
            if (alloc(&args[i].ptr, len ? len : 1) || htod(args[i].ptr, data, len)) {
                fprintf(stderr, "kc_run_spec: device memory\n");
                return 1;
            }
            free(data);
            dims[i] = (int64_t)len; /* in bytes; the element size divides below */
        } else if (strncmp(a, "out:", 4) == 0) {
            char *colon = strrchr(a + 4, ':');
            if (!colon)
                return 2;
            *colon = '\0';
            outs[i] = a + 4;
            out_len[i] = strtoull(colon + 1, NULL, 10);
            if (alloc(&args[i].ptr, out_len[i] ? out_len[i] : 1) ||
                memset_d8(args[i].ptr, 0, out_len[i]))
                return 1;
            dims[i] = (int64_t)out_len[i];
        } else if (strncmp(a, "i:", 2) == 0) {
            args[i].value.i = strtoll(a + 2, NULL, 10);
            continue;
        } else if (strncmp(a, "f:", 2) == 0) {
            args[i].value.f = strtod(a + 2, NULL);
            continue;
        } else {
            fprintf(stderr, "kc_run_spec: bad argument '%s'\n", a);
            return 2;
        }
        args[i].rank = 1;
        args[i].dims = &dims[i];
    }
    /* Element counts: the spec's dtype is not visible here, so the caller's
     * files give bytes and the dims are bytes / 4 (every GPU test buffer is
     * a 32-bit type). */
    for (size_t i = 0; i < n; i++)
        if (args[i].rank)
            dims[i] /= 4;
    const char *fe = getenv("KC_RUN_SPEC_FAULTS");
    int faults = fe && strcmp(fe, "1") == 0;
    kc_fault_log_t *flog = faults ? kc_fault_log_start() : NULL;
    double cpu[5] = {0};
    long waits[5] = {0};
    cpu[0] = cpu_us(&waits[0]);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = kc_launcher_create(&o, &l);
    clock_gettime(CLOCK_MONOTONIC, &t_created);
    cpu[1] = cpu_us(&waits[1]);
    kc_fault_log_print(flog, "the launcher create", stderr);
    flog = faults ? kc_fault_log_start() : NULL;
    /* The store opens at the first kernel; opening it here first splits
     * the spec load's time into the open and the rest, at no extra cost. */
    if (rc == KC_OK)
        kc_launcher_store(l);
    clock_gettime(CLOCK_MONOTONIC, &t_opened);
    cpu[2] = cpu_us(&waits[2]);
    kc_fault_log_print(flog, "the store open", stderr);
    flog = faults ? kc_fault_log_start() : NULL;
    if (rc == KC_OK)
        rc = kc_kernel_load_file(l, argv[2], &ks, &nk);
    if (rc == KC_OK)
        rc = kc_kernel_find(l, argv[3], &k);
    clock_gettime(CLOCK_MONOTONIC, &t_loaded);
    cpu[3] = cpu_us(&waits[3]);
    kc_fault_log_print(flog, "the spec load", stderr);
    flog = faults ? kc_fault_log_start() : NULL;
    if (rc != KC_OK) {
        fprintf(stderr, "kc_run_spec: %s: %s\n", kc_strerror(rc),
                l ? kc_launcher_errmsg(l) : kc_launcher_create_errmsg());
        return 1;
    }
    for (int r = 0; r < repeat; r++) {
        rc = kc_kernel_launch(k, NULL, args, n);
        if (rc != KC_OK) {
            fprintf(stderr, "kc_run_spec: launch: %s: %s\n", kc_strerror(rc),
                    kc_launcher_errmsg(l));
            return 1;
        }
        if (r == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t_launched);
            cpu[4] = cpu_us(&waits[4]);
            kc_fault_log_print(flog, "the first launch", stderr);
            if (sync()) {
                fprintf(stderr, "kc_run_spec: the kernel failed on the GPU\n");
                return 1;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            first_us = us_between(&t0, &t1);
        }
    }
    if (sync()) {
        fprintf(stderr, "kc_run_spec: the kernel failed on the GPU\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!outs[i])
            continue;
        void *host = malloc(out_len[i] ? out_len[i] : 1);
        FILE *f = fopen(outs[i], "wb");
        if (!host || !f || dtoh(host, args[i].ptr, out_len[i]) ||
            fwrite(host, 1, out_len[i], f) != out_len[i]) {
            fprintf(stderr, "kc_run_spec: writing %s\n", outs[i]);
            return 1;
        }
        fclose(f);
        free(host);
    }
    kc_kernel_stats_t st;
    kc_param_t cfg[16];
    size_t nc = 0;
    kc_kernel_stats(k, &st);
    kc_kernel_last_config(k, cfg, 16, &nc);
    printf(
        "{\"t0_monotonic_us\": %.1f, \"first_call_us\": %.1f, \"create_us\": %.1f, "
        "\"open_us\": %.1f, "
        "\"load_us\": %.1f, \"launch_us\": %.1f, \"sync_us\": %.1f, \"tunes\": %" PRIu64
        ", \"store_hits\": %" PRIu64 ", \"compiles\": %" PRIu64 ", \"launches\": %" PRIu64
        ", \"prefetched\": %" PRIu64
        ", \"cpu_us\": [%.1f, %.1f, %.1f, %.1f], \"waits\": [%ld, %ld, %ld, %ld], "
        "\"config\": {",
        (double)t0.tv_sec * 1e6 + (double)t0.tv_nsec / 1e3, first_us,
        us_between(&t0, &t_created), us_between(&t_created, &t_opened),
        us_between(&t_opened, &t_loaded), us_between(&t_loaded, &t_launched),
        us_between(&t_launched, &t1), st.tunes, st.store_hits, st.compiles, st.launches,
        st.prefetched, cpu[1] - cpu[0], cpu[2] - cpu[1], cpu[3] - cpu[2], cpu[4] - cpu[3],
        waits[1] - waits[0], waits[2] - waits[1], waits[3] - waits[2],
        waits[4] - waits[3]);
    for (size_t i = 0; i < nc; i++)
        printf("%s\"%s\": %" PRId64, i ? ", " : "", cfg[i].name, cfg[i].value);
    printf("}}\n");
    kc_free(ks);
    kc_launcher_destroy(l);
    return 0;
}
