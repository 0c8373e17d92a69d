/* Record codec: header, checksum and the payload of every kind. The byte
 * layout is specified in docs/FORMAT.md; keep the two in step. */
#include "kcache/record.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "blob_internal.h"
#include "kcache/errors.h"
#include "record_internal.h"
#include "wire.h"

static const uint8_t record_magic[4] = {'K', 'C', 'R', '\0'};

/* The fewest bytes one encoded array element can take. Decoders check
 * count * minimum against the bytes left before they reserve anything, so a
 * forged count cannot make them allocate or loop more than the input allows. */
#define PARAM_MIN_SIZE (4 + 8)             /* name, value */
#define CAND_MIN_SIZE (4 + 16 + 1 + 8 + 4) /* params, build, status, ns, reason */

static const char *const kind_names[] = {
    [KC_REC_BLOB] = "blob",       [KC_REC_BUILD] = "build", [KC_REC_TUNING] = "tuning",
    [KC_REC_USAGE] = "usage",     [KC_REC_LEASE] = "lease", [KC_REC_META] = "meta",
    [KC_REC_BINMETA] = "binmeta", [KC_REC_GROUP] = "group",
};

static const char *const status_names[] = {
    [KC_CAND_OK] = "ok",
    [KC_CAND_COMPILE_ERROR] = "compile-error",
    [KC_CAND_RESOURCES] = "resources",
    [KC_CAND_LAUNCH_FAILED] = "launch-failed",
    [KC_CAND_LOAD_FAILED] = "load-failed",
    [KC_CAND_SKIPPED] = "skipped",
};
#define KC_CAND_STATUS_MAX KC_CAND_SKIPPED

const char *kc_rec_kind_name(int kind)
{
    if (kind < KC_REC_KIND_MIN || kind > KC_REC_KIND_MAX)
        return NULL;
    return kind_names[kind];
}

int kc_rec_kind_from_name(const char *name)
{
    if (!name)
        return 0;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++)
        if (strcmp(name, kind_names[k]) == 0)
            return k;
    return 0;
}

const char *kc_cand_status_name(int status)
{
    if (status < 0 || status > KC_CAND_STATUS_MAX)
        return NULL;
    return status_names[status];
}

/* ---- encoding ----------------------------------------------------------- */

static void put_key(kc__wbuf_t *w, const kc_key_t *k)
{
    kc__w_bytes(w, k->b, sizeof(k->b));
}

static void put_buf(kc__wbuf_t *w, kc_buf_t b)
{
    kc__w_lbytes(w, b.data, b.size);
}

static int put_params(kc__wbuf_t *w, const kc_param_t *p, size_t n)
{
    if ((n && !p) || n > UINT32_MAX)
        return KC_EINVAL;
    kc__w_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        kc__w_str(w, p[i].name);
        kc__w_u64(w, (uint64_t)p[i].value);
    }
    return KC_OK;
}

static int put_tuning(kc__wbuf_t *w, const kc_tuning_rec_t *t)
{
    int rc;

    put_buf(w, t->preimage);
    if ((rc = put_params(w, t->winner, t->n_winner)) != KC_OK)
        return rc;
    put_key(w, &t->winner_build);
    if ((t->n_candidates && !t->candidates) || t->n_candidates > UINT32_MAX)
        return KC_EINVAL;
    kc__w_u32(w, (uint32_t)t->n_candidates);
    for (size_t i = 0; i < t->n_candidates; i++) {
        const kc_candidate_t *c = &t->candidates[i];
        if (c->status > KC_CAND_STATUS_MAX)
            return KC_EINVAL;
        if ((rc = put_params(w, c->params, c->n_params)) != KC_OK)
            return rc;
        put_key(w, &c->build);
        kc__w_u8(w, c->status);
        kc__w_u64(w, c->median_ns);
        kc__w_str(w, c->reason);
    }
    kc__w_u64(w, t->tuning_us);
    kc__w_str(w, t->device_name);
    kc__w_str(w, t->arch);
    kc__w_u32(w, t->sm_count);
    kc__w_u32(w, t->driver_version);
    kc__w_u64(w, t->created);
    return KC_OK;
}

