/* kcache_bench_modules: the CUDA driver's own cost of loading many modules
 * into one context, without kcache: the floor under kcache_bench_launcher's
 * "store hits of N distinct kernels".
 *
 *   kcache_bench_modules CUBIN ENTRY [N [same|distinct|distinct-names|load-only]]
 *
 * Loads CUBIN's bytes N times (default 16384; each load is a new module
 * to the driver), and for each: cuModuleLoadData, cuModuleGetFunction of
 * ENTRY (a kernel taking one pointer), one launch of 1 thread and a
 * synchronize. With `distinct`, N distinct images instead: where the cubin holds the
 * 32-bit value 0x13572468 once (an immediate of the kernel, e.g. `o[i] =
 * __int_as_float(0x13572468)`), each load's copy has it replaced by
 * 0x13570000 + i, so that no two modules are alike. With `distinct-names`, N
 * distinct images that differ only in the kernel's name: every occurrence
 * of ENTRY in the image (the symbol and the section names that carry it)
 * has its characters after the first replaced by i in hex, as long as
 * ENTRY (e.g. `k0000000`, 8 characters: up to 16^7 names); this tells
 * whether the driver's cost grows with modules or with modules whose
 * kernels share a name. Prints the median time per sixteenth
 * of the loads and the first-1000 / last-1000 medians, and the process's first load (and
 * launch) alone: the driver's floor under a fresh process's first call. With `load-only`,
 * no launch (for a cubin whose kernel takes other arguments: an imported Triton
 * binary). KC_BENCH_MODULES_API=library loads through the context-independent
 * library API instead (cuLibraryLoadData, cuLibraryGetKernel,
 * cuKernelGetFunction for the current context): whether its cost grows with
 * the libraries loaded as the module API's does with modules.
 * KC_BENCH_MODULES_KEEP=K (module API) unloads, after each load, the module
 * loaded K loads before (cuModuleUnload, timed apart), so at most
 * K stay loaded: whether the cost follows the modules loaded now or every
 * module the context ever loaded, and what the unload itself costs. The driver is opened
 * with dlopen, so this builds (and says it cannot run) without one. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"
#include "cuda_sym.h"

typedef int (*cu_init_t)(unsigned);
typedef int (*cu_dev_get_t)(int *, int);
typedef int (*cu_retain_t)(void **, int);
typedef int (*cu_set_t)(void *);
typedef int (*cu_alloc_t)(uint64_t *, size_t);
typedef int (*cu_load_t)(void **, const void *);
typedef int (*cu_getfn_t)(void **, void *, const char *);
typedef int (*cu_launch_t)(void *, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, unsigned, void *, void **, void **);
typedef int (*cu_sync_t)(void);
typedef int (*cu_lib_load_t)(void **, const void *, void *, void **, unsigned, void *,
                             void **, unsigned);
typedef int (*cu_lib_kernel_t)(void **, void *, const char *);
typedef int (*cu_kernel_fn_t)(void **, void *);
typedef int (*cu_unload_t)(void *);

static void *sym(void *lib, const char *name)
{
    return kc_tool_cu_sym(lib, "kcache_bench_modules", name, 2);
}

/* The median of v[n], leaving v as it is (later medians read it again). */
static double median(const double *v, size_t n)
{
    double *c = malloc(n * sizeof(*c));
    if (!c)
        return 0;
    memcpy(c, v, n * sizeof(*c));
    double m = bench_median(c, n);
    free(c);
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kcache_bench_modules CUBIN ENTRY [N "
                        "[same|distinct|distinct-names|load-only]]\n");
        return 2;
    }
    size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 16384;
    /* Under 16 loads: the process's first load alone is printed. */
    if (n == 0 || (n >= 16 && n < 2000))
        n = n ? 2000 : 1;
    FILE *f = fopen(argv[1], "rb");
    static char cubin[1 << 20];
    size_t len = f ? fread(cubin, 1, sizeof(cubin), f) : 0;
    if (!f || len == 0) {
        fprintf(stderr, "kcache_bench_modules: cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(f);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "kcache_bench_modules: no CUDA driver here (%s)\n", dlerror());
        return 77;
    }
    cu_init_t init = (cu_init_t)sym(lib, "cuInit");
    cu_dev_get_t dev_get = (cu_dev_get_t)sym(lib, "cuDeviceGet");
    cu_retain_t retain = (cu_retain_t)sym(lib, "cuDevicePrimaryCtxRetain");
    cu_set_t set = (cu_set_t)sym(lib, "cuCtxSetCurrent");
    cu_alloc_t alloc = (cu_alloc_t)sym(lib, "cuMemAlloc_v2");
    cu_load_t load = (cu_load_t)sym(lib, "cuModuleLoadData");
    cu_getfn_t getfn = (cu_getfn_t)sym(lib, "cuModuleGetFunction");
    cu_launch_t launch = (cu_launch_t)sym(lib, "cuLaunchKernel");
    cu_sync_t sync = (cu_sync_t)sym(lib, "cuCtxSynchronize");
    const char *api = getenv("KC_BENCH_MODULES_API");
    int library = api && strcmp(api, "library") == 0;
    const char *keep_env = getenv("KC_BENCH_MODULES_KEEP");
    size_t keep = keep_env && !library ? strtoul(keep_env, NULL, 10) : 0;
    cu_unload_t unload = keep ? (cu_unload_t)sym(lib, "cuModuleUnload") : NULL;
    cu_lib_load_t lib_load =
        library ? (cu_lib_load_t)sym(lib, "cuLibraryLoadData") : NULL;
    cu_lib_kernel_t lib_kernel =
        library ? (cu_lib_kernel_t)sym(lib, "cuLibraryGetKernel") : NULL;
    cu_kernel_fn_t kernel_fn =
        library ? (cu_kernel_fn_t)sym(lib, "cuKernelGetFunction") : NULL;
    int dev;
    void *ctx;
    uint64_t buf;
    if (init(0) || dev_get(&dev, 0) || retain(&ctx, dev) || set(ctx) ||
        alloc(&buf, 4096)) {
        fprintf(stderr, "kcache_bench_modules: no usable device\n");
        return 77;
    }
    double *load_us = calloc(n, sizeof(double)), *all_us = calloc(n, sizeof(double));
    double *unload_us = calloc(n, sizeof(double));
    void **mods = keep ? calloc(keep, sizeof(void *)) : NULL; /* the last keep */
    if (!load_us || !all_us || !unload_us || (keep && !mods))
        return 1;
    long magic_at = -1;
    for (size_t i = 0; i + 4 <= len; i++) {
        uint32_t v;
        memcpy(&v, cubin + i, 4);
        if (v == 0x13572468u) {
            magic_at = magic_at < 0 ? (long)i : -2;
        }
    }
    int distinct = argc > 4 && strcmp(argv[4], "distinct") == 0;
    int load_only = argc > 4 && strcmp(argv[4], "load-only") == 0;
    int names = argc > 4 && strcmp(argv[4], "distinct-names") == 0;
    size_t name_len = strlen(argv[2]);
    char entry[256];
    snprintf(entry, sizeof(entry), "%s", argv[2]);
    if (names) {
        size_t digits = name_len - 1, where = 0;
        double cap = 1;
        for (size_t d = 0; d < digits && cap < 1e18; d++)
            cap *= 16;
        for (size_t i = 0; i + name_len <= len; i++)
            where += memcmp(cubin + i, argv[2], name_len) == 0;
        if (name_len < 2 || name_len >= sizeof(entry) || where == 0 || (double)n > cap) {
            fprintf(stderr,
                    "kcache_bench_modules: distinct-names needs ENTRY in the cubin and "
                    "long enough for %zu names\n",
                    n);
            return 2;
        }
    }
    if (distinct && magic_at < 0) {
        fprintf(stderr, "kcache_bench_modules: the cubin holds 0x13572468 %s\n",
                magic_at == -1 ? "nowhere" : "more than once");
        return 2;
    }
    {
        for (size_t i = 0; i < n; i++) {
            void *mod, *fn, *args[] = {&buf};
            if (distinct) {
                uint32_t v = 0x13570000u + (uint32_t)i;
                memcpy(cubin + magic_at, &v, 4);
            }
            if (names) {
                /* The new name: ENTRY's first character, then i in hex,
                 * zero-padded to ENTRY's length; written over every
                 * occurrence of the previous name. */
                char next[256];
                next[0] = argv[2][0];
                snprintf(next + 1, sizeof(next) - 1, "%0*zx", (int)(name_len - 1), i);
                for (size_t at = 0; at + name_len <= len; at++)
                    if (memcmp(cubin + at, entry, name_len) == 0)
                        memcpy(cubin + at, next, name_len);
                memcpy(entry, next, name_len + 1);
            }
            double t0 = bench_now_us();
            void *kernel;
            if (library ? (lib_load(&mod, cubin, NULL, NULL, 0, NULL, NULL, 0) ||
                           lib_kernel(&kernel, mod, entry) || kernel_fn(&fn, kernel))
                        : (load(&mod, cubin) || getfn(&fn, mod, entry))) {
                fprintf(stderr, "kcache_bench_modules: load %zu failed\n", i);
                return 1;
            }
            double t1 = bench_now_us();
            if (!load_only &&
                (launch(fn, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL) || sync())) {
                fprintf(stderr, "kcache_bench_modules: launch %zu failed\n", i);
                return 1;
            }
            load_us[i] = t1 - t0;
            all_us[i] = bench_now_us() - t0;
            if (keep) {
                /* Slot i % keep holds module i - keep until module i. */
                double u0 = bench_now_us();
                if (i >= keep && unload(mods[i % keep])) {
                    fprintf(stderr, "kcache_bench_modules: unload %zu failed\n",
                            i - keep);
                    return 1;
                }
                unload_us[i] = bench_now_us() - u0;
                mods[i % keep] = mod;
            }
        }
        char kept[64] = "";
        if (keep)
            snprintf(kept, sizeof(kept), ", at most %zu loaded at once", keep);
        printf(
            "raw driver%s, %zu loads of %s %zu-byte cubin into one context%s (load + get "
            "function; + first launch + sync):\n",
            library ? " (library API)" : "", n,
            distinct ? "distinct variants of a"
            : names  ? "distinctly named variants of a"
                     : "one",
            len, kept);
        printf("  the process's first: load + get function %.1f us, with %s %.1f us\n",
               load_us[0], load_only ? "nothing else (load-only)" : "launch + sync",
               all_us[0]);
        if (n < 16) {
            fflush(stdout);
            return 0;
        }
        printf("  median per sixteenth, load:        ");
        for (int s = 0; s < 16; s++)
            printf(" %.1f", median(load_us + s * (n / 16), n / 16));
        printf(" us\n  median per sixteenth, load+launch: ");
        for (int s = 0; s < 16; s++)
            printf(" %.1f", median(all_us + s * (n / 16), n / 16));
        double a = median(all_us, 1000), b = median(all_us + n - 1000, 1000);
        printf(" us\n  first 1000 %.1f us, last 1000 %.1f us: ratio %.2f\n", a, b, b / a);
        if (keep && n >= keep + 1000)
            printf(
                "  cuModuleUnload with %zu loaded: median over the last 1000 %.1f us\n",
                keep, median(unload_us + n - 1000, 1000));
        /* The tails (the process's first load left out): the driver's own
         * stalls, to set beside the launcher's. */
        bench_print_dist("load + function + launch + sync", all_us + 1, n - 1);
        if (keep && n > keep)
            bench_print_dist("cuModuleUnload", unload_us + keep, n - keep);
        fflush(stdout);
    }
    return 0;
}
