/* Keys, hex prefixes, the source digest and the build/tuning preimages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "key_sort.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct enc {
    uint8_t *p;
    size_t n;
} enc_t;

static enc_t encode_build(const kc_build_desc_t *d)
{
    enc_t e = {NULL, 0};
    void *p = NULL;
    assert_int_equal(kc_build_preimage_encode(d, &p, &e.n), KC_OK);
    e.p = p;
    return e;
}

static enc_t encode_tuning(const kc_tuning_desc_t *d)
{
    enc_t e = {NULL, 0};
    void *p = NULL;
    assert_int_equal(kc_tuning_preimage_encode(d, &p, &e.n), KC_OK);
    e.p = p;
    return e;
}

static int enc_equal(enc_t a, enc_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

static kc_key_t filled_key(uint8_t v)
{
    kc_key_t k;
    memset(k.b, v, sizeof(k.b));
    return k;
}

static const char *base_options[] = {"-O3", "--use_fast_math"};
static const kc_param_t base_params[] = {{"BLOCK", 128}, {"WARPS", 4}, {"STAGES", -3}};

static kc_build_desc_t base_build(void)
{
    kc_build_desc_t d = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = filled_key(0xab),
        .entry = "matmul",
        .options = base_options,
        .n_options = 2,
        .params = base_params,
        .n_params = 3,
        .arch = "sm_90a",
        .toolchain = "nvrtc-13.0",
    };
    return d;
}

static const uint8_t base_sig[] = {1, 0, 1, 0, 'S', 4, 2};

static kc_tuning_desc_t base_tuning(void)
{
    kc_tuning_desc_t d = {
        .source_kind = KC_SOURCE_PTX,
        .source_digest = filled_key(0x5a),
        .entry = "softmax",
        .options = base_options,
        .n_options = 2,
        .space_digest = filled_key(0x33),
        .shape_sig = {base_sig, sizeof(base_sig)},
        .arch = "sm_80",
        .sm_count = 108,
        .device_name = "NVIDIA A100-SXM4-80GB",
    };
    return d;
}

static kc_key_t build_key(const kc_build_desc_t *d)
{
    kc_key_t k;
    assert_int_equal(kc_build_key(d, &k), KC_OK);
    return k;
}

static kc_key_t tuning_key(const kc_tuning_desc_t *d)
{
    kc_key_t k;
    assert_int_equal(kc_tuning_key(d, &k), KC_OK);
    return k;
}

static void assert_keys_differ(kc_key_t a, kc_key_t b)
{
    assert_int_not_equal(kc_key_cmp(&a, &b), 0);
}

/* ---- hashing and hex ---------------------------------------------------- */

static void expect_canonical_xxh3(const char *s)
{
    XXH128_hash_t h = XXH3_128bits(s, strlen(s));
    uint8_t want[16];
    for (int i = 0; i < 8; i++) {
        want[i] = (uint8_t)(h.high64 >> (56 - 8 * i));
        want[8 + i] = (uint8_t)(h.low64 >> (56 - 8 * i));
    }
    kc_key_t k = kc_key_hash(s, strlen(s));
    assert_memory_equal(k.b, want, 16);
}

static void test_key_hash_is_xxh3_128_in_big_endian_order(void **state)
{
    (void)state;
    expect_canonical_xxh3("");
    expect_canonical_xxh3("abc");
}

static void test_hex_round_trips_and_is_lowercase(void **state)
{
    (void)state;
    kc_key_t k, back;
    char hex[KC_KEY_HEX_LEN + 1];
    for (int i = 0; i < 16; i++)
        k.b[i] = (uint8_t)(i * 17 + 0xa0);
    kc_key_to_hex(&k, hex);
    assert_string_equal(hex, "a0b1c2d3e4f5061728394a5b6c7d8e9f");
    assert_int_equal(kc_key_from_hex(hex, &back), KC_OK);
    assert_memory_equal(back.b, k.b, 16);
    assert_int_equal(kc_key_from_hex("A0B1C2D3E4F5061728394A5B6C7D8E9F", &back), KC_OK);
    assert_memory_equal(back.b, k.b, 16);
}

