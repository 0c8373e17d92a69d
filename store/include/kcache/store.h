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

#include "kcache/api.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_store kc_store_t;

/* The newest on-disk store format this kcache reads (it reads 1 and 2),
 * kept in the meta database under "format". A store is made at format 1
 * and raised to 2 by its first split blob (docs/FORMAT.md, revision 1.4).
 * Opening a store of a newer format gives KC_EVERSION. */
#define KC_STORE_FORMAT_VERSION 2

enum {
    /* Open read-only even if the directory is writable. */
    KC_STORE_RDONLY = 1u << 0,
    /* Fail with KC_ENOTFOUND instead of creating a missing store. */
    KC_STORE_NOCREATE = 1u << 1,
    /* Open a sealed store writable all the same (to unseal it:
     * kc_store_set_sealed). */
    KC_STORE_IGNORE_SEAL = 1u << 2,
    /* For kc_layers_open (the launcher sets it): a layer whose data.mdb is
     * damaged (KC_EDAMAGED) is set aside, renamed data.mdb.damaged-<UTC
     * time> in its directory, never deleted, and the layer goes on as a
     * fresh store, or is skipped where it may not be created or the
     * directory is not writable. kc_store_open ignores it. */
    KC_STORE_SET_ASIDE_DAMAGED = 1u << 3,
    /* Writable, but an existing store is mapped read-only until the
     * handle's first write, which reopens it writable (about 0.1-0.3 ms,
     * once). A process that only reads the store (store hits: usage stamps
     * and counters wait in memory) never sets up LMDB's writer, whose
     * 2 MiB dirty-page list is a good part of a first open. The reopen
     * waits for this process's transactions of the store in progress to
     * end (as a write that grows the map does): a kc_store_iterate
     * callback must not wait for another thread that writes the store. A
     * write made from inside a kc_store_iterate callback of the same
     * store, before any other write, fails with KC_EBUSY. The launcher
     * sets it. */
    KC_STORE_LAZY_WRITE = 1u << 4,
};

typedef struct kc_store_opts {
    /* sizeof(kc_store_opts_t), as KC_STORE_OPTS_INIT sets it (kcache/api.h, "Options
     * structs"): fields past it read as their defaults. */
    size_t size;
    unsigned flags;
    /* Initial LMDB map size in bytes (0: 1 GiB). The map grows on demand. */
    uint64_t map_size;
    /* zstd level for blobs put through this handle (0: KC_BLOB_DEFAULT_LEVEL). */
    int zstd_level;
    /* LMDB reader slots (0: 1024). */
    unsigned max_readers;
    /* Size limit in bytes, as kc_store_gc measures size (0: the value of
     * KCACHE_MAX_SIZE, such as "2G" or "500M", if set and valid; else no
     * limit). After a publish through this handle leaves the store above it,
     * the publishing process runs kc_store_gc down to 90% of it. The check
     * costs constant time (the store keeps its records' bytes exact). A gc
     * that could not get under the limit (what is left was used since the
     * publish began, or is referenced) is not run again by this handle's
     * publishes until the store has grown by a sixteenth of the limit or ten
     * seconds have passed: each run reads the whole store. */
    uint64_t max_size;
} kc_store_opts_t;

/* Every option at their defaults: kc_store_opts_t o = KC_STORE_OPTS_INIT; then set
 * fields. */
#define KC_STORE_OPTS_INIT                                                               \
    {                                                                                    \
        .size = sizeof(kc_store_opts_t)                                                  \
    }

/* Open (creating it and its directory if missing and writable) the store in
 * dir. opts may be NULL (every default); KC_EINVAL for an opts->size of 0
 * or larger than this library's kc_store_opts_t. A directory without write permission, or
 * on a read-only filesystem, opens read-only. A writable store on NFS or another network
 * filesystem is refused with KC_ENFS. On failure *out is NULL and kc_store_open_errmsg()
 * says why. */
KC_API int kc_store_open(const char *dir, const kc_store_opts_t *opts, kc_store_t **out);

/* Flush buffered usage stamps and counters, then close. Accepts NULL. */
KC_API void kc_store_close(kc_store_t *store);

/* A message that details the last failure on this handle in this thread
 * (an LMDB or zstd message, a path), or "" when this thread's last kcache
 * failure was another object's: every kcache object (store, launcher,
 * remote, device) reports into one slot per thread, keyed by the object.
 * Valid until the next call on the handle from the same thread. Never NULL. */
KC_API const char *kc_store_errmsg(const kc_store_t *store);

