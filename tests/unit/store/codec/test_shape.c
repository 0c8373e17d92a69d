/* Shape signatures: dtypes, encoding under both dims policies, scalar
 * classes and the validating formatter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kcache/errors.h"
#include "kcache/shape.h"

#define SIG_MAX 512

typedef struct sig {
    uint8_t b[SIG_MAX];
    size_t n;
} sig_t;

static sig_t encode(const kc_argdesc_t *args, size_t n, kc_dims_policy_t policy)
{
    sig_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(kc_shape_sig_encode(args, n, policy, s.b, sizeof(s.b), &s.n), KC_OK);
    return s;
}

static int sig_equal(const sig_t *a, const sig_t *b)
{
    return a->n == b->n && memcmp(a->b, b->b, a->n) == 0;
}

static uint64_t load_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static kc_argdesc_t ptr(kc_dtype_t dt, uint32_t rank, const int64_t *dims, uint64_t addr)
{
    kc_argdesc_t a = {
        .kind = KC_ARG_POINTER, .dtype = dt, .rank = rank, .dims = dims, .addr = addr};
    return a;
}

static kc_argdesc_t scalar_i(kc_dtype_t dt, int64_t v, int is_key)
{
    kc_argdesc_t a = {.kind = KC_ARG_SCALAR, .dtype = dt, .is_key = is_key};
    a.value.i = v;
    return a;
}

static kc_argdesc_t scalar_f(kc_dtype_t dt, double v, int is_key)
{
    kc_argdesc_t a = {.kind = KC_ARG_SCALAR, .dtype = dt, .is_key = is_key};
    a.value.f = v;
    return a;
}

static void test_dtype_names_and_sizes(void **state)
{
    (void)state;
    static const struct {
        kc_dtype_t dt;
        const char *name;
        size_t size;
    } want[] = {
        {KC_DTYPE_BOOL, "bool", 1},       {KC_DTYPE_I8, "i8", 1},
        {KC_DTYPE_I16, "i16", 2},         {KC_DTYPE_I32, "i32", 4},
        {KC_DTYPE_I64, "i64", 8},         {KC_DTYPE_U8, "u8", 1},
        {KC_DTYPE_U16, "u16", 2},         {KC_DTYPE_U32, "u32", 4},
        {KC_DTYPE_U64, "u64", 8},         {KC_DTYPE_F16, "f16", 2},
        {KC_DTYPE_BF16, "bf16", 2},       {KC_DTYPE_F32, "f32", 4},
        {KC_DTYPE_F64, "f64", 8},         {KC_DTYPE_FP8E4M3, "fp8e4m3", 1},
        {KC_DTYPE_FP8E5M2, "fp8e5m2", 1},
    };
    assert_int_equal(sizeof(want) / sizeof(want[0]), KC_DTYPE_COUNT_ - 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_string_equal(kc_dtype_name(want[i].dt), want[i].name);
        assert_int_equal(kc_dtype_size(want[i].dt), want[i].size);
        assert_int_equal(kc_dtype_from_name(want[i].name), want[i].dt);
    }
    assert_null(kc_dtype_name(KC_DTYPE_INVALID));
    assert_null(kc_dtype_name(KC_DTYPE_COUNT_));
    assert_int_equal(kc_dtype_size(KC_DTYPE_INVALID), 0);
    assert_int_equal(kc_dtype_from_name("float"), KC_DTYPE_INVALID);
    assert_int_equal(kc_dtype_from_name(""), KC_DTYPE_INVALID);
    assert_int_equal(kc_dtype_from_name(NULL), KC_DTYPE_INVALID);
}

static void test_signature_has_the_documented_layout(void **state)
{
    (void)state;
    const int64_t dims[] = {3, 1000};
    kc_argdesc_t args[] = {ptr(KC_DTYPE_F16, 2, dims, 0x7f0000001000),
                           scalar_i(KC_DTYPE_I32, 48, 0), scalar_i(KC_DTYPE_I64, -2, 1)};
    sig_t s = encode(args, 3, KC_DIMS_POW2);
    const uint8_t want[] = {
        1,    1,    3,    0,                         /* version, policy, arg count */
        'P',  10,   2,                               /* pointer f16 rank 2 */
        4,    0,    0,    0,    0,    0,    0,    0, /* 3 -> 4 */
        0,    4,    0,    0,    0,    0,    0,    0, /* 1000 -> 1024 */
        1,                                           /* 16-byte aligned */
        'S',  4,    2,                               /* i32, div16 */
        'S',  5,    4,                               /* i64, value follows */
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    };
    assert_int_equal(s.n, sizeof(want));
    assert_memory_equal(s.b, want, sizeof(want));
}