static void test_bad_hex_is_rejected(void **state)
{
    (void)state;
    kc_key_t k;
    assert_int_equal(kc_key_from_hex("a0b1c2d3e4f5061728394a5b6c7d8e9", &k), KC_EINVAL);
    assert_int_equal(kc_key_from_hex("a0b1c2d3e4f5061728394a5b6c7d8e9f0", &k), KC_EINVAL);
    assert_int_equal(kc_key_from_hex("a0b1c2d3e4f5061728394a5b6c7d8e9g", &k), KC_EINVAL);
    assert_int_equal(kc_key_from_hex(" 0b1c2d3e4f5061728394a5b6c7d8e9f", &k), KC_EINVAL);
    assert_int_equal(kc_key_from_hex("", &k), KC_EINVAL);
    assert_int_equal(kc_key_from_hex(NULL, &k), KC_EINVAL);
}

static void test_prefix_parse_accepts_8_to_32_digits_only(void **state)
{
    (void)state;
    kc_key_prefix_t p;
    assert_int_equal(kc_key_prefix_parse("0123456", &p), KC_EINVAL);
    assert_int_equal(kc_key_prefix_parse("0123456789abcdef0123456789abcdef0", &p),
                     KC_EINVAL);
    assert_int_equal(kc_key_prefix_parse("0123456x", &p), KC_EINVAL);
    assert_int_equal(kc_key_prefix_parse("01234567-", &p), KC_EINVAL);
    assert_int_equal(kc_key_prefix_parse(NULL, &p), KC_EINVAL);

    assert_int_equal(kc_key_prefix_parse("DEADBEEF1", &p), KC_OK);
    assert_int_equal(p.nibbles, 9);
    const uint8_t want[16] = {0xde, 0xad, 0xbe, 0xef, 0x10};
    assert_memory_equal(p.key.b, want, 16);

    assert_int_equal(kc_key_prefix_parse("0123456789abcdef0123456789abcdef", &p), KC_OK);
    assert_int_equal(p.nibbles, 32);
}

static void test_prefix_matches_only_keys_that_start_with_it(void **state)
{
    (void)state;
    kc_key_prefix_t p;
    kc_key_t k;
    assert_int_equal(kc_key_from_hex("deadbeef1234567890abcdef12345678", &k), KC_OK);

    assert_int_equal(kc_key_prefix_parse("deadbeef", &p), KC_OK);
    assert_true(kc_key_prefix_match(&p, &k));
    assert_int_equal(kc_key_prefix_parse("deadbeef1", &p), KC_OK);
    assert_true(kc_key_prefix_match(&p, &k));
    /* The odd last nibble is significant; the one after it is not. */
    assert_int_equal(kc_key_prefix_parse("deadbeef2", &p), KC_OK);
    assert_false(kc_key_prefix_match(&p, &k));
    assert_int_equal(kc_key_prefix_parse("deadbeee", &p), KC_OK);
    assert_false(kc_key_prefix_match(&p, &k));
    assert_int_equal(kc_key_prefix_parse("deadbeef1234567890abcdef12345678", &p), KC_OK);
    assert_true(kc_key_prefix_match(&p, &k));
    assert_int_equal(kc_key_prefix_parse("deadbeef1234567890abcdef12345679", &p), KC_OK);
    assert_false(kc_key_prefix_match(&p, &k));
}

/* kc__key_order sorts elements that start with a key bytewise, and
 * kc__key_find finds each by its key in such an array, whatever follows
 * the key in an element; a key not there, below the first or past the
 * last, is -1. */