/* The message left by the last failed kc_store_open or kc_layers_open in
 * this thread, or "" if a later kcache failure in this thread replaced it. */
KC_API const char *kc_store_open_errmsg(void);

KC_API int kc_store_is_readonly(const kc_store_t *store);

/* Sealing: a sealed store opens read-only whatever the process's rights
 * (root included, who can write into a `chmod a-w` directory), so a store
 * baked into a container image stays as it was built: in KCACHE_PATH it is
 * a read-only layer and publishes go to the next writable one. The seal is
 * the meta record "sealed" (docs/FORMAT.md). kc_store_set_sealed needs a
 * writable handle: to unseal, open with KC_STORE_IGNORE_SEAL. */
KC_API int kc_store_is_sealed(const kc_store_t *store);
KC_API int kc_store_set_sealed(kc_store_t *store, int sealed);
KC_API const char *kc_store_path(const kc_store_t *store);

/* ---- records ----------------------------------------------------------- */

/* Meta records are keyed by name, not by a kc_key_t: the calls below take
 * kinds KC_REC_BLOB to KC_REC_LEASE, KC_REC_BINMETA and KC_REC_GROUP, give
 * KC_EINVAL for KC_REC_META, and "every kind" (kind 0) means those seven.
 * A group's key is kc_group_key of its name (kc_store_put checks it); see
 * "groups" below.
 *
 * A binmeta record is stored under the key of the build it describes, and
 * only beside it: kc_store_put refuses one (KC_EINVAL) whose build the store
 * does not hold, deleting a build deletes its binmeta, and gc removes it
 * with its build. It has no usage stamp of its own (the stamp under that
 * key is the build's). A read-only store made before binmeta existed has
 * none. */

/* Look up and decode a record (*out: free with kc_free). KC_ENOTFOUND on a
 * miss, including a corrupt record (counted, deleted if writable). */
KC_API int kc_store_get(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                        kc_record_t **out);

/* The stored bytes of a record, unverified (*data: free with kc_free). For
 * tools that inspect or export records as they are. */
KC_API int kc_store_get_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                            void **data, size_t *len);

/* Encode and store a record under key, replacing any old one. Build,
 * tuning and binmeta keys must equal their derived key (KC_EINVAL
 * otherwise; kc_record_derived_key). Blob records go through
 * kc_store_put_cubin. */
KC_API int kc_store_put(kc_store_t *store, const kc_key_t *key, const kc_record_t *rec);

/* Store already-encoded record bytes after checking them (kc_record_check,
 * kind match, derived key). Used by import. */
KC_API int kc_store_put_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                            const void *data, size_t len);

/* Delete a record. KC_ENOTFOUND if absent. */
KC_API int kc_store_del(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key);

/* Delete the records (kinds[i], keys[i]) for i in [0, n) in one write
 * transaction: all of them or, on any error, none. Each goes as by
 * kc_store_del (a build takes its binmeta, a record its usage stamp); a
 * record already absent is skipped. A tool that removes a record together
 * with the records that use it (cachectl rm --cascade) calls this, so that
 * a crash cannot leave half of them.
 *
 * kinds, keys: n entries each, read only during the call (may be NULL when
 * n is 0). *removed (may be NULL) receives how many records were deleted,
 * not counting binmetas and usage stamps that went with them.
 *
 * Returns KC_OK (also when nothing was there to delete); KC_EINVAL for a
 * NULL store or array, or a kind without keyed records (kind 0 or
 * KC_REC_META); KC_EREADONLY for a read-only store; or a store error
 * (KC_ENOSPC, KC_ELMDB, ...). Thread-safe like every store call. */
KC_API int kc_store_del_many(kc_store_t *store, const kc_rec_kind_t *kinds,
                             const kc_key_t *keys, size_t n, size_t *removed);

/* Compress and store a cubin; *key (may be NULL) receives its key.
 * Idempotent: an existing blob is left as it is. */
KC_API int kc_store_put_cubin(kc_store_t *store, const void *cubin, size_t len,
                              kc_key_t *key);

/* Fetch, decompress and verify a cubin (*cubin: free with kc_free). */
KC_API int kc_store_get_cubin(kc_store_t *store, const kc_key_t *key, void **cubin,
                              size_t *len);

