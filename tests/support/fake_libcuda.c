/* A stand-in libcuda.so.1 for testing how the launcher loads the CUDA
 * driver (launcher/src/device_cuda.c) on machines without one: it exports
 * the entry points a stored kernel's launch needs, and none of those the
 * launcher resolves later (memory, copies, events, streams, the linker),
 * and counts the calls a test asks about. It runs no kernel: a loaded
 * "module" is a byte, a launch only counts. Built as libcuda.so.1 in a
 * directory of its own; a test puts that directory on LD_LIBRARY_PATH.
 * Not a driver: tests/unit/launcher/test_cuda_loader.c is its only user. */
#include <stddef.h>
#include <string.h>

typedef int CUresult; /* CUDA_SUCCESS 0, CUDA_ERROR_NOT_INITIALIZED 3 */
#define OK 0
#define NOT_INITIALIZED 3
#define INVALID_VALUE 1

#define EXPORT __attribute__((visibility("default")))

static int g_initialized;
static int g_init_calls;
static int g_launches;
static char g_ctx, g_module, g_fn;
static void *g_current;

EXPORT int fake_cuda_init_calls(void)
{
    return g_init_calls;
}

EXPORT int fake_cuda_launches(void)
{
    return g_launches;
}

EXPORT CUresult cuInit(unsigned flags)
{
    (void)flags;
    g_init_calls++;
    g_initialized = 1;
    return OK;
}

EXPORT CUresult cuDriverGetVersion(int *v)
{
    *v = 13000; /* needs no cuInit, as the real one */
    return OK;
}

EXPORT CUresult cuGetErrorName(CUresult r, const char **s)
{
    *s = r == NOT_INITIALIZED ? "CUDA_ERROR_NOT_INITIALIZED" : "CUDA_ERROR_FAKE";
    return OK;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **s)
{
    *s = r == NOT_INITIALIZED ? "initialization error" : "fake error";
    return OK;
}

EXPORT CUresult cuDeviceGet(int *dev, int ordinal)
{
    if (!g_initialized)
        return NOT_INITIALIZED;
    if (ordinal != 0)
        return INVALID_VALUE;
    *dev = 0;
    return OK;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, int dev)
{
    (void)dev;
    if (!g_initialized)
        return NOT_INITIALIZED;
    strncpy(name, "Fake GPU", (size_t)len);
    return OK;
}

EXPORT CUresult cuDeviceGetAttribute(int *v, int attr, int dev)
{
    (void)dev;
    if (!g_initialized)
        return NOT_INITIALIZED;
    switch (attr) {
    case 75: /* compute capability major */
        *v = 9;
        break;
    case 76: /* minor */
        *v = 0;
        break;
    case 16: /* multiprocessors */
        *v = 132;
        break;
    case 1: /* max threads per block */
        *v = 1024;
        break;
    case 97: /* max shared memory per block, opt-in */
        *v = 232448;
        break;
    case 38: /* L2 bytes */
        *v = 50 << 20;
        break;
    default:
        *v = 0;
    }
    return OK;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev)
{
    (void)dev;
    if (!g_initialized)
        return NOT_INITIALIZED;
    *ctx = &g_ctx;
    return OK;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int dev)
{
    (void)dev;
    return OK;
}

EXPORT CUresult cuCtxGetCurrent(void **ctx)
{
    if (!g_initialized)
        return NOT_INITIALIZED;
    *ctx = g_current;
    return OK;
}

EXPORT CUresult cuCtxSetCurrent(void *ctx)
{
    if (!g_initialized)
        return NOT_INITIALIZED;
    g_current = ctx;
    return OK;
}

EXPORT CUresult cuCtxGetDevice(int *dev)
{
    *dev = 0;
    return OK;
}

EXPORT CUresult cuModuleLoadData(void **module, const void *image)
{
    (void)image;
    *module = &g_module;
    return OK;
}

EXPORT CUresult cuModuleUnload(void *module)
{
    (void)module;
    return OK;
}

EXPORT CUresult cuModuleGetFunction(void **fn, void *module, const char *name)
{
    (void)module;
    (void)name;
    *fn = &g_fn;
    return OK;
}

EXPORT CUresult cuFuncSetAttribute(void *fn, int attr, int value)
{
    (void)fn;
    (void)attr;
    (void)value;
    return OK;
}

EXPORT CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz,
                               unsigned bx, unsigned by, unsigned bz, unsigned shared,
                               void *stream, void **params, void **extra)
{
    (void)fn, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz;
    (void)shared, (void)stream, (void)params, (void)extra;
    g_launches++;
    return OK;
}
