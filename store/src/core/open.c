/* The store handle: open, close, and the on-disk format version. Its
 * messages are in messages.c. */
#include "cold.h"
#include "kcache/store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opts.h"
#include "fsinfo.h"
#include "envvar.h"
#include "lmdb_env.h"
#include "store_internal.h"
#include "wire.h"

int kc_store_is_readonly(const kc_store_t *store)
{
    return store ? store->readonly : 1;
}

int kc_store_is_sealed(const kc_store_t *store)
{
    return store ? store->sealed : 0;
}

typedef struct seal_ctx {
    kc__env_t *env;
    int sealed;
} seal_ctx_t;

static int seal_fn(MDB_txn *txn, void *arg)
{
    seal_ctx_t *c = arg;
    const uint8_t one = 1;
    if (c->sealed)
        return kc__meta_write(txn, c->env, "sealed", &one, 1, 0);
    MDB_val k = {strlen("sealed"), (void *)"sealed"};
    int rc = mdb_del(txn, c->env->dbi[KC_REC_META], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int kc_store_set_sealed(kc_store_t *store, int sealed)
{
    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    int rc = kc__store_check_writable(store, sealed ? "seal" : "unseal");
    if (rc != KC_OK)
        return rc;
    seal_ctx_t c = {store->env, sealed != 0};
    rc = kc__env_write(store->env, seal_fn, &c);
    if (rc != 0)
        return kc__store_fail(store, kc__is_mdb_rc(rc) ? kc__mdb_code(rc) : rc, "%s: %s",
                              sealed ? "seal" : "unseal",
                              kc__is_mdb_rc(rc) ? mdb_strerror(rc) : kc_strerror(rc));
    store->sealed = sealed != 0;
    return KC_OK;
}

const char *kc_store_path(const kc_store_t *store)
{
    return store ? store->path : NULL;
}

/* ---- format version --------------------------------------------------------- */

int kc__store_format_read(MDB_txn *txn, kc__env_t *env, uint32_t *version)
{
    uint8_t buf[4];
    size_t len = 0;
    int rc = kc__meta_read(txn, env, "format", buf, sizeof(buf), &len);

    if (rc != 0)
        return rc;
    if (len != 4)
        return KC_ECORRUPT;
    *version = kc__load_u32le(buf);
    return 0;
}

typedef struct format_ctx {
    kc__env_t *env;
    uint32_t version;
    int found;
    int corrupt;
    int sealed;
} format_ctx_t;

/* The meta record "sealed": one byte, 1. Anything else there is damage,
 * and a damaged seal still seals (the safe reading). */
static int sealed_read(MDB_txn *txn, kc__env_t *env)
{
    uint8_t v = 0;
    size_t len = 0;
    int rc = kc__meta_read(txn, env, "sealed", &v, sizeof(v), &len);
    return rc != MDB_NOTFOUND;
}

static int format_read_fn(MDB_txn *txn, void *arg)
{
    format_ctx_t *c = arg;
    int rc = kc__store_format_read(txn, c->env, &c->version);

    c->sealed = sealed_read(txn, c->env);
    c->found = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == KC_OK) {
        c->found = 1;
        return 0;
    }
    if (rc == KC_EVERSION) {
        c->found = 1;
        c->version = UINT32_MAX;
        return 0;
    }
    if (rc == KC_ECORRUPT || rc == KC_ETOOBIG) {
        c->corrupt = 1;
        return 0;
    }
    return rc;
}

static int format_write_fn(MDB_txn *txn, void *arg)
{
    format_ctx_t *c = arg;
    uint8_t buf[4];
    int rc;

    /* Format 1 until the store holds a split blob (core/blob_value.c):
     * until then a kcache of format 1 reads it. */
    kc__store_u32le(buf, KC__STORE_FORMAT_FIRST);
    /* Two processes creating the store at once both get here; the first
     * one's record stands. */
    rc = kc__meta_write(txn, c->env, "format", buf, sizeof(buf), MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return 0;
    if (rc != 0)
        return rc;
    /* A new store starts its record totals (core/totals.c) here. */
    uint64_t t[KC__TOTALS_SLOTS];
    if ((rc = kc__totals_scan(txn, c->env, t)) != 0)
        return rc;
    return kc__totals_write(txn, c->env, t);
}

/* ---- open and close --------------------------------------------------------- */

static int errno_code(int e)
{
    return kc__mdb_code(e);
}

/* Check the store's format version, writing it into a new store. */
static int check_format(kc_store_t *st, unsigned flags)
{
    format_ctx_t c = {st->env, 0, 0, 0, 0};
    int rc;

    rc = kc__env_read(st->env, format_read_fn, &c);
    if (rc == 0 && !c.found && !c.corrupt && !st->readonly) {
        rc = kc__env_write(st->env, format_write_fn, &c);
        if (rc == 0)
            rc = kc__env_read(st->env, format_read_fn, &c);
    }
    if (rc != 0)
        return kc__store_open_fail(kc__is_mdb_rc(rc) ? kc__mdb_code(rc) : rc,
                                   "%s: cannot read the format version: %s", st->path,
                                   kc__is_mdb_rc(rc) ? mdb_strerror(rc)
                                                     : kc_strerror(rc));
    if (c.corrupt)
        return kc__store_open_fail(KC_ECORRUPT, "%s: the format record is damaged",
                                   st->path);
    if (c.found && c.version > KC_STORE_FORMAT_VERSION)
        return kc__store_open_fail(
            KC_EVERSION, "%s has store format %u; this kcache reads format %u and older",
            st->path, c.version, KC_STORE_FORMAT_VERSION);
    st->sealed = c.sealed;
    if (c.sealed && !(flags & KC_STORE_IGNORE_SEAL))
        st->readonly = 1;
    return KC_OK;
}

/* mkdir -p: create dir and any missing parents. */
static KC__COLD int make_dirs(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path))
        return kc__store_open_fail(KC_EINVAL, "invalid store path \"%s\"", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return kc__store_open_fail(errno_code(errno), "cannot create %s: %s", path,
                                       strerror(errno));
        path[i] = c;
    }
    return KC_OK;
}
/* What kc_store_open checks before it opens anything: the directory (made
 * if missing and allowed), whether data.mdb is there, and whether the store
 * can be opened as asked; sets eo->readonly. Its path buffer lives in this
 * frame, gone before the environment is opened (a deeper stack is a page
 * fault per new page on a process's first open). */