/* Look up build record build_key and the cubin of its blob in one read
 * transaction, as kc_store_get(KC_REC_BUILD) followed by kc_store_get_cubin
 * would, and with the same checks: the build's checksum and derived key,
 * the blob's checksum, size bound and hash. The compressed blob is
 * decompressed where it lies in the map, never copied.
 *
 * build_key: the build's key. *build receives the decoded build record,
 * *cubin and *len the raw cubin of its blob.
 *
 * Returns KC_OK; KC_ENOTFOUND if the build or its blob is absent, damaged
 * (counted, and deleted if the store is writable, as by the separate calls)
 * or of a newer format; KC_EUNSUPPORTED for a blob whose zstd dictionary is
 * missing; KC_EINVAL for a NULL argument; or a store error (KC_ENOMEM,
 * KC_ELMDB, ...).
 *
 * On KC_OK the caller owns *build and *cubin: free each with kc_free. On
 * any other code *build and *cubin are NULL and *len is 0. */
KC_API int kc_store_get_build_cubin(kc_store_t *store, const kc_key_t *build_key,
                                    kc_record_t **build, void **cubin, size_t *len);

/* Run the read path once ahead of the first hit: the calls of a
 * launcher's store hit, kc_store_get and kc_store_get_build_cubin, on the
 * first tuning record and its winning build, then the decompression
 * context that decode used is kept for the next thread that decodes (where
 * no cubin could be decoded, kc_blob_warm makes one from a sample). A
 * fresh process's first lookup and decompress then cost about what later
 * ones do. It only reads (a damaged record it meets is handled as by any
 * lookup). The launcher calls it on a pool thread when its first kernel is
 * registered. store may be NULL (the blob path alone). */
KC_API void kc_store_warm(kc_store_t *store);

/* Ask the kernel to read ahead (madvise MADV_WILLNEED) the pages of the
 * most recently used records, newest usage stamp first, until max_bytes of
 * record values are covered (0: every stamped record): each stamp's
 * tuning, build (with its blob), group or blob. Stores are mapped with
 * MDB_NORDAHEAD, so a lookup on a cold machine reads only the pages it
 * needs, one fault at a time; a process that starts with this call (on a
 * spare thread) gets its hot set read in the background instead. It walks
 * every usage stamp (one read transaction; its cost grows with the number
 * of stamps), changes nothing and does not wait for the reads.
 *
 * *bytes and *records (either may be NULL) receive the value bytes and the
 * number of records advised. Returns KC_OK, KC_EINVAL for a NULL store,
 * KC_ENOMEM or a store error. */
KC_API int kc_store_prefetch_hot(kc_store_t *store, uint64_t max_bytes, uint64_t *bytes,
                                 uint64_t *records);

/* Called once per record, in key order, inside one read transaction. data
 * is only valid during the call. Return non-zero to stop; that value is
 * then returned by kc_store_iterate. A write by another thread that must
 * remap the store (a lazily writable store's first, one that grows the
 * map) waits until the iteration returns: the callback must not wait for
 * such a thread. */
typedef int (*kc_store_iter_fn)(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                                const void *data, size_t len);

/* Visit every record of kind (0: every kind, in kind order). */
KC_API int kc_store_iterate(kc_store_t *store, int kind, kc_store_iter_fn fn, void *user);

/* Resolve a hex prefix to one record. kind 0 searches every kind.
 * KC_ENOTFOUND if nothing matches, KC_EAMBIGUOUS if several do. */
KC_API int kc_store_find(kc_store_t *store, int kind, const kc_key_prefix_t *prefix,
                         kc_rec_kind_t *kind_out, kc_key_t *key_out);

/* ---- publish ----------------------------------------------------------- */

/* What one tuning run (or one import of binaries kcache did not compile)
 * produces. Cubins are compressed and hashed, and every record encoded,
 * before the write transaction starts; then blobs, builds, binmetas and the
 * tuning commit together or not at all. A build whose blob is neither among
 * the cubins nor already stored is KC_EINVAL, and so is a binmeta whose
 * build is neither among the builds nor already stored. Fields are only
 * ever appended: a caller that zero-fills the struct gets no binmetas. */
typedef struct kc_publish {
    const kc_buf_t *cubins;
    size_t n_cubins;
    const kc_build_rec_t *builds; /* keys derived from their preimages */
    size_t n_builds;
    const kc_tuning_rec_t *tuning; /* may be NULL */
    /* Launch metadata, each stored under the build key it carries. */
    const kc_binmeta_rec_t *binmetas;
    size_t n_binmetas;
} kc_publish_t;

/* Publishes (and lease calls) from several threads of a process on one store
 * at once share write transactions (group commit): a publish that finds
 * another committing waits for it, then commits, in one transaction and one
 * fsync, with every write queued meanwhile. Each call still commits all or nothing and
 * gets its own result and message: if a shared transaction fails, each of its publishes
 * runs again alone. */
