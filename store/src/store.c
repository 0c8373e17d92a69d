#include "kcache/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob_internal.h"
#include "fsinfo.h"
#include "kcache/blob.h"
#include "lmdb_env.h"
#include "wire.h"

/* Usage stamps are flushed on their own once this many are buffered, so
 * that a long-running process holds a bounded amount of them. */
#define USAGE_AUTOFLUSH 4096
#define MSG_SIZE 1024

typedef struct usage_ent {
    kc_key_t key;
    uint8_t kind; /* 0: empty slot */
    uint64_t last_use;
    uint64_t uses;
} usage_ent_t;

/* An open-addressing table of usage stamps keyed by (kind, key). */
typedef struct usage_tab {
    usage_ent_t *ent;
    size_t cap; /* 0 or a power of two */
    size_t len;
} usage_tab_t;

/* Usage stamps and counter deltas not yet written. */
typedef struct pending {
    usage_tab_t usage;
    uint64_t counters[KC_COUNTER_COUNT_];
} pending_t;

struct kc_store {
    kc__env_t *env;
    char *path;
    char *data_path;
    int readonly;
    int zstd_level;
    pthread_mutex_t pending_lock;
    pending_t pending;
};

static const char *const counter_names[KC_COUNTER_COUNT_] = {
    "hits", "misses", "corrupt", "bytes_stored", "publishes", "compiles", "tunes",
};

/* Messages are per thread, and a handle's message belongs to the handle
 * that left it. */
static _Thread_local char tls_msg[MSG_SIZE];
static _Thread_local const kc_store_t *tls_msg_owner;
static _Thread_local char tls_open_msg[MSG_SIZE];

const char *kc_counter_name(int counter)
{
    if (counter < 0 || counter >= KC_COUNTER_COUNT_)
        return NULL;
    return counter_names[counter];
}

const char *kc_store_errmsg(const kc_store_t *store)
{
    if (store && tls_msg_owner == store)
        return tls_msg;
    return "";
}

const char *kc_store_open_errmsg(void)
{
    return tls_open_msg;
}

int kc_store_is_readonly(const kc_store_t *store)
{
    return store ? store->readonly : 1;
}

const char *kc_store_path(const kc_store_t *store)
{
    return store ? store->path : NULL;
}

/* A handle's message describes its last failure only: forget the old one. */
static void begin_call(void)
{
    tls_msg_owner = NULL;
}

__attribute__((format(printf, 3, 4))) static int fail(const kc_store_t *st, int rc,
                                                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof(tls_msg), fmt, ap);
    va_end(ap);
    tls_msg_owner = st;
    return rc;
}

/* Turn a mixed LMDB/kcache code into a kcache code, leaving a message that
 * names the operation and the store unless one was already left. */
static int finish(const kc_store_t *st, int rc, const char *what)
{
    if (rc == 0)
        return KC_OK;
    if (kc__is_mdb_rc(rc)) {
        int code = kc__mdb_code(rc);
        if (code == KC_ENOTFOUND)
            return code;
        return fail(st, code, "%s: %s (store %s)", what, mdb_strerror(rc), st->path);
    }
    if (rc != KC_ENOTFOUND && tls_msg_owner != st)
        fail(st, rc, "%s: %s (store %s)", what, kc_strerror(rc), st->path);
    return rc;
}

static int kind_has_key(int kind)
{
    return kind >= KC_REC_BLOB && kind <= KC_REC_LEASE;
}

static MDB_val key_val(const kc_key_t *key)
{
    MDB_val v = {sizeof(key->b), (void *)key->b};
    return v;
}

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

/* ---- meta records ---------------------------------------------------------- */

static MDB_val name_val(const char *name)
{
    MDB_val v = {strlen(name), (void *)name};
    return v;
}

/* The value of meta record name, copied into buf[cap]: *len receives its
 * length. An LMDB code, KC_ECORRUPT, or KC_ETOOBIG if cap is short. */
static int meta_read(MDB_txn *txn, kc__env_t *env, const char *name, void *buf,
                     size_t cap, size_t *len)
{
    MDB_val k = name_val(name), v;
    kc_record_t *rec = NULL;
    int rc;

    rc = mdb_get(txn, env->dbi[KC_REC_META], &k, &v);
    if (rc != 0)
        return rc;
    rc = kc_record_decode(v.mv_data, v.mv_size, &rec);
    if (rc != KC_OK)
        return rc == KC_EVERSION || rc == KC_ENOMEM ? rc : KC_ECORRUPT;
    if (rec->kind != KC_REC_META) {
        rc = KC_ECORRUPT;
    } else if (rec->u.meta.value.size > cap) {
        rc = KC_ETOOBIG;
    } else {
        memcpy(buf, rec->u.meta.value.data, rec->u.meta.value.size);
        *len = rec->u.meta.value.size;
    }
    kc_free(rec);
    return rc;
}

static int meta_write(MDB_txn *txn, kc__env_t *env, const char *name, const void *value,
                      size_t len, unsigned flags)
{
    kc_record_t rec = {.kind = KC_REC_META, .version = KC_RECORD_VERSION};
    MDB_val k = name_val(name), v;
    void *enc = NULL;
    size_t enc_len;
    int rc;

    rec.u.meta.value.data = value;
    rec.u.meta.value.size = len;
    rc = kc_record_encode(&rec, &enc, &enc_len);
    if (rc != KC_OK)
        return rc;
    v.mv_data = enc;
    v.mv_size = enc_len;
    rc = mdb_put(txn, env->dbi[KC_REC_META], &k, &v, flags);
    kc_free(enc);
    return rc;
}

static int counter_read(MDB_txn *txn, kc__env_t *env, int counter, uint64_t *value)
{
    char name[64];
    uint8_t buf[8];
    size_t len = 0;
    int rc;

    snprintf(name, sizeof(name), "counter.%s", counter_names[counter]);
    rc = meta_read(txn, env, name, buf, sizeof(buf), &len);
    *value = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (len != 8)
        return KC_ECORRUPT;
    *value = kc__load_u64le(buf);
    return 0;
}

