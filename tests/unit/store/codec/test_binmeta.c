/* The binmeta record (kind 7): a round trip with every field, every field
 * the encoder refuses and the decoder refuses when it is written anyway,
 * the specialization's order, and cut or damaged bytes, which must be
 * refused cleanly. A writer here lays the payload out from docs/FORMAT.md
 * without the codec's checks, so that invalid records can be made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "wire.h"

static const kc_binmeta_arg_t args[] = {
    {"x_ptr", "*fp32"}, {"y_ptr", "*bf16"},     {"n", "i32"},
    {"stride", "u64"},  {"BLOCK", "constexpr"},
};
static const kc_binmeta_spec_t spec[] = {
    {0, KC_SPEC_ALIGN16}, {1, KC_SPEC_ALIGN16}, {2, KC_SPEC_DIV16},
    {3, KC_SPEC_DIV16},   {3, KC_SPEC_EQ1},
};

static kc_key_t build_key(void)
{
    kc_key_t k;
    for (int i = 0; i < 16; i++)
        k.b[i] = (uint8_t)(0xa0 + i * 3);
    return k;
}

/* A record with every field set, none to its zero value. */
static kc_record_t sample(void)
{
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_BINMETA;
    r.version = KC_RECORD_VERSION;
    kc_binmeta_rec_t *b = &r.u.binmeta;
    b->build = build_key();
    b->entry = "add_kernel_0d1d2de3de";
    b->arch = "sm_90a";
    b->threads_per_block = 256;
    b->num_warps = 8;
    b->warp_size = 32;
    b->num_ctas = 2;
    b->dyn_smem = 49152;
    b->global_scratch_size = 4096;
    b->global_scratch_align = 128;
    b->profile_scratch_size = 1024;
    b->profile_scratch_align = 8;
    b->flags = KC_BINMETA_COOPERATIVE | KC_BINMETA_PDL | KC_BINMETA_TMA;
    b->compiler = "triton";
    b->compiler_version = "3.6.0";
    b->args = args;
    b->n_args = sizeof(args) / sizeof(args[0]);
    b->spec = spec;
    b->n_spec = sizeof(spec) / sizeof(spec[0]);
    return r;
}

/* ---- a writer without checks ---------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes_t;

/* The record as docs/FORMAT.md lays it out, whatever the fields hold. */
static bytes_t raw_encode(const kc_binmeta_rec_t *b)
{
    kc__wbuf_t w;
    bytes_t out;
    void *p;
    size_t n;

    kc__wbuf_init(&w);
    kc__w_bytes(&w, "KCR", 4);
    kc__w_u8(&w, KC_REC_BINMETA);
    kc__w_u8(&w, 1);
    kc__w_u16(&w, 0);
    kc__w_u32(&w, 0);
    kc__w_bytes(&w, b->build.b, 16);
    kc__w_str(&w, b->entry);
    kc__w_str(&w, b->arch);
    kc__w_u32(&w, b->threads_per_block);
    kc__w_u32(&w, b->num_warps);
    kc__w_u32(&w, b->warp_size);
    kc__w_u32(&w, b->num_ctas);
    kc__w_u32(&w, b->dyn_smem);
    kc__w_u32(&w, b->global_scratch_size);
    kc__w_u32(&w, b->global_scratch_align);
    kc__w_u32(&w, b->profile_scratch_size);
    kc__w_u32(&w, b->profile_scratch_align);
    kc__w_u32(&w, b->flags);
    kc__w_str(&w, b->compiler);
    kc__w_str(&w, b->compiler_version);
    kc__w_u32(&w, (uint32_t)b->n_args);
    for (size_t i = 0; i < b->n_args; i++) {
        kc__w_str(&w, b->args[i].name);
        kc__w_str(&w, b->args[i].type);
    }
    kc__w_u32(&w, (uint32_t)b->n_spec);
    for (size_t i = 0; i < b->n_spec; i++) {
        kc__w_u32(&w, b->spec[i].arg);
        kc__w_u8(&w, b->spec[i].prop);
    }
    kc__w_patch_u32(&w, 8, (uint32_t)(w.len - 12));
    kc__w_u64(&w, XXH3_64bits(w.data, w.len));
    assert_int_equal(kc__wbuf_finish(&w, &p, &n), KC_OK);
    out.p = p;
    out.n = n;
    return out;
}