KC_API int kc_store_publish(kc_store_t *store, const kc_publish_t *pub);

/* Publish pubs[0..n) in one write transaction (one fsync): all of them or,
 * on any error, none. Each item is checked as kc_store_publish checks one
 * (a bad item is KC_EINVAL, kc_store_errmsg naming its index); a build,
 * binmeta or tuning may name a record published by an earlier item of the
 * same call. The store's size limit is applied once, after the commit, as
 * after a publish. The result equals n calls of kc_store_publish, except
 * that KC_COUNTER_PUBLISHES grows by n at once. Every cubin is compressed
 * before the transaction starts, so memory holds the whole batch
 * compressed: callers bound their batches (kcache_bench_store fills with
 * 16 kernels a call). Bundle import and import-triton already write a
 * whole bundle or cache in one transaction; concurrent kc_store_publish
 * calls are group-committed (above).
 *
 * Returns KC_OK (also for n 0); KC_EINVAL for a NULL store, NULL pubs with
 * n > 0 or a bad item; KC_EREADONLY; or a store error. */
KC_API int kc_store_publish_many(kc_store_t *store, const kc_publish_t *pubs, size_t n);

/* ---- groups ------------------------------------------------------------ */

/* A group is a set of named files stored together under a name (Triton's
 * cache manager keeps one per cache key): a group record (KC_REC_GROUP,
 * kcache/record.h, kc_group_rec_t) under kc_group_key(name), listing each
 * file's name, size and blob key; each file's bytes are an ordinary blob,
 * compressed, verified on read and shared with every other record that
 * holds the same bytes. A group's usage stamp is its own (a get touches
 * it); gc evicts groups by LRU, age and size as it does tunings, and keeps
 * every blob a group lists. kc_store_get, kc_store_del, kc_store_iterate
 * and kc_layers_get take KC_REC_GROUP like any keyed kind. */

/* One file to put: name (1..255 bytes, no '/', not "." or ".."), and
 * size bytes at data (data may be NULL when size is 0). */
typedef struct kc_group_file {
    const char *name;
    const void *data;
    size_t size;
} kc_group_file_t;

/* Store files[0..n) as the group name (1..KC_GROUP_NAME_MAX bytes, no NUL).
 * Every file is compressed and hashed first; then the blobs and the group
 * record commit in one write transaction, all or nothing.
 *
 * merge 0: the group becomes exactly these files (n may be 0). merge 1: the
 * files are added to the group stored under name (a stored file of the
 * same name is replaced; the others stay); without one, as merge 0. The
 * record's created is kept from the stored group, updated is now.
 *
 * Returns KC_OK; KC_EINVAL for a bad group or file name, a file named
 * twice, NULL data with a size, or more than KC_GROUP_FILES_MAX files (after
 * a merge too), kc_store_errmsg saying which; KC_EREADONLY for a read-only
 * store; KC_ETOOBIG for a file over KC_BLOB_MAX_RAW; or a store error. The
 * caller keeps ownership of files. Like a publish, the put is followed by
 * the store's size limit (KCACHE_MAX_SIZE), sparing what it wrote. */
KC_API int kc_store_group_put(kc_store_t *store, const char *name,
                              const kc_group_file_t *files, size_t n, int merge);

/* Look up the group name: *out receives the decoded record (free with
 * kc_free; its files are sorted by name; read a file's bytes with
 * kc_store_get_cubin(store, &file.blob, ...)). A hit touches the group's
 * usage stamp. Returns KC_OK; KC_ENOTFOUND on a miss, including a damaged
 * record (counted, deleted if writable); KC_EINVAL for a bad name; or a
 * store error. */
KC_API int kc_store_group_get(kc_store_t *store, const char *name, kc_record_t **out);

/* The bytes of file fname of group name, verified (*data: free with
 * kc_free; *len its size). Returns KC_OK; KC_ENOTFOUND when the group, the
 * file in it or its blob is absent or damaged; KC_EINVAL for a NULL
 * argument or bad group name; or a store error. On failure *data is NULL
 * and *len 0. */
KC_API int kc_store_group_read(kc_store_t *store, const char *name, const char *fname,
                               void **data, size_t *len);

/* ---- usage and counters ----------------------------------------------- */

/* Note a use of a record for LRU. Buffered in memory, written on
 * kc_store_flush, on a publish and on close. */
KC_API int kc_store_touch(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key);