static int counters_add(MDB_txn *txn, kc__env_t *env, const uint64_t *delta)
{
    for (int c = 0; c < KC_COUNTER_COUNT_; c++) {
        char name[64];
        uint8_t buf[8];
        uint64_t value;
        int rc;

        if (delta[c] == 0)
            continue;
        /* A damaged counter restarts from zero rather than blocking every
         * flush after it. */
        rc = counter_read(txn, env, c, &value);
        if (rc == KC_ECORRUPT || rc == KC_EVERSION)
            value = 0;
        else if (rc != 0)
            return rc;
        kc__store_u64le(buf, value + delta[c]);
        snprintf(name, sizeof(name), "counter.%s", counter_names[c]);
        rc = meta_write(txn, env, name, buf, sizeof(buf), 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- usage stamps ---------------------------------------------------------- */

static size_t usage_hash(uint8_t kind, const kc_key_t *key)
{
    uint64_t h = kc__load_u64le(key->b) ^ kc__load_u64le(key->b + 8);
    return (size_t)((h ^ kind) * 0x9E3779B97F4A7C15ULL >> 17);
}

static usage_ent_t *usage_slot(usage_tab_t *t, uint8_t kind, const kc_key_t *key)
{
    size_t mask = t->cap - 1;
    for (size_t i = usage_hash(kind, key) & mask;; i = (i + 1) & mask) {
        usage_ent_t *e = &t->ent[i];
        if (e->kind == 0 || (e->kind == kind && memcmp(e->key.b, key->b, 16) == 0))
            return e;
    }
}

/* Add a stamp (or merge one back), growing the table as needed. */
static int usage_add(usage_tab_t *t, uint8_t kind, const kc_key_t *key, uint64_t last_use,
                     uint64_t uses)
{
    if ((t->len + 1) * 4 > t->cap * 3) {
        usage_tab_t bigger = {NULL, t->cap ? t->cap * 2 : 64, 0};
        bigger.ent = calloc(bigger.cap, sizeof(*bigger.ent));
        if (!bigger.ent)
            return KC_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->ent[i].kind) {
                *usage_slot(&bigger, t->ent[i].kind, &t->ent[i].key) = t->ent[i];
                bigger.len++;
            }
        }
        free(t->ent);
        *t = bigger;
    }
    usage_ent_t *e = usage_slot(t, kind, key);
    if (e->kind == 0) {
        e->kind = kind;
        e->key = *key;
        t->len++;
    }
    if (last_use > e->last_use)
        e->last_use = last_use;
    e->uses += uses;
    return KC_OK;
}

/* Read-modify-write the usage record of key in txn. */
static int usage_stamp(MDB_txn *txn, kc__env_t *env, const kc_key_t *key,
                       uint64_t last_use, uint64_t uses)
{
    kc_record_t rec = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};
    kc_record_t *old = NULL;
    MDB_val k = key_val(key), v;
    void *enc = NULL;
    size_t enc_len;
    int rc;

    rc = mdb_get(txn, env->dbi[KC_REC_USAGE], &k, &v);
    if (rc == 0 && kc_record_decode(v.mv_data, v.mv_size, &old) == KC_OK &&
        old->kind == KC_REC_USAGE) {
        rec.u.usage = old->u.usage;
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    kc_free(old);
    if (last_use > rec.u.usage.last_use)
        rec.u.usage.last_use = last_use;
    rec.u.usage.uses += uses;
    rc = kc_record_encode(&rec, &enc, &enc_len);
    if (rc != KC_OK)
        return rc;
    v.mv_data = enc;
    v.mv_size = enc_len;
    rc = mdb_put(txn, env->dbi[KC_REC_USAGE], &k, &v, 0);
    kc_free(enc);
    return rc;
}

/* Take everything pending, leaving the store's buffers empty. */
static void pending_take(kc_store_t *st, pending_t *out)
{
    pthread_mutex_lock(&st->pending_lock);
    *out = st->pending;
    memset(&st->pending, 0, sizeof(st->pending));
    pthread_mutex_unlock(&st->pending_lock);
}

/* Put back what a failed write did not persist. */
static void pending_restore(kc_store_t *st, pending_t *p)
{
    pthread_mutex_lock(&st->pending_lock);
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        st->pending.counters[c] += p->counters[c];
    for (size_t i = 0; i < p->usage.cap; i++) {
        const usage_ent_t *e = &p->usage.ent[i];
        if (e->kind)
            usage_add(&st->pending.usage, e->kind, &e->key, e->last_use, e->uses);
    }
    pthread_mutex_unlock(&st->pending_lock);
    free(p->usage.ent);
    memset(p, 0, sizeof(*p));
}

static int pending_empty(const pending_t *p)
{
    if (p->usage.len)
        return 0;
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        if (p->counters[c])
            return 0;
    return 1;
}

/* Write pending stamps and counters, plus extra counter deltas, in txn. */
static int pending_write(MDB_txn *txn, kc__env_t *env, const pending_t *p,
                         const uint64_t *extra)
{
    uint64_t delta[KC_COUNTER_COUNT_];
    int rc;

    for (size_t i = 0; i < p->usage.cap; i++) {
        const usage_ent_t *e = &p->usage.ent[i];
        if (e->kind && (rc = usage_stamp(txn, env, &e->key, e->last_use, e->uses)) != 0)
            return rc;
    }
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        delta[c] = p->counters[c] + (extra ? extra[c] : 0);
    return counters_add(txn, env, delta);
}

/* ---- open and close -------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int open_fail(int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tls_open_msg, sizeof(tls_open_msg), fmt, ap);
    va_end(ap);
    return rc;
}

static int errno_code(int e)
{
    return kc__mdb_code(e);
}

/* mkdir -p: create dir and any missing parents. */
static int make_dirs(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path))
        return open_fail(KC_EINVAL, "invalid store path \"%s\"", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return open_fail(errno_code(errno), "cannot create %s: %s", path,
                             strerror(errno));
        path[i] = c;
    }
    return KC_OK;
}

