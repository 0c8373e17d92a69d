/* NVRTC through dlopen, so that the library starts on machines without the
 * CUDA toolkit and only fails when a compile is actually needed. */
#include "compiler.h"

#include <cuda.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nvrtc.h>

#include "kcache/errors.h"

typedef struct nvrtc_api {
    const char *(*GetErrorString)(nvrtcResult);
    nvrtcResult (*Version)(int *, int *);
    nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int,
                                 const char *const *, const char *const *);
    nvrtcResult (*DestroyProgram)(nvrtcProgram *);
    nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
    nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
    nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetPTX)(nvrtcProgram, char *);
    nvrtcResult (*AddNameExpression)(nvrtcProgram, const char *);
    nvrtcResult (*GetLoweredName)(nvrtcProgram, const char *, const char **);
} nvrtc_api_t;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static nvrtc_api_t g_api;
static int g_loaded;
static char g_load_err[512];
static char g_toolchain[32] = "nvrtc-unavailable";

#define NVRTC_SYMBOLS(X)                                                                 \
    X(GetErrorString)                                                                    \
    X(Version)                                                                           \
    X(CreateProgram)                                                                     \
    X(DestroyProgram)                                                                    \
    X(CompileProgram)                                                                    \
    X(GetProgramLogSize)                                                                 \
    X(GetProgramLog)                                                                     \
    X(GetCUBINSize)                                                                      \
    X(GetCUBIN)                                                                          \
    X(GetPTXSize)                                                                        \
    X(GetPTX)                                                                            \
    X(AddNameExpression)                                                                 \
    X(GetLoweredName)

static void *open_nvrtc(void)
{
    char names[10][512];
    size_t n = 0;
    /* KCACHE_NVRTC: the library to load, or "none" for a process that must
     * never compile (it still launches what the store holds). */
    const char *pin = getenv("KCACHE_NVRTC");
    if (pin && *pin) {
        if (strcmp(pin, "none") == 0) {
            snprintf(g_load_err, sizeof(g_load_err),
                     "NVRTC disabled by KCACHE_NVRTC=none: this process does not "
                     "compile");
            return NULL;
        }
        void *h = dlopen(pin, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            snprintf(g_load_err, sizeof(g_load_err), "KCACHE_NVRTC=%s: %s", pin,
                     why ? why : "cannot load it");
        }
        return h;
    }
    /* The major version we were built against first, so a machine with
     * several toolkits compiles with the one the headers describe. */
    snprintf(names[n++], sizeof(names[0]), "libnvrtc.so.%d", CUDA_VERSION / 1000);
    if (CUDA_VERSION / 1000 != 13)
        snprintf(names[n++], sizeof(names[0]), "libnvrtc.so.13");
    if (CUDA_VERSION / 1000 != 12)
        snprintf(names[n++], sizeof(names[0]), "libnvrtc.so.12");
    snprintf(names[n++], sizeof(names[0]), "libnvrtc.so");
    /* The toolkit directory is often not on the loader's path. */
    const char *home = getenv("CUDA_HOME");
    if (home && *home) {
        snprintf(names[n++], sizeof(names[0]), "%s/lib64/libnvrtc.so.%d", home,
                 CUDA_VERSION / 1000);
        snprintf(names[n++], sizeof(names[0]), "%s/lib64/libnvrtc.so", home);
    }
    snprintf(names[n++], sizeof(names[0]), "/usr/local/cuda/lib64/libnvrtc.so.%d",
             CUDA_VERSION / 1000);
    snprintf(names[n++], sizeof(names[0]), "/usr/local/cuda/lib64/libnvrtc.so");

    for (size_t i = 0; i < n; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
    }
    const char *why = dlerror();
    snprintf(g_load_err, sizeof(g_load_err),
             "NVRTC not found (tried libnvrtc.so.%d, libnvrtc.so, $CUDA_HOME/lib64, "
             "/usr/local/cuda/lib64): %s",
             CUDA_VERSION / 1000, why ? why : "unknown error");
    return NULL;
}

static atomic_int g_attempted;

int kc__nvrtc_attempted(void)
{
    return atomic_load(&g_attempted);
}