static void test_key_find_finds_every_key_of_a_sorted_array(void **state)
{
    (void)state;
    typedef struct {
        kc_key_t key;
        int payload;
    } elem_t;
    enum { N = 37 };
    elem_t a[N];
    for (int i = 0; i < N; i++) {
        char s[8];
        snprintf(s, sizeof s, "k%d", i);
        a[i].key = kc_key_hash(s, strlen(s));
        a[i].payload = i;
    }
    qsort(a, N, sizeof(*a), kc__key_order);
    for (int i = 1; i < N; i++)
        assert_true(kc_key_cmp(&a[i - 1].key, &a[i].key) < 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(kc__key_find(a, N, sizeof(*a), &a[i].key), i);
    kc_key_t none = kc_key_hash("absent", 6), low, high;
    memset(low.b, 0, sizeof(low.b));
    memset(high.b, 0xff, sizeof(high.b));
    assert_int_equal(kc__key_find(a, N, sizeof(*a), &none), -1);
    assert_int_equal(kc__key_find(a, N, sizeof(*a), &low), -1);
    assert_int_equal(kc__key_find(a, N, sizeof(*a), &high), -1);
    assert_int_equal(kc__key_find(a, 0, sizeof(*a), &a[0].key), -1);
}

static void test_key_cmp_orders_bytewise_and_zero_is_detected(void **state)
{
    (void)state;
    kc_key_t a = filled_key(0), b = filled_key(0);
    assert_true(kc_key_is_zero(&a));
    b.b[15] = 1;
    assert_false(kc_key_is_zero(&b));
    assert_int_equal(kc_key_cmp(&a, &b), -1);
    assert_int_equal(kc_key_cmp(&b, &a), 1);
    assert_int_equal(kc_key_cmp(&b, &b), 0);
    a.b[0] = 0x80; /* the first byte decides, compared unsigned */
    assert_int_equal(kc_key_cmp(&a, &b), 1);
}

/* ---- source digest ------------------------------------------------------ */

static void test_source_digest_separates_source_names_and_contents(void **state)
{
    (void)state;
    kc_header_t h1[] = {{"a.h", "xy"}, {"b.h", "z"}};
    kc_header_t h2[] = {{"a.h", "x"}, {"yb.h", "z"}}; /* moved across headers */
    kc_header_t h3[] = {{"a.hx", "y"}, {"b.h", "z"}}; /* moved name <-> content */
    kc_header_t h4[] = {{"b.h", "z"}, {"a.h", "xy"}}; /* other order */
    kc_header_t h5[] = {{"a.h", "xy"}, {"b.h", "z"}, {"", ""}};
    kc_key_t base = kc_source_digest("src", 3, h1, 2);

    kc_key_t again = kc_source_digest("src", 3, h1, 2);
    assert_int_equal(kc_key_cmp(&base, &again), 0);
    assert_keys_differ(base, kc_source_digest("src", 3, h2, 2));
    assert_keys_differ(base, kc_source_digest("src", 3, h3, 2));
    assert_keys_differ(base, kc_source_digest("src", 3, h4, 2));
    assert_keys_differ(base, kc_source_digest("src", 3, h5, 3));
    assert_keys_differ(base, kc_source_digest("src", 3, NULL, 0));
    assert_keys_differ(base, kc_source_digest("sr", 2, h1, 2));
    /* Only source_len bytes of the source count. */
    kc_key_t cut = kc_source_digest("srcXYZ", 3, h1, 2);
    assert_int_equal(kc_key_cmp(&base, &cut), 0);
    /* Plain hash of the source is not the digest: headers are part of it. */
    assert_keys_differ(kc_source_digest("src", 3, NULL, 0), kc_key_hash("src", 3));
}

/* ---- preimage encoding -------------------------------------------------- */

static void test_build_preimage_has_the_documented_layout(void **state)
{
    (void)state;
    const kc_param_t params[] = {{"N", 5}};
    const char *opts[] = {"-G"};
    kc_build_desc_t d = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = filled_key(0x11),
        .entry = "k",
        .options = opts,
        .n_options = 1,
        .params = params,
        .n_params = 1,
        .arch = "sm_90",
        .toolchain = "t",
    };
    const uint8_t want[] = {
        'K',  'C',  'P',  'B',  1,    0,    1,    0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 1,
        0,    0,    0,    'k',  1,    0,    0,    0,    2,    0,    0,    0,
        '-',  'G',  1,    0,    0,    0,    1,    0,    0,    0,    'N',  5,
        0,    0,    0,    0,    0,    0,    0,    5,    0,    0,    0,    's',
        'm',  '_',  '9',  '0',  1,    0,    0,    0,    't',
    };
    enc_t e = encode_build(&d);
    assert_int_equal(e.n, sizeof(want));
    assert_memory_equal(e.p, want, sizeof(want));
    kc_free(e.p);
}