typedef struct format_ctx {
    kc__env_t *env;
    uint32_t version;
    int found;
    int corrupt;
} format_ctx_t;

static int format_read_fn(MDB_txn *txn, void *arg)
{
    format_ctx_t *c = arg;
    uint8_t buf[4];
    size_t len = 0;
    int rc = meta_read(txn, c->env, "format", buf, sizeof(buf), &len);

    c->found = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == KC_OK && len == 4) {
        c->found = 1;
        c->version = kc__load_u32le(buf);
        return 0;
    }
    if (rc == KC_EVERSION) {
        c->found = 1;
        c->version = UINT32_MAX;
        return 0;
    }
    if (rc == KC_ECORRUPT || rc == KC_ETOOBIG || rc == KC_OK) {
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

    kc__store_u32le(buf, KC_STORE_FORMAT_VERSION);
    /* Two processes creating the store at once both get here; the first
     * one's record stands. */
    rc = meta_write(txn, c->env, "format", buf, sizeof(buf), MDB_NOOVERWRITE);
    return rc == MDB_KEYEXIST ? 0 : rc;
}

/* Check the store's format version, writing it into a new store. */
static int check_format(kc_store_t *st)
{
    format_ctx_t c = {st->env, 0, 0, 0};
    int rc;

    rc = kc__env_read(st->env, format_read_fn, &c);
    if (rc == 0 && !c.found && !c.corrupt && !st->readonly) {
        rc = kc__env_write(st->env, format_write_fn, &c);
        if (rc == 0)
            rc = kc__env_read(st->env, format_read_fn, &c);
    }
    if (rc != 0)
        return open_fail(kc__is_mdb_rc(rc) ? kc__mdb_code(rc) : rc,
                         "%s: cannot read the format version: %s", st->path,
                         kc__is_mdb_rc(rc) ? mdb_strerror(rc) : kc_strerror(rc));
    if (c.corrupt)
        return open_fail(KC_ECORRUPT, "%s: the format record is damaged", st->path);
    if (c.found && c.version > KC_STORE_FORMAT_VERSION)
        return open_fail(KC_EVERSION,
                         "%s has store format %u; this kcache reads format %u and older",
                         st->path, c.version, KC_STORE_FORMAT_VERSION);
    return KC_OK;
}

int kc_store_open(const char *dir, const kc_store_opts_t *opts, kc_store_t **out)
{
    static const kc_store_opts_t no_opts;
    char data_path[PATH_MAX];
    struct stat sb;
    kc_store_t *st = NULL;
    kc__env_opts_t eo;
    int rc, data_exists;

    tls_open_msg[0] = '\0';
    if (!out)
        return open_fail(KC_EINVAL, "kc_store_open: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return open_fail(KC_EINVAL, "kc_store_open: no directory given");
    if (!opts)
        opts = &no_opts;
    if (snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir) >=
        (int)sizeof(data_path))
        return open_fail(KC_EINVAL, "store path too long: %s", dir);

    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return open_fail(errno_code(errno), "%s: %s", dir, strerror(errno));
        if (opts->flags & (KC_STORE_RDONLY | KC_STORE_NOCREATE))
            return open_fail(KC_ENOTFOUND, "no kcache store at %s (no such directory)",
                             dir);
        if ((rc = make_dirs(dir)) != KC_OK)
            return rc;
    } else if (!S_ISDIR(sb.st_mode)) {
        return open_fail(KC_EINVAL, "%s is not a directory", dir);
    }

    memset(&eo, 0, sizeof(eo));
    eo.readonly = (opts->flags & KC_STORE_RDONLY) || !kc__fs_dir_writable(dir);
    eo.map_size = opts->map_size;
    eo.max_readers = opts->max_readers;
    data_exists = access(data_path, F_OK) == 0;
    if (!data_exists && eo.readonly)
        return open_fail(KC_ENOTFOUND,
                         "no kcache store at %s (no data.mdb, and the store is opened "
                         "read-only%s so none can be created)",
                         dir,
                         (opts->flags & KC_STORE_RDONLY) ? ""
                                                         : " because the directory is "
                                                           "not writable");
    if (!data_exists && (opts->flags & KC_STORE_NOCREATE))
        return open_fail(KC_ENOTFOUND, "no kcache store at %s (no data.mdb)", dir);
    if (!eo.readonly) {
        const char *fs = kc__fs_network_refusal(dir);
        if (fs)
            return open_fail(KC_ENFS,
                             "%s is on a network filesystem (%s); LMDB needs local locks "
                             "and a coherent mmap. Use a local directory, open it "
                             "read-only, or set KCACHE_ALLOW_NETWORK_FS=1 if only one "
                             "machine ever uses it",
                             dir, fs);
    }

    st = calloc(1, sizeof(*st));
    if (!st)
        return open_fail(KC_ENOMEM, "out of memory");
    st->path = strdup(dir);
    st->data_path = strdup(data_path);
    if (!st->path || !st->data_path) {
        rc = open_fail(KC_ENOMEM, "out of memory");
        goto fail;
    }
    st->readonly = eo.readonly;
    st->zstd_level = opts->zstd_level;
    pthread_mutex_init(&st->pending_lock, NULL);

    rc = kc__env_acquire(dir, &eo, &st->env, tls_open_msg, sizeof(tls_open_msg));
    if (rc != KC_OK)
        goto fail_mutex;
    rc = check_format(st);
    if (rc != KC_OK)
        goto fail_mutex;
    *out = st;
    return KC_OK;

fail_mutex:
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
    kc_store_flush(store);
    kc__env_release(store->env);
    free(store->pending.usage.ent);
    pthread_mutex_destroy(&store->pending_lock);
    free(store->path);
    free(store->data_path);
    free(store);
}

/* ---- reading --------------------------------------------------------------- */

typedef struct fetch_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    void *data;
    size_t len;
    /* For blobs stored with a dictionary: the dictionary, copied too. */
    int want_dict;
    void *dict;
    size_t dict_len;
} fetch_ctx_t;

