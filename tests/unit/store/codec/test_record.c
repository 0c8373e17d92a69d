/* Record codec: round trips, and damaged or forged bytes that must be
 * refused cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <xxhash.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "wire.h"

/* ---- sample records ----------------------------------------------------- */

static const uint8_t frame_bytes[] = {0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5, 6, 7};
static const uint8_t build_pre[] = "build preimage bytes\0with a NUL inside";
static const uint8_t tuning_pre[] = "tuning preimage";
static const uint8_t meta_value[] = {0, 1, 2, 0xff, 0};

static const kc_param_t winner[] = {{"BLOCK", 128}, {"WARPS", 4}, {"NEG", -7}};
static const kc_param_t cand0_params[] = {{"BLOCK", 64}, {"WARPS", 2}};
static const kc_param_t cand1_params[] = {{"BLOCK", INT64_MIN}, {"", INT64_MAX}};
static const kc_candidate_t candidates[] = {
    {cand0_params, 2, {{1, 2, 3}}, KC_CAND_OK, 123456, ""},
    {cand1_params, 2, {{0}}, KC_CAND_COMPILE_ERROR, 0, "error: expected ';'"},
    {NULL, 0, {{9, 9}}, KC_CAND_SKIPPED, 0, "constraint"},
    {winner, 3, {{0xaa}}, KC_CAND_RESOURCES, UINT64_MAX, "too many registers"},
};

static const kc_binmeta_arg_t binmeta_args[] = {{"x_ptr", "*fp32"}, {"n", "i32"}};
static const kc_binmeta_spec_t binmeta_spec[] = {{0, KC_SPEC_ALIGN16}};

static const kc_group_entry_t group_files[] = {
    {"add_kernel.cubin", {{1, 2}}, 4096},
    {"add_kernel.json", {{3, 4}}, 0},
};

static kc_key_t key_of(uint8_t seed)
{
    kc_key_t k;
    for (int i = 0; i < 16; i++)
        k.b[i] = (uint8_t)(seed + i * 17);
    return k;
}

static kc_record_t sample(kc_rec_kind_t kind)
{
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    r.version = KC_RECORD_VERSION;
    switch (kind) {
    case KC_REC_BLOB:
        r.u.blob.codec = KC_CODEC_ZSTD;
        r.u.blob.dict_id = 0xdeadbeef;
        r.u.blob.raw_size = UINT64_C(0x0123456789abcdef);
        r.u.blob.frame = (kc_buf_t){frame_bytes, sizeof(frame_bytes)};
        break;
    case KC_REC_BUILD:
        r.u.build.preimage = (kc_buf_t){build_pre, sizeof(build_pre)};
        r.u.build.blob = key_of(3);
        r.u.build.entry = "_Z6matmulPKfS0_Pfi";
        r.u.build.registers = 168;
        r.u.build.static_smem = 49152;
        r.u.build.max_threads = 1024;
        r.u.build.local_bytes = 16;
        r.u.build.compile_us = UINT64_C(0xfedcba9876543210);
        r.u.build.created = 1700000000;
        break;
    case KC_REC_TUNING:
        r.u.tuning.preimage = (kc_buf_t){tuning_pre, sizeof(tuning_pre)};
        r.u.tuning.winner = winner;
        r.u.tuning.n_winner = 3;
        r.u.tuning.winner_build = key_of(7);
        r.u.tuning.candidates = candidates;
        r.u.tuning.n_candidates = 4;
        r.u.tuning.tuning_us = 987654321;
        r.u.tuning.device_name = "NVIDIA H100 80GB HBM3";
        r.u.tuning.arch = "sm_90a";
        r.u.tuning.sm_count = 132;
        r.u.tuning.driver_version = 13000;
        r.u.tuning.created = 1700000001;
        break;
    case KC_REC_USAGE:
        r.u.usage.last_use = 1700000002;
        r.u.usage.uses = UINT64_MAX;
        break;
    case KC_REC_LEASE:
        r.u.lease.host = "gpu-node-17";
        r.u.lease.boot_id = "2f1c6a4e-8d9b-4c3a-9e7f-1a2b3c4d5e6f";
        r.u.lease.pid = 4242;
        r.u.lease.start = UINT64_C(1700000003000);
        r.u.lease.ttl_ms = 600000;
        break;
    case KC_REC_META:
        r.u.meta.value = (kc_buf_t){meta_value, sizeof(meta_value)};
        break;
    case KC_REC_BINMETA:
        r.u.binmeta.build = key_of(11);
        r.u.binmeta.entry = "add_kernel";
        r.u.binmeta.arch = "sm_90a";
        r.u.binmeta.threads_per_block = 128;
        r.u.binmeta.num_warps = 4;
        r.u.binmeta.warp_size = 32;
        r.u.binmeta.num_ctas = 1;
        r.u.binmeta.global_scratch_align = 1;
        r.u.binmeta.profile_scratch_align = 1;
        r.u.binmeta.compiler = "triton";
        r.u.binmeta.compiler_version = "3.6.0";
        r.u.binmeta.args = binmeta_args;
        r.u.binmeta.n_args = 2;
        r.u.binmeta.spec = binmeta_spec;
        r.u.binmeta.n_spec = 1;
        break;
    case KC_REC_GROUP:
        r.u.group.name = "0123abcd";
        r.u.group.created = 1700000004;
        r.u.group.updated = UINT64_MAX;
        r.u.group.files = group_files;
        r.u.group.n_files = 2;
        break;
    }
    return r;
}

