/* The process-wide registry of LMDB environments. Internal.
 *
 * LMDB forbids opening one environment twice in a process: closing either
 * copy would drop the other's POSIX locks. Environments are therefore
 * shared, keyed by the device and inode of data.mdb, and reference counted.
 *
 * Map growth: mdb_env_set_mapsize may only run while no transaction of the
 * environment is live in this process. Every transaction begun here holds
 * the environment's map lock shared; growing takes it exclusively.
 *
 * Return codes: the kc__env_txn_* calls and the callbacks given to
 * kc__env_read / kc__env_write return LMDB codes (0, an errno value or an
 * MDB_* code) or kcache codes (KC_E*); kc__is_mdb_rc tells them apart and
 * kc__mdb_code maps the former.
 */
#ifndef KCACHE_LMDB_ENV_H
#define KCACHE_LMDB_ENV_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kcache/record.h"

/* Flags every environment is opened with, beside MDB_NOTLS (and MDB_RDONLY,
 * MDB_NOLOCK where they apply): no readahead on a map read at random. */
#define KC__ENV_FLAGS MDB_NORDAHEAD

/* The named databases, one per record kind, opened once with the env. */
#define KC__ENV_MAX_DBS 16

/* The name of the database of split blobs' tails. */
#define KC__BLOBTAIL_DB "blobtail"

/* What the write transaction under way did to the record totals
 * (core/totals.c): kc__rec_put and kc__rec_del add here instead of
 * rewriting the "totals" meta record per record; kc__env_write writes them
 * once, just before the commit. Slots as the totals' (KC__TOTALS_SLOTS). */
typedef struct kc__totals_delta {
    /* The transaction they belong to; NULL outside one. Atomic: a reader's
     * kc__totals_read compares its own transaction with it, unlocked. */
    _Atomic(MDB_txn *) txn;
    int noted; /* a counted record was put or deleted */
    int lost;  /* a value could not be accounted: the totals are dropped */
    uint64_t add[KC_REC_KIND_MAX + 1], sub[KC_REC_KIND_MAX + 1];
} kc__totals_delta_t;

/* One kc__env_write_grouped call waiting in kc__env_t.group_queue. */
typedef struct kc__env_group_req {
    int (*fn)(MDB_txn *txn, void *ctx);
    void *ctx;
    struct kc__env_group_req *next;
    int rc;
    int done;  /* its group was committed, or failed */
    int alone; /* its group failed: run it again on its own */
} kc__env_group_req_t;

typedef struct kc__env {
    MDB_env *mdb;
    MDB_dbi dbi[KC_REC_KIND_MAX + 1]; /* by kc_rec_kind_t; [0] unused */
    /* Whether dbi[kind] is open: see kc__env_has_db. */
    unsigned char has_db[KC_REC_KIND_MAX + 1];
    /* The "blobtail" database: the tails of split blobs (core/blob_value.c,
     * docs/FORMAT.md revision 1.4). has_blobtail is 0 in a store made
     * before it and opened read-only (it then holds no split blob). */
    MDB_dbi blobtail;
    int has_blobtail;
    int readonly; /* opened with MDB_RDONLY */
    /* A writable store whose LMDB environment is open MDB_RDONLY until its
     * first write (kc__env_opts_t.lazy_write): kc__env_write reopens it
     * writable first. want_map_size is the map size asked for then. */
    _Atomic int rdonly_map;
    uint64_t want_map_size;
    int nolock; /* opened with MDB_NOLOCK */
    /* The file's structure was checked (or its stamp matched) at open:
     * commits refresh the stamp (lmdb_check.h). */
    int checked;
    char *data_path;
    /* LMDB allows one writer per environment; threads of this process queue
     * here instead of on LMDB's cross-process lock. */
    pthread_mutex_t write_mutex;
    /* Grouped writes (kc__env_write_grouped): requests that arrive while
     * another thread of this process commits a group queue here, and the
     * next leader commits them together. Under group_mu. */
    pthread_mutex_t group_mu;
    pthread_cond_t group_cv;
    kc__env_group_req_t *group_queue;
    int group_leader;
    /* The totals' changes by this process's write transaction, under
     * write_mutex. */
    kc__totals_delta_t tot;
    /* Held shared by every live transaction, exclusively to resize,
     * reopen or compact. glibc's rwlock lets readers in while a writer
     * waits (a thread may nest transactions of one environment), so a
     * steady stream of reads would hold an exclusive taker off for good:
     * while excl_waiting is not 0, a thread that holds no transaction
     * waits at the gate (gate_mu, gate_cv, on CLOCK_MONOTONIC) before it
     * takes the lock, for 10 ms at the most, and a thread inside one,
     * whose transaction the taker waits for anyway, goes on. */
    pthread_rwlock_t map_lock;
    _Atomic unsigned excl_waiting;
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    /* The fork generation it was opened in (lmdb_env.c, env_adopt): older
     * in a forked child, which opens it afresh at its first use. */
    _Atomic unsigned gen;
    /* Registry fields, under the registry mutex. */
    dev_t dev;
    ino_t ino;
    unsigned refs;
    struct kc__env *next;
} kc__env_t;

