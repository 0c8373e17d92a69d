/* kcache_cuda_open_cost: what opening the CUDA device costs a fresh process
 * whose context is already current, step by step (dlopen, cuInit, the
 * driver version, the entry points by dlsym, the device's attributes and
 * name), as launcher/src/device_cuda.c took them at 712c345: every entry
 * point at open, and cuInit again. It now resolves 16 of the 36 at open
 * and skips cuInit when the driver is initialized; this program shows what
 * each step costs. A diagnostic for the GPU host: the launcher create of a
 * first call took about 40 us more there than on the simulation device.
 * Not installed.
 *
 *   kcache_cuda_open_cost [ROUNDS]
 * Runs ROUNDS (default 5) fresh processes of itself; each prints its steps
 * in us, then the medians. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../bench_time.h"
#include "../cuda_sym.h"

/* The names device_cuda.c resolves, in its order. */
static const char *const kSyms[] = {"cuGetErrorName",
                                    "cuGetErrorString",
                                    "cuDeviceGet",
                                    "cuDeviceGetName",
                                    "cuDeviceGetAttribute",
                                    "cuDevicePrimaryCtxRetain",
                                    "cuDevicePrimaryCtxRelease_v2",
                                    "cuCtxGetCurrent",
                                    "cuCtxSetCurrent",
                                    "cuCtxGetDevice",
                                    "cuModuleLoadData",
                                    "cuModuleUnload",
                                    "cuModuleGetFunction",
                                    "cuFuncGetAttribute",
                                    "cuFuncSetAttribute",
                                    "cuLaunchKernel",
                                    "cuMemAlloc_v2",
                                    "cuMemFree_v2",
                                    "cuMemGetInfo_v2",
                                    "cuMemcpyDtoDAsync_v2",
                                    "cuMemcpyDtoHAsync_v2",
                                    "cuMemcpyHtoDAsync_v2",
                                    "cuMemsetD8Async",
                                    "cuEventCreate",
                                    "cuEventDestroy_v2",
                                    "cuEventRecord",
                                    "cuEventSynchronize",
                                    "cuEventElapsedTime_v2",
                                    "cuStreamSynchronize",
                                    "cuLinkCreate_v2",
                                    "cuLinkAddData_v2",
                                    "cuLinkComplete",
                                    "cuLinkDestroy",
                                    "cuLaunchKernelEx",
                                    "cuMemAllocAsync",
                                    "cuMemFreeAsync"};
#define N_SYMS (sizeof(kSyms) / sizeof(kSyms[0]))
#define N_STEPS 8
static const char *const kSteps[N_STEPS] = {"dlopen",  "cuInit",  "version", "dlsym-all",
                                            "ctx-get", "attrs-6", "name",    "total"};

static void *need(void *lib, const char *name)
{
    return kc_tool_cu_sym(lib, "cuda_open_cost", name, 77);
}

static int child(void)
{
    /* The host program's part, untimed: the driver loaded, a context current. */
    void *host = dlopen("libcuda.so.1", RTLD_NOW);
    if (!host) {
        fprintf(stderr, "cuda_open_cost: no CUDA driver here\n");
        return 77;
    }
    CUresult (*init)(unsigned) = (CUresult(*)(unsigned))need(host, "cuInit");
    CUresult (*dev_get)(CUdevice *, int) =
        (CUresult(*)(CUdevice *, int))need(host, "cuDeviceGet");
    CUresult (*retain)(CUcontext *, CUdevice) =
        (CUresult(*)(CUcontext *, CUdevice))need(host, "cuDevicePrimaryCtxRetain");
    CUresult (*set)(CUcontext) = (CUresult(*)(CUcontext))need(host, "cuCtxSetCurrent");
    CUdevice dev;
    CUcontext ctx;
    if (init(0) || dev_get(&dev, 0) || retain(&ctx, dev) || set(ctx)) {
        fprintf(stderr, "cuda_open_cost: no usable GPU\n");
        return 77;
    }
    /* kcache's part, as device_cuda.c does it. */
    double t[N_STEPS + 1];
    t[0] = bench_now_us();
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    t[1] = bench_now_us();
    CUresult (*init2)(unsigned) = (CUresult(*)(unsigned))need(lib, "cuInit");
    init2(0);
    t[2] = bench_now_us();
    int version = 0;
    ((CUresult(*)(int *))need(lib, "cuDriverGetVersion"))(&version);
    t[3] = bench_now_us();
    void *fns[N_SYMS];
    for (size_t i = 0; i < N_SYMS; i++)
        fns[i] = need(lib, kSyms[i]);
    t[4] = bench_now_us();
    CUcontext cur = NULL;
    CUdevice d2 = 0;
    ((CUresult(*)(CUcontext *))fns[7])(&cur);
    ((CUresult(*)(CUdevice *))fns[9])(&d2);
    t[5] = bench_now_us();
    static const CUdevice_attribute which[6] = {
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
        CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
    };
    int v[6];
    for (int i = 0; i < 6; i++)
        ((CUresult(*)(int *, CUdevice_attribute, CUdevice))fns[4])(&v[i], which[i], d2);
    t[6] = bench_now_us();
    char name[256];
    ((CUresult(*)(char *, int, CUdevice))fns[3])(name, (int)sizeof(name), d2);
    t[7] = bench_now_us();
    t[8] = t[7];
    for (int i = 0; i < N_STEPS - 1; i++)
        printf("%.1f ", t[i + 1] - t[i]);
    printf("%.1f\n", t[7] - t[0]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return child();
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 1000) {
        fprintf(stderr, "usage: %s [ROUNDS]\n", argv[0]);
        return 2;
    }
    double(*v)[N_STEPS] = calloc((size_t)rounds, sizeof(*v));
    if (!v)
        return 1;
    printf("opening the CUDA device in a fresh process with a current context, us "
           "(%zu entry points):\n ",
           N_SYMS);
    for (int s = 0; s < N_STEPS; s++)
        printf(" %9s", kSteps[s]);
    printf("\n");
    for (int r = 0; r < rounds; r++) {
        char cmd[4200], line[512];
        snprintf(cmd, sizeof(cmd), "'%s' --child", argv[0]);
        FILE *p = popen(cmd, "r");
        int got = 0;
        if (p && fgets(line, sizeof(line), p)) {
            char *s = line;
            for (; got < N_STEPS; got++) {
                char *end;
                v[r][got] = strtod(s, &end);
                if (end == s)
                    break;
                s = end;
            }
        }
        int status = p ? pclose(p) : -1;
        if (got != N_STEPS) {
            if (status > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 77)
                return 77; /* no driver or no GPU: the child said which */
            fprintf(stderr, "cuda_open_cost: run %d failed (status %d)\n", r, status);
            free(v);
            return 1;
        }
        printf(" ");
        for (int s = 0; s < N_STEPS; s++)
            printf(" %9.1f", v[r][s]);
        printf("\n");
    }
    printf("  median:\n ");
    for (int s = 0; s < N_STEPS; s++) {
        double col[1000];
        for (int r = 0; r < rounds; r++)
            col[r] = v[r][s];
        printf(" %9.1f", bench_median(col, (size_t)rounds));
    }
    printf("\n");
    free(v);
    return 0;
}
