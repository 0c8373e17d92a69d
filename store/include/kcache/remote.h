/* The remote tier: a Redis server that several machines share.
 *
 * The launcher reads it on a local miss and writes to it behind a publish
 * (KCACHE_REMOTE=redis://host:port). Values are encoded records, as the
 * store keeps them, under "<prefix>kcache:1:<kind>:<32 hex digits of the
 * key>" (docs/FORMAT.md, "Remote tier"); blobs are always without a
 * dictionary. Several servers (a list of URLs) share the keys by
 * rendezvous hashing: each key lives on one of them, and a server that is
 * down costs only its share.
 *
 * It fails open. Every call has a connect and an I/O timeout; after a
 * failure the handle answers KC_EREMOTE at once, without touching the
 * network, until retry_after_ms has passed. Nothing read from the remote is
 * taken unchecked: kc_remote_pull and kc_remote_pull_group check every
 * record's checksum and key, and every cubin or file against its key,
 * before they publish anything into a local store. That catches damage, not a malicious
 * writer: unless the handle has trusted keys (opts.trust, KCACHE_TRUST), whoever can
 * write to the server can make its readers run their cubins (README, "Trust and threat
 * model"). With trusted keys, pulls take only values signed by one of them
 * (opts.sign_key, KCACHE_REMOTE_SIGN_KEY on the writers; docs/FORMAT.md, "Signed
 * values").
 *
 * A handle serializes its calls to each server (one connection a server);
 * it is safe to share between threads.
 */
#ifndef KCACHE_REMOTE_H
#define KCACHE_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"
#include "kcache/bundle.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_remote kc_remote_t;

typedef struct kc_remote_opts {
    /* sizeof(kc_remote_opts_t), as KC_REMOTE_OPTS_INIT sets it (kcache/api.h, "Options
     * structs"): fields past it read as their defaults. */
    size_t size;
    unsigned connect_timeout_ms; /* 0: KCACHE_REMOTE_TIMEOUT_MS, else 100 */
    unsigned io_timeout_ms;      /* 0: KCACHE_REMOTE_TIMEOUT_MS, else 250 */
    unsigned retry_after_ms;     /* after a failure, 0: 10000 */
    /* Put before every key, so that several fleets or versions share one
     * server apart ("ci:", "prod:"); printable ASCII without spaces, at
     * most KC_REMOTE_PREFIX_MAX bytes. NULL: KCACHE_REMOTE_PREFIX, else
     * none. Copied by kc_remote_open. */
    const char *prefix;
    /* Every SET expires after this many seconds (Redis EX). 0:
     * KCACHE_REMOTE_TTL (a duration: "7d", "12h", "3600"), else never. */
    uint64_t ttl_s;
    /* A secret key file (cachectl keygen, mode 0600): every value a push
     * writes carries an Ed25519 signature by it (docs/FORMAT.md, "Remote
     * tier"). NULL: KCACHE_REMOTE_SIGN_KEY, else values go unsigned. */
    const char *sign_key;
    /* Public key files, ':'-separated (at most KC_REMOTE_TRUST_MAX): a pull
     * then accepts a tuning, build or group only if it is signed by one of
     * them, and refuses it otherwise (KC_ESIGNATURE, counted in
     * kc_remote_stats_t.untrusted: the caller compiles locally). NULL:
     * KCACHE_TRUST (as for bundles), else anything that checks out. */
    const char *trust;
} kc_remote_opts_t;

#define KC_REMOTE_TRUST_MAX 8

#define KC_REMOTE_PREFIX_MAX 64

/* Every timeout at their defaults: kc_remote_opts_t o = KC_REMOTE_OPTS_INIT; then set
 * fields. */
#define KC_REMOTE_OPTS_INIT                                                              \
    {                                                                                    \
        .size = sizeof(kc_remote_opts_t)                                                 \
    }

/* Parse url and make a handle. It does not connect: the first call does.
 * url is one server or several, separated by commas or white space (the
 * keys are spread over them), each of:
 *   redis://[[user]:password@]host[:port][/db]   port default 6379; host a
 *       name, an IPv4 address or [IPv6]; with a password, AUTH password
 *       (AUTH user password with a user, Redis 6 ACLs); with db, SELECT db.
 *       The user and password may be percent-encoded (%40 for '@').
 *   unix:/path/to/socket[?db=N][&user=U][&password=P]
 * rediss:// (TLS) is refused with KC_EINVAL: the hiredis this is built with
 * has no TLS (docs/FORMAT.md, "Remote tier": use a TLS tunnel).
 * opts may be NULL (the default timeouts, the prefix and TTL from the
 * environment). KC_EINVAL for a URL it cannot read, a bad prefix or
 * KCACHE_REMOTE_TTL (kc_remote_errmsg(NULL) says why), or an opts->size of
 * 0 or larger than this library's. A wrong password is only found on the
 * first call: KC_EREMOTE, "host:port: AUTH failed: WRONGPASS ...". */