typedef struct kc__env_opts {
    int readonly;
    /* Writable, but an existing store's environment is opened read-only
     * until the first write: a process that only reads never allocates
     * LMDB's writer state (a 2 MiB dirty-page list zeroed per writable
     * environment). A write from a thread inside a transaction of the same
     * environment then cannot reopen it: KC_EBUSY. */
    int lazy_write;
    uint64_t map_size;    /* 0: 1 GiB */
    unsigned max_readers; /* 0: 1024 */
} kc__env_opts_t;

static inline int kc__is_mdb_rc(int rc)
{
    return rc > 0 || (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE);
}

/* Whether the store has the database of kind. Every kind's database is
 * created with the store, or at the first writable open by a kcache that
 * knows the kind; a store made before binmeta (or group) existed and opened
 * read-only has no "binmeta" (or "group") database, and so no such records. Reads of a
 * missing database are misses (MDB_NOTFOUND); writes only happen in writable
 * environments, which have them all. */
static inline int kc__env_has_db(const kc__env_t *env, int kind)
{
    return kind >= KC_REC_KIND_MIN && kind <= KC_REC_KIND_MAX && env->has_db[kind];
}

/* The kcache code for an LMDB code (an MDB_* code or an errno value). */
int kc__mdb_code(int mdb_rc);

/* Open the environment in dir, or take another reference to the one this
 * process already has open. dir must exist; a read-only open needs
 * data.mdb. A writable open of an environment this process holds
 * read-only is KC_EBUSY. On failure (a KC_E* code) msg holds the details.
 *
 * Before this process first maps an existing data.mdb, its structure is
 * checked (lmdb_check.h) unless the stamp beside it records this very file
 * state as checked; KCACHE_CHECK=always checks on every first map,
 * KCACHE_CHECK=never never (auto, the default: by the stamp). A damaged
 * file is KC_EDAMAGED, never mapped. */
int kc__env_acquire(const char *dir, const kc__env_opts_t *opts, kc__env_t **out,
                    char *msg, size_t msg_len);

/* Drop a reference; the last one closes the environment. Accepts NULL. */
void kc__env_release(kc__env_t *env);

/* Begin a transaction (flags: 0 or MDB_RDONLY), adopting a map grown by
 * another process on MDB_MAP_RESIZED. On success the map lock is held
 * shared until the transaction ends through the two calls below. */
int kc__env_txn_begin(kc__env_t *env, unsigned flags, MDB_txn **txn);
int kc__env_txn_commit(kc__env_t *env, MDB_txn *txn);
void kc__env_txn_abort(kc__env_t *env, MDB_txn *txn);

/* Run fn in one read transaction. */
int kc__env_read(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx);

/* Run fn in one write transaction and commit it if fn returns 0. The
 * first write of a lazily writable environment reopens it writable first
 * (KC_EBUSY if the calling thread is inside one of its transactions, or
 * inside another environment's and this one's stay busy for 2 s). On
 * MDB_MAP_FULL (from fn or the commit) the transaction is aborted, the map
 * doubled and fn run again from the start, so fn must not keep state
 * between attempts. Writers in this process are serialized. */
int kc__env_write(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx);

/* kc__env_write for writes that threads of this process make at the same
 * time (publishes; leases: a kernel's candidates take theirs as they start
 * compiling): a call that finds another group committing queues, and the
 * next thread to lead commits every queued fn in one transaction (one
 * fsync) instead of one each. fn runs on the leader's thread, so it keeps
 * its results in ctx, not in thread-local storage. If the shared
 * transaction fails, nothing of it was written and each fn runs again
 * alone (kc__env_write), in its caller's thread, so every caller gets its
 * own result: fn must return 0 for every outcome it wants committed and
 * keep no state between runs (as kc__env_write asks already). */
int kc__env_write_grouped(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx);

/* Write the totals' changes that txn's kc__rec_put / kc__rec_del calls
 * gathered in env->tot (core/totals.c): kc__env_write calls it once, just
 * before it commits. */
int kc__totals_flush(MDB_txn *txn, kc__env_t *env);

/* The current map size in bytes. */
uint64_t kc__env_map_size(kc__env_t *env);

/* Before a use of env->mdb outside kc__env_* (mdb_env_copy2): in a process
 * forked after env was opened, open it afresh here first. The
 * transaction, write and exclusive calls do it themselves. */
void kc__env_use(kc__env_t *env);

/* Close this process's environment on dir, take LMDB's lock file
 * exclusively (so that no other process has or gets the store open), run
 * fn, release the lock and reopen the environment in place on whatever
 * data.mdb then is, updating the registry's device and inode. Every handle
 * sharing env stays valid: transactions of this process wait for the
 * environment's locks meanwhile. KC_EBUSY if another process has the store
 * open or the calling thread is inside a transaction; KC_EREADONLY for a
 * read-only environment; else fn's KC_* code (fn writes its message into
 * msg). A failed reopen leaves env unusable: its transactions then fail
 * with EINVAL. For kc_store_compact. */
int kc__env_exclusive(kc__env_t *env, const char *dir,
                      int (*fn)(const char *dir, void *ctx, char *msg, size_t msg_len),
                      void *ctx, char *msg, size_t msg_len);

#endif
