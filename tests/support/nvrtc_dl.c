#include "nvrtc_dl.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

static void *open_nvrtc(char *err, size_t cap)
{
    static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so"};
    static const char *const dirs[] = {"/usr/local/cuda/lib64", "/usr/local/cuda/lib"};
    const char *home = getenv("CUDA_HOME");
    char path[4096];
    void *h;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
            return h;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (home && *home) {
            snprintf(path, sizeof path, "%s/lib64/%s", home, names[i]);
            if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
                return h;
        }
        for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
            snprintf(path, sizeof path, "%s/%s", dirs[d], names[i]);
            if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
                return h;
        }
    }
    snprintf(err, cap, "cannot load NVRTC (libnvrtc.so.13): %s", dlerror());
    return NULL;
}

int kct_nvrtc_load(kct_nvrtc_t *nv, char *err, size_t cap)
{
    memset(nv, 0, sizeof *nv);
    nv->lib = open_nvrtc(err, cap);
    if (!nv->lib)
        return -1;
#define RESOLVE(field, sym)                                                              \
    do {                                                                                 \
        *(void **)&nv->field = dlsym(nv->lib, sym);                                      \
        if (!nv->field) {                                                                \
            snprintf(err, cap, "NVRTC lacks %s", sym);                                   \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)
    RESOLVE(version, "nvrtcVersion");
    RESOLVE(create_program, "nvrtcCreateProgram");
    RESOLVE(compile_program, "nvrtcCompileProgram");
    RESOLVE(get_cubin_size, "nvrtcGetCUBINSize");
    RESOLVE(get_cubin, "nvrtcGetCUBIN");
    RESOLVE(get_log_size, "nvrtcGetProgramLogSize");
    RESOLVE(get_log, "nvrtcGetProgramLog");
    RESOLVE(destroy_program, "nvrtcDestroyProgram");
#undef RESOLVE
    if (nv->version(&nv->major, &nv->minor) != NVRTC_SUCCESS) {
        snprintf(err, cap, "nvrtcVersion failed");
        goto fail;
    }
    return 0;
fail:
    kct_nvrtc_unload(nv);
    return -1;
}

/* NVRTC stays mapped: its C++ runtime keeps allocations reachable only from
 * its own globals, which LeakSanitizer reports as leaks once it is unloaded,
 * and unloading it gains nothing in a short-lived test program. */
void kct_nvrtc_unload(kct_nvrtc_t *nv)
{
    memset(nv, 0, sizeof *nv);
}

/* ---- the cubin cache: real cubins compiled once per build tree ---------- */

/* Where the cubin of (nv's version, src, name, opts) is kept: a file named by
 * the XXH3-128 of those, in $KC_TEST_TMP/cubins (the build's tests/tmp).
 * 0, or -1 when the tests have no scratch directory (then nothing is kept). */
static int cache_path(const kct_nvrtc_t *nv, const char *src, const char *name,
                      const char *const *opts, int n_opts, char *out, size_t cap)
{
    const char *tmp = getenv("KC_TEST_TMP");
    XXH3_state_t *h;
    XXH128_hash_t d;
    char dir[4096];

    if (!tmp || !*tmp || !(h = XXH3_createState()))
        return -1;
    XXH3_128bits_reset(h);
    XXH3_128bits_update(h, &nv->major, sizeof nv->major);
    XXH3_128bits_update(h, &nv->minor, sizeof nv->minor);
    /* Each field with its terminating NUL, so that no two lists hash alike. */
    XXH3_128bits_update(h, src, strlen(src) + 1);
    XXH3_128bits_update(h, name, strlen(name) + 1);
    for (int i = 0; i < n_opts; i++)
        XXH3_128bits_update(h, opts[i], strlen(opts[i]) + 1);
    d = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    snprintf(dir, sizeof dir, "%s/cubins", tmp);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    return snprintf(out, cap, "%s/%016llx%016llx.cubin", dir,
                    (unsigned long long)d.high64, (unsigned long long)d.low64) < (int)cap
               ? 0
               : -1;
}

static int is_elf(const void *p, size_t len)
{
    return len >= 64 && memcmp(p, "\177ELF", 4) == 0;
}

static int cache_read(const char *path, void **cubin, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    void *buf;

    if (!f)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = malloc((size_t)n))) {
        fclose(f);
        return -1;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *cubin = buf;
    *len = (size_t)n;
    return 0;
}

/* Written aside and renamed: concurrent tests never read half a cubin. */
static void cache_write(const char *path, const void *cubin, size_t len)
{
    char tmp[4300];
    FILE *f;

    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >=
            (int)sizeof tmp ||
        !(f = fopen(tmp, "wb")))
        return;
    if (fwrite(cubin, 1, len, f) != len || fclose(f) != 0 || rename(tmp, path) != 0)
        unlink(tmp);
}

static int compile_now(const kct_nvrtc_t *nv, const char *src, const char *name,
                       const char *const *opts, int n_opts, void **cubin, size_t *len,
                       char *err, size_t cap);

int kct_nvrtc_compile(const kct_nvrtc_t *nv, const char *src, const char *name,
                      const char *const *opts, int n_opts, void **cubin, size_t *len,
                      char *err, size_t cap)
{
    char path[4200];
    int cached = cache_path(nv, src, name, opts, n_opts, path, sizeof path) == 0;

    *cubin = NULL;
    *len = 0;
    if (cached && cache_read(path, cubin, len) == 0) {
        if (is_elf(*cubin, *len))
            return 0;
        free(*cubin); /* damaged: compiled again and replaced */
        *cubin = NULL;
        *len = 0;
    }
    if (compile_now(nv, src, name, opts, n_opts, cubin, len, err, cap) != 0)
        return -1;
    if (cached)
        cache_write(path, *cubin, *len);
    return 0;
}

static int compile_now(const kct_nvrtc_t *nv, const char *src, const char *name,
                       const char *const *opts, int n_opts, void **cubin, size_t *len,
                       char *err, size_t cap)
{
    nvrtcProgram prog = NULL;
    nvrtcResult r;
    size_t n = 0;
    char *buf = NULL;

    *cubin = NULL;
    *len = 0;
    r = nv->create_program(&prog, src, name, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        snprintf(err, cap, "nvrtcCreateProgram: error %d", (int)r);
        return -1;
    }
    r = nv->compile_program(prog, n_opts, opts);
    if (r != NVRTC_SUCCESS) {
        size_t log_len = 0;
        if (nv->get_log_size(prog, &log_len) == NVRTC_SUCCESS && log_len > 1 &&
            (buf = malloc(log_len)) && nv->get_log(prog, buf) == NVRTC_SUCCESS)
            snprintf(err, cap, "%s: compile failed (error %d):\n%s", name, (int)r, buf);
        else
            snprintf(err, cap, "%s: compile failed (error %d)", name, (int)r);
        goto fail;
    }
    r = nv->get_cubin_size(prog, &n);
    if (r != NVRTC_SUCCESS || n == 0) {
        snprintf(err, cap, "%s: no cubin (error %d); is the arch a real sm_XX?", name,
                 (int)r);
        goto fail;
    }
    buf = malloc(n);
    if (!buf) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    r = nv->get_cubin(prog, buf);
    if (r != NVRTC_SUCCESS) {
        snprintf(err, cap, "%s: nvrtcGetCUBIN: error %d", name, (int)r);
        goto fail;
    }
    nv->destroy_program(&prog);
    *cubin = buf;
    *len = n;
    return 0;
fail:
    free(buf);
    nv->destroy_program(&prog);
    return -1;
}
