/* PTX -> cubin with nvJitLink, loaded with dlopen: the CUDA toolkit's linker
 * library needs no driver and no GPU, so a CPU-only machine (CI, an image
 * build, `cachectl populate`) turns PTX into cubins for any arch. The
 * driver's JIT (the device's ptx_to_cubin) stays the fallback. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "kcache/errors.h"

/* The subset of nvJitLink.h used here, declared by hand: the header's
 * static inline wrappers call versioned symbols, and a dlopen'ed library
 * is reached through its plain exported names. */
typedef struct nvjl *nvjl_t;
enum { NVJL_SUCCESS = 0, NVJL_INPUT_PTX = 2 };

typedef struct nvjl_api {
    int (*Create)(nvjl_t *, uint32_t, const char *const *);
    int (*Destroy)(nvjl_t *);
    int (*AddData)(nvjl_t, int, const void *, size_t, const char *);
    int (*Complete)(nvjl_t);
    int (*GetLinkedCubinSize)(nvjl_t, size_t *);
    int (*GetLinkedCubin)(nvjl_t, void *);
    int (*GetErrorLogSize)(nvjl_t, size_t *);
    int (*GetErrorLog)(nvjl_t, char *);
    int (*Version)(unsigned *, unsigned *);
} nvjl_api_t;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static nvjl_api_t g_api;
static int g_loaded;
static char g_load_err[512];
static char g_toolchain[32] = "nvjitlink-unavailable";

#define NVJL_SYMBOLS(X)                                                                  \
    X(Create)                                                                            \
    X(Destroy)                                                                           \
    X(AddData)                                                                           \
    X(Complete)                                                                          \
    X(GetLinkedCubinSize)                                                                \
    X(GetLinkedCubin)                                                                    \
    X(GetErrorLogSize)                                                                   \
    X(GetErrorLog)                                                                       \
    X(Version)

static void *open_nvjitlink(void)
{
    const char *pin = getenv("KCACHE_NVJITLINK");
    const char *home = getenv("CUDA_HOME");
    char names[6][512];
    size_t n = 0;

    /* KCACHE_NVJITLINK: the library to load, or "none" to always use the
     * driver's JIT. */
    if (pin && *pin) {
        if (strcmp(pin, "none") == 0) {
            snprintf(g_load_err, sizeof(g_load_err),
                     "nvJitLink not used (KCACHE_NVJITLINK=none)");
            return NULL;
        }
        void *h = dlopen(pin, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            snprintf(g_load_err, sizeof(g_load_err), "KCACHE_NVJITLINK=%s: %s", pin,
                     dlerror());
        return h;
    }
    snprintf(names[n++], sizeof(names[0]), "libnvJitLink.so.13");
    snprintf(names[n++], sizeof(names[0]), "libnvJitLink.so");
    if (home && *home)
        snprintf(names[n++], sizeof(names[0]), "%s/lib64/libnvJitLink.so", home);
    snprintf(names[n++], sizeof(names[0]), "/usr/local/cuda/lib64/libnvJitLink.so");
    for (size_t i = 0; i < n; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
    }
    snprintf(g_load_err, sizeof(g_load_err),
             "nvJitLink not found (libnvJitLink.so; set CUDA_HOME or KCACHE_NVJITLINK)");
    return NULL;
}

static void load_once(void)
{
    void *h = open_nvjitlink();
    unsigned major = 0, minor = 0;

    if (!h)
        return;
#define KC__NVJL_RESOLVE(name)                                                           \
    *(void **)&g_api.name = dlsym(h, "nvJitLink" #name);                                 \
    if (!g_api.name) {                                                                   \
        snprintf(g_load_err, sizeof(g_load_err), "nvJitLink lacks nvJitLink%s", #name);  \
        return;                                                                          \
    }
    NVJL_SYMBOLS(KC__NVJL_RESOLVE)
#undef KC__NVJL_RESOLVE
    if (g_api.Version(&major, &minor) != NVJL_SUCCESS) {
        snprintf(g_load_err, sizeof(g_load_err), "nvJitLinkVersion failed");
        return;
    }
    snprintf(g_toolchain, sizeof(g_toolchain), "nvjitlink-%u.%u", major, minor);
    g_loaded = 1;
}

int kc__nvjitlink_load(char *errmsg, size_t errcap)
{
    pthread_once(&g_once, load_once);
    if (g_loaded)
        return KC_OK;
    if (errmsg && errcap)
        snprintf(errmsg, errcap, "%s", g_load_err);
    return KC_EUNSUPPORTED;
}

const char *kc__nvjitlink_toolchain_id(void)
{
    pthread_once(&g_once, load_once);
    return g_toolchain;
}

int kc__nvjitlink_ptx_to_cubin(const char *ptx, size_t len, const char *arch,
                               void **cubin, size_t *cubin_len, char *log, size_t log_cap)
{
    nvjl_t h = NULL;
    char opt[64];
    const char *opts[1] = {opt};
    size_t n = 0;
    void *buf = NULL;
    int r, rc = KC_ECOMPILE;

    *cubin = NULL;
    *cubin_len = 0;
    if (log && log_cap)
        log[0] = '\0';
    if (kc__nvjitlink_load(log, log_cap) != KC_OK)
        return KC_EUNSUPPORTED;
    if (!ptx || !arch || strncmp(arch, "sm_", 3) != 0 ||
        snprintf(opt, sizeof(opt), "-arch=%s", arch) >= (int)sizeof(opt)) {
        if (log && log_cap)
            snprintf(log, log_cap, "nvJitLink: not a real target arch: '%s'",
                     arch ? arch : "");
        return KC_EINVAL;
    }
    if ((r = g_api.Create(&h, 1, opts)) != NVJL_SUCCESS) {
        if (log && log_cap)
            snprintf(log, log_cap, "nvJitLinkCreate(%s): error %d", opt, r);
        return r == 1 || r == 2 ? KC_EINVAL : KC_ECOMPILE;
    }
    /* The PTX is text: nvJitLink wants it NUL-terminated. */
    char *text = malloc(len + 1);
    if (!text) {
        rc = KC_ENOMEM;
        goto done;
    }
    memcpy(text, ptx, len);
    text[len] = '\0';
    r = g_api.AddData(h, NVJL_INPUT_PTX, text, len + 1, "kernel.ptx");
    if (r == NVJL_SUCCESS)
        r = g_api.Complete(h);
    free(text);
    if (r != NVJL_SUCCESS) {
        size_t ls = 0;
        if (log && log_cap && g_api.GetErrorLogSize(h, &ls) == NVJL_SUCCESS && ls > 1) {
            char *l = malloc(ls);
            if (l && g_api.GetErrorLog(h, l) == NVJL_SUCCESS)
                snprintf(log, log_cap, "%s", l);
            free(l);
        } else if (log && log_cap) {
            snprintf(log, log_cap, "nvJitLink: error %d", r);
        }
        goto done;
    }
    if (g_api.GetLinkedCubinSize(h, &n) != NVJL_SUCCESS || n == 0 || !(buf = malloc(n)) ||
        g_api.GetLinkedCubin(h, buf) != NVJL_SUCCESS) {
        if (log && log_cap)
            snprintf(log, log_cap, "nvJitLink: no cubin");
        free(buf);
        rc = buf ? KC_ECOMPILE : KC_ENOMEM;
        goto done;
    }
    *cubin = buf;
    *cubin_len = n;
    rc = KC_OK;
done:
    g_api.Destroy(&h);
    return rc;
}
