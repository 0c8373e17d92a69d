/* kc_bundle_import: read a whole bundle, validate every byte of it, then
 * write its records in one write transaction. */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "grow.h"
#include "opts.h"
#include "blob_internal.h"
#include "bundle_internal.h"
#include "kcache/blob.h"
#include "kcache/bundle.h"
#include "store_internal.h"
#include "wire.h"

/* One record frame, pointing into the bundle's bytes. */
typedef struct frame {
    int kind;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *rec;
    size_t rec_len;
    size_t off;       /* of the frame in the bundle */
    size_t index;     /* 1-based */
    kc_key_t ref;     /* a build's blob, a tuning's winning build */
    uint32_t dict_id; /* blobs: the dictionary, meta: the id it holds */
    uint64_t rank;    /* tunings and groups: preference(), lower is better */
} frame_t;

typedef struct import_ctx {
    kc_store_t *st;
    const char *name;
    kc_bundle_prefer_t prefer;
    const kc_bundle_key_t *trust;
    frame_t *frames;
    size_t n_frames;
    frame_t **by_key; /* frames sorted by kind, then key */
    uint64_t now;
    /* Set by each attempt of the write transaction. */
    kc_bundle_stats_t stats;
    uint64_t new_bytes;
    const frame_t *bad; /* the frame that failed inside the txn */
    const char *why;
    kc_key_t missing;
} import_ctx_t;

/* ---- messages ---------------------------------------------------------------- */

/* "frame 17 (build 3f2a1b9c...)" into out. */
static const char *frame_desc(const frame_t *f, char *out, size_t cap)
{
    if (f->kind == KC_REC_META) {
        snprintf(out, cap, "frame %zu (meta %.*s)", f->index, (int)f->key_len,
                 (const char *)f->key);
    } else {
        char hex[KC_KEY_HEX_LEN + 1];
        kc_key_t k;
        memcpy(k.b, f->key, 16);
        kc_key_to_hex(&k, hex);
        snprintf(out, cap, "frame %zu (%s %.12s...)", f->index,
                 kc_rec_kind_name(f->kind) ? kc_rec_kind_name(f->kind) : "?", hex);
    }
    return out;
}

static int frame_fail(import_ctx_t *c, const frame_t *f, int rc, const char *what)
{
    char d[96];
    return kc__store_fail(c->st, rc, "%s: %s: %s at byte offset %zu", c->name,
                          frame_desc(f, d, sizeof(d)), what, f->off);
}

/* ---- parsing the stream ------------------------------------------------------ */

static int truncated(import_ctx_t *c, size_t off)
{
    return kc__store_fail(c->st, KC_ECORRUPT,
                          "%s: truncated after %zu record(s) (byte %zu): no trailer",
                          c->name, c->n_frames, off);
}

static int parse_header(import_ctx_t *c, const uint8_t *p, size_t len, size_t *off,
                        unsigned *flags)
{
    uint32_t plen;
    size_t n;

    if (len < KC__BUNDLE_HEAD_FIXED || memcmp(p, KC__BUNDLE_MAGIC, 4) != 0) {
        if (len >= 4 && memcmp(p, KC__BUNDLE_MAGIC, 4) != 0)
            return kc__store_fail(c->st, KC_ECORRUPT,
                                  "%s: not a kcache bundle (bad magic at byte offset 0)",
                                  c->name);
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: truncated in the header at byte %zu", c->name, len);
    }
    plen = kc__load_u32le(p + 16);
    if (plen > KC__BUNDLE_PRODUCER_MAX)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: damaged header (producer length %" PRIu32
                              " at byte offset 16)",
                              c->name, plen);
    n = KC__BUNDLE_HEAD_FIXED + plen;
    if (len < n + KC__BUNDLE_CHECKSUM)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: truncated in the header at byte %zu", c->name, len);
    if (XXH3_64bits(p, n) != kc__load_u64le(p + n))
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: header checksum mismatch at byte offset 0", c->name);
    if (p[4] > KC_BUNDLE_VERSION || p[5] != 0)
        return kc__store_fail(
            c->st, KC_EVERSION,
            "%s: bundle format version %u is newer than this kcache's (%d)", c->name,
            (unsigned)(p[4] | p[5] << 8), KC_BUNDLE_VERSION);
    if (p[4] == 0)
        return kc__store_fail(c->st, KC_ECORRUPT, "%s: bundle format version 0", c->name);
    *flags = (unsigned)p[6] | (unsigned)p[7] << 8;
    if (*flags & ~KC__BUNDLE_FLAG_SIGNED)
        return kc__store_fail(c->st, KC_EUNSUPPORTED, "%s: unknown header flags 0x%04x",
                              c->name, *flags & ~KC__BUNDLE_FLAG_SIGNED);
    *off = n + KC__BUNDLE_CHECKSUM;
    return KC_OK;
}

