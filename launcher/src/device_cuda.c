/* The CUDA device: the Driver API through dlopen("libcuda.so.1"), so that a
 * binary built with the launcher starts on a machine without a driver and
 * fails with KC_ENODEVICE only when it asks for a GPU.
 *
 * Entry points are resolved once per process, each by the exact versioned
 * symbol whose prototype cuda.h gives us (cuMemAlloc_v2, cuCtxGetDevice),
 * with cuGetProcAddress as the fallback for a driver that lacks the symbol.
 * Those a stored kernel's launch needs are resolved when the device opens;
 * the rest (memory, copies, events, the linker: tuning and PTX) at the
 * first call that needs one of them, so that a process that only launches
 * stored kernels does not look up two dozen symbols it never calls (about
 * 0.4 us each on the H200 host, kcache_cuda_open_cost). A driver the host
 * program initialized is not initialized again (cuInit costs 5 us there).
 * Asking cuGetProcAddress first is not safe: with CUDA 13 it answers
 * "cuCtxGetDevice" at version 13000 with cuCtxGetDevice_v2, which takes a
 * second argument, while cuda.h's cuCtxGetDevice takes one (seen on an H100
 * with driver 580: a crash in libcuda). A symbol name pins the ABI.
 *
 * Context: if a context is current on the thread that opens the device, the
 * device uses that context; it does not own it (the driver offers no way to
 * retain a non-primary context), so the caller must keep it alive for the
 * device's lifetime. Otherwise the device retains the primary context of the
 * ordinal and releases it on destroy. Every operation makes the device's
 * context current on the calling thread first if another one (or none) is,
 * so the tuner's worker threads need no setup; this is a TLS read when it
 * already is. */
#include "device.h"

#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/record.h"

/* X(field, name for cuGetProcAddress, dlsym name, older dlsym name).
 * Resolved when the device opens: opening it, and launching a stored
 * kernel. */
