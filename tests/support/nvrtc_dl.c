#include "nvrtc_dl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int kct_nvrtc_compile(const kct_nvrtc_t *nv, const char *src, const char *name,
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
