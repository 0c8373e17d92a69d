/* Explaining misses (kcache/why.h): every kind of key difference is named,
 * each field is described for people, and the nearest stored records come
 * first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/shape.h"
#include "kcache/store.h"
#include "kcache/why.h"

/* ---- descriptors ---------------------------------------------------------- */

static const char *const base_opts[] = {"-O3", "-lineinfo"};
static const char *const other_opts[] = {"-O3", "-lineinfo", "-use_fast_math"};

/* The signature of (f32[rows x 512] aligned, i32 n). */
static size_t make_sig(int64_t rows, uint8_t *out, size_t cap)
{
    int64_t dims[2] = {rows, 512};
    kc_argdesc_t args[2] = {
        {.kind = KC_ARG_POINTER,
         .dtype = KC_DTYPE_F32,
         .rank = 2,
         .dims = dims,
         .addr = 0x7f0000000000},
        {.kind = KC_ARG_SCALAR, .dtype = KC_DTYPE_I32, .value.i = 4096},
    };
    size_t len = 0;
    assert_int_equal(kc_shape_sig_encode(args, 2, KC_DIMS_EXACT, out, cap, &len), KC_OK);
    return len;
}

typedef struct tuning_case {
    uint8_t sig[128];
    kc_tuning_desc_t d;
} tuning_case_t;

static void base_tuning(tuning_case_t *t)
{
    size_t len = make_sig(1024, t->sig, sizeof(t->sig));
    t->d = (kc_tuning_desc_t){
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_key_hash("softmax source", 14),
        .entry = "softmax",
        .options = base_opts,
        .n_options = 2,
        .space_digest = kc_key_hash("BLOCK in 64 128 256", 19),
        .shape_sig = {t->sig, len},
        .arch = "sm_90",
        .sm_count = 132,
        .device_name = "NVIDIA H100 80GB HBM3",
    };
}

static const kc_param_t base_params[] = {{"BLOCK", 128}, {"WARPS", 4}};
static const kc_param_t other_params[] = {{"BLOCK", 256}, {"WARPS", 4}};

static kc_build_desc_t base_build(void)
{
    return (kc_build_desc_t){
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_key_hash("softmax source", 14),
        .entry = "softmax",
        .options = base_opts,
        .n_options = 2,
        .params = base_params,
        .n_params = 2,
        .arch = "sm_90",
        .toolchain = "nvrtc-13.0",
    };
}

/* ---- comparing tunings: one test per field -------------------------------- */

static void test_identical_tunings_differ_in_nothing(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), 0);
}

static void test_tunings_for_another_arch_differ_in_arch(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.arch = "sm_80";
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_ARCH);
}

static void test_tunings_with_another_option_differ_in_options(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.options = other_opts;
    b.d.n_options = 3;
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_OPTIONS);
}

static void test_tunings_with_options_reordered_differ_in_options(void **state)
{
    static const char *const swapped[] = {"-lineinfo", "-O3"};
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.options = swapped;
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_OPTIONS);
}

static void test_tunings_of_edited_source_differ_in_source_digest(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.source_digest = kc_key_hash("softmax source, edited", 22);
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_SOURCE_DIGEST);
}

static void test_tunings_of_ptx_differ_in_source_kind(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.source_kind = KC_SOURCE_PTX;
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_SOURCE_KIND);
}

static void test_tunings_for_other_shapes_differ_in_shape_signature(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.shape_sig.size = make_sig(2048, b.sig, sizeof(b.sig));
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_SHAPE_SIG);
}

static void test_tunings_on_another_device_differ_in_device_class(void **state)
{
    tuning_case_t a, b, c;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    base_tuning(&c);
    b.d.device_name = "NVIDIA H100 PCIe";
    c.d.sm_count = 114;
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_DEVICE_CLASS);
    assert_int_equal(kc_why_compare_tuning(&a.d, &c.d), KC_WHY_DEVICE_CLASS);
}