/* Set the payload length from n and recompute the checksum of p[n]. */
static void reseal(uint8_t *p, size_t n)
{
    kc__store_u32le(p + 8, (uint32_t)(n - 20));
    kc__store_u64le(p + n - 8, XXH3_64bits(p, n - 8));
}

static void assert_refused(const kc_record_t *r, int decode_rc)
{
    void *enc = NULL;
    size_t len = 0;
    kc_record_t *d = NULL;

    assert_int_equal(kc_record_encode(r, &enc, &len), KC_EINVAL);
    assert_null(enc);
    bytes_t raw = raw_encode(&r->u.binmeta);
    assert_int_equal(kc_record_check(raw.p, raw.n, NULL, NULL), KC_OK);
    assert_int_equal(kc_record_decode(raw.p, raw.n, &d), decode_rc);
    assert_null(d);
    kc_free(raw.p);
}

/* ---- round trip ----------------------------------------------------------- */

static void test_round_trip_keeps_every_field(void **state)
{
    (void)state;
    kc_record_t r = sample();
    void *enc = NULL;
    size_t len = 0;
    kc_record_t *d = NULL;

    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    /* The codec writes exactly the layout of docs/FORMAT.md. */
    bytes_t raw = raw_encode(&r.u.binmeta);
    assert_int_equal(raw.n, len);
    assert_memory_equal(raw.p, enc, len);
    kc_free(raw.p);

    int kind = 0, version = 0;
    assert_int_equal(kc_record_check(enc, len, &kind, &version), KC_OK);
    assert_int_equal(kind, KC_REC_BINMETA);
    assert_int_equal(version, 1);
    assert_int_equal(kc_record_decode(enc, len, &d), KC_OK);
    assert_int_equal(d->kind, KC_REC_BINMETA);
    const kc_binmeta_rec_t *x = &r.u.binmeta, *y = &d->u.binmeta;
    assert_memory_equal(x->build.b, y->build.b, 16);
    assert_string_equal(x->entry, y->entry);
    assert_string_equal(x->arch, y->arch);
    assert_int_equal(y->threads_per_block, 256);
    assert_int_equal(y->num_warps, 8);
    assert_int_equal(y->warp_size, 32);
    assert_int_equal(y->num_ctas, 2);
    assert_int_equal(y->dyn_smem, 49152);
    assert_int_equal(y->global_scratch_size, 4096);
    assert_int_equal(y->global_scratch_align, 128);
    assert_int_equal(y->profile_scratch_size, 1024);
    assert_int_equal(y->profile_scratch_align, 8);
    assert_int_equal(y->flags, KC_BINMETA_FLAGS_ALL);
    assert_string_equal(y->compiler, "triton");
    assert_string_equal(y->compiler_version, "3.6.0");
    assert_int_equal(y->n_args, x->n_args);
    for (size_t i = 0; i < x->n_args; i++) {
        assert_string_equal(y->args[i].name, x->args[i].name);
        assert_string_equal(y->args[i].type, x->args[i].type);
    }
    assert_int_equal(y->n_spec, x->n_spec);
    for (size_t i = 0; i < x->n_spec; i++) {
        assert_int_equal(y->spec[i].arg, x->spec[i].arg);
        assert_int_equal(y->spec[i].prop, x->spec[i].prop);
    }

    /* Canonical: decoding and encoding again gives the same bytes. */
    void *again = NULL;
    size_t again_len = 0;
    assert_int_equal(kc_record_encode(d, &again, &again_len), KC_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, enc, len);

    /* Its key is the build's. */
    kc_key_t k, want = build_key();
    assert_int_equal(kc_record_derived_key(d, &k), KC_OK);
    assert_memory_equal(k.b, want.b, 16);
    kc_free(again);
    kc_free(d);
    kc_free(enc);
}