#define CU_SYMBOLS(X)                                                                    \
    X(GetErrorName, cuGetErrorName, "cuGetErrorName", NULL)                              \
    X(GetErrorString, cuGetErrorString, "cuGetErrorString", NULL)                        \
    X(DeviceGet, cuDeviceGet, "cuDeviceGet", NULL)                                       \
    X(DeviceGetName, cuDeviceGetName, "cuDeviceGetName", NULL)                           \
    X(DeviceGetAttribute, cuDeviceGetAttribute, "cuDeviceGetAttribute", NULL)            \
    X(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain",      \
      NULL)                                                                              \
    X(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease,                                \
      "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")                       \
    X(CtxGetCurrent, cuCtxGetCurrent, "cuCtxGetCurrent", NULL)                           \
    X(CtxSetCurrent, cuCtxSetCurrent, "cuCtxSetCurrent", NULL)                           \
    X(CtxGetDevice, cuCtxGetDevice, "cuCtxGetDevice", NULL)                              \
    X(ModuleLoadData, cuModuleLoadData, "cuModuleLoadData", NULL)                        \
    X(ModuleUnload, cuModuleUnload, "cuModuleUnload", NULL)                              \
    X(ModuleGetFunction, cuModuleGetFunction, "cuModuleGetFunction", NULL)               \
    X(FuncSetAttribute, cuFuncSetAttribute, "cuFuncSetAttribute", NULL)                  \
    X(LaunchKernel, cuLaunchKernel, "cuLaunchKernel", NULL)

/* Resolved at the first call that needs one of them (ensure_current_later):
 * all of them then, or the driver lacks one and each such call fails. */
#define CU_LATER_SYMBOLS(X)                                                              \
    X(FuncGetAttribute, cuFuncGetAttribute, "cuFuncGetAttribute", NULL)                  \
    X(MemAlloc, cuMemAlloc, "cuMemAlloc_v2", NULL)                                       \
    X(MemFree, cuMemFree, "cuMemFree_v2", NULL)                                          \
    X(MemGetInfo, cuMemGetInfo, "cuMemGetInfo_v2", NULL)                                 \
    X(MemcpyDtoDAsync, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", NULL)                  \
    X(MemcpyDtoHAsync, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", NULL)                  \
    X(MemcpyHtoDAsync, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", NULL)                  \
    X(MemsetD8Async, cuMemsetD8Async, "cuMemsetD8Async", NULL)                           \
    X(EventCreate, cuEventCreate, "cuEventCreate", NULL)                                 \
    X(EventDestroy, cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy")               \
    X(EventRecord, cuEventRecord, "cuEventRecord", NULL)                                 \
    X(EventSynchronize, cuEventSynchronize, "cuEventSynchronize", NULL)                  \
    X(EventElapsedTime, cuEventElapsedTime, "cuEventElapsedTime_v2",                     \
      "cuEventElapsedTime")                                                              \
    X(StreamSynchronize, cuStreamSynchronize, "cuStreamSynchronize", NULL)               \
    X(LinkCreate, cuLinkCreate, "cuLinkCreate_v2", NULL)                                 \
    X(LinkAddData, cuLinkAddData, "cuLinkAddData_v2", NULL)                              \
    X(LinkComplete, cuLinkComplete, "cuLinkComplete", NULL)                              \
    X(LinkDestroy, cuLinkDestroy, "cuLinkDestroy", NULL)

/* Newer entry points, for prebuilt binaries only: a driver without them
 * still runs everything else (their launches then fail with a message).
 * cuLaunchKernelEx is resolved with the device, the others later. */
#define CU_OPTIONAL_SYMBOLS(X)                                                           \
    X(LaunchKernelEx, cuLaunchKernelEx, "cuLaunchKernelEx", NULL)
#define CU_LATER_OPTIONAL_SYMBOLS(X)                                                     \
    X(MemAllocAsync, cuMemAllocAsync, "cuMemAllocAsync", NULL)                           \
    X(MemFreeAsync, cuMemFreeAsync, "cuMemFreeAsync", NULL)

/* The prototypes come from cuda.h, whose macros map each name to the
 * versioned symbol the headers describe (cuMemAlloc -> cuMemAlloc_v2). */
typedef struct cu_api {
#define KC__CU_FIELD(field, fn, sym, old) __typeof__(&fn) field;
    CU_SYMBOLS(KC__CU_FIELD)
    CU_LATER_SYMBOLS(KC__CU_FIELD)
    CU_OPTIONAL_SYMBOLS(KC__CU_FIELD)
    CU_LATER_OPTIONAL_SYMBOLS(KC__CU_FIELD)
#undef KC__CU_FIELD
} cu_api_t;

typedef CUresult (*getproc_v2_fn)(const char *, void **, int, cuuint64_t,
                                  CUdriverProcAddressQueryResult *);
typedef CUresult (*getproc_v1_fn)(const char *, void **, int, cuuint64_t);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static cu_api_t g_cu;
static int g_load_rc = KC_ENODEVICE;
static char g_load_err[384];
static int g_driver_version;
/* Where entry points come from: the library, its cuGetProcAddress (v2 or
 * v1, for symbols dlsym does not find) and the ABI version asked of it. */
typedef struct resolver {
    void *lib;
    getproc_v2_fn gp2;
    getproc_v1_fn gp1;
    int version;
} resolver_t;
static resolver_t g_res; /* load_once's, for load_later */
static pthread_once_t g_later_once = PTHREAD_ONCE_INIT;
static int g_later_rc = KC_ENODEVICE;
static char g_later_err[384];

#define KC_L2_FLUSH_MIN (64u << 20)
#define KC_SMEM_NO_OPTIN (48u * 1024)

typedef struct cuda_device {
    kc__device_t base;
    CUcontext ctx;
    CUdevice dev;
    int owns_primary;
    kc__devinfo_t info;
    pthread_mutex_t mu; /* guards the L2 scratch buffer's lazy allocation */
    CUdeviceptr l2_scratch;
    size_t l2_scratch_bytes;
} cuda_device_t;

/* ---- errors --------------------------------------------------------------- */

static int is_sticky(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_LAUNCH_TIMEOUT:
    case CUDA_ERROR_ASSERT:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_ECC_UNCORRECTABLE:
    case CUDA_ERROR_CONTEXT_IS_DESTROYED:
    case CUDA_ERROR_TENSOR_MEMORY_LEAK:
        return 1;
    default:
        return 0;
    }
}

static int map_result(CUresult r)
{
    if (is_sticky(r))
        return KC_ESTICKY;
    switch (r) {
    case CUDA_SUCCESS:
        return KC_OK;
    case CUDA_ERROR_OUT_OF_MEMORY:
        return KC_ENOMEM;
    case CUDA_ERROR_NO_DEVICE:
    case CUDA_ERROR_INVALID_DEVICE:
    case CUDA_ERROR_NOT_INITIALIZED:
    case CUDA_ERROR_DEINITIALIZED:
    case CUDA_ERROR_STUB_LIBRARY:
    case CUDA_ERROR_DEVICE_UNAVAILABLE:
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
    case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    case CUDA_ERROR_SYSTEM_NOT_READY:
        return KC_ENODEVICE;
    case CUDA_ERROR_INVALID_IMAGE:
    case CUDA_ERROR_NO_BINARY_FOR_GPU:
        return KC_EARCH;
    case CUDA_ERROR_INVALID_PTX:
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        return KC_ECOMPILE;
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES:
    case CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE:
        return KC_ETOOBIG;
    case CUDA_ERROR_NOT_FOUND:
        return KC_ENOTFOUND;
    default:
        return KC_ECUDA;
    }
}