static void test_tunings_over_another_space_differ_in_space_digest(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.space_digest = kc_key_hash("BLOCK in 64 128 256 512", 23);
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_SPACE_DIGEST);
}

static void test_tunings_of_another_entry_differ_in_entry(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.entry = "softmax_online";
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d), KC_WHY_ENTRY);
}

static void test_several_tuning_differences_are_all_named(void **state)
{
    tuning_case_t a, b;
    (void)state;
    base_tuning(&a);
    base_tuning(&b);
    b.d.arch = "sm_80";
    b.d.device_name = "NVIDIA A100-SXM4-80GB";
    b.d.sm_count = 108;
    assert_int_equal(kc_why_compare_tuning(&a.d, &b.d),
                     KC_WHY_ARCH | KC_WHY_DEVICE_CLASS);
}

/* ---- comparing builds: one test per field --------------------------------- */

static void test_build_differences_are_named_field_by_field(void **state)
{
    kc_build_desc_t a = base_build(), b;
    (void)state;

    b = base_build();
    assert_int_equal(kc_why_compare_build(&a, &b), 0);
    b.arch = "sm_90a";
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_ARCH);
    b = base_build();
    b.toolchain = "nvrtc-12.8";
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_TOOLCHAIN);
    b = base_build();
    b.options = other_opts;
    b.n_options = 3;
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_OPTIONS);
    b = base_build();
    b.source_digest = kc_key_hash("edited", 6);
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_SOURCE_DIGEST);
    b = base_build();
    b.source_kind = KC_SOURCE_PTX;
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_SOURCE_KIND);
    b = base_build();
    b.entry = "layernorm";
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_ENTRY);
}

static void test_builds_with_other_config_values_differ_in_params(void **state)
{
    kc_build_desc_t a = base_build(), b = base_build(), c = base_build();
    (void)state;
    b.params = other_params;
    c.n_params = 1; /* WARPS missing */
    assert_int_equal(kc_why_compare_build(&a, &b), KC_WHY_PARAMS);
    assert_int_equal(kc_why_compare_build(&a, &c), KC_WHY_PARAMS);
}

/* ---- names, descriptions, distance ----------------------------------------- */

static void test_every_field_has_a_name(void **state)
{
    (void)state;
    for (int i = 0; i < KC_WHY_FIELD_COUNT; i++)
        assert_non_null(kc_why_field_name(1u << i));
    assert_string_equal(kc_why_field_name(KC_WHY_SHAPE_SIG), "shape signature");
    assert_string_equal(kc_why_field_name(KC_WHY_DEVICE_CLASS), "device class");
    assert_null(kc_why_field_name(0));
    assert_null(kc_why_field_name(KC_WHY_ARCH | KC_WHY_ENTRY));
    assert_null(kc_why_field_name(1u << KC_WHY_FIELD_COUNT));
}

static void test_fields_are_described_with_their_values(void **state)
{
    tuning_case_t a;
    kc_build_desc_t b = base_build();
    char out[256];
    (void)state;

    base_tuning(&a);
    kc_why_describe_tuning(&a.d, KC_WHY_SHAPE_SIG, out, sizeof(out));
    assert_non_null(strstr(out, "f32[1024x512]"));
    kc_why_describe_tuning(&a.d, KC_WHY_DEVICE_CLASS, out, sizeof(out));
    assert_string_equal(out, "NVIDIA H100 80GB HBM3 (132 SMs)");
    kc_why_describe_tuning(&a.d, KC_WHY_OPTIONS, out, sizeof(out));
    assert_string_equal(out, "-O3 -lineinfo");
    kc_why_describe_tuning(&a.d, KC_WHY_ARCH, out, sizeof(out));
    assert_string_equal(out, "sm_90");
    kc_why_describe_build(&b, KC_WHY_PARAMS, out, sizeof(out));
    assert_string_equal(out, "BLOCK=128,WARPS=4");
    kc_why_describe_build(&b, KC_WHY_TOOLCHAIN, out, sizeof(out));
    assert_string_equal(out, "nvrtc-13.0");
    kc_why_describe_build(&b, KC_WHY_SOURCE_DIGEST, out, sizeof(out));
    assert_int_equal(strlen(out), 8);
    /* A short buffer is truncated, never overrun. */
    kc_why_describe_tuning(&a.d, KC_WHY_DEVICE_CLASS, out, 6);
    assert_string_equal(out, "NVIDI");
}