static int parse_trailer(import_ctx_t *c, const uint8_t *p, size_t len, size_t off)
{
    const uint8_t *t = p + off;
    size_t end =
        off + KC__BUNDLE_FRAME_HEAD + KC__BUNDLE_TRAILER_BODY + KC__BUNDLE_CHECKSUM;
    XXH128_canonical_t canon;
    uint64_t count;

    if (t[1] != 0 || t[2] != 0 || t[3] != 0 ||
        kc__load_u32le(t + 4) != KC__BUNDLE_TRAILER_BODY)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: damaged trailer at byte offset %zu", c->name, off);
    if (len < end)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: truncated in the trailer after %zu records (byte %zu)",
                              c->name, c->n_frames, len);
    if (XXH3_64bits(t, end - off - KC__BUNDLE_CHECKSUM) != kc__load_u64le(t + 32))
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: trailer checksum mismatch at byte offset %zu", c->name,
                              off);
    count = kc__load_u64le(t + 8);
    if (count != c->n_frames)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: truncated after %zu of %" PRIu64 " records (byte %zu)",
                              c->name, c->n_frames, count, off);
    XXH128_canonicalFromHash(&canon, XXH3_128bits(p, off));
    if (memcmp(canon.digest, t + 16, 16) != 0)
        return kc__store_fail(
            c->st, KC_ECORRUPT,
            "%s: the trailer's digest does not match the %zu bytes before "
            "it (trailer at byte offset %zu)",
            c->name, off, off);
    if (len != end)
        return kc__store_fail(c->st, KC_ECORRUPT,
                              "%s: %zu bytes after the trailer (byte %zu)", c->name,
                              len - end, end);
    return KC_OK;
}

static int key_len_ok(int kind, size_t key_len)
{
    if (kind == KC_REC_BLOB || kind == KC_REC_BUILD || kind == KC_REC_TUNING ||
        kind == KC_REC_BINMETA || kind == KC_REC_GROUP)
        return key_len == 16;
    return kind == KC_REC_META && key_len >= 1 && key_len <= KC__BUNDLE_META_KEY_MAX;
}

/* Split the bundle into frames, checking each frame's checksum and the
 * trailer. Nothing of the records is judged yet. */