/* Copy a record out of the map: its bytes must not outlive the txn. */
static int fetch_fn(MDB_txn *txn, void *arg)
{
    fetch_ctx_t *c = arg;
    MDB_val k = key_val(c->key), v;
    int rc = mdb_get(txn, c->env->dbi[c->kind], &k, &v);

    if (rc != 0)
        return rc;
    c->data = malloc(v.mv_size ? v.mv_size : 1);
    if (!c->data)
        return KC_ENOMEM;
    memcpy(c->data, v.mv_data, v.mv_size);
    c->len = v.mv_size;

    kc_blob_rec_t b;
    if (c->want_dict && kc__blob_view(c->data, c->len, &b) == KC_OK && b.dict_id != 0) {
        char name[32];
        MDB_val dk, dv;
        kc_record_t *rec = NULL;

        snprintf(name, sizeof(name), "dict.%u", (unsigned)b.dict_id);
        dk = name_val(name);
        if (mdb_get(txn, c->env->dbi[KC_REC_META], &dk, &dv) != 0 ||
            kc_record_decode(dv.mv_data, dv.mv_size, &rec) != KC_OK)
            return 0; /* the blob decoder reports the missing dictionary */
        c->dict = malloc(rec->u.meta.value.size ? rec->u.meta.value.size : 1);
        if (c->dict) {
            memcpy(c->dict, rec->u.meta.value.data, rec->u.meta.value.size);
            c->dict_len = rec->u.meta.value.size;
        }
        kc_free(rec);
    }
    return 0;
}

typedef struct del_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    const void *expect; /* delete only if the stored bytes are these */
    size_t expect_len;
} del_ctx_t;

static int del_fn(MDB_txn *txn, void *arg)
{
    del_ctx_t *c = arg;
    MDB_val k = key_val(c->key), v;
    int rc;

    if (c->expect) {
        rc = mdb_get(txn, c->env->dbi[c->kind], &k, &v);
        if (rc != 0)
            return rc;
        if (v.mv_size != c->expect_len || memcmp(v.mv_data, c->expect, v.mv_size) != 0)
            return 0; /* rewritten since we read it */
    }
    rc = mdb_del(txn, c->env->dbi[c->kind], &k, NULL);
    if (rc != 0)
        return rc;
    if (c->kind != KC_REC_USAGE) {
        rc = mdb_del(txn, c->env->dbi[KC_REC_USAGE], &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

/* A record failed verification: count it, delete it if we may, and report
 * a miss. Its bytes are compared again under the write txn so that a good
 * record written meanwhile by another process is not deleted. */
static int corrupt_miss(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, int why)
{
    char hex[KC_KEY_HEX_LEN + 1];
    int deleted = 0;

    kc_store_count(st, KC_COUNTER_CORRUPT, 1);
    if (!st->readonly) {
        del_ctx_t c = {st->env, kind, key, data, len};
        deleted = kc__env_write(st->env, del_fn, &c) == 0;
    }
    kc_key_to_hex(key, hex);
    return fail(st, KC_ENOTFOUND, "%s record %s in %s is damaged (%s)%s",
                kc_rec_kind_name(kind), hex, st->path, kc_strerror(why),
                deleted ? "; deleted" : "");
}

/* Whether a decoded record belongs under (kind, key). */
static int record_fits(int kind, const kc_key_t *key, const kc_record_t *rec)
{
    kc_key_t derived;

    if ((int)rec->kind != kind)
        return 0;
    if (kind == KC_REC_BUILD || kind == KC_REC_TUNING)
        return kc_record_derived_key(rec, &derived) == KC_OK &&
               memcmp(derived.b, key->b, 16) == 0;
    return 1;
}

static int fetch(kc_store_t *st, int kind, const kc_key_t *key, int want_dict,
                 fetch_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->env = st->env;
    c->kind = kind;
    c->key = key;
    c->want_dict = want_dict;
    int rc = kc__env_read(st->env, fetch_fn, c);
    if (rc != 0) {
        free(c->data);
        free(c->dict);
        c->data = c->dict = NULL;
    }
    return rc;
}

int kc_store_get(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                 kc_record_t **out)
{
    fetch_ctx_t c;
    kc_record_t *rec = NULL;
    int rc;

    if (out)
        *out = NULL;
    if (!store || !key || !out)
        return KC_EINVAL;
    begin_call();
    if (!kind_has_key(kind))
        return fail(store, KC_EINVAL, "kc_store_get: invalid record kind %d", (int)kind);
    rc = fetch(store, kind, key, 0, &c);
    if (rc != 0)
        return finish(store, rc, "get");
    rc = kc_record_decode(c.data, c.len, &rec);
    if (rc == KC_EVERSION) {
        /* Written by a newer kcache that shares this store: not ours to
         * judge or delete. */
        free(c.data);
        return fail(store, KC_ENOTFOUND, "record written by a newer format (store %s)",
                    store->path);
    }
    if (rc == KC_ENOMEM) {
        free(c.data);
        return finish(store, rc, "get");
    }
    if (rc != KC_OK || !record_fits(kind, key, rec)) {
        kc_free(rec);
        rc =
            corrupt_miss(store, kind, key, c.data, c.len, rc != KC_OK ? rc : KC_ECORRUPT);
        free(c.data);
        return rc;
    }
    free(c.data);
    *out = rec;
    return KC_OK;
}

int kc_store_get_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     void **data, size_t *len)
{
    fetch_ctx_t c;
    int rc;

    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!store || !key || !data || !len)
        return KC_EINVAL;
    begin_call();
    if (!kind_has_key(kind))
        return fail(store, KC_EINVAL, "kc_store_get_raw: invalid record kind %d",
                    (int)kind);
    rc = fetch(store, kind, key, 0, &c);
    if (rc != 0)
        return finish(store, rc, "get");
    *data = c.data;
    *len = c.len;
    return KC_OK;
}

int kc_store_get_cubin(kc_store_t *store, const kc_key_t *key, void **cubin, size_t *len)
{
    fetch_ctx_t c;
    int rc;

    if (cubin)
        *cubin = NULL;
    if (len)
        *len = 0;
    if (!store || !key || !cubin || !len)
        return KC_EINVAL;
    begin_call();
    rc = fetch(store, KC_REC_BLOB, key, 1, &c);
    if (rc != 0)
        return finish(store, rc, "get cubin");
    rc = kc_blob_decode(c.data, c.len, key, 0, c.dict, c.dict_len, cubin, len);
    switch (rc) {
    case KC_OK:
        break;
    case KC_ECORRUPT:
    case KC_ETOOBIG: /* no blob this large could have been stored */
        rc = corrupt_miss(store, KC_REC_BLOB, key, c.data, c.len, rc);
        break;
    case KC_EVERSION:
        rc = fail(store, KC_ENOTFOUND, "blob written by a newer format (store %s)",
                  store->path);
        break;
    case KC_EUNSUPPORTED:
        rc = fail(store, rc, "blob compressed with a zstd dictionary missing from %s",
                  store->path);
        break;
    default:
        rc = finish(store, rc, "get cubin");
    }
    free(c.data);
    free(c.dict);
    return rc;
}

/* ---- writing --------------------------------------------------------------- */

typedef struct put_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    const void *data;
    size_t len;
    unsigned flags;
    int existed; /* MDB_NOOVERWRITE found one */
} put_ctx_t;