typedef enum kc_counter {
    KC_COUNTER_HITS = 0,
    KC_COUNTER_MISSES,
    KC_COUNTER_CORRUPT,
    KC_COUNTER_BYTES_STORED, /* compressed blob bytes ever written */
    KC_COUNTER_PUBLISHES,
    KC_COUNTER_COMPILES,
    KC_COUNTER_TUNES,
    KC_COUNTER_EVICTIONS,      /* records removed to keep the store under its limit */
    KC_COUNTER_MISS_NO_TUNING, /* no tuning stored for the signature */
    KC_COUNTER_MISS_BUILD_UNUSABLE, /* a tuning, but its build or cubin missing or bad */
    KC_COUNTER_COMPILE_US_SAVED,    /* stored builds' compile_us, summed over hits */
    KC_COUNTER_TUNE_US_SAVED,       /* stored tunings' tuning_us, summed over hits */
    KC_COUNTER_USAGE_DROPPED,       /* usage stamps dropped: the flusher fell behind */
    /* The remote tier, as the launchers on this store used it
     * (kc_remote_stats_t; docs/RELIABILITY.md, "Remote tier"): */
    KC_COUNTER_REMOTE_PUSHES,     /* tunings and builds written to the remote */
    KC_COUNTER_REMOTE_PULLS,      /* tunings and builds brought in from it */
    KC_COUNTER_REMOTE_DROPS,      /* pushes dropped: the write-behind queue was full */
    KC_COUNTER_REMOTE_REJECTED,   /* pulls refused: failed checks or signatures */
    KC_COUNTER_REMOTE_TIMEOUTS,   /* connects or commands that timed out */
    KC_COUNTER_REMOTE_ERRORS,     /* other remote failures */
    KC_COUNTER_REMOTE_UNTRUSTED,  /* pulls refused by the trust keys: unsigned,
                                   * signed by another key, bad signature */
    KC_COUNTER_DAMAGED_SET_ASIDE, /* damaged store files set aside in this directory */
    KC_COUNTER_COUNT_
} kc_counter_t;

/* "hits", "misses", ...; NULL if unknown. */
KC_API const char *kc_counter_name(int counter);

/* Add to a persistent counter. Buffered like usage stamps. */
KC_API void kc_store_count(kc_store_t *store, kc_counter_t counter, uint64_t delta);

/* Reset every persistent counter to zero and drop the deltas buffered in
 * this handle (other processes' buffered deltas still arrive later).
 * Returns KC_OK, KC_EREADONLY for a read-only store, or a store error. */
KC_API int kc_store_counters_zero(kc_store_t *store);

/* Write buffered usage stamps and counter deltas in one transaction.
 * A read-only store drops them. */
KC_API int kc_store_flush(kc_store_t *store);

/* Record counts come from LMDB's per-database entry counts, byte sums from
 * the totals kept in the meta database (docs/FORMAT.md, "totals"), updated
 * in the transaction of every put and delete: both are exact and read in
 * constant time. A store made before revision 1.3 has no totals: the first
 * kc_store_stats computes them by a scan, and stores them when the store
 * is writable (a read-only one is scanned each time; totals_scanned says
 * so). */
typedef struct kc_store_stats {
    uint64_t records[KC_REC_KIND_MAX + 1]; /* by kind; [0] unused */
    uint64_t blob_raw_bytes;               /* sum of raw cubin sizes */
    uint64_t blob_stored_bytes;            /* sum of encoded blob records */
    uint64_t counters[KC_COUNTER_COUNT_];  /* persisted + buffered */
    uint64_t file_bytes;                   /* size of data.mdb */
    uint64_t map_bytes;                    /* current map size */
    uint64_t used_bytes; /* pages in use: the file's pages less LMDB's free
                            pages, which later writes reuse */
    uint32_t format_version;
    int readonly;
    /* Stored value bytes of every blob, build, tuning, binmeta and group
     * record: file_bytes / record_bytes is the on-disk overhead. */
    uint64_t record_bytes;
    int totals_scanned; /* the byte sums came from a full scan */
} kc_store_stats_t;

KC_API int kc_store_stats(kc_store_t *store, kc_store_stats_t *out);

/* kc_store_stats with the byte sums computed by a full scan, whatever the
 * store keeps (totals_scanned is 1); on a writable handle the scan runs in
 * a write transaction and replaces the kept totals with its result (a
 * repair). cachectl verify compares the two. */
KC_API int kc_store_stats_scan(kc_store_t *store, kc_store_stats_t *out);

/* ---- gc and compaction ------------------------------------------------- */

