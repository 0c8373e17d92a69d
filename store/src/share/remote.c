/* The remote tier over Redis (hiredis, synchronous, one connection a
 * handle, calls serialized by a mutex). See kcache/remote.h. */
#include "kcache/remote.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "opts.h"
#include "blob_internal.h"
#include "diag.h"
#include "kcache/blob.h"
#include "kcache/errors.h"

struct kc_remote {
    char host[256];
    int port;
    int db;
    kc_remote_opts_t opts;
    pthread_mutex_t mu;
    redisContext *c;     /* NULL until connected, and after a failure */
    uint64_t down_until; /* monotonic us: fail fast until then */
    char down_why[512];  /* why it is down (until down_until), under mu */
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

/* ---- URL ------------------------------------------------------------------ */

/* redis://host[:port][/db], host a name, an IPv4 address or [IPv6]. */
static int parse_url(const char *url, kc_remote_t *r)
{
    static const char scheme[] = "redis://";
    const char *p, *end;
    size_t hlen;

    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                      "remote URL must start with redis:// (got \"%s\")", url ? url : "");
        return KC_EINVAL;
    }
    p = url + sizeof(scheme) - 1;
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end) {
            kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "%s: unclosed [ in the host",
                          url);
            return KC_EINVAL;
        }
        hlen = (size_t)(end - p - 1);
        memcpy(r->host, p + 1, hlen < sizeof(r->host) ? hlen : 0);
        p = end + 1;
    } else {
        end = p + strcspn(p, ":/");
        hlen = (size_t)(end - p);
        if (hlen < sizeof(r->host))
            memcpy(r->host, p, hlen);
        p = end;
    }
    if (hlen == 0 || hlen >= sizeof(r->host)) {
        kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "%s: no host, or one too long",
                      url);
        return KC_EINVAL;
    }
    r->host[hlen] = '\0';
    r->port = 6379;
    if (*p == ':') {
        char *e;
        errno = 0;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || errno || port < 1 || port > 65535) {
            kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "%s: bad port", url);
            return KC_EINVAL;
        }
        r->port = (int)port;
        p = e;
    }
    if (*p == '/' && p[1]) {
        char *e;
        errno = 0;
        long db = strtol(p + 1, &e, 10);
        if (e == p + 1 || *e || errno || db < 0 || db > INT_MAX) {
            kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "%s: bad database number",
                          url);
            return KC_EINVAL;
        }
        r->db = (int)db;
        p = e;
    } else if (*p == '/') {
        p++;
    }
    if (*p) {
        kc__diag_fail(kc__diag_remote_open, KC_EINVAL, "%s: unexpected \"%s\"", url, p);
        return KC_EINVAL;
    }
    return KC_OK;
}

int kc_remote_open(const char *url, const kc_remote_opts_t *opts, kc_remote_t **out)
{
    kc_remote_t *r;
    int rc;

    kc__diag_release(kc__diag_remote_open);
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!(r = calloc(1, sizeof(*r))))
        return KC_ENOMEM;
    if ((rc = parse_url(url, r)) != KC_OK) {
        free(r);
        return rc;
    }
    if (kc__opts_read(&r->opts, sizeof(r->opts), opts) != KC_OK) {
        free(r);
        return kc__diag_fail(kc__diag_remote_open, KC_EINVAL,
                             "kc_remote_open: opts->size is %zu, this library's is %zu "
                             "(use KC_REMOTE_OPTS_INIT)",
                             opts->size, sizeof(r->opts));
    }
    if (!r->opts.connect_timeout_ms)
        r->opts.connect_timeout_ms = 100;
    if (!r->opts.io_timeout_ms)
        r->opts.io_timeout_ms = 250;
    if (!r->opts.retry_after_ms)
        r->opts.retry_after_ms = 10000;
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return KC_OK;
}

void kc_remote_close(kc_remote_t *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const char *kc_remote_errmsg(const kc_remote_t *r)
{
    return kc__diag_get(r ? (const void *)r : kc__diag_remote_open);
}

/* ---- one command ------------------------------------------------------------ */

/* Drop the connection and fail fast for retry_after_ms. */
static int go_down(kc_remote_t *r, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(r->down_why, sizeof(r->down_why), "%s:%d: ", r->host, r->port);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(r->down_why))
        vsnprintf(r->down_why + n, sizeof(r->down_why) - (size_t)n, fmt, ap);
    va_end(ap);
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    r->down_until = now_us() + (uint64_t)r->opts.retry_after_ms * 1000u;
    return kc__diag_fail(r, KC_EREMOTE, "%s", r->down_why);
}