static __attribute__((noinline)) int
check_dir(const char *dir, const kc_store_opts_t *opts, kc__env_opts_t *eo)
{
    char data_path[PATH_MAX];
    struct stat sb;
    int rc, data_exists;

    if (snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir) >=
        (int)sizeof(data_path))
        return kc__store_open_fail(KC_EINVAL, "store path too long: %s", dir);

    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return kc__store_open_fail(errno_code(errno), "%s: %s", dir, strerror(errno));
        if (opts->flags & (KC_STORE_RDONLY | KC_STORE_NOCREATE))
            return kc__store_open_fail(KC_ENOTFOUND,
                                       "no kcache store at %s (no such directory)", dir);
        if ((rc = make_dirs(dir)) != KC_OK)
            return rc;
    } else if (!S_ISDIR(sb.st_mode)) {
        return kc__store_open_fail(KC_EINVAL, "%s is not a directory", dir);
    }

    kc__fs_probe_t fs;
    kc__fs_probe(dir, &fs);
    eo->readonly = (opts->flags & KC_STORE_RDONLY) || !fs.writable;
    data_exists = access(data_path, F_OK) == 0;
    /* "Cannot look" is not "not there": a directory this user may not search
     * is a permission problem, said as such. */
    if (!data_exists && errno == EACCES)
        return kc__store_open_fail(KC_EPERM, "permission denied: cannot look for %s",
                                   data_path);
    if (!data_exists && eo->readonly)
        return kc__store_open_fail(
            KC_ENOTFOUND,
            "no kcache store at %s (no data.mdb, and the store is opened "
            "read-only%s so none can be created)",
            dir,
            (opts->flags & KC_STORE_RDONLY) ? ""
                                            : " because the directory is "
                                              "not writable");
    if (!data_exists && (opts->flags & KC_STORE_NOCREATE))
        return kc__store_open_fail(KC_ENOTFOUND, "no kcache store at %s (no data.mdb)",
                                   dir);
    if (!eo->readonly && fs.network)
        return kc__store_open_fail(
            KC_ENFS,
            "%s is on a network filesystem (%s); LMDB needs local locks "
            "and a coherent mmap. Use a local directory, open it "
            "read-only, or set KCACHE_ALLOW_NETWORK_FS=1 if only one "
            "machine ever uses it",
            dir, fs.network);
    return KC_OK;
}