/* The size gc measures and limits: the sum of the stored (encoded, so
 * compressed for blobs) value bytes of every blob, build, tuning and group
 * record.
 * Usage, lease and meta records, keys and LMDB's page overhead are not
 * counted; data.mdb is larger, and does not shrink until kc_store_compact. */

typedef struct kc_gc_opts {
    /* sizeof(kc_gc_opts_t), as KC_GC_OPTS_INIT sets it (kcache/api.h, "Options
     * structs"): fields past it read as their defaults. */
    size_t size;
    uint64_t max_bytes;  /* evict until the size is at most this (0: no limit) */
    uint64_t older_than; /* evict what was last used this many seconds ago (0: none) */
    int dry_run;         /* plan and report, change nothing */
    int list;            /* fill report->items */
    uint64_t now;        /* the current time in unix seconds (0: time(NULL)) */
    /* Called, when not NULL, from the calling thread as gc goes, for a
     * progress display: phase "scan" with done records of total (every
     * blob, build, tuning and group) read into the plan, every 4,096 and
     * at the end; then, unless dry_run, phase "delete" with done planned
     * evictions of total, after each write transaction. */
    void (*progress)(void *user, const char *phase, uint64_t done, uint64_t total);
    void *progress_user;
} kc_gc_opts_t;

/* No limit, no age, no dry run at their defaults: kc_gc_opts_t o = KC_GC_OPTS_INIT; then
 * set fields. */
#define KC_GC_OPTS_INIT                                                                  \
    {                                                                                    \
        .size = sizeof(kc_gc_opts_t)                                                     \
    }

/* One record that gc removed (or, in a dry run, would remove). */
typedef struct kc_gc_item {
    kc_rec_kind_t kind; /* KC_REC_TUNING, KC_REC_GROUP, KC_REC_BUILD or KC_REC_BLOB */
    kc_key_t key;
    uint64_t last_use; /* unix seconds: its usage stamp, else its created time */
    uint64_t bytes;    /* its stored bytes */
} kc_gc_item_t;

typedef struct kc_gc_report {
    /* by kind: builds, tunings, groups, blobs; binmeta removed with their builds
     * or found without one */
    uint64_t evicted[KC_REC_KIND_MAX + 1];
    uint64_t bytes_freed;             /* stored bytes of every removed record */
    uint64_t size_before, size_after; /* the size defined above */
    uint64_t file_before, file_after; /* size of data.mdb */
    uint64_t skipped;    /* planned evictions skipped: used or republished meanwhile */
    kc_gc_item_t *items; /* with opts->list, in eviction order; free with kc_free */
    size_t n_items;
    uint64_t usage_swept;  /* usage stamps whose record was gone */
    uint64_t leases_swept; /* expired leases */
} kc_gc_report_t;

/* Evict records, least recently used first, and sweep blobs.
 *
 * A tuning's last use is its usage stamp (kc_store_touch, publish), or its
 * created time if it has none. A build counts as used when it, or any
 * tuning that names it as winner, was: so a build is never evicted before
 * the tunings that would lead to it, and evicting a build evicts any such
 * tuning still left with it. No tuning is ever left whose winning build is
 * gone. After evictions, blobs that no remaining build references are swept
 * (mark and sweep over every build record), as are blobs found already
 * unreferenced, unless their usage stamp is less than 10 minutes old (a
 * publish stamps its blobs). No build is ever left whose blob is gone.
 * Usage records of removed records are deleted, and so are (unless
 * dry_run) usage records whose record is gone for another reason and
 * leases past their time to live. A removed build's binmeta goes with it,
 * and (unless dry_run) a binmeta whose build is gone for another reason is
 * swept; both are counted in evicted[KC_REC_BINMETA].
 *
 * A group is a unit of its own, like a tuning: its last use is its usage
 * stamp (kc_store_group_get, kc_store_group_put), else its updated time,
 * and it is evicted by the same age and size rules, oldest first with the
 * tunings and builds. Every blob a group's file names stays while the
 * group does; when a group goes, those of its blobs that nothing else
 * references go in the same run.
 *
 * With opts->older_than, records last used before now - older_than go; with
 * opts->max_bytes, the least recently used go until the size is at most
 * max_bytes. Both may be given. The plan is made in a read transaction;
 * the deletions run in write transactions of bounded size, where each record
 * is checked again: one used or republished since the plan stays (counted
 * in report->skipped). Buffered usage stamps are flushed first. Removed
 * records are added to the persistent counter KC_COUNTER_EVICTIONS.
 *
 * opts is required, with its size set (KC_GC_OPTS_INIT). report may be
 * NULL; with opts->list its items must be freed by the caller (kc_free).
 * Returns KC_OK, KC_EINVAL (also for a bad opts->size), KC_EREADONLY (unless
 * dry_run), KC_ENOMEM or a store error. */
