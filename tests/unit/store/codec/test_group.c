/* The group record (kind 8): a round trip, the exact bytes of FORMAT.md's
 * example, every rule the encoder refuses and the decoder refuses when a
 * record breaking it is written anyway, forged counts, and cut or damaged
 * bytes. A writer here lays the payload out from docs/FORMAT.md without
 * the codec's checks, so that invalid records can be made. */
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
#include "kcache/record.h"
#include "wire.h"

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes_t;

static kc_group_entry_t files3[] = {
    {"add_kernel.cubin", {{0x11}}, 5000},
    {"add_kernel.json", {{0x22}}, 0},
    {"add_kernel.ptx", {{0x33}}, 12},
};

static kc_group_rec_t sample(void)
{
    return (kc_group_rec_t){"9f3c2e", 1700000000, 1700000100, files3, 3};
}

/* The record as docs/FORMAT.md lays it out, whatever the fields hold; count
 * is written as given. */
static bytes_t raw_encode_n(const kc_group_rec_t *g, uint32_t count)
{
    kc__wbuf_t w;
    bytes_t out;
    void *p;
    size_t n;

    kc__wbuf_init(&w);
    kc__w_bytes(&w, "KCR", 4);
    kc__w_u8(&w, KC_REC_GROUP);
    kc__w_u8(&w, 1);
    kc__w_u16(&w, 0);
    kc__w_u32(&w, 0);
    kc__w_str(&w, g->name);
    kc__w_u64(&w, g->created);
    kc__w_u64(&w, g->updated);
    kc__w_u32(&w, count);
    for (size_t i = 0; i < g->n_files; i++) {
        kc__w_str(&w, g->files[i].name);
        kc__w_bytes(&w, g->files[i].blob.b, 16);
        kc__w_u64(&w, g->files[i].size);
    }
    kc__w_u64(&w, 0);
    assert_int_equal(kc__wbuf_finish(&w, &p, &n), KC_OK);
    out.p = p;
    out.n = n;
    kc__store_u32le(out.p + 8, (uint32_t)(n - 20));
    kc__store_u64le(out.p + n - 8, XXH3_64bits(out.p, n - 8));
    return out;
}

static bytes_t raw_encode(const kc_group_rec_t *g)
{
    return raw_encode_n(g, (uint32_t)g->n_files);
}

static int encode_rc(const kc_group_rec_t *g)
{
    kc_record_t r = {.kind = KC_REC_GROUP, .version = 1};
    void *p = NULL;
    size_t n = 0;
    r.u.group = *g;
    int rc = kc_record_encode(&r, &p, &n);
    kc_free(p);
    return rc;
}

static int decode_rc(const kc_group_rec_t *g)
{
    bytes_t b = raw_encode(g);
    kc_record_t *d = NULL;
    int rc = kc_record_decode(b.p, b.n, &d);
    if (rc != KC_OK)
        assert_null(d);
    kc_free(d);
    free(b.p);
    return rc;
}

/* Both directions refuse g. */
static void assert_refused(const kc_group_rec_t *g)
{
    assert_int_equal(encode_rc(g), KC_EINVAL);
    assert_int_equal(decode_rc(g), KC_ECORRUPT);
}

static void test_a_group_round_trips_to_the_same_bytes(void **state)
{
    (void)state;
    kc_group_rec_t g = sample();
    kc_record_t r = {.kind = KC_REC_GROUP, .version = 1}, *d = NULL;
    void *p = NULL;
    size_t n = 0;
    r.u.group = g;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_OK);
    bytes_t raw = raw_encode(&g);
    assert_int_equal(n, raw.n);
    assert_memory_equal(p, raw.p, n);
    assert_int_equal(kc_record_decode(p, n, &d), KC_OK);
    assert_int_equal(d->kind, KC_REC_GROUP);
    assert_string_equal(d->u.group.name, "9f3c2e");
    assert_true(d->u.group.created == 1700000000);
    assert_true(d->u.group.updated == 1700000100);
    assert_int_equal(d->u.group.n_files, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(d->u.group.files[i].name, files3[i].name);
        assert_memory_equal(d->u.group.files[i].blob.b, files3[i].blob.b, 16);
        assert_true(d->u.group.files[i].size == files3[i].size);
    }
    kc_key_t k, want;
    assert_int_equal(kc_record_derived_key(d, &k), KC_OK);
    assert_int_equal(kc_group_key("9f3c2e", &want), KC_OK);
    assert_memory_equal(k.b, want.b, 16);
    kc_free(d);
    kc_free(p);
    free(raw.p);
}