static void test_tuning_preimage_has_the_documented_layout(void **state)
{
    (void)state;
    const uint8_t sig[] = {9, 8};
    kc_tuning_desc_t d = {
        .source_kind = KC_SOURCE_PTX,
        .source_digest = filled_key(0x22),
        .entry = "e",
        .options = NULL,
        .n_options = 0,
        .space_digest = filled_key(0x33),
        .shape_sig = {sig, 2},
        .arch = "a",
        .sm_count = 0x01020304,
        .device_name = "d",
    };
    uint8_t want[4 + 2 + 1 + 16 + 5 + 4 + 16 + 6 + 5 + 4 + 5];
    uint8_t *w = want;
    memcpy(w, "KCPT\1\0\2", 7), w += 7;
    memset(w, 0x22, 16), w += 16;
    memcpy(w, "\1\0\0\0e\0\0\0\0", 9), w += 9;
    memset(w, 0x33, 16), w += 16;
    memcpy(w, "\2\0\0\0\x09\x08", 6), w += 6;
    memcpy(w, "\1\0\0\0a\4\3\2\1\1\0\0\0d", 14), w += 14;
    assert_int_equal(w - want, sizeof(want));

    enc_t e = encode_tuning(&d);
    assert_int_equal(e.n, sizeof(want));
    assert_memory_equal(e.p, want, sizeof(want));
    kc_free(e.p);
}

static void test_params_in_any_order_give_the_same_bytes_and_key(void **state)
{
    (void)state;
    kc_build_desc_t a = base_build(), b = base_build();
    const kc_param_t shuffled[] = {{"WARPS", 4}, {"STAGES", -3}, {"BLOCK", 128}};
    b.params = shuffled;
    enc_t ea = encode_build(&a), eb = encode_build(&b);
    assert_true(enc_equal(ea, eb));
    kc_key_t ka = build_key(&a), kb = build_key(&b);
    assert_int_equal(kc_key_cmp(&ka, &kb), 0);
    kc_key_t direct = kc_key_hash(ea.p, ea.n);
    assert_int_equal(kc_key_cmp(&ka, &direct), 0);
    kc_free(ea.p);
    kc_free(eb.p);
}

/* Adjacent string fields of a build preimage, in encoding order: moving one
 * character across any boundary must change the bytes. */
enum { F_ENTRY, F_OPT0, F_OPT1, F_PARAM, F_ARCH, F_TOOL, N_FIELDS };

static enc_t encode_fields(char f[N_FIELDS][8])
{
    const char *opts[2] = {f[F_OPT0], f[F_OPT1]};
    kc_param_t params[1] = {{f[F_PARAM], 7}};
    kc_build_desc_t d = base_build();
    d.entry = f[F_ENTRY];
    d.options = opts;
    d.n_options = 2;
    d.params = params;
    d.n_params = 1;
    d.arch = f[F_ARCH];
    d.toolchain = f[F_TOOL];
    return encode_build(&d);
}