typedef struct enc {
    uint8_t *p;
    size_t n;
} enc_t;

static enc_t encode(const kc_record_t *r)
{
    enc_t e = {NULL, 0};
    void *p = NULL;
    assert_int_equal(kc_record_encode(r, &p, &e.n), KC_OK);
    e.p = p;
    return e;
}

/* Recompute the trailer so that a deliberate edit passes the checksum and
 * reaches the decoder's other checks. */
static void reseal(uint8_t *p, size_t n)
{
    kc__store_u64le(p + n - 8, XXH3_64bits(p, n - 8));
}

/* ---- comparisons -------------------------------------------------------- */

static void assert_buf_equal(kc_buf_t a, kc_buf_t b)
{
    assert_int_equal(a.size, b.size);
    if (a.size)
        assert_memory_equal(a.data, b.data, a.size);
}

static void assert_params_equal(const kc_param_t *a, size_t na, const kc_param_t *b,
                                size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i].name, b[i].name);
        assert_true(a[i].value == b[i].value);
    }
}

static void assert_records_equal(const kc_record_t *a, const kc_record_t *b)
{
    assert_int_equal(a->kind, b->kind);
    switch (a->kind) {
    case KC_REC_BLOB:
        assert_int_equal(a->u.blob.codec, b->u.blob.codec);
        assert_int_equal(a->u.blob.dict_id, b->u.blob.dict_id);
        assert_true(a->u.blob.raw_size == b->u.blob.raw_size);
        assert_buf_equal(a->u.blob.frame, b->u.blob.frame);
        break;
    case KC_REC_BUILD: {
        const kc_build_rec_t *x = &a->u.build, *y = &b->u.build;
        assert_buf_equal(x->preimage, y->preimage);
        assert_memory_equal(x->blob.b, y->blob.b, 16);
        assert_string_equal(x->entry, y->entry);
        assert_int_equal(x->registers, y->registers);
        assert_int_equal(x->static_smem, y->static_smem);
        assert_int_equal(x->max_threads, y->max_threads);
        assert_int_equal(x->local_bytes, y->local_bytes);
        assert_true(x->compile_us == y->compile_us);
        assert_true(x->created == y->created);
        break;
    }
    case KC_REC_TUNING: {
        const kc_tuning_rec_t *x = &a->u.tuning, *y = &b->u.tuning;
        assert_buf_equal(x->preimage, y->preimage);
        assert_params_equal(x->winner, x->n_winner, y->winner, y->n_winner);
        assert_memory_equal(x->winner_build.b, y->winner_build.b, 16);
        assert_int_equal(x->n_candidates, y->n_candidates);
        for (size_t i = 0; i < x->n_candidates; i++) {
            const kc_candidate_t *c = &x->candidates[i], *d = &y->candidates[i];
            assert_params_equal(c->params, c->n_params, d->params, d->n_params);
            assert_memory_equal(c->build.b, d->build.b, 16);
            assert_int_equal(c->status, d->status);
            assert_true(c->median_ns == d->median_ns);
            assert_string_equal(c->reason, d->reason);
        }
        assert_true(x->tuning_us == y->tuning_us);
        assert_string_equal(x->device_name, y->device_name);
        assert_string_equal(x->arch, y->arch);
        assert_int_equal(x->sm_count, y->sm_count);
        assert_int_equal(x->driver_version, y->driver_version);
        assert_true(x->created == y->created);
        break;
    }
    case KC_REC_USAGE:
        assert_true(a->u.usage.last_use == b->u.usage.last_use);
        assert_true(a->u.usage.uses == b->u.usage.uses);
        break;
    case KC_REC_LEASE:
        assert_string_equal(a->u.lease.host, b->u.lease.host);
        assert_string_equal(a->u.lease.boot_id, b->u.lease.boot_id);
        assert_int_equal(a->u.lease.pid, b->u.lease.pid);
        assert_true(a->u.lease.start == b->u.lease.start);
        assert_true(a->u.lease.ttl_ms == b->u.lease.ttl_ms);
        break;
    case KC_REC_META:
        assert_buf_equal(a->u.meta.value, b->u.meta.value);
        break;
    case KC_REC_BINMETA: /* every field: tests/unit/store/codec/test_binmeta.c */
        assert_memory_equal(a->u.binmeta.build.b, b->u.binmeta.build.b, 16);
        assert_string_equal(a->u.binmeta.entry, b->u.binmeta.entry);
        assert_string_equal(a->u.binmeta.arch, b->u.binmeta.arch);
        assert_int_equal(a->u.binmeta.n_args, b->u.binmeta.n_args);
        assert_int_equal(a->u.binmeta.n_spec, b->u.binmeta.n_spec);
        break;
    case KC_REC_GROUP: /* every rule: tests/unit/store/codec/test_group.c */
        assert_string_equal(a->u.group.name, b->u.group.name);
        assert_true(a->u.group.created == b->u.group.created);
        assert_true(a->u.group.updated == b->u.group.updated);
        assert_int_equal(a->u.group.n_files, b->u.group.n_files);
        for (size_t i = 0; i < a->u.group.n_files; i++) {
            assert_string_equal(a->u.group.files[i].name, b->u.group.files[i].name);
            assert_memory_equal(a->u.group.files[i].blob.b, b->u.group.files[i].blob.b,
                                16);
            assert_true(a->u.group.files[i].size == b->u.group.files[i].size);
        }
        break;
    }
}

