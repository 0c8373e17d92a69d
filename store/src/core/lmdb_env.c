#include "cold.h"
#include "lmdb_env.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "forkgen.h"
#include "fsinfo.h"
#include "kcache/errors.h"
#include "lmdb_check.h"

#define DEFAULT_MAP_SIZE ((uint64_t)1 << 30)
#define DEFAULT_MAX_READERS 1024
/* A write that still does not fit after this many doublings is not going
 * to: report the map as full. */
#define MAX_GROWTHS 24
#define MAX_RESIZE_RETRIES 8
/* A lazily writable environment's first write from inside a transaction
 * of another environment tries this many times, 1 ms apart, to take the
 * map lock (env_upgrade). */
#define UPGRADE_TRIES 2000

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static kc__env_t *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* The parents' LMDB handles a forked child left aside, under the adoption
 * lock (forkgen.h):
 * never closed (that would free the parent's reader slots), and kept
 * here so that they are not lost either. */
typedef struct kept_handle {
    MDB_env *mdb;
    struct kept_handle *next;
} kept_handle_t;
static kept_handle_t *kept_parent_handles;

static void keep_parent_handle_locked(MDB_env *mdb)
{
    kept_handle_t *k;
    if (mdb && (k = malloc(sizeof(*k)))) {
        *k = (kept_handle_t){mdb, kept_parent_handles};
        kept_parent_handles = k;
    }
}

/* Transactions this thread has live, of any environment. A thread that
 * holds one must not wait for a map lock exclusively: it would wait for
 * itself. */
static _Thread_local unsigned tls_live_txns;

/* The same by environment, for the few a thread uses at once: a thread may
 * reopen an environment it holds no transaction of while it is inside a
 * transaction of another (a copy from one store into another). Beyond
 * TLS_ENVS environments, transactions are counted as of any. */
#define TLS_ENVS 8
static _Thread_local struct {
    const kc__env_t *env;
    unsigned n;
} tls_envs[TLS_ENVS];
static _Thread_local unsigned tls_untracked;

static void tls_enter(const kc__env_t *env)
{
    int free_slot = -1;
    for (int i = 0; i < TLS_ENVS; i++) {
        if (tls_envs[i].n && tls_envs[i].env == env) {
            tls_envs[i].n++;
            return;
        }
        if (!tls_envs[i].n && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        tls_untracked++;
        return;
    }
    tls_envs[free_slot].env = env;
    tls_envs[free_slot].n = 1;
}

static void tls_leave(const kc__env_t *env)
{
    for (int i = 0; i < TLS_ENVS; i++)
        if (tls_envs[i].n && tls_envs[i].env == env) {
            tls_envs[i].n--;
            return;
        }
    tls_untracked--;
}

/* Whether this thread may be inside a transaction of env. */
static int tls_in(const kc__env_t *env)
{
    if (tls_untracked)
        return 1;
    for (int i = 0; i < TLS_ENVS; i++)
        if (tls_envs[i].n && tls_envs[i].env == env)
            return 1;
    return 0;
}

/* In a forked child: its parent's environments stay in the registry (an
 * open of the same store finds its environment, as LMDB wants one per file
 * and process), and each, opened in an older fork generation, is opened
 * afresh at its first use here (env_adopt). The registry's lock is made
 * anew: a thread of the parent may have held it at the fork. */
static void registry_after_fork_in_child(void)
{
    pthread_mutex_init(&registry_lock, NULL);
}

static void install_atfork(void)
{
    kc__fork_watch();
    pthread_atfork(NULL, NULL, registry_after_fork_in_child);
}

static int env_inherited(kc__env_t *env)
{
    return kc__fork_inherited(&env->gen);
}

static void gate_cv_init(kc__env_t *env)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&env->gate_cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* Made at open, and made anew in a forked child (env_adopt): a parent's
 * thread may have held any of them at the fork, and its queued grouped
 * writes are not the child's. */
static void env_locks_init(kc__env_t *env)
{
    pthread_mutex_init(&env->write_mutex, NULL);
    pthread_mutex_init(&env->group_mu, NULL);
    pthread_cond_init(&env->group_cv, NULL);
    env->group_queue = NULL;
    env->group_leader = 0;
    pthread_rwlock_init(&env->map_lock, NULL);
    pthread_mutex_init(&env->gate_mu, NULL);
    gate_cv_init(env);
    atomic_store_explicit(&env->excl_waiting, 0, memory_order_relaxed);
}

static void env_locks_destroy(kc__env_t *env)
{
    pthread_rwlock_destroy(&env->map_lock);
    pthread_cond_destroy(&env->gate_cv);
    pthread_mutex_destroy(&env->gate_mu);
    pthread_cond_destroy(&env->group_cv);
    pthread_mutex_destroy(&env->group_mu);
    pthread_mutex_destroy(&env->write_mutex);
}

int kc__mdb_code(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return KC_OK;
    case MDB_NOTFOUND:
    case ENOENT:
        return KC_ENOTFOUND;
    case MDB_READERS_FULL:
        return KC_EREADERS;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EFBIG: /* the file size limit: as good as a full disk for the store */
        return KC_ENOSPC;
    case EACCES:
    case EPERM:
        return KC_EPERM;
    case EROFS:
        return KC_EREADONLY;
    case ENOMEM:
        return KC_ENOMEM;
    case EIO:
        return KC_EIO;
    case EBUSY:
    case EAGAIN:
        return KC_EBUSY;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return KC_ECORRUPT;
    case MDB_VERSION_MISMATCH:
        return KC_EVERSION;
    default:
        return KC_ELMDB;
    }
}

/* Whether LMDB could open lock.mdb for writing. A read-only layer in a
 * read-only directory has no usable lock file; it is opened without locks,
 * which is safe because such a layer is never written while it is read. */
static KC__COLD int lock_file_writable(const char *dir)
{
    char path[PATH_MAX];
    int fd;

    if (snprintf(path, sizeof(path), "%s/lock.mdb", dir) >= (int)sizeof(path))
        return 0;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    if (errno == ENOENT)
        return kc__fs_dir_writable(dir);
    return 0;
}

static int env_to_writable(kc__env_t *env, const char *dir, char *msg, size_t msg_len);
static int env_upgrade(kc__env_t *env);
static int env_adopt(void *arg);

/* Every use of env's LMDB handle starts here: in a forked child, the
 * parent's environment is opened afresh first (env_adopt). */
static inline void env_use(kc__env_t *env)
{
    kc__fork_adopt(&env->gen, env_adopt, env);
}

void kc__env_use(kc__env_t *env)
{
    env_use(env);
}

static const char *const db_names[KC_REC_KIND_MAX + 1] = {
    [KC_REC_BLOB] = "blob",       [KC_REC_BUILD] = "build", [KC_REC_TUNING] = "tuning",
    [KC_REC_USAGE] = "usage",     [KC_REC_LEASE] = "lease", [KC_REC_META] = "meta",
    [KC_REC_BINMETA] = "binmeta", [KC_REC_GROUP] = "group",
};

/* Whether a store may lack the database of kind: kinds added after the
 * first format. A writable open creates it; a read-only one goes without. */
static int db_optional(int kind)
{
    return kind == KC_REC_BINMETA || kind == KC_REC_GROUP;
}

/* Open every database in one transaction: read-only (writable is 0), or a
 * write transaction that creates what is missing. *missing says whether a
 * read-only pass of a writable environment found a database to create. */
static int open_dbs_txn(kc__env_t *env, const char *dir, int writable, int *missing,
                        char *msg, size_t msg_len)
{
    MDB_txn *txn = NULL;
    unsigned tflags = writable ? 0 : MDB_RDONLY;
    int rc;

    rc = mdb_txn_begin(env->mdb, NULL, tflags, &txn);
    /* Another process grew the map between mdb_env_open and here: adopt
     * its size (nothing else uses this environment yet) and begin again. */
    for (int tries = 0; rc == MDB_MAP_RESIZED && tries < MAX_RESIZE_RETRIES; tries++) {
        rc = mdb_env_set_mapsize(env->mdb, 0);
        if (rc == 0)
            rc = mdb_txn_begin(env->mdb, NULL, tflags, &txn);
    }
    if (rc != 0) {
        snprintf(msg, msg_len, "%s: cannot begin a transaction: %s", dir,
                 mdb_strerror(rc));
        return kc__mdb_code(rc);
    }
    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        env->has_db[kind] = 0;
        rc =
            mdb_dbi_open(txn, db_names[kind], writable ? MDB_CREATE : 0, &env->dbi[kind]);
        if (rc == MDB_NOTFOUND && !env->readonly) {
            /* A writable store lacking a database (a new store, or one
             * older than a kind): the write transaction creates it. */
            *missing = 1;
            mdb_txn_abort(txn);
            return KC_OK;
        }
        if (rc == MDB_NOTFOUND && db_optional(kind))
            continue;
        if (rc == MDB_NOTFOUND) {
            snprintf(msg, msg_len, "%s is not a kcache store (it has no \"%s\" database)",
                     dir, db_names[kind]);
            mdb_txn_abort(txn);
            return KC_ECORRUPT;
        }
        if (rc != 0) {
            snprintf(msg, msg_len, "%s: cannot open the \"%s\" database: %s", dir,
                     db_names[kind], mdb_strerror(rc));
            mdb_txn_abort(txn);
            return kc__mdb_code(rc);
        }
        env->has_db[kind] = 1;
    }
    /* The tails of split blobs (revision 1.4): optional like binmeta. */
    env->has_blobtail = 0;
    rc = mdb_dbi_open(txn, KC__BLOBTAIL_DB, writable ? MDB_CREATE : 0, &env->blobtail);
    if (rc == MDB_NOTFOUND && !env->readonly) {
        *missing = 1;
        mdb_txn_abort(txn);
        return KC_OK;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        snprintf(msg, msg_len, "%s: cannot open the \"%s\" database: %s", dir,
                 KC__BLOBTAIL_DB, mdb_strerror(rc));
        mdb_txn_abort(txn);
        return kc__mdb_code(rc);
    }
    env->has_blobtail = rc == 0;
    /* Committing, even a read-only transaction, is what makes the handles
     * usable by later transactions. */
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        snprintf(msg, msg_len, "%s: cannot open the databases: %s", dir,
                 mdb_strerror(rc));
        return kc__mdb_code(rc);
    }
    return KC_OK;
}