static void test_moving_a_char_between_adjacent_fields_changes_the_bytes(void **state)
{
    (void)state;
    char base[N_FIELDS][8] = {"ab", "cd", "ef", "gh", "ij", "kl"};
    enc_t e0 = encode_fields(base);

    for (int i = 0; i + 1 < N_FIELDS; i++) {
        char f[N_FIELDS][8];
        /* Last char of field i moves to the front of field i + 1. */
        memcpy(f, base, sizeof(f));
        f[i][1] = '\0';
        memmove(f[i + 1] + 1, f[i + 1], strlen(f[i + 1]) + 1);
        f[i + 1][0] = base[i][1];
        enc_t e1 = encode_fields(f);
        assert_false(enc_equal(e0, e1));

        /* First char of field i + 1 moves to the end of field i. */
        memcpy(f, base, sizeof(f));
        f[i][2] = base[i + 1][0];
        f[i][3] = '\0';
        memmove(f[i + 1], f[i + 1] + 1, strlen(f[i + 1]));
        enc_t e2 = encode_fields(f);
        assert_false(enc_equal(e0, e2));
        assert_false(enc_equal(e1, e2));
        kc_free(e1.p);
        kc_free(e2.p);
    }
    kc_free(e0.p);
}

static void test_entry_and_option_boundaries_are_not_ambiguous(void **state)
{
    (void)state;
    const char *o_c[] = {"c"}, *o_bc[] = {"bc"}, *o_a_b[] = {"a", "b"}, *o_ab[] = {"ab"};
    const char *o_a_empty_b[] = {"a", "", "b"};
    kc_build_desc_t a = base_build(), b = base_build();
    a.entry = "ab", a.options = o_c, a.n_options = 1;
    b.entry = "a", b.options = o_bc, b.n_options = 1;
    assert_keys_differ(build_key(&a), build_key(&b));

    a.options = o_a_b, a.n_options = 2;
    b.entry = "ab", b.options = o_ab, b.n_options = 1;
    assert_keys_differ(build_key(&a), build_key(&b));
    b.options = o_a_empty_b, b.n_options = 3;
    assert_keys_differ(build_key(&a), build_key(&b));
    b.options = NULL, b.n_options = 0;
    assert_keys_differ(build_key(&a), build_key(&b));
}

static void test_param_name_and_value_swaps_change_the_key(void **state)
{
    (void)state;
    const kc_param_t p1[] = {{"A", 1}, {"B", 2}};
    const kc_param_t p2[] = {{"A", 2}, {"B", 1}};
    const kc_param_t p3[] = {{"A", 1}};
    const kc_param_t p4[] = {{"A1", 2}};
    kc_build_desc_t a = base_build(), b = base_build();
    a.params = p1, a.n_params = 2;
    b.params = p2, b.n_params = 2;
    assert_keys_differ(build_key(&a), build_key(&b));
    b.params = p3, b.n_params = 1;
    assert_keys_differ(build_key(&a), build_key(&b));
    a.params = p4, a.n_params = 1;
    assert_keys_differ(build_key(&a), build_key(&b));
    a.params = NULL, a.n_params = 0;
    assert_keys_differ(build_key(&a), build_key(&b));
}

static void test_each_build_field_changes_the_key(void **state)
{
    (void)state;
    kc_build_desc_t b = base_build();
    kc_key_t base = build_key(&b);

    b = base_build(), b.arch = "sm_90";
    assert_keys_differ(base, build_key(&b));
    b = base_build(), b.toolchain = "nvrtc-13.1";
    assert_keys_differ(base, build_key(&b));
    b = base_build(), b.source_kind = KC_SOURCE_PTX;
    assert_keys_differ(base, build_key(&b));
    b = base_build(), b.source_digest.b[15] ^= 1;
    assert_keys_differ(base, build_key(&b));
    b = base_build(), b.entry = "matmul2";
    assert_keys_differ(base, build_key(&b));
    b = base_build(), b.n_options = 1;
    assert_keys_differ(base, build_key(&b));
}

static void test_each_tuning_field_changes_the_key(void **state)
{
    (void)state;
    const uint8_t other_sig[] = {1, 0, 1, 0, 'S', 4, 3};
    kc_tuning_desc_t t = base_tuning();
    kc_key_t base = tuning_key(&t);

    t = base_tuning(), t.sm_count = 132;
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.device_name = "NVIDIA A100-SXM4-40GB";
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.arch = "sm_90";
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.source_kind = KC_SOURCE_CUDA;
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.space_digest.b[0] ^= 1;
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.shape_sig.data = other_sig;
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.shape_sig.size--;
    assert_keys_differ(base, tuning_key(&t));
    t = base_tuning(), t.entry = "softmax_";
    assert_keys_differ(base, tuning_key(&t));
}

