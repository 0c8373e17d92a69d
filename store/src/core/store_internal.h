/* What the files of the core layer (store/src/core/) share with each other
 * and with the layers above (ops/, share/). Internal.
 *
 *   open.c        the handle: open, close, format version
 *   messages.c    per-thread messages: kc_store_errmsg, kc__store_fail
 *   meta.c        named meta records, read and written inside a txn
 *   usage.c       buffered usage stamps and counters: touch, count, flush
 *   records.c     get, put and delete one record; cubins; corrupt records
 *   iterate.c     walking every record, and lookup by key prefix
 *   lease.c       leases: cross-process single flight on a key
 *   lmdb_env.c    the process-wide registry of LMDB environments
 *   blob_value.c  blob values as stored: whole, or split head and tail
 *
 * Return codes: functions that run inside a transaction (taking an MDB_txn)
 * return mixed LMDB/kcache codes, as lmdb_env.h describes; the others
 * return kcache codes.
 */
#ifndef KCACHE_STORE_INTERNAL_H
#define KCACHE_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "diag.h"
#include "kcache/store.h"
#include "lmdb_env.h"

typedef struct kc__usage_ent {
    kc_key_t key;
    uint8_t kind; /* 0: empty slot */
    uint64_t last_use;
    uint64_t uses;
} kc__usage_ent_t;

/* An open-addressing table of usage stamps keyed by (kind, key). */
typedef struct kc__usage_tab {
    kc__usage_ent_t *ent;
    size_t cap; /* 0 or a power of two */
    size_t len;
} kc__usage_tab_t;

/* Usage stamps and counter deltas not yet written. */
typedef struct kc__pending {
    kc__usage_tab_t usage;
    uint64_t counters[KC_COUNTER_COUNT_];
} kc__pending_t;

struct kc_store {
    kc__env_t *env;
    char *path;
    char *data_path;
    int readonly;
    int sealed; /* the "sealed" meta record was there at open */
    int zstd_level;
    pthread_mutex_t pending_lock;
    kc__pending_t pending;
    /* The usage flusher (core/usage.c): a thread started on the first
     * automatic flush, so that the write transaction (and its fsync) never
     * runs on a caller's hit path. Under pending_lock. */
    pthread_t flusher;
    pthread_cond_t flush_cv;
    int flusher_started;
    int flush_wanted;
    int flusher_stop;
    /* kc_store_flush calls under way, and a condition signalled when one
     * ends: the flush at process exit waits on it (bounded). */
    int flushes_running;
    pthread_cond_t flushed_cv;
    /* Open handles of this process, for the flush at exit (core/usage.c). */
    struct kc_store *open_prev, *open_next;
    /* The size limit (0: none), resolved at open from the options and
     * KCACHE_MAX_SIZE. Only data here: publish enforces it (ops/gc.c). */
    uint64_t max_size;
    /* After an automatic gc that left the store over its limit (what is
     * left was used since the publish began, or is referenced): the size
     * it left and when, so that the publishes after it do not scan the
     * store again until it has grown or time has passed (ops/gc.c). 0:
     * none. Publishes run on many threads. */
    _Atomic uint64_t gc_stuck_bytes, gc_stuck_at;
};

/* Stop and join the usage flusher (kc_store_close, before its last flush). */
void kc__usage_flusher_stop(kc_store_t *st);

/* Enter a new handle in the list flushed at process exit, and remove it
 * (kc_store_open, kc_store_close). */
void kc__usage_register(kc_store_t *st);
void kc__usage_unregister(kc_store_t *st);

/* ---- messages.c: per-thread messages --------------------------------------- */

/* Messages go through the common diagnostics (common/diag.h): owned by the
 * handle, per thread. */
#define KC__STORE_MSG_SIZE KC__DIAG_SIZE

/* Start a public call on st: the handle's message describes its last failure
 * only, so its old one is forgotten (another object's message is left). */
void kc__store_begin_call(const kc_store_t *st);
/* Set the message kc_store_open_errmsg() returns (layered opens use it). */
void kc__store_set_open_errmsg(const char *msg);

/* Set that message from a format, and return rc. */
__attribute__((format(printf, 2, 3))) int kc__store_open_fail(int rc, const char *fmt,
                                                              ...);

/* Leave a message on st for this thread and return rc. */
__attribute__((format(printf, 3, 4))) int kc__store_fail(const kc_store_t *st, int rc,
                                                         const char *fmt, ...);

/* Turn a mixed LMDB/kcache code into a kcache code, leaving a message that
 * names the operation and the store unless one was already left. A miss
 * leaves none. */
int kc__store_finish(const kc_store_t *st, int rc, const char *what);

/* KC_OK, or KC_EREADONLY with a message naming the operation. */
int kc__store_check_writable(const kc_store_t *st, const char *what);

/* ---- open.c ----------------------------------------------------------------- */

/* The format version in the meta record "format": 0 with *version,
 * MDB_NOTFOUND in a store that has none, KC_ECORRUPT if the value is not 4
 * bytes, or what kc__meta_read gives. */
int kc__store_format_read(MDB_txn *txn, kc__env_t *env, uint32_t *version);