/* Encode, decode, compare, and re-encode to the same bytes. */
static void round_trip(const kc_record_t *r)
{
    enc_t e = encode(r);
    kc_record_t *d = NULL;
    int kind = 0, version = 0;

    assert_int_equal(kc_record_check(e.p, e.n, &kind, &version), KC_OK);
    assert_int_equal(kind, r->kind);
    assert_int_equal(version, KC_RECORD_VERSION);
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_OK);
    assert_int_equal(d->version, KC_RECORD_VERSION);
    assert_records_equal(r, d);

    enc_t again = encode(d);
    assert_int_equal(again.n, e.n);
    assert_memory_equal(again.p, e.p, e.n);
    kc_free(again.p);
    kc_free(d);
    kc_free(e.p);
}

/* ---- tests -------------------------------------------------------------- */

static void test_every_kind_round_trips_with_every_field_set(void **state)
{
    (void)state;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        kc_record_t r = sample((kc_rec_kind_t)k);
        round_trip(&r);
    }
}

static void test_empty_strings_arrays_and_buffers_round_trip(void **state)
{
    (void)state;
    static const kc_param_t unnamed[] = {{"", 0}};
    static const kc_candidate_t bare[] = {{NULL, 0, {{0}}, KC_CAND_LOAD_FAILED, 0, ""},
                                          {unnamed, 1, {{0}}, KC_CAND_OK, 1, ""}};
    kc_record_t r = sample(KC_REC_TUNING);
    r.u.tuning.preimage = (kc_buf_t){NULL, 0};
    r.u.tuning.winner = NULL;
    r.u.tuning.n_winner = 0;
    r.u.tuning.candidates = NULL;
    r.u.tuning.n_candidates = 0;
    r.u.tuning.device_name = "";
    r.u.tuning.arch = "";
    round_trip(&r);

    r.u.tuning.candidates = bare;
    r.u.tuning.n_candidates = 2;
    round_trip(&r);

    r = sample(KC_REC_BUILD);
    r.u.build.preimage = (kc_buf_t){NULL, 0};
    r.u.build.entry = "";
    round_trip(&r);

    r = sample(KC_REC_BLOB);
    r.u.blob.frame = (kc_buf_t){NULL, 0};
    r.u.blob.dict_id = 0;
    r.u.blob.raw_size = 0;
    round_trip(&r);

    r = sample(KC_REC_LEASE);
    r.u.lease.host = "";
    r.u.lease.boot_id = "";
    round_trip(&r);

    r = sample(KC_REC_META);
    r.u.meta.value = (kc_buf_t){NULL, 0};
    round_trip(&r);
}