static int parse(import_ctx_t *c, const uint8_t *p, size_t len)
{
    size_t off = 0, cap = 0;
    unsigned flags = 0;
    int rc;

    if ((rc = parse_header(c, p, len, &off, &flags)) != KC_OK)
        return rc;
    /* The signature is checked before any frame is read, so that with a
     * trusted key nothing but the header of an unverified bundle is
     * parsed. From here on the signature block is not part of the input. */
    if ((rc = kc__bsig_check(c->st, c->name, p, len, flags, c->trust, &len, &c->stats)) !=
        KC_OK)
        return rc;
    for (;;) {
        const uint8_t *h = p + off;
        frame_t *f;
        size_t body;

        if (len - off < KC__BUNDLE_FRAME_HEAD)
            return truncated(c, off);
        if (h[0] == KC__FRAME_TRAILER)
            return parse_trailer(c, p, len, off);
        if (h[0] != KC__FRAME_RECORD)
            return kc__store_fail(
                c->st, KC_ECORRUPT,
                "%s: frame %zu: unknown frame tag 0x%02x at byte offset "
                "%zu",
                c->name, c->n_frames + 1, h[0], off);
        if (kc__grow((void **)&c->frames, c->n_frames, &cap, sizeof(*c->frames), 256) !=
            0)
            return kc__store_fail(c->st, KC_ENOMEM, "%s: out of memory", c->name);
        f = &c->frames[c->n_frames];
        memset(f, 0, sizeof(*f));
        f->kind = h[1];
        f->key_len = (size_t)h[2] | (size_t)h[3] << 8;
        f->rec_len = kc__load_u32le(h + 4);
        f->off = off;
        f->index = c->n_frames + 1;
        body = KC__BUNDLE_FRAME_HEAD + f->key_len + f->rec_len;
        if (len - off < body + KC__BUNDLE_CHECKSUM)
            return truncated(c, off);
        f->key = h + KC__BUNDLE_FRAME_HEAD;
        f->rec = f->key + f->key_len;
        if (XXH3_64bits(h, body) != kc__load_u64le(h + body)) {
            if (key_len_ok(f->kind, f->key_len)) /* what the frame claims to be */
                return frame_fail(c, f, KC_ECORRUPT, "checksum mismatch");
            return kc__store_fail(c->st, KC_ECORRUPT,
                                  "%s: frame %zu: checksum mismatch at byte offset %zu",
                                  c->name, f->index, off);
        }
        if (!key_len_ok(f->kind, f->key_len))
            return kc__store_fail(
                c->st, KC_ECORRUPT,
                "%s: frame %zu: kind %d with a %zu-byte key at byte offset %zu", c->name,
                f->index, f->kind, f->key_len, off);
        c->n_frames++;
        off += body + KC__BUNDLE_CHECKSUM;
    }
}

/* ---- validating the records ------------------------------------------------- */

static int frame_cmp(const void *a, const void *b)
{
    const frame_t *x = *(frame_t *const *)a, *y = *(frame_t *const *)b;
    int d;

    if (x->kind != y->kind)
        return x->kind - y->kind;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    d = memcmp(x->key, y->key, x->key_len);
    return d ? d : (x->index > y->index) - (x->index < y->index);
}