static void test_bad_descriptors_are_einval(void **state)
{
    (void)state;
    const kc_param_t dup[] = {{"A", 1}, {"B", 2}, {"A", 1}};
    const kc_param_t null_name[] = {{NULL, 1}};
    const char *null_opt[] = {"-O3", NULL};
    void *p = NULL;
    size_t n = 0;
    kc_key_t k;

    kc_build_desc_t b = base_build();
    b.params = dup, b.n_params = 3;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    assert_int_equal(kc_build_key(&b, &k), KC_EINVAL);
    b = base_build(), b.params = null_name, b.n_params = 1;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    b = base_build(), b.options = null_opt;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    b = base_build(), b.entry = NULL;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    b = base_build(), b.arch = NULL;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    b = base_build(), b.toolchain = NULL;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);
    b = base_build(), b.source_kind = (kc_source_kind_t)4;
    assert_int_equal(kc_build_preimage_encode(&b, &p, &n), KC_EINVAL);

    kc_tuning_desc_t t = base_tuning();
    t.device_name = NULL;
    assert_int_equal(kc_tuning_preimage_encode(&t, &p, &n), KC_EINVAL);
    t = base_tuning(), t.shape_sig.data = NULL;
    assert_int_equal(kc_tuning_preimage_encode(&t, &p, &n), KC_EINVAL);
    t = base_tuning(), t.source_kind = (kc_source_kind_t)0;
    assert_int_equal(kc_tuning_key(&t, &k), KC_EINVAL);
    assert_null(p);
}

/* ---- preimage decoding -------------------------------------------------- */

static void assert_build_equal(const kc_build_desc_t *a, const kc_build_desc_t *b)
{
    assert_int_equal(a->source_kind, b->source_kind);
    assert_memory_equal(a->source_digest.b, b->source_digest.b, 16);
    assert_string_equal(a->entry, b->entry);
    assert_int_equal(a->n_options, b->n_options);
    for (size_t i = 0; i < a->n_options; i++)
        assert_string_equal(a->options[i], b->options[i]);
    assert_int_equal(a->n_params, b->n_params);
    for (size_t i = 0; i < a->n_params; i++) {
        assert_string_equal(a->params[i].name, b->params[i].name);
        assert_int_equal(a->params[i].value, b->params[i].value);
    }
    assert_string_equal(a->arch, b->arch);
    assert_string_equal(a->toolchain, b->toolchain);
}

static void test_build_preimage_decodes_every_field(void **state)
{
    (void)state;
    const kc_param_t sorted[] = {{"BLOCK", 128}, {"STAGES", -3}, {"WARPS", 4}};
    const kc_param_t extreme[] = {{"", INT64_MIN}, {"\xff", INT64_MAX}};
    kc_build_desc_t want = base_build();
    want.params = sorted;
    kc_build_desc_t in = base_build();
    enc_t e = encode_build(&in);
    kc_build_desc_t *got = NULL;

    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_OK);
    assert_build_equal(got, &want);
    kc_free(got);
    kc_free(e.p);

    /* Empty lists, empty strings and extreme values survive too. */
    want.options = NULL, want.n_options = 0;
    want.params = extreme, want.n_params = 2;
    want.entry = "", want.arch = "", want.toolchain = "";
    e = encode_build(&want);
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_OK);
    assert_build_equal(got, &want);
    kc_free(got);
    kc_free(e.p);
}