static void assert_inside(const void *p, const void *block, size_t size)
{
    assert_true((const uint8_t *)p >= (const uint8_t *)block);
    assert_true((const uint8_t *)p <= (const uint8_t *)block + size);
}

static void test_decoded_record_is_one_block_that_outlives_its_input(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_TUNING);
    enc_t e = encode(&r);
    kc_record_t *d = NULL;

    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_OK);
    memset(e.p, 0xa5, e.n);
    kc_free(e.p);

    size_t size = malloc_usable_size(d);
    const kc_tuning_rec_t *t = &d->u.tuning;
    assert_inside(t->preimage.data, d, size);
    assert_inside(t->winner, d, size);
    assert_inside(t->candidates, d, size);
    assert_inside(t->device_name, d, size);
    assert_inside(t->arch, d, size);
    for (size_t i = 0; i < t->n_winner; i++)
        assert_inside(t->winner[i].name, d, size);
    for (size_t i = 0; i < t->n_candidates; i++) {
        assert_inside(t->candidates[i].reason, d, size);
        for (size_t j = 0; j < t->candidates[i].n_params; j++)
            assert_inside(t->candidates[i].params[j].name, d, size);
    }
    assert_records_equal(&r, d);
    kc_free(d);
}

static void test_every_truncation_of_every_kind_is_corrupt(void **state)
{
    (void)state;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        kc_record_t r = sample((kc_rec_kind_t)k);
        enc_t e = encode(&r);
        for (size_t n = 0; n < e.n; n++) {
            /* An exact-size copy, so that a read past the end is caught by
             * sanitizers and not hidden by the rest of the buffer. */
            uint8_t *cut = malloc(n ? n : 1);
            assert_non_null(cut);
            memcpy(cut, e.p, n);
            kc_record_t *d = NULL;
            assert_int_equal(kc_record_check(cut, n, NULL, NULL), KC_ECORRUPT);
            assert_int_equal(kc_record_decode(cut, n, &d), KC_ECORRUPT);
            assert_null(d);
            free(cut);
        }
        kc_free(e.p);
    }
}

