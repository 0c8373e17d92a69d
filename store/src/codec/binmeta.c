/* The binmeta payload (kind 7): launch metadata of a binary that another
 * compiler made. docs/FORMAT.md, "binmeta (kind 7)", gives it byte by
 * byte; keep the two in step. Encoder and decoder apply the same rules, one
 * refusing with KC_EINVAL and the other with KC_ECORRUPT. */
#include <stdalign.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/record.h"
#include "record_internal.h"
#include "wire.h"

/* The fewest bytes one encoded element can take (see record.c). */
#define ARG_MIN_SIZE (4 + 4)  /* name, type */
#define SPEC_MIN_SIZE (4 + 1) /* arg, prop */

static const char *const prop_names[] = {
    [KC_SPEC_DIV16] = "div16",
    [KC_SPEC_EQ1] = "eq1",
    [KC_SPEC_ALIGN16] = "align16",
};

const char *kc_spec_prop_name(int prop)
{
    if (prop < 1 || prop > KC_SPEC_PROP_MAX)
        return NULL;
    return prop_names[prop];
}

/* ---- the rules, shared by both directions ------------------------------------ */

/* sm_<digits>, optionally followed by 'a' or 'f': the digits start with 1-9. */
static int arch_ok(const uint8_t *p, size_t n)
{
    size_t i = 3;

    if (n < 4 || memcmp(p, "sm_", 3) != 0 || p[3] < '1' || p[3] > '9')
        return 0;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    if (i < n && (p[i] == 'a' || p[i] == 'f'))
        i++;
    return i == n;
}

static int pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

static int scalars_ok(const kc_binmeta_rec_t *b)
{
    return b->threads_per_block != 0 && (b->warp_size == 32 || b->warp_size == 64) &&
           (uint64_t)b->num_warps * b->warp_size == b->threads_per_block &&
           b->num_ctas != 0 && (b->flags & ~KC_BINMETA_FLAGS_ALL) == 0 &&
           pow2(b->global_scratch_align) && pow2(b->profile_scratch_align);
}

/* Whether prop may be assumed of an argument of type t[n]. */
static int prop_fits(uint8_t prop, const uint8_t *t, size_t n)
{
    switch (prop) {
    case KC_SPEC_DIV16:
    case KC_SPEC_EQ1:
        return n > 0 && (t[0] == 'i' || t[0] == 'u');
    case KC_SPEC_ALIGN16:
        return n > 0 && t[0] == '*';
    }
    return 0;
}

/* Whether (arg, prop) may follow (prev_arg, prev_prop): strictly greater. */
static int spec_after(uint32_t arg, uint8_t prop, uint32_t prev_arg, uint8_t prev_prop)
{
    return arg > prev_arg || (arg == prev_arg && prop > prev_prop);
}

static int text_ok(const char *s)
{
    return s && s[0] != '\0';
}

/* ---- encoding ---------------------------------------------------------------- */

static int check_rec(const kc_binmeta_rec_t *b)
{
    if (!text_ok(b->entry) || !b->arch ||
        !arch_ok((const uint8_t *)b->arch, strlen(b->arch)) || !scalars_ok(b) ||
        !text_ok(b->compiler) || !text_ok(b->compiler_version))
        return KC_EINVAL;
    if ((b->n_args && !b->args) || b->n_args > UINT32_MAX || (b->n_spec && !b->spec) ||
        b->n_spec > UINT32_MAX)
        return KC_EINVAL;
    for (size_t i = 0; i < b->n_args; i++)
        if (!text_ok(b->args[i].name) || !text_ok(b->args[i].type))
            return KC_EINVAL;
    for (size_t i = 0; i < b->n_spec; i++) {
        const kc_binmeta_spec_t *s = &b->spec[i];
        if (s->arg >= b->n_args)
            return KC_EINVAL;
        const char *t = b->args[s->arg].type;
        if (!prop_fits(s->prop, (const uint8_t *)t, strlen(t)))
            return KC_EINVAL;
        if (i > 0 &&
            !spec_after(s->arg, s->prop, b->spec[i - 1].arg, b->spec[i - 1].prop))
            return KC_EINVAL;
    }
    return KC_OK;
}

int kc__binmeta_put(kc__wbuf_t *w, const kc_binmeta_rec_t *b)
{
    int rc = check_rec(b);

    if (rc != KC_OK)
        return rc;
    kc__w_bytes(w, b->build.b, sizeof(b->build.b));
    kc__w_str(w, b->entry);
    kc__w_str(w, b->arch);
    kc__w_u32(w, b->threads_per_block);
    kc__w_u32(w, b->num_warps);
    kc__w_u32(w, b->warp_size);
    kc__w_u32(w, b->num_ctas);
    kc__w_u32(w, b->dyn_smem);
    kc__w_u32(w, b->global_scratch_size);
    kc__w_u32(w, b->global_scratch_align);
    kc__w_u32(w, b->profile_scratch_size);
    kc__w_u32(w, b->profile_scratch_align);
    kc__w_u32(w, b->flags);
    kc__w_str(w, b->compiler);
    kc__w_str(w, b->compiler_version);
    kc__w_u32(w, (uint32_t)b->n_args);
    for (size_t i = 0; i < b->n_args; i++) {
        kc__w_str(w, b->args[i].name);
        kc__w_str(w, b->args[i].type);
    }
    kc__w_u32(w, (uint32_t)b->n_spec);
    for (size_t i = 0; i < b->n_spec; i++) {
        kc__w_u32(w, b->spec[i].arg);
        kc__w_u8(w, b->spec[i].prop);
    }
    return KC_OK;
}