static void load_once(void)
{
    atomic_store(&g_attempted, 1);
    void *h = open_nvrtc();
    if (!h)
        return;
#define KC__NVRTC_SYM(name)                                                              \
    *(void **)&g_api.name = dlsym(h, "nvrtc" #name);                                     \
    if (!g_api.name) {                                                                   \
        snprintf(g_load_err, sizeof(g_load_err), "NVRTC lacks nvrtc%s", #name);          \
        dlclose(h);                                                                      \
        return;                                                                          \
    }
    NVRTC_SYMBOLS(KC__NVRTC_SYM)
#undef KC__NVRTC_SYM
    int major = 0, minor = 0;
    if (g_api.Version(&major, &minor) != NVRTC_SUCCESS) {
        snprintf(g_load_err, sizeof(g_load_err), "nvrtcVersion failed");
        dlclose(h);
        return;
    }
    snprintf(g_toolchain, sizeof(g_toolchain), "nvrtc-%d.%d", major, minor);
    /* The handle stays open for the life of the process. */
    g_loaded = 1;
}

int kc__nvrtc_load(char *errmsg, size_t errcap)
{
    pthread_once(&g_once, load_once);
    if (g_loaded)
        return KC_OK;
    if (errmsg && errcap)
        snprintf(errmsg, errcap, "%s", g_load_err);
    return KC_ENVRTC;
}

const char *kc__nvrtc_toolchain_id(void)
{
    pthread_once(&g_once, load_once);
    return g_toolchain;
}

void kc__compile_out_free(kc__compile_out_t *out)
{
    if (!out)
        return;
    free(out->cubin);
    free(out->log);
    free(out->lowered_entry);
    memset(out, 0, sizeof(*out));
}

/* An extern "C" name or an already mangled one is looked up as is; anything
 * else (ns::f, f<128>) is a C++ name expression that NVRTC must lower. */
static int is_plain_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    }
    return 1;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static char *dup_printf(const char *fmt, const char *a, const char *b)
{
    int n = snprintf(NULL, 0, fmt, a, b);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s)
        snprintf(s, (size_t)n + 1, fmt, a, b);
    return s;
}

/* "sm_90a" -> "compute_90a" for PTX output; "compute_*" stays as it is. */
static int virtual_arch(const char *arch, char *buf, size_t cap)
{
    const char *digits = strncmp(arch, "sm_", 3) == 0 ? arch + 3 : NULL;
    if (!digits)
        return snprintf(buf, cap, "%s", arch) < (int)cap ? KC_OK : KC_EINVAL;
    return snprintf(buf, cap, "compute_%s", digits) < (int)cap ? KC_OK : KC_EINVAL;
}

/* Appends NVRTC's log to out->log (set, or replaced by a message when the
 * log is empty). */
static void take_log(nvrtcProgram prog, kc__compile_out_t *out)
{
    size_t size = 0;
    if (g_api.GetProgramLogSize(prog, &size) != NVRTC_SUCCESS || size <= 1)
        return;
    char *log = malloc(size);
    if (!log)
        return;
    if (g_api.GetProgramLog(prog, log) != NVRTC_SUCCESS) {
        free(log);
        return;
    }
    log[size - 1] = '\0';
    out->log = log;
}

static void fail_log(kc__compile_out_t *out, const char *call, nvrtcResult r)
{
    /* Keep a compile log if there is one: it says more than the code. */
    if (out->log)
        return;
    out->log = dup_printf("%s: %s", call, g_api.GetErrorString(r));
}