static void assert_every_flipped_byte_is_refused(kc_rec_kind_t kind)
{
    static const uint8_t masks[] = {0xff, 0x01};
    kc_record_t r = sample(kind);
    enc_t e = encode(&r);

    for (size_t m = 0; m < sizeof(masks); m++) {
        for (size_t i = 0; i < e.n; i++) {
            e.p[i] ^= masks[m];
            kc_record_t *d = NULL;
            int rc = kc_record_check(e.p, e.n, NULL, NULL);
            assert_true(rc == KC_ECORRUPT || rc == KC_EVERSION);
            rc = kc_record_decode(e.p, e.n, &d);
            assert_true(rc == KC_ECORRUPT || rc == KC_EVERSION);
            assert_null(d);
            e.p[i] ^= masks[m];
        }
    }
    assert_int_equal(kc_record_check(e.p, e.n, NULL, NULL), KC_OK);
    kc_free(e.p);
}

static void test_every_flipped_byte_of_a_build_record_is_refused(void **state)
{
    (void)state;
    assert_every_flipped_byte_is_refused(KC_REC_BUILD);
}

static void test_every_flipped_byte_of_a_tuning_record_is_refused(void **state)
{
    (void)state;
    assert_every_flipped_byte_is_refused(KC_REC_TUNING);
}

/* With the checksum recomputed, damage reaches the payload parser: every
 * result is either a clean error or a record that re-encodes to the very
 * bytes given. */
static void test_resealed_payload_damage_is_refused_or_decodes_faithfully(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_TUNING);
    enc_t e = encode(&r);
    size_t corrupt = 0;

    for (size_t i = KC_RECORD_HEADER_SIZE; i < e.n - 8; i++) {
        uint8_t *p = malloc(e.n);
        assert_non_null(p);
        memcpy(p, e.p, e.n);
        p[i] ^= 0xff;
        reseal(p, e.n);
        kc_record_t *d = NULL;
        int rc = kc_record_decode(p, e.n, &d);
        if (rc == KC_OK) {
            enc_t again = encode(d);
            assert_int_equal(again.n, e.n);
            assert_memory_equal(again.p, p, e.n);
            kc_free(again.p);
            kc_free(d);
        } else {
            assert_int_equal(rc, KC_ECORRUPT);
            corrupt++;
        }
        free(p);
    }
    /* Length prefixes and counts were hit, so some must have failed. */
    assert_true(corrupt > 0);
    kc_free(e.p);
}

static void test_newer_version_with_valid_checksum_is_eversion(void **state)
{
    (void)state;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        kc_record_t r = sample((kc_rec_kind_t)k);
        enc_t e = encode(&r);
        kc_record_t *d = NULL;
        e.p[5] = KC_RECORD_VERSION + 1;
        reseal(e.p, e.n);
        assert_int_equal(kc_record_check(e.p, e.n, NULL, NULL), KC_EVERSION);
        assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_EVERSION);
        assert_null(d);
        e.p[5] = 0xff;
        reseal(e.p, e.n);
        assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_EVERSION);
        kc_free(e.p);
    }
}

static void test_bad_header_fields_with_valid_checksum_are_corrupt(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_USAGE);
    enc_t e = encode(&r);
    uint8_t *p = malloc(e.n);
    assert_non_null(p);

    struct {
        size_t off;
        uint8_t value;
    } edits[] = {
        {5, 0},    /* version 0 */
        {6, 1},    /* reserved */
        {7, 0x80}, /* reserved */
        {4, 0},    /* kind 0 */
        {4, KC_REC_KIND_MAX + 1},
        {4, 0xff},
        {0, 'k'}, /* magic */
        {3, '!'}, /* magic's NUL */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(p, e.p, e.n);
        p[edits[i].off] = edits[i].value;
        reseal(p, e.n);
        kc_record_t *d = NULL;
        assert_int_equal(kc_record_check(p, e.n, NULL, NULL), KC_ECORRUPT);
        assert_int_equal(kc_record_decode(p, e.n, &d), KC_ECORRUPT);
    }
    free(p);
    kc_free(e.p);
}

