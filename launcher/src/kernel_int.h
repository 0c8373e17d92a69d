/* What the files of a kernel share: the kernel object, its candidates,
 * kept modules and signatures in flight, small helpers, and the kc__
 * functions one file of the launch flow calls in another. Internal.
 *
 *   kernel.c     registration, queries, teardown
 *   launch.c     the hot path: signature -> memo -> launch
 *   args.c       kernel parameters, geometry, written buffers, a
 *                signature's tuning key (the launch of prepared parameters
 *                is inline, below)
 *   compile.c    candidates compiled on the pool, stored builds reused,
 *                builds (and a tuning) published in one transaction
 *   modules.c    modules kept loaded, cubins loaded, prefetch, the memo
 *   resident.c   the launcher's bound on loaded modules: the least
 *                recently used unloaded on the pool
 *   autotune.c   load, time, record, publish, push
 *   miss.c       stored tuning, remote tier, single flight
 *
 * The files call each other in one direction only (check_layers checks it
 * from their objects): launch -> miss -> autotune -> compile, kernel ->
 * compile, and each of them -> args, modules -> resident, launcher.c.
 */
#ifndef KCACHE_KERNEL_INT_H
#define KCACHE_KERNEL_INT_H

#include "launcher_int.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "abi.h"
#include "compiler.h"
#include "memo.h"
#include "spec.h"

/* The signature of KC__MAX_ARGS pointers of the highest rank. */
#define SIG_CAP (4 + KC__MAX_ARGS * (3 + 8 * KC_MAX_RANK + 1))

#define MAX_VARS (KC__SPEC_MAX_PARAMS + KC__MAX_ARGS)

#define REASON_LINES 4

/* The most stored winners the prefetch loads for one kernel (modules.c). */
#define KC__PREFETCH_MAX 16
/* Loads of stored builds in progress at once per kernel that are shared
 * (past it, a load goes ahead unshared: kc__keep_module keeps one copy). */
#define KC__LOADING_MAX 8

typedef struct cand {
    /* Set by the compile task, read only after compile_done. */
    uint8_t status; /* KC_CAND_OK or KC_CAND_COMPILE_ERROR */
    char *reason;   /* NULL when OK */
    void *cubin;
    size_t cubin_len;
    kc_key_t blob_key;
    void *preimage;
    size_t preimage_len;
    kc_key_t build_key;
    char *entry; /* the symbol to look up */
    uint64_t compile_us;
    int compiled_here; /* not reused from the store */
    int foreign;       /* reused from a layer below the one publishes go to */
    /* Single flight across processes (compile tasks, then after
     * compile_done under the launcher's tune lock). */
    int leased;   /* this process holds the lease on build_key */
    int deferred; /* another process held it: wait for its build */
    /* Set while tuning, under the launcher's tune lock. */
    int published;
    kc__funcattrs_t attrs;
} cand_t;

typedef struct compile_task {
    kc_kernel_t *k;
    size_t i;
} compile_task_t;

/* A kept module's state (resident.c). A launch uses its function only
 * while it holds a pin taken in KEPT_LIVE; the unload waits for the pins. */
enum { KEPT_LIVE, KEPT_RETIRING, KEPT_UNLOADED };

/* A module kept loaded because it won a signature (or was prefetched).
 * The struct lives as long as its kernel, loaded or not: memo entries and
 * the launcher's ring point at it. With the launcher's bound on loaded
 * modules (resident.c), a resident one may be unloaded and loaded again
 * from the store. */
typedef struct kept {
    struct kept *next;
    kc_kernel_t *k;
    kc_key_t build;
    void *module;        /* under k->mu; NULL while unloaded */
    _Atomic(void *) fn;  /* set before state turns KEPT_LIVE */
    uint64_t compile_us; /* what the build cost to make: counted as saved */
    _Atomic int state;   /* KEPT_* */
    _Atomic unsigned pins;
    _Atomic int used; /* the clock's reference bit, set by launches */
    unsigned gen;     /* under k->mu: bumped by every return to KEPT_LIVE */
    int resident;     /* in the launcher's ring: its build is in the store */
} kept_t;

/* Pin m for a launch: 1 with its function in *fn while it is loaded, else
 * 0 (unloaded or being unloaded: kc__pin_slow loads it again). Release
 * with kc__unpin. The increment and the state read are sequentially
 * consistent, as are the unloader's state write and pins read, so one of
 * the two sees the other. */
static inline int kc__pin(kept_t *m, void **fn)
{
    atomic_fetch_add(&m->pins, 1);
    if (atomic_load(&m->state) == KEPT_LIVE) {
        /* Written only when clear: no store per launch on a shared line. */
        if (!atomic_load_explicit(&m->used, memory_order_relaxed))
            atomic_store_explicit(&m->used, 1, memory_order_relaxed);
        *fn = atomic_load_explicit(&m->fn, memory_order_relaxed);
        return 1;
    }
    atomic_fetch_sub(&m->pins, 1);
    return 0;
}

