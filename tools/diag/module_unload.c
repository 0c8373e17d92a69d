/* kcache_module_unload: what cuModuleUnload does with work still queued
 * on the GPU from the module it unloads. The question a bound on a
 * launcher's loaded modules must answer (README, "Limits"): may a module be
 * unloaded while a kernel of it is queued or running, and does the unload
 * wait for that kernel? A diagnostic for the GPU host; not installed.
 *
 *   kcache_module_unload CUBIN [CYCLES]
 *
 * CUBIN holds `spin(long long cycles, int *out)`, a kernel that spins for
 * `cycles` clock cycles and then writes 1 to *out (docs/GPU.md says how to
 * make it). For each of three cases it prints how long cuModuleUnload took,
 * what the synchronize after it returned and what *out holds:
 *   idle      the module's kernel finished before the unload;
 *   running   the kernel (CYCLES, default 2e8: about 0.1 s) was launched on
 *             a stream just before the unload;
 *   queued    the same kernel queued behind another spin of the same
 *             length from a second module on the same stream. */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "../bench_time.h"
#include "../cuda_sym.h"

static struct {
    CUresult (*init)(unsigned);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*retain)(CUcontext *, CUdevice);
    CUresult (*set_current)(CUcontext);
    CUresult (*load)(CUmodule *, const void *);
    CUresult (*unload)(CUmodule);
    CUresult (*get_function)(CUfunction *, CUmodule, const char *);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*memset)(CUdeviceptr, unsigned, size_t);
    CUresult (*dtoh)(void *, CUdeviceptr, size_t);
    CUresult (*stream_create)(CUstream *, unsigned);
    CUresult (*stream_sync)(CUstream);
    CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                       unsigned, unsigned, CUstream, void **, void **);
} cu;

static void *resolve(void *lib, const char *name)
{
    return kc_tool_cu_sym(lib, "kcache_module_unload", name, 2);
}

static int check(CUresult rc, const char *what)
{
    if (rc != CUDA_SUCCESS)
        fprintf(stderr, "kcache_module_unload: %s: CUresult %d\n", what, (int)rc);
    return rc != CUDA_SUCCESS;
}

static int load_spin(const void *cubin, CUmodule *mod, CUfunction *fn)
{
    return check(cu.load(mod, cubin), "cuModuleLoadData") ||
           check(cu.get_function(fn, *mod, "spin"), "cuModuleGetFunction spin");
}

static int spin(CUfunction fn, CUstream s, long long cycles, CUdeviceptr out)
{
    void *args[] = {&cycles, &out};
    return check(cu.launch(fn, 1, 1, 1, 1, 1, 1, 0, s, args, NULL), "cuLaunchKernel");
}

enum unload_case { IDLE, RUNNING, QUEUED };
static const char *const kCaseNames[] = {"idle", "running", "queued"};

/* One case: the unload's time, the synchronize's result, *out. */
static int run_case(enum unload_case c, const void *cubin, long long cycles, CUstream s,
                    CUdeviceptr out)
{
    CUmodule mod, other = NULL;
    CUfunction fn, other_fn;
    int value = 0;

    if (load_spin(cubin, &mod, &fn) || check(cu.memset(out, 0, 1), "cuMemsetD32"))
        return 1;
    if (c == QUEUED &&
        (load_spin(cubin, &other, &other_fn) || spin(other_fn, s, cycles, out + 4)))
        return 1;
    if (spin(fn, s, c == IDLE ? 1000 : cycles, out))
        return 1;
    if (c == IDLE && check(cu.stream_sync(s), "cuStreamSynchronize"))
        return 1;
    double t0 = bench_now_us();
    CUresult urc = cu.unload(mod);
    double t1 = bench_now_us();
    CUresult src = cu.stream_sync(s);
    double t2 = bench_now_us();
    CUresult drc = cu.dtoh(&value, out, sizeof(value));
    printf("%-8s unload %10.1f us (CUresult %d), then synchronize %10.1f us (CUresult "
           "%d), *out = %d (copy CUresult %d)\n",
           kCaseNames[c], t1 - t0, (int)urc, t2 - t1, (int)src, value, (int)drc);
    if (other)
        cu.unload(other);
    return urc != CUDA_SUCCESS || src != CUDA_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kcache_module_unload CUBIN [CYCLES]\n");
        return 2;
    }
    long long cycles = argc > 2 ? strtoll(argv[2], NULL, 10) : 200000000LL;
    FILE *f = fopen(argv[1], "rb");
    static char cubin[1 << 20];
    size_t len = f ? fread(cubin, 1, sizeof(cubin), f) : 0;
    if (f)
        fclose(f);
    if (len == 0) {
        fprintf(stderr, "kcache_module_unload: cannot read %s\n", argv[1]);
        return 2;
    }
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "kcache_module_unload: no CUDA driver here (%s)\n", dlerror());
        return 77;
    }
    *(void **)&cu.init = resolve(lib, "cuInit");
    *(void **)&cu.device_get = resolve(lib, "cuDeviceGet");
    *(void **)&cu.retain = resolve(lib, "cuDevicePrimaryCtxRetain");
    *(void **)&cu.set_current = resolve(lib, "cuCtxSetCurrent");
    *(void **)&cu.load = resolve(lib, "cuModuleLoadData");
    *(void **)&cu.unload = resolve(lib, "cuModuleUnload");
    *(void **)&cu.get_function = resolve(lib, "cuModuleGetFunction");
    *(void **)&cu.mem_alloc = resolve(lib, "cuMemAlloc_v2");
    *(void **)&cu.memset = resolve(lib, "cuMemsetD32_v2");
    *(void **)&cu.dtoh = resolve(lib, "cuMemcpyDtoH_v2");
    *(void **)&cu.stream_create = resolve(lib, "cuStreamCreate");
    *(void **)&cu.stream_sync = resolve(lib, "cuStreamSynchronize");
    *(void **)&cu.launch = resolve(lib, "cuLaunchKernel");
    CUdevice dev;
    CUcontext ctx;
    CUstream s;
    CUdeviceptr out;
    if (check(cu.init(0), "cuInit") || check(cu.device_get(&dev, 0), "cuDeviceGet") ||
        check(cu.retain(&ctx, dev), "cuDevicePrimaryCtxRetain") ||
        check(cu.set_current(ctx), "cuCtxSetCurrent") ||
        check(cu.mem_alloc(&out, 64), "cuMemAlloc") ||
        check(cu.stream_create(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate"))
        return 77;
    int bad = 0;
    for (enum unload_case c = IDLE; c <= QUEUED; c++)
        bad |= run_case(c, cubin, cycles, s, out);
    return bad;
}