/* ---- decoding ---------------------------------------------------------------- */

/* A str that must not be empty. */
static int get_text(kc__dec_t *d, kc__rcur_t *r, const char **out)
{
    uint32_t n;
    int rc = kc__dec_str(d, r, out, NULL, &n);
    if (rc != KC_OK)
        return rc;
    return n ? KC_OK : KC_ECORRUPT;
}

static int get_args(kc__dec_t *d, kc__rcur_t *r, kc_binmeta_rec_t *b)
{
    uint32_t n = kc__r_u32(r);
    if (r->bad || (uint64_t)n * ARG_MIN_SIZE > kc__r_left(r))
        return KC_ECORRUPT;
    kc_binmeta_arg_t *a = kc__dec_reserve(d, n * sizeof(*a), alignof(kc_binmeta_arg_t));
    for (uint32_t i = 0; i < n; i++) {
        kc_binmeta_arg_t x;
        int rc;
        if ((rc = get_text(d, r, &x.name)) != KC_OK ||
            (rc = get_text(d, r, &x.type)) != KC_OK)
            return rc;
        if (a)
            a[i] = x;
    }
    b->args = a;
    b->n_args = n;
    return KC_OK;
}

/* The spec, checked against the argument list that starts at args (already
 * validated): the entries are sorted by argument, so one cursor over the
 * arguments moves forward only. */
static int get_spec(kc__dec_t *d, kc__rcur_t *r, const uint8_t *args, size_t args_len,
                    kc_binmeta_rec_t *b)
{
    kc__rcur_t ac;
    const uint8_t *type = NULL;
    uint32_t type_len = 0, next_arg = 0;
    kc_binmeta_spec_t prev = {0, 0};

    uint32_t n = kc__r_u32(r);
    if (r->bad || (uint64_t)n * SPEC_MIN_SIZE > kc__r_left(r))
        return KC_ECORRUPT;
    kc__rcur_init(&ac, args, args_len);
    kc__r_u32(&ac); /* the count */
    kc_binmeta_spec_t *a = kc__dec_reserve(d, n * sizeof(*a), alignof(kc_binmeta_spec_t));
    for (uint32_t i = 0; i < n; i++) {
        kc_binmeta_spec_t s;
        s.arg = kc__r_u32(r);
        s.prop = kc__r_u8(r);
        if (r->bad || s.arg >= b->n_args)
            return KC_ECORRUPT;
        if (i > 0 && !spec_after(s.arg, s.prop, prev.arg, prev.prop))
            return KC_ECORRUPT; /* unsorted or repeated */
        prev = s;
        while (next_arg <= s.arg) {
            uint32_t name_len;
            if (!kc__r_lbytes(&ac, &name_len) || !(type = kc__r_lbytes(&ac, &type_len)))
                return KC_ECORRUPT; /* cannot happen: get_args read them */
            next_arg++;
        }
        if (!prop_fits(s.prop, type, type_len))
            return KC_ECORRUPT;
        if (a)
            a[i] = s;
    }
    b->spec = a;
    b->n_spec = n;
    return KC_OK;
}

int kc__binmeta_get(kc__dec_t *d, kc__rcur_t *r, kc_binmeta_rec_t *b)
{
    const uint8_t *arch;
    uint32_t arch_len;
    int rc;

    if ((rc = kc__dec_key(r, &b->build)) != KC_OK ||
        (rc = get_text(d, r, &b->entry)) != KC_OK ||
        (rc = kc__dec_str(d, r, &b->arch, &arch, &arch_len)) != KC_OK)
        return rc;
    if (!arch_ok(arch, arch_len))
        return KC_ECORRUPT;
    b->threads_per_block = kc__r_u32(r);
    b->num_warps = kc__r_u32(r);
    b->warp_size = kc__r_u32(r);
    b->num_ctas = kc__r_u32(r);
    b->dyn_smem = kc__r_u32(r);
    b->global_scratch_size = kc__r_u32(r);
    b->global_scratch_align = kc__r_u32(r);
    b->profile_scratch_size = kc__r_u32(r);
    b->profile_scratch_align = kc__r_u32(r);
    b->flags = kc__r_u32(r);
    if (r->bad || !scalars_ok(b))
        return KC_ECORRUPT;
    if ((rc = get_text(d, r, &b->compiler)) != KC_OK ||
        (rc = get_text(d, r, &b->compiler_version)) != KC_OK)
        return rc;
    const uint8_t *args = r->p + r->off;
    size_t args_start = r->off;
    if ((rc = get_args(d, r, b)) != KC_OK)
        return rc;
    return get_spec(d, r, args, r->off - args_start, b);
}