static inline void kc__unpin(kept_t *m)
{
    atomic_fetch_sub_explicit(&m->pins, 1, memory_order_release);
}

/* One signature being resolved by a leader while others wait. */
typedef struct flight {
    struct flight *next;
    uint64_t hash;
    size_t len;
    int done;
    unsigned waiters;
    uint8_t sig[];
} flight_t;

struct kc_kernel {
    kc_launcher_t *l;
    kc__spec_t *spec;
    kc_kernel_t *next;
    size_t n_cands;
    cand_t *cands;
    kc_param_t *cand_params; /* n_cands rows of n_params, names from the spec */
    /* Prebuilt kernels: each candidate's launch ABI, from its binmeta
     * record at registration; NULL for kernels kcache compiles. */
    kc__abi_t *abis;
    compile_task_t *tasks;
    char toolchain[64];

    pthread_mutex_t mu;
    pthread_cond_t compiled_cv;
    pthread_cond_t flight_cv;
    size_t pending;
    int compile_done;
    /* A prebuilt kernel's candidate tasks, not started at registration:
     * the first kc_kernel_wait_compiled (a miss that tunes) starts them. */
    int tasks_held;
    int prefetch_done; /* the stored winners' modules are loaded (or none) */
    /* The stored builds that a thread is fetching and loading now
     * (kc__load_stored): another thread that needs one of them waits for
     * that load instead of loading the same module again. */
    size_t n_loading;
    kc_key_t loading[KC__LOADING_MAX];
    compile_task_t prefetch_task;
    flight_t *flights;
    kept_t *kept;

    kc__memo_t memo;
    _Atomic(const kc__memo_entry_t *) last;

    /* memo_misses: launches that did not find their signature in the memo
     * (errors before the lookup included); memo hits are the rest, so the
     * hot path bumps one counter, not two. */
    _Atomic uint64_t launches, memo_misses, store_hits, tunes, compiles, builds_reused,
        candidates_failed, publishes, prefetched, remote_hits;
};

static inline void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline const char *kname(const kc_kernel_t *k)
{
    return k->spec->s.name;
}

static inline void nap_ms(unsigned *ms)
{
    struct timespec ts = {0, (long)*ms * 1000000L};
    nanosleep(&ts, NULL);
    *ms = *ms * 2 > 50 ? 50 : *ms * 2;
}

/* Leases need a store this process can write. */
static inline int leasing(const kc_launcher_t *l)
{
    return l->store && !kc_store_is_readonly(l->store);
}

/* ---- launching a function ---------------------------------------------- */

typedef union scalar {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
} scalar_t;

/* Everything one launch needs, computed on the stack. */
typedef struct prep {
    int64_t vars[MAX_VARS];
    kc__argshape_t shapes[KC__MAX_ARGS];
    scalar_t vals[KC__MAX_ARGS];
    void *params[KC__MAX_ARGS + KC__ABI_MAX_EXTRA];
    unsigned grid[3], block[3], shared;
} prep_t;

/* Launch prepared parameters: the one device call of a memo hit, inline so
 * that the hot path (launch.c) pays no call into another file for it. */
static inline int kc__launch_fn(kc_launcher_t *l, void *fn, const prep_t *p, void *stream)
{
    kc__device_t *dev = l->dev;
    int rc;

    if (p->shared > SMEM_NO_OPTIN) {
        rc = dev->ops->set_dyn_smem(dev, fn, p->shared);
        if (rc != KC_OK)
            return rc;
    }
    return dev->ops->launch(dev, fn, p->grid, p->block, p->shared, stream,
                            (void **)p->params);
}

/* Launch candidate cand's function with prepared parameters: under its
 * binary's ABI for a prebuilt kernel, else as above. */
static inline int kc__launch_cand(kc_kernel_t *k, size_t cand, void *fn, prep_t *p,
                                  void *stream)
{
    if (k->abis && cand < k->n_cands)
        return kc__abi_launch(k->l->dev, &k->abis[cand], fn, p->grid, stream, p->params,
                              k->spec->s.n_args);
    return kc__launch_fn(k->l, fn, p, stream);
}

/* For a prebuilt kernel, whether candidate cand's specialization admits
 * args: SIZE_MAX if so (or not prebuilt), else the first argument it
 * does not, with the reason in err. */
static inline size_t kc__cand_misfit(const kc_kernel_t *k, size_t cand,
                                     const kc_arg_t *args, char *err, size_t errcap)
{
    if (!k->abis || cand >= k->n_cands)
        return SIZE_MAX;
    return kc__abi_violation(&k->abis[cand], k->spec, args, err, errcap);
}