int kc_store_open(const char *dir, const kc_store_opts_t *opts, kc_store_t **out)
{
    kc_store_opts_t o;
    char msg[KC__STORE_MSG_SIZE] = "";
    kc_store_t *st = NULL;
    kc__env_opts_t eo;
    int rc;

    kc__diag_release(kc__diag_store_open);
    if (!out)
        return kc__store_open_fail(KC_EINVAL, "kc_store_open: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return kc__store_open_fail(KC_EINVAL, "kc_store_open: no directory given");
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK)
        return kc__store_open_fail(
            KC_EINVAL,
            "kc_store_open: opts->size is %zu, this library's is %zu "
            "(use KC_STORE_OPTS_INIT)",
            opts->size, sizeof(o));
    opts = &o;
    /* A limit the environment names but that does not parse is an error
     * here, not a silently unlimited store. */
    if (!opts->max_size &&
        kc__envvar_size("KCACHE_MAX_SIZE", &o.max_size, msg, sizeof(msg)) != KC_OK)
        return kc__store_open_fail(KC_EINVAL, "%s", msg);
    memset(&eo, 0, sizeof(eo));
    rc = check_dir(dir, opts, &eo);
    if (rc != KC_OK)
        return rc;
    eo.map_size = opts->map_size;
    eo.max_readers = opts->max_readers;
    eo.lazy_write = (opts->flags & KC_STORE_LAZY_WRITE) != 0;

    st = calloc(1, sizeof(*st));
    if (!st)
        return kc__store_open_fail(KC_ENOMEM, "out of memory");
    st->path = strdup(dir);
    if (asprintf(&st->data_path, "%s/data.mdb", dir) < 0)
        st->data_path = NULL;
    if (!st->path || !st->data_path) {
        rc = kc__store_open_fail(KC_ENOMEM, "out of memory");
        goto fail;
    }
    st->readonly = eo.readonly;
    st->zstd_level = opts->zstd_level;
    /* Only the limit is kept here: publish enforces it (gc_internal.h). */
    st->max_size = opts->max_size; /* or KCACHE_MAX_SIZE's, above */
    pthread_mutex_init(&st->pending_lock, NULL);
    pthread_cond_init(&st->flush_cv, NULL);
    pthread_cond_init(&st->flushed_cv, NULL);

    rc = kc__env_acquire(dir, &eo, &st->env, msg, sizeof(msg));
    if (rc != KC_OK) {
        kc__store_set_open_errmsg(msg);
        goto fail_mutex;
    }
    rc = check_format(st, opts->flags);
    if (rc != KC_OK)
        goto fail_mutex;
    kc__usage_register(st);
    *out = st;
    return KC_OK;

fail_mutex:
    pthread_cond_destroy(&st->flushed_cv);
    pthread_cond_destroy(&st->flush_cv);
    pthread_mutex_destroy(&st->pending_lock);
fail:
    kc__env_release(st->env);
    free(st->path);
    free(st->data_path);
    free(st);
    return rc;
}

void kc_store_close(kc_store_t *store)
{
    if (!store)
        return;
    kc__usage_unregister(store);
    kc__usage_flusher_stop(store);
    kc_store_flush(store);
    kc__env_release(store->env);
    free(store->pending.usage.ent);
    pthread_cond_destroy(&store->flushed_cv);
    pthread_cond_destroy(&store->flush_cv);
    pthread_mutex_destroy(&store->pending_lock);
    free(store->path);
    free(store->data_path);
    free(store);
}