static int put_payload(kc__wbuf_t *w, const kc_record_t *rec)
{
    switch (rec->kind) {
    case KC_REC_BLOB: {
        const kc_blob_rec_t *b = &rec->u.blob;
        if (b->codec != KC_CODEC_ZSTD)
            return KC_EINVAL;
        kc__w_u8(w, b->codec);
        kc__w_u32(w, b->dict_id);
        kc__w_u64(w, b->raw_size);
        put_buf(w, b->frame);
        return KC_OK;
    }
    case KC_REC_BUILD: {
        const kc_build_rec_t *b = &rec->u.build;
        put_buf(w, b->preimage);
        put_key(w, &b->blob);
        kc__w_str(w, b->entry);
        kc__w_u32(w, b->registers);
        kc__w_u32(w, b->static_smem);
        kc__w_u32(w, b->max_threads);
        kc__w_u32(w, b->local_bytes);
        kc__w_u64(w, b->compile_us);
        kc__w_u64(w, b->created);
        return KC_OK;
    }
    case KC_REC_TUNING:
        return put_tuning(w, &rec->u.tuning);
    case KC_REC_USAGE:
        kc__w_u64(w, rec->u.usage.last_use);
        kc__w_u64(w, rec->u.usage.uses);
        return KC_OK;
    case KC_REC_LEASE: {
        const kc_lease_rec_t *l = &rec->u.lease;
        kc__w_str(w, l->host);
        kc__w_str(w, l->boot_id);
        kc__w_u32(w, l->pid);
        kc__w_u64(w, l->start);
        kc__w_u64(w, l->ttl_ms);
        return KC_OK;
    }
    case KC_REC_META:
        put_buf(w, rec->u.meta.value);
        return KC_OK;
    case KC_REC_BINMETA:
        return kc__binmeta_put(w, &rec->u.binmeta);
    case KC_REC_GROUP:
        return kc__group_put(w, &rec->u.group);
    }
    return KC_EINVAL;
}

int kc_record_encode(const kc_record_t *rec, void **out, size_t *out_len)
{
    kc__wbuf_t w;
    int rc;

    if (!rec || !out || !out_len)
        return KC_EINVAL;
    *out = NULL;
    *out_len = 0;
    kc__wbuf_init(&w);
    kc__w_bytes(&w, record_magic, sizeof(record_magic));
    kc__w_u8(&w, (uint8_t)rec->kind);
    kc__w_u8(&w, KC_RECORD_VERSION);
    kc__w_u16(&w, 0);
    kc__w_u32(&w, 0); /* payload length, patched below */
    if ((rc = put_payload(&w, rec)) != KC_OK)
        goto fail;
    if (w.failed)
        return kc__wbuf_finish(&w, out, out_len);
    size_t payload_len = w.len - KC_RECORD_HEADER_SIZE;
    if (payload_len > UINT32_MAX) {
        rc = KC_EINVAL;
        goto fail;
    }
    kc__w_patch_u32(&w, 8, (uint32_t)payload_len);
    kc__w_u64(&w, XXH3_64bits(w.data, w.len));
    return kc__wbuf_finish(&w, out, out_len);
fail:
    kc__wbuf_free(&w);
    return rc;
}

/* ---- checking ----------------------------------------------------------- */