/* The databases' handles. An existing store, writable or not, is read in a
 * read-only transaction: opening it never waits for LMDB's writer lock,
 * which another process may hold for a long publish, a gc or a compaction.
 * Only a writable store that lacks a database (a new one, or one older
 * than a kind of record) takes a write transaction, to create it. */
static int open_dbs(kc__env_t *env, const char *dir, int may_reopen, char *msg,
                    size_t msg_len)
{
    int missing = 0;
    int rc = open_dbs_txn(env, dir, 0, &missing, msg, msg_len);

    if (rc != KC_OK || !missing)
        return rc;
    /* A database to create in a lazily writable environment: it becomes
     * writable now (env_reopen opens the databases again), unless this is
     * the read-only fallback of a reopen that failed. */
    if (atomic_load_explicit(&env->rdonly_map, memory_order_relaxed)) {
        if (may_reopen)
            return env_to_writable(env, dir, msg, msg_len);
        snprintf(msg, msg_len,
                 "%s: a database to create, and the store cannot be "
                 "opened for writing",
                 dir);
        return KC_EIO;
    }
    return open_dbs_txn(env, dir, 1, &missing, msg, msg_len);
}

/* KCACHE_CHECK: how the structure of data.mdb is checked before it is
 * mapped. */
enum check_policy { CHECK_AUTO, CHECK_ALWAYS, CHECK_NEVER };