static const frame_t *find_frame(const import_ctx_t *c, int kind, const void *key,
                                 size_t key_len)
{
    size_t lo = 0, hi = c->n_frames;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const frame_t *f = c->by_key[mid];
        int d = f->kind != kind         ? f->kind - kind
                : f->key_len != key_len ? (f->key_len < key_len ? -1 : 1)
                                        : memcmp(f->key, key, key_len);
        if (d == 0)
            return f;
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* "dict.<id>" with id a decimal number in 1..2^32-1, written canonically. */
static int dict_name_id(const uint8_t *key, size_t len, uint32_t *id)
{
    uint64_t v = 0;

    if (len < 6 || len > 15 || memcmp(key, "dict.", 5) != 0 || key[5] == '0')
        return 0;
    for (size_t i = 5; i < len; i++) {
        if (key[i] < '0' || key[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(key[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return 0;
    *id = (uint32_t)v;
    return 1;
}

static int check_meta(import_ctx_t *c, frame_t *f, const kc_record_t *rec)
{
    const kc_buf_t *v = &rec->u.meta.value;
    static const uint8_t magic[4] = {0x37, 0xA4, 0x30, 0xEC};

    if (!dict_name_id(f->key, f->key_len, &f->dict_id))
        return frame_fail(c, f, KC_EUNSUPPORTED,
                          "a meta record other than a dictionary (dict.<id>)");
    if (v->size < 8 || memcmp(v->data, magic, 4) != 0 ||
        ZSTD_getDictID_fromDict(v->data, v->size) != f->dict_id)
        return frame_fail(c, f, KC_ECORRUPT,
                          "not a zstd dictionary of the id it is named by");
    return KC_OK;
}

typedef struct dict_read {
    kc__env_t *env;
    const char *name;
    void *value;
    size_t len;
} dict_read_t;

static int dict_read_fn(MDB_txn *txn, void *arg)
{
    dict_read_t *d = arg;
    return kc__meta_read_alloc(txn, d->env, d->name, &d->value, &d->len);
}

/* Decompress a blob and check it hashes to its key, with its dictionary
 * from the bundle or else from the store. */
static int check_blob(import_ctx_t *c, frame_t *f)
{
    kc_blob_rec_t b;
    kc_key_t key;
    void *raw = NULL, *owned = NULL;
    const void *dict = NULL;
    size_t raw_len, dict_len = 0;
    int rc;

    if ((rc = kc__blob_view(f->rec, f->rec_len, &b)) != KC_OK)
        return frame_fail(c, f, rc, "damaged blob record");
    f->dict_id = b.dict_id;
    if (b.dict_id) {
        char name[32];
        const frame_t *d;
        snprintf(name, sizeof(name), "dict.%u", (unsigned)b.dict_id);
        d = find_frame(c, KC_REC_META, name, strlen(name));
        if (d) {
            kc__rcur_t r;
            kc__rcur_init(&r, d->rec + KC_RECORD_HEADER_SIZE,
                          d->rec_len - KC_RECORD_HEADER_SIZE - KC_RECORD_TRAILER_SIZE);
            uint32_t n;
            dict = kc__r_lbytes(&r, &n);
            dict_len = n;
        } else {
            dict_read_t dr = {c->st->env, name, NULL, 0};
            if (kc__env_read(c->st->env, dict_read_fn, &dr) == 0) {
                dict = owned = dr.value;
                dict_len = dr.len;
            }
        }
    }
    memcpy(key.b, f->key, 16);
    rc = kc_blob_decode(f->rec, f->rec_len, &key, 0, dict, dict_len, &raw, &raw_len);
    kc_free(raw);
    free(owned);
    if (rc == KC_EUNSUPPORTED)
        return frame_fail(
            c, f, rc, "its zstd dictionary is neither in the bundle nor in the store");
    if (rc != KC_OK)
        return frame_fail(c, f, rc == KC_ETOOBIG ? rc : KC_ECORRUPT,
                          "the cubin does not decompress to bytes that hash to its key");
    return KC_OK;
}

static uint64_t winner_median(const kc_tuning_rec_t *t)
{
    for (size_t i = 0; i < t->n_candidates; i++)
        if (t->candidates[i].status == KC_CAND_OK &&
            memcmp(t->candidates[i].build.b, t->winner_build.b, 16) == 0)
            return t->candidates[i].median_ns;
    return UINT64_MAX;
}

/* How prefer "faster" ranks a tuning or group, lower first: a tuning by its
 * winner's median time, a group by how recently it was updated. */
static uint64_t preference(const kc_record_t *rec)
{
    if (rec->kind == KC_REC_TUNING)
        return winner_median(&rec->u.tuning);
    return UINT64_MAX - rec->u.group.updated;
}

static int check_record(import_ctx_t *c, frame_t *f)
{
    kc_record_t *rec = NULL;
    kc_key_t derived;
    int rc, kind;

    rc = kc_record_check(f->rec, f->rec_len, &kind, NULL);
    if (rc == KC_EVERSION)
        return frame_fail(c, f, rc, "a record of a newer format");
    if (rc != KC_OK)
        return frame_fail(c, f, KC_ECORRUPT,
                          "the record's own checksum or header is bad");
    if (kind != f->kind)
        return frame_fail(c, f, KC_ECORRUPT,
                          "the record's kind differs from the frame's");
    if (f->kind == KC_REC_BLOB)
        return check_blob(c, f);
    rc = kc_record_decode(f->rec, f->rec_len, &rec);
    if (rc != KC_OK)
        return frame_fail(c, f, rc == KC_ENOMEM ? rc : KC_ECORRUPT,
                          "the record does not decode");
    if (f->kind == KC_REC_META) {
        rc = check_meta(c, f, rec);
    } else if (kc_record_derived_key(rec, &derived) != KC_OK ||
               memcmp(derived.b, f->key, 16) != 0) {
        rc = frame_fail(c, f, KC_ECORRUPT,
                        f->kind == KC_REC_BINMETA
                            ? "the key is not the build key the record carries"
                        : f->kind == KC_REC_GROUP
                            ? "the key is not the hash of the group's name"
                            : "the key is not the hash of the record's preimage");
    } else if (f->kind == KC_REC_GROUP) {
        f->rank = preference(rec);
    } else if (f->kind == KC_REC_BINMETA) {
        f->ref = rec->u.binmeta.build;
    } else if (f->kind == KC_REC_BUILD) {
        f->ref = rec->u.build.blob;
    } else {
        f->ref = rec->u.tuning.winner_build;
        f->rank = preference(rec);
    }
    kc_free(rec);
    return rc;
}

static int validate(import_ctx_t *c)
{
    int rc;

    c->by_key = malloc((c->n_frames ? c->n_frames : 1) * sizeof(*c->by_key));
    if (!c->by_key)
        return kc__store_fail(c->st, KC_ENOMEM, "%s: out of memory", c->name);
    for (size_t i = 0; i < c->n_frames; i++)
        c->by_key[i] = &c->frames[i];
    if (c->n_frames)
        qsort(c->by_key, c->n_frames, sizeof(*c->by_key), frame_cmp);
    for (size_t i = 1; i < c->n_frames; i++)
        if (frame_cmp(&c->by_key[i - 1], &c->by_key[i]) != 0 &&
            c->by_key[i - 1]->kind == c->by_key[i]->kind &&
            c->by_key[i - 1]->key_len == c->by_key[i]->key_len &&
            memcmp(c->by_key[i - 1]->key, c->by_key[i]->key, c->by_key[i]->key_len) == 0)
            return frame_fail(c, c->by_key[i], KC_ECORRUPT,
                              "the same record appears twice in the bundle");
    /* Dictionaries first: blobs are checked with them. */
    for (size_t i = 0; i < c->n_frames; i++)
        if (c->frames[i].kind == KC_REC_META &&
            (rc = check_record(c, &c->frames[i])) != 0)
            return rc;
    for (size_t i = 0; i < c->n_frames; i++)
        if (c->frames[i].kind != KC_REC_META &&
            (rc = check_record(c, &c->frames[i])) != 0)
            return rc;
    return KC_OK;
}

/* ---- committing ---------------------------------------------------------------- */

/* Whether the record (kind, key) a frame needs is in the bundle or stored. */
static int require(MDB_txn *txn, import_ctx_t *c, const frame_t *f, int kind)
{
    MDB_val k = kc__key_val(&f->ref), v;
    int rc;

    if (find_frame(c, kind, f->ref.b, 16))
        return 0;
    rc = mdb_get(txn, c->st->env->dbi[kind], &k, &v);
    if (rc == MDB_NOTFOUND) {
        c->bad = f;
        c->missing = f->ref;
        c->why = kind == KC_REC_BLOB         ? "its blob"
                 : f->kind == KC_REC_BINMETA ? "its build"
                                             : "its winning build";
        return KC_ECORRUPT;
    }
    return rc;
}

/* Every file's blob of group frame f must be in the bundle or stored. */
static int require_group_blobs(MDB_txn *txn, import_ctx_t *c, const frame_t *f)
{
    kc_record_t *rec = NULL;
    int rc = kc_record_decode(f->rec, f->rec_len, &rec); /* validated before */

    if (rc != KC_OK)
        return rc;
    for (size_t i = 0; i < rec->u.group.n_files && rc == 0; i++) {
        const kc_key_t *b = &rec->u.group.files[i].blob;
        MDB_val k = kc__key_val(b), v;
        if (find_frame(c, KC_REC_BLOB, b->b, 16))
            continue;
        rc = mdb_get(txn, c->st->env->dbi[KC_REC_BLOB], &k, &v);
        if (rc == MDB_NOTFOUND) {
            c->bad = f;
            c->missing = *b;
            c->why = "the blob of one of its files";
            rc = KC_ECORRUPT;
        }
    }
    kc_free(rec);
    return rc;
}

/* Whether the bundle's tuning or group f replaces the stored one, v:
 * always for prefer "incoming", never for "existing", and for "faster"
 * when it ranks first (preference). A stored record that does not decode
 * loses to a sound one. */
static int incoming_wins(const import_ctx_t *c, const frame_t *f, const MDB_val *v)
{
    kc_record_t *old = NULL;
    int wins;

    if (c->prefer == KC_PREFER_INCOMING)
        return 1;
    if (c->prefer != KC_PREFER_FASTER)
        return 0;
    if (kc_record_decode(v->mv_data, v->mv_size, &old) != KC_OK ||
        (int)old->kind != (int)f->kind)
        wins = 1;
    else
        wins = f->rank < preference(old);
    kc_free(old);
    return wins;
}

static int put_frame(MDB_txn *txn, import_ctx_t *c, const frame_t *f)
{
    kc__env_t *env = c->st->env;
    MDB_val k = {f->key_len, (void *)f->key}, v = {f->rec_len, (void *)f->rec}, old;
    int rc, replace = 0;

    if (f->kind == KC_REC_BUILD && (rc = require(txn, c, f, KC_REC_BLOB)) != 0)
        return rc;
    if ((f->kind == KC_REC_TUNING || f->kind == KC_REC_BINMETA) &&
        (rc = require(txn, c, f, KC_REC_BUILD)) != 0)
        return rc;
    if (f->kind == KC_REC_GROUP && (rc = require_group_blobs(txn, c, f)) != 0)
        return rc;
    rc = mdb_get(txn, env->dbi[f->kind], &k, &old);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0) {
        int same =
            old.mv_size == f->rec_len && memcmp(old.mv_data, f->rec, f->rec_len) == 0;
        if (f->kind == KC_REC_META && !same) {
            c->bad = f;
            c->why = NULL;
            return KC_EEXIST;
        }
        /* Same blob or build key: same cubin, same preimage; a binmeta
         * describes that same build. Ours stays. */
        if (same || (f->kind != KC_REC_TUNING && f->kind != KC_REC_GROUP)) {
            c->stats.present++;
            return 0;
        }
        if (!incoming_wins(c, f, &old)) {
            c->stats.kept++;
            return 0;
        }
        replace = 1;
    }
    if ((rc = kc__rec_put(txn, env, f->kind, &k, &v, 0)) != 0)
        return rc;
    if (replace)
        c->stats.replaced++;
    else
        c->stats.added++;
    if (f->kind == KC_REC_BLOB)
        c->new_bytes += f->rec_len;
    /* A binmeta's key is its build's, whose stamp it shares. */
    if (f->kind != KC_REC_META && f->kind != KC_REC_BINMETA) {
        kc_key_t key;
        memcpy(key.b, f->key, 16);
        return kc__usage_stamp(txn, env, &key, c->now, 0);
    }
    return 0;
}

static int commit_fn(MDB_txn *txn, void *arg)
{
    import_ctx_t *c = arg;
    static const int order[] = {KC_REC_META,    KC_REC_BLOB,   KC_REC_BUILD,
                                KC_REC_BINMETA, KC_REC_TUNING, KC_REC_GROUP};
    int rc;

    c->stats.added = c->stats.present = c->stats.replaced = c->stats.kept = 0;
    c->new_bytes = 0;
    c->bad = NULL;
    for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++)
        for (size_t i = 0; i < c->n_frames; i++)
            if (c->frames[i].kind == order[o] &&
                (rc = put_frame(txn, c, &c->frames[i])) != 0)
                return rc;
    return 0;
}

static void count_kinds(import_ctx_t *c)
{
    c->stats.records = c->n_frames;
    for (size_t i = 0; i < c->n_frames; i++) {
        switch (c->frames[i].kind) {
        case KC_REC_BLOB:
            c->stats.blobs++;
            break;
        case KC_REC_BUILD:
            c->stats.builds++;
            break;
        case KC_REC_TUNING:
            c->stats.tunings++;
            break;
        case KC_REC_BINMETA:
            c->stats.binmeta++;
            break;
        case KC_REC_GROUP:
            c->stats.groups++;
            break;
        default:
            c->stats.dicts++;
        }
    }
}

int kc_bundle_import_mem(kc_store_t *store, const void *data, size_t len,
                         const kc_bundle_import_opts_t *opts, kc_bundle_stats_t *stats)
{
    import_ctx_t c;
    kc_bundle_import_opts_t o;
    uint64_t max;
    int rc;

    if (stats)
        memset(stats, 0, sizeof(*stats));
    if (!store || (!data && len))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK)
        return kc__store_fail(store, KC_EINVAL,
                              "import: opts->size is %zu, this library's is %zu "
                              "(use KC_BUNDLE_IMPORT_OPTS_INIT)",
                              opts->size, sizeof(o));
    opts = &o;
    memset(&c, 0, sizeof(c));
    c.st = store;
    c.name = opts && opts->name ? opts->name : "bundle";
    c.prefer = opts ? opts->prefer : KC_PREFER_EXISTING;
    c.trust = opts ? opts->trust : NULL;
    max = opts && opts->max_bytes ? opts->max_bytes : KC_BUNDLE_DEFAULT_MAX;
    if (c.prefer < KC_PREFER_EXISTING || c.prefer > KC_PREFER_FASTER)
        return kc__store_fail(store, KC_EINVAL, "import: unknown preference %d",
                              (int)c.prefer);
    if ((rc = kc__store_check_writable(store, "import")) != KC_OK)
        return rc;
    if (len > max)
        return kc__store_fail(store, KC_ETOOBIG,
                              "%s: %zu bytes is over the import limit of %" PRIu64
                              " bytes",
                              c.name, len, max);
    c.stats.bytes = len;
    if ((rc = parse(&c, data, len)) != KC_OK || (rc = validate(&c)) != KC_OK)
        goto fail;
    count_kinds(&c);
    c.now = kc__now_s();
    rc = kc__env_write(store->env, commit_fn, &c);
    if (rc != 0) {
        if (c.bad && rc == KC_ECORRUPT) {
            char hex[KC_KEY_HEX_LEN + 1], what[160];
            kc_key_to_hex(&c.missing, hex);
            snprintf(what, sizeof(what),
                     "%s %s is neither in the bundle nor in the store", c.why, hex);
            rc = frame_fail(&c, c.bad, rc, what);
        } else if (c.bad && rc == KC_EEXIST) {
            rc = frame_fail(&c, c.bad, rc,
                            "the store holds a different dictionary of the same id");
        } else {
            rc = kc__store_finish(store, rc, "import");
        }
        goto fail;
    }
    if (c.new_bytes)
        kc_store_count(store, KC_COUNTER_BYTES_STORED, c.new_bytes);
    if (stats)
        *stats = c.stats;
    rc = KC_OK;
fail:
    free(c.frames);
    free(c.by_key);
    return rc;
}

int kc_bundle_import(kc_store_t *store, FILE *in, const kc_bundle_import_opts_t *opts,
                     kc_bundle_stats_t *stats)
{
    uint64_t max = opts && opts->max_bytes ? opts->max_bytes : KC_BUNDLE_DEFAULT_MAX;
    const char *name = opts && opts->name ? opts->name : "bundle";
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    if (stats)
        memset(stats, 0, sizeof(*stats));
    if (!store || !in)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "import")) != KC_OK)
        return rc;
    /* The whole bundle is read before anything is judged or written; the
     * bound keeps a endless or forged stream from exhausting memory. */
    for (;;) {
        size_t got;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
            uint8_t *nb;
            if (ncap > max + 1)
                ncap = (size_t)max + 1;
            if (ncap <= cap) {
                rc = kc__store_fail(store, KC_ETOOBIG,
                                    "%s: over the import limit of %" PRIu64 " bytes",
                                    name, max);
                goto fail;
            }
            nb = realloc(buf, ncap);
            if (!nb) {
                rc = kc__store_fail(store, KC_ENOMEM, "%s: out of memory after %zu bytes",
                                    name, len);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + len, 1, cap - len, in);
        len += got;
        if (got == 0) {
            if (ferror(in)) {
                rc = kc__store_fail(store, KC_EIO, "%s: read error after %zu bytes", name,
                                    len);
                goto fail;
            }
            break;
        }
    }
    rc = kc_bundle_import_mem(store, buf, len, opts, stats);
fail:
    free(buf);
    return rc;
}
