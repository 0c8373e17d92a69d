/* cachectl populate --manifest FILE --arch A[,A...] [-j N]: compile every
 * config of every kernel of a spec file for each arch with NVRTC, without a
 * GPU, and publish the builds, so that a GPU that later meets these kernels
 * only has to measure.
 *
 * The manifest is a JSON spec file (docs/SPEC.md), read by
 * kc_kernel_load_file. Each arch gets a launcher with KC_DEVICE_NONE, which
 * compiles a kernel's candidates at registration (reusing stored builds)
 * and publishes them when the last is done. Candidates that fail to compile
 * are normal in a tuning space (too many resources for one config): they
 * are reported, and only a kernel without a single config that compiles
 * fails the command.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cachectl.h"

#ifdef KC_HAVE_LAUNCH
#include "kcache/launch.h"
#endif

static const char help[] =
    "Options:\n"
    "  -m, --manifest FILE  a JSON spec file (docs/SPEC.md) listing the kernels\n"
    "  -a, --arch A[,A...]  target archs, e.g. sm_80,sm_90 (sm_NN, optionally\n"
    "                       followed by a or f)\n"
    "  -j, --jobs N         parallel compiles (default: usable CPUs, at most 16)\n"
    "\n"
    "Every config of every kernel's tuning space is compiled with NVRTC for each\n"
    "arch (no GPU needed) and its build published; builds already stored are\n"
    "reused. Configs that fail to compile are listed with the reason; the exit\n"
    "status is 1 only if some kernel has no config that compiles for some arch,\n"
    "or the manifest cannot be loaded.\n";

#define MAX_ARCHS 32
/* populate_arch's status when the manifest does not load (not an exit status). */
#define BAD_MANIFEST (-1)

/* sm_NN or sm_NNN, optionally with an 'a' or 'f' suffix. */
#ifndef KC_HAVE_LAUNCH

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    (void)o;
    (void)argc;
    (void)argv;
    ctl_err("%s: this cachectl was built without the launcher (KC_BUILD_LAUNCHER=OFF)",
            self->name);
    return CTL_EXIT_FAIL;
}

#else

typedef struct waiter {
    kc_kernel_t **ks;
    size_t n;
    atomic_int done;
} waiter_t;

static void *wait_all(void *arg)
{
    waiter_t *w = arg;
    for (size_t i = 0; i < w->n; i++)
        kc_kernel_wait_compiled(w->ks[i]);
    atomic_store(&w->done, 1);
    return NULL;
}