/* The example of docs/FORMAT.md, "group (kind 8)", byte by byte. */
static void test_the_format_example_is_exact(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x4b, 0x43, 0x52, 0x00, 0x08, 0x01, 0x00, 0x00, 0x3b, 0x00, 0x00, 0x00, /* hdr */
        0x02, 0x00, 0x00, 0x00, 'k',  '1',                                      /* name */
        0x80, 0x85, 0x74, 0x67, 0x00, 0x00, 0x00, 0x00,      /* created */
        0x81, 0x85, 0x74, 0x67, 0x00, 0x00, 0x00, 0x00,      /* updated */
        0x01, 0x00, 0x00, 0x00,                              /* 1 file */
        0x05, 0x00, 0x00, 0x00, 'a',  '.',  'p',  't',  'x', /* fname */
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
        0xaa, 0xaa, 0xaa, 0xaa,                         /* blob */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* size */
    };
    kc_group_entry_t f = {"a.ptx", {{0}}, 3};
    memset(f.blob.b, 0xaa, 16);
    kc_record_t r = {.kind = KC_REC_GROUP, .version = 1};
    r.u.group = (kc_group_rec_t){"k1", 1735689600, 1735689601, &f, 1};
    void *p = NULL;
    size_t n = 0;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_OK);
    assert_int_equal(n, sizeof(want) + 8);
    assert_memory_equal(p, want, sizeof(want));
    assert_true(kc__load_u64le((uint8_t *)p + sizeof(want)) ==
                XXH3_64bits(want, sizeof(want)));
    kc_free(p);
}

static void test_an_empty_group_is_valid(void **state)
{
    (void)state;
    kc_group_rec_t g = {"g", 0, 0, NULL, 0};
    assert_int_equal(encode_rc(&g), KC_OK);
    assert_int_equal(decode_rc(&g), KC_OK);
}

static void test_group_names_are_bounded(void **state)
{
    (void)state;
    char name[KC_GROUP_NAME_MAX + 2];
    memset(name, 'n', sizeof(name));
    name[KC_GROUP_NAME_MAX] = '\0';
    kc_group_rec_t g = {name, 0, 0, NULL, 0};
    kc_key_t k;
    assert_int_equal(encode_rc(&g), KC_OK);
    assert_int_equal(decode_rc(&g), KC_OK);
    assert_int_equal(kc_group_key(name, &k), KC_OK);
    name[KC_GROUP_NAME_MAX] = 'n';
    name[KC_GROUP_NAME_MAX + 1] = '\0';
    assert_refused(&g);
    assert_int_equal(kc_group_key(name, &k), KC_EINVAL);
    g.name = "";
    assert_refused(&g);
    assert_int_equal(kc_group_key("", &k), KC_EINVAL);
    assert_int_equal(kc_group_key(NULL, &k), KC_EINVAL);
}

static void test_every_bad_file_name_is_refused(void **state)
{
    (void)state;
    char longest[KC_GROUP_FNAME_MAX + 2];
    memset(longest, 'f', sizeof(longest));
    longest[KC_GROUP_FNAME_MAX] = '\0';
    kc_group_entry_t f = {longest, {{0}}, 0};
    kc_group_rec_t g = {"g", 0, 0, &f, 1};
    assert_int_equal(encode_rc(&g), KC_OK);
    assert_int_equal(decode_rc(&g), KC_OK);

    static const char *const bad[] = {"", ".", "..", "a/b", "/", "dir/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        f.name = bad[i];
        assert_refused(&g);
    }
    longest[KC_GROUP_FNAME_MAX] = 'f';
    longest[KC_GROUP_FNAME_MAX + 1] = '\0';
    f.name = longest;
    assert_refused(&g);
    /* Names that only look like those are fine. */
    static const char *const good[] = {"...", ".a", "a.", "__grp__k.json"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        f.name = good[i];
        assert_int_equal(encode_rc(&g), KC_OK);
        assert_int_equal(decode_rc(&g), KC_OK);
    }
}

static void test_files_must_be_sorted_and_unique(void **state)
{
    (void)state;
    kc_group_entry_t f[2] = {{"b", {{0}}, 0}, {"a", {{0}}, 0}};
    kc_group_rec_t g = {"g", 0, 0, f, 2};
    assert_refused(&g);
    f[1].name = "b";
    assert_refused(&g);
    /* A prefix sorts first; bytes compare unsigned. */
    f[0].name = "a";
    f[1].name = "a.json";
    assert_int_equal(decode_rc(&g), KC_OK);
    f[0].name = "z";
    f[1].name = "\xc3\xa9";
    assert_int_equal(encode_rc(&g), KC_OK);
    assert_int_equal(decode_rc(&g), KC_OK);
}