static void test_tuning_preimage_decodes_every_field(void **state)
{
    (void)state;
    kc_tuning_desc_t want = base_tuning();
    enc_t e = encode_tuning(&want);
    kc_tuning_desc_t *got = NULL;

    assert_int_equal(kc_tuning_preimage_decode(e.p, e.n, &got), KC_OK);
    assert_int_equal(got->source_kind, want.source_kind);
    assert_memory_equal(got->source_digest.b, want.source_digest.b, 16);
    assert_string_equal(got->entry, want.entry);
    assert_int_equal(got->n_options, 2);
    assert_string_equal(got->options[0], "-O3");
    assert_string_equal(got->options[1], "--use_fast_math");
    assert_memory_equal(got->space_digest.b, want.space_digest.b, 16);
    assert_int_equal(got->shape_sig.size, sizeof(base_sig));
    assert_memory_equal(got->shape_sig.data, base_sig, sizeof(base_sig));
    assert_string_equal(got->arch, want.arch);
    assert_int_equal(got->sm_count, want.sm_count);
    assert_string_equal(got->device_name, want.device_name);

    /* Decoding and encoding again gives the same bytes. */
    enc_t again = encode_tuning(got);
    assert_true(enc_equal(e, again));
    kc_free(again.p);
    kc_free(got);
    kc_free(e.p);
}

static void test_every_truncation_of_a_preimage_is_corrupt(void **state)
{
    (void)state;
    kc_build_desc_t b = base_build();
    kc_tuning_desc_t t = base_tuning();
    enc_t eb = encode_build(&b), et = encode_tuning(&t);

    for (size_t n = 0; n < eb.n; n++) {
        kc_build_desc_t *got = (kc_build_desc_t *)&got;
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, eb.p, n);
        assert_int_equal(kc_build_preimage_decode(copy, n, &got), KC_ECORRUPT);
        assert_null(got);
        free(copy);
    }
    for (size_t n = 0; n < et.n; n++) {
        kc_tuning_desc_t *got = NULL;
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, et.p, n);
        assert_int_equal(kc_tuning_preimage_decode(copy, n, &got), KC_ECORRUPT);
        free(copy);
    }
    kc_free(eb.p);
    kc_free(et.p);
}

static void test_a_trailing_byte_is_corrupt(void **state)
{
    (void)state;
    kc_build_desc_t b = base_build();
    kc_tuning_desc_t t = base_tuning();
    enc_t eb = encode_build(&b), et = encode_tuning(&t);
    uint8_t *xb = calloc(1, eb.n + 1), *xt = calloc(1, et.n + 1);
    kc_build_desc_t *gb = NULL;
    kc_tuning_desc_t *gt = NULL;

    memcpy(xb, eb.p, eb.n);
    memcpy(xt, et.p, et.n);
    assert_int_equal(kc_build_preimage_decode(xb, eb.n + 1, &gb), KC_ECORRUPT);
    assert_int_equal(kc_tuning_preimage_decode(xt, et.n + 1, &gt), KC_ECORRUPT);
    free(xb);
    free(xt);
    kc_free(eb.p);
    kc_free(et.p);
}

static void test_newer_schema_version_is_eversion_and_version_0_is_corrupt(void **state)
{
    (void)state;
    kc_build_desc_t b = base_build();
    kc_tuning_desc_t t = base_tuning();
    enc_t eb = encode_build(&b), et = encode_tuning(&t);
    kc_build_desc_t *gb = NULL;
    kc_tuning_desc_t *gt = NULL;

    eb.p[4] = KC_KEY_SCHEMA_VERSION + 1;
    et.p[4] = KC_KEY_SCHEMA_VERSION + 1;
    assert_int_equal(kc_build_preimage_decode(eb.p, eb.n, &gb), KC_EVERSION);
    assert_int_equal(kc_tuning_preimage_decode(et.p, et.n, &gt), KC_EVERSION);
    eb.p[4] = 0;
    assert_int_equal(kc_build_preimage_decode(eb.p, eb.n, &gb), KC_ECORRUPT);
    kc_free(eb.p);
    kc_free(et.p);
}

