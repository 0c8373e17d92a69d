/* The kcache store: an LMDB environment in one directory holding blob, build,
 * tuning, usage, lease and meta records, one named database per kind.
 *
 * Thread safety: a kc_store_t may be used from many threads at once. Opening
 * the same directory twice in one process shares one LMDB environment (the
 * registry is keyed by the data file's device and inode).
 *
 * Integrity: every read verifies the record's checksum; blob reads also check
 * that the decompressed bytes hash to the key. A record that fails is treated
 * as a miss (KC_ENOTFOUND): it is counted as corrupt and, when the store is
 * writable, deleted so that it gets rebuilt.
 */
#ifndef KCACHE_STORE_H
#define KCACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_store kc_store_t;

/* The on-disk format version, kept in the meta database under "format".
 * Opening a store of a newer format gives KC_EVERSION. */
#define KC_STORE_FORMAT_VERSION 1

enum {
    /* Open read-only even if the directory is writable. */
    KC_STORE_RDONLY = 1u << 0,
    /* Fail with KC_ENOTFOUND instead of creating a missing store. */
    KC_STORE_NOCREATE = 1u << 1,
};

typedef struct kc_store_opts {
    unsigned flags;
    /* Initial LMDB map size in bytes (0: 1 GiB). The map grows on demand. */
    uint64_t map_size;
    /* zstd level for blobs put through this handle (0: KC_BLOB_DEFAULT_LEVEL). */
    int zstd_level;
    /* LMDB reader slots (0: 1024). */
    unsigned max_readers;
} kc_store_opts_t;

/* Open (creating it and its directory if missing and writable) the store in
 * dir. opts may be NULL. A directory without write permission, or on a
 * read-only filesystem, opens read-only. A writable store on NFS or another
 * network filesystem is refused with KC_ENFS. On failure *out is NULL and
 * kc_store_open_errmsg() says why. */
int kc_store_open(const char *dir, const kc_store_opts_t *opts, kc_store_t **out);

/* Flush buffered usage stamps and counters, then close. Accepts NULL. */
void kc_store_close(kc_store_t *store);

/* A message that details the last failure on this handle in this thread
 * (an LMDB or zstd message, a path). Valid until the next call on the
 * handle from the same thread. Never NULL. */
const char *kc_store_errmsg(const kc_store_t *store);

/* The message left by the last failed kc_store_open in this thread. */
const char *kc_store_open_errmsg(void);

int kc_store_is_readonly(const kc_store_t *store);
const char *kc_store_path(const kc_store_t *store);

/* ---- records ----------------------------------------------------------- */

/* Meta records are keyed by name, not by a kc_key_t: the calls below take
 * kinds KC_REC_BLOB to KC_REC_LEASE, give KC_EINVAL for KC_REC_META, and
 * "every kind" (kind 0) means those five. */

/* Look up and decode a record (*out: free with kc_free). KC_ENOTFOUND on a
 * miss, including a corrupt record (counted, deleted if writable). */
int kc_store_get(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                 kc_record_t **out);

/* The stored bytes of a record, unverified (*data: free with kc_free). For
 * tools that inspect or export records as they are. */
int kc_store_get_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     void **data, size_t *len);

/* Encode and store a record under key, replacing any old one. Build and
 * tuning keys must equal their derived key (KC_EINVAL otherwise). Blob
 * records go through kc_store_put_cubin. */
int kc_store_put(kc_store_t *store, const kc_key_t *key, const kc_record_t *rec);

/* Store already-encoded record bytes after checking them (kc_record_check,
 * kind match, derived key). Used by import. */
int kc_store_put_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len);

/* Delete a record. KC_ENOTFOUND if absent. */
int kc_store_del(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key);

/* Compress and store a cubin; *key (may be NULL) receives its key.
 * Idempotent: an existing blob is left as it is. */
int kc_store_put_cubin(kc_store_t *store, const void *cubin, size_t len, kc_key_t *key);

/* Fetch, decompress and verify a cubin (*cubin: free with kc_free). */
int kc_store_get_cubin(kc_store_t *store, const kc_key_t *key, void **cubin, size_t *len);

/* Called once per record, in key order, inside one read transaction. data
 * is only valid during the call. Return non-zero to stop; that value is
 * then returned by kc_store_iterate. */
typedef int (*kc_store_iter_fn)(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                                const void *data, size_t len);

/* Visit every record of kind (0: every kind, in kind order). */
int kc_store_iterate(kc_store_t *store, int kind, kc_store_iter_fn fn, void *user);

/* Resolve a hex prefix to one record. kind 0 searches every kind.
 * KC_ENOTFOUND if nothing matches, KC_EAMBIGUOUS if several do. */
int kc_store_find(kc_store_t *store, int kind, const kc_key_prefix_t *prefix,
                  kc_rec_kind_t *kind_out, kc_key_t *key_out);

/* ---- publish ----------------------------------------------------------- */

/* What one tuning run produces. Cubins are compressed and hashed, and
 * every record encoded, before the write transaction starts; then blobs,
 * builds and the tuning commit together or not at all. A build whose blob
 * is neither among the cubins nor already stored is KC_EINVAL. */
typedef struct kc_publish {
    const kc_buf_t *cubins;
    size_t n_cubins;
    const kc_build_rec_t *builds; /* keys derived from their preimages */
    size_t n_builds;
    const kc_tuning_rec_t *tuning; /* may be NULL */
} kc_publish_t;

int kc_store_publish(kc_store_t *store, const kc_publish_t *pub);

/* ---- usage and counters ----------------------------------------------- */

/* Note a use of a record for LRU. Buffered in memory, written on
 * kc_store_flush, on a publish and on close. */
int kc_store_touch(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key);

typedef enum kc_counter {
    KC_COUNTER_HITS = 0,
    KC_COUNTER_MISSES,
    KC_COUNTER_CORRUPT,
    KC_COUNTER_BYTES_STORED, /* compressed blob bytes ever written */
    KC_COUNTER_PUBLISHES,
    KC_COUNTER_COMPILES,
    KC_COUNTER_TUNES,
    KC_COUNTER_COUNT_
} kc_counter_t;

/* "hits", "misses", ...; NULL if unknown. */
const char *kc_counter_name(int counter);

/* Add to a persistent counter. Buffered like usage stamps. */
void kc_store_count(kc_store_t *store, kc_counter_t counter, uint64_t delta);

/* Write buffered usage stamps and counter deltas in one transaction.
 * A read-only store drops them. */
int kc_store_flush(kc_store_t *store);

typedef struct kc_store_stats {
    uint64_t records[KC_REC_KIND_MAX + 1]; /* by kind; [0] unused */
    uint64_t blob_raw_bytes;               /* sum of raw cubin sizes */
    uint64_t blob_stored_bytes;            /* sum of encoded blob records */
    uint64_t counters[KC_COUNTER_COUNT_];  /* persisted + buffered */
    uint64_t file_bytes;                   /* size of data.mdb */
    uint64_t map_bytes;                    /* current map size */
    uint64_t used_bytes;                   /* pages in use */
    uint32_t format_version;
    int readonly;
} kc_store_stats_t;

int kc_store_stats(kc_store_t *store, kc_store_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
