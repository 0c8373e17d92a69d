/* Bundles: a portable stream of store records (.kcb), for moving cached
 * kernels between machines and into container images.
 *
 * A bundle is a header, one frame per record (the record's bytes exactly as
 * stored: blobs stay compressed, and a zstd dictionary a blob needs travels
 * as its own frame), and a trailer holding the record count and a digest of
 * everything before it. docs/FORMAT.md gives the layout byte by byte.
 *
 * Export writes sequentially and import reads sequentially: either end may
 * be a pipe. Import reads the whole bundle into memory (bounded), validates
 * every frame and every record, and only then writes all of them in one
 * write transaction: a truncated or damaged bundle changes nothing.
 *
 * Usage records (local LRU state) and leases are never exported. The store
 * handle's message (kc_store_errmsg) says where a failed import broke.
 * Thread safety: as for the store handle.
 */
#ifndef KCACHE_BUNDLE_H
#define KCACHE_BUNDLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kcache/api.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The bundle format version written in the header. */
#define KC_BUNDLE_VERSION 1
/* The default bound on the size of a bundle that import accepts: 4 GiB. */
#define KC_BUNDLE_DEFAULT_MAX ((uint64_t)4 << 30)

/* Which records an export selects. A zeroed filter selects everything. */
typedef struct kc_bundle_filter {
    /* Only builds and tunings for this target arch ("sm_90"); NULL: any. */
    const char *arch;
    /* Only builds and tunings whose kernel entry matches this fnmatch(3)
     * glob; NULL: any. */
    const char *name;
    /* Only builds and tunings created strictly after this unix time; 0: any. */
    uint64_t since;
    /* Only tunings, and the builds and blobs their winners need. */
    int tuned_only;
} kc_bundle_filter_t;

/* Closure: a selected tuning always brings its winning build, a selected
 * build its blob and the blob's dictionary, and a selected group the blobs
 * of its files. Groups are selected by name (the group's) and since (its
 * updated time); a filter by arch or tuned_only selects no group. A build whose blob is
 * missing or damaged is left out, and so is a tuning whose winning build is
 * left out. With no filter set, every blob is exported, referenced or not;
 * with one, only the blobs of selected builds. */

typedef enum kc_bundle_prefer {
    /* A tuning already in the store is kept (the default). */
    KC_PREFER_EXISTING = 0,
    /* The bundle's tuning replaces the stored one. */
    KC_PREFER_INCOMING = 1,
    /* The tuning whose winner has the lower median time is kept; a tie keeps
     * the stored one. */
    KC_PREFER_FASTER = 2,
} kc_bundle_prefer_t;
/* A group stored with other contents than the bundle's is settled the same
 * way: existing keeps it, incoming replaces it, and faster keeps the one
 * with the later updated time (the stored one on a tie). */

typedef struct kc_bundle_import_opts {
    /* sizeof(kc_bundle_import_opts_t), as KC_BUNDLE_IMPORT_OPTS_INIT sets it
     * (kcache/api.h, "Options structs"): fields past it read as their defaults. */
    size_t size;
    kc_bundle_prefer_t prefer;
    /* Refuse bundles larger than this many bytes (0: KC_BUNDLE_DEFAULT_MAX). */
    uint64_t max_bytes;
    /* Names the bundle in messages ("bundle.kcb", "-"); NULL: "bundle". */
    const char *name;
    /* A trusted public key (see "Signed bundles" below), or NULL. When set,
     * only a bundle signed by this key imports: an unsigned one, one signed
     * by another key or one whose signature does not verify is refused with
     * KC_ESIGNATURE. Not referenced after the call. */
    const struct kc_bundle_key *trust;
} kc_bundle_import_opts_t;

/* Every option at their defaults: kc_bundle_import_opts_t o = KC_BUNDLE_IMPORT_OPTS_INIT;
 * then set fields. */
#define KC_BUNDLE_IMPORT_OPTS_INIT                                                       \
    {                                                                                    \
        .size = sizeof(kc_bundle_import_opts_t)                                          \
    }

/* What an export wrote or an import found and did. */
typedef struct kc_bundle_stats {
    uint64_t records; /* records in the bundle */
    uint64_t blobs, builds, tunings, dicts;
    uint64_t bytes; /* size of the bundle */
    /* Export: records left out because they are damaged or incomplete. */
    uint64_t damaged;
    /* Import: records written, records already stored with the same
     * contents (or, for blobs and builds, the same key), tunings that
     * replaced a different stored one, and tunings of the bundle that lost
     * to a different stored one. */
    uint64_t added, present, replaced, kept;
    /* Whether the bundle carries a signature (verified, for an import that
     * succeeded), and the signer's public key. */
    int is_signed;
    uint8_t signer[32];
    /* binmeta records in the bundle (each beside its build). */
    uint64_t binmeta;
    /* group records in the bundle (their files' blobs are counted in blobs). */
    uint64_t groups;
} kc_bundle_stats_t;

/* Write the records selected by filter (NULL: every record) to out as one
 * bundle, read from one consistent snapshot of the store. out is written
 * sequentially and not closed; it need not be seekable. stats may be NULL.
 *
 * Returns KC_OK, KC_EIO when out cannot be written, or a store error; the
 * details are on the handle. After a failure, out holds an incomplete
 * bundle, which import rejects. */
