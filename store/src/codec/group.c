/* The group payload (kind 8): named files stored together, each file a
 * blob. docs/FORMAT.md, "group (kind 8)", gives it byte by byte; keep the
 * two in step. Encoder and decoder apply the same rules, one refusing with
 * KC_EINVAL and the other with KC_ECORRUPT. */
#include <stdalign.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "record_internal.h"
#include "wire.h"

/* The fewest bytes one encoded file can take: a 1-byte name, blob, size. */
#define FILE_MIN_SIZE (4 + 1 + 16 + 8)

/* ---- the rules, shared by both directions ------------------------------------ */

static int name_ok(const uint8_t *p, size_t n)
{
    return n >= 1 && n <= KC_GROUP_NAME_MAX && !memchr(p, '\0', n);
}

int kc__group_fname_ok(const uint8_t *p, size_t n)
{
    if (n < 1 || n > KC_GROUP_FNAME_MAX || memchr(p, '\0', n) || memchr(p, '/', n))
        return 0;
    return !(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.');
}

/* Bytewise order of two names, unsigned, a prefix first (as strcmp). */
int kc__group_fname_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn;
}

int kc_group_key(const char *name, kc_key_t *out)
{
    if (!name || !out)
        return KC_EINVAL;
    size_t n = strnlen(name, KC_GROUP_NAME_MAX + 1);
    if (n < 1 || n > KC_GROUP_NAME_MAX)
        return KC_EINVAL;
    *out = kc_key_hash(name, n);
    return KC_OK;
}

/* ---- encoding ---------------------------------------------------------------- */

static int check_rec(const kc_group_rec_t *g)
{
    if (!g->name || !name_ok((const uint8_t *)g->name, strlen(g->name)))
        return KC_EINVAL;
    if ((g->n_files && !g->files) || g->n_files > KC_GROUP_FILES_MAX)
        return KC_EINVAL;
    for (size_t i = 0; i < g->n_files; i++) {
        const char *f = g->files[i].name;
        if (!f || !kc__group_fname_ok((const uint8_t *)f, strlen(f)))
            return KC_EINVAL;
        if (i > 0) {
            const char *p = g->files[i - 1].name;
            if (kc__group_fname_cmp((const uint8_t *)p, strlen(p), (const uint8_t *)f,
                                    strlen(f)) >= 0)
                return KC_EINVAL; /* unsorted or repeated */
        }
    }
    return KC_OK;
}

int kc__group_put(kc__wbuf_t *w, const kc_group_rec_t *g)
{
    int rc = check_rec(g);

    if (rc != KC_OK)
        return rc;
    kc__w_str(w, g->name);
    kc__w_u64(w, g->created);
    kc__w_u64(w, g->updated);
    kc__w_u32(w, (uint32_t)g->n_files);
    for (size_t i = 0; i < g->n_files; i++) {
        kc__w_str(w, g->files[i].name);
        kc__w_bytes(w, g->files[i].blob.b, sizeof(g->files[i].blob.b));
        kc__w_u64(w, g->files[i].size);
    }
    return KC_OK;
}

/* ---- decoding ---------------------------------------------------------------- */

int kc__group_get(kc__dec_t *d, kc__rcur_t *r, kc_group_rec_t *g)
{
    const uint8_t *raw, *prev = NULL;
    uint32_t n, len, prev_len = 0;
    int rc;

    if ((rc = kc__dec_str(d, r, &g->name, &raw, &len)) != KC_OK)
        return rc;
    if (!name_ok(raw, len))
        return KC_ECORRUPT;
    g->created = kc__r_u64(r);
    g->updated = kc__r_u64(r);
    n = kc__r_u32(r);
    if (r->bad || n > KC_GROUP_FILES_MAX || (uint64_t)n * FILE_MIN_SIZE > kc__r_left(r))
        return KC_ECORRUPT;
    kc_group_entry_t *a = kc__dec_reserve(d, n * sizeof(*a), alignof(kc_group_entry_t));
    for (uint32_t i = 0; i < n; i++) {
        kc_group_entry_t f;
        if ((rc = kc__dec_str(d, r, &f.name, &raw, &len)) != KC_OK)
            return rc;
        if (!kc__group_fname_ok(raw, len))
            return KC_ECORRUPT;
        if (prev && kc__group_fname_cmp(prev, prev_len, raw, len) >= 0)
            return KC_ECORRUPT; /* unsorted or repeated */
        prev = raw;
        prev_len = len;
        if ((rc = kc__dec_key(r, &f.blob)) != KC_OK)
            return rc;
        f.size = kc__r_u64(r);
        if (r->bad)
            return KC_ECORRUPT;
        if (a)
            a[i] = f;
    }
    g->files = a;
    g->n_files = n;
    return KC_OK;
}