KC_API int kc_remote_open(const char *url, const kc_remote_opts_t *opts,
                          kc_remote_t **out);
KC_API void kc_remote_close(kc_remote_t *remote);

/* How many servers the handle spreads its keys over. */
KC_API size_t kc_remote_shards(const kc_remote_t *remote);

/* The encoded record (kind, key): *data (free with kc_free) and *len.
 * KC_ENOTFOUND if the remote has none; KC_EREMOTE if it cannot be asked
 * (down, timed out, backing off, or an answer that is not a value). The
 * bytes are not checked: callers decode them. */
KC_API int kc_remote_get(kc_remote_t *remote, kc_rec_kind_t kind, const kc_key_t *key,
                         void **data, size_t *len);

/* Store an encoded record under (kind, key), replacing what was there.
 * KC_EREMOTE if the remote cannot be reached. */
KC_API int kc_remote_put(kc_remote_t *remote, kc_rec_kind_t kind, const kc_key_t *key,
                         const void *data, size_t len);

/* Fetch tuning tkey, its winning build and the build's cubin from the
 * remote, verify all three (record checksums, keys derived from the
 * preimages, the cubin's hash), and publish them into dst in one
 * transaction. KC_ENOTFOUND if the remote lacks any of them; KC_ECORRUPT
 * if one fails a check (nothing is published); KC_EREMOTE as above; the
 * store's code if the publish fails. */
KC_API int kc_remote_pull(kc_remote_t *remote, kc_store_t *dst, const kc_key_t *tkey);

/* The same for one build and its cubin, without a tuning (the launcher
 * asks for a candidate's build before it compiles it). */
KC_API int kc_remote_pull_build(kc_remote_t *remote, kc_store_t *dst,
                                const kc_key_t *build_key);

/* Copy tuning tkey from src to the remote with the builds (and cubins) of
 * its candidates that src holds, the winner's included; blobs are
 * re-encoded without a dictionary if they had one. Builds first and the
 * tuning last, so that a reader never finds a tuning whose winner is not
 * there yet. A build this handle pushed less than 60 s ago (or half the
 * TTL, if shorter) is not pushed again: the candidates of a kernel's
 * tunings go up once. A pull through the handle that finds a damaged
 * value clears that memory, so that the next pushes rewrite. */
KC_API int kc_remote_push(kc_remote_t *remote, kc_store_t *src, const kc_key_t *tkey);

/* Copy build bkey and its cubin from src to the remote, blob first (a
 * build published without a tuning: a compile-only launcher, cachectl
 * populate). KC_ENOTFOUND if src lacks either; KC_EREMOTE as above. */
KC_API int kc_remote_push_build(kc_remote_t *remote, kc_store_t *src,
                                const kc_key_t *build_key);

/* What a handle did since it was opened, summed over its servers and
 * threads. */
typedef struct kc_remote_stats {
    uint64_t pushes;    /* kc_remote_push* calls that wrote everything */
    uint64_t pulls;     /* kc_remote_pull* calls that brought records in */
    uint64_t rejected;  /* pulls refused: a record that failed its checks */
    uint64_t untrusted; /* values refused with a trust key: unsigned, signed by
                         * a key not trusted, or a signature that fails */
    uint64_t timeouts;  /* connects or commands that timed out */
    uint64_t errors;    /* other failures: refused connections, AUTH, error replies */
} kc_remote_stats_t;

/* Fill *out (zeros for a NULL remote). */
KC_API void kc_remote_stats(const kc_remote_t *remote, kc_remote_stats_t *out);

/* Call fn(user, kind, key) for every record of kind (0: every kind) that
 * the remote holds under this handle's prefix, server by server (SCAN:
 * a key written meanwhile may or may not be seen). fn returns nonzero to
 * stop. fn may call the remote. KC_OK; KC_EREMOTE if a server could not
 * be listed (the others were). */
typedef int (*kc_remote_scan_fn)(void *user, kc_rec_kind_t kind, const kc_key_t *key);
KC_API int kc_remote_scan(kc_remote_t *remote, int kind, kc_remote_scan_fn fn,
                          void *user);