KC_API int kc_bundle_export(kc_store_t *store, const kc_bundle_filter_t *filter,
                            FILE *out, kc_bundle_stats_t *stats);

/* Read a whole bundle from in (sequentially, until end of file), validate
 * it, and write its records to store in one transaction. opts and stats may
 * be NULL; KC_EINVAL for an opts->size of 0 or larger than this library's. Importing the
 * same bundle twice changes nothing the second time.
 *
 * Returns KC_OK; KC_ECORRUPT for a truncated or damaged bundle (a frame or
 * trailer checksum, a record's checksum, a key that does not match its
 * record, a cubin that does not hash to its key, bytes after the trailer);
 * KC_EVERSION for a bundle of a newer format; KC_ETOOBIG past the size
 * bound; KC_EUNSUPPORTED for a blob whose dictionary is neither in the
 * bundle nor in the store; KC_EEXIST for a dictionary that differs from the
 * store's of the same id; KC_EIO when in cannot be read; KC_EREADONLY, or
 * another store error. On any failure the store is unchanged, and
 * kc_store_errmsg says where the bundle broke, e.g. "bundle.kcb: frame 17
 * (build 3f2a...): checksum mismatch at byte offset 5123".
 * KC_ESIGNATURE: a signature that does not verify, or, with opts->trust
 * set, a bundle that is unsigned or signed by another key. A signature
 * block cut off a bundle whose header announces one is KC_ECORRUPT. */
KC_API int kc_bundle_import(kc_store_t *store, FILE *in,
                            const kc_bundle_import_opts_t *opts,
                            kc_bundle_stats_t *stats);

/* The same, for a bundle already in memory (data[len] is not modified and
 * not referenced after the call). */
KC_API int kc_bundle_import_mem(kc_store_t *store, const void *data, size_t len,
                                const kc_bundle_import_opts_t *opts,
                                kc_bundle_stats_t *stats);

/* ---- Signed bundles ----------------------------------------------------------
 *
 * A bundle may carry an Ed25519 signature (libsodium) over every byte from
 * its header through its trailer, in a signature block after the trailer;
 * docs/FORMAT.md ("Signatures") gives the layout and what a signature does
 * and does not prove. Import verifies a signature whenever one is present;
 * with a trusted key (kc_bundle_import_opts_t.trust) it also refuses
 * bundles that are unsigned or signed by another key.
 *
 * Key files are one line of text: "kcache-ed25519-secret-v1 " or
 * "kcache-ed25519-public-v1 ", then the key in standard base64 (with
 * padding) and a newline. A secret key file holds libsodium's 64-byte
 * secret key (seed, then public key); a public key file the 32-byte public
 * key.
 */

#define KC_BUNDLE_KEY_ID_LEN 16 /* hex digits of a key id */

/* A key pair, or a public key alone (has_secret 0). A plain value: copy it
 * freely, and wipe one that holds a secret with kc_bundle_key_wipe. */
typedef struct kc_bundle_key {
    int has_secret;
    uint8_t pk[32];
    uint8_t sk[64];
} kc_bundle_key_t;

/* Generate a key pair and write it to base + ".key" (the secret key, mode
 * 0600) and base + ".pub" (the public key, mode 0644). Neither file may
 * exist: an existing one is never overwritten. key may be NULL; otherwise
 * it receives the pair.
 *
 * Returns KC_OK; KC_EEXIST if either file exists (nothing is written);
 * KC_EIO if a file cannot be written (nothing is left behind); KC_EINVAL;
 * KC_EINTERNAL if libsodium cannot initialise. */
KC_API int kc_bundle_keygen(const char *base, kc_bundle_key_t *key);

/* Read a secret or public key file into key (a secret key file also gives
 * the public key). A secret key file must not be readable or writable by
 * group or others.
 *
 * Returns KC_OK; KC_EIO if the file cannot be read (errno tells why);
 * KC_ECORRUPT if it is not a kcache key file or its secret and public
 * halves disagree; KC_EPERM for a secret key file open to group or others;
 * KC_EINVAL; KC_EINTERNAL. On failure *key is zeroed. */
KC_API int kc_bundle_key_load(const char *path, kc_bundle_key_t *key);

/* The key id: the first 8 bytes of a public key in lowercase hex, into
 * out[KC_BUNDLE_KEY_ID_LEN + 1]. For messages only; keys are always
 * compared whole. */
KC_API void kc_bundle_key_id(const uint8_t pk[32], char *out);

/* Zero a key, secret half included, in a way the compiler keeps. */
KC_API void kc_bundle_key_wipe(kc_bundle_key_t *key);

/* kc_bundle_export, signed with key (which must hold a secret; NULL: an
 * unsigned bundle, as kc_bundle_export). The signature is computed as the
 * bundle is written, so out still need not be seekable.
 *
 * Returns as kc_bundle_export, and KC_EINVAL for a key with no secret. */
KC_API int kc_bundle_export_signed(kc_store_t *store, const kc_bundle_filter_t *filter,
                                   const kc_bundle_key_t *key, FILE *out,
                                   kc_bundle_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif
