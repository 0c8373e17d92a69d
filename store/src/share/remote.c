/* The remote tier over Redis (hiredis, synchronous, one connection a
 * handle, calls serialized by a mutex). See kcache/remote.h. */
#include "kcache/remote.h"

#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include <xxhash.h>

#include "cold.h"
#include "opts.h"
#include "remote_int.h"
#include "remote_pushed.h"
#include "blob_internal.h"
#include "diag.h"
#include "forkgen.h"
#include "bundle_internal.h"
#include "kcache/blob.h"
#include "kcache/bundle.h"
#include "kcache/errors.h"

/* The longest Redis key: the prefix, "kcache:1:", a kind, a colon, 32 hex. */
#define KC__RKEY_MAX (KC_REMOTE_PREFIX_MAX + 64)

typedef struct shard {
    kc__rserver_t s;
    uint64_t seed; /* the server's name hashed: its rendezvous weight seed */
    pthread_mutex_t mu;
    redisContext *c;     /* NULL until connected, and after a failure */
    uint64_t down_until; /* monotonic us: fail fast until then */
    char down_why[512];  /* why it is down (until down_until), under mu */
} shard_t;

struct kc_remote {
    kc_remote_opts_t opts;
    char prefix[KC_REMOTE_PREFIX_MAX + 1];
    uint64_t ttl_s; /* EX on every SET, 0: none */
    size_t n;       /* shards */
    shard_t *shards;
    _Atomic uint64_t pushes, pulls, rejected, untrusted, timeouts, errors;
    char owner[128];      /* this handle's lease value: host:pid:random */
    int has_sign;         /* sign every value written by a push */
    kc_bundle_key_t sign; /* with its secret */
    size_t n_trust;       /* pulls accept only values signed by these */
    kc_bundle_key_t trust[KC_REMOTE_TRUST_MAX];
    kc__pushed_t *pushed; /* the builds pushed lately (remote_pushed.h) */
    _Atomic unsigned gen; /* the fork generation of the connections and owner */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timeval tv_ms(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* ---- opening: the list of servers ---------------------------------------- */

static int is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Split urls at commas and white space, one shard each. */
static int parse_shards(const char *urls, kc_remote_t *r)
{
    const char *p = urls;
    size_t n = 0;

    for (const char *q = p; *q;) {
        while (is_sep(*q))
            q++;
        if (!*q)
            break;
        n++;
        while (*q && !is_sep(*q))
            q++;
    }
    if (n == 0)
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "remote URL is empty (redis://host:port expected)");
    if (n > KC__REMOTE_MAX_SHARDS)
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "%zu remote URLs: at most %d", n, KC__REMOTE_MAX_SHARDS);
    if (!(r->shards = calloc(n, sizeof(*r->shards))))
        return KC_ENOMEM;
    while (r->n < n) {
        const char *e;
        while (is_sep(*p))
            p++;
        for (e = p; *e && !is_sep(*e); e++)
            ;
        shard_t *sh = &r->shards[r->n];
        int rc = kc__remote_parse_url(p, (size_t)(e - p), &sh->s, kc__diag_remote_open);
        if (rc != KC_OK)
            return rc;
        for (size_t i = 0; i < r->n; i++)
            if (strcmp(r->shards[i].s.name, sh->s.name) == 0 &&
                r->shards[i].s.db == sh->s.db)
                return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                                     "remote URLs name %s twice", sh->s.name);
        sh->seed = XXH64(sh->s.name, strlen(sh->s.name), (uint64_t)sh->s.db);
        pthread_mutex_init(&sh->mu, NULL);
        r->n++;
        p = e;
    }
    return KC_OK;
}

static int read_prefix_ttl(const kc_remote_opts_t *o, kc_remote_t *r)
{
    const char *prefix = o->prefix ? o->prefix : getenv("KCACHE_REMOTE_PREFIX");
    const char *ttl = getenv("KCACHE_REMOTE_TTL");

    if (!prefix)
        prefix = "";
    if (strlen(prefix) > KC_REMOTE_PREFIX_MAX)
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "remote key prefix \"%s\" is longer than %d bytes", prefix,
                             KC_REMOTE_PREFIX_MAX);
    for (const char *c = prefix; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                                 "remote key prefix \"%s\": printable ASCII without "
                                 "spaces only",
                                 prefix);
    strcpy(r->prefix, prefix);
    r->ttl_s = o->ttl_s;
    if (!r->ttl_s && ttl && *ttl && kc_duration_parse(ttl, &r->ttl_s) != KC_OK)
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "KCACHE_REMOTE_TTL=\"%s\": not a duration (\"7d\", \"12h\", "
                             "\"3600\")",
                             ttl);
    return KC_OK;
}

/* The signing key (opts->sign_key, else KCACHE_REMOTE_SIGN_KEY) and the
 * trusted keys (opts->trust, else KCACHE_TRUST; ':'-separated files). */
static int load_keys(const kc_remote_opts_t *o, kc_remote_t *r)
{
    const char *sign = o->sign_key ? o->sign_key : getenv("KCACHE_REMOTE_SIGN_KEY");
    const char *trust = o->trust ? o->trust : getenv("KCACHE_TRUST");
    int rc;

    if (((sign && *sign) || (trust && *trust)) && kc__sodium_init() != KC_OK)
        return kc__diag_fail(kc__diag_remote_open, KC_EINTERNAL,
                             "libsodium cannot initialise");

    if (sign && *sign) {
        rc = kc_bundle_key_load(sign, &r->sign);
        if (rc == KC_OK && !r->sign.has_secret)
            rc = KC_EINVAL;
        if (rc != KC_OK)
            return kc__diag_fail(kc__diag_remote_open, rc,
                                 "remote signing key %s: %s (a secret key file of "
                                 "cachectl keygen, mode 0600)",
                                 sign, kc_strerror(rc));
        r->has_sign = 1;
    }
    for (const char *p = trust; p && *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char path[4096];
        if (n && n < sizeof(path)) {
            if (r->n_trust == KC_REMOTE_TRUST_MAX)
                return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                                     "more than %d trusted keys", KC_REMOTE_TRUST_MAX);
            memcpy(path, p, n);
            path[n] = '\0';
            rc = kc_bundle_key_load(path, &r->trust[r->n_trust]);
            if (rc != KC_OK)
                return kc__diag_fail(kc__diag_remote_open, rc, "trusted key %s: %s", path,
                                     kc_strerror(rc));
            /* As cachectl import --trust: a secret key where a public one
             * belongs is a mistake (and a secret spread to every reader). */
            if (r->trust[r->n_trust].has_secret) {
                sodium_memzero(&r->trust[r->n_trust], sizeof(r->trust[r->n_trust]));
                return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                                     "trusted key %s is a secret key; trust takes the "
                                     "public key (NAME.pub, which cachectl keygen wrote "
                                     "beside NAME.key)",
                                     path);
            }
            r->n_trust++;
        }
        p = e ? e + 1 : NULL;
    }
    return KC_OK;
}

/* This handle's lease value: host:pid:random. */
static void make_owner(kc_remote_t *r)
{
    char host[64] = "?";
    uint8_t rnd[8];
    char hex[17];

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    if (kc__sodium_init() == KC_OK) {
        randombytes_buf(rnd, sizeof(rnd));
    } else {
        uint64_t t = now_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r;
        memcpy(rnd, &t, sizeof(rnd));
    }
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(r->owner, sizeof(r->owner), "%s:%d:%s", host, (int)getpid(), hex);
}

/* A handle used in a process forked from the one that opened it
 * (forkgen.h): its connections are the parent's sockets (a child's
 * commands would interleave with the parent's), its owner names the
 * parent's process (a child's lease release would drop the parent's
 * leases), and a thread of the parent may have held a shard's lock at the
 * fork. So at its first use in the child the handle gets locks made anew,
 * no connection (the next call connects; closing the child's copies of the
 * sockets leaves the parent's), and an owner of its own. */
static KC__COLD int remote_adopt(void *arg)
{
    kc_remote_t *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        shard_t *sh = &r->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        if (sh->c)
            redisFree(sh->c);
        sh->c = NULL;
        sh->down_until = 0;
    }
    kc__pushed_after_fork(r->pushed);
    make_owner(r);
    return 0;
}

static void remote_use(kc_remote_t *r)
{
    kc__fork_adopt(&r->gen, remote_adopt, r);
}

/* Lock a shard of r for a command (after remote_use). */
static void shard_lock(kc_remote_t *r, shard_t *sh)
{
    remote_use(r);
    pthread_mutex_lock(&sh->mu);
}

int kc_remote_open(const char *url, const kc_remote_opts_t *opts, kc_remote_t **out)
{
    kc_remote_t *r;
    int rc;

    kc__diag_release(kc__diag_remote_open);
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!url)
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "no remote URL");
    if (!(r = calloc(1, sizeof(*r))))
        return KC_ENOMEM;
    if (kc__opts_read(&r->opts, sizeof(r->opts), opts) != KC_OK) {
        free(r);
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "kc_remote_open: opts->size is %zu, this library's is %zu "
                             "(use KC_REMOTE_OPTS_INIT)",
                             opts->size, sizeof(r->opts));
    }
    if ((rc = parse_shards(url, r)) != KC_OK ||
        (rc = read_prefix_ttl(&r->opts, r)) != KC_OK ||
        (rc = load_keys(&r->opts, r)) != KC_OK) {
        kc_remote_close(r);
        return rc;
    }
    kc__fork_watch();
    kc__fork_mark(&r->gen);
    make_owner(r);
    r->opts.prefix = NULL; /* not kept: the callers' strings */
    r->opts.sign_key = NULL;
    r->opts.trust = NULL;
    {
        /* KCACHE_REMOTE_TIMEOUT_MS: both timeouts, where opts leave them. */
        const char *t = getenv("KCACHE_REMOTE_TIMEOUT_MS");
        char *e = NULL;
        unsigned long ms = t && *t ? strtoul(t, &e, 10) : 0;
        if (!e || *e || ms > 600000)
            ms = 0;
        if (!r->opts.connect_timeout_ms)
            r->opts.connect_timeout_ms = ms ? (unsigned)ms : 100;
        if (!r->opts.io_timeout_ms)
            r->opts.io_timeout_ms = ms ? (unsigned)ms : 250;
    }
    if (!r->opts.retry_after_ms)
        r->opts.retry_after_ms = 10000;
    r->pushed = kc__pushed_new(r->ttl_s);
    *out = r;
    return KC_OK;
}

void kc_remote_close(kc_remote_t *r)
{
    if (!r)
        return;
    remote_use(r);
    for (size_t i = 0; i < r->n; i++) {
        if (r->shards[i].c)
            redisFree(r->shards[i].c);
        pthread_mutex_destroy(&r->shards[i].mu);
    }
    free(r->shards);
    kc__pushed_free(r->pushed);
    kc_bundle_key_wipe(&r->sign);
    free(r);
}

const char *kc_remote_errmsg(const kc_remote_t *r)
{
    return kc__diag_get(r ? (const void *)r : kc__diag_remote_open);
}

size_t kc_remote_shards(const kc_remote_t *r)
{
    return r ? r->n : 0;
}

void kc_remote_stats(const kc_remote_t *r, kc_remote_stats_t *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!r)
        return;
    kc_remote_t *w = (kc_remote_t *)r; /* atomics: loads only */
    out->pushes = atomic_load(&w->pushes);
    out->pulls = atomic_load(&w->pulls);
    out->rejected = atomic_load(&w->rejected);
    out->untrusted = atomic_load(&w->untrusted);
    out->timeouts = atomic_load(&w->timeouts);
    out->errors = atomic_load(&w->errors);
}

/* ---- one command ------------------------------------------------------------ */

/* Drop the shard's connection and fail fast for retry_after_ms. */
__attribute__((format(printf, 3, 4))) static int go_down(kc_remote_t *r, shard_t *sh,
                                                         const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(sh->down_why, sizeof(sh->down_why), "%s: ", sh->s.name);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(sh->down_why))
        vsnprintf(sh->down_why + n, sizeof(sh->down_why) - (size_t)n, fmt, ap);
    va_end(ap);
    if (sh->c) {
        int timeout = sh->c->err == REDIS_ERR_IO &&
                      (sh->c->errstr[0] == 0 || strstr(sh->c->errstr, "temporarily") ||
                       strstr(sh->c->errstr, "timed out"));
        atomic_fetch_add(timeout ? &r->timeouts : &r->errors, 1);
        redisFree(sh->c);
        sh->c = NULL;
    } else {
        atomic_fetch_add(&r->errors, 1);
    }
    sh->down_until = now_us() + (uint64_t)r->opts.retry_after_ms * 1000u;
    return kc__diag_fail(r, KC_EREMOTE, "%s", sh->down_why);
}

/* A command's reply that is an error: NOAUTH and the like mean the
 * connection is unusable (down); others concern only this key. */
static int reply_error(kc_remote_t *r, shard_t *sh, const char *cmd, const char *k,
                       const redisReply *rep)
{
    const char *msg = rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply";
    if (rep->type == REDIS_REPLY_ERROR &&
        (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0))
        return go_down(r, sh,
                       "%s: the server requires AUTH: give a password in the URL "
                       "(redis://[user]:password@host): %s",
                       cmd, msg);
    atomic_fetch_add(&r->errors, 1);
    return kc__diag_fail(r, KC_EREMOTE, "%s: %s %s: %s", sh->s.name, cmd, k, msg);
}

/* The reply to a command of the handshake on a fresh connection. */
static int handshake(kc_remote_t *r, shard_t *sh, redisReply *rep, const char *what)
{
    int rc = KC_OK;
    if (!rep)
        return go_down(r, sh, "%s: %s", what, sh->c->errstr);
    if (rep->type == REDIS_REPLY_ERROR)
        rc = go_down(r, sh, "%s failed: %s", what, rep->str);
    else if (rep->type != REDIS_REPLY_STATUS)
        rc = go_down(r, sh, "%s: unexpected reply", what);
    freeReplyObject(rep);
    return rc;
}

static int ensure_connected(kc_remote_t *r, shard_t *sh)
{
    int rc;

    if (sh->c)
        return KC_OK;
    if (sh->down_until && now_us() < sh->down_until)
        return kc__diag_fail(r, KC_EREMOTE, "%s (not retried yet)", sh->down_why);
    sh->c = sh->s.path[0] ? redisConnectUnixWithTimeout(sh->s.path,
                                                        tv_ms(r->opts.connect_timeout_ms))
                          : redisConnectWithTimeout(sh->s.host, sh->s.port,
                                                    tv_ms(r->opts.connect_timeout_ms));
    if (!sh->c)
        return go_down(r, sh, "connect: out of memory");
    if (sh->c->err)
        return go_down(r, sh, "connect: %s", sh->c->errstr);
    if (redisSetTimeout(sh->c, tv_ms(r->opts.io_timeout_ms)) != REDIS_OK)
        return go_down(r, sh, "cannot set the I/O timeout");
    if (sh->s.pass[0]) {
        redisReply *rep = sh->s.user[0]
                              ? redisCommand(sh->c, "AUTH %s %s", sh->s.user, sh->s.pass)
                              : redisCommand(sh->c, "AUTH %s", sh->s.pass);
        if ((rc = handshake(r, sh, rep, "AUTH")) != KC_OK)
            return rc;
    }
    if (sh->s.db) {
        redisReply *rep = redisCommand(sh->c, "SELECT %d", sh->s.db);
        if ((rc = handshake(r, sh, rep, "SELECT")) != KC_OK)
            return rc;
    }
    sh->down_until = 0;
    return KC_OK;
}

/* "<prefix>kcache:1:<kind>:<hex>" */
static void redis_key(const kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                      char out[KC__RKEY_MAX])
{
    char hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(key, hex);
    snprintf(out, KC__RKEY_MAX, "%skcache:1:%s:%s", r->prefix, kc_rec_kind_name(kind),
             hex);
}

/* The shard that owns a key: rendezvous hashing, the highest weight of
 * hash(key, server) wins, so losing a server moves only its keys. */
static shard_t *shard_of(kc_remote_t *r, const char *k)
{
    size_t best = 0;
    uint64_t best_w = 0;
    size_t len = strlen(k);
    for (size_t i = 0; i < r->n; i++) {
        uint64_t w = XXH64(k, len, r->shards[i].seed);
        if (i == 0 || w > best_w) {
            best = i;
            best_w = w;
        }
    }
    return &r->shards[best];
}

int kc_remote_get(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key, void **data,
                  size_t *len)
{
    char k[KC__RKEY_MAX];
    shard_t *sh;
    int rc;

    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!r || !key || !data || !len)
        return KC_EINVAL;
    redis_key(r, kind, key, k);
    sh = shard_of(r, k);
    shard_lock(r, sh);
    rc = ensure_connected(r, sh);
    if (rc == KC_OK) {
        redisReply *rep = redisCommand(sh->c, "GET %s", k);
        if (!rep) {
            rc = go_down(r, sh, "GET: %s", sh->c->errstr);
        } else if (rep->type == REDIS_REPLY_NIL) {
            rc = KC_ENOTFOUND;
        } else if (rep->type != REDIS_REPLY_STRING) {
            /* The server answered, but not with a value (a wrong type, an
             * error): this key is unusable, the remote is not down. */
            rc = reply_error(r, sh, "GET", k, rep);
        } else if (!(*data = malloc(rep->len ? rep->len : 1))) {
            rc = KC_ENOMEM;
        } else {
            memcpy(*data, rep->str, rep->len);
            *len = rep->len;
        }
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int kc_remote_put(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                  const void *data, size_t len)
{
    char k[KC__RKEY_MAX];
    shard_t *sh;
    int rc;

    if (!r || !key || (len && !data))
        return KC_EINVAL;
    redis_key(r, kind, key, k);
    sh = shard_of(r, k);
    shard_lock(r, sh);
    rc = ensure_connected(r, sh);
    if (rc == KC_OK) {
        redisReply *rep = r->ttl_s ? redisCommand(sh->c, "SET %s %b EX %llu", k, data,
                                                  len, (unsigned long long)r->ttl_s)
                                   : redisCommand(sh->c, "SET %s %b", k, data, len);
        if (!rep)
            rc = go_down(r, sh, "SET: %s", sh->c->errstr);
        else if (rep->type != REDIS_REPLY_STATUS)
            rc = reply_error(r, sh, "SET", k, rep);
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- signatures ------------------------------------------------------------ */

/* A signed value: the record's bytes, then this trailer (docs/FORMAT.md,
 * "Remote tier", "Signed values"). */
#define SIG_MAGIC "KCS1"
#define SIG_TRAILER (4 + 32 + 64)
#define SIG_DOMAIN "kcache-remote-sig-v1"

/* What is signed: the domain (with its NUL), the key's name without the
 * prefix ("kcache:1:<kind>:<hex>"), then the record's bytes; in a buffer
 * with room for spare bytes after them. *at receives where the record's
 * bytes start in it. */
static uint8_t *sig_message(kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                            size_t len, size_t spare, size_t *mlen, size_t *at)
{
    char name[96], hex[KC_KEY_HEX_LEN + 1];
    size_t dl = sizeof(SIG_DOMAIN), nl;
    uint8_t *m;

    kc_key_to_hex(key, hex);
    snprintf(name, sizeof(name), "kcache:1:%s:%s", kc_rec_kind_name(kind), hex);
    nl = strlen(name);
    if (!(m = malloc(dl + nl + len + spare + 1)))
        return NULL;
    memcpy(m, SIG_DOMAIN, dl);
    memcpy(m + dl, name, nl);
    if (len)
        memcpy(m + dl + nl, data, len);
    *mlen = dl + nl + len;
    *at = dl + nl;
    return m;
}

/* SET (kind, key) to data, with a signature trailer if the handle signs:
 * the value is the record's bytes and the trailer, written after the
 * signed message in its own buffer (one copy of the record). */
static int put_value(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    uint8_t *m;
    size_t mlen = 0, at = 0;
    int rc;

    if (!r->has_sign)
        return kc_remote_put(r, kind, key, data, len);
    if (!(m = sig_message(kind, key, data, len, SIG_TRAILER, &mlen, &at)))
        return KC_ENOMEM;
    uint8_t *trailer = m + mlen;
    memcpy(trailer, SIG_MAGIC, 4);
    memcpy(trailer + 4, r->sign.pk, 32);
    crypto_sign_detached(trailer + 36, NULL, m, mlen, r->sign.sk);
    rc = kc_remote_put(r, kind, key, m + at, len + SIG_TRAILER);
    free(m);
    return rc;
}

/* Split a value into the record's bytes (*len) and its signature, and judge
 * it: KC_OK if it may be used, KC_ESIGNATURE if the handle trusts keys and
 * this value is unsigned, signed by another key or badly. signer receives
 * the signer's key id ("" if unsigned). */
static int check_value(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                       const uint8_t *v, size_t *len, char *signer)
{
    const uint8_t *t;
    uint8_t *m;
    size_t n = *len, mlen = 0;
    int ok = 0;

    signer[0] = '\0';
    if (n < SIG_TRAILER || memcmp(v + n - SIG_TRAILER, SIG_MAGIC, 4) != 0) {
        if (!r->n_trust)
            return KC_OK;
        return kc__diag_fail(r, KC_ESIGNATURE, "%s %s: unsigned, and a trust key is set",
                             kc_rec_kind_name(kind), "record");
    }
    t = v + n - SIG_TRAILER;
    *len = n - SIG_TRAILER;
    kc_bundle_key_id(t + 4, signer);
    if (!r->n_trust)
        return KC_OK; /* not checked: nothing to check it against */
    for (size_t i = 0; i < r->n_trust; i++)
        if (sodium_memcmp(r->trust[i].pk, t + 4, 32) == 0)
            ok = 1;
    if (!ok)
        return kc__diag_fail(r, KC_ESIGNATURE, "%s record signed by key %s, not trusted",
                             kc_rec_kind_name(kind), signer);
    size_t at = 0;
    if (!(m = sig_message(kind, key, v, *len, 0, &mlen, &at)))
        return KC_ENOMEM;
    ok = crypto_sign_verify_detached(t + 36, m, mlen, t + 4) == 0;
    free(m);
    if (!ok)
        return kc__diag_fail(r, KC_ESIGNATURE, "%s record: bad signature (key %s)",
                             kc_rec_kind_name(kind), signer);
    return KC_OK;
}

int kc_remote_get_record(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                         void **data, size_t *len, char *signer)
{
    char who[KC_BUNDLE_KEY_ID_LEN + 1];
    int rc = kc_remote_get(r, kind, key, data, len);

    if (signer)
        signer[0] = '\0';
    if (rc != KC_OK)
        return rc;
    rc = check_value(r, kind, key, *data, len, signer ? signer : who);
    if (rc != KC_OK) {
        if (rc == KC_ESIGNATURE)
            atomic_fetch_add(&r->untrusted, 1);
        kc_free(*data);
        *data = NULL;
        *len = 0;
    }
    return rc;
}

/* A blob's value, its signature trailer (if any) cut off: a blob needs no
 * signature of its own, its key is the hash of its bytes and a checked
 * record names it. */
static int get_blob(kc_remote_t *r, const kc_key_t *key, void **blob, size_t *len)
{
    int rc = kc_remote_get(r, KC_REC_BLOB, key, blob, len);
    if (rc == KC_OK && *len >= SIG_TRAILER &&
        memcmp((uint8_t *)*blob + *len - SIG_TRAILER, SIG_MAGIC, 4) == 0)
        *len -= SIG_TRAILER;
    return rc;
}

/* ---- pull and push -------------------------------------------------------- */

/* Get (kind, key) from the remote and decode it; it must be a record of
 * that kind whose key derives from its preimage. */
static int get_record(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                      kc_record_t **out)
{
    void *data = NULL;
    size_t len = 0;
    kc_key_t derived;
    int rc = kc_remote_get_record(r, kind, key, &data, &len, NULL);

    *out = NULL;
    if (rc != KC_OK)
        return rc;
    rc = kc_record_decode(data, len, out);
    kc_free(data);
    if (rc == KC_EVERSION)
        return KC_ENOTFOUND; /* written by a newer kcache: not ours to judge */
    if (rc != KC_OK)
        return KC_ECORRUPT;
    if ((int)(*out)->kind != (int)kind ||
        kc_record_derived_key(*out, &derived) != KC_OK ||
        kc_key_cmp(&derived, key) != 0) {
        kc_free(*out);
        *out = NULL;
        return KC_ECORRUPT;
    }
    return KC_OK;
}

/* Build bkey and its cubin from the remote, both checked: *build and
 * *cubin (free each with kc_free). */
static int get_build_chain(kc_remote_t *r, const kc_key_t *bkey, kc_record_t **build,
                           void **cubin, size_t *cubin_len)
{
    void *blob = NULL;
    size_t blob_len = 0;
    int rc = get_record(r, KC_REC_BUILD, bkey, build);

    *cubin = NULL;
    if (rc == KC_OK)
        rc = get_blob(r, &(*build)->u.build.blob, &blob, &blob_len);
    if (rc == KC_OK) {
        /* The remote holds no dictionaries: a blob that needs one is bad. */
        rc = kc_blob_decode(blob, blob_len, &(*build)->u.build.blob, 0, NULL, 0, cubin,
                            cubin_len);
        if (rc != KC_OK && rc != KC_ENOMEM)
            rc = KC_ECORRUPT;
    }
    kc_free(blob);
    if (rc != KC_OK) {
        kc_free(*build);
        *build = NULL;
    }
    return rc;
}

/* Count a pull's outcome and say why one was refused. */
static int refused(kc_remote_t *r, int rc, const char *what)
{
    if (rc == KC_OK)
        atomic_fetch_add(&r->pulls, 1);
    else if (rc == KC_ECORRUPT)
        atomic_fetch_add(&r->rejected, 1);
    if (rc == KC_ECORRUPT) {
        /* The remote holds a damaged value: this handle's next pushes
         * rewrite what it pushed before, whatever it was. */
        kc__pushed_clear(r->pushed);
        kc__diag_fail(r, rc, "%s: %s failed its checks",
                      r->n == 1 ? r->shards[0].s.name : "remote", what);
    }
    return rc;
}

int kc_remote_pull(kc_remote_t *r, kc_store_t *dst, const kc_key_t *tkey)
{
    kc_record_t *tuning = NULL, *build = NULL;
    void *cubin = NULL;
    size_t cubin_len = 0;
    int rc;

    if (!r || !dst || !tkey)
        return KC_EINVAL;
    rc = get_record(r, KC_REC_TUNING, tkey, &tuning);
    if (rc == KC_OK)
        rc = get_build_chain(r, &tuning->u.tuning.winner_build, &build, &cubin,
                             &cubin_len);
    if (rc == KC_OK) {
        kc_buf_t buf = {cubin, cubin_len};
        kc_publish_t pub = {&buf, 1, &build->u.build, 1, &tuning->u.tuning, NULL, 0};
        rc = kc_store_publish(dst, &pub);
    }
    kc_free(cubin);
    kc_free(build);
    kc_free(tuning);
    return refused(r, rc, "a tuning's chain");
}

int kc_remote_pull_build(kc_remote_t *r, kc_store_t *dst, const kc_key_t *bkey)
{
    kc_record_t *build = NULL;
    void *cubin = NULL;
    size_t cubin_len = 0;
    int rc;

    if (!r || !dst || !bkey)
        return KC_EINVAL;
    rc = get_build_chain(r, bkey, &build, &cubin, &cubin_len);
    if (rc == KC_OK) {
        kc_buf_t buf = {cubin, cubin_len};
        kc_publish_t pub = {&buf, 1, &build->u.build, 1, NULL, NULL, 0};
        rc = kc_store_publish(dst, &pub);
    }
    kc_free(cubin);
    kc_free(build);
    return refused(r, rc, "a build or its cubin");
}

/* Copy blob bkey from src to the remote, re-encoded without a dictionary
 * if it had one (the remote holds no dictionaries). */
static int push_blob(kc_remote_t *r, kc_store_t *src, const kc_key_t *bkey)
{
    void *blob = NULL, *cubin = NULL, *plain = NULL;
    size_t blob_len = 0, cubin_len = 0, plain_len = 0;
    kc_blob_rec_t view;
    kc_key_t plain_key;
    int rc = kc_store_get_raw(src, KC_REC_BLOB, bkey, &blob, &blob_len);

    if (rc == KC_OK)
        rc = kc__blob_view(blob, blob_len, &view);
    if (rc == KC_OK && view.dict_id != 0) {
        rc = kc_store_get_cubin(src, bkey, &cubin, &cubin_len);
        if (rc == KC_OK)
            rc = kc_blob_encode(cubin, cubin_len, 0, &plain_key, &plain, &plain_len);
    }
    /* Unsigned: a blob's key is the hash of its bytes and only a checked
     * record leads a reader to it, so a signature over a whole cubin would
     * be paid for and never read (get_blob). */
    if (rc == KC_OK)
        rc = kc_remote_put(r, KC_REC_BLOB, bkey, plain ? plain : blob,
                           plain ? plain_len : blob_len);
    kc_free(plain);
    kc_free(cubin);
    kc_free(blob);
    return rc;
}

/* Copy build bkey and its blob from src to the remote, blob first. */
static int push_build(kc_remote_t *r, kc_store_t *src, const kc_key_t *bkey)
{
    void *b_raw = NULL;
    size_t b_len = 0;
    kc_record_t *build = NULL;

    /* Pushed by this handle a moment ago, as another tuning's candidate. */
    if (kc__pushed_recent(r->pushed, bkey, now_us()))
        return KC_OK;
    int rc = kc_store_get_raw(src, KC_REC_BUILD, bkey, &b_raw, &b_len);

    if (rc == KC_OK)
        rc = kc_record_decode(b_raw, b_len, &build);
    if (rc == KC_OK)
        rc = push_blob(r, src, &build->u.build.blob);
    if (rc == KC_OK)
        rc = put_value(r, KC_REC_BUILD, bkey, b_raw, b_len);
    if (rc == KC_OK)
        kc__pushed_note(r->pushed, bkey, now_us());
    kc_free(build);
    kc_free(b_raw);
    return rc;
}

int kc_remote_push(kc_remote_t *r, kc_store_t *src, const kc_key_t *tkey)
{
    void *t_raw = NULL;
    size_t t_len = 0;
    kc_record_t *tuning = NULL;
    int rc;

    if (!r || !src || !tkey)
        return KC_EINVAL;
    rc = kc_store_get_raw(src, KC_REC_TUNING, tkey, &t_raw, &t_len);
    if (rc == KC_OK)
        rc = kc_record_decode(t_raw, t_len, &tuning);
    /* The other candidates' builds first, as far as this store has them
     * (a build reused from a lower layer is not here): another machine
     * that tunes a new signature of this kernel pulls them instead of
     * compiling. Then the winner's, then the tuning, so that a reader that
     * finds the tuning finds its chain. */
    for (size_t i = 0; rc == KC_OK && i < tuning->u.tuning.n_candidates; i++) {
        const kc_candidate_t *c = &tuning->u.tuning.candidates[i];
        if (c->status != KC_CAND_OK || kc_key_is_zero(&c->build) ||
            kc_key_cmp(&c->build, &tuning->u.tuning.winner_build) == 0)
            continue;
        int one = push_build(r, src, &c->build);
        if (one == KC_EREMOTE)
            rc = one;
    }
    if (rc == KC_OK)
        rc = push_build(r, src, &tuning->u.tuning.winner_build);
    if (rc == KC_OK)
        rc = put_value(r, KC_REC_TUNING, tkey, t_raw, t_len);
    if (rc == KC_OK)
        atomic_fetch_add(&r->pushes, 1);
    kc_free(tuning);
    kc_free(t_raw);
    return rc;
}

int kc_remote_push_build(kc_remote_t *r, kc_store_t *src, const kc_key_t *bkey)
{
    int rc;
    if (!r || !src || !bkey)
        return KC_EINVAL;
    rc = push_build(r, src, bkey);
    if (rc == KC_OK)
        atomic_fetch_add(&r->pushes, 1);
    return rc;
}

/* ---- groups --------------------------------------------------------------- */

int kc_remote_push_group(kc_remote_t *r, kc_store_t *src, const char *name)
{
    void *g_raw = NULL;
    size_t g_len = 0;
    kc_record_t *group = NULL;
    kc_key_t gkey;
    int rc;

    if (!r || !src || !name || kc_group_key(name, &gkey) != KC_OK)
        return KC_EINVAL;
    rc = kc_store_get_raw(src, KC_REC_GROUP, &gkey, &g_raw, &g_len);
    if (rc == KC_OK)
        rc = kc_record_decode(g_raw, g_len, &group);
    if (rc == KC_OK &&
        (group->kind != KC_REC_GROUP || strcmp(group->u.group.name, name) != 0))
        rc = KC_ECORRUPT;
    /* Every blob first and the group last: a reader that finds the group
     * finds its files. */
    for (size_t i = 0; rc == KC_OK && i < group->u.group.n_files; i++)
        rc = push_blob(r, src, &group->u.group.files[i].blob);
    if (rc == KC_OK)
        rc = put_value(r, KC_REC_GROUP, &gkey, g_raw, g_len);
    if (rc == KC_OK)
        atomic_fetch_add(&r->pushes, 1);
    kc_free(group);
    kc_free(g_raw);
    return rc;
}

int kc_remote_pull_group(kc_remote_t *r, kc_store_t *dst, const char *name)
{
    kc_record_t *group = NULL;
    kc_group_file_t *files = NULL;
    size_t n = 0;
    kc_key_t gkey;
    int rc;

    if (!r || !dst || !name || kc_group_key(name, &gkey) != KC_OK)
        return KC_EINVAL;
    rc = get_record(r, KC_REC_GROUP, &gkey, &group);
    if (rc == KC_OK && strcmp(group->u.group.name, name) != 0)
        rc = KC_ECORRUPT;
    if (rc == KC_OK &&
        !(files = calloc(group->u.group.n_files ? group->u.group.n_files : 1,
                         sizeof(*files))))
        rc = KC_ENOMEM;
    for (; rc == KC_OK && n < group->u.group.n_files; n++) {
        const kc_group_entry_t *e = &group->u.group.files[n];
        void *blob = NULL, *data = NULL;
        size_t blob_len = 0, len = 0;

        rc = get_blob(r, &e->blob, &blob, &blob_len);
        if (rc == KC_OK) {
            /* The blob's hash is its key; its size must be the listed one. */
            rc = kc_blob_decode(blob, blob_len, &e->blob, 0, NULL, 0, &data, &len);
            if (rc != KC_OK && rc != KC_ENOMEM)
                rc = KC_ECORRUPT;
            else if (rc == KC_OK && len != e->size)
                rc = KC_ECORRUPT;
        }
        kc_free(blob);
        if (rc != KC_OK) {
            kc_free(data);
            break;
        }
        files[n] = (kc_group_file_t){e->name, data, len};
    }
    /* One write transaction: the blobs and the group, or nothing. */
    if (rc == KC_OK)
        rc = kc_store_group_put(dst, name, files, n, 1);
    for (size_t i = 0; files && i < n; i++)
        kc_free((void *)files[i].data);
    free(files);
    kc_free(group);
    return refused(r, rc, "a group or one of its files");
}

/* ---- listing and servers ---------------------------------------------------- */

/* "<prefix>kcache:1:<kind>:<hex>" back to (kind, key); 0 if it is not one. */
static int parse_redis_key(const kc_remote_t *r, const char *k, size_t len,
                           kc_rec_kind_t *kind, kc_key_t *key)
{
    size_t pl = strlen(r->prefix);
    char name[32], hex[KC_KEY_HEX_LEN + 1];
    const char *p, *colon;

    if (len < pl + 9 || memcmp(k, r->prefix, pl) != 0 || memcmp(k + pl, "kcache:1:", 9))
        return 0;
    p = k + pl + 9;
    colon = memchr(p, ':', len - (size_t)(p - k));
    if (!colon || (size_t)(colon - p) >= sizeof(name) ||
        len - (size_t)(colon + 1 - k) != KC_KEY_HEX_LEN)
        return 0;
    memcpy(name, p, (size_t)(colon - p));
    name[colon - p] = '\0';
    memcpy(hex, colon + 1, KC_KEY_HEX_LEN);
    hex[KC_KEY_HEX_LEN] = '\0';
    int kd = kc_rec_kind_from_name(name);
    if (kd <= 0 || kc_key_from_hex(hex, key) != KC_OK)
        return 0;
    *kind = (kc_rec_kind_t)kd;
    return 1;
}

int kc_remote_scan(kc_remote_t *r, int kind, kc_remote_scan_fn fn, void *user)
{
    char match[KC__RKEY_MAX];
    int failed = 0, stop = 0;

    if (!r || !fn)
        return KC_EINVAL;
    if (kind)
        snprintf(match, sizeof(match), "%skcache:1:%s:*", r->prefix,
                 kc_rec_kind_name(kind));
    else
        snprintf(match, sizeof(match), "%skcache:1:*", r->prefix);
    for (size_t i = 0; i < r->n && !stop; i++) {
        shard_t *sh = &r->shards[i];
        char cursor[32] = "0";
        shard_lock(r, sh);
        int rc = ensure_connected(r, sh);
        while (rc == KC_OK && !stop) {
            redisReply *rep =
                redisCommand(sh->c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
            if (!rep) {
                rc = go_down(r, sh, "SCAN: %s", sh->c->errstr);
                break;
            }
            if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                rep->element[0]->type != REDIS_REPLY_STRING ||
                rep->element[1]->type != REDIS_REPLY_ARRAY) {
                rc = reply_error(r, sh, "SCAN", match, rep);
                freeReplyObject(rep);
                break;
            }
            snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
            /* fn may call the remote: not under this shard's lock. */
            pthread_mutex_unlock(&sh->mu);
            for (size_t j = 0; j < rep->element[1]->elements && !stop; j++) {
                const redisReply *e = rep->element[1]->element[j];
                kc_rec_kind_t kd;
                kc_key_t key;
                if (e->type == REDIS_REPLY_STRING &&
                    parse_redis_key(r, e->str, e->len, &kd, &key) &&
                    (!kind || (int)kd == kind))
                    stop = fn(user, kd, &key) != 0;
            }
            freeReplyObject(rep);
            shard_lock(r, sh);
            if (strcmp(cursor, "0") == 0)
                break;
            if (!sh->c) {
                rc = ensure_connected(r, sh);
            }
        }
        pthread_mutex_unlock(&sh->mu);
        if (rc != KC_OK)
            failed = 1;
    }
    return failed ? KC_EREMOTE : KC_OK;
}

/* The value of field name in an INFO reply ("name:value\r\n"). */
static int info_field(const char *info, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            size_t n = strcspn(p + nl + 1, "\r\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, p + nl + 1, n);
            out[n] = '\0';
            return 1;
        }
    return 0;
}

int kc_remote_server_info(kc_remote_t *r, size_t i, kc_remote_server_t *out)
{
    shard_t *sh;
    int rc;

    if (!r || !out || i >= r->n)
        return KC_EINVAL;
    memset(out, 0, sizeof(*out));
    sh = &r->shards[i];
    snprintf(out->name, sizeof(out->name), "%s", sh->s.name);
    out->db = sh->s.db;
    shard_lock(r, sh);
    rc = ensure_connected(r, sh);
    if (rc == KC_OK) {
        redisReply *rep = redisCommand(sh->c, "INFO");
        if (!rep) {
            rc = go_down(r, sh, "INFO: %s", sh->c->errstr);
        } else if (rep->type != REDIS_REPLY_STRING && rep->type != 5 /* VERB */) {
            rc = reply_error(r, sh, "INFO", "", rep);
        } else {
            char v[64];
            out->up = 1;
            info_field(rep->str, "redis_version", out->version, sizeof(out->version));
            if (info_field(rep->str, "used_memory", v, sizeof(v)))
                out->used_memory = strtoull(v, NULL, 10);
        }
        freeReplyObject(rep);
    }
    if (rc != KC_OK)
        snprintf(out->error, sizeof(out->error), "%s", kc_remote_errmsg(r));
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

size_t kc_remote_value_len(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key)
{
    char k[KC__RKEY_MAX];
    shard_t *sh;
    size_t n = 0;

    if (!r || !key)
        return 0;
    redis_key(r, kind, key, k);
    sh = shard_of(r, k);
    shard_lock(r, sh);
    if (ensure_connected(r, sh) == KC_OK) {
        redisReply *rep = redisCommand(sh->c, "STRLEN %s", k);
        if (!rep)
            go_down(r, sh, "STRLEN: %s", sh->c->errstr);
        else if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
            n = (size_t)rep->integer;
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&sh->mu);
    return n;
}

/* ---- leases: single flight across machines ---------------------------------- */

/* Take it if free, renew it if ours: one script, so that no other client
 * runs between the read and the write. */
static const char lease_take[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) return 1 end "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "return 0";
static const char lease_drop[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

static int lease_call(kc_remote_t *r, const kc_key_t *key, const char *script,
                      uint64_t ttl_ms, long long *result)
{
    char k[KC__RKEY_MAX], ttl[24];
    shard_t *sh;
    int rc;

    if (!r || !key)
        return KC_EINVAL;
    redis_key(r, KC_REC_LEASE, key, k);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    sh = shard_of(r, k);
    shard_lock(r, sh);
    rc = ensure_connected(r, sh);
    if (rc == KC_OK) {
        redisReply *rep =
            redisCommand(sh->c, "EVAL %s 1 %s %s %s", script, k, r->owner, ttl);
        if (!rep)
            rc = go_down(r, sh, "EVAL (lease): %s", sh->c->errstr);
        else if (rep->type != REDIS_REPLY_INTEGER)
            rc = reply_error(r, sh, "EVAL (lease)", k, rep);
        else
            *result = rep->integer;
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int kc_remote_lease_acquire(kc_remote_t *r, const kc_key_t *key, uint64_t ttl_ms)
{
    long long got = 0;
    int rc = lease_call(r, key, lease_take, ttl_ms, &got);
    if (rc != KC_OK)
        return rc;
    return got == 1 ? KC_OK : KC_EBUSY;
}

int kc_remote_lease_release(kc_remote_t *r, const kc_key_t *key)
{
    long long got = 0;
    int rc = lease_call(r, key, lease_drop, 1, &got);
    if (rc != KC_OK)
        return rc;
    return got == 1 ? KC_OK : KC_ENOTFOUND;
}

const char *kc_remote_owner(const kc_remote_t *r)
{
    return r ? r->owner : "";
}