static void describe(char *buf, size_t cap, const char *call, CUresult r)
{
    const char *name = NULL, *str = NULL;
    if (!g_cu.GetErrorName || g_cu.GetErrorName(r, &name) != CUDA_SUCCESS || !name)
        name = "CUDA_ERROR_UNKNOWN";
    if (!g_cu.GetErrorString || g_cu.GetErrorString(r, &str) != CUDA_SUCCESS || !str)
        str = "unrecognized error code";
    snprintf(buf, cap, "%s: %s (%d): %s", call, name, (int)r, str);
}

/* Records "cuXxx: NAME (n): message" on the device and returns the code. */
static int cu_fail(cuda_device_t *d, const char *call, CUresult r)
{
    char msg[512];

    describe(msg, sizeof(msg), call, r);
    kc__device_set_errmsg(&d->base, "%s", msg);
    return map_result(r);
}

/* ---- loading -------------------------------------------------------------- */

static void *resolve(const resolver_t *r, const char *base, const char *sym,
                     const char *old)
{
    void *p = dlsym(r->lib, sym);
    if (!p && old)
        p = dlsym(r->lib, old);
    if (p)
        return p;
    CUdriverProcAddressQueryResult status;
    if (r->gp2 &&
        r->gp2(base, &p, r->version, CU_GET_PROC_ADDRESS_DEFAULT, &status) ==
            CUDA_SUCCESS &&
        status == CU_GET_PROC_ADDRESS_SUCCESS && p)
        return p;
    p = NULL;
    if (!r->gp2 && r->gp1 &&
        r->gp1(base, &p, r->version, CU_GET_PROC_ADDRESS_DEFAULT) == CUDA_SUCCESS && p)
        return p;
    return NULL;
}

/* One group of entry points into g_cu. A required one that is missing
 * writes why into err and ends the group with -1; an optional one may stay
 * NULL. */