static void test_payload_length_must_match_the_record_size(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_LEASE);
    enc_t e = encode(&r);
    uint8_t *p = malloc(e.n + 1);
    assert_non_null(p);

    /* One byte more than the header says, resealed over everything. */
    memcpy(p, e.p, e.n);
    p[e.n] = 0;
    reseal(p, e.n + 1);
    assert_int_equal(kc_record_check(p, e.n + 1, NULL, NULL), KC_ECORRUPT);

    uint32_t len = kc__load_u32le(e.p + 8);
    memcpy(p, e.p, e.n);
    kc__store_u32le(p + 8, len + 1);
    reseal(p, e.n);
    assert_int_equal(kc_record_check(p, e.n, NULL, NULL), KC_ECORRUPT);
    kc__store_u32le(p + 8, UINT32_MAX);
    reseal(p, e.n);
    assert_int_equal(kc_record_check(p, e.n, NULL, NULL), KC_ECORRUPT);
    free(p);
    kc_free(e.p);
}

/* Splice an extra byte into the end of the payload, fixing the length and
 * the checksum: the header is consistent, but the payload has bytes its kind
 * does not account for. */
static void test_trailing_payload_bytes_are_corrupt(void **state)
{
    (void)state;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        kc_record_t r = sample((kc_rec_kind_t)k);
        enc_t e = encode(&r);
        size_t n = e.n + 1;
        uint8_t *p = malloc(n);
        assert_non_null(p);
        memcpy(p, e.p, e.n - 8);
        p[e.n - 8] = 0;
        kc__store_u32le(p + 8, kc__load_u32le(e.p + 8) + 1);
        reseal(p, n);
        kc_record_t *d = NULL;
        assert_int_equal(kc_record_check(p, n, NULL, NULL), KC_OK);
        assert_int_equal(kc_record_decode(p, n, &d), KC_ECORRUPT);
        assert_null(d);
        free(p);
        kc_free(e.p);
    }
}

static void test_string_with_embedded_nul_is_corrupt(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_LEASE);
    r.u.lease.host = "ab";
    enc_t e = encode(&r);
    kc_record_t *d = NULL;

    /* host is the payload's first field: u32 length 2, then "ab". */
    assert_int_equal(kc__load_u32le(e.p + 12), 2);
    assert_int_equal(e.p[17], 'b');
    e.p[17] = '\0';
    reseal(e.p, e.n);
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    assert_null(d);
    kc_free(e.p);
}

/* Offset of the candidate count in an encoded tuning record. */
static size_t candidate_count_offset(const kc_record_t *r)
{
    assert_int_equal(r->u.tuning.n_winner, 0);
    return KC_RECORD_HEADER_SIZE + 4 + r->u.tuning.preimage.size + 4 + 16;
}

static void test_forged_huge_candidate_count_is_corrupt(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_TUNING);
    r.u.tuning.winner = NULL;
    r.u.tuning.n_winner = 0;
    enc_t e = encode(&r);
    size_t off = candidate_count_offset(&r);
    kc_record_t *d = NULL;

    assert_int_equal(kc__load_u32le(e.p + off), r.u.tuning.n_candidates);
    /* 2^32-1 candidates of at least 33 bytes each cannot fit: refused before
     * anything is reserved for them (an attempt would be 240 GB and fail
     * with KC_ENOMEM, not KC_ECORRUPT). */
    kc__store_u32le(e.p + off, UINT32_MAX);
    reseal(e.p, e.n);
    assert_int_equal(kc_record_check(e.p, e.n, NULL, NULL), KC_OK);
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    assert_null(d);

    /* So is one more candidate than the record holds. */
    kc__store_u32le(e.p + off, (uint32_t)r.u.tuning.n_candidates + 1);
    reseal(e.p, e.n);
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    kc_free(e.p);
}

static void test_forged_huge_parameter_count_is_corrupt(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_TUNING);
    enc_t e = encode(&r);
    size_t off = KC_RECORD_HEADER_SIZE + 4 + r.u.tuning.preimage.size;
    kc_record_t *d = NULL;

    assert_int_equal(kc__load_u32le(e.p + off), r.u.tuning.n_winner);
    kc__store_u32le(e.p + off, UINT32_MAX);
    reseal(e.p, e.n);
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    assert_null(d);
    kc_free(e.p);
}

