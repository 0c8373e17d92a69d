/* Build and tuning preimages: the canonical bytes that build and tuning keys
 * hash. docs/FORMAT.md gives the layout byte by byte.
 *
 * Decoding accepts only canonical bytes (known source kind, parameters
 * strictly sorted by name, no trailing bytes), so decode followed by encode
 * gives back the same bytes and therefore the same key. */
#include "kcache/key.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "wire.h"

static const uint8_t build_magic[4] = {'K', 'C', 'P', 'B'};
static const uint8_t tuning_magic[4] = {'K', 'C', 'P', 'T'};

/* The smallest encoding of an option (a u32 length) and of a parameter (a
 * u32 length and an i64), used to refuse absurd counts before allocating. */
#define MIN_OPTION_BYTES 4u
#define MIN_PARAM_BYTES 12u

static int valid_source_kind(unsigned kind)
{
    return kind == KC_SOURCE_CUDA || kind == KC_SOURCE_PTX || kind == KC_SOURCE_PREBUILT;
}

/* ---- encoding ----------------------------------------------------------- */

static int write_head(kc__wbuf_t *w, const uint8_t magic[4], kc_source_kind_t kind,
                      const kc_key_t *digest, const char *entry,
                      const char *const *options, size_t n_options)
{
    if (!valid_source_kind(kind) || !entry || (n_options && !options) ||
        n_options > UINT32_MAX)
        return KC_EINVAL;
    kc__w_bytes(w, magic, 4);
    kc__w_u16(w, KC_KEY_SCHEMA_VERSION);
    kc__w_u8(w, (uint8_t)kind);
    kc__w_bytes(w, digest->b, sizeof(digest->b));
    kc__w_str(w, entry);
    kc__w_u32(w, (uint32_t)n_options);
    for (size_t i = 0; i < n_options; i++)
        kc__w_str(w, options[i]); /* a NULL option fails the buffer */
    return KC_OK;
}

static int cmp_param_ptr(const void *a, const void *b)
{
    const kc_param_t *pa = *(const kc_param_t *const *)a;
    const kc_param_t *pb = *(const kc_param_t *const *)b;
    return strcmp(pa->name, pb->name);
}

/* Writes the parameters sorted by name, so that the order a caller lists
 * them in never changes the key. */
static int write_params(kc__wbuf_t *w, const kc_param_t *params, size_t n)
{
    const kc_param_t **sorted = NULL;

    if (n == 0) {
        kc__w_u32(w, 0);
        return KC_OK;
    }
    if (!params || n > UINT32_MAX)
        return KC_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!params[i].name)
            return KC_EINVAL;
    sorted = malloc(n * sizeof(*sorted));
    if (!sorted)
        return KC_ENOMEM;
    for (size_t i = 0; i < n; i++)
        sorted[i] = &params[i];
    qsort(sorted, n, sizeof(*sorted), cmp_param_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            free(sorted);
            return KC_EINVAL;
        }
    }
    kc__w_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        kc__w_str(w, sorted[i]->name);
        kc__w_u64(w, (uint64_t)sorted[i]->value);
    }
    free(sorted);
    return KC_OK;
}

int kc_build_preimage_encode(const kc_build_desc_t *desc, void **out, size_t *out_len)
{
    kc__wbuf_t w;
    int rc;

    if (!desc || !out || !out_len)
        return KC_EINVAL;
    kc__wbuf_init(&w);
    rc = write_head(&w, build_magic, desc->source_kind, &desc->source_digest, desc->entry,
                    desc->options, desc->n_options);
    if (rc != KC_OK)
        goto fail;
    rc = write_params(&w, desc->params, desc->n_params);
    if (rc != KC_OK)
        goto fail;
    kc__w_str(&w, desc->arch);
    kc__w_str(&w, desc->toolchain);
    return kc__wbuf_finish(&w, out, out_len);
fail:
    kc__wbuf_free(&w);
    return rc;
}

int kc_tuning_preimage_encode(const kc_tuning_desc_t *desc, void **out, size_t *out_len)
{
    kc__wbuf_t w;
    int rc;

    if (!desc || !out || !out_len)
        return KC_EINVAL;
    kc__wbuf_init(&w);
    rc = write_head(&w, tuning_magic, desc->source_kind, &desc->source_digest,
                    desc->entry, desc->options, desc->n_options);
    if (rc != KC_OK)
        goto fail;
    kc__w_bytes(&w, desc->space_digest.b, sizeof(desc->space_digest.b));
    kc__w_lbytes(&w, desc->shape_sig.data, desc->shape_sig.size);
    kc__w_str(&w, desc->arch);
    kc__w_u32(&w, desc->sm_count);
    kc__w_str(&w, desc->device_name);
    return kc__wbuf_finish(&w, out, out_len);
fail:
    kc__wbuf_free(&w);
    return rc;
}

int kc_build_key(const kc_build_desc_t *desc, kc_key_t *out)
{
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (!out)
        return KC_EINVAL;
    rc = kc_build_preimage_encode(desc, &buf, &len);
    if (rc != KC_OK)
        return rc;
    *out = kc_key_hash(buf, len);
    kc_free(buf);
    return KC_OK;
}

