/* Shape signatures: dtypes, the signature encoding (on the launch path, so
 * it never allocates) and a validating formatter for people. The layout is
 * in docs/FORMAT.md. */
#include "kcache/shape.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kcache/errors.h"
#include "wire.h"

static const struct {
    const char *name;
    uint8_t size;
    uint8_t is_float;
} dtypes[KC_DTYPE_COUNT_] = {
    [KC_DTYPE_BOOL] = {"bool", 1, 0},       [KC_DTYPE_I8] = {"i8", 1, 0},
    [KC_DTYPE_I16] = {"i16", 2, 0},         [KC_DTYPE_I32] = {"i32", 4, 0},
    [KC_DTYPE_I64] = {"i64", 8, 0},         [KC_DTYPE_U8] = {"u8", 1, 0},
    [KC_DTYPE_U16] = {"u16", 2, 0},         [KC_DTYPE_U32] = {"u32", 4, 0},
    [KC_DTYPE_U64] = {"u64", 8, 0},         [KC_DTYPE_F16] = {"f16", 2, 1},
    [KC_DTYPE_BF16] = {"bf16", 2, 1},       [KC_DTYPE_F32] = {"f32", 4, 1},
    [KC_DTYPE_F64] = {"f64", 8, 1},         [KC_DTYPE_FP8E4M3] = {"fp8e4m3", 1, 1},
    [KC_DTYPE_FP8E5M2] = {"fp8e5m2", 1, 1},
};

static int valid_dtype(unsigned dt)
{
    return dt > KC_DTYPE_INVALID && dt < KC_DTYPE_COUNT_;
}

static int is_unsigned(unsigned dt)
{
    return dt == KC_DTYPE_BOOL || (dt >= KC_DTYPE_U8 && dt <= KC_DTYPE_U64);
}

const char *kc_dtype_name(kc_dtype_t dt)
{
    return valid_dtype(dt) ? dtypes[dt].name : NULL;
}

kc_dtype_t kc_dtype_from_name(const char *name)
{
    for (unsigned dt = 1; name && dt < KC_DTYPE_COUNT_; dt++)
        if (strcmp(dtypes[dt].name, name) == 0)
            return (kc_dtype_t)dt;
    return KC_DTYPE_INVALID;
}

size_t kc_dtype_size(kc_dtype_t dt)
{
    return valid_dtype(dt) ? dtypes[dt].size : 0;
}

kc_scalar_class_t kc_scalar_class_of(int64_t v)
{
    if (v == 1)
        return KC_SCLASS_ONE;
    /* On the two's-complement bits, so INT64_MIN and negatives work too. */
    if (((uint64_t)v & 15) == 0)
        return KC_SCLASS_DIV16;
    return KC_SCLASS_OTHER;
}

/* ---- encoding ----------------------------------------------------------- */

#define TAG_POINTER 'P'
#define TAG_SCALAR 'S'

static uint64_t round_pow2(uint64_t d)
{
    if (d <= 1)
        return d;
    d--;
    d |= d >> 1;
    d |= d >> 2;
    d |= d >> 4;
    d |= d >> 8;
    d |= d >> 16;
    d |= d >> 32;
    return d + 1;
}

/* Writes are skipped once past cap, but the position keeps counting, so one
 * pass both validates and yields the size a short buffer would need. */
int kc_shape_sig_encode(const kc_argdesc_t *args, size_t n_args, kc_dims_policy_t policy,
                        uint8_t *out, size_t cap, size_t *len)
{
    size_t pos = 4;

    if (!len || (n_args && !args) || n_args > UINT16_MAX ||
        (policy != KC_DIMS_EXACT && policy != KC_DIMS_POW2) || (cap && !out))
        return KC_EINVAL;
    if (cap >= 4) {
        out[0] = KC_SHAPE_SIG_VERSION;
        out[1] = (uint8_t)policy;
        out[2] = (uint8_t)n_args;
        out[3] = (uint8_t)(n_args >> 8);
    }
    for (size_t i = 0; i < n_args; i++) {
        const kc_argdesc_t *a = &args[i];

        if (!valid_dtype(a->dtype))
            return KC_EINVAL;
        if (a->kind == KC_ARG_POINTER) {
            if (a->rank > KC_MAX_RANK || (a->rank && !a->dims))
                return KC_EINVAL;
            size_t need = 3 + 8 * (size_t)a->rank + 1;
            int fits = pos + need <= cap;
            if (fits) {
                out[pos] = TAG_POINTER;
                out[pos + 1] = (uint8_t)a->dtype;
                out[pos + 2] = (uint8_t)a->rank;
            }
            for (uint32_t r = 0; r < a->rank; r++) {
                if (a->dims[r] < 0)
                    return KC_EINVAL;
                uint64_t d = (uint64_t)a->dims[r];
                if (policy == KC_DIMS_POW2)
                    d = round_pow2(d);
                if (fits)
                    kc__store_u64le(out + pos + 3 + 8 * r, d);
            }
            if (fits)
                out[pos + need - 1] = (a->addr % 16) == 0;
            pos += need;
        } else if (a->kind == KC_ARG_SCALAR) {
            kc_scalar_class_t cls;
            if (a->is_key)
                cls = KC_SCLASS_VALUE;
            else if (dtypes[a->dtype].is_float)
                cls = KC_SCLASS_FLOAT;
            else
                cls = kc_scalar_class_of(a->value.i);
            size_t need = cls == KC_SCLASS_VALUE ? 3 + 8 : 3;
            if (pos + need <= cap) {
                out[pos] = TAG_SCALAR;
                out[pos + 1] = (uint8_t)a->dtype;
                out[pos + 2] = (uint8_t)cls;
                if (cls == KC_SCLASS_VALUE)
                    kc__store_u64le(out + pos + 3, a->value.u);
            }
            pos += need;
        } else {
            return KC_EINVAL;
        }
    }
    *len = pos;
    return pos <= cap ? KC_OK : KC_ETOOBIG;
}