static void test_the_smallest_record_round_trips(void **state)
{
    (void)state;
    kc_record_t r = sample();
    kc_binmeta_rec_t *b = &r.u.binmeta;
    b->arch = "sm_8";
    b->threads_per_block = 64;
    b->num_warps = 1;
    b->warp_size = 64;
    b->num_ctas = 1;
    b->dyn_smem = b->global_scratch_size = b->profile_scratch_size = 0;
    b->global_scratch_align = b->profile_scratch_align = 1;
    b->flags = 0;
    b->args = NULL;
    b->n_args = 0;
    b->spec = NULL;
    b->n_spec = 0;

    void *enc = NULL;
    size_t len = 0;
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    assert_int_equal(kc_record_decode(enc, len, &d), KC_OK);
    assert_int_equal(d->u.binmeta.n_args, 0);
    assert_int_equal(d->u.binmeta.n_spec, 0);
    assert_string_equal(d->u.binmeta.arch, "sm_8");
    kc_free(d);
    kc_free(enc);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(kc_rec_kind_name(KC_REC_BINMETA), "binmeta");
    assert_int_equal(kc_rec_kind_from_name("binmeta"), KC_REC_BINMETA);
    assert_int_equal(KC_REC_BINMETA, 7);
    assert_null(kc_rec_kind_name(KC_REC_KIND_MAX + 1));
    assert_string_equal(kc_spec_prop_name(KC_SPEC_DIV16), "div16");
    assert_string_equal(kc_spec_prop_name(KC_SPEC_EQ1), "eq1");
    assert_string_equal(kc_spec_prop_name(KC_SPEC_ALIGN16), "align16");
    assert_null(kc_spec_prop_name(0));
    assert_null(kc_spec_prop_name(4));
}

/* ---- invalid fields ------------------------------------------------------- */

static void test_every_invalid_scalar_is_refused(void **state)
{
    (void)state;
    kc_record_t r;

    r = sample();
    r.u.binmeta.threads_per_block = 0;
    r.u.binmeta.num_warps = 0;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.threads_per_block = 128; /* not 8 x 32 */
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.warp_size = 48;
    r.u.binmeta.threads_per_block = 8 * 48;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.warp_size = 0;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.num_ctas = 0;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.flags = KC_BINMETA_FLAGS_ALL + 1;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.flags = 0x80000000u;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.global_scratch_align = 0;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.global_scratch_align = 24;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.profile_scratch_align = 0;
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.profile_scratch_align = 3;
    assert_refused(&r, KC_ECORRUPT);
    /* num_warps x warp_size wrapping round to threads_per_block */
    r = sample();
    r.u.binmeta.num_warps = 0x08000000u;
    r.u.binmeta.threads_per_block = 0; /* 2^27 x 32 = 2^32 */
    assert_refused(&r, KC_ECORRUPT);
}

static void test_every_invalid_arch_is_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      "sm_",    "sm90",   "sm_90b", "sm_90aa",
                                      "SM_90", "sm_090", "sm_0",   "sm_9x0", "compute_90",
                                      "sm_a",  " sm_90", "sm_90 ", "sm_-1"};
    static const char *const good[] = {"sm_90", "sm_90a", "sm_100f", "sm_7", "sm_120a"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kc_record_t r = sample();
        r.u.binmeta.arch = bad[i];
        assert_refused(&r, KC_ECORRUPT);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        kc_record_t r = sample();
        void *enc = NULL;
        size_t len;
        r.u.binmeta.arch = good[i];
        assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
        kc_free(enc);
    }
}