int kc_record_check(const void *data, size_t len, int *kind, int *version)
{
    const uint8_t *p = data;

    if (!data)
        return KC_EINVAL;
    if (len < KC_RECORD_HEADER_SIZE + KC_RECORD_TRAILER_SIZE)
        return KC_ECORRUPT;
    if (memcmp(p, record_magic, sizeof(record_magic)) != 0)
        return KC_ECORRUPT;
    uint64_t payload_len = kc__load_u32le(p + 8);
    if ((uint64_t)len != KC_RECORD_HEADER_SIZE + payload_len + KC_RECORD_TRAILER_SIZE)
        return KC_ECORRUPT;
    size_t body = len - KC_RECORD_TRAILER_SIZE;
    if (XXH3_64bits(p, body) != kc__load_u64le(p + body))
        return KC_ECORRUPT;
    /* A newer writer may have changed anything after the version byte, so
     * the version is judged before the fields it governs. */
    if (p[5] > KC_RECORD_VERSION)
        return KC_EVERSION;
    if (p[5] == 0 || p[6] != 0 || p[7] != 0)
        return KC_ECORRUPT;
    if (p[4] < KC_REC_KIND_MIN || p[4] > KC_REC_KIND_MAX)
        return KC_ECORRUPT;
    if (kind)
        *kind = p[4];
    if (version)
        *version = p[5];
    return KC_OK;
}

/* ---- decoding ----------------------------------------------------------- */

/* Decoding runs twice over the payload: see record_internal.h. */
typedef kc__dec_t dec_t;

static int get_key(kc__rcur_t *r, kc_key_t *k)
{
    return kc__dec_key(r, k);
}

/* Byte strings point into the payload being parsed: the input on the first
 * pass, the block's copy on the second. */
static int get_buf(kc__rcur_t *r, kc_buf_t *b)
{
    uint32_t n;
    const uint8_t *p = kc__r_lbytes(r, &n);
    if (!p)
        return KC_ECORRUPT;
    b->data = p;
    b->size = n;
    return KC_OK;
}

static int get_str(dec_t *d, kc__rcur_t *r, const char **out)
{
    return kc__dec_str(d, r, out, NULL, NULL);
}

static int get_params(dec_t *d, kc__rcur_t *r, const kc_param_t **out, size_t *n_out)
{
    uint32_t n = kc__r_u32(r);
    if (r->bad || (uint64_t)n * PARAM_MIN_SIZE > kc__r_left(r))
        return KC_ECORRUPT;
    kc_param_t *a = kc__dec_reserve(d, n * sizeof(*a), alignof(kc_param_t));
    for (uint32_t i = 0; i < n; i++) {
        kc_param_t p;
        int rc = get_str(d, r, &p.name);
        if (rc != KC_OK)
            return rc;
        p.value = (int64_t)kc__r_u64(r);
        if (a)
            a[i] = p;
    }
    if (r->bad)
        return KC_ECORRUPT;
    *out = a;
    *n_out = n;
    return KC_OK;
}

static int get_candidates(dec_t *d, kc__rcur_t *r, kc_tuning_rec_t *t)
{
    uint32_t n = kc__r_u32(r);
    if (r->bad || (uint64_t)n * CAND_MIN_SIZE > kc__r_left(r))
        return KC_ECORRUPT;
    kc_candidate_t *a = kc__dec_reserve(d, n * sizeof(*a), alignof(kc_candidate_t));
    for (uint32_t i = 0; i < n; i++) {
        kc_candidate_t c;
        int rc;
        if ((rc = get_params(d, r, &c.params, &c.n_params)) != KC_OK)
            return rc;
        if ((rc = get_key(r, &c.build)) != KC_OK)
            return rc;
        c.status = kc__r_u8(r);
        if (c.status > KC_CAND_STATUS_MAX)
            return KC_ECORRUPT;
        c.median_ns = kc__r_u64(r);
        if ((rc = get_str(d, r, &c.reason)) != KC_OK)
            return rc;
        if (a)
            a[i] = c;
    }
    t->candidates = a;
    t->n_candidates = n;
    return KC_OK;
}

static int get_blob(kc__rcur_t *r, kc_blob_rec_t *b)
{
    b->codec = kc__r_u8(r);
    b->dict_id = kc__r_u32(r);
    b->raw_size = kc__r_u64(r);
    if (r->bad || b->codec != KC_CODEC_ZSTD)
        return KC_ECORRUPT;
    return get_buf(r, &b->frame);
}