/* ---- meta.c ----------------------------------------------------------------- */

/* Encode rec and put it under k in dbi. */
int kc__txn_put_record(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, const kc_record_t *rec,
                       unsigned flags);

/* The value of meta record name, copied into buf[cap]: *len receives its
 * length. An LMDB code, KC_ECORRUPT, KC_EVERSION, KC_ENOMEM, or KC_ETOOBIG
 * if cap is short. */
int kc__meta_read(MDB_txn *txn, kc__env_t *env, const char *name, void *buf, size_t cap,
                  size_t *len);

/* The same, copied into a new buffer (*value: free with free). */
int kc__meta_read_alloc(MDB_txn *txn, kc__env_t *env, const char *name, void **value,
                        size_t *len);

/* Put meta record name (flags: 0 or MDB_NOOVERWRITE). */
int kc__meta_write(MDB_txn *txn, kc__env_t *env, const char *name, const void *value,
                   size_t len, unsigned flags);

/* ---- usage.c ---------------------------------------------------------------- */

/* The persisted value of counter (0 if it was never written). */
int kc__counter_read(MDB_txn *txn, kc__env_t *env, int counter, uint64_t *value);

/* Read-modify-write the usage record of key in txn. */
int kc__usage_stamp(MDB_txn *txn, kc__env_t *env, const kc_key_t *key, uint64_t last_use,
                    uint64_t uses);

/* Take everything pending, leaving the store's buffers empty. */
void kc__pending_take(kc_store_t *st, kc__pending_t *out);

/* Put back what a failed write did not persist, and empty p. */
void kc__pending_restore(kc_store_t *st, kc__pending_t *p);

/* Write pending stamps and counters, plus extra counter deltas (may be
 * NULL), in txn. */
int kc__pending_write(MDB_txn *txn, kc__env_t *env, const kc__pending_t *p,
                      const uint64_t *extra);

/* ---- totals.c: record totals in the meta database ------------------------ */

/* Slot 0: raw bytes of every blob; slot kind: stored bytes of that kind. */
#define KC__TOTALS_SLOTS (KC_REC_KIND_MAX + 1)

/* Whether the totals count kind (blob, build, tuning, binmeta, group). */
int kc__kind_totaled(int kind);

/* The stored totals: 0, MDB_NOTFOUND in a store that keeps none (made by
 * an older kcache), KC_ECORRUPT, or an LMDB code. Inside a write
 * transaction of kc__env_write, the read includes the transaction's own
 * changes not yet written, and a write (a scan's result) replaces them. */
int kc__totals_read(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS]);
int kc__totals_write(MDB_txn *txn, kc__env_t *env, const uint64_t t[KC__TOTALS_SLOTS]);

/* The totals by a full scan of the counted kinds. */
int kc__totals_scan(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS]);

/* Note that a value of kind was replaced (old and new_val), added (old
 * NULL) or removed (new_val NULL). For a kind other than blob only mv_size
 * is read. */
int kc__totals_note(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *old,
                    const MDB_val *new_val);

/* mdb_put / mdb_del on dbi[kind] keeping the totals: every put or delete
 * of a counted kind goes through these. In a transaction of kc__env_write
 * the changes add up in env->tot, written once before the commit
 * (kc__totals_flush). kc__rec_del gives MDB_NOTFOUND
 * when the record is absent. */
int kc__rec_put(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k, MDB_val *v,
                unsigned flags);
int kc__rec_del(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k);
/* Delete a record as kc_store_del does: a build takes its binmeta with it,
 * and every record but a usage stamp or binmeta the usage stamp under its
 * key. MDB_NOTFOUND when the record itself is absent. In the caller's
 * write transaction (records.c; used by ops/del_many.c too). */
int kc__rec_del_with_dependants(MDB_txn *txn, kc__env_t *env, kc_rec_kind_t kind,
                                const kc_key_t *key);

/* ---- blob_value.c: blob values, whole or split (FORMAT.md revision 1.4) --- */

/* The store format a new store is made with, and the one a store takes
 * with its first split blob (a kcache that reads only format 1 would see
 * a split blob's head as a damaged record). */
#define KC__STORE_FORMAT_FIRST 1
#define KC__STORE_FORMAT_SPLIT 2

/* A buffer that joined blob values are assembled in: the caller's, reused
 * across calls, freed with kc__blob_buf_free. Start it {NULL, 0}. */
typedef struct kc__blob_buf {
    void *p;
    size_t cap;
} kc__blob_buf_t;

void kc__blob_buf_free(kc__blob_buf_t *buf);

/* The record length a blob value stands for: the length its header
 * declares when v is a split blob's head, else v's own. */
size_t kc__blob_value_len(const MDB_val *v);

/* Whether v (read from the "blob" database) is the head of a split blob. */
int kc__blob_value_is_head(const MDB_val *v);

/* Where a blob record of len bytes under a key of key_len bytes is split:
 * the head's length, or 0 if it is stored whole. */
size_t kc__blob_split_head(const kc__env_t *env, size_t key_len, size_t len);