static void test_every_missing_string_is_refused(void **state)
{
    (void)state;
    kc_record_t r;
    kc_binmeta_arg_t a[2] = {{"x", "*fp32"}, {"n", "i32"}};

    /* Empty is missing: refused both ways. */
    r = sample();
    r.u.binmeta.entry = "";
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.compiler = "";
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.compiler_version = "";
    assert_refused(&r, KC_ECORRUPT);
    r = sample();
    r.u.binmeta.args = a;
    r.u.binmeta.n_args = 2;
    r.u.binmeta.spec = NULL;
    r.u.binmeta.n_spec = 0;
    a[1].name = "";
    assert_refused(&r, KC_ECORRUPT);
    a[1].name = "n";
    a[0].type = "";
    assert_refused(&r, KC_ECORRUPT);

    /* NULL strings and arrays: the encoder refuses them. */
    const char **fields[] = {&r.u.binmeta.entry, &r.u.binmeta.arch, &r.u.binmeta.compiler,
                             &r.u.binmeta.compiler_version};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        void *enc = NULL;
        size_t len;
        r = sample();
        *fields[i] = NULL; /* each points into r */
        assert_int_equal(kc_record_encode(&r, &enc, &len), KC_EINVAL);
        assert_null(enc);
    }
    void *enc = NULL;
    size_t len;
    r = sample();
    r.u.binmeta.args = NULL;
    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_EINVAL);
    r = sample();
    r.u.binmeta.spec = NULL;
    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_EINVAL);
    assert_null(enc);
}

static void test_specialization_order_duplicates_and_types(void **state)
{
    (void)state;
    kc_record_t r;
    kc_binmeta_spec_t s[2];

    r = sample();
    r.u.binmeta.spec = s;
    r.u.binmeta.n_spec = 2;

    /* out of order by argument, and by property */
    s[0] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    s[1] = (kc_binmeta_spec_t){0, KC_SPEC_ALIGN16};
    assert_refused(&r, KC_ECORRUPT);
    s[0] = (kc_binmeta_spec_t){3, KC_SPEC_EQ1};
    s[1] = (kc_binmeta_spec_t){3, KC_SPEC_DIV16};
    assert_refused(&r, KC_ECORRUPT);
    /* repeated */
    s[0] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    s[1] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    assert_refused(&r, KC_ECORRUPT);
    /* unknown properties */
    s[0] = (kc_binmeta_spec_t){0, 0};
    s[1] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    assert_refused(&r, KC_ECORRUPT);
    s[0] = (kc_binmeta_spec_t){0, KC_SPEC_ALIGN16};
    s[1] = (kc_binmeta_spec_t){2, 4};
    assert_refused(&r, KC_ECORRUPT);
    /* an argument that does not exist */
    s[1] = (kc_binmeta_spec_t){5, KC_SPEC_DIV16};
    assert_refused(&r, KC_ECORRUPT);
    /* a property that does not fit the argument's type */
    s[0] = (kc_binmeta_spec_t){0, KC_SPEC_DIV16}; /* a pointer */
    s[1] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    assert_refused(&r, KC_ECORRUPT);
    s[0] = (kc_binmeta_spec_t){0, KC_SPEC_ALIGN16};
    s[1] = (kc_binmeta_spec_t){2, KC_SPEC_ALIGN16}; /* an i32 */
    assert_refused(&r, KC_ECORRUPT);
    s[1] = (kc_binmeta_spec_t){4, KC_SPEC_EQ1}; /* a constexpr */
    assert_refused(&r, KC_ECORRUPT);

    /* sorted, distinct, fitting: accepted */
    s[0] = (kc_binmeta_spec_t){2, KC_SPEC_DIV16};
    s[1] = (kc_binmeta_spec_t){2, KC_SPEC_EQ1};
    void *enc = NULL;
    size_t len;
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    assert_int_equal(kc_record_decode(enc, len, &d), KC_OK);
    assert_int_equal(d->u.binmeta.spec[1].prop, KC_SPEC_EQ1);
    kc_free(d);
    kc_free(enc);
}