static void test_pow2_rounds_dims_up_and_exact_keeps_them(void **state)
{
    (void)state;
    const int64_t dims[] = {1000, 1024, 1, 0, 1025, INT64_MAX};
    kc_argdesc_t a = ptr(KC_DTYPE_F32, 6, dims, 0);
    sig_t pow2 = encode(&a, 1, KC_DIMS_POW2);
    sig_t exact = encode(&a, 1, KC_DIMS_EXACT);
    const uint64_t want_pow2[] = {1024, 1024, 1, 0, 2048, (uint64_t)1 << 63};

    assert_int_equal(pow2.b[1], KC_DIMS_POW2);
    assert_int_equal(exact.b[1], KC_DIMS_EXACT);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(load_u64le(pow2.b + 7 + 8 * i), want_pow2[i]);
        assert_int_equal(load_u64le(exact.b + 7 + 8 * i), (uint64_t)dims[i]);
    }

    /* 1000 and 1024 share a bucket under pow2 but not under exact. */
    const int64_t d1000[] = {1000}, d1024[] = {1024};
    kc_argdesc_t x = ptr(KC_DTYPE_F32, 1, d1000, 0), y = ptr(KC_DTYPE_F32, 1, d1024, 0);
    sig_t px = encode(&x, 1, KC_DIMS_POW2), py = encode(&y, 1, KC_DIMS_POW2);
    sig_t ex = encode(&x, 1, KC_DIMS_EXACT), ey = encode(&y, 1, KC_DIMS_EXACT);
    assert_true(sig_equal(&px, &py));
    assert_false(sig_equal(&ex, &ey));
}

static void test_alignment_bit_follows_the_address(void **state)
{
    (void)state;
    const int64_t dims[] = {16};
    kc_argdesc_t a16 = ptr(KC_DTYPE_U8, 1, dims, 0x1230);
    kc_argdesc_t a8 = ptr(KC_DTYPE_U8, 1, dims, 0x1238);
    kc_argdesc_t a0 = ptr(KC_DTYPE_U8, 1, dims, 0);
    sig_t s16 = encode(&a16, 1, KC_DIMS_EXACT), s8 = encode(&a8, 1, KC_DIMS_EXACT);
    sig_t s0 = encode(&a0, 1, KC_DIMS_EXACT);

    assert_int_equal(s16.b[s16.n - 1], 1);
    assert_int_equal(s8.b[s8.n - 1], 0);
    assert_true(sig_equal(&s16, &s0));
    assert_false(sig_equal(&s16, &s8));
}

static void test_integer_scalars_fall_in_three_classes(void **state)
{
    (void)state;
    assert_int_equal(kc_scalar_class_of(1), KC_SCLASS_ONE);
    assert_int_equal(kc_scalar_class_of(0), KC_SCLASS_DIV16);
    assert_int_equal(kc_scalar_class_of(32), KC_SCLASS_DIV16);
    assert_int_equal(kc_scalar_class_of(17), KC_SCLASS_OTHER);
    assert_int_equal(kc_scalar_class_of(-1), KC_SCLASS_OTHER);
    assert_int_equal(kc_scalar_class_of(-16), KC_SCLASS_DIV16);
    assert_int_equal(kc_scalar_class_of(-17), KC_SCLASS_OTHER);
    assert_int_equal(kc_scalar_class_of(INT64_MIN), KC_SCLASS_DIV16);

    const int64_t values[] = {1, 0, 32, 17, -16};
    const uint8_t classes[] = {KC_SCLASS_ONE, KC_SCLASS_DIV16, KC_SCLASS_DIV16,
                               KC_SCLASS_OTHER, KC_SCLASS_DIV16};
    for (int i = 0; i < 5; i++) {
        kc_argdesc_t a = scalar_i(KC_DTYPE_I32, values[i], 0);
        sig_t s = encode(&a, 1, KC_DIMS_EXACT);
        assert_int_equal(s.n, 7);
        assert_int_equal(s.b[6], classes[i]);
    }
}

