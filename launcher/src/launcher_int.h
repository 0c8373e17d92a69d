/* The launcher object, shared by launcher.c (creation, options, store,
 * device, pool) and the kernel files (registration and the launch flow, which
 * call launcher.c; launcher.c calls none of them). Internal.
 */
#ifndef KCACHE_LAUNCHER_INT_H
#define KCACHE_LAUNCHER_INT_H

#include <pthread.h>
#include <stdarg.h>

#include "kcache/launch.h"
#include "kcache/layers.h"
#include "kcache/remote.h"

#include "device.h"
#include "index.h"
#include "pool.h"
#include "tuner.h"

/* Most arguments a kernel may have: the launch path keeps its per-argument
 * arrays on the stack. */
#define KC__MAX_ARGS 64

struct kc_launcher {
    kc_device_kind_t kind;
    kc__device_t *dev; /* NULL for KC_DEVICE_NONE */
    kc__devinfo_t info;
    char arch[32];
    /* The stores searched, in order (NULL: no store), and the one that
     * receives publishes, leases, counters and usage stamps: the first
     * writable layer, else the first layer (then nothing is written). */
    kc_layers_t *layers;
    kc_store_t *store;
    /* The store is opened at first use (kc__launcher_open_store), not in
     * kc_launcher_create: store_path is the path list read from the options
     * and the environment at creation (NULL: nothing to open, or opened
     * already); store_ready is set, with release order, once layers and
     * store hold their final values; store_mu serializes the open. */
    char *store_path;
    _Atomic int store_ready;
    pthread_mutex_t store_mu;
    kc__pool_t *pool;
    kc_remote_t *remote;       /* NULL: no remote tier */
    _Atomic int remote_warned; /* its first failure was logged as a warning */
    /* Write-behind: pushes queued on the pool and not done yet, at most
     * wb_max (KCACHE_REMOTE_QUEUE, default 1024); past it a push is
     * dropped and counted (KC_COUNTER_REMOTE_DROPS), never waited for. */
    _Atomic unsigned wb_pending;
    unsigned wb_max;
    /* The remote's counters already added to the store's, under remote_mu. */
    pthread_mutex_t remote_mu;
    kc_remote_stats_t remote_seen;
    kc__tune_opts_t tune;
    int no_prefetch;
    int no_warmup;
    _Atomic int warm_started; /* the warm-up was submitted (first registration) */
    kc_contention_t contention;
    uint64_t lease_ttl_ms;
    uint64_t lease_wait_ms;

    kc_log_fn log;
    void *log_user;
    kc_log_level_t log_level;

    pthread_mutex_t lock; /* the kernel list and its indexes */
    kc_kernel_t *kernels;
    /* The kernels by spec identity, and by name (the one registered last of
     * a name): registration and kc_kernel_find in constant time, however
     * many kernels the process has. */
    kc__index_t by_identity, by_name;
    /* The stored winners by kernel, for the prefetch at registration
     * (modules.c): built by the first prefetch in one pass over the stored
     * tunings, then looked up, so that a registration costs the same with
     * 10 or 100,000 tunings stored. Items are malloc'd (freed here). */
    pthread_mutex_t prefetch_lock;
    int prefetch_indexed;
    kc__index_t prefetch_index;
    /* One tuning at a time per launcher: candidates timed side by side on
     * one device would disturb each other's timings. */
    pthread_mutex_t tune_lock;

    /* The bound on loaded modules (resident.c): at most max_modules
     * resident modules stay loaded; past it a pool task unloads the least
     * recently used. bounded (set at creation) says whether there is a
     * bound at all. The automatic bound (max_modules_cap != 0) doubles, up
     * to max_modules_cap, once the modules loaded again after their unload
     * (reloads, since it last changed) reach an eighth of it. The ring
     * holds every resident kept entry (struct kept, kernel_int.h), loaded
     * or not; the clock hand walks it. Under resident_mu: max_modules,
     * reloads, ring, n_ring, ring_cap, hand, n_loaded, unloading (an
     * unload task is queued or running). */
    int bounded;
    unsigned max_modules, max_modules_cap;
    pthread_mutex_t resident_mu;
    struct kept **ring;
    size_t n_ring, ring_cap, hand, n_loaded, reloads;
    int unloading;
};

/* Record the detail of a failure of a call on launcher l for
 * kc_launcher_errmsg(l), in this thread: the common diagnostics
 * (store/src/common/diag.h), owned by l. */
void kc__errmsg_set(const kc_launcher_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void kc__log(const kc_launcher_t *l, kc_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A remote call failed with rc: a warning the first time, then debug. */
void kc__remote_failed(kc_launcher_t *l, const char *what, int rc);

/* The store's warm-up (kc_store_warm of every layer) on the pool, once per
 * launcher: started by a registration, not by kc_launcher_create, so that
 * creating a launcher starts no thread. With may_start_thread 0 it only
 * uses a thread the pool has started (else a later registration does it). */
void kc__launcher_warm_once(kc_launcher_t *l, int may_start_thread);
/* Open the launcher's store if it is not open yet (first use: the first
 * kc_kernel_get or kc_launcher_store). Once it returns, l->layers and
 * l->store hold their final values. Thread-safe; cheap after the first. */
void kc__launcher_open_store(kc_launcher_t *l);
/* Push (kind, key) from the store to the remote behind the caller's back
 * (kind KC_REC_TUNING: its chain; KC_REC_BUILD: a build and its cubin),
 * or drop and count it when the queue is full. No-op without a remote. */
void kc__remote_push_later(kc_launcher_t *l, kc_rec_kind_t kind, const kc_key_t *key);

/* Add what the remote handle counted since the last call to the store's
 * persistent counters (KC_COUNTER_REMOTE_*). */
void kc__remote_account(kc_launcher_t *l);

/* Free the launcher itself (its kernels are kernel.c's to free first). */
void kc__launcher_free(kc_launcher_t *l);

/* kernel.c */

/* The tuning key a launch of kernel with args[n] looks up (and leases on
 * a miss). For tests and tools. */
int kc__kernel_tuning_key(kc_kernel_t *kernel, const kc_arg_t *args, size_t n,
                          kc_key_t *key);

#endif