int kc_tuning_key(const kc_tuning_desc_t *desc, kc_key_t *out)
{
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (!out)
        return KC_EINVAL;
    rc = kc_tuning_preimage_encode(desc, &buf, &len);
    if (rc != KC_OK)
        return rc;
    *out = kc_key_hash(buf, len);
    kc_free(buf);
    return KC_OK;
}

/* ---- decoding ----------------------------------------------------------- */

/* Decoding runs the same parser twice: a measuring pass that validates
 * everything and adds up the string bytes, then, over one allocation of the
 * right size, a filling pass that copies the strings in. */
typedef struct dec {
    kc__rcur_t r;
    char *strs;       /* filling pass: next free byte; measuring pass: NULL */
    size_t str_bytes; /* measuring pass: bytes needed for strings and blobs */
} dec_t;

/* Reads a length-prefixed field. A string gets a NUL-terminated copy and
 * may not contain a NUL itself; raw/raw_len give the bytes in the input. */
static int read_field(dec_t *d, int is_string, const void **out, const uint8_t **raw,
                      uint32_t *raw_len)
{
    uint32_t n;
    const uint8_t *p = kc__r_lbytes(&d->r, &n);

    if (!p || (is_string && memchr(p, 0, n)))
        return KC_ECORRUPT;
    if (raw) {
        *raw = p;
        *raw_len = n;
    }
    if (!d->strs) {
        d->str_bytes += (size_t)n + (is_string ? 1 : 0);
        return KC_OK;
    }
    memcpy(d->strs, p, n);
    *out = d->strs;
    d->strs += n;
    if (is_string)
        *d->strs++ = '\0';
    return KC_OK;
}

static int read_str(dec_t *d, const char **out)
{
    return read_field(d, 1, (const void **)out, NULL, NULL);
}

static int read_count(dec_t *d, size_t min_elem, uint32_t *n)
{
    *n = kc__r_u32(&d->r);
    if (d->r.bad || *n > kc__r_left(&d->r) / min_elem)
        return KC_ECORRUPT;
    return KC_OK;
}

static int read_key(dec_t *d, kc_key_t *out)
{
    const uint8_t *p = kc__r_bytes(&d->r, sizeof(out->b));

    if (!p)
        return KC_ECORRUPT;
    memcpy(out->b, p, sizeof(out->b));
    return KC_OK;
}

/* Magic, schema version, source kind, source digest, entry and the option
 * count: the part both preimages share. Options are read by the caller. */
static int read_head(dec_t *d, const uint8_t magic[4], kc_source_kind_t *kind,
                     kc_key_t *digest, const char **entry, uint32_t *n_options)
{
    const uint8_t *m = kc__r_bytes(&d->r, 4);
    uint16_t version;
    uint8_t k;
    int rc;

    if (!m || memcmp(m, magic, 4) != 0)
        return KC_ECORRUPT;
    version = kc__r_u16(&d->r);
    if (d->r.bad)
        return KC_ECORRUPT;
    if (version > KC_KEY_SCHEMA_VERSION)
        return KC_EVERSION;
    if (version != KC_KEY_SCHEMA_VERSION)
        return KC_ECORRUPT;
    k = kc__r_u8(&d->r);
    if (d->r.bad || !valid_source_kind(k))
        return KC_ECORRUPT;
    *kind = (kc_source_kind_t)k;
    if ((rc = read_key(d, digest)) != KC_OK || (rc = read_str(d, entry)) != KC_OK)
        return rc;
    return read_count(d, MIN_OPTION_BYTES, n_options);
}

static int read_options(dec_t *d, uint32_t n, const char **opts)
{
    for (uint32_t i = 0; i < n; i++) {
        const char *s = NULL;
        int rc = read_str(d, &s);
        if (rc != KC_OK)
            return rc;
        if (opts)
            opts[i] = s;
    }
    return KC_OK;
}

/* Bytewise order of two names that contain no NUL, as strcmp orders them. */
static int cmp_raw(const uint8_t *a, uint32_t na, const uint8_t *b, uint32_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c != 0)
        return c;
    return (na > nb) - (na < nb);
}