static void test_another_entry_is_farther_than_another_arch_and_device(void **state)
{
    (void)state;
    assert_true(kc_why_distance(KC_WHY_ENTRY) >
                kc_why_distance(KC_WHY_ARCH | KC_WHY_DEVICE_CLASS | KC_WHY_SHAPE_SIG));
    assert_true(kc_why_distance(KC_WHY_SHAPE_SIG | KC_WHY_ARCH) >
                kc_why_distance(KC_WHY_SHAPE_SIG));
    assert_int_equal(kc_why_distance(0), 0);
}

/* ---- nearest stored records ------------------------------------------------ */

typedef struct fixture {
    char root[512];
    kc_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_store_scratch("test_why", f->root, sizeof(f->root), &f->st) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kct_store_scratch_free(f->root, f->st);
    free(f);
    return 0;
}

static kc_key_t put_tuning(kc_store_t *st, const kc_tuning_desc_t *d)
{
    static const kc_param_t winner[] = {{"BLOCK", 128}};
    void *pre = NULL;
    size_t len = 0;
    kc_key_t key;

    assert_int_equal(kc_tuning_preimage_encode(d, &pre, &len), KC_OK);
    kc_record_t rec = {.kind = KC_REC_TUNING};
    rec.u.tuning = (kc_tuning_rec_t){
        .preimage = {pre, len},
        .winner = winner,
        .n_winner = 1,
        .winner_build = kc_key_hash("build", 5),
        .device_name = d->device_name,
        .arch = d->arch,
        .sm_count = d->sm_count,
    };
    key = kc_key_hash(pre, len);
    assert_int_equal(kc_store_put(st, &key, &rec), KC_OK);
    kc_free(pre);
    return key;
}

static kc_key_t put_build(kc_store_t *st, const kc_build_desc_t *d)
{
    void *pre = NULL;
    size_t len = 0;
    kc_key_t key;

    assert_int_equal(kc_build_preimage_encode(d, &pre, &len), KC_OK);
    kc_record_t rec = {.kind = KC_REC_BUILD};
    rec.u.build = (kc_build_rec_t){
        .preimage = {pre, len}, .blob = kc_key_hash("blob", 4), .entry = d->entry};
    key = kc_key_hash(pre, len);
    assert_int_equal(kc_store_put(st, &key, &rec), KC_OK);
    kc_free(pre);
    return key;
}