/* Warnings from the launcher (a publish that failed) go to stderr. */
static void log_warn(void *user, kc_log_level_t level, const char *msg)
{
    int *warned = user;
    (void)level;
    *warned = 1;
    fprintf(stderr, "cachectl: populate: %s\n", msg);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void progress(const char *arch, kc_kernel_t **ks, size_t n, int tty, int final)
{
    kc_kernel_stats_t s, sum = {0};

    for (size_t i = 0; i < n; i++) {
        kc_kernel_stats(ks[i], &s);
        sum.compiles += s.compiles;
        sum.builds_reused += s.builds_reused;
        sum.configs += s.configs;
    }
    if (tty)
        fprintf(stderr, "\r[%s] %llu/%llu configs compiled\033[K%s", arch,
                (unsigned long long)(sum.compiles + sum.builds_reused),
                (unsigned long long)sum.configs, final ? "\n" : "");
    else
        fprintf(stderr, "[%s] %llu/%llu configs compiled\n", arch,
                (unsigned long long)(sum.compiles + sum.builds_reused),
                (unsigned long long)sum.configs);
    fflush(stderr);
}

/* Populate one arch; adds its summary to archs_json (may be NULL) or prints
 * it. Returns the exit status. */
static int populate_arch(ctl_opts_t *o, kc_store_t *st, const char *manifest,
                         const char *arch, unsigned jobs, json_t *archs_json)
{
    kc_launcher_opts_t lo = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = NULL;
    kc_kernel_t **ks = NULL;
    size_t nk = 0;
    int status = CTL_EXIT_OK, warned = 0, tty = isatty(STDERR_FILENO);
    uint64_t tot_compiled = 0, tot_reused = 0, tot_failed = 0;
    json_t *kernels = archs_json ? json_array() : NULL;
    pthread_t th;
    waiter_t w = {0};
    int rc;

    lo.device = KC_DEVICE_NONE;
    lo.arch = arch;
    lo.store = st;
    lo.compile_threads = jobs;
    lo.log = log_warn;
    lo.log_user = &warned;
    lo.log_level = KC_LOG_WARN;
    rc = kc_launcher_create(&lo, &l);
    if (rc != KC_OK) {
        ctl_err("populate: %s: %s", arch, kc_launcher_create_errmsg());
        json_decref(kernels);
        return CTL_EXIT_FAIL;
    }
    rc = kc_kernel_load_file(l, manifest, &ks, &nk);
    if (rc != KC_OK) {
        ctl_err("populate: %s", kc_launcher_errmsg(l));
        status = BAD_MANIFEST;
        goto out;
    }

    w.ks = ks;
    w.n = nk;
    if (pthread_create(&th, NULL, wait_all, &w) != 0) {
        wait_all(&w);
    } else {
        uint64_t last = 0;
        while (!atomic_load(&w.done)) {
            uint64_t now = mono_ms();
            /* In place on a terminal; otherwise a line a second. */
            if ((tty || (!o->json && now - last >= 1000))) {
                progress(arch, ks, nk, tty, 0);
                last = now;
            }
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        pthread_join(th, NULL);
    }
    if (tty || !o->json)
        progress(arch, ks, nk, tty, 1);

    for (size_t i = 0; i < nk; i++) {
        kc_kernel_stats_t s;
        kc_kernel_t *k = ks[i];
        json_t *failed = kernels ? json_array() : NULL;
        uint64_t nfail = 0;
        const char *name = kc_kernel_name(k);

        kc_kernel_stats(k, &s);
        for (size_t c = 0; c < s.configs; c++) {
            kc_param_t params[64];
            size_t np = 0;
            const char *reason = NULL;
            char cfg[512];

            if (kc_kernel_candidate(k, c, params, 64, &np, &reason) != KC_OK || !reason)
                continue;
            nfail++;
            ctl_fmt_params(params, np < 64 ? np : 64, cfg, sizeof(cfg));
            if (failed) {
                json_t *f = json_object();
                json_object_set_new(f, "config", json_string(cfg));
                json_object_set_new(f, "reason", json_string(reason));
                json_array_append_new(failed, f);
            } else {
                printf("  [%s] %s %s failed: %s\n", arch, name, cfg, reason);
            }
        }
        if (kc_kernel_wait_compiled(k) != KC_OK) {
            ctl_err("populate: %s: %s", arch, kc_launcher_errmsg(l));
            status = CTL_EXIT_FAIL;
        }
        uint64_t compiled = s.compiles - nfail;
        tot_compiled += compiled;
        tot_reused += s.builds_reused;
        tot_failed += nfail;
        if (kernels) {
            json_t *kj = json_object();
            json_object_set_new(kj, "name", json_string(name));
            json_object_set_new(kj, "configs", json_integer((json_int_t)s.configs));
            json_object_set_new(kj, "compiled", json_integer((json_int_t)compiled));
            json_object_set_new(kj, "reused", json_integer((json_int_t)s.builds_reused));
            json_object_set_new(kj, "failed", failed);
            json_array_append_new(kernels, kj);
        }
    }
    if (warned)
        status = CTL_EXIT_FAIL; /* a publish failed: the builds are not stored */
    if (archs_json) {
        json_t *aj = json_object();
        json_object_set_new(aj, "arch", json_string(arch));
        json_object_set_new(aj, "compiled", json_integer((json_int_t)tot_compiled));
        json_object_set_new(aj, "reused", json_integer((json_int_t)tot_reused));
        json_object_set_new(aj, "failed", json_integer((json_int_t)tot_failed));
        json_object_set_new(aj, "kernels", kernels);
        json_array_append_new(archs_json, aj);
        kernels = NULL;
    } else {
        printf("%s: %zu kernels: %llu compiled, %llu reused, %llu failed\n", arch, nk,
               (unsigned long long)tot_compiled, (unsigned long long)tot_reused,
               (unsigned long long)tot_failed);
    }
out:
    json_decref(kernels);
    kc_free(ks);
    kc_launcher_destroy(l);
    return status;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    static const struct option longopts[] = {{"manifest", required_argument, NULL, 'm'},
                                             {"arch", required_argument, NULL, 'a'},
                                             {"jobs", required_argument, NULL, 'j'},
                                             CTL_COMMON_LONGOPTS,
                                             {0}};
    const char *manifest = NULL;
    char *archs_arg = NULL, *archs[MAX_ARCHS], *save = NULL, arch_buf[MAX_ARCHS][16];
    size_t n_archs = 0;
    unsigned jobs = 0;
    int c, rc, status = CTL_EXIT_OK;
    kc_store_t *st = NULL;
    const char *dir;
    json_t *archs_json = NULL;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "m:a:j:", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'm':
            manifest = optarg;
            break;
        case 'a':
            archs_arg = optarg;
            break;
        case 'j': {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!optarg[0] || *end || v < 1 || v > 256)
                return ctl_usage_err(self->name,
                                     "-j needs a number from 1 to 256, not '%s'", optarg);
            jobs = (unsigned)v;
            break;
        }
        default:
            if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!manifest)
        return ctl_usage_err(self->name, "--manifest FILE is required");
    if (!archs_arg)
        return ctl_usage_err(self->name, "--arch is required (e.g. --arch sm_80,sm_90)");
    archs_arg = strdup(archs_arg);
    if (!archs_arg) {
        ctl_err("out of memory");
        return CTL_EXIT_FAIL;
    }
    for (char *a = strtok_r(archs_arg, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (n_archs == MAX_ARCHS) {
            status = ctl_usage_err(self->name, "at most %d archs", MAX_ARCHS);
            goto out;
        }
        if (!ctl_arch_parse(a, arch_buf[n_archs], sizeof arch_buf[n_archs])) {
            status = ctl_usage_err(self->name,
                                   "bad arch '%s' (expected " CTL_ARCH_FORMS ")", a);
            goto out;
        }
        archs[n_archs] = arch_buf[n_archs];
        n_archs++;
    }
    if (!n_archs) {
        status = ctl_usage_err(self->name, "--arch names no arch");
        goto out;
    }

    /* Populating makes the store if it is missing: baking a new image
     * starts from nothing. */
    dir = ctl_target_dir(o, 1, NULL);
    if (!dir) {
        status = CTL_EXIT_FAIL;
        goto out;
    }
    rc = kc_store_open(dir, NULL, &st);
    if (rc != KC_OK) {
        ctl_err("cannot open store %s: %s (%s)", dir, kc_strerror(rc),
                kc_store_open_errmsg());
        status = CTL_EXIT_FAIL;
        goto out;
    }
    if (kc_store_is_readonly(st)) {
        ctl_err("store %s is read-only: nothing could be published", dir);
        status = CTL_EXIT_FAIL;
        goto out;
    }
    if (o->json)
        archs_json = json_array();
    for (size_t i = 0; i < n_archs; i++) {
        int s = populate_arch(o, st, manifest, archs[i], jobs, archs_json);
        if (s == BAD_MANIFEST) {
            /* A manifest that does not load fails alike for every arch. */
            status = CTL_EXIT_FAIL;
            goto out;
        }
        if (s != CTL_EXIT_OK)
            status = s;
    }
    if (archs_json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "store", json_string(dir));
        json_object_set_new(doc, "manifest", json_string(manifest));
        json_object_set_new(doc, "archs", archs_json);
        archs_json = NULL;
        int s = ctl_json_print(doc);
        if (status == CTL_EXIT_OK)
            status = s;
    }
out:
    json_decref(archs_json);
    kc_store_close(st);
    free(archs_arg);
    return status;
}

#endif

const kc_cmd_t kc_cmd_populate = {
    .name = "populate",
    .summary =
        "compile every config of a manifest's kernels for each arch, without a GPU",
    .usage = "populate --manifest FILE --arch A[,A...] [-j N]",
    .help = help,
    .run = run,
};
