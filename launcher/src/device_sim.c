/* The CPU simulation device (kcache/sim.h) and its device-layer table. */
#include "opts.h"
#include "device.h"
#include "cubin_elf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "kcache/errors.h"

#define SIM_DEFAULT_ARCH "sm_90"
#define SIM_DEFAULT_NAME "kcache simulated GPU"
#define SIM_DEFAULT_SMS 132
#define SIM_DEFAULT_THREADS 1024
#define SIM_DEFAULT_SHARED (227u * 1024)
#define SIM_L2_BYTES (50ull << 20)
/* What mem_free_bytes reports without a limit: an H100's worth. */
#define SIM_UNLIMITED_FREE (80ull << 30)
/* As on a GPU, more than 48 KiB of dynamic shared memory needs an opt-in. */
#define SIM_SMEM_NO_OPTIN (48u * 1024)
/* Device allocations are aligned like cuMemAlloc's; the header before the
 * pointer keeps the size for the byte accounting. */
#define SIM_ALIGN 256

typedef struct sim_entry {
    char *name;
    kc_sim_kernel_fn fn;
    kc_sim_cost_fn cost;
    void *user;
} sim_entry_t;

typedef struct sim_func {
    struct sim_func *next;
    sim_entry_t *entry;
    unsigned dyn_smem_limit;
    int unloaded; /* its module was unloaded: launching it is an error */
} sim_func_t;

struct kc_sim {
    pthread_mutex_t mu;
    char arch[16];
    char name[128];
    unsigned sm_count;
    uint64_t mem_limit;
    unsigned max_threads;
    unsigned max_shared;

    sim_entry_t **entries;
    size_t n_entries;
    uint64_t clock_ns; /* the virtual clock: the sum of every launch's cost */
    int sticky;        /* a kernel reported KC_ESTICKY: the "context" is lost */
    kc_sim_counters_t counters;
    /* Functions of unloaded modules, kept (freed with the sim) so that a
     * launch of one fails with an error instead of reading freed memory. */
    sim_func_t *dead;
};

/* ---- kc_sim_t ----------------------------------------------------------- */

int kc_sim_create(const kc_sim_opts_t *opts, kc_sim_t **out)
{
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    kc_sim_opts_t o;
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK)
        return KC_EINVAL;
    const char *arch = o.arch ? o.arch : SIM_DEFAULT_ARCH;
    const char *name = o.name ? o.name : SIM_DEFAULT_NAME;
    int major = 0, minor = 0;
    if (sscanf(arch, "sm_%1d%1d", &major, &minor) != 2 || strlen(arch) >= 16 ||
        strlen(name) >= 128)
        return KC_EINVAL;

    kc_sim_t *sim = calloc(1, sizeof(*sim));
    if (!sim)
        return KC_ENOMEM;
    pthread_mutex_init(&sim->mu, NULL);
    snprintf(sim->arch, sizeof(sim->arch), "%s", arch);
    snprintf(sim->name, sizeof(sim->name), "%s", name);
    sim->sm_count = o.sm_count ? o.sm_count : SIM_DEFAULT_SMS;
    sim->mem_limit = o.mem_limit;
    sim->max_threads = o.max_threads ? o.max_threads : SIM_DEFAULT_THREADS;
    sim->max_shared = o.max_shared ? o.max_shared : SIM_DEFAULT_SHARED;
    *out = sim;
    return KC_OK;
}

void kc_sim_destroy(kc_sim_t *sim)
{
    if (!sim)
        return;
    for (size_t i = 0; i < sim->n_entries; i++) {
        free(sim->entries[i]->name);
        free(sim->entries[i]);
    }
    free(sim->entries);
    while (sim->dead) {
        sim_func_t *next = sim->dead->next;
        free(sim->dead);
        sim->dead = next;
    }
    pthread_mutex_destroy(&sim->mu);
    free(sim);
}

static sim_entry_t *find_entry_locked(kc_sim_t *sim, const char *name)
{
    for (size_t i = 0; i < sim->n_entries; i++)
        if (strcmp(sim->entries[i]->name, name) == 0)
            return sim->entries[i];
    return NULL;
}