/* Make v, a value of the "blob" database under k (as mdb_get or a cursor
 * gave it), the whole record: a head is joined with its tail into buf (v
 * then points there, valid until buf is reused or freed); a whole value
 * is left as it is, in the map. KC_ECORRUPT for a head whose tail is
 * missing or whose lengths do not add up; else an LMDB code or
 * KC_ENOMEM. */
int kc__blob_value_join(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *v,
                        kc__blob_buf_t *buf);

/* mdb_get of blob k, joined as kc__blob_value_join does. */
int kc__blob_value_get(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *v,
                       kc__blob_buf_t *buf);

/* The parts of blob k as they lie in the map, for madvise: *head from the
 * "blob" database, *tail its tail (0 bytes for a whole blob or a missing
 * tail). An LMDB code; MDB_NOTFOUND when there is no blob k. */
int kc__blob_value_parts(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *head,
                         MDB_val *tail);
/* The bytes LMDB holds for blob k whose value in "blob" is head: head and
 * its tail, if it is a split blob's head and the tail is there; neither is
 * read. An LMDB code. */
int kc__blob_value_held(MDB_txn *txn, kc__env_t *env, const MDB_val *k,
                        const MDB_val *head, size_t *held);

/* Put blob record v under k, split where that saves pages (raising the
 * store's format to 2 in txn), removing the tail of a split value it
 * replaces. flags: 0 or MDB_NOOVERWRITE (MDB_KEYEXIST when k is there).
 * Does not keep the totals: kc__rec_put does. */
int kc__blob_value_put(MDB_txn *txn, kc__env_t *env, const MDB_val *k, const MDB_val *v,
                       unsigned flags);

/* Delete blob k and its tail; MDB_NOTFOUND when absent. */
int kc__blob_value_del(MDB_txn *txn, kc__env_t *env, const MDB_val *k);

/* Delete the tails whose head is gone or whole (a head deleted by a kcache
 * of format 1, which sees it as damaged), adding their number to
 * *removed. For gc's sweep of leftovers. */
int kc__blob_tails_sweep(MDB_txn *txn, kc__env_t *env, uint64_t *removed);

/* mdb_stat of the "blobtail" database (zeros in a store without one). */
int kc__blob_tails_stat(MDB_txn *txn, kc__env_t *env, MDB_stat *ms);

/* The stored lengths of blobs met in key order, from the tails' database
 * walked beside them: a blob's length is its value's plus its tail's, if it
 * has one, found without reading the value itself (a split blob's header
 * is in its head's first overflow page: reading it for every blob of a
 * large cold store is a random read each). For scans over "blob". */
typedef struct kc__tail_walk {
    MDB_cursor *cur; /* NULL: no tails (none, or a store without them) */
    MDB_val k, v;
    int rc; /* of the last cursor move: 0, or MDB_NOTFOUND at the end */
} kc__tail_walk_t;

int kc__tail_walk_open(MDB_txn *txn, kc__env_t *env, kc__tail_walk_t *w);
/* The length of the blob under key whose value (as stored) is v; keys must
 * come in ascending order. */
size_t kc__tail_walk_len(kc__tail_walk_t *w, const MDB_val *key, const MDB_val *v);
void kc__tail_walk_close(kc__tail_walk_t *w);

/* Whether data[len] is a sound record of kind under key: it checks, is of
 * that kind, a blob decompresses to bytes hashing to key (KC_EUNSUPPORTED
 * for a blob made with a dictionary), other kinds decode and, where their
 * key is derived, derive key. On failure, why says what is wrong. */
int kc__record_verify(int kind, const kc_key_t *key, const void *data, size_t len,
                      char *why, size_t cap);

/* mdb_put / mdb_del on dbi[kind], a blob through kc__blob_value_put/_del. */
int kc__value_put(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k, MDB_val *v,
                  unsigned flags);
int kc__value_del(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k);

/* ---- small helpers ---------------------------------------------------------- */

/* Whether kind is stored under a kc_key_t (every kind but meta). */
static inline int kc__kind_has_key(int kind)
{
    return kind >= KC_REC_KIND_MIN && kind <= KC_REC_KIND_MAX && kind != KC_REC_META;
}

/* Whether the record of kind under key carries a key that must equal it:
 * builds and tunings derive it from their preimage, binmeta carries its
 * build's, a group hashes its name (kc_record_derived_key). */
static inline int kc__kind_derives_key(int kind)
{
    return kind == KC_REC_BUILD || kind == KC_REC_TUNING || kind == KC_REC_BINMETA ||
           kind == KC_REC_GROUP;
}

static inline MDB_val kc__key_val(const kc_key_t *key)
{
    MDB_val v = {sizeof(key->b), (void *)key->b};
    return v;
}

static inline uint64_t kc__now_s(void)
{
    return (uint64_t)time(NULL);
}

/* A malloc'd copy of p[n], for bytes that must not outlive the transaction
 * they were read in. Never a zero-byte allocation. */
static inline void *kc__memdup(const void *p, size_t n)
{
    void *copy = malloc(n ? n : 1);
    if (copy)
        memcpy(copy, p, n);
    return copy;
}

#endif