/* The record (kind, key) as kc_remote_get reads it, its signature trailer
 * cut off and judged: with trusted keys, KC_ESIGNATURE (and *data NULL) for
 * a value unsigned, signed by another key or badly (counted in
 * kc_remote_stats_t.untrusted). signer (may be NULL; else
 * KC_BUNDLE_KEY_ID_LEN + 1 bytes) receives the signer's key id, "" for an
 * unsigned value. The record's own bytes are not checked: decode them. */
KC_API int kc_remote_get_record(kc_remote_t *remote, kc_rec_kind_t kind,
                                const kc_key_t *key, void **data, size_t *len,
                                char *signer);

/* The size in bytes of the value (kind, key) on the remote; 0 if there is
 * none or it cannot be asked. */
KC_API size_t kc_remote_value_len(kc_remote_t *remote, kc_rec_kind_t kind,
                                  const kc_key_t *key);

/* One server of the handle (0 <= i < kc_remote_shards). */
typedef struct kc_remote_server {
    char name[384]; /* "host:port" or "unix:/path" */
    int db;
    int up;               /* it answered INFO */
    char version[32];     /* redis_version */
    uint64_t used_memory; /* bytes, as INFO says */
    char error[512];      /* why not, when !up */
} kc_remote_server_t;

/* Ask server i (INFO). KC_OK; KC_EINVAL for a bad i; KC_EREMOTE (with
 * out->name and out->error filled in) if it cannot be asked. */
KC_API int kc_remote_server_info(kc_remote_t *remote, size_t i, kc_remote_server_t *out);

/* Single flight across machines: a lease on key (a tuning key) in Redis,
 * "<prefix>kcache:1:lease:<hex>" holding this handle's owner string
 * (kc_remote_owner), expiring after ttl_ms unless renewed, so that the
 * lease of a machine that died frees itself. Acquire takes it if free and
 * renews it if this handle holds it (KC_OK), or answers KC_EBUSY while
 * another holds it; release drops it only if this handle holds it (KC_OK,
 * else KC_ENOTFOUND). KC_EREMOTE as above: callers go on without it. */
KC_API int kc_remote_lease_acquire(kc_remote_t *remote, const kc_key_t *key,
                                   uint64_t ttl_ms);
KC_API int kc_remote_lease_release(kc_remote_t *remote, const kc_key_t *key);

/* "host:pid:random": what this handle's leases hold. */
KC_API const char *kc_remote_owner(const kc_remote_t *remote);

/* Copy the group name (kcache/store.h, "groups") from src to the remote:
 * the record's bytes as src stores them under "kcache:1:group:<key>", key
 * kc_group_key(name), and the blob of every file it lists (re-encoded
 * without a dictionary if it had one), blobs first and the group last, so
 * that a reader never finds a group whose files are not there yet. Blobs
 * are written whether or not the remote has them (the value is the same).
 * Returns KC_OK; KC_EINVAL for a NULL argument or a bad name; KC_ENOTFOUND
 * if src lacks the group or one of its blobs; KC_ECORRUPT for a stored
 * group that does not decode or names another group; KC_EREMOTE as
 * above (the remote may then hold some of the blobs, never the group
 * without them). */
KC_API int kc_remote_push_group(kc_remote_t *remote, kc_store_t *src, const char *name);

/* Fetch the group name and every blob it lists from the remote, verify
 * them and add them to dst. The group record must pass its checksum, be a
 * group, be stored under kc_group_key(name) and carry that name; each blob
 * must decode without a dictionary, hash to the key the group lists and
 * be the listed size. Then every file and the group commit in one write
 * transaction, as kc_store_group_put(dst, name, files, n, 1) would: the
 * files join dst's group of that name (a file of the same name is
 * replaced, dst's others stay), recompressed at dst's level.
 *
 * Returns KC_OK; KC_EINVAL for a NULL argument or a bad name; KC_ENOTFOUND
 * if the remote lacks the group or one of its blobs, or holds a group of a
 * newer format; KC_ECORRUPT if anything fails a check; KC_EREMOTE as above;
 * or the store's code (KC_EREADONLY, ...) if the put fails. On any code
 * but KC_OK nothing was written to dst. */
KC_API int kc_remote_pull_group(kc_remote_t *remote, kc_store_t *dst, const char *name);

/* What the last failure on this handle in this thread was ("127.0.0.1:6390:
 * connect: Connection refused", "...: GET ...: timed out"), or "" when this
 * thread's last kcache failure was another object's. With NULL, why the last
 * kc_remote_open in this thread failed. Messages are per thread, as for
 * kc_store_errmsg: a push that fails on a pool thread leaves its message
 * there. Never NULL; valid in this thread until its next kcache call. */
KC_API const char *kc_remote_errmsg(const kc_remote_t *remote);

#ifdef __cplusplus
}
#endif
#endif