static enum check_policy check_policy(void)
{
    const char *v = getenv("KCACHE_CHECK");
    if (v && strcmp(v, "always") == 0)
        return CHECK_ALWAYS;
    if (v && strcmp(v, "never") == 0)
        return CHECK_NEVER;
    return CHECK_AUTO;
}

/* Check data.mdb before it is mapped (see kc__env_acquire). Sets
 * env->checked when the file state is known sound. */
static int check_file(kc__env_t *env, const char *dir, char *msg, size_t msg_len)
{
    enum check_policy policy = check_policy();
    kc__mdb_state_t st;
    kc__mdb_check_t res;
    int rc;

    if (policy == CHECK_NEVER)
        return KC_OK;
    if (policy == CHECK_AUTO && kc__mdb_state_read(env->data_path, &st) == 0 &&
        kc__mdb_stamp_matches(env->data_path, &st)) {
        env->checked = 1;
        return KC_OK;
    }
    rc = kc__mdb_check_file(env->data_path, &res);
    if (rc == KC_EDAMAGED) {
        snprintf(msg, msg_len,
                 "%s is damaged: %s. kcache did not open it. Salvage its records "
                 "with `cachectl recover %s NEWDIR`, then move the damaged file "
                 "away (a launcher sets it aside by itself)",
                 env->data_path, res.why, dir);
        return rc;
    }
    if (rc != KC_OK) {
        snprintf(msg, msg_len, "%s: cannot check the store file: %s", dir, res.why);
        return rc;
    }
    if (!res.unstable && res.file_size > 0) {
        env->checked = 1;
        kc__mdb_stamp_write(env->data_path, &res.state);
    }
    return KC_OK;
}

/* After a commit on a checked state: the new state is LMDB's own work on a
 * sound file, so it is stamped as checked without a walk. */
static void stamp_refresh(kc__env_t *env)
{
    kc__mdb_state_t st;

    mdb_filehandle_t fd;

    /* The state of the file this environment has open, not of whatever the
     * path names now: a file renamed into its place is not stamped. */
    if (env->checked && !env->readonly && mdb_env_get_fd(env->mdb, &fd) == 0 &&
        kc__mdb_state_fd(fd, &st) == 0)
        kc__mdb_stamp_write(env->data_path, &st);
}