static void test_file_counts_are_bounded(void **state)
{
    (void)state;
    size_t n = KC_GROUP_FILES_MAX + 1;
    kc_group_entry_t *f = calloc(n, sizeof(*f));
    char(*names)[8] = calloc(n, 8);
    assert_non_null(f);
    assert_non_null(names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 8, "%05zu", i);
        f[i].name = names[i];
    }
    kc_group_rec_t g = {"g", 0, 0, f, KC_GROUP_FILES_MAX};
    assert_int_equal(encode_rc(&g), KC_OK);
    assert_int_equal(decode_rc(&g), KC_OK);
    g.n_files = n;
    assert_refused(&g);
    free(names);
    free(f);

    /* A count beyond what the bytes left can hold is refused before
     * anything is allocated. */
    kc_group_rec_t s = sample();
    bytes_t b = raw_encode_n(&s, 4);
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_decode(b.p, b.n, &d), KC_ECORRUPT);
    free(b.p);
    s.n_files = 0;
    b = raw_encode_n(&s, UINT32_MAX);
    assert_int_equal(kc_record_decode(b.p, b.n, &d), KC_ECORRUPT);
    assert_null(d);
    free(b.p);
}

static void test_nul_bytes_and_trailing_bytes_are_corrupt(void **state)
{
    (void)state;
    kc_group_rec_t g = sample();
    bytes_t b = raw_encode(&g);
    kc_record_t *d = NULL;
    /* "9f3c2e" starts at byte 16: a NUL inside. */
    b.p[17] = 0;
    kc__store_u64le(b.p + b.n - 8, XXH3_64bits(b.p, b.n - 8));
    assert_int_equal(kc_record_decode(b.p, b.n, &d), KC_ECORRUPT);
    free(b.p);

    /* One byte more in the payload. */
    b = raw_encode(&g);
    uint8_t *p = malloc(b.n + 1);
    assert_non_null(p);
    memcpy(p, b.p, b.n - 8);
    p[b.n - 8] = 0;
    kc__store_u32le(p + 8, (uint32_t)(b.n - 20 + 1));
    kc__store_u64le(p + b.n - 7, XXH3_64bits(p, b.n - 7));
    assert_int_equal(kc_record_check(p, b.n + 1, NULL, NULL), KC_OK);
    assert_int_equal(kc_record_decode(p, b.n + 1, &d), KC_ECORRUPT);
    free(p);
    free(b.p);
}

static void test_every_truncation_and_flip_is_refused_cleanly(void **state)
{
    (void)state;
    kc_group_rec_t g = sample();
    bytes_t b = raw_encode(&g);
    kc_record_t *d = NULL;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, b.p, n);
        assert_int_equal(kc_record_decode(cut, n, &d), KC_ECORRUPT);
        free(cut);
    }
    /* A flipped payload byte, resealed: refused, or canonical if it still
     * decodes. */
    for (size_t i = 12; i < b.n - 8; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *p = malloc(b.n);
            memcpy(p, b.p, b.n);
            p[i] ^= (uint8_t)(1u << bit);
            kc__store_u64le(p + b.n - 8, XXH3_64bits(p, b.n - 8));
            if (kc_record_decode(p, b.n, &d) == KC_OK) {
                void *again = NULL;
                size_t n = 0;
                assert_int_equal(kc_record_encode(d, &again, &n), KC_OK);
                assert_int_equal(n, b.n);
                assert_memory_equal(again, p, n);
                kc_free(again);
                kc_free(d);
            }
            free(p);
        }
    }
    free(b.p);
}

static void test_the_encoder_refuses_null_fields(void **state)
{
    (void)state;
    kc_group_rec_t g = sample();
    g.files = NULL;
    assert_int_equal(encode_rc(&g), KC_EINVAL);
    g = sample();
    g.name = NULL;
    assert_int_equal(encode_rc(&g), KC_EINVAL);
    kc_group_entry_t f = {NULL, {{0}}, 0};
    g = (kc_group_rec_t){"g", 0, 0, &f, 1};
    assert_int_equal(encode_rc(&g), KC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_group_round_trips_to_the_same_bytes),
        cmocka_unit_test(test_the_format_example_is_exact),
        cmocka_unit_test(test_an_empty_group_is_valid),
        cmocka_unit_test(test_group_names_are_bounded),
        cmocka_unit_test(test_every_bad_file_name_is_refused),
        cmocka_unit_test(test_files_must_be_sorted_and_unique),
        cmocka_unit_test(test_file_counts_are_bounded),
        cmocka_unit_test(test_nul_bytes_and_trailing_bytes_are_corrupt),
        cmocka_unit_test(test_every_truncation_and_flip_is_refused_cleanly),
        cmocka_unit_test(test_the_encoder_refuses_null_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