/* A launch's signature that the memo does not have, on its way through
 * miss resolution (miss.c, autotune.c): the signature, its hash, and where
 * the memo entry that resolves it goes. */
typedef struct kc__miss {
    const uint8_t *sig;
    size_t len;
    uint64_t hash;
    const kc__memo_entry_t **out;
} kc__miss_t;

typedef struct tune_state {
    kc__tune_cand_t *tc;
    void **modules;
    void **fns;
    prep_t *preps;
} tune_state_t;

/* ---- args.c ---- */

int kc__build_params(const kc_launcher_t *owner, const kc__spec_t *sp,
                     const kc_arg_t *args, size_t n, scalar_t *vals, void **params);
int kc__prepare(const kc__spec_t *sp, const int64_t *config, const int64_t *fixed,
                const kc_arg_t *args, size_t n, prep_t *p, char *err, size_t errcap);
size_t kc__written_bytes(const kc_arg_spec_t *a, const kc_arg_t *v);
uint8_t kc__geometry_status(const kc_kernel_t *k, const prep_t *p);
/* The tuning key (and its preimage, free with kc_free) of a signature. */
int kc__tuning_key(kc_kernel_t *k, const uint8_t *sig, size_t len, void **pre,
                   size_t *pre_len, kc_key_t *key);

/* ---- compile.c ---- */

void kc__release_build_lease(kc_kernel_t *k, cand_t *c);
/* Release every build lease k's candidates hold, in one transaction. */
void kc__release_build_leases(kc_kernel_t *k);
void kc__ensure_cubin(kc_kernel_t *k, cand_t *c, size_t i);
void kc__compile_one(void *arg);
/* Publish the builds compiled in this process and not yet published, and
 * the tuning if any, in one transaction. A failure is logged: the cache
 * must not fail the user's launch. */
int kc__publish(kc_kernel_t *k, const kc_tuning_rec_t *tuning);

/* ---- modules.c ---- */

/* Keep module (its function in *fn) as the loaded copy of build, or if
 * another thread kept one first, unload ours and put that one's function
 * in *fn. resident: the build is in the store,
 * so the launcher's bound may unload it (resident.c) and a launch load it
 * again. Returns the kept entry (NULL without memory: the module then stays
 * loaded untracked); with pin set, pinned for the caller's launch. */
kept_t *kc__keep_module(kc_kernel_t *k, const kc_key_t *build, void *module, void **fn,
                        uint64_t compile_us, int resident, int pin);
/* The kept entry of build if its module is loaded, pinned, with its
 * function in *fn; NULL if none. Release with kc__unpin. */
kept_t *kc__pin_kept(kc_kernel_t *k, const kc_key_t *build, void **fn);
/* Pin m when kc__pin found it unloaded: load its build from the store
 * again. KC_OK with *fn set and m pinned, or the load's error (the
 * launcher's errmsg says why). */
int kc__pin_slow(kc_kernel_t *k, kept_t *m, void **fn);
int kc__load_cubin(kc_kernel_t *k, const void *cubin, size_t len, const char *entry,
                   void **module, void **fn);
/* The module of a stored build for kernel k, loaded once (its kept entry
 * in *kept, NULL without memory to keep it, and its function): the kept one, or
 * (wait set) the one another thread of k is loading now, or else fetched
 * from the store's layers and loaded here, then kept (*fetched is 1). With
 * wait clear, a build another thread is loading, or one the bound
 * unloaded, gives KC_EBUSY. */
int kc__load_stored(kc_kernel_t *k, const kc_key_t *build, int wait, kept_t **kept,
                    void **fn, uint64_t *compile_us, int *fetched);
void kc__prefetch_winners(void *arg);
/* Memoize a signature's winner: kept (NULL: fn, never unloaded), its
 * candidate and config. */
int kc__memoize(kc_kernel_t *k, const kc__miss_t *m, kept_t *kept, void *fn, size_t cand,
                const int64_t *config);

/* ---- resident.c: the launcher's bound on loaded modules ---- */

/* A resident module of the launcher was loaded (new, or, with reloaded,
 * loaded again after the bound unloaded it): counted, the automatic bound
 * raised if reloads show it too small, and past the bound an unload task
 * is queued on the pool. Call without k->mu held. */
void kc__resident_loaded(kc_launcher_t *l, int reloaded);
/* Put m in the launcher's ring (under k->mu is fine). 0 without memory:
 * then m stays loaded for good. */
int kc__resident_add(kc_launcher_t *l, kept_t *m);

/* ---- autotune.c ---- */

/* push_tuning 0: the caller holds the tuning's remote lease and pushes the
 * published tuning itself; 1: it is queued for the remote tier. */
int kc__tune_and_publish(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                         const kc__miss_t *m, int push_tuning);

/* ---- miss.c ---- */

int kc__resolve(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                const kc__miss_t *m, int *launched);

#endif