static int env_open(const char *dir, const kc__env_opts_t *opts, int data_exists,
                    kc__env_t **out, char *msg, size_t msg_len)
{
    kc__env_t *env;
    /* MDB_NORDAHEAD: lookups are random, so the kernel's readahead around
     * each fault would read pages nobody asked for and push hot ones out of
     * the page cache; kc_store_prefetch_hot asks for what is wanted. */
    unsigned flags = MDB_NOTLS | KC__ENV_FLAGS;
    uint64_t map_size = opts->map_size ? opts->map_size : DEFAULT_MAP_SIZE;
    int rc, dead;

    env = calloc(1, sizeof(*env));
    if (!env) {
        snprintf(msg, msg_len, "out of memory");
        return KC_ENOMEM;
    }
    env->readonly = opts->readonly;
    env_locks_init(env);
    kc__fork_mark(&env->gen);
    if (asprintf(&env->data_path, "%s/data.mdb", dir) < 0) {
        env->data_path = NULL;
        snprintf(msg, msg_len, "out of memory");
        rc = KC_ENOMEM;
        goto fail;
    }
    if (data_exists && (rc = check_file(env, dir, msg, msg_len)) != KC_OK)
        goto fail;
    /* A store this process creates is LMDB's own work from the start. */
    if (!data_exists && !env->readonly && check_policy() != CHECK_NEVER)
        env->checked = 1;

    rc = mdb_env_create(&env->mdb);
    if (rc != 0)
        goto fail_mdb;
    rc = mdb_env_set_maxdbs(env->mdb, KC__ENV_MAX_DBS);
    if (rc != 0)
        goto fail_mdb;
    rc = mdb_env_set_maxreaders(env->mdb, opts->max_readers ? opts->max_readers
                                                            : DEFAULT_MAX_READERS);
    if (rc != 0)
        goto fail_mdb;
    /* An existing store keeps the map size recorded in it (it may have
     * grown past the requested one); a new one starts at the request. */
    if (!data_exists) {
        rc = mdb_env_set_mapsize(env->mdb, (size_t)map_size);
        if (rc != 0)
            goto fail_mdb;
    }
    if (opts->readonly) {
        flags |= MDB_RDONLY;
        if (!lock_file_writable(dir)) {
            flags |= MDB_NOLOCK;
            env->nolock = 1;
        }
    } else if (opts->lazy_write && data_exists) {
        /* Writable, mapped read-only until the first write (env_upgrade). */
        flags |= MDB_RDONLY;
        atomic_store_explicit(&env->rdonly_map, 1, memory_order_relaxed);
        env->want_map_size = map_size;
    }
    rc = mdb_env_open(env->mdb, dir, flags, 0664);
    if (rc != 0)
        goto fail_mdb;
    if (!(flags & MDB_RDONLY) && data_exists && kc__env_map_size(env) < map_size) {
        rc = mdb_env_set_mapsize(env->mdb, (size_t)map_size);
        if (rc != 0)
            goto fail_mdb;
    }
    /* Free the reader slots of processes that died inside a transaction;
     * they would otherwise pin old pages and, in time, fill the table. */
    if (!env->nolock)
        mdb_reader_check(env->mdb, &dead);

    rc = open_dbs(env, dir, 1, msg, msg_len);
    if (rc != KC_OK)
        goto fail;
    *out = env;
    return KC_OK;

fail_mdb:
    snprintf(msg, msg_len, "%s: %s", dir, mdb_strerror(rc));
    rc = kc__mdb_code(rc);
fail:
    if (env->mdb)
        mdb_env_close(env->mdb);
    env_locks_destroy(env);
    free(env->data_path);
    free(env);
    return rc;
}

int kc__env_acquire(const char *dir, const kc__env_opts_t *opts, kc__env_t **out,
                    char *msg, size_t msg_len)
{
    char *data_path = NULL;
    struct stat sb;
    kc__env_t *env = NULL;
    int rc = KC_OK, data_exists;

    *out = NULL;
    msg[0] = '\0';
    pthread_once(&atfork_once, install_atfork);
    /* On the heap: this frame stays under every deeper call of the open. */
    if (asprintf(&data_path, "%s/data.mdb", dir) < 0) {
        snprintf(msg, msg_len, "out of memory");
        return KC_ENOMEM;
    }

    pthread_mutex_lock(&registry_lock);
    data_exists = stat(data_path, &sb) == 0;
    if (!data_exists && errno != ENOENT) {
        snprintf(msg, msg_len, "%s: %s", data_path, strerror(errno));
        rc = kc__mdb_code(errno);
        goto out;
    }
    if (data_exists) {
        for (env = registry; env; env = env->next)
            if (env->dev == sb.st_dev && env->ino == sb.st_ino)
                break;
        if (env && env->readonly && !opts->readonly) {
            snprintf(msg, msg_len,
                     "%s is already open read-only in this process; it cannot also be "
                     "opened for writing",
                     dir);
            env = NULL;
            rc = KC_EBUSY;
            goto out;
        }
        if (env) {
            env->refs++;
            goto out;
        }
    } else if (opts->readonly) {
        snprintf(msg, msg_len, "no kcache store in %s (no data.mdb)", dir);
        rc = KC_ENOTFOUND;
        goto out;
    }

    rc = env_open(dir, opts, data_exists, &env, msg, msg_len);
    if (rc != KC_OK)
        goto out;
    if (stat(data_path, &sb) != 0) {
        snprintf(msg, msg_len, "%s: %s", data_path, strerror(errno));
        rc = kc__mdb_code(errno);
        mdb_env_close(env->mdb);
        free(env);
        env = NULL;
        goto out;
    }
    env->dev = sb.st_dev;
    env->ino = sb.st_ino;
    env->refs = 1;
    env->next = registry;
    registry = env;
out:
    pthread_mutex_unlock(&registry_lock);
    free(data_path);
    *out = env;
    return rc;
}