static void test_key_scalars_encode_their_value_and_others_only_a_class(void **state)
{
    (void)state;
    kc_argdesc_t k7 = scalar_i(KC_DTYPE_I64, 7, 1), k8 = scalar_i(KC_DTYPE_I64, 8, 1);
    sig_t s7 = encode(&k7, 1, KC_DIMS_EXACT), s8 = encode(&k8, 1, KC_DIMS_EXACT);
    assert_int_equal(s7.b[6], KC_SCLASS_VALUE);
    assert_int_equal(load_u64le(s7.b + 7), 7);
    assert_false(sig_equal(&s7, &s8));

    kc_argdesc_t n32 = scalar_i(KC_DTYPE_I64, 32, 0), n48 = scalar_i(KC_DTYPE_I64, 48, 0);
    sig_t s32 = encode(&n32, 1, KC_DIMS_EXACT), s48 = encode(&n48, 1, KC_DIMS_EXACT);
    assert_true(sig_equal(&s32, &s48));

    kc_argdesc_t f1 = scalar_f(KC_DTYPE_F32, 0.5, 0), f2 = scalar_f(KC_DTYPE_F32, 1.0, 0);
    sig_t sf1 = encode(&f1, 1, KC_DIMS_EXACT), sf2 = encode(&f2, 1, KC_DIMS_EXACT);
    assert_int_equal(sf1.b[6], KC_SCLASS_FLOAT);
    assert_true(sig_equal(&sf1, &sf2));

    kc_argdesc_t kf1 = scalar_f(KC_DTYPE_F32, 0.5, 1),
                 kf2 = scalar_f(KC_DTYPE_F32, 1.0, 1);
    sig_t skf1 = encode(&kf1, 1, KC_DIMS_EXACT), skf2 = encode(&kf2, 1, KC_DIMS_EXACT);
    assert_false(sig_equal(&skf1, &skf2));

    /* The type is part of the signature even when the class matches. */
    kc_argdesc_t u32 = scalar_i(KC_DTYPE_U32, 32, 0);
    sig_t su = encode(&u32, 1, KC_DIMS_EXACT);
    assert_false(sig_equal(&s32, &su));
}

static void test_short_buffer_is_etoobig_with_the_needed_size(void **state)
{
    (void)state;
    const int64_t dims[] = {4, 5, 6};
    kc_argdesc_t args[] = {ptr(KC_DTYPE_BF16, 3, dims, 64), scalar_i(KC_DTYPE_I32, 3, 1),
                           scalar_i(KC_DTYPE_I32, 3, 0)};
    sig_t full = encode(args, 3, KC_DIMS_EXACT);
    uint8_t buf[SIG_MAX];
    size_t len = 0;

    assert_int_equal(kc_shape_sig_encode(args, 3, KC_DIMS_EXACT, NULL, 0, &len),
                     KC_ETOOBIG);
    assert_int_equal(len, full.n);
    for (size_t cap = 1; cap < full.n; cap++) {
        memset(buf, 0xee, sizeof(buf));
        len = 0;
        assert_int_equal(kc_shape_sig_encode(args, 3, KC_DIMS_EXACT, buf, cap, &len),
                         KC_ETOOBIG);
        assert_int_equal(len, full.n);
        for (size_t i = cap; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 0xee); /* nothing written past cap */
    }
    assert_int_equal(kc_shape_sig_encode(args, 3, KC_DIMS_EXACT, buf, full.n, &len),
                     KC_OK);
    assert_int_equal(len, full.n);
    assert_memory_equal(buf, full.b, full.n);
}