static int get_build(dec_t *d, kc__rcur_t *r, kc_build_rec_t *b)
{
    int rc;
    if ((rc = get_buf(r, &b->preimage)) != KC_OK ||
        (rc = get_key(r, &b->blob)) != KC_OK || (rc = get_str(d, r, &b->entry)) != KC_OK)
        return rc;
    b->registers = kc__r_u32(r);
    b->static_smem = kc__r_u32(r);
    b->max_threads = kc__r_u32(r);
    b->local_bytes = kc__r_u32(r);
    b->compile_us = kc__r_u64(r);
    b->created = kc__r_u64(r);
    return KC_OK;
}

static int get_tuning(dec_t *d, kc__rcur_t *r, kc_tuning_rec_t *t)
{
    int rc;
    if ((rc = get_buf(r, &t->preimage)) != KC_OK ||
        (rc = get_params(d, r, &t->winner, &t->n_winner)) != KC_OK ||
        (rc = get_key(r, &t->winner_build)) != KC_OK ||
        (rc = get_candidates(d, r, t)) != KC_OK)
        return rc;
    t->tuning_us = kc__r_u64(r);
    if ((rc = get_str(d, r, &t->device_name)) != KC_OK ||
        (rc = get_str(d, r, &t->arch)) != KC_OK)
        return rc;
    t->sm_count = kc__r_u32(r);
    t->driver_version = kc__r_u32(r);
    t->created = kc__r_u64(r);
    return KC_OK;
}

static int get_lease(dec_t *d, kc__rcur_t *r, kc_lease_rec_t *l)
{
    int rc;
    if ((rc = get_str(d, r, &l->host)) != KC_OK ||
        (rc = get_str(d, r, &l->boot_id)) != KC_OK)
        return rc;
    l->pid = kc__r_u32(r);
    l->start = kc__r_u64(r);
    l->ttl_ms = kc__r_u64(r);
    return KC_OK;
}

/* Parse a whole payload into rec. Every byte must be used: trailing bytes
 * mean the record is not what its header says. */
static int parse_payload(dec_t *d, int kind, const uint8_t *payload, size_t len,
                         kc_record_t *rec)
{
    kc__rcur_t r;
    int rc = KC_ECORRUPT;

    kc__rcur_init(&r, payload, len);
    rec->kind = (kc_rec_kind_t)kind;
    switch (kind) {
    case KC_REC_BLOB:
        rc = get_blob(&r, &rec->u.blob);
        break;
    case KC_REC_BUILD:
        rc = get_build(d, &r, &rec->u.build);
        break;
    case KC_REC_TUNING:
        rc = get_tuning(d, &r, &rec->u.tuning);
        break;
    case KC_REC_USAGE:
        rec->u.usage.last_use = kc__r_u64(&r);
        rec->u.usage.uses = kc__r_u64(&r);
        rc = KC_OK;
        break;
    case KC_REC_LEASE:
        rc = get_lease(d, &r, &rec->u.lease);
        break;
    case KC_REC_META:
        rc = get_buf(&r, &rec->u.meta.value);
        break;
    case KC_REC_BINMETA:
        rc = kc__binmeta_get(d, &r, &rec->u.binmeta);
        break;
    case KC_REC_GROUP:
        rc = kc__group_get(d, &r, &rec->u.group);
        break;
    }
    if (rc != KC_OK)
        return rc;
    if (r.bad || kc__r_left(&r) != 0)
        return KC_ECORRUPT;
    return KC_OK;
}