static int put_fn(MDB_txn *txn, void *arg)
{
    put_ctx_t *c = arg;
    MDB_val k = key_val(c->key), v = {c->len, (void *)c->data};
    int rc = mdb_put(txn, c->env->dbi[c->kind], &k, &v, c->flags);

    c->existed = rc == MDB_KEYEXIST;
    return c->existed ? 0 : rc;
}

static int check_writable(kc_store_t *st, const char *what)
{
    if (st->readonly)
        return fail(st, KC_EREADONLY, "%s: store %s is read-only", what, st->path);
    return KC_OK;
}

static int write_record(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, unsigned flags, int *existed)
{
    put_ctx_t c = {st->env, kind, key, data, len, flags, 0};
    int rc = kc__env_write(st->env, put_fn, &c);

    if (existed)
        *existed = c.existed;
    return rc;
}

/* Check that a build or tuning is stored under its derived key. */
static int check_derived(kc_store_t *st, const kc_record_t *rec, const kc_key_t *key)
{
    kc_key_t derived;
    char a[KC_KEY_HEX_LEN + 1], b[KC_KEY_HEX_LEN + 1];
    int rc = kc_record_derived_key(rec, &derived);

    if (rc != KC_OK)
        return fail(st, rc, "cannot derive the key of a %s record",
                    kc_rec_kind_name(rec->kind));
    if (memcmp(derived.b, key->b, 16) != 0) {
        kc_key_to_hex(key, a);
        kc_key_to_hex(&derived, b);
        return fail(st, KC_EINVAL, "%s key %s is not the hash of its preimage (%s)",
                    kc_rec_kind_name(rec->kind), a, b);
    }
    return KC_OK;
}

int kc_store_put(kc_store_t *store, const kc_key_t *key, const kc_record_t *rec)
{
    void *enc = NULL;
    size_t len;
    int rc;

    if (!store || !key || !rec)
        return KC_EINVAL;
    begin_call();
    if ((rc = check_writable(store, "put")) != KC_OK)
        return rc;
    if (rec->kind == KC_REC_BLOB)
        return fail(store, KC_EINVAL, "put: blobs are stored with kc_store_put_cubin");
    if (!kind_has_key(rec->kind))
        return fail(store, KC_EINVAL, "put: invalid record kind %d", (int)rec->kind);
    if (rec->kind == KC_REC_BUILD || rec->kind == KC_REC_TUNING) {
        if ((rc = check_derived(store, rec, key)) != KC_OK)
            return rc;
    }
    rc = kc_record_encode(rec, &enc, &len);
    if (rc != KC_OK)
        return fail(store, rc, "put: cannot encode the %s record: %s",
                    kc_rec_kind_name(rec->kind), kc_strerror(rc));
    rc = write_record(store, rec->kind, key, enc, len, 0, NULL);
    kc_free(enc);
    return finish(store, rc, "put");
}

int kc_store_put_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    kc_record_t *rec = NULL;
    int rc, got_kind;

    if (!store || !key || (!data && len))
        return KC_EINVAL;
    begin_call();
    if ((rc = check_writable(store, "put")) != KC_OK)
        return rc;
    if (!kind_has_key(kind))
        return fail(store, KC_EINVAL, "put: invalid record kind %d", (int)kind);
    rc = kc_record_check(data, len, &got_kind, NULL);
    if (rc != KC_OK)
        return fail(store, rc, "put: the %s record does not check: %s",
                    kc_rec_kind_name(kind), kc_strerror(rc));
    if (got_kind != (int)kind)
        return fail(store, KC_EINVAL, "put: a %s record given as a %s record",
                    kc_rec_kind_name(got_kind) ? kc_rec_kind_name(got_kind) : "unknown",
                    kc_rec_kind_name(kind));
    if (kind == KC_REC_BLOB) {
        void *raw = NULL;
        size_t raw_len;
        rc = kc_blob_decode(data, len, key, 0, NULL, 0, &raw, &raw_len);
        kc_free(raw);
        /* A blob made with a dictionary cannot be verified without it; its
         * checksum has been, and reads verify the rest. */
        if (rc != KC_OK && rc != KC_EUNSUPPORTED)
            return fail(store, rc, "put: the blob does not match its key: %s",
                        kc_strerror(rc));
    } else {
        rc = kc_record_decode(data, len, &rec);
        if (rc != KC_OK)
            return fail(store, rc, "put: cannot decode the %s record: %s",
                        kc_rec_kind_name(kind), kc_strerror(rc));
        if (kind == KC_REC_BUILD || kind == KC_REC_TUNING)
            rc = check_derived(store, rec, key);
        kc_free(rec);
        if (rc != KC_OK)
            return rc;
    }
    rc = write_record(store, kind, key, data, len, 0, NULL);
    if (rc == 0 && kind == KC_REC_BLOB)
        kc_store_count(store, KC_COUNTER_BYTES_STORED, len);
    return finish(store, rc, "put");
}