static void test_unknown_candidate_status_is_refused(void **state)
{
    (void)state;
    static const kc_candidate_t odd[] = {{NULL, 0, {{0}}, KC_CAND_SKIPPED + 1, 0, ""}};
    kc_record_t r = sample(KC_REC_TUNING);
    void *p = NULL;
    size_t n = 0;

    r.u.tuning.candidates = odd;
    r.u.tuning.n_candidates = 1;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    assert_null(p);

    /* Forge it: encode a valid status, then patch the byte. */
    static const kc_candidate_t ok[] = {{NULL, 0, {{0}}, KC_CAND_SKIPPED, 0, ""}};
    r.u.tuning.winner = NULL;
    r.u.tuning.n_winner = 0;
    r.u.tuning.candidates = ok;
    enc_t e = encode(&r);
    size_t status_off = candidate_count_offset(&r) + 4 + 4 + 16;
    assert_int_equal(e.p[status_off], KC_CAND_SKIPPED);
    e.p[status_off] = KC_CAND_SKIPPED + 1;
    reseal(e.p, e.n);
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    kc_free(e.p);
}

static void test_blob_codec_other_than_zstd_is_refused(void **state)
{
    (void)state;
    kc_record_t r = sample(KC_REC_BLOB);
    void *p = NULL;
    size_t n = 0;

    r.u.blob.codec = 2;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);

    r.u.blob.codec = KC_CODEC_ZSTD;
    enc_t e = encode(&r);
    assert_int_equal(e.p[KC_RECORD_HEADER_SIZE], KC_CODEC_ZSTD);
    e.p[KC_RECORD_HEADER_SIZE] = 0;
    reseal(e.p, e.n);
    kc_record_t *d = NULL;
    assert_int_equal(kc_record_decode(e.p, e.n, &d), KC_ECORRUPT);
    kc_free(e.p);
}

static void test_encode_refuses_null_fields_and_unknown_kinds(void **state)
{
    (void)state;
    void *p = NULL;
    size_t n = 0;
    kc_record_t r;

    r = sample(KC_REC_BUILD);
    r.u.build.entry = NULL;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r = sample(KC_REC_BUILD);
    r.u.build.preimage = (kc_buf_t){NULL, 4};
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r = sample(KC_REC_TUNING);
    r.u.tuning.candidates = NULL;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r = sample(KC_REC_TUNING);
    r.u.tuning.arch = NULL;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r = sample(KC_REC_LEASE);
    r.u.lease.boot_id = NULL;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r = sample(KC_REC_USAGE);
    r.kind = (kc_rec_kind_t)0;
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    r.kind = (kc_rec_kind_t)(KC_REC_KIND_MAX + 1);
    assert_int_equal(kc_record_encode(&r, &p, &n), KC_EINVAL);
    assert_null(p);
    assert_int_equal(n, 0);
}

static void test_usage_record_bytes_are_as_specified(void **state)
{
    (void)state;
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_USAGE;
    r.u.usage.last_use = 0x0102030405060708;
    r.u.usage.uses = 3;
    enc_t e = encode(&r);
    static const uint8_t head[] = {'K', 'C', 'R', 0,  KC_REC_USAGE,
                                   1,   0,   0,   16, 0,
                                   0,   0,   8,   7,  6,
                                   5,   4,   3,   2,  1,
                                   3,   0,   0,   0,  0,
                                   0,   0,   0};

    assert_int_equal(e.n, sizeof(head) + 8);
    assert_memory_equal(e.p, head, sizeof(head));
    assert_true(kc__load_u64le(e.p + sizeof(head)) == XXH3_64bits(head, sizeof(head)));
    kc_free(e.p);
}