int kc_record_decode(const void *data, size_t len, kc_record_t **out)
{
    int kind, version, rc;

    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if ((rc = kc_record_check(data, len, &kind, &version)) != KC_OK)
        return rc;

    const uint8_t *payload = (const uint8_t *)data + KC_RECORD_HEADER_SIZE;
    size_t payload_len = len - KC_RECORD_HEADER_SIZE - KC_RECORD_TRAILER_SIZE;
    /* The block: the struct, the payload copy, then arrays and strings. */
    size_t copy_off = sizeof(kc_record_t);
    kc_record_t scratch;
    dec_t d = {NULL, copy_off + payload_len};

    memset(&scratch, 0, sizeof(scratch));
    if ((rc = parse_payload(&d, kind, payload, payload_len, &scratch)) != KC_OK)
        return rc;

    uint8_t *block = malloc(d.used);
    if (!block)
        return KC_ENOMEM;
    kc_record_t *rec = (kc_record_t *)block;
    memset(rec, 0, sizeof(*rec));
    memcpy(block + copy_off, payload, payload_len);
    d.base = block;
    d.used = copy_off + payload_len;
    rc = parse_payload(&d, kind, block + copy_off, payload_len, rec);
    if (rc != KC_OK)
        goto fail; /* cannot happen: the first pass accepted the same bytes */
    rec->version = (uint8_t)version;
    *out = rec;
    return KC_OK;
fail:
    free(block);
    return rc;
}

int kc_record_derived_key(const kc_record_t *rec, kc_key_t *out)
{
    if (!rec || !out)
        return KC_EINVAL;
    const kc_buf_t *pre;
    if (rec->kind == KC_REC_BINMETA) {
        *out = rec->u.binmeta.build;
        return KC_OK;
    }
    if (rec->kind == KC_REC_GROUP)
        return kc_group_key(rec->u.group.name, out);
    if (rec->kind == KC_REC_BUILD)
        pre = &rec->u.build.preimage;
    else if (rec->kind == KC_REC_TUNING)
        pre = &rec->u.tuning.preimage;
    else
        return KC_EINVAL;
    if (pre->size && !pre->data)
        return KC_EINVAL;
    *out = kc_key_hash(pre->data, pre->size);
    return KC_OK;
}

/* Declared in blob_internal.h; it lives here because the blob payload
 * layout does. */
int kc__blob_raw_size(const void *rec, size_t len, uint64_t *raw)
{
    const uint8_t *p = rec;
    /* The header, then the payload's codec (u8) and dict_id (u32) before
     * raw_size, then the frame's length (u32) and the frame
     * (docs/FORMAT.md, "blob"). */
    const size_t at = KC_RECORD_HEADER_SIZE + 5, frame_at = at + 8 + 4;

    if (!p || len < frame_at || memcmp(p, record_magic, sizeof(record_magic)) != 0 ||
        p[4] != KC_REC_BLOB || p[5] != KC_RECORD_VERSION ||
        kc__load_u32le(p + 8) < 5 + 8 + 4 || p[KC_RECORD_HEADER_SIZE] != KC_CODEC_ZSTD)
        return KC_ECORRUPT;
    *raw = kc__load_u64le(p + at);
    /* No checksum covers raw_size short of the whole record's; the zstd
     * frame's header states the size too (kcache writes it), so a damaged
     * one disagrees. Only the frame's first bytes are read. */
    unsigned long long fcs = ZSTD_getFrameContentSize(p + frame_at, len - frame_at);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != *raw))
        return KC_ECORRUPT;
    return KC_OK;
}

int kc__blob_view(const void *rec, size_t len, kc_blob_rec_t *out)
{
    int kind, rc;

    if (!out)
        return KC_EINVAL;
    if ((rc = kc_record_check(rec, len, &kind, NULL)) != KC_OK)
        return rc;
    if (kind != KC_REC_BLOB)
        return KC_ECORRUPT;

    kc__rcur_t r;
    kc__rcur_init(&r, (const uint8_t *)rec + KC_RECORD_HEADER_SIZE,
                  len - KC_RECORD_HEADER_SIZE - KC_RECORD_TRAILER_SIZE);
    if ((rc = get_blob(&r, out)) != KC_OK)
        return rc;
    if (kc__r_left(&r) != 0)
        return KC_ECORRUPT;
    return KC_OK;
}