static void test_nearest_tuning_is_the_one_differing_only_in_shape(void **state)
{
    fixture_t *f = *state;
    tuning_case_t want, shape, arch_dev, entry;
    kc_why_match_t m[4];
    size_t n = 99;

    base_tuning(&want);
    base_tuning(&shape);
    shape.d.shape_sig.size = make_sig(2048, shape.sig, sizeof(shape.sig));
    base_tuning(&arch_dev);
    arch_dev.d.arch = "sm_80";
    arch_dev.d.device_name = "NVIDIA A100-SXM4-80GB";
    base_tuning(&entry);
    entry.d.entry = "layernorm";
    kc_key_t k_shape = put_tuning(f->st, &shape.d);
    kc_key_t k_arch = put_tuning(f->st, &arch_dev.d);
    kc_key_t k_entry = put_tuning(f->st, &entry.d);

    assert_int_equal(kc_why_nearest_tunings(f->st, &want.d, NULL, m, 4, &n), KC_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(m[0].key.b, k_shape.b, 16);
    assert_int_equal(m[0].fields, KC_WHY_SHAPE_SIG);
    assert_memory_equal(m[1].key.b, k_arch.b, 16);
    assert_int_equal(m[1].fields, KC_WHY_ARCH | KC_WHY_DEVICE_CLASS);
    assert_memory_equal(m[2].key.b, k_entry.b, 16);
    assert_int_equal(m[2].fields, KC_WHY_ENTRY);

    /* A capacity of one keeps only the nearest. */
    assert_int_equal(kc_why_nearest_tunings(f->st, &want.d, NULL, m, 1, &n), KC_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(m[0].key.b, k_shape.b, 16);
}

static void test_a_stored_target_is_not_its_own_nearest(void **state)
{
    fixture_t *f = *state;
    tuning_case_t a, b;
    kc_why_match_t m[4];
    size_t n = 0;

    base_tuning(&a);
    base_tuning(&b);
    b.d.device_name = "NVIDIA H100 PCIe";
    kc_key_t ka = put_tuning(f->st, &a.d);
    kc_key_t kb = put_tuning(f->st, &b.d);
    assert_int_equal(kc_why_nearest_tunings(f->st, &a.d, &ka, m, 4, &n), KC_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(m[0].key.b, kb.b, 16);
    assert_int_equal(m[0].fields, KC_WHY_DEVICE_CLASS);
}

static void test_nearest_build_names_the_toolchain(void **state)
{
    fixture_t *f = *state;
    kc_build_desc_t want = base_build(), old = base_build(), other = base_build();
    kc_why_match_t m[4];
    size_t n = 0;

    old.toolchain = "nvrtc-12.8";
    other.entry = "layernorm";
    other.toolchain = "nvrtc-12.8";
    kc_key_t k_old = put_build(f->st, &old);
    put_build(f->st, &other);
    /* Tunings are not builds: they never show up among the builds. */
    tuning_case_t t;
    base_tuning(&t);
    put_tuning(f->st, &t.d);

    assert_int_equal(kc_why_nearest_builds(f->st, &want, NULL, m, 4, &n), KC_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(m[0].key.b, k_old.b, 16);
    assert_int_equal(m[0].fields, KC_WHY_TOOLCHAIN);
    assert_int_equal(m[1].fields, KC_WHY_ENTRY | KC_WHY_TOOLCHAIN);
}

static void test_an_empty_store_has_no_nearest_record(void **state)
{
    fixture_t *f = *state;
    tuning_case_t a;
    kc_why_match_t m[2];
    size_t n = 7;

    base_tuning(&a);
    assert_int_equal(kc_why_nearest_tunings(f->st, &a.d, NULL, m, 2, &n), KC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kc_why_nearest_tunings(NULL, &a.d, NULL, m, 2, &n), KC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_tunings_differ_in_nothing),
        cmocka_unit_test(test_tunings_for_another_arch_differ_in_arch),
        cmocka_unit_test(test_tunings_with_another_option_differ_in_options),
        cmocka_unit_test(test_tunings_with_options_reordered_differ_in_options),
        cmocka_unit_test(test_tunings_of_edited_source_differ_in_source_digest),
        cmocka_unit_test(test_tunings_of_ptx_differ_in_source_kind),
        cmocka_unit_test(test_tunings_for_other_shapes_differ_in_shape_signature),
        cmocka_unit_test(test_tunings_on_another_device_differ_in_device_class),
        cmocka_unit_test(test_tunings_over_another_space_differ_in_space_digest),
        cmocka_unit_test(test_tunings_of_another_entry_differ_in_entry),
        cmocka_unit_test(test_several_tuning_differences_are_all_named),
        cmocka_unit_test(test_build_differences_are_named_field_by_field),
        cmocka_unit_test(test_builds_with_other_config_values_differ_in_params),
        cmocka_unit_test(test_every_field_has_a_name),
        cmocka_unit_test(test_fields_are_described_with_their_values),
        cmocka_unit_test(test_another_entry_is_farther_than_another_arch_and_device),
        cmocka_unit_test_setup_teardown(
            test_nearest_tuning_is_the_one_differing_only_in_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stored_target_is_not_its_own_nearest,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_nearest_build_names_the_toolchain, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_store_has_no_nearest_record, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