int kc_store_del(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key)
{
    del_ctx_t c;
    int rc;

    if (!store || !key)
        return KC_EINVAL;
    begin_call();
    if ((rc = check_writable(store, "delete")) != KC_OK)
        return rc;
    if (!kind_has_key(kind))
        return fail(store, KC_EINVAL, "delete: invalid record kind %d", (int)kind);
    c = (del_ctx_t){store->env, kind, key, NULL, 0};
    rc = kc__env_write(store->env, del_fn, &c);
    return finish(store, rc, "delete");
}

int kc_store_put_cubin(kc_store_t *store, const void *cubin, size_t len, kc_key_t *key)
{
    kc_key_t k;
    void *rec = NULL;
    size_t rec_len;
    int rc, existed = 0;

    if (!store || (!cubin && len))
        return KC_EINVAL;
    begin_call();
    if ((rc = check_writable(store, "put cubin")) != KC_OK)
        return rc;
    rc = kc_blob_encode(cubin, len, store->zstd_level, &k, &rec, &rec_len);
    if (rc != KC_OK)
        return fail(store, rc, "put cubin: cannot compress %zu bytes: %s", len,
                    kc_strerror(rc));
    rc = write_record(store, KC_REC_BLOB, &k, rec, rec_len, MDB_NOOVERWRITE, &existed);
    kc_free(rec);
    if (rc == 0 && !existed)
        kc_store_count(store, KC_COUNTER_BYTES_STORED, rec_len);
    if (rc == 0 && key)
        *key = k;
    return finish(store, rc, "put cubin");
}

/* ---- publish --------------------------------------------------------------- */

typedef struct enc_rec {
    kc_key_t key;
    void *data;
    size_t len;
    kc_key_t blob;  /* builds: the blob they name */
    int check_blob; /* builds: the blob is not among the publish's cubins */
} enc_rec_t;

typedef struct publish_ctx {
    kc_store_t *st;
    enc_rec_t *cubins;
    size_t n_cubins;
    enc_rec_t *builds;
    size_t n_builds;
    enc_rec_t tuning; /* data NULL if none */
    kc_key_t winner_build;
    int check_winner; /* the winning build is not among the publish's builds */
    pending_t pending;
    uint64_t now;
    /* Set by the last attempt. */
    uint64_t new_bytes;
    int missing_kind; /* which reference was missing, for the message */
    kc_key_t missing;
} publish_ctx_t;

static int key_present(MDB_txn *txn, kc__env_t *env, int kind, const kc_key_t *key)
{
    MDB_val k = key_val(key), v;
    return mdb_get(txn, env->dbi[kind], &k, &v);
}

static int publish_fn(MDB_txn *txn, void *arg)
{
    publish_ctx_t *c = arg;
    kc__env_t *env = c->st->env;
    uint64_t extra[KC_COUNTER_COUNT_] = {0};
    int rc;

    c->new_bytes = 0;
    for (size_t i = 0; i < c->n_cubins; i++) {
        enc_rec_t *e = &c->cubins[i];
        MDB_val k = key_val(&e->key), v = {e->len, e->data};
        rc = mdb_put(txn, env->dbi[KC_REC_BLOB], &k, &v, MDB_NOOVERWRITE);
        if (rc == 0)
            c->new_bytes += e->len;
        else if (rc != MDB_KEYEXIST)
            return rc;
    }
    for (size_t i = 0; i < c->n_builds; i++) {
        enc_rec_t *e = &c->builds[i];
        MDB_val k = key_val(&e->key), v = {e->len, e->data};
        if (e->check_blob) {
            rc = key_present(txn, env, KC_REC_BLOB, &e->blob);
            if (rc == MDB_NOTFOUND) {
                c->missing_kind = KC_REC_BLOB;
                c->missing = e->blob;
                return KC_EINVAL;
            }
            if (rc != 0)
                return rc;
        }
        rc = mdb_put(txn, env->dbi[KC_REC_BUILD], &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    if (c->tuning.data) {
        MDB_val k = key_val(&c->tuning.key), v = {c->tuning.len, c->tuning.data};
        if (c->check_winner) {
            rc = key_present(txn, env, KC_REC_BUILD, &c->winner_build);
            if (rc == MDB_NOTFOUND) {
                c->missing_kind = KC_REC_BUILD;
                c->missing = c->winner_build;
                return KC_EINVAL;
            }
            if (rc != 0)
                return rc;
        }
        rc = mdb_put(txn, env->dbi[KC_REC_TUNING], &k, &v, 0);
        if (rc != 0)
            return rc;
    }

    for (size_t i = 0; i < c->n_cubins; i++)
        if ((rc = usage_stamp(txn, env, &c->cubins[i].key, c->now, 0)) != 0)
            return rc;
    for (size_t i = 0; i < c->n_builds; i++)
        if ((rc = usage_stamp(txn, env, &c->builds[i].key, c->now, 0)) != 0)
            return rc;
    if (c->tuning.data && (rc = usage_stamp(txn, env, &c->tuning.key, c->now, 0)) != 0)
        return rc;

    extra[KC_COUNTER_PUBLISHES] = 1;
    extra[KC_COUNTER_BYTES_STORED] = c->new_bytes;
    return pending_write(txn, env, &c->pending, extra);
}

static void enc_free(enc_rec_t *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        kc_free(e[i].data);
    free(e);
}

static int in_keys(const enc_rec_t *e, size_t n, const kc_key_t *key)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(e[i].key.b, key->b, 16) == 0)
            return 1;
    return 0;
}