KC_API int kc_store_gc(kc_store_t *store, const kc_gc_opts_t *opts,
                       kc_gc_report_t *report);

/* Rewrite data.mdb without its free pages (mdb_env_copy2 with
 * MDB_CP_COMPACT into a temporary directory inside the store, fsync, then
 * rename over data.mdb). Only safe while no other process has the store
 * open, since a process that maps the old file would never see the new one:
 * compact takes LMDB's lock file exclusively for the whole operation, which
 * also holds off processes that start opening the store, and gives KC_EBUSY
 * (its message names a process) if any other process has it open. Every
 * handle of this process on the store stays valid: its environment is
 * reopened on the new file. Must not be called from a thread inside a
 * transaction of the store (an iterate callback): KC_EBUSY.
 *
 * before and after (either may be NULL) receive the size of data.mdb.
 * Returns KC_OK, KC_EBUSY, KC_EREADONLY, KC_EIO, KC_ENOSPC or a store
 * error. */
KC_API int kc_store_compact(kc_store_t *store, uint64_t *before, uint64_t *after);

/* A consistent, compacted copy of the store (which may be in use, by this
 * and other processes, readers and writers) in a new directory dst: LMDB's
 * copy under one read transaction, so it holds the state of exactly one
 * commit, without free pages, plus this handle's buffered stamps and
 * counters. The copy is made beside dst and renamed to it: dst either does
 * not exist or is a whole store. For container images: `cp` of a store in
 * use can copy pages of different commits. *bytes (may be NULL) receives
 * the size of the copy's data.mdb. KC_EEXIST if dst exists; KC_EIO and
 * other codes with the reason in kc_store_errmsg. */
KC_API int kc_store_snapshot(kc_store_t *store, const char *dst, uint64_t *bytes);

/* What kc_store_recover found and saved, by record kind (index
 * kc_rec_kind_t; usage, lease and meta records are not carried over). */
typedef struct kc_recover_stats {
    uint64_t pages;                         /* pages of the source file scanned */
    uint64_t found[KC_REC_KIND_MAX + 1];    /* distinct keys with a record of the kind */
    uint64_t saved[KC_REC_KIND_MAX + 1];    /* verified and written to the new store */
    uint64_t damaged[KC_REC_KIND_MAX + 1];  /* keys whose every copy failed its checks */
    uint64_t expected[KC_REC_KIND_MAX + 1]; /* entries the source's database records
                                               name (the largest seen), 0 if none */
} kc_recover_stats_t;

/* Salvage a damaged store: scan every page of src_dir/data.mdb with pread
 * (never mapping it; pages unreachable from a broken tree included),
 * decode each candidate record, verify it (record checks, derived keys, a
 * blob's hash against its key), and write the first good copy per key into
 * a new store at dst_dir (which must not hold a store: KC_EEXIST). The
 * source is only read. out (may be NULL) receives the counts; a record the
 * source lost is expected - saved where its database record was found. A
 * blob compressed with a dictionary cannot be verified without it and is
 * counted damaged. Errors: kc_store_open_errmsg(). */
KC_API int kc_store_recover(const char *src_dir, const char *dst_dir,
                            kc_recover_stats_t *out);

/* Parse a size, as ccache spells one: a decimal number, whole or with a
 * fraction ("5", "1.5"; no sign, no space), then an optional unit:
 *   none             GiB: "5" is 5 GiB, "1.5" is 1.5 GiB
 *   K, M, G, T       powers of 1000: "500M" is 500,000,000 bytes
 *   Ki, Mi, Gi, Ti   powers of 1024: "1.5Gi" is 1,610,612,736 bytes
 *   B                bytes: "4096B"
 * Either unit may end with B ("1GB" is "1G", "1GiB" is "1Gi"); letters
 * in either case. A fraction of a byte is dropped. "0" is 0, which the
 * callers take as "no limit" (or as their default). KC_EINVAL for
 * anything else: empty, negative, garbage, an overflow of 64 bits. */
KC_API int kc_size_parse(const char *text, uint64_t *bytes);

/* Parse a duration: a decimal number, whole or with a fraction, then an
 * optional unit, in either case: none or s (seconds), m (minutes), h
 * (hours), d (days), w (weeks): "30d", "12h", "1.5h", "45m", "3600".
 * A fraction of a second is dropped. KC_EINVAL for anything else: empty,
 * negative, garbage, an overflow of 64 bits. */