static int ensure_connected(kc_remote_t *r)
{
    if (r->c)
        return KC_OK;
    if (r->down_until && now_us() < r->down_until)
        return kc__diag_fail(r, KC_EREMOTE, "%s (not retried yet)", r->down_why);
    r->c = redisConnectWithTimeout(r->host, r->port, tv_ms(r->opts.connect_timeout_ms));
    if (!r->c)
        return go_down(r, "connect: out of memory");
    if (r->c->err)
        return go_down(r, "connect: %s", r->c->errstr);
    if (redisSetTimeout(r->c, tv_ms(r->opts.io_timeout_ms)) != REDIS_OK)
        return go_down(r, "cannot set the I/O timeout");
    if (r->db) {
        redisReply *rep = redisCommand(r->c, "SELECT %d", r->db);
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (!rep)
            return go_down(r, "SELECT %d: %s", r->db, r->c->errstr);
        freeReplyObject(rep);
        if (!ok)
            return go_down(r, "SELECT %d refused", r->db);
    }
    r->down_until = 0;
    return KC_OK;
}

static void redis_key(kc_rec_kind_t kind, const kc_key_t *key, char out[64])
{
    char hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(key, hex);
    snprintf(out, 64, "kcache:1:%s:%s", kc_rec_kind_name(kind), hex);
}

int kc_remote_get(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key, void **data,
                  size_t *len)
{
    char k[64];
    int rc;

    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!r || !key || !data || !len)
        return KC_EINVAL;
    redis_key(kind, key, k);
    pthread_mutex_lock(&r->mu);
    rc = ensure_connected(r);
    if (rc == KC_OK) {
        redisReply *rep = redisCommand(r->c, "GET %s", k);
        if (!rep) {
            rc = go_down(r, "GET: %s", r->c->errstr);
        } else if (rep->type == REDIS_REPLY_NIL) {
            rc = KC_ENOTFOUND;
        } else if (rep->type != REDIS_REPLY_STRING) {
            /* The server answered, but not with a value (a wrong type, an
             * error): this key is unusable, the remote is not down. */
            rc =
                kc__diag_fail(r, KC_EREMOTE, "%s:%d: GET %s: %s", r->host, r->port, k,
                              rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string");
        } else if (!(*data = malloc(rep->len ? rep->len : 1))) {
            rc = KC_ENOMEM;
        } else {
            memcpy(*data, rep->str, rep->len);
            *len = rep->len;
        }
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int kc_remote_put(kc_remote_t *r, kc_rec_kind_t kind, const kc_key_t *key,
                  const void *data, size_t len)
{
    char k[64];
    int rc;

    if (!r || !key || (len && !data))
        return KC_EINVAL;
    redis_key(kind, key, k);
    pthread_mutex_lock(&r->mu);
    rc = ensure_connected(r);
    if (rc == KC_OK) {
        redisReply *rep = redisCommand(r->c, "SET %s %b", k, data, len);
        if (!rep) {
            rc = go_down(r, "SET: %s", r->c->errstr);
        } else if (rep->type != REDIS_REPLY_STATUS) {
            rc = kc__diag_fail(r, KC_EREMOTE, "%s:%d: SET %s: %s", r->host, r->port, k,
                               rep->type == REDIS_REPLY_ERROR ? rep->str
                                                              : "unexpected reply");
        }
        freeReplyObject(rep);
    }
    pthread_mutex_unlock(&r->mu);
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
    int rc = kc_remote_get(r, kind, key, &data, &len);

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
        rc = kc_remote_get(r, KC_REC_BLOB, &(*build)->u.build.blob, &blob, &blob_len);
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

static int refused(kc_remote_t *r, int rc, const char *what)
{
    if (rc == KC_ECORRUPT)
        kc__diag_fail(r, rc, "%s:%d: %s failed its checks", r->host, r->port, what);
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
    int rc = kc_store_get_raw(src, KC_REC_BUILD, bkey, &b_raw, &b_len);

    if (rc == KC_OK)
        rc = kc_record_decode(b_raw, b_len, &build);
    if (rc == KC_OK)
        rc = push_blob(r, src, &build->u.build.blob);
    if (rc == KC_OK)
        rc = kc_remote_put(r, KC_REC_BUILD, bkey, b_raw, b_len);
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
        rc = kc_remote_put(r, KC_REC_TUNING, tkey, t_raw, t_len);
    kc_free(tuning);
    kc_free(t_raw);
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
        rc = kc_remote_put(r, KC_REC_GROUP, &gkey, g_raw, g_len);
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

        rc = kc_remote_get(r, KC_REC_BLOB, &e->blob, &blob, &blob_len);
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
