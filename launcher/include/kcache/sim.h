/* The CPU simulation device.
 *
 * It stands in for a GPU where there is none (CI): it "loads" a cubin by
 * checking its ELF header (class, machine EM_CUDA), finds an entry by name in
 * the cubin's symbol table, "launches" by calling a C function registered for
 * that entry, and reports timings from a deterministic cost model. Device
 * memory is host memory: a device pointer is a host address.
 *
 * Every cubin the simulation device is asked to load is counted, and one
 * that fails its checks is refused with KC_ECORRUPT, so tests can assert
 * that nothing corrupt reaches the "driver".
 */
#ifndef KCACHE_SIM_H
#define KCACHE_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_sim kc_sim_t;

typedef struct kc_sim_launch {
    unsigned grid[3];
    unsigned block[3];
    unsigned shared;
    void *const *params; /* as for cuLaunchKernel: pointers to each argument */
    size_t n_params;     /* 0: the device layer, like cuLaunchKernel, gets no count */
    /* cuLaunchKernelEx's attributes (prebuilt binaries): CTAs per cluster
     * in x (1: no cluster; grid[0] counts CTAs and is a multiple of it),
     * and the KC_BINMETA_PDL / KC_BINMETA_COOPERATIVE bits asked for. */
    unsigned cluster_x;
    uint32_t flags;
} kc_sim_launch_t;

/* Runs the kernel on the CPU. Returns 0, or non-zero to report a launch
 * failure (KC_ELAUNCH; the context stays usable), or KC_ESTICKY to
 * simulate an illegal address (the context becomes unusable). */
typedef int (*kc_sim_kernel_fn)(void *user, const kc_sim_launch_t *launch);

/* Simulated run time in nanoseconds of one launch. Must be a pure function
 * of its input for the tuner's choice to be deterministic. */
typedef uint64_t (*kc_sim_cost_fn)(void *user, const kc_sim_launch_t *launch);

typedef struct kc_sim_opts {
    /* sizeof(kc_sim_opts_t), as KC_SIM_OPTS_INIT sets it (kcache/api.h, "Options
     * structs"): fields past it read as their defaults. */
    size_t size;
    const char *arch;     /* e.g. "sm_90" (default) */
    unsigned sm_count;    /* default 132 */
    const char *name;     /* default "kcache simulated GPU" */
    uint64_t mem_limit;   /* bytes of "device" memory (0: unlimited) */
    unsigned max_threads; /* per block, default 1024 */
    unsigned max_shared;  /* per block, default 227 KiB; as on a GPU, a launch
                           * with more than 48 KiB of dynamic shared memory
                           * needs the function's opt-in (set_dyn_smem) */
} kc_sim_opts_t;

/* Every option at their defaults: kc_sim_opts_t o = KC_SIM_OPTS_INIT; then set fields. */
#define KC_SIM_OPTS_INIT                                                                 \
    {                                                                                    \
        .size = sizeof(kc_sim_opts_t)                                                    \
    }

/* opts may be NULL (every default); KC_EINVAL for an opts->size of 0 or
 * larger than this library's, or a bad arch or name. */
KC_API int kc_sim_create(const kc_sim_opts_t *opts, kc_sim_t **out);
/* Launchers that use sim must be destroyed first: their modules are its. */
KC_API void kc_sim_destroy(kc_sim_t *sim);

/* Register the C function and cost model for an entry name. */
KC_API int kc_sim_register(kc_sim_t *sim, const char *entry, kc_sim_kernel_fn fn,
                           kc_sim_cost_fn cost, void *user);

typedef struct kc_sim_counters {
    uint64_t modules_loaded;
    uint64_t modules_rejected; /* failed the ELF checks */
    uint64_t launches;
    uint64_t bytes_allocated; /* currently allocated "device" memory */
    uint64_t peak_bytes;
    uint64_t modules_unloaded;
    /* Launches of a function whose module was unloaded, before the launch
     * or while its C function ran: each one failed with
     * CUDA_ERROR_INVALID_HANDLE (a bug in the caller). */
    uint64_t dead_launches;
} kc_sim_counters_t;

KC_API void kc_sim_counters(const kc_sim_t *sim, kc_sim_counters_t *out);

#ifdef __cplusplus
}
#endif
#endif
