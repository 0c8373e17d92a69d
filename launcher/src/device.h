/* The device layer: a table of functions with a CUDA implementation
 * (device_cuda.c, Driver API through dlopen) and a CPU simulation
 * (device_sim.c). The launcher and tuner only ever call through this table.
 * Internal. */
#ifndef KCACHE_DEVICE_H
#define KCACHE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/sim.h"

/* Above this much dynamic shared memory, a function needs an opt-in
 * (set_dyn_smem). */
#define SMEM_NO_OPTIN (48u * 1024)

typedef struct kc__device kc__device_t;

typedef struct kc__devinfo {
    char arch[16];  /* "sm_90" */
    char name[128]; /* "NVIDIA H100 80GB HBM3" */
    int cc_major, cc_minor;
    unsigned sm_count;
    unsigned driver_version; /* cuDriverGetVersion, 0 for the simulation */
    unsigned max_threads_per_block;
    unsigned max_shared_optin; /* dynamic + static shared memory a block may opt in to */
    uint64_t l2_bytes;
} kc__devinfo_t;

/* Attributes of a loaded function. */
typedef struct kc__funcattrs {
    unsigned registers;
    unsigned static_smem;
    unsigned max_threads;
    unsigned local_bytes;
} kc__funcattrs_t;

/* Every call returns KC_OK or a KC_E* code and, on failure, writes a detail
 * (the CUresult name and message) with kc__device_errmsg. Resource problems
 * at launch (too many threads, too much shared memory, too many registers)
 * return KC_ETOOBIG so the tuner can record KC_CAND_RESOURCES; a sticky
 * context error returns KC_ESTICKY. */
typedef struct kc__device_ops {
    void (*destroy)(kc__device_t *dev);
    int (*info)(kc__device_t *dev, kc__devinfo_t *out);
    /* Makes the device's context current on the calling thread. */
    int (*bind)(kc__device_t *dev);
    int (*module_load)(kc__device_t *dev, const void *cubin, size_t len, void **module);
    void (*module_unload)(kc__device_t *dev, void *module);
    int (*get_function)(kc__device_t *dev, void *module, const char *entry, void **fn);
    int (*func_attrs)(kc__device_t *dev, void *fn, kc__funcattrs_t *out);
    /* Allow `bytes` of dynamic shared memory (above 48 KiB needs an opt-in). */
    int (*set_dyn_smem)(kc__device_t *dev, void *fn, unsigned bytes);
    int (*launch)(kc__device_t *dev, void *fn, const unsigned grid[3],
                  const unsigned block[3], unsigned shared, void *stream, void **params);
    /* cuLaunchKernelEx: grid[0] counts CTAs; clusters of cluster_x CTAs
     * when cluster_x > 1; flags KC_BINMETA_PDL (programmatic stream
     * serialization) and KC_BINMETA_COOPERATIVE. */
    int (*launch_ex)(kc__device_t *dev, void *fn, const unsigned grid[3],
                     const unsigned block[3], unsigned shared, void *stream,
                     void **params, unsigned cluster_x, uint32_t flags);
    /* Stream-ordered allocation (cuMemAllocAsync, cuMemFreeAsync): the
     * memory is usable by work queued on stream after the call, and freed
     * once the work queued before the free is done. */
    int (*mem_alloc_async)(kc__device_t *dev, size_t size, void *stream, uint64_t *ptr);
    void (*mem_free_async)(kc__device_t *dev, uint64_t ptr, void *stream);
    int (*mem_alloc)(kc__device_t *dev, size_t size, uint64_t *ptr);
    void (*mem_free)(kc__device_t *dev, uint64_t ptr);
    int (*copy_dtod)(kc__device_t *dev, uint64_t dst, uint64_t src, size_t size,
                     void *stream);
    int (*copy_dtoh)(kc__device_t *dev, void *dst, uint64_t src, size_t size,
                     void *stream);
    int (*copy_htod)(kc__device_t *dev, uint64_t dst, const void *src, size_t size,
                     void *stream);
    /* Free device memory, for deciding where saved buffers go. */
    int (*mem_free_bytes)(kc__device_t *dev, size_t *free_bytes);
    int (*event_create)(kc__device_t *dev, void **event);
    void (*event_destroy)(kc__device_t *dev, void *event);
    int (*event_record)(kc__device_t *dev, void *event, void *stream);
    /* Waits for `end`, then gives the milliseconds between the events. */
    int (*event_elapsed_ms)(kc__device_t *dev, void *start, void *end, float *ms);
    int (*stream_sync)(kc__device_t *dev, void *stream);
    /* Evict L2 by writing a scratch buffer at least as large as L2. */
    int (*flush_l2)(kc__device_t *dev, void *stream);
    /* PTX -> cubin through the driver's JIT linker (cuLink*). NULL if the
     * device cannot JIT (the simulation). *cubin: free with kc_free. */
    int (*ptx_to_cubin)(kc__device_t *dev, const char *ptx, size_t len, const char *arch,
                        void **cubin, size_t *cubin_len, char *log, size_t log_cap);
} kc__device_ops_t;

struct kc__device {
    const kc__device_ops_t *ops;
};

/* KC_ENODEVICE when libcuda.so.1 can't be loaded or there is no device;
 * the reason goes to errmsg[errcap]. */
int kc__device_cuda_open(int ordinal, kc__device_t **out, char *errmsg, size_t errcap);
int kc__device_sim_open(kc_sim_t *sim, kc__device_t **out);

/* A device's messages are the common diagnostics owned by the device: per
 * thread, read back only through the device that wrote them. */
void kc__device_set_errmsg(kc__device_t *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The detail of this thread's last failure on dev, or "". Never NULL. */
const char *kc__device_errmsg(const kc__device_t *dev);
/* Forget dev's message, before a call whose failure is to be told apart. */
void kc__device_clear_errmsg(const kc__device_t *dev);

#endif
