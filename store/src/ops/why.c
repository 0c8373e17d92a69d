/* Explaining misses: comparing preimages field by field, and finding the
 * stored records nearest to a target. Uses only the public store API. */
#include "kcache/why.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/shape.h"

static const char *const field_names[KC_WHY_FIELD_COUNT] = {
    "source kind", "source digest", "entry",        "options",         "params",
    "arch",        "toolchain",     "space digest", "shape signature", "device class",
};

const char *kc_why_field_name(unsigned field)
{
    for (int i = 0; i < KC_WHY_FIELD_COUNT; i++)
        if (field == 1u << i)
            return field_names[i];
    return NULL;
}

static int str_differs(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

static int options_differ(const char *const *a, size_t na, const char *const *b,
                          size_t nb)
{
    if (na != nb)
        return 1;
    for (size_t i = 0; i < na; i++)
        if (str_differs(a[i], b[i]))
            return 1;
    return 0;
}

static int params_differ(const kc_param_t *a, size_t na, const kc_param_t *b, size_t nb)
{
    if (na != nb)
        return 1;
    for (size_t i = 0; i < na; i++)
        if (str_differs(a[i].name, b[i].name) || a[i].value != b[i].value)
            return 1;
    return 0;
}

static int key_differs(const kc_key_t *a, const kc_key_t *b)
{
    return memcmp(a->b, b->b, sizeof(a->b)) != 0;
}

unsigned kc_why_compare_build(const kc_build_desc_t *a, const kc_build_desc_t *b)
{
    unsigned f = 0;

    if (a->source_kind != b->source_kind)
        f |= KC_WHY_SOURCE_KIND;
    if (key_differs(&a->source_digest, &b->source_digest))
        f |= KC_WHY_SOURCE_DIGEST;
    if (str_differs(a->entry, b->entry))
        f |= KC_WHY_ENTRY;
    if (options_differ(a->options, a->n_options, b->options, b->n_options))
        f |= KC_WHY_OPTIONS;
    if (params_differ(a->params, a->n_params, b->params, b->n_params))
        f |= KC_WHY_PARAMS;
    if (str_differs(a->arch, b->arch))
        f |= KC_WHY_ARCH;
    if (str_differs(a->toolchain, b->toolchain))
        f |= KC_WHY_TOOLCHAIN;
    return f;
}

unsigned kc_why_compare_tuning(const kc_tuning_desc_t *a, const kc_tuning_desc_t *b)
{
    unsigned f = 0;

    if (a->source_kind != b->source_kind)
        f |= KC_WHY_SOURCE_KIND;
    if (key_differs(&a->source_digest, &b->source_digest))
        f |= KC_WHY_SOURCE_DIGEST;
    if (str_differs(a->entry, b->entry))
        f |= KC_WHY_ENTRY;
    if (options_differ(a->options, a->n_options, b->options, b->n_options))
        f |= KC_WHY_OPTIONS;
    if (str_differs(a->arch, b->arch))
        f |= KC_WHY_ARCH;
    if (key_differs(&a->space_digest, &b->space_digest))
        f |= KC_WHY_SPACE_DIGEST;
    if (a->shape_sig.size != b->shape_sig.size ||
        (a->shape_sig.size &&
         memcmp(a->shape_sig.data, b->shape_sig.data, a->shape_sig.size) != 0))
        f |= KC_WHY_SHAPE_SIG;
    if (a->sm_count != b->sm_count || str_differs(a->device_name, b->device_name))
        f |= KC_WHY_DEVICE_CLASS;
    return f;
}

unsigned kc_why_distance(unsigned fields)
{
    unsigned d = 0;

    for (int i = 0; i < KC_WHY_FIELD_COUNT; i++) {
        unsigned bit = 1u << i;
        if (!(fields & bit))
            continue;
        /* Another entry or source kind is another kernel; another source
         * digest is usually an edit of the same one. */
        if (bit == KC_WHY_ENTRY)
            d += 16;
        else if (bit == KC_WHY_SOURCE_KIND)
            d += 8;
        else if (bit == KC_WHY_SOURCE_DIGEST)
            d += 4;
        else
            d += 1;
    }
    return d;
}

/* ---- describing a field ----------------------------------------------------- */

static const char *describe_digest(const kc_key_t *k, char *out, size_t cap)
{
    char hex[KC_KEY_HEX_LEN + 1];

    kc_key_to_hex(k, hex);
    snprintf(out, cap, "%.8s", hex);
    return out;
}

static const char *describe_options(const char *const *o, size_t n, char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    if (n == 0)
        snprintf(out, cap, "(none)");
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", o[i]);
    return out;
}

static const char *describe_common(kc_source_kind_t kind, const kc_key_t *digest,
                                   const char *entry, const char *const *options,
                                   size_t n_options, const char *arch, unsigned field,
                                   char *out, size_t cap)
{
    switch (field) {
    case KC_WHY_SOURCE_KIND:
        snprintf(out, cap, "%s",
                 kind == KC_SOURCE_CUDA       ? "cuda"
                 : kind == KC_SOURCE_PTX      ? "ptx"
                 : kind == KC_SOURCE_PREBUILT ? "prebuilt"
                                              : "unknown");
        return out;
    case KC_WHY_SOURCE_DIGEST:
        return describe_digest(digest, out, cap);
    case KC_WHY_ENTRY:
        snprintf(out, cap, "%s", entry ? entry : "");
        return out;
    case KC_WHY_OPTIONS:
        return describe_options(options, n_options, out, cap);
    case KC_WHY_ARCH:
        snprintf(out, cap, "%s", arch ? arch : "");
        return out;
    default:
        return NULL;
    }
}

const char *kc_why_describe_build(const kc_build_desc_t *d, unsigned field, char *out,
                                  size_t cap)
{
    size_t len = 0;

    if (!out || cap == 0)
        return out;
    out[0] = '\0';
    if (describe_common(d->source_kind, &d->source_digest, d->entry, d->options,
                        d->n_options, d->arch, field, out, cap))
        return out;
    if (field == KC_WHY_TOOLCHAIN) {
        snprintf(out, cap, "%s", d->toolchain ? d->toolchain : "");
    } else if (field == KC_WHY_PARAMS) {
        if (d->n_params == 0)
            snprintf(out, cap, "(none)");
        for (size_t i = 0; i < d->n_params && len < cap; i++)
            len += (size_t)snprintf(out + len, cap - len, "%s%s=%" PRId64, i ? "," : "",
                                    d->params[i].name, d->params[i].value);
    }
    return out;
}

const char *kc_why_describe_tuning(const kc_tuning_desc_t *d, unsigned field, char *out,
                                   size_t cap)
{
    if (!out || cap == 0)
        return out;
    out[0] = '\0';
    if (describe_common(d->source_kind, &d->source_digest, d->entry, d->options,
                        d->n_options, d->arch, field, out, cap))
        return out;
    if (field == KC_WHY_SPACE_DIGEST)
        describe_digest(&d->space_digest, out, cap);
    else if (field == KC_WHY_SHAPE_SIG &&
             kc_shape_sig_format(d->shape_sig.data, d->shape_sig.size, out, cap) != KC_OK)
        snprintf(out, cap, "(undecodable signature)");
    else if (field == KC_WHY_DEVICE_CLASS)
        snprintf(out, cap, "%s (%" PRIu32 " SMs)", d->device_name ? d->device_name : "",
                 d->sm_count);
    return out;
}

/* ---- the nearest stored records --------------------------------------------- */

typedef struct nearest_ctx {
    int kind;
    const void *target; /* kc_build_desc_t or kc_tuning_desc_t */
    const kc_key_t *skip;
    kc_why_match_t *out;
    size_t cap, n;
} nearest_ctx_t;

/* Keep out[] sorted by distance, then key; drop what falls off the end. */
static void nearest_insert(nearest_ctx_t *c, const kc_why_match_t *m)
{
    size_t i = c->n;

    while (i > 0 && (c->out[i - 1].distance > m->distance ||
                     (c->out[i - 1].distance == m->distance &&
                      kc_key_cmp(&c->out[i - 1].key, &m->key) > 0)))
        i--;
    if (i >= c->cap)
        return;
    size_t keep = c->n < c->cap ? c->n : c->cap - 1;
    memmove(&c->out[i + 1], &c->out[i], (keep - i) * sizeof(*m));
    c->out[i] = *m;
    if (c->n < c->cap)
        c->n++;
}

static int nearest_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    nearest_ctx_t *c = user;
    kc_record_t *rec = NULL;
    kc_why_match_t m = {.key = *key};
    int rc;

    if ((int)kind != c->kind || (c->skip && kc_key_cmp(c->skip, key) == 0))
        return 0;
    rc = kc_record_decode(data, len, &rec);
    if (rc == KC_ENOMEM)
        return rc;
    if (rc != KC_OK || (int)rec->kind != c->kind) {
        kc_free(rec);
        return 0;
    }
    if (kind == KC_REC_BUILD) {
        kc_build_desc_t *d = NULL;
        rc = kc_build_preimage_decode(rec->u.build.preimage.data,
                                      rec->u.build.preimage.size, &d);
        if (rc == KC_OK)
            m.fields = kc_why_compare_build(c->target, d);
        kc_free(d);
    } else {
        kc_tuning_desc_t *d = NULL;
        rc = kc_tuning_preimage_decode(rec->u.tuning.preimage.data,
                                       rec->u.tuning.preimage.size, &d);
        if (rc == KC_OK)
            m.fields = kc_why_compare_tuning(c->target, d);
        kc_free(d);
    }
    kc_free(rec);
    if (rc == KC_ENOMEM)
        return rc;
    if (rc == KC_OK) {
        m.distance = kc_why_distance(m.fields);
        nearest_insert(c, &m);
    }
    return 0;
}

static int nearest(kc_store_t *store, int kind, const void *target, const kc_key_t *skip,
                   kc_why_match_t *out, size_t cap, size_t *n)
{
    nearest_ctx_t c = {kind, target, skip, out, cap, 0};
    int rc;

    if (n)
        *n = 0;
    if (!store || !target || !n || (cap && !out))
        return KC_EINVAL;
    if (cap == 0)
        return KC_OK;
    rc = kc_store_iterate(store, kind, nearest_fn, &c);
    /* The callback's own code is KC_ENOMEM, the only one it stops with. */
    if (rc != KC_OK)
        return rc;
    *n = c.n;
    return KC_OK;
}

int kc_why_nearest_builds(kc_store_t *store, const kc_build_desc_t *target,
                          const kc_key_t *skip, kc_why_match_t *out, size_t cap,
                          size_t *n)
{
    return nearest(store, KC_REC_BUILD, target, skip, out, cap, n);
}

int kc_why_nearest_tunings(kc_store_t *store, const kc_tuning_desc_t *target,
                           const kc_key_t *skip, kc_why_match_t *out, size_t cap,
                           size_t *n)
{
    return nearest(store, KC_REC_TUNING, target, skip, out, cap, n);
}