int kc_store_publish(kc_store_t *store, const kc_publish_t *pub)
{
    publish_ctx_t c;
    char hex[KC_KEY_HEX_LEN + 1];
    int rc;

    if (!store || !pub || (pub->n_cubins && !pub->cubins) ||
        (pub->n_builds && !pub->builds))
        return KC_EINVAL;
    begin_call();
    if ((rc = check_writable(store, "publish")) != KC_OK)
        return rc;
    memset(&c, 0, sizeof(c));
    c.st = store;
    c.now = now_s();

    /* Everything slow happens here, before the write transaction. */
    c.cubins = calloc(pub->n_cubins ? pub->n_cubins : 1, sizeof(*c.cubins));
    c.builds = calloc(pub->n_builds ? pub->n_builds : 1, sizeof(*c.builds));
    if (!c.cubins || !c.builds) {
        rc = fail(store, KC_ENOMEM, "publish: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pub->n_cubins; i++, c.n_cubins++) {
        const kc_buf_t *b = &pub->cubins[i];
        rc = kc_blob_encode(b->data, b->size, store->zstd_level, &c.cubins[i].key,
                            &c.cubins[i].data, &c.cubins[i].len);
        if (rc != KC_OK) {
            rc = fail(store, rc, "publish: cannot compress cubin %zu (%zu bytes): %s", i,
                      b->size, kc_strerror(rc));
            goto fail;
        }
    }
    for (size_t i = 0; i < pub->n_builds; i++, c.n_builds++) {
        kc_record_t rec = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
        enc_rec_t *e = &c.builds[i];

        rec.u.build = pub->builds[i];
        if ((rc = kc_record_derived_key(&rec, &e->key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &e->data, &e->len)) != KC_OK) {
            rc = fail(store, rc, "publish: cannot encode build %zu: %s", i,
                      kc_strerror(rc));
            goto fail;
        }
        e->blob = pub->builds[i].blob;
        e->check_blob = !in_keys(c.cubins, c.n_cubins, &e->blob);
    }
    if (pub->tuning) {
        kc_record_t rec = {.kind = KC_REC_TUNING, .version = KC_RECORD_VERSION};

        rec.u.tuning = *pub->tuning;
        if ((rc = kc_record_derived_key(&rec, &c.tuning.key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &c.tuning.data, &c.tuning.len)) != KC_OK) {
            rc =
                fail(store, rc, "publish: cannot encode the tuning: %s", kc_strerror(rc));
            goto fail;
        }
        c.winner_build = pub->tuning->winner_build;
        if (kc_key_is_zero(&c.winner_build)) {
            rc = fail(store, KC_EINVAL, "publish: the tuning names no winning build");
            goto fail;
        }
        c.check_winner = !in_keys(c.builds, c.n_builds, &c.winner_build);
    }

    /* References to records outside the publish are checked inside the
     * write transaction, where they cannot vanish before the commit. */
    pending_take(store, &c.pending);
    rc = kc__env_write(store->env, publish_fn, &c);
    if (rc != 0) {
        pending_restore(store, &c.pending);
        if (rc == KC_EINVAL && c.missing_kind) {
            kc_key_to_hex(&c.missing, hex);
            rc = fail(store, KC_EINVAL, "publish: %s %s is neither published nor stored",
                      c.missing_kind == KC_REC_BLOB ? "the blob of a build,"
                                                    : "the tuning's winning build",
                      hex);
        }
        rc = finish(store, rc, "publish");
        goto fail;
    }
    free(c.pending.usage.ent);
    rc = KC_OK;
fail:
    enc_free(c.cubins, c.n_cubins);
    enc_free(c.builds, c.n_builds);
    kc_free(c.tuning.data);
    return rc;
}

/* ---- usage and counters ---------------------------------------------------- */

int kc_store_touch(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key)
{
    size_t len;
    int rc;

    if (!store || !key)
        return KC_EINVAL;
    begin_call();
    if (!kind_has_key(kind) || kind == KC_REC_USAGE)
        return fail(store, KC_EINVAL, "touch: invalid record kind %d", (int)kind);
    if (store->readonly)
        return KC_OK;
    pthread_mutex_lock(&store->pending_lock);
    rc = usage_add(&store->pending.usage, (uint8_t)kind, key, now_s(), 1);
    len = store->pending.usage.len;
    pthread_mutex_unlock(&store->pending_lock);
    if (rc != KC_OK)
        return fail(store, rc, "touch: out of memory");
    if (len >= USAGE_AUTOFLUSH)
        return kc_store_flush(store);
    return KC_OK;
}

void kc_store_count(kc_store_t *store, kc_counter_t counter, uint64_t delta)
{
    if (!store || (int)counter < 0 || counter >= KC_COUNTER_COUNT_)
        return;
    pthread_mutex_lock(&store->pending_lock);
    store->pending.counters[counter] += delta;
    pthread_mutex_unlock(&store->pending_lock);
}

typedef struct flush_ctx {
    kc__env_t *env;
    const pending_t *pending;
} flush_ctx_t;

static int flush_fn(MDB_txn *txn, void *arg)
{
    flush_ctx_t *c = arg;
    return pending_write(txn, c->env, c->pending, NULL);
}

int kc_store_flush(kc_store_t *store)
{
    pending_t p;
    int rc;

    if (!store)
        return KC_EINVAL;
    begin_call();
    pending_take(store, &p);
    if (store->readonly || pending_empty(&p)) {
        free(p.usage.ent);
        return KC_OK;
    }
    flush_ctx_t c = {store->env, &p};
    rc = kc__env_write(store->env, flush_fn, &c);
    if (rc != 0) {
        pending_restore(store, &p);
        return finish(store, rc, "flush");
    }
    free(p.usage.ent);
    return KC_OK;
}

/* ---- iteration and lookup by prefix ---------------------------------------- */

typedef struct iter_ctx {
    kc__env_t *env;
    int kind;
    kc_store_iter_fn fn;
    void *user;
    int stopped; /* the callback's non-zero value, in ret */
    int ret;
} iter_ctx_t;

static int iter_fn(MDB_txn *txn, void *arg)
{
    iter_ctx_t *c = arg;
    int first = c->kind ? c->kind : KC_REC_BLOB;
    int last = c->kind ? c->kind : KC_REC_LEASE;

    for (int kind = first; kind <= last; kind++) {
        MDB_cursor *cur;
        MDB_val k, v;
        int rc = mdb_cursor_open(txn, c->env->dbi[kind], &cur);

        if (rc != 0)
            return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            kc_key_t key;
            if (k.mv_size != sizeof(key.b))
                continue;
            memcpy(key.b, k.mv_data, sizeof(key.b));
            int ret = c->fn(c->user, (kc_rec_kind_t)kind, &key, v.mv_data, v.mv_size);
            if (ret != 0) {
                c->stopped = 1;
                c->ret = ret;
                break;
            }
        }
        mdb_cursor_close(cur);
        if (c->stopped)
            return 0;
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc_store_iterate(kc_store_t *store, int kind, kc_store_iter_fn fn, void *user)
{
    iter_ctx_t c;
    int rc;

    if (!store || !fn)
        return KC_EINVAL;
    begin_call();
    if (kind != 0 && !kind_has_key(kind))
        return fail(store, KC_EINVAL, "iterate: invalid record kind %d", kind);
    c = (iter_ctx_t){store->env, kind, fn, user, 0, 0};
    rc = kc__env_read(store->env, iter_fn, &c);
    if (rc != 0)
        return finish(store, rc, "iterate");
    return c.stopped ? c.ret : KC_OK;
}

typedef struct find_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_prefix_t *prefix;
    int matches;
    kc_rec_kind_t kind_out;
    kc_key_t key_out;
} find_ctx_t;

static int find_fn(MDB_txn *txn, void *arg)
{
    find_ctx_t *c = arg;
    int first = c->kind ? c->kind : KC_REC_BLOB;
    int last = c->kind ? c->kind : KC_REC_LEASE;

    c->matches = 0;
    for (int kind = first; kind <= last && c->matches < 2; kind++) {
        MDB_cursor *cur;
        MDB_val k = key_val(&c->prefix->key), v;
        int rc = mdb_cursor_open(txn, c->env->dbi[kind], &cur);

        if (rc != 0)
            return rc;
        /* Keys sort as bytes, and the prefix's unused digits are zero, so
         * the first key at or after it is the first that can match. */
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && c->matches < 2;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            kc_key_t key;
            if (k.mv_size != sizeof(key.b))
                continue;
            memcpy(key.b, k.mv_data, sizeof(key.b));
            if (!kc_key_prefix_match(c->prefix, &key))
                break;
            c->matches++;
            c->kind_out = (kc_rec_kind_t)kind;
            c->key_out = key;
        }
        mdb_cursor_close(cur);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc_store_find(kc_store_t *store, int kind, const kc_key_prefix_t *prefix,
                  kc_rec_kind_t *kind_out, kc_key_t *key_out)
{
    find_ctx_t c;
    char hex[KC_KEY_HEX_LEN + 1];
    int rc;

    if (!store || !prefix)
        return KC_EINVAL;
    begin_call();
    if (kind != 0 && !kind_has_key(kind))
        return fail(store, KC_EINVAL, "find: invalid record kind %d", kind);
    memset(&c, 0, sizeof(c));
    c.env = store->env;
    c.kind = kind;
    c.prefix = prefix;
    rc = kc__env_read(store->env, find_fn, &c);
    if (rc != 0)
        return finish(store, rc, "find");
    kc_key_to_hex(&prefix->key, hex);
    hex[prefix->nibbles < KC_KEY_HEX_LEN ? prefix->nibbles : KC_KEY_HEX_LEN] = '\0';
    if (c.matches == 0)
        return fail(store, KC_ENOTFOUND, "no record matches %s", hex);
    if (c.matches > 1)
        return fail(store, KC_EAMBIGUOUS, "%s matches more than one record", hex);
    if (kind_out)
        *kind_out = c.kind_out;
    if (key_out)
        *key_out = c.key_out;
    return KC_OK;
}

/* ---- stats ----------------------------------------------------------------- */

typedef struct stats_ctx {
    kc__env_t *env;
    kc_store_stats_t *out;
} stats_ctx_t;

static int stats_fn(MDB_txn *txn, void *arg)
{
    stats_ctx_t *c = arg;
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_stat ms;
    uint8_t buf[4];
    size_t len = 0;
    int rc;

    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        if ((rc = mdb_stat(txn, c->env->dbi[kind], &ms)) != 0)
            return rc;
        c->out->records[kind] = ms.ms_entries;
    }
    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_BLOB], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_blob_rec_t b;
        c->out->blob_stored_bytes += v.mv_size;
        if (kc__blob_view(v.mv_data, v.mv_size, &b) == KC_OK)
            c->out->blob_raw_bytes += b.raw_size;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    for (int i = 0; i < KC_COUNTER_COUNT_; i++) {
        rc = counter_read(txn, c->env, i, &c->out->counters[i]);
        if (rc != 0 && rc != KC_ECORRUPT && rc != KC_EVERSION)
            return rc;
    }
    rc = meta_read(txn, c->env, "format", buf, sizeof(buf), &len);
    if (rc == 0 && len == 4)
        c->out->format_version = kc__load_u32le(buf);
    else if (kc__is_mdb_rc(rc) && rc != MDB_NOTFOUND)
        return rc;

    MDB_envinfo info;
    if ((rc = mdb_env_info(c->env->mdb, &info)) != 0 ||
        (rc = mdb_env_stat(c->env->mdb, &ms)) != 0)
        return rc;
    c->out->map_bytes = info.me_mapsize;
    c->out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    return 0;
}

int kc_store_stats(kc_store_t *store, kc_store_stats_t *out)
{
    stats_ctx_t c = {NULL, out};
    struct stat sb;
    int rc;

    if (!store || !out)
        return KC_EINVAL;
    begin_call();
    memset(out, 0, sizeof(*out));
    c.env = store->env;
    rc = kc__env_read(store->env, stats_fn, &c);
    if (rc != 0)
        return finish(store, rc, "stats");
    pthread_mutex_lock(&store->pending_lock);
    for (int i = 0; i < KC_COUNTER_COUNT_; i++)
        out->counters[i] += store->pending.counters[i];
    pthread_mutex_unlock(&store->pending_lock);
    if (stat(store->data_path, &sb) == 0)
        out->file_bytes = (uint64_t)sb.st_size;
    out->readonly = store->readonly;
    return KC_OK;
}