static void test_derived_key_is_the_hash_of_the_preimage(void **state)
{
    (void)state;
    kc_key_t k;
    kc_record_t r = sample(KC_REC_BUILD);
    kc_key_t want = kc_key_hash(build_pre, sizeof(build_pre));

    assert_int_equal(kc_record_derived_key(&r, &k), KC_OK);
    assert_memory_equal(k.b, want.b, 16);

    r = sample(KC_REC_TUNING);
    want = kc_key_hash(tuning_pre, sizeof(tuning_pre));
    assert_int_equal(kc_record_derived_key(&r, &k), KC_OK);
    assert_memory_equal(k.b, want.b, 16);

    r.u.tuning.preimage.size--;
    assert_int_equal(kc_record_derived_key(&r, &k), KC_OK);
    assert_memory_not_equal(k.b, want.b, 16);

    /* A binmeta's key is the build key it carries. */
    r = sample(KC_REC_BINMETA);
    want = key_of(11);
    assert_int_equal(kc_record_derived_key(&r, &k), KC_OK);
    assert_memory_equal(k.b, want.b, 16);

    /* A group's key is the hash of its name. */
    r = sample(KC_REC_GROUP);
    want = kc_key_hash("0123abcd", 8);
    assert_int_equal(kc_record_derived_key(&r, &k), KC_OK);
    assert_memory_equal(k.b, want.b, 16);

    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        if (kind == KC_REC_BUILD || kind == KC_REC_TUNING || kind == KC_REC_BINMETA ||
            kind == KC_REC_GROUP)
            continue;
        r = sample((kc_rec_kind_t)kind);
        assert_int_equal(kc_record_derived_key(&r, &k), KC_EINVAL);
    }
}

static void test_kind_and_status_names_round_trip(void **state)
{
    (void)state;
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        const char *name = kc_rec_kind_name(k);
        assert_non_null(name);
        assert_int_equal(kc_rec_kind_from_name(name), k);
    }
    assert_string_equal(kc_rec_kind_name(KC_REC_TUNING), "tuning");
    assert_null(kc_rec_kind_name(0));
    assert_null(kc_rec_kind_name(KC_REC_KIND_MAX + 1));
    assert_int_equal(kc_rec_kind_from_name("blobs"), 0);
    assert_int_equal(kc_rec_kind_from_name(""), 0);
    assert_int_equal(kc_rec_kind_from_name(NULL), 0);

    for (int s = KC_CAND_OK; s <= KC_CAND_SKIPPED; s++)
        assert_non_null(kc_cand_status_name(s));
    assert_string_equal(kc_cand_status_name(KC_CAND_OK), "ok");
    assert_null(kc_cand_status_name(-1));
    assert_null(kc_cand_status_name(KC_CAND_SKIPPED + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_round_trips_with_every_field_set),
        cmocka_unit_test(test_empty_strings_arrays_and_buffers_round_trip),
        cmocka_unit_test(test_decoded_record_is_one_block_that_outlives_its_input),
        cmocka_unit_test(test_every_truncation_of_every_kind_is_corrupt),
        cmocka_unit_test(test_every_flipped_byte_of_a_build_record_is_refused),
        cmocka_unit_test(test_every_flipped_byte_of_a_tuning_record_is_refused),
        cmocka_unit_test(test_resealed_payload_damage_is_refused_or_decodes_faithfully),
        cmocka_unit_test(test_newer_version_with_valid_checksum_is_eversion),
        cmocka_unit_test(test_bad_header_fields_with_valid_checksum_are_corrupt),
        cmocka_unit_test(test_payload_length_must_match_the_record_size),
        cmocka_unit_test(test_trailing_payload_bytes_are_corrupt),
        cmocka_unit_test(test_string_with_embedded_nul_is_corrupt),
        cmocka_unit_test(test_forged_huge_candidate_count_is_corrupt),
        cmocka_unit_test(test_forged_huge_parameter_count_is_corrupt),
        cmocka_unit_test(test_unknown_candidate_status_is_refused),
        cmocka_unit_test(test_blob_codec_other_than_zstd_is_refused),
        cmocka_unit_test(test_encode_refuses_null_fields_and_unknown_kinds),
        cmocka_unit_test(test_usage_record_bytes_are_as_specified),
        cmocka_unit_test(test_derived_key_is_the_hash_of_the_preimage),
        cmocka_unit_test(test_kind_and_status_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