/* ---- formatting --------------------------------------------------------- */

/* snprintf into a fixed buffer that stays NUL-terminated and silently
 * truncates. */
typedef struct sink {
    char *p;
    size_t cap;
    size_t len;
} sink_t;

static void put(sink_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(sink_t *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (s->len + 1 >= s->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    s->len += (size_t)n;
    if (s->len >= s->cap)
        s->len = s->cap - 1;
}

static const char *class_name(unsigned cls)
{
    switch (cls) {
    case KC_SCLASS_ONE:
        return "one";
    case KC_SCLASS_DIV16:
        return "div16";
    case KC_SCLASS_OTHER:
        return "other";
    }
    return NULL;
}

static int format_pointer(kc__rcur_t *r, unsigned policy, sink_t *s)
{
    uint8_t dt = kc__r_u8(r);
    uint8_t rank = kc__r_u8(r);

    if (r->bad || !valid_dtype(dt) || rank > KC_MAX_RANK)
        return KC_ECORRUPT;
    put(s, "%s[", dtypes[dt].name);
    for (unsigned i = 0; i < rank; i++) {
        uint64_t d = kc__r_u64(r);
        /* The encoder never writes a negative dim, nor a rounded one that is
         * not a power of two. */
        if (r->bad || d > INT64_MAX + (uint64_t)(policy == KC_DIMS_POW2))
            return KC_ECORRUPT;
        if (policy == KC_DIMS_POW2 && (d & (d - 1)) != 0)
            return KC_ECORRUPT;
        put(s, "%s%" PRIu64, i ? "x" : "", d);
    }
    uint8_t aligned = kc__r_u8(r);
    if (r->bad || aligned > 1)
        return KC_ECORRUPT;
    put(s, "]%s", aligned ? "/a16" : "");
    return KC_OK;
}

static int format_scalar(kc__rcur_t *r, sink_t *s)
{
    uint8_t dt = kc__r_u8(r);
    uint8_t cls = kc__r_u8(r);

    if (r->bad || !valid_dtype(dt))
        return KC_ECORRUPT;
    if (cls == KC_SCLASS_VALUE) {
        uint64_t v = kc__r_u64(r);
        if (r->bad)
            return KC_ECORRUPT;
        if (dtypes[dt].is_float) {
            double f;
            memcpy(&f, &v, sizeof(f));
            put(s, "%s=%.17g", dtypes[dt].name, f);
        } else if (is_unsigned(dt)) {
            put(s, "%s=%" PRIu64, dtypes[dt].name, v);
        } else {
            put(s, "%s=%" PRId64, dtypes[dt].name, (int64_t)v);
        }
        return KC_OK;
    }
    /* A non-key float has only its type; a non-key integer only its class. */
    if (dtypes[dt].is_float) {
        if (cls != KC_SCLASS_FLOAT)
            return KC_ECORRUPT;
        put(s, "%s", dtypes[dt].name);
        return KC_OK;
    }
    if (!class_name(cls))
        return KC_ECORRUPT;
    put(s, "%s:%s", dtypes[dt].name, class_name(cls));
    return KC_OK;
}

int kc_shape_sig_format(const void *sig, size_t len, char *out, size_t cap)
{
    sink_t s = {out, cap, 0};
    kc__rcur_t r;
    int rc = KC_OK;

    if (!out || cap == 0)
        s.cap = 0;
    else
        out[0] = '\0';
    if (!sig && len)
        return KC_EINVAL;
    kc__rcur_init(&r, sig, len);
    uint8_t version = kc__r_u8(&r);
    uint8_t policy = kc__r_u8(&r);
    uint16_t n = kc__r_u16(&r);
    if (r.bad || version == 0 || policy > KC_DIMS_POW2) {
        rc = KC_ECORRUPT;
        goto fail;
    }
    if (version > KC_SHAPE_SIG_VERSION) {
        rc = KC_EVERSION;
        goto fail;
    }
    if (policy == KC_DIMS_POW2)
        put(&s, "pow2: ");
    for (unsigned i = 0; i < n; i++) {
        uint8_t tag = kc__r_u8(&r);
        if (i)
            put(&s, ", ");
        if (r.bad)
            rc = KC_ECORRUPT;
        else if (tag == TAG_POINTER)
            rc = format_pointer(&r, policy, &s);
        else if (tag == TAG_SCALAR)
            rc = format_scalar(&r, &s);
        else
            rc = KC_ECORRUPT;
        if (rc != KC_OK)
            goto fail;
    }
    if (kc__r_left(&r) != 0) {
        rc = KC_ECORRUPT;
        goto fail;
    }
    return KC_OK;
fail:
    if (s.cap)
        out[0] = '\0';
    return rc;
}