static void test_decode_rejects_non_canonical_bytes(void **state)
{
    (void)state;
    kc_build_desc_t b = base_build();
    enc_t e = encode_build(&b);
    kc_build_desc_t *got = NULL;
    kc_tuning_desc_t *gt = NULL;
    size_t entry_at = 4 + 2 + 1 + 16; /* u32 length of "matmul" */
    size_t nopt_at = entry_at + 4 + 6;

    /* A build preimage is not a tuning preimage. */
    assert_int_equal(kc_tuning_preimage_decode(e.p, e.n, &gt), KC_ECORRUPT);

    e.p[0] = 'X';
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    e.p[0] = 'K';

    e.p[6] = 4; /* unknown source kind (3 is prebuilt) */
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    e.p[6] = KC_SOURCE_CUDA;

    e.p[entry_at + 4 + 2] = '\0'; /* NUL inside "matmul" */
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    e.p[entry_at + 4 + 2] = 't';

    /* A count far beyond what the bytes could hold. */
    memset(e.p + nopt_at, 0xff, 4);
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    memcpy(e.p + nopt_at, "\2\0\0\0", 4);
    /* A string length past the end. */
    memset(e.p + entry_at, 0xff, 4);
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    memcpy(e.p + entry_at, "\6\0\0\0", 4);

    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_OK);
    kc_free(got);
    kc_free(e.p);

    /* Parameters out of order or repeated: flip "BLOCK" to "ZLOCK", which
     * now sorts after "STAGES". */
    e = encode_build(&b);
    uint8_t *block = memmem(e.p, e.n, "BLOCK", 5);
    assert_non_null(block);
    *block = 'Z';
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    memcpy(block, "STAGE", 5); /* "STAGE" < "STAGES": still ordered */
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_OK);
    kc_free(got);
    kc_free(e.p);

    const kc_param_t two[] = {{"AB", 1}, {"AC", 2}};
    b.params = two, b.n_params = 2;
    e = encode_build(&b);
    uint8_t *ac = memmem(e.p, e.n, "AC", 2);
    ac[1] = 'B'; /* duplicate name */
    assert_int_equal(kc_build_preimage_decode(e.p, e.n, &got), KC_ECORRUPT);
    kc_free(e.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_hash_is_xxh3_128_in_big_endian_order),
        cmocka_unit_test(test_hex_round_trips_and_is_lowercase),
        cmocka_unit_test(test_bad_hex_is_rejected),
        cmocka_unit_test(test_prefix_parse_accepts_8_to_32_digits_only),
        cmocka_unit_test(test_prefix_matches_only_keys_that_start_with_it),
        cmocka_unit_test(test_key_cmp_orders_bytewise_and_zero_is_detected),
        cmocka_unit_test(test_key_find_finds_every_key_of_a_sorted_array),
        cmocka_unit_test(test_source_digest_separates_source_names_and_contents),
        cmocka_unit_test(test_build_preimage_has_the_documented_layout),
        cmocka_unit_test(test_tuning_preimage_has_the_documented_layout),
        cmocka_unit_test(test_params_in_any_order_give_the_same_bytes_and_key),
        cmocka_unit_test(test_moving_a_char_between_adjacent_fields_changes_the_bytes),
        cmocka_unit_test(test_entry_and_option_boundaries_are_not_ambiguous),
        cmocka_unit_test(test_param_name_and_value_swaps_change_the_key),
        cmocka_unit_test(test_each_build_field_changes_the_key),
        cmocka_unit_test(test_each_tuning_field_changes_the_key),
        cmocka_unit_test(test_bad_descriptors_are_einval),
        cmocka_unit_test(test_build_preimage_decodes_every_field),
        cmocka_unit_test(test_tuning_preimage_decodes_every_field),
        cmocka_unit_test(test_every_truncation_of_a_preimage_is_corrupt),
        cmocka_unit_test(test_a_trailing_byte_is_corrupt),
        cmocka_unit_test(test_newer_schema_version_is_eversion_and_version_0_is_corrupt),
        cmocka_unit_test(test_decode_rejects_non_canonical_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