static void test_bad_descriptors_are_einval(void **state)
{
    (void)state;
    const int64_t dims[KC_MAX_RANK + 1] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int64_t neg[] = {4, -1};
    uint8_t buf[SIG_MAX];
    size_t len;
    kc_argdesc_t a;

    a = ptr(KC_DTYPE_F32, KC_MAX_RANK, dims, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_OK);
    a = ptr(KC_DTYPE_F32, KC_MAX_RANK + 1, dims, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = ptr(KC_DTYPE_F32, 2, neg, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_POW2, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = ptr(KC_DTYPE_F32, 2, NULL, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = ptr(KC_DTYPE_INVALID, 1, dims, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = scalar_i(KC_DTYPE_COUNT_, 1, 0);
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = scalar_i(KC_DTYPE_I32, 1, 0);
    a.kind = (kc_arg_kind_t)0;
    assert_int_equal(kc_shape_sig_encode(&a, 1, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_EINVAL);
    a = scalar_i(KC_DTYPE_I32, 1, 0);
    assert_int_equal(
        kc_shape_sig_encode(&a, 1, (kc_dims_policy_t)2, buf, sizeof(buf), &len),
        KC_EINVAL);
    /* No arguments is a valid, header-only signature. */
    assert_int_equal(kc_shape_sig_encode(NULL, 0, KC_DIMS_EXACT, buf, sizeof(buf), &len),
                     KC_OK);
    assert_int_equal(len, 4);
}

/* ---- format ------------------------------------------------------------- */

static sig_t mixed_signature(kc_dims_policy_t policy)
{
    static const int64_t d2[] = {1024, 512}, d1[] = {1000}, d0[1];
    kc_argdesc_t args[] = {
        ptr(KC_DTYPE_F32, 2, d2, 0x1000), ptr(KC_DTYPE_BF16, 1, d1, 0x1002),
        ptr(KC_DTYPE_U8, 0, d0, 0x2000),  scalar_i(KC_DTYPE_I32, 4096, 0),
        scalar_i(KC_DTYPE_I64, 7, 1),     scalar_i(KC_DTYPE_I64, -7, 1),
        scalar_i(KC_DTYPE_U64, -1, 1),    scalar_i(KC_DTYPE_U8, 1, 0),
        scalar_i(KC_DTYPE_I16, 3, 0),     scalar_f(KC_DTYPE_F16, 2.0, 0),
        scalar_f(KC_DTYPE_F64, 1.5, 1),
    };
    return encode(args, sizeof(args) / sizeof(args[0]), policy);
}

static void test_format_renders_each_argument(void **state)
{
    (void)state;
    sig_t s = mixed_signature(KC_DIMS_EXACT);
    char out[512];

    assert_int_equal(kc_shape_sig_format(s.b, s.n, out, sizeof(out)), KC_OK);
    assert_string_equal(out, "f32[1024x512]/a16, bf16[1000], u8[]/a16, i32:div16, i64=7, "
                             "i64=-7, u64=18446744073709551615, u8:one, i16:other, f16, "
                             "f64=1.5");

    s = mixed_signature(KC_DIMS_POW2);
    assert_int_equal(kc_shape_sig_format(s.b, s.n, out, sizeof(out)), KC_OK);
    assert_true(strncmp(out, "pow2: f32[1024x512]/a16, bf16[1024], ", 37) == 0);

    /* A short buffer gets a NUL-terminated prefix. */
    char small[8];
    memset(small, 'x', sizeof(small));
    assert_int_equal(kc_shape_sig_format(s.b, s.n, small, sizeof(small)), KC_OK);
    assert_string_equal(small, "pow2: f");

    uint8_t empty[] = {1, 0, 0, 0};
    assert_int_equal(kc_shape_sig_format(empty, 4, out, sizeof(out)), KC_OK);
    assert_string_equal(out, "");
}

static void test_format_rejects_every_truncation_and_trailing_bytes(void **state)
{
    (void)state;
    sig_t s = mixed_signature(KC_DIMS_POW2);
    char out[256];

    for (size_t n = 0; n < s.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, s.b, n);
        out[0] = 'x';
        assert_int_equal(kc_shape_sig_format(copy, n, out, sizeof(out)), KC_ECORRUPT);
        assert_string_equal(out, "");
        free(copy);
    }
    s.b[s.n] = 0;
    assert_int_equal(kc_shape_sig_format(s.b, s.n + 1, out, sizeof(out)), KC_ECORRUPT);
}

static void expect_format_rc(const sig_t *base, size_t at, uint8_t value, int rc)
{
    sig_t s = *base;
    char out[256];
    s.b[at] = value;
    assert_int_equal(kc_shape_sig_format(s.b, s.n, out, sizeof(out)), rc);
}

static void test_format_rejects_malformed_fields(void **state)
{
    (void)state;
    const int64_t dims[] = {1024};
    kc_argdesc_t args[] = {ptr(KC_DTYPE_F32, 1, dims, 0), scalar_i(KC_DTYPE_I32, 5, 0),
                           scalar_f(KC_DTYPE_F32, 5, 0)};
    sig_t s = encode(args, 3, KC_DIMS_POW2);
    /* Offsets: 4 'P', 5 dtype, 6 rank, 7..14 dim, 15 aligned, 16 'S', 17 dtype,
     * 18 class, 19 'S', 20 dtype, 21 class. */
    char out[256];
    assert_int_equal(kc_shape_sig_format(s.b, s.n, out, sizeof(out)), KC_OK);
    assert_string_equal(out, "pow2: f32[1024]/a16, i32:other, f32");

    expect_format_rc(&s, 0, 0, KC_ECORRUPT); /* version 0 */
    expect_format_rc(&s, 0, KC_SHAPE_SIG_VERSION + 1, KC_EVERSION);
    expect_format_rc(&s, 1, 2, KC_ECORRUPT);   /* policy */
    expect_format_rc(&s, 2, 4, KC_ECORRUPT);   /* arg count */
    expect_format_rc(&s, 2, 2, KC_ECORRUPT);   /* leaves bytes */
    expect_format_rc(&s, 4, 'Q', KC_ECORRUPT); /* tag */
    expect_format_rc(&s, 5, 0, KC_ECORRUPT);   /* dtype */
    expect_format_rc(&s, 5, KC_DTYPE_COUNT_, KC_ECORRUPT);
    expect_format_rc(&s, 6, KC_MAX_RANK + 1, KC_ECORRUPT);  /* rank */
    expect_format_rc(&s, 7, 1, KC_ECORRUPT);                /* 1025: not pow2 */
    expect_format_rc(&s, 15, 2, KC_ECORRUPT);               /* aligned */
    expect_format_rc(&s, 18, KC_SCLASS_FLOAT, KC_ECORRUPT); /* float class, int */
    expect_format_rc(&s, 18, 0, KC_ECORRUPT);
    expect_format_rc(&s, 18, 6, KC_ECORRUPT);
    expect_format_rc(&s, 21, KC_SCLASS_DIV16, KC_ECORRUPT); /* int class, float */

    /* Under exact, a dim above INT64_MAX was never a valid dim. */
    s.b[1] = KC_DIMS_EXACT;
    assert_int_equal(kc_shape_sig_format(s.b, s.n, out, sizeof(out)), KC_OK);
    expect_format_rc(&s, 14, 0x80, KC_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names_and_sizes),
        cmocka_unit_test(test_signature_has_the_documented_layout),
        cmocka_unit_test(test_pow2_rounds_dims_up_and_exact_keeps_them),
        cmocka_unit_test(test_alignment_bit_follows_the_address),
        cmocka_unit_test(test_integer_scalars_fall_in_three_classes),
        cmocka_unit_test(test_key_scalars_encode_their_value_and_others_only_a_class),
        cmocka_unit_test(test_short_buffer_is_etoobig_with_the_needed_size),
        cmocka_unit_test(test_bad_descriptors_are_einval),
        cmocka_unit_test(test_format_renders_each_argument),
        cmocka_unit_test(test_format_rejects_every_truncation_and_trailing_bytes),
        cmocka_unit_test(test_format_rejects_malformed_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