int kc_sim_register(kc_sim_t *sim, const char *entry, kc_sim_kernel_fn fn,
                    kc_sim_cost_fn cost, void *user)
{
    if (!sim || !entry || !fn)
        return KC_EINVAL;
    int rc = KC_OK;
    pthread_mutex_lock(&sim->mu);
    sim_entry_t *e = find_entry_locked(sim, entry);
    if (e) {
        /* Registering again replaces: entries are never removed, because
         * functions already looked up point at them. */
        e->fn = fn;
        e->cost = cost;
        e->user = user;
        goto out;
    }
    sim_entry_t **grown = realloc(sim->entries, (sim->n_entries + 1) * sizeof(*grown));
    if (!grown) {
        rc = KC_ENOMEM;
        goto out;
    }
    sim->entries = grown;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(entry))) {
        free(e);
        rc = KC_ENOMEM;
        goto out;
    }
    e->fn = fn;
    e->cost = cost;
    e->user = user;
    sim->entries[sim->n_entries++] = e;
out:
    pthread_mutex_unlock(&sim->mu);
    return rc;
}

void kc_sim_counters(const kc_sim_t *sim, kc_sim_counters_t *out)
{
    kc_sim_t *s = (kc_sim_t *)sim; /* the lock is not part of the value */
    pthread_mutex_lock(&s->mu);
    *out = s->counters;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the device --------------------------------------------------------- */

typedef struct sim_module {
    void *image; /* a copy: like cuModuleLoadData, the caller's may go */
    kc__elf_t elf;
    sim_func_t *funcs;
} sim_module_t;

typedef struct sim_event {
    uint64_t t;
    int recorded;
} sim_event_t;

typedef struct sim_device {
    kc__device_t base;
    kc_sim_t *sim;
} sim_device_t;

static kc_sim_t *sim_of(kc__device_t *dev)
{
    return ((sim_device_t *)dev)->sim;
}

static int sticky(kc__device_t *dev)
{
    kc_sim_t *sim = sim_of(dev);
    pthread_mutex_lock(&sim->mu);
    int s = sim->sticky;
    pthread_mutex_unlock(&sim->mu);
    if (s)
        kc__device_set_errmsg(dev, "simulated context is lost after an illegal address");
    return s;
}

static void sim_destroy(kc__device_t *dev)
{
    free(dev);
}

static int sim_info(kc__device_t *dev, kc__devinfo_t *out)
{
    kc_sim_t *sim = sim_of(dev);
    memset(out, 0, sizeof(*out));
    snprintf(out->arch, sizeof(out->arch), "%s", sim->arch);
    snprintf(out->name, sizeof(out->name), "%s", sim->name);
    sscanf(sim->arch, "sm_%1d%1d", &out->cc_major, &out->cc_minor);
    out->sm_count = sim->sm_count;
    out->max_threads_per_block = sim->max_threads;
    out->max_shared_optin = sim->max_shared;
    out->l2_bytes = SIM_L2_BYTES;
    return KC_OK;
}

static int sim_bind(kc__device_t *dev)
{
    (void)dev;
    return KC_OK;
}

static int sim_module_load(kc__device_t *dev, const void *cubin, size_t len,
                           void **module)
{
    *module = NULL;
    if (sticky(dev))
        return KC_ESTICKY;
    kc_sim_t *sim = sim_of(dev);
    char why[256];
    kc__elf_t elf;
    int rc = cubin ? kc__elf_open(cubin, len, &elf, why, sizeof(why)) : KC_ECORRUPT;
    if (!cubin)
        snprintf(why, sizeof(why), "no image");
    if (rc != KC_OK) {
        pthread_mutex_lock(&sim->mu);
        sim->counters.modules_rejected++;
        pthread_mutex_unlock(&sim->mu);
        kc__device_set_errmsg(dev, "cuModuleLoadData (simulated): %s", why);
        return rc;
    }
    sim_module_t *m = calloc(1, sizeof(*m));
    void *copy = malloc(len);
    if (!m || !copy) {
        free(m);
        free(copy);
        return KC_ENOMEM;
    }
    memcpy(copy, cubin, len);
    m->image = copy;
    m->elf = elf;
    m->elf.p = copy;
    pthread_mutex_lock(&sim->mu);
    sim->counters.modules_loaded++;
    pthread_mutex_unlock(&sim->mu);
    *module = m;
    return KC_OK;
}

static void sim_module_unload(kc__device_t *dev, void *module)
{
    sim_module_t *m = module;
    if (!m)
        return;
    kc_sim_t *sim = sim_of(dev);
    pthread_mutex_lock(&sim->mu);
    for (sim_func_t *f = m->funcs, *next; f; f = next) {
        next = f->next;
        f->unloaded = 1;
        f->next = sim->dead;
        sim->dead = f;
    }
    sim->counters.modules_unloaded++;
    pthread_mutex_unlock(&sim->mu);
    free(m->image);
    free(m);
}

static int sim_get_function(kc__device_t *dev, void *module, const char *entry, void **fn)
{
    *fn = NULL;
    sim_module_t *m = module;
    if (!m || !entry)
        return KC_EINVAL;
    if (kc__elf_find_func(&m->elf, entry) != KC_OK) {
        kc__device_set_errmsg(dev,
                              "cuModuleGetFunction (simulated): no function '%s' in "
                              "the cubin's symbol table",
                              entry);
        return KC_ENOTFOUND;
    }
    kc_sim_t *sim = sim_of(dev);
    pthread_mutex_lock(&sim->mu);
    sim_entry_t *e = find_entry_locked(sim, entry);
    pthread_mutex_unlock(&sim->mu);
    if (!e) {
        kc__device_set_errmsg(dev,
                              "simulation: no C function registered for '%s' "
                              "(kc_sim_register)",
                              entry);
        return KC_ENOTFOUND;
    }
    sim_func_t *f = calloc(1, sizeof(*f));
    if (!f)
        return KC_ENOMEM;
    f->entry = e;
    f->dyn_smem_limit = SIM_SMEM_NO_OPTIN;
    /* Functions belong to their module, as CUfunctions do. */
    pthread_mutex_lock(&sim->mu);
    f->next = m->funcs;
    m->funcs = f;
    pthread_mutex_unlock(&sim->mu);
    *fn = f;
    return KC_OK;
}

static int sim_func_attrs(kc__device_t *dev, void *fn, kc__funcattrs_t *out)
{
    (void)fn;
    out->registers = 32;
    out->static_smem = 0;
    out->max_threads = sim_of(dev)->max_threads;
    out->local_bytes = 0;
    return KC_OK;
}

static int sim_set_dyn_smem(kc__device_t *dev, void *fn, unsigned bytes)
{
    sim_func_t *f = fn;
    kc_sim_t *sim = sim_of(dev);
    if (bytes > sim->max_shared) {
        kc__device_set_errmsg(dev,
                              "cuFuncSetAttribute (simulated): %u bytes of shared "
                              "memory exceed the device's %u",
                              bytes, sim->max_shared);
        return KC_ETOOBIG;
    }
    pthread_mutex_lock(&sim->mu);
    if (bytes > f->dyn_smem_limit)
        f->dyn_smem_limit = bytes;
    pthread_mutex_unlock(&sim->mu);
    return KC_OK;
}

/* The cost model when none is registered: a fixed launch overhead plus one
 * nanosecond per thread spread over the SMs. */
static uint64_t default_cost(const kc_sim_t *sim, const kc_sim_launch_t *l)
{
    uint64_t threads = (uint64_t)l->grid[0] * l->grid[1] * l->grid[2] * l->block[0] *
                       l->block[1] * l->block[2];
    return 2000 + threads / sim->sm_count;
}

/* A launch of a function whose module was unloaded (before it, or while
 * its C function ran: when), counted under sim->mu by the caller. */
static int dead_launch(kc__device_t *dev, const char *when)
{
    kc__device_set_errmsg(dev,
                          "cuLaunchKernel (simulated): CUDA_ERROR_INVALID_HANDLE: the "
                          "function's module was unloaded %s",
                          when);
    return KC_ELAUNCH;
}

static int sim_launch_with(kc__device_t *dev, void *fn, const unsigned grid[3],
                           const unsigned block[3], unsigned shared, void **params,
                           unsigned cluster_x, uint32_t flags)
{
    sim_func_t *f = fn;
    kc_sim_t *sim = sim_of(dev);
    if (!f)
        return KC_EINVAL;
    if (sticky(dev))
        return KC_ESTICKY;
    if (!grid[0] || !grid[1] || !grid[2] || !block[0] || !block[1] || !block[2]) {
        kc__device_set_errmsg(dev, "cuLaunchKernel (simulated): zero grid or block "
                                   "dimension");
        return KC_EINVAL;
    }
    uint64_t threads = (uint64_t)block[0] * block[1] * block[2];
    if (threads > sim->max_threads) {
        kc__device_set_errmsg(dev,
                              "cuLaunchKernel (simulated): CUDA_ERROR_INVALID_VALUE: "
                              "%llu threads per block exceed %u",
                              (unsigned long long)threads, sim->max_threads);
        return KC_ETOOBIG;
    }
    pthread_mutex_lock(&sim->mu);
    int unloaded = f->unloaded;
    unsigned smem_limit = f->dyn_smem_limit;
    kc_sim_kernel_fn kfn = f->entry->fn;
    kc_sim_cost_fn cost = f->entry->cost;
    void *user = f->entry->user;
    if (unloaded)
        sim->counters.dead_launches++;
    pthread_mutex_unlock(&sim->mu);
    if (unloaded)
        return dead_launch(dev, "before the launch");
    if (shared > smem_limit) {
        kc__device_set_errmsg(dev,
                              "cuLaunchKernel (simulated): CUDA_ERROR_INVALID_VALUE: "
                              "%u bytes of dynamic shared memory exceed %u%s",
                              shared, smem_limit,
                              smem_limit < sim->max_shared ? " (no opt-in)" : "");
        return KC_ETOOBIG;
    }

    kc_sim_launch_t l;
    memcpy(l.grid, grid, sizeof(l.grid));
    memcpy(l.block, block, sizeof(l.block));
    l.shared = shared;
    l.params = params;
    l.n_params = 0; /* cuLaunchKernel's params carry no count either */
    l.cluster_x = cluster_x;
    l.flags = flags;
    uint64_t ns = cost ? cost(user, &l) : default_cost(sim, &l);

    int r = kfn(user, &l);
    pthread_mutex_lock(&sim->mu);
    /* Unloaded while the launch ran: a handle destroyed under its use. */
    unloaded = f->unloaded;
    if (unloaded)
        sim->counters.dead_launches++;
    sim->counters.launches++;
    if (r == 0)
        sim->clock_ns += ns;
    else if (r == KC_ESTICKY)
        sim->sticky = 1;
    pthread_mutex_unlock(&sim->mu);
    if (unloaded)
        return dead_launch(dev, "during the launch");
    if (r == KC_ESTICKY) {
        kc__device_set_errmsg(dev,
                              "cuLaunchKernel (simulated): "
                              "CUDA_ERROR_ILLEGAL_ADDRESS: %s",
                              f->entry->name);
        return KC_ESTICKY;
    }
    if (r != 0) {
        kc__device_set_errmsg(dev,
                              "cuLaunchKernel (simulated): CUDA_ERROR_LAUNCH_FAILED: "
                              "%s returned %d",
                              f->entry->name, r);
        return KC_ELAUNCH;
    }
    return KC_OK;
}

static int sim_launch(kc__device_t *dev, void *fn, const unsigned grid[3],
                      const unsigned block[3], unsigned shared, void *stream,
                      void **params)
{
    (void)stream;
    return sim_launch_with(dev, fn, grid, block, shared, params, 1, 0);
}

/* As cuLaunchKernelEx checks: a cluster of at most 8 CTAs (16 is
 * non-portable), dividing the grid. */
static int sim_launch_ex(kc__device_t *dev, void *fn, const unsigned grid[3],
                         const unsigned block[3], unsigned shared, void *stream,
                         void **params, unsigned cluster_x, uint32_t flags)
{
    (void)stream;
    if (cluster_x == 0 || cluster_x > 16 || grid[0] % cluster_x != 0) {
        kc__device_set_errmsg(dev,
                              "cuLaunchKernelEx (simulated): CUDA_ERROR_INVALID_VALUE: "
                              "cluster of %u CTAs for a grid x of %u",
                              cluster_x, grid[0]);
        return KC_EINVAL;
    }
    return sim_launch_with(dev, fn, grid, block, shared, params, cluster_x, flags);
}

static int sim_mem_alloc(kc__device_t *dev, size_t size, uint64_t *ptr);
static void sim_mem_free(kc__device_t *dev, uint64_t ptr);

/* The simulation runs launches synchronously: stream order is call order. */
static int sim_mem_alloc_async(kc__device_t *dev, size_t size, void *stream,
                               uint64_t *ptr)
{
    (void)stream;
    return sim_mem_alloc(dev, size, ptr);
}

static void sim_mem_free_async(kc__device_t *dev, uint64_t ptr, void *stream)
{
    (void)stream;
    sim_mem_free(dev, ptr);
}

static int sim_mem_alloc(kc__device_t *dev, size_t size, uint64_t *ptr)
{
    *ptr = 0;
    kc_sim_t *sim = sim_of(dev);
    if (size == 0 || size > SIZE_MAX - 2 * SIM_ALIGN)
        return KC_EINVAL;
    if (sticky(dev))
        return KC_ESTICKY;
    pthread_mutex_lock(&sim->mu);
    uint64_t used = sim->counters.bytes_allocated;
    int over = sim->mem_limit && (size > sim->mem_limit || used > sim->mem_limit - size);
    if (!over)
        sim->counters.bytes_allocated += size;
    pthread_mutex_unlock(&sim->mu);
    if (over) {
        kc__device_set_errmsg(dev,
                              "cuMemAlloc (simulated): CUDA_ERROR_OUT_OF_MEMORY: "
                              "%zu bytes with %llu of %llu in use",
                              size, (unsigned long long)used,
                              (unsigned long long)sim->mem_limit);
        return KC_ENOMEM;
    }
    size_t total = (size + SIM_ALIGN + SIM_ALIGN - 1) / SIM_ALIGN * SIM_ALIGN;
    uint8_t *base = aligned_alloc(SIM_ALIGN, total);
    pthread_mutex_lock(&sim->mu);
    if (!base)
        sim->counters.bytes_allocated -= size;
    else if (sim->counters.bytes_allocated > sim->counters.peak_bytes)
        sim->counters.peak_bytes = sim->counters.bytes_allocated;
    pthread_mutex_unlock(&sim->mu);
    if (!base) {
        kc__device_set_errmsg(dev, "cuMemAlloc (simulated): host malloc of %zu failed",
                              size);
        return KC_ENOMEM;
    }
    memcpy(base, &size, sizeof(size));
    *ptr = (uint64_t)(uintptr_t)(base + SIM_ALIGN);
    return KC_OK;
}

static void sim_mem_free(kc__device_t *dev, uint64_t ptr)
{
    if (!ptr)
        return;
    kc_sim_t *sim = sim_of(dev);
    uint8_t *base = (uint8_t *)(uintptr_t)ptr - SIM_ALIGN;
    size_t size;
    memcpy(&size, base, sizeof(size));
    pthread_mutex_lock(&sim->mu);
    sim->counters.bytes_allocated -= size;
    pthread_mutex_unlock(&sim->mu);
    free(base);
}

static int sim_copy(kc__device_t *dev, void *dst, const void *src, size_t size)
{
    if (sticky(dev))
        return KC_ESTICKY;
    if (size && (!dst || !src))
        return KC_EINVAL;
    if (size)
        memmove(dst, src, size);
    return KC_OK;
}

static int sim_copy_dtod(kc__device_t *dev, uint64_t dst, uint64_t src, size_t size,
                         void *stream)
{
    (void)stream;
    return sim_copy(dev, (void *)(uintptr_t)dst, (const void *)(uintptr_t)src, size);
}

static int sim_copy_dtoh(kc__device_t *dev, void *dst, uint64_t src, size_t size,
                         void *stream)
{
    (void)stream;
    return sim_copy(dev, dst, (const void *)(uintptr_t)src, size);
}

static int sim_copy_htod(kc__device_t *dev, uint64_t dst, const void *src, size_t size,
                         void *stream)
{
    (void)stream;
    return sim_copy(dev, (void *)(uintptr_t)dst, src, size);
}

static int sim_mem_free_bytes(kc__device_t *dev, size_t *free_bytes)
{
    kc_sim_t *sim = sim_of(dev);
    pthread_mutex_lock(&sim->mu);
    uint64_t left = sim->mem_limit ? sim->mem_limit - sim->counters.bytes_allocated
                                   : SIM_UNLIMITED_FREE;
    pthread_mutex_unlock(&sim->mu);
    *free_bytes = left > SIZE_MAX ? SIZE_MAX : (size_t)left;
    return KC_OK;
}

static int sim_event_create(kc__device_t *dev, void **event)
{
    (void)dev;
    *event = calloc(1, sizeof(sim_event_t));
    return *event ? KC_OK : KC_ENOMEM;
}

static void sim_event_destroy(kc__device_t *dev, void *event)
{
    (void)dev;
    free(event);
}

static int sim_event_record(kc__device_t *dev, void *event, void *stream)
{
    (void)stream;
    sim_event_t *e = event;
    kc_sim_t *sim = sim_of(dev);
    if (sticky(dev))
        return KC_ESTICKY;
    pthread_mutex_lock(&sim->mu);
    e->t = sim->clock_ns;
    e->recorded = 1;
    pthread_mutex_unlock(&sim->mu);
    return KC_OK;
}

static int sim_event_elapsed_ms(kc__device_t *dev, void *start, void *end, float *ms)
{
    const sim_event_t *a = start, *b = end;
    if (!a->recorded || !b->recorded) {
        kc__device_set_errmsg(dev, "cuEventElapsedTime (simulated): "
                                   "CUDA_ERROR_INVALID_HANDLE: event not recorded");
        return KC_EINVAL;
    }
    *ms = (float)((double)(int64_t)(b->t - a->t) / 1e6);
    return KC_OK;
}

static int sim_stream_sync(kc__device_t *dev, void *stream)
{
    (void)stream;
    return sticky(dev) ? KC_ESTICKY : KC_OK;
}

static int sim_flush_l2(kc__device_t *dev, void *stream)
{
    (void)dev;
    (void)stream;
    return KC_OK;
}

static const kc__device_ops_t sim_ops = {
    .destroy = sim_destroy,
    .info = sim_info,
    .bind = sim_bind,
    .module_load = sim_module_load,
    .module_unload = sim_module_unload,
    .get_function = sim_get_function,
    .func_attrs = sim_func_attrs,
    .set_dyn_smem = sim_set_dyn_smem,
    .launch = sim_launch,
    .launch_ex = sim_launch_ex,
    .mem_alloc_async = sim_mem_alloc_async,
    .mem_free_async = sim_mem_free_async,
    .mem_alloc = sim_mem_alloc,
    .mem_free = sim_mem_free,
    .copy_dtod = sim_copy_dtod,
    .copy_dtoh = sim_copy_dtoh,
    .copy_htod = sim_copy_htod,
    .mem_free_bytes = sim_mem_free_bytes,
    .event_create = sim_event_create,
    .event_destroy = sim_event_destroy,
    .event_record = sim_event_record,
    .event_elapsed_ms = sim_event_elapsed_ms,
    .stream_sync = sim_stream_sync,
    .flush_l2 = sim_flush_l2,
    .ptx_to_cubin = NULL,
};

int kc__device_sim_open(kc_sim_t *sim, kc__device_t **out)
{
    *out = NULL;
    if (!sim)
        return KC_EINVAL;
    sim_device_t *d = calloc(1, sizeof(*d));
    if (!d)
        return KC_ENOMEM;
    d->base.ops = &sim_ops;
    d->sim = sim;
    *out = &d->base;
    return KC_OK;
}