/* ---- damaged bytes ---------------------------------------------------------- */

static void test_a_forged_count_is_refused_before_allocating(void **state)
{
    (void)state;
    kc_record_t r = sample();
    r.u.binmeta.n_spec = 0;
    r.u.binmeta.spec = NULL;
    bytes_t raw = raw_encode(&r.u.binmeta);
    kc_record_t *d = NULL;

    /* The spec count is the last 4 bytes before the checksum. */
    kc__store_u32le(raw.p + raw.n - 12, UINT32_MAX);
    reseal(raw.p, raw.n);
    assert_int_equal(kc_record_decode(raw.p, raw.n, &d), KC_ECORRUPT);
    assert_null(d);
    kc_free(raw.p);
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    kc_record_t r = sample();
    void *enc = NULL;
    size_t len = 0;

    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    for (size_t cut = 0; cut < len; cut++) {
        kc_record_t *d = NULL;
        /* as it is: the lengths or the checksum no longer agree */
        assert_int_equal(kc_record_decode(enc, cut, &d), KC_ECORRUPT);
        assert_null(d);
        /* the payload cut short under a valid header and checksum: a field
         * is missing */
        if (cut >= 12 && cut < len - 8) {
            uint8_t *p = malloc(cut + 8);
            assert_non_null(p);
            memcpy(p, enc, cut);
            reseal(p, cut + 8);
            assert_int_equal(kc_record_decode(p, cut + 8, &d), KC_ECORRUPT);
            assert_null(d);
            free(p);
        }
    }
    /* and a byte too many */
    uint8_t *p = malloc(len + 1);
    assert_non_null(p);
    memcpy(p, enc, len - 8);
    p[len - 8] = 0;
    reseal(p, len + 1);
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_decode(p, len + 1, &d), KC_ECORRUPT);
    free(p);
    kc_free(enc);
}

static void test_a_flipped_byte_anywhere_is_refused_or_canonical(void **state)
{
    (void)state;
    kc_record_t r = sample();
    void *enc = NULL;
    size_t len = 0;

    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    uint8_t *p = malloc(len);
    assert_non_null(p);
    for (size_t off = 0; off < len; off++) {
        for (int bit = 0; bit < 8; bit++) {
            kc_record_t *d = NULL;
            memcpy(p, enc, len);
            p[off] ^= (uint8_t)(1u << bit);
            /* The checksum catches every flip. */
            assert_int_equal(kc_record_decode(p, len, &d), KC_ECORRUPT);
            assert_null(d);
            if (off >= len - 8)
                continue;
            /* Resealed, the parser itself must judge it: refused, or a
             * record that encodes back to these very bytes. */
            kc__store_u64le(p + len - 8, XXH3_64bits(p, len - 8));
            int rc = kc_record_decode(p, len, &d);
            if (rc != KC_OK) {
                assert_null(d);
                assert_true(rc == KC_ECORRUPT || rc == KC_EVERSION);
                continue;
            }
            void *again = NULL;
            size_t again_len = 0;
            assert_int_equal(kc_record_encode(d, &again, &again_len), KC_OK);
            assert_int_equal(again_len, len);
            assert_memory_equal(again, p, len);
            kc_free(again);
            kc_free(d);
        }
    }
    free(p);
    kc_free(enc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_every_field),
        cmocka_unit_test(test_the_smallest_record_round_trips),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_every_invalid_scalar_is_refused),
        cmocka_unit_test(test_every_invalid_arch_is_refused),
        cmocka_unit_test(test_every_missing_string_is_refused),
        cmocka_unit_test(test_specialization_order_duplicates_and_types),
        cmocka_unit_test(test_a_forged_count_is_refused_before_allocating),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_a_flipped_byte_anywhere_is_refused_or_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