static int compile(const kc__compile_in_t *in, kc__compile_out_t *out, int want_ptx)
{
    memset(out, 0, sizeof(*out));
    char err[512];
    if (kc__nvrtc_load(err, sizeof(err)) != KC_OK) {
        out->log = dup_printf("%s%s", err, "");
        return KC_ENVRTC;
    }
    if (!in || !in->source || !in->entry || !*in->entry || !in->arch ||
        (in->n_headers && !in->headers) || (in->n_options && !in->options) ||
        (in->n_params && !in->params))
        return KC_EINVAL;

    int rc = KC_ENOMEM;
    nvrtcProgram prog = NULL;
    nvrtcResult r;
    size_t n_opts = in->n_options + in->n_params + 1;
    char *src = NULL;
    const char **hdr_src = NULL, **hdr_names = NULL;
    const char **opts = calloc(n_opts, sizeof(*opts));
    char **owned = calloc(in->n_params + 1, sizeof(*owned));
    size_t source_len = in->source_len ? in->source_len : strlen(in->source);
    if (!opts || !owned)
        goto fail;
    if (in->n_headers) {
        hdr_src = calloc(in->n_headers, sizeof(*hdr_src));
        hdr_names = calloc(in->n_headers, sizeof(*hdr_names));
        if (!hdr_src || !hdr_names)
            goto fail;
        for (size_t i = 0; i < in->n_headers; i++) {
            hdr_src[i] = in->headers[i].content;
            hdr_names[i] = in->headers[i].name;
        }
    }
    /* NVRTC wants a NUL-terminated source; ours comes with a length. */
    if (!(src = malloc(source_len + 1)))
        goto fail;
    memcpy(src, in->source, source_len);
    src[source_len] = '\0';

    size_t k = 0;
    for (size_t i = 0; i < in->n_options; i++)
        opts[k++] = in->options[i];
    for (size_t i = 0; i < in->n_params; i++) {
        int n =
            snprintf(NULL, 0, "-D%s=%" PRId64, in->params[i].name, in->params[i].value);
        if (n < 0 || !(owned[i] = malloc((size_t)n + 1)))
            goto fail;
        snprintf(owned[i], (size_t)n + 1, "-D%s=%" PRId64, in->params[i].name,
                 in->params[i].value);
        opts[k++] = owned[i];
    }
    char arch[32];
    if (want_ptx) {
        if (virtual_arch(in->arch, arch, sizeof(arch)) != KC_OK) {
            rc = KC_EINVAL;
            goto fail;
        }
    } else {
        snprintf(arch, sizeof(arch), "%s", in->arch);
    }
    /* A real arch (sm_XY) makes NVRTC produce a cubin; a virtual one PTX. */
    owned[in->n_params] = dup_printf("--gpu-architecture=%s%s", arch, "");
    if (!owned[in->n_params])
        goto fail;
    opts[k++] = owned[in->n_params];

    uint64_t t0 = now_us();
    r = g_api.CreateProgram(&prog, src, in->name ? in->name : "kernel.cu",
                            (int)in->n_headers, hdr_src, hdr_names);
    if (r != NVRTC_SUCCESS) {
        prog = NULL;
        fail_log(out, "nvrtcCreateProgram", r);
        rc = r == NVRTC_ERROR_OUT_OF_MEMORY ? KC_ENOMEM : KC_ENVRTC;
        goto fail;
    }
    int name_expr = !is_plain_identifier(in->entry);
    if (name_expr && (r = g_api.AddNameExpression(prog, in->entry)) != NVRTC_SUCCESS) {
        fail_log(out, "nvrtcAddNameExpression", r);
        rc = KC_ENVRTC;
        goto fail;
    }
    r = g_api.CompileProgram(prog, (int)k, opts);
    take_log(prog, out);
    if (r != NVRTC_SUCCESS) {
        fail_log(out, "nvrtcCompileProgram", r);
        /* A bad option is the spec's fault, like a syntax error. */
        rc = r == NVRTC_ERROR_COMPILATION || r == NVRTC_ERROR_INVALID_OPTION ||
                     r == NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID
                 ? KC_ECOMPILE
                 : KC_ENVRTC;
        goto fail;
    }

    const char *lowered = in->entry;
    if (name_expr &&
        (r = g_api.GetLoweredName(prog, in->entry, &lowered)) != NVRTC_SUCCESS) {
        fail_log(out, "nvrtcGetLoweredName", r);
        rc = KC_ECOMPILE;
        goto fail;
    }
    /* lowered points into the program: copy it before destroying it. */
    if (!(out->lowered_entry = strdup(lowered)))
        goto fail;

    size_t size = 0;
    r = want_ptx ? g_api.GetPTXSize(prog, &size) : g_api.GetCUBINSize(prog, &size);
    if (r != NVRTC_SUCCESS || size == 0) {
        fail_log(out, want_ptx ? "nvrtcGetPTXSize" : "nvrtcGetCUBINSize", r);
        rc = KC_ENVRTC;
        goto fail;
    }
    if (!(out->cubin = malloc(size)))
        goto fail;
    r = want_ptx ? g_api.GetPTX(prog, out->cubin) : g_api.GetCUBIN(prog, out->cubin);
    if (r != NVRTC_SUCCESS) {
        fail_log(out, want_ptx ? "nvrtcGetPTX" : "nvrtcGetCUBIN", r);
        rc = KC_ENVRTC;
        goto fail;
    }
    /* The PTX size counts its NUL; callers want the text's length. */
    out->cubin_len = want_ptx ? strnlen(out->cubin, size) : size;
    uint64_t dt = now_us() - t0;
    out->compile_us = dt ? dt : 1;
    rc = KC_OK;

fail:
    if (prog)
        g_api.DestroyProgram(&prog);
    if (rc != KC_OK) {
        free(out->cubin);
        free(out->lowered_entry);
        out->cubin = NULL;
        out->lowered_entry = NULL;
        out->cubin_len = 0;
    }
    if (owned)
        for (size_t i = 0; i <= in->n_params; i++)
            free(owned[i]);
    free(owned);
    free(opts);
    free(hdr_src);
    free(hdr_names);
    free(src);
    return rc;
}

int kc__nvrtc_compile(const kc__compile_in_t *in, kc__compile_out_t *out)
{
    return compile(in, out, 0);
}

int kc__nvrtc_compile_ptx(const kc__compile_in_t *in, kc__compile_out_t *out)
{
    return compile(in, out, 1);
}