#define KC__CU_REQUIRED(field, fn, sym, old)                                             \
    if (!(*(void **)&g_cu.field = resolve(r, "cu" #field, sym, old))) {                  \
        snprintf(err, errcap, "libcuda.so.1 (driver %d) lacks %s", g_driver_version,     \
                 sym);                                                                   \
        return -1;                                                                       \
    }
#define KC__CU_OPTIONAL(field, fn, sym, old)                                             \
    *(void **)&g_cu.field = resolve(r, "cu" #field, sym, old);

static int resolve_now(const resolver_t *r, char *err, size_t errcap)
{
    CU_SYMBOLS(KC__CU_REQUIRED)
    CU_OPTIONAL_SYMBOLS(KC__CU_OPTIONAL)
    return 0;
}

static int resolve_later(const resolver_t *r, char *err, size_t errcap)
{
    CU_LATER_SYMBOLS(KC__CU_REQUIRED)
    CU_LATER_OPTIONAL_SYMBOLS(KC__CU_OPTIONAL)
    return 0;
}
#undef KC__CU_REQUIRED
#undef KC__CU_OPTIONAL

static void load_once(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(g_load_err, sizeof(g_load_err),
                 "no NVIDIA driver: libcuda.so.1 could not be loaded (%s)",
                 why ? why : "unknown reason");
        return;
    }
    CUresult (*init)(unsigned);
    CUresult (*version)(int *);
    /* POSIX guarantees the object-to-function pointer round trip dlsym needs. */
    *(void **)&init = dlsym(lib, "cuInit");
    *(void **)&version = dlsym(lib, "cuDriverGetVersion");
    if (!init || !version) {
        snprintf(g_load_err, sizeof(g_load_err),
                 "libcuda.so.1 lacks cuInit or cuDriverGetVersion: not a CUDA driver");
        goto fail;
    }
    /* cuDriverGetVersion needs no cuInit. */
    if (version(&g_driver_version) != CUDA_SUCCESS)
        g_driver_version = 0;
    /* Ask for the ABI our headers describe, or the driver's if it is older. */
    resolver_t res = {.lib = lib,
                      .version = g_driver_version && g_driver_version < CUDA_VERSION
                                     ? g_driver_version
                                     : CUDA_VERSION};
    *(void **)&res.gp2 = dlsym(lib, "cuGetProcAddress_v2");
    *(void **)&res.gp1 = dlsym(lib, "cuGetProcAddress");
    if (resolve_now(&res, g_load_err, sizeof(g_load_err)) != 0) {
        g_load_rc = KC_ENODEVICE;
        goto fail;
    }
    /* A host program that made a context, or initialized the driver, made
     * cuInit's work: then cuCtxGetCurrent answers, and cuInit is not called
     * again. Before cuInit it answers CUDA_ERROR_NOT_INITIALIZED. */
    CUcontext cur = NULL;
    CUresult r = g_cu.CtxGetCurrent(&cur);
    if (r != CUDA_SUCCESS)
        r = init(0);
    if (r != CUDA_SUCCESS) {
        char what[256];
        describe(what, sizeof(what), "cuInit", r);
        snprintf(g_load_err, sizeof(g_load_err), "libcuda.so.1 loaded but %s", what);
        g_load_rc = map_result(r) == KC_ENODEVICE ? KC_ENODEVICE : KC_ECUDA;
        goto fail;
    }
    /* The library stays loaded for the life of the process; load_later
     * resolves the rest from it. */
    g_res = res;
    g_load_rc = KC_OK;
    return;
fail:
    memset(&g_cu, 0, sizeof(g_cu));
    dlclose(lib);
}

/* The entry points beyond a stored kernel's launch, at the first call that
 * needs one (after load_once succeeded). */
static void load_later(void)
{
    g_later_rc = resolve_later(&g_res, g_later_err, sizeof(g_later_err)) == 0
                     ? KC_OK
                     : KC_ENODEVICE;
}

/* ---- the device ------------------------------------------------------------- */

static cuda_device_t *cu_dev(kc__device_t *dev)
{
    return (cuda_device_t *)dev;
}

static int ensure_current(cuda_device_t *d)
{
    CUcontext cur = NULL;
    CUresult r = g_cu.CtxGetCurrent(&cur);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuCtxGetCurrent", r);
    if (cur == d->ctx)
        return KC_OK;
    r = g_cu.CtxSetCurrent(d->ctx);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuCtxSetCurrent", r);
}

/* ensure_current for the calls that use the entry points resolved later
 * (CU_LATER_SYMBOLS): the first such call resolves them. */
static int ensure_current_later(cuda_device_t *d)
{
    pthread_once(&g_later_once, load_later);
    if (g_later_rc != KC_OK) {
        kc__device_set_errmsg(&d->base, "%s", g_later_err);
        return g_later_rc;
    }
    return ensure_current(d);
}

static void cuda_destroy(kc__device_t *dev)
{
    cuda_device_t *d = cu_dev(dev);
    if (!d)
        return;
    if (d->l2_scratch && ensure_current(d) == KC_OK)
        g_cu.MemFree(d->l2_scratch);
    if (d->owns_primary)
        g_cu.DevicePrimaryCtxRelease(d->dev);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static int cuda_info(kc__device_t *dev, kc__devinfo_t *out)
{
    *out = cu_dev(dev)->info;
    return KC_OK;
}

static int cuda_bind(kc__device_t *dev)
{
    cuda_device_t *d = cu_dev(dev);
    CUresult r = g_cu.CtxSetCurrent(d->ctx);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuCtxSetCurrent", r);
}

static int cuda_module_load(kc__device_t *dev, const void *cubin, size_t len,
                            void **module)
{
    cuda_device_t *d = cu_dev(dev);
    *module = NULL;
    (void)len; /* a cubin carries its own size */
    int rc = ensure_current(d);
    if (rc != KC_OK)
        return rc;
    CUmodule m = NULL;
    CUresult r = g_cu.ModuleLoadData(&m, cubin);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuModuleLoadData", r);
    *module = m;
    return KC_OK;
}

static void cuda_module_unload(kc__device_t *dev, void *module)
{
    cuda_device_t *d = cu_dev(dev);
    if (!module || ensure_current(d) != KC_OK)
        return;
    CUresult r = g_cu.ModuleUnload((CUmodule)module);
    if (r != CUDA_SUCCESS)
        cu_fail(d, "cuModuleUnload", r);
}

static int cuda_get_function(kc__device_t *dev, void *module, const char *entry,
                             void **fn)
{
    cuda_device_t *d = cu_dev(dev);
    *fn = NULL;
    int rc = ensure_current(d);
    if (rc != KC_OK)
        return rc;
    CUfunction f = NULL;
    CUresult r = g_cu.ModuleGetFunction(&f, (CUmodule)module, entry);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuModuleGetFunction", r);
    *fn = f;
    return KC_OK;
}

static int cuda_func_attrs(kc__device_t *dev, void *fn, kc__funcattrs_t *out)
{
    cuda_device_t *d = cu_dev(dev);
    static const struct {
        CUfunction_attribute attr;
        size_t offset;
    } attrs[] = {
        {CU_FUNC_ATTRIBUTE_NUM_REGS, offsetof(kc__funcattrs_t, registers)},
        {CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, offsetof(kc__funcattrs_t, static_smem)},
        {CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, offsetof(kc__funcattrs_t, max_threads)},
        {CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, offsetof(kc__funcattrs_t, local_bytes)},
    };
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        int v = 0;
        CUresult r = g_cu.FuncGetAttribute(&v, attrs[i].attr, (CUfunction)fn);
        if (r != CUDA_SUCCESS)
            return cu_fail(d, "cuFuncGetAttribute", r);
        *(unsigned *)((char *)out + attrs[i].offset) = v < 0 ? 0 : (unsigned)v;
    }
    return KC_OK;
}

static int cuda_set_dyn_smem(kc__device_t *dev, void *fn, unsigned bytes)
{
    cuda_device_t *d = cu_dev(dev);
    if (bytes > d->info.max_shared_optin) {
        kc__device_set_errmsg(dev, "%u bytes of shared memory exceed the device's %u",
                              bytes, d->info.max_shared_optin);
        return KC_ETOOBIG;
    }
    /* Below 48 KiB no opt-in is needed, unless static shared memory
     * already uses part of it; setting it costs one call, so set it for any
     * non-zero size rather than guess. */
    if (bytes == 0)
        return KC_OK;
    int rc = ensure_current(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.FuncSetAttribute(
        (CUfunction)fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)bytes);
    if (r == CUDA_ERROR_INVALID_VALUE) {
        cu_fail(d, "cuFuncSetAttribute", r);
        return KC_ETOOBIG;
    }
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuFuncSetAttribute", r);
}

static int cuda_launch(kc__device_t *dev, void *fn, const unsigned grid[3],
                       const unsigned block[3], unsigned shared, void *stream,
                       void **params)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current(d);
    if (rc != KC_OK)
        return rc;
    CUresult r =
        g_cu.LaunchKernel((CUfunction)fn, grid[0], grid[1], grid[2], block[0], block[1],
                          block[2], shared, (CUstream)stream, params, NULL);
    if (r == CUDA_SUCCESS)
        return KC_OK;
    rc = cu_fail(d, "cuLaunchKernel", r);
    /* At launch, an invalid value is a block or shared size the function
     * cannot have: a resource limit for the tuner, not a bug. Anything
     * else that leaves the context usable is a failed launch. */
    if (r == CUDA_ERROR_INVALID_VALUE || rc == KC_ETOOBIG)
        return KC_ETOOBIG;
    if (rc == KC_ESTICKY || rc == KC_ENOMEM || rc == KC_ENODEVICE)
        return rc;
    return KC_ELAUNCH;
}

static int cuda_launch_ex(kc__device_t *dev, void *fn, const unsigned grid[3],
                          const unsigned block[3], unsigned shared, void *stream,
                          void **params, unsigned cluster_x, uint32_t flags)
{
    cuda_device_t *d = cu_dev(dev);
    CUlaunchAttribute attrs[4];
    unsigned n = 0;
    int rc = ensure_current(d);
    if (rc != KC_OK)
        return rc;
    if (!g_cu.LaunchKernelEx) {
        kc__device_set_errmsg(dev,
                              "this driver (%d) has no cuLaunchKernelEx, which "
                              "clusters and PDL need",
                              g_driver_version);
        return KC_EUNSUPPORTED;
    }
    memset(attrs, 0, sizeof(attrs));
    if (flags & KC_BINMETA_PDL) {
        attrs[n].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attrs[n++].value.programmaticStreamSerializationAllowed = 1;
    }
    if (flags & KC_BINMETA_COOPERATIVE) {
        attrs[n].id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
        attrs[n++].value.cooperative = 1;
    }
    if (cluster_x > 1) {
        attrs[n].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        attrs[n].value.clusterDim.x = cluster_x;
        attrs[n].value.clusterDim.y = 1;
        attrs[n++].value.clusterDim.z = 1;
        attrs[n].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE;
        attrs[n++].value.clusterSchedulingPolicyPreference =
            CU_CLUSTER_SCHEDULING_POLICY_SPREAD;
        if (cluster_x > 8)
            g_cu.FuncSetAttribute((CUfunction)fn,
                                  CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1);
    }
    CUlaunchConfig cfg = {
        .gridDimX = grid[0],
        .gridDimY = grid[1],
        .gridDimZ = grid[2],
        .blockDimX = block[0],
        .blockDimY = block[1],
        .blockDimZ = block[2],
        .sharedMemBytes = shared,
        .hStream = (CUstream)stream,
        .attrs = attrs,
        .numAttrs = n,
    };
    CUresult r = g_cu.LaunchKernelEx(&cfg, (CUfunction)fn, params, NULL);
    if (r == CUDA_SUCCESS)
        return KC_OK;
    rc = cu_fail(d, "cuLaunchKernelEx", r);
    if (r == CUDA_ERROR_INVALID_VALUE || rc == KC_ETOOBIG)
        return KC_ETOOBIG;
    if (rc == KC_ESTICKY || rc == KC_ENOMEM || rc == KC_ENODEVICE)
        return rc;
    return KC_ELAUNCH;
}

static int cuda_mem_alloc_async(kc__device_t *dev, size_t size, void *stream,
                                uint64_t *ptr)
{
    cuda_device_t *d = cu_dev(dev);
    CUdeviceptr p = 0;
    *ptr = 0;
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    if (!g_cu.MemAllocAsync) {
        kc__device_set_errmsg(dev, "this driver (%d) has no cuMemAllocAsync",
                              g_driver_version);
        return KC_EUNSUPPORTED;
    }
    CUresult r = g_cu.MemAllocAsync(&p, size, (CUstream)stream);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuMemAllocAsync", r);
    *ptr = (uint64_t)p;
    return KC_OK;
}

static void cuda_mem_free_async(kc__device_t *dev, uint64_t ptr, void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    if (!ptr || ensure_current_later(d) != KC_OK || !g_cu.MemFreeAsync)
        return;
    CUresult r = g_cu.MemFreeAsync((CUdeviceptr)ptr, (CUstream)stream);
    if (r != CUDA_SUCCESS)
        cu_fail(d, "cuMemFreeAsync", r);
}

static int cuda_mem_alloc(kc__device_t *dev, size_t size, uint64_t *ptr)
{
    cuda_device_t *d = cu_dev(dev);
    *ptr = 0;
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUdeviceptr p = 0;
    CUresult r = g_cu.MemAlloc(&p, size);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuMemAlloc", r);
    *ptr = (uint64_t)p;
    return KC_OK;
}

static void cuda_mem_free(kc__device_t *dev, uint64_t ptr)
{
    cuda_device_t *d = cu_dev(dev);
    if (!ptr || ensure_current_later(d) != KC_OK)
        return;
    CUresult r = g_cu.MemFree((CUdeviceptr)ptr);
    if (r != CUDA_SUCCESS)
        cu_fail(d, "cuMemFree", r);
}

static int cuda_copy_dtod(kc__device_t *dev, uint64_t dst, uint64_t src, size_t size,
                          void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r =
        g_cu.MemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, size, (CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuMemcpyDtoDAsync", r);
}

/* Host copies wait for the stream: the caller's host buffer is ready (or
 * reusable) when the call returns. */
static int cuda_copy_dtoh(kc__device_t *dev, void *dst, uint64_t src, size_t size,
                          void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.MemcpyDtoHAsync(dst, (CUdeviceptr)src, size, (CUstream)stream);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuMemcpyDtoHAsync", r);
    r = g_cu.StreamSynchronize((CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuStreamSynchronize", r);
}

static int cuda_copy_htod(kc__device_t *dev, uint64_t dst, const void *src, size_t size,
                          void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.MemcpyHtoDAsync((CUdeviceptr)dst, src, size, (CUstream)stream);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuMemcpyHtoDAsync", r);
    r = g_cu.StreamSynchronize((CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuStreamSynchronize", r);
}

static int cuda_mem_free_bytes(kc__device_t *dev, size_t *free_bytes)
{
    cuda_device_t *d = cu_dev(dev);
    *free_bytes = 0;
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    size_t free_b = 0, total = 0;
    CUresult r = g_cu.MemGetInfo(&free_b, &total);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuMemGetInfo", r);
    *free_bytes = free_b;
    return KC_OK;
}

static int cuda_event_create(kc__device_t *dev, void **event)
{
    cuda_device_t *d = cu_dev(dev);
    *event = NULL;
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUevent e = NULL;
    CUresult r = g_cu.EventCreate(&e, CU_EVENT_DEFAULT);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuEventCreate", r);
    *event = e;
    return KC_OK;
}

static void cuda_event_destroy(kc__device_t *dev, void *event)
{
    cuda_device_t *d = cu_dev(dev);
    if (!event || ensure_current_later(d) != KC_OK)
        return;
    CUresult r = g_cu.EventDestroy((CUevent)event);
    if (r != CUDA_SUCCESS)
        cu_fail(d, "cuEventDestroy", r);
}

static int cuda_event_record(kc__device_t *dev, void *event, void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.EventRecord((CUevent)event, (CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuEventRecord", r);
}

static int cuda_event_elapsed_ms(kc__device_t *dev, void *start, void *end, float *ms)
{
    cuda_device_t *d = cu_dev(dev);
    *ms = 0;
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.EventSynchronize((CUevent)end);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuEventSynchronize", r);
    r = g_cu.EventElapsedTime(ms, (CUevent)start, (CUevent)end);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuEventElapsedTime", r);
}

static int cuda_stream_sync(kc__device_t *dev, void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    CUresult r = g_cu.StreamSynchronize((CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuStreamSynchronize", r);
}

static int cuda_flush_l2(kc__device_t *dev, void *stream)
{
    cuda_device_t *d = cu_dev(dev);
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;
    pthread_mutex_lock(&d->mu);
    if (!d->l2_scratch) {
        /* Twice L2, so that no line of what ran before survives whatever
         * replacement policy the cache uses. */
        size_t bytes = (size_t)d->info.l2_bytes * 2;
        if (bytes < KC_L2_FLUSH_MIN)
            bytes = KC_L2_FLUSH_MIN;
        CUresult r = g_cu.MemAlloc(&d->l2_scratch, bytes);
        if (r != CUDA_SUCCESS) {
            d->l2_scratch = 0;
            pthread_mutex_unlock(&d->mu);
            return cu_fail(d, "cuMemAlloc", r);
        }
        d->l2_scratch_bytes = bytes;
    }
    CUdeviceptr p = d->l2_scratch;
    size_t bytes = d->l2_scratch_bytes;
    pthread_mutex_unlock(&d->mu);
    CUresult r = g_cu.MemsetD8Async(p, 0, bytes, (CUstream)stream);
    return r == CUDA_SUCCESS ? KC_OK : cu_fail(d, "cuMemsetD8Async", r);
}

/* "sm_90" -> CU_TARGET_COMPUTE_90, "sm_90a" -> the accelerated target,
 * "sm_100f" -> the family target; 0 for anything else. */
static int jit_target(const char *arch, CUjit_target *out)
{
    unsigned v = 0;
    int n = 0;
    if (!arch || sscanf(arch, "sm_%u%n", &v, &n) != 1 || v == 0)
        return 0;
    const char *suffix = arch + n;
    if (*suffix == '\0')
        *out = (CUjit_target)v;
    else if (strcmp(suffix, "a") == 0)
        *out = (CUjit_target)(CU_COMPUTE_ACCELERATED_TARGET_BASE + v);
    else if (strcmp(suffix, "f") == 0)
        *out = (CUjit_target)(CU_COMPUTE_FAMILY_TARGET_BASE + v);
    else
        return 0;
    return 1;
}

static int cuda_ptx_to_cubin(kc__device_t *dev, const char *ptx, size_t len,
                             const char *arch, void **cubin, size_t *cubin_len, char *log,
                             size_t log_cap)
{
    cuda_device_t *d = cu_dev(dev);
    *cubin = NULL;
    *cubin_len = 0;
    char errlog[8192] = "";
    if (log && log_cap)
        log[0] = '\0';
    CUjit_target target;
    int has_target = jit_target(arch, &target);
    if (arch && !has_target) {
        kc__device_set_errmsg(dev, "PTX JIT: unknown target arch '%s'", arch);
        return KC_EINVAL;
    }
    int rc = ensure_current_later(d);
    if (rc != KC_OK)
        return rc;

    /* The linker wants NUL-terminated PTX; ours comes with a length. */
    char *text = malloc(len + 1);
    if (!text)
        return KC_ENOMEM;
    memcpy(text, ptx, len);
    text[len] = '\0';

    CUjit_option opts[3] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_TARGET};
    void *vals[3] = {errlog, (void *)(uintptr_t)sizeof(errlog),
                     (void *)(uintptr_t)(has_target ? target : 0)};
    CUlinkState link = NULL;
    void *out = NULL;
    size_t out_len = 0;
    CUresult r = g_cu.LinkCreate(has_target ? 3 : 2, opts, vals, &link);
    if (r != CUDA_SUCCESS) {
        link = NULL;
        rc = cu_fail(d, "cuLinkCreate", r);
        goto fail;
    }
    r = g_cu.LinkAddData(link, CU_JIT_INPUT_PTX, text, len + 1, "kernel.ptx", 0, NULL,
                         NULL);
    if (r != CUDA_SUCCESS) {
        rc = cu_fail(d, "cuLinkAddData", r);
        goto fail;
    }
    r = g_cu.LinkComplete(link, &out, &out_len);
    if (r != CUDA_SUCCESS) {
        rc = cu_fail(d, "cuLinkComplete", r);
        goto fail;
    }
    /* The linker owns its output until cuLinkDestroy: copy it out. */
    if (!(*cubin = malloc(out_len))) {
        rc = KC_ENOMEM;
        goto fail;
    }
    memcpy(*cubin, out, out_len);
    *cubin_len = out_len;
    rc = KC_OK;
fail:
    errlog[sizeof(errlog) - 1] = '\0';
    if (log && log_cap)
        snprintf(log, log_cap, "%s", errlog);
    if (rc != KC_OK && errlog[0])
        kc__device_set_errmsg(&d->base, "%s: %s", kc__device_errmsg(&d->base), errlog);
    if (link) {
        r = g_cu.LinkDestroy(link);
        if (r != CUDA_SUCCESS && rc == KC_OK) {
            free(*cubin);
            *cubin = NULL;
            *cubin_len = 0;
            rc = cu_fail(d, "cuLinkDestroy", r);
        }
    }
    free(text);
    return rc;
}

static const kc__device_ops_t cuda_ops = {
    .destroy = cuda_destroy,
    .info = cuda_info,
    .bind = cuda_bind,
    .module_load = cuda_module_load,
    .module_unload = cuda_module_unload,
    .get_function = cuda_get_function,
    .func_attrs = cuda_func_attrs,
    .set_dyn_smem = cuda_set_dyn_smem,
    .launch = cuda_launch,
    .launch_ex = cuda_launch_ex,
    .mem_alloc_async = cuda_mem_alloc_async,
    .mem_free_async = cuda_mem_free_async,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .copy_dtod = cuda_copy_dtod,
    .copy_dtoh = cuda_copy_dtoh,
    .copy_htod = cuda_copy_htod,
    .mem_free_bytes = cuda_mem_free_bytes,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_elapsed_ms = cuda_event_elapsed_ms,
    .stream_sync = cuda_stream_sync,
    .flush_l2 = cuda_flush_l2,
    .ptx_to_cubin = cuda_ptx_to_cubin,
};

static int query_info(cuda_device_t *d)
{
    int v[6];
    static const CUdevice_attribute which[6] = {
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
        CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
    };
    for (int i = 0; i < 6; i++) {
        CUresult r = g_cu.DeviceGetAttribute(&v[i], which[i], d->dev);
        if (r != CUDA_SUCCESS)
            return cu_fail(d, "cuDeviceGetAttribute", r);
    }
    kc__devinfo_t *info = &d->info;
    CUresult r = g_cu.DeviceGetName(info->name, (int)sizeof(info->name), d->dev);
    if (r != CUDA_SUCCESS)
        return cu_fail(d, "cuDeviceGetName", r);
    info->name[sizeof(info->name) - 1] = '\0';
    info->cc_major = v[0];
    info->cc_minor = v[1];
    /* Plain sm_XY: the caller picks an "a" variant from cc if it wants one. */
    snprintf(info->arch, sizeof(info->arch), "sm_%d%d", v[0], v[1]);
    info->sm_count = (unsigned)v[2];
    info->max_threads_per_block = (unsigned)v[3];
    info->max_shared_optin = (unsigned)v[4];
    info->l2_bytes = (uint64_t)v[5];
    info->driver_version = (unsigned)g_driver_version;
    return KC_OK;
}

int kc__device_cuda_open(int ordinal, kc__device_t **out, char *errmsg, size_t errcap)
{
    *out = NULL;
    if (errmsg && errcap)
        errmsg[0] = '\0';
    pthread_once(&g_once, load_once);
    if (g_load_rc != KC_OK) {
        if (errmsg && errcap)
            snprintf(errmsg, errcap, "%s", g_load_err);
        return g_load_rc;
    }
    cuda_device_t *d = calloc(1, sizeof(*d));
    if (!d)
        return KC_ENOMEM;
    d->base.ops = &cuda_ops;
    pthread_mutex_init(&d->mu, NULL);

    int rc;
    CUcontext cur = NULL;
    CUresult r = g_cu.CtxGetCurrent(&cur);
    if (r != CUDA_SUCCESS) {
        rc = cu_fail(d, "cuCtxGetCurrent", r);
        goto fail;
    }
    if (cur) {
        d->ctx = cur;
        r = g_cu.CtxGetDevice(&d->dev);
        if (r != CUDA_SUCCESS) {
            rc = cu_fail(d, "cuCtxGetDevice", r);
            goto fail;
        }
    } else {
        r = g_cu.DeviceGet(&d->dev, ordinal);
        if (r != CUDA_SUCCESS) {
            rc = cu_fail(d, "cuDeviceGet", r);
            goto fail;
        }
        r = g_cu.DevicePrimaryCtxRetain(&d->ctx, d->dev);
        if (r != CUDA_SUCCESS) {
            rc = cu_fail(d, "cuDevicePrimaryCtxRetain", r);
            goto fail;
        }
        d->owns_primary = 1;
        r = g_cu.CtxSetCurrent(d->ctx);
        if (r != CUDA_SUCCESS) {
            rc = cu_fail(d, "cuCtxSetCurrent", r);
            goto fail;
        }
    }
    if ((rc = query_info(d)) != KC_OK)
        goto fail;
    *out = &d->base;
    return KC_OK;
fail:
    if (errmsg && errcap)
        snprintf(errmsg, errcap, "%s", kc__device_errmsg(&d->base));
    if (d->owns_primary)
        g_cu.DevicePrimaryCtxRelease(d->dev);
    pthread_mutex_destroy(&d->mu);
    free(d);
    return rc;
}