void kc__env_release(kc__env_t *env)
{
    kc__env_t **pp;

    if (!env)
        return;
    pthread_mutex_lock(&registry_lock);
    if (--env->refs > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == env) {
            *pp = env->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    /* A parent's handle, never adopted here, is kept aside, open: closing
     * it would free the parent's reader slots (see env_adopt). */
    if (env_inherited(env)) {
        kc__fork_adopt_lock();
        keep_parent_handle_locked(env->mdb);
        kc__fork_adopt_unlock();
    } else {
        mdb_env_close(env->mdb);
    }
    env_locks_destroy(env);
    free(env->data_path);
    free(env);
}

uint64_t kc__env_map_size(kc__env_t *env)
{
    MDB_envinfo info;

    if (!env->mdb || mdb_env_info(env->mdb, &info) != 0)
        return 0;
    return info.me_mapsize;
}

/* The longest a thread waits at the gate; then it goes in, as glibc's
 * rwlock lets it. A thread here holds no transaction, but it may hold a
 * lock of its own (a caller's mutex, the write mutex) that a transaction
 * the taker waits for needs: a thread inside a kc_store_iterate callback
 * that takes the caller's mutex, a read that then writes. Unbounded, the
 * gate would turn that into a deadlock; bounded, it costs such a thread
 * this long once. A taker waits for transactions of microseconds, so it
 * is in long before the bound, past the stream of new readers. */
#define GATE_MAX_WAIT_NS (10 * 1000000L)

/* Wait while a thread waits to take env's map lock exclusively (see
 * kc__env_t.excl_waiting), GATE_MAX_WAIT_NS at the most. Only a thread
 * inside no transaction, of any environment, waits here. */
static KC__COLD void gate_wait(kc__env_t *env)
{
    struct timespec until = kc__deadline_after(CLOCK_MONOTONIC, GATE_MAX_WAIT_NS);

    pthread_mutex_lock(&env->gate_mu);
    while (atomic_load_explicit(&env->excl_waiting, memory_order_acquire))
        if (pthread_cond_timedwait(&env->gate_cv, &env->gate_mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&env->gate_mu);
}

/* Announce an exclusive taker: new transactions of threads inside none
 * wait at the gate until gate_open. */
static void gate_close(kc__env_t *env)
{
    atomic_fetch_add_explicit(&env->excl_waiting, 1, memory_order_acq_rel);
}

static void gate_open(kc__env_t *env)
{
    if (atomic_fetch_sub_explicit(&env->excl_waiting, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_lock(&env->gate_mu);
        pthread_cond_broadcast(&env->gate_cv);
        pthread_mutex_unlock(&env->gate_mu);
    }
}

/* Take env's map lock exclusively, past any stream of new readers. */
static void map_lock_exclusive(kc__env_t *env)
{
    gate_close(env);
    pthread_rwlock_wrlock(&env->map_lock);
}

static void map_unlock_exclusive(kc__env_t *env)
{
    pthread_rwlock_unlock(&env->map_lock);
    gate_open(env);
}

static void map_lock_shared(kc__env_t *env)
{
    if (atomic_load_explicit(&env->excl_waiting, memory_order_acquire) &&
        tls_live_txns == 0)
        gate_wait(env);
    pthread_rwlock_rdlock(&env->map_lock);
    tls_live_txns++;
    tls_enter(env);
}

static void map_unlock_shared(kc__env_t *env)
{
    tls_leave(env);
    tls_live_txns--;
    pthread_rwlock_unlock(&env->map_lock);
}

static int txn_begin_once(kc__env_t *env, unsigned flags, MDB_txn **txn)
{
    int rc;

    map_lock_shared(env);
    /* NULL only after kc__env_exclusive failed to reopen it. */
    rc = env->mdb ? mdb_txn_begin(env->mdb, NULL, flags, txn) : EINVAL;
    if (rc != 0)
        map_unlock_shared(env);
    return rc;
}

/* Another process grew the map past ours: adopt its size. */
static int adopt_map_size(kc__env_t *env)
{
    int rc;

    if (tls_live_txns > 0)
        return MDB_MAP_RESIZED;
    map_lock_exclusive(env);
    rc = mdb_env_set_mapsize(env->mdb, 0);
    map_unlock_exclusive(env);
    return rc;
}

int kc__env_txn_begin(kc__env_t *env, unsigned flags, MDB_txn **txn)
{
    int rc;

    env_use(env);
    for (int tries = 0;; tries++) {
        rc = txn_begin_once(env, flags, txn);
        if (rc != MDB_MAP_RESIZED || tries >= MAX_RESIZE_RETRIES)
            return rc;
        rc = adopt_map_size(env);
        if (rc != 0)
            return rc;
    }
}

int kc__env_txn_commit(kc__env_t *env, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    map_unlock_shared(env);
    return rc;
}

void kc__env_txn_abort(kc__env_t *env, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    map_unlock_shared(env);
}

int kc__env_read(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx)
{
    MDB_txn *txn;
    int rc = kc__env_txn_begin(env, MDB_RDONLY, &txn);

    if (rc != 0)
        return rc;
    rc = fn(txn, ctx);
    kc__env_txn_abort(env, txn);
    return rc;
}

/* Double the map after a write found it full at size seen. Concurrent
 * writers that failed at the same size grow it once between them. */
static int env_grow(kc__env_t *env, uint64_t seen)
{
    uint64_t cur, adopted;
    int rc = 0;

    if (tls_live_txns > 0)
        return MDB_MAP_FULL;
    map_lock_exclusive(env);
    cur = kc__env_map_size(env);
    if (cur > seen)
        goto out;
    /* Another process may have grown the file's map already. */
    rc = mdb_env_set_mapsize(env->mdb, 0);
    if (rc != 0)
        goto out;
    adopted = kc__env_map_size(env);
    if (adopted < cur)
        adopted = cur;
    if (adopted <= seen)
        rc = mdb_env_set_mapsize(env->mdb, (size_t)(seen * 2));
out:
    map_unlock_exclusive(env);
    return rc;
}

/* Gather the totals' changes of txn from now on (core/totals.c), or of no
 * transaction (NULL): nothing gathered so far is kept. */
static void totals_track(kc__env_t *env, MDB_txn *txn)
{
    env->tot.noted = env->tot.lost = 0;
    memset(env->tot.add, 0, sizeof(env->tot.add));
    memset(env->tot.sub, 0, sizeof(env->tot.sub));
    atomic_store_explicit(&env->tot.txn, txn, memory_order_relaxed);
}

int kc__env_write(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx)
{
    MDB_txn *txn;
    uint64_t seen;
    int rc;

    env_use(env);
    if (atomic_load_explicit(&env->rdonly_map, memory_order_acquire) &&
        (rc = env_upgrade(env)) != 0)
        return rc;

    /* Resizing happens with the write mutex released: a thread that holds a
     * read transaction may be waiting for the mutex, and resizing waits for
     * that thread's transaction to end. */
    for (int tries = 0;; tries++) {
        pthread_mutex_lock(&env->write_mutex);
        rc = txn_begin_once(env, 0, &txn);
        if (rc != 0) {
            pthread_mutex_unlock(&env->write_mutex);
            if (rc != MDB_MAP_RESIZED || tries >= MAX_GROWTHS)
                return rc;
            rc = adopt_map_size(env);
            if (rc != 0)
                return rc;
            continue;
        }
        seen = kc__env_map_size(env);
        totals_track(env, txn);
        rc = fn(txn, ctx);
        if (rc == 0)
            rc = kc__totals_flush(txn, env);
        totals_track(env, NULL); /* an aborted transaction's are forgotten */
        if (rc == 0)
            rc = kc__env_txn_commit(env, txn);
        else
            kc__env_txn_abort(env, txn);
        pthread_mutex_unlock(&env->write_mutex);
        /* Outside the mutex: the stamp is file I/O, no part of the commit,
         * and the next writer of this process need not wait for it. */
        if (rc == 0)
            stamp_refresh(env);
        if (rc != MDB_MAP_FULL || tries >= MAX_GROWTHS)
            return rc;
        rc = env_grow(env, seen);
        if (rc != 0)
            return rc;
    }
}

/* ---- grouped writes ------------------------------------------------------------ */

/* Every request of a group, in order, in one transaction. */
static int run_group(MDB_txn *txn, void *arg)
{
    for (kc__env_group_req_t *r = arg; r; r = r->next) {
        int rc = r->fn(txn, r->ctx);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int kc__env_write_grouped(kc__env_t *env, int (*fn)(MDB_txn *txn, void *ctx), void *ctx)
{
    kc__env_group_req_t me = {fn, ctx, NULL, 0, 0, 0}, **tail;

    env_use(env); /* in a forked child, the group lock is made anew first */
    pthread_mutex_lock(&env->group_mu);
    for (tail = &env->group_queue; *tail; tail = &(*tail)->next)
        ;
    *tail = &me;
    while (!me.done) {
        if (env->group_leader) {
            pthread_cond_wait(&env->group_cv, &env->group_mu);
            continue;
        }
        /* Lead: the queue holds this request and any that came meanwhile. */
        kc__env_group_req_t *batch = env->group_queue, *next;
        env->group_queue = NULL;
        env->group_leader = 1;
        pthread_mutex_unlock(&env->group_mu);
        int rc = batch->next ? kc__env_write(env, run_group, batch)
                             : kc__env_write(env, fn, ctx);
        pthread_mutex_lock(&env->group_mu);
        for (kc__env_group_req_t *r = batch; r; r = next) {
            next = r->next;
            r->rc = rc;
            r->alone = batch->next && rc != 0;
            r->done = 1; /* r may be gone once the lock is released */
        }
        env->group_leader = 0;
        pthread_cond_broadcast(&env->group_cv);
    }
    pthread_mutex_unlock(&env->group_mu);
    return me.alone ? kc__env_write(env, fn, ctx) : me.rc;
}

/* ---- exclusive use, for compaction ------------------------------------------- */

/* Open a fresh LMDB environment on dir into env, as env_open does for a
 * writable store, keeping the map size and reader slots it had. Called
 * with the registry locked, since the device and inode change. */
static int env_reopen(kc__env_t *env, const char *dir, uint64_t map_size,
                      unsigned max_readers, char *msg, size_t msg_len)
{
    char data_path[PATH_MAX];
    struct stat sb;
    MDB_env *mdb = NULL;
    int rc, dead;

    if ((rc = mdb_env_create(&mdb)) != 0 ||
        (rc = mdb_env_set_maxdbs(mdb, KC__ENV_MAX_DBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(mdb, max_readers)) != 0 ||
        (rc = mdb_env_open(mdb, dir, MDB_NOTLS | KC__ENV_FLAGS, 0664)) != 0) {
        snprintf(msg, msg_len, "%s: cannot reopen the store: %s", dir, mdb_strerror(rc));
        mdb_env_close(mdb);
        return kc__mdb_code(rc);
    }
    env->mdb = mdb;
    if (kc__env_map_size(env) < map_size &&
        (rc = mdb_env_set_mapsize(mdb, (size_t)map_size)) != 0) {
        snprintf(msg, msg_len, "%s: cannot set the map size: %s", dir, mdb_strerror(rc));
        rc = kc__mdb_code(rc);
        goto fail;
    }
    mdb_reader_check(mdb, &dead);
    if ((rc = open_dbs(env, dir, 0, msg, msg_len)) != KC_OK)
        goto fail;
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (stat(data_path, &sb) != 0) {
        snprintf(msg, msg_len, "%s: %s", data_path, strerror(errno));
        rc = kc__mdb_code(errno);
        goto fail;
    }
    env->dev = sb.st_dev;
    env->ino = sb.st_ino;
    return KC_OK;
fail:
    mdb_env_close(mdb);
    env->mdb = NULL;
    return rc;
}

/* Open env read-only (again, after a failed reopen, so that its reads go
 * on; or in a forked child, env_adopt). */
static void reopen_rdonly(kc__env_t *env, const char *dir, unsigned max_readers)
{
    char msg[PATH_MAX + 256];
    MDB_env *mdb = NULL;
    unsigned flags =
        MDB_RDONLY | MDB_NOTLS | KC__ENV_FLAGS | (env->nolock ? MDB_NOLOCK : 0);

    if (mdb_env_create(&mdb) != 0 || mdb_env_set_maxdbs(mdb, KC__ENV_MAX_DBS) != 0 ||
        mdb_env_set_maxreaders(mdb, max_readers) != 0 ||
        mdb_env_open(mdb, dir, flags, 0664) != 0) {
        mdb_env_close(mdb);
        return;
    }
    env->mdb = mdb;
    if (open_dbs(env, dir, 0, msg, sizeof(msg)) != KC_OK) {
        mdb_env_close(mdb);
        env->mdb = NULL;
    }
}

/* A lazily writable environment, open MDB_RDONLY, closed and opened
 * writable in place. The caller holds the map lock exclusively (no
 * transaction of this process lives) and the registry, or env is not
 * shared yet. If the writable open fails, env is opened read-only again
 * and stays lazily writable: the write fails, later reads work. */
static int env_to_writable(kc__env_t *env, const char *dir, char *msg, size_t msg_len)
{
    uint64_t map_size = kc__env_map_size(env);
    unsigned max_readers = DEFAULT_MAX_READERS;
    int rc;

    if (map_size < env->want_map_size)
        map_size = env->want_map_size;
    mdb_env_get_maxreaders(env->mdb, &max_readers);
    /* Closing drops this process's shared lock on lock.mdb until the
     * reopen takes it again: as in kc__env_exclusive, no transaction of
     * this process lives meanwhile. */
    mdb_env_close(env->mdb);
    env->mdb = NULL;
    atomic_store_explicit(&env->rdonly_map, 0, memory_order_relaxed);
    rc = env_reopen(env, dir, map_size, max_readers, msg, msg_len);
    if (rc != KC_OK) {
        atomic_store_explicit(&env->rdonly_map, 1, memory_order_relaxed);
        reopen_rdonly(env, dir, max_readers);
    }
    return rc;
}

/* The store's directory: data_path less "/data.mdb". 0, or -1 if it does
 * not fit. */
static int env_dir(const kc__env_t *env, char *dir, size_t cap)
{
    size_t n = strlen(env->data_path), tail = strlen("/data.mdb");

    if (n <= tail || n - tail >= cap)
        return -1;
    memcpy(dir, env->data_path, n - tail);
    dir[n - tail] = '\0';
    return 0;
}

/* An environment this process inherited from the one it was forked from.
 * LMDB's handle is the parent's: its reader slots are recorded under the
 * parent's pid (LMDB forbids a child to use it), and a thread of the
 * parent may have held one of env's locks at the fork. So, once, at the
 * first use here, the locks are made anew and the store is opened afresh
 * as it was open (read-only, lazily writable or writable); the parent's
 * handle is kept aside as it is (kept_parent_handles), never closed. If
 * the open fails, env has no handle and its calls fail (EINVAL: the
 * open's message is lost with the fork). A thread forked from inside a
 * transaction goes on with the parent's handle until it is out of it. */
static KC__COLD int env_adopt(void *arg)
{
    kc__env_t *env = arg;
    char dir[PATH_MAX], msg[PATH_MAX + 256];
    unsigned max_readers = DEFAULT_MAX_READERS;

    if (tls_live_txns > 0)
        return -1;
    uint64_t map_size = kc__env_map_size(env);
    if (env->mdb)
        mdb_env_get_maxreaders(env->mdb, &max_readers);
    env_locks_init(env);
    totals_track(env, NULL);
    keep_parent_handle_locked(env->mdb);
    env->mdb = NULL;
    if (env_dir(env, dir, sizeof(dir)) == 0) {
        if (env->readonly || atomic_load(&env->rdonly_map)) {
            reopen_rdonly(env, dir, max_readers);
        } else if (env_reopen(env, dir, map_size, max_readers, msg, sizeof(msg)) !=
                   KC_OK) {
            /* Lazily writable instead: the next write tries again. */
            env->want_map_size = map_size;
            atomic_store(&env->rdonly_map, 1);
            reopen_rdonly(env, dir, max_readers);
        }
    }
    return 0;
}

/* The first write of a lazily writable environment. */
static int env_upgrade(kc__env_t *env)
{
    char dir[PATH_MAX], msg[PATH_MAX + 256];
    int rc = 0;

    /* Reopening waits for every transaction of env in this process to
     * end, this thread's too. */
    if (tls_in(env))
        return KC_EBUSY;
    if (env_dir(env, dir, sizeof(dir)) != 0)
        return KC_EINVAL;
    if (tls_live_txns == 0) {
        map_lock_exclusive(env);
    } else {
        /* Inside a transaction of another environment (a copy from one
         * store into this one): a thread inside one of env's that waits
         * for that environment's map lock would wait for this one, and
         * this one for it. Try for a while instead, then give up; the
         * gate holds new readers off meanwhile. */
        int tries = 0;
        gate_close(env);
        while (pthread_rwlock_trywrlock(&env->map_lock) != 0) {
            if (++tries > UPGRADE_TRIES) {
                gate_open(env);
                return KC_EBUSY;
            }
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        }
    }
    pthread_mutex_lock(&registry_lock);
    if (atomic_load_explicit(&env->rdonly_map, memory_order_relaxed))
        rc = env_to_writable(env, dir, msg, sizeof(msg));
    pthread_mutex_unlock(&registry_lock);
    map_unlock_exclusive(env);
    return rc;
}

int kc__env_exclusive(kc__env_t *env, const char *dir,
                      int (*fn)(const char *dir, void *ctx, char *msg, size_t msg_len),
                      void *ctx, char *msg, size_t msg_len)
{
    char lock_path[PATH_MAX], reopen_msg[PATH_MAX + 256];
    struct flock fl;
    uint64_t map_size;
    unsigned max_readers = DEFAULT_MAX_READERS;
    int fd = -1, rc;

    msg[0] = '\0';
    if (env->readonly || env->nolock) {
        snprintf(msg, msg_len, "%s is open read-only", dir);
        return KC_EREADONLY;
    }
    if (tls_live_txns > 0) {
        snprintf(msg, msg_len, "%s: called inside a transaction of the store", dir);
        return KC_EBUSY;
    }
    env_use(env);
    if (snprintf(lock_path, sizeof(lock_path), "%s/lock.mdb", dir) >=
        (int)sizeof(lock_path)) {
        snprintf(msg, msg_len, "path too long: %s", dir);
        return KC_EINVAL;
    }

    /* No transaction of this process may live while the environment is
     * closed: every one holds map_lock shared. The registry stays locked
     * so that no thread opens a second environment on the new file before
     * the registry knows its inode. This order (map lock, then registry)
     * is safe: no thread waits for a map lock while it holds the registry. */
    map_lock_exclusive(env);
    pthread_mutex_lock(&registry_lock);
    map_size = kc__env_map_size(env);
    if (env->mdb)
        mdb_env_get_maxreaders(env->mdb, &max_readers);
    /* Closing drops this process's locks on lock.mdb, so that the lock
     * below conflicts with other processes' only. */
    mdb_env_close(env->mdb);
    env->mdb = NULL;

    /* Every process that has the environment open holds a shared fcntl lock
     * on the lock file's first byte (mdb_env_excl_lock); an exclusive one
     * is granted only when no other process does, and makes any process
     * that opens the store meanwhile wait for it. */
    fd = open(lock_path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, msg_len, "%s: %s", lock_path, strerror(errno));
        rc = kc__mdb_code(errno);
        goto reopen;
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        if (errno == EACCES || errno == EAGAIN) {
            struct flock who = fl;
            long pid = 0;
            if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK)
                pid = (long)who.l_pid;
            snprintf(msg, msg_len,
                     "%s is open in another process (pid %ld); stop the processes "
                     "that use the store and try again",
                     dir, pid);
            rc = KC_EBUSY;
        } else {
            snprintf(msg, msg_len, "%s: cannot lock: %s", lock_path, strerror(errno));
            rc = kc__mdb_code(errno);
        }
        goto reopen;
    }
    rc = fn(dir, ctx, msg, msg_len);

reopen:
    if (fd >= 0)
        close(fd);
    {
        /* Writable from here on, if it was lazily so. */
        atomic_store_explicit(&env->rdonly_map, 0, memory_order_relaxed);
        int rrc =
            env_reopen(env, dir, map_size, max_readers, reopen_msg, sizeof(reopen_msg));
        if (rrc != KC_OK && rc == KC_OK) {
            snprintf(msg, msg_len, "%s", reopen_msg);
            rc = rrc;
        }
        /* The file is now what fn (compaction) wrote through LMDB. */
        if (rrc == KC_OK)
            stamp_refresh(env);
    }
    pthread_mutex_unlock(&registry_lock);
    map_unlock_exclusive(env);
    return rc;
}