KC_API int kc_duration_parse(const char *text, uint64_t *seconds);

/* ---- zstd dictionary --------------------------------------------------- */

/* Fewest blobs kc_store_train_dict trains on. */
#define KC_DICT_MIN_SAMPLES 10
/* Default dictionary size (zstd's own default, 110 KiB). */
#define KC_DICT_DEFAULT_SIZE 112640

typedef struct kc_dict_report {
    uint32_t dict_id;       /* the trained dictionary's id (0 if none) */
    uint64_t dict_bytes;    /* its size */
    uint64_t blobs;         /* blobs in the store */
    uint64_t samples;       /* blobs trained on */
    uint64_t recompressed;  /* blobs rewritten (dry run: that would be) */
    uint64_t raw_bytes;     /* sum of raw cubin sizes */
    uint64_t stored_before; /* sum of encoded blob records before */
    uint64_t stored_after;  /* after (dry run: projected); no dictionary */
} kc_dict_report_t;

/* Train a zstd dictionary of dict_size bytes (0: KC_DICT_DEFAULT_SIZE) on
 * the store's cubins, keep it as meta record "dict.<id>", and recompress
 * with it every blob that it makes smaller, in bounded write transactions.
 * Blobs that it would not shrink, and blobs made with an older dictionary
 * that compress better with it, stay as they are, so older dictionaries
 * are kept. The dictionary is stored only if some blob uses it. A blob
 * deleted meanwhile is not brought back. With dry_run, nothing is written
 * and report says what would be. report may be NULL.
 *
 * Returns KC_OK; KC_EINVAL for fewer than KC_DICT_MIN_SAMPLES readable
 * blobs or a bad size; KC_EREADONLY (unless dry_run); KC_EZSTD when
 * training fails; or a store error. Blobs already rewritten stay rewritten
 * when a later transaction fails: each is valid on its own. */
KC_API int kc_store_train_dict(kc_store_t *store, size_t dict_size, int dry_run,
                               kc_dict_report_t *report);

/* ---- leases ------------------------------------------------------------ */

/* Leases give single flight across processes: the launcher takes one on a
 * tuning key before it tunes, and on a build key before it compiles, so
 * that processes missing the same thing at once do the work once.
 *
 * The owner is this process: its host name (gethostname), the machine's
 * boot id (/proc/sys/kernel/random/boot_id) and its pid. A lease is dead
 * once now > start + ttl_ms (unix milliseconds), or when it belongs to this
 * host and boot and its pid no longer exists; a dead lease is taken over.
 * Processes of the same host name and boot in different pid namespaces
 * (containers sharing a store and a host name) cannot check each other's
 * pids: give them different host names, or rely on the time to live. */

/* Take the lease on key for ttl_ms (> 0) milliseconds: atomically, in one
 * write transaction. Taking a lease this process already holds renews it
 * (its start becomes now).
 *
 * Returns KC_OK when this process now holds the lease; KC_EBUSY when
 * another live owner holds it, and then *holder_out (may be NULL) describes
 * that owner: its strings point into thread-local memory valid until this
 * thread's next lease call. KC_EINVAL for a NULL store or key or a zero
 * ttl, KC_EREADONLY for a read-only store, or a store error. */
KC_API int kc_store_lease_acquire(kc_store_t *store, const kc_key_t *key, uint64_t ttl_ms,
                                  kc_lease_rec_t *holder_out);

/* Release the lease on key if this process holds it. Returns KC_OK once it
 * is deleted; KC_ENOTFOUND if there is none or another owner holds it (it
 * is then left alone); KC_EINVAL, KC_EREADONLY or a store error. */
KC_API int kc_store_lease_release(kc_store_t *store, const kc_key_t *key);

/* Release, in one write transaction, the leases on keys[0..n) that this
 * process holds; the others (absent, or another owner's) are left alone.
 * *released (may be NULL) is set to how many were deleted. KC_OK (also
 * when none was held, and for n == 0), KC_EINVAL for a NULL store, or NULL
 * keys with n > 0, KC_EREADONLY, or a store error (then none is released).
 *
 * Lease calls from several threads of a process at once share write
 * transactions, as publishes do: each still gets its own result. */
KC_API int kc_store_lease_release_many(kc_store_t *store, const kc_key_t *keys, size_t n,
                                       size_t *released);

#ifdef __cplusplus
}
#endif
#endif