static int read_params(dec_t *d, uint32_t n, kc_param_t *params)
{
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;

    for (uint32_t i = 0; i < n; i++) {
        const char *name = NULL;
        const uint8_t *raw;
        uint32_t raw_len;
        int rc = read_field(d, 1, (const void **)&name, &raw, &raw_len);
        if (rc != KC_OK)
            return rc;
        /* Names must be strictly increasing: unsorted or repeated names are
         * not something the encoder writes. */
        if (prev && cmp_raw(prev, prev_len, raw, raw_len) >= 0)
            return KC_ECORRUPT;
        prev = raw;
        prev_len = raw_len;
        int64_t v = (int64_t)kc__r_u64(&d->r);
        if (d->r.bad)
            return KC_ECORRUPT;
        if (params) {
            params[i].name = name;
            params[i].value = v;
        }
    }
    return KC_OK;
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* opts and params are NULL in the measuring pass. */
static int parse_build(dec_t *d, kc_build_desc_t *b, const char **opts,
                       kc_param_t *params, uint32_t *n_opts, uint32_t *n_params)
{
    int rc =
        read_head(d, build_magic, &b->source_kind, &b->source_digest, &b->entry, n_opts);
    if (rc != KC_OK || (rc = read_options(d, *n_opts, opts)) != KC_OK)
        return rc;
    if ((rc = read_count(d, MIN_PARAM_BYTES, n_params)) != KC_OK ||
        (rc = read_params(d, *n_params, params)) != KC_OK)
        return rc;
    if ((rc = read_str(d, &b->arch)) != KC_OK ||
        (rc = read_str(d, &b->toolchain)) != KC_OK)
        return rc;
    return kc__r_left(&d->r) == 0 ? KC_OK : KC_ECORRUPT;
}

int kc_build_preimage_decode(const void *data, size_t len, kc_build_desc_t **out)
{
    kc_build_desc_t scratch, *b;
    uint32_t n_opts, n_params;
    size_t off_opts, off_params, off_strs;
    uint8_t *mem;
    dec_t d = {0};
    int rc;

    if (!out)
        return KC_EINVAL;
    *out = NULL;
    kc__rcur_init(&d.r, data, len);
    rc = parse_build(&d, &scratch, NULL, NULL, &n_opts, &n_params);
    if (rc != KC_OK)
        return rc;

    off_opts = align_up(sizeof(kc_build_desc_t), alignof(const char *));
    off_params = align_up(off_opts + n_opts * sizeof(const char *), alignof(kc_param_t));
    off_strs = off_params + n_params * sizeof(kc_param_t);
    mem = malloc(off_strs + d.str_bytes + 1);
    if (!mem)
        return KC_ENOMEM;
    b = (kc_build_desc_t *)mem;
    memset(b, 0, sizeof(*b));
    const char **opts = (const char **)(mem + off_opts);
    kc_param_t *params = (kc_param_t *)(mem + off_params);

    kc__rcur_init(&d.r, data, len);
    d.strs = (char *)(mem + off_strs);
    rc = parse_build(&d, b, opts, params, &n_opts, &n_params);
    if (rc != KC_OK) {
        /* The bytes passed the measuring pass; only a concurrent change
         * under our feet could get here. */
        free(mem);
        return KC_EINTERNAL;
    }
    b->options = n_opts ? opts : NULL;
    b->n_options = n_opts;
    b->params = n_params ? params : NULL;
    b->n_params = n_params;
    *out = b;
    return KC_OK;
}

static int parse_tuning(dec_t *d, kc_tuning_desc_t *t, const char **opts,
                        uint32_t *n_opts)
{
    const void *sig = NULL;
    uint32_t sig_len = 0;
    const uint8_t *raw;
    int rc =
        read_head(d, tuning_magic, &t->source_kind, &t->source_digest, &t->entry, n_opts);
    if (rc != KC_OK || (rc = read_options(d, *n_opts, opts)) != KC_OK)
        return rc;
    if ((rc = read_key(d, &t->space_digest)) != KC_OK ||
        (rc = read_field(d, 0, &sig, &raw, &sig_len)) != KC_OK)
        return rc;
    t->shape_sig.data = sig_len ? sig : NULL;
    t->shape_sig.size = sig_len;
    if ((rc = read_str(d, &t->arch)) != KC_OK)
        return rc;
    t->sm_count = kc__r_u32(&d->r);
    if (d->r.bad)
        return KC_ECORRUPT;
    if ((rc = read_str(d, &t->device_name)) != KC_OK)
        return rc;
    return kc__r_left(&d->r) == 0 ? KC_OK : KC_ECORRUPT;
}

int kc_tuning_preimage_decode(const void *data, size_t len, kc_tuning_desc_t **out)
{
    kc_tuning_desc_t scratch, *t;
    uint32_t n_opts;
    size_t off_opts, off_strs;
    uint8_t *mem;
    dec_t d = {0};
    int rc;

    if (!out)
        return KC_EINVAL;
    *out = NULL;
    kc__rcur_init(&d.r, data, len);
    rc = parse_tuning(&d, &scratch, NULL, &n_opts);
    if (rc != KC_OK)
        return rc;

    off_opts = align_up(sizeof(kc_tuning_desc_t), alignof(const char *));
    off_strs = off_opts + n_opts * sizeof(const char *);
    mem = malloc(off_strs + d.str_bytes + 1);
    if (!mem)
        return KC_ENOMEM;
    t = (kc_tuning_desc_t *)mem;
    memset(t, 0, sizeof(*t));
    const char **opts = (const char **)(mem + off_opts);

    kc__rcur_init(&d.r, data, len);
    d.strs = (char *)(mem + off_strs);
    rc = parse_tuning(&d, t, opts, &n_opts);
    if (rc != KC_OK) {
        free(mem);
        return KC_EINTERNAL;
    }
    t->options = n_opts ? opts : NULL;
    t->n_options = n_opts;
    *out = t;
    return KC_OK;
}
