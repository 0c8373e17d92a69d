/* Signed bundles: key files, a signed export that imports under its
 * trusted key, and every way a signed bundle can be damaged or forged
 * (each byte flipped, the signature re-checksummed, the signature block
 * cut off or stripped together with the header flag, an unsigned bundle or
 * another key's) refused with nothing imported. The store holds real
 * NVRTC-compiled cubins. */
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

#include <sodium.h>

#include "kc_testutil.h"
#include "bundle_internal.h"
#include "kcache/bundle.h"
#include "kcache/shape.h"
#include "kcache/store.h"
#include "nvrtc_dl.h"
#include "wire.h"

/* ---- real cubins, compiled once ------------------------------------------------ */

static const char saxpy_src[] =
    "extern \"C\" __global__ void saxpy(float a, const float *x, float *y, int n)\n"
    "{\n"
    "    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
    "         i += blockDim.x * gridDim.x)\n"
    "        y[i] = a * x[i] + y[i];\n"
    "}\n";

static const char *const user_opts[] = {"-lineinfo"};
static const char *const archs[2] = {"sm_80", "sm_90"};

typedef struct kbuild {
    void *cubin;
    size_t cubin_len;
    void *pre;
    size_t pre_len;
    kc_build_rec_t rec;
} kbuild_t;

static kbuild_t builds[2];
static char toolchain[32];
/* A tuning of saxpy on sm_90, won by builds[1]. */
static void *tuning_pre;
static size_t tuning_pre_len;
static kc_candidate_t tuning_cand;
static kc_tuning_rec_t tuning;

static int compile_all(void **state)
{
    kct_nvrtc_t nv;
    char err[8192], arch_opt[64];
    uint8_t sig[64];
    size_t sig_len;

    (void)state;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0) {
        fprintf(stderr, "NVRTC: %s\n", err);
        return -1;
    }
    snprintf(toolchain, sizeof(toolchain), "nvrtc-%d.%d", nv.major, nv.minor);
    for (int i = 0; i < 2; i++) {
        kbuild_t *b = &builds[i];
        const char *opts[2] = {arch_opt, user_opts[0]};

        snprintf(arch_opt, sizeof(arch_opt), "--gpu-architecture=%s", archs[i]);
        if (kct_nvrtc_compile(&nv, saxpy_src, "saxpy", opts, 2, &b->cubin, &b->cubin_len,
                              err, sizeof(err)) != 0) {
            fprintf(stderr, "compile saxpy: %s\n", err);
            return -1;
        }
        kc_build_desc_t d = {
            .source_kind = KC_SOURCE_CUDA,
            .source_digest = kc_source_digest(saxpy_src, strlen(saxpy_src), NULL, 0),
            .entry = "saxpy",
            .options = user_opts,
            .n_options = 1,
            .arch = archs[i],
            .toolchain = toolchain,
        };
        if (kc_build_preimage_encode(&d, &b->pre, &b->pre_len) != KC_OK)
            return -1;
        b->rec = (kc_build_rec_t){
            .preimage = {b->pre, b->pre_len},
            .blob = kc_key_hash(b->cubin, b->cubin_len),
            .entry = "saxpy",
            .registers = 16,
            .max_threads = 1024,
            .compile_us = 120000,
            .created = 1700000000,
        };
    }
    kct_nvrtc_unload(&nv);

    int64_t dims[1] = {1 << 20};
    kc_argdesc_t args[2] = {
        {.kind = KC_ARG_POINTER, .dtype = KC_DTYPE_F32, .rank = 1, .dims = dims},
        {.kind = KC_ARG_SCALAR, .dtype = KC_DTYPE_I32, .value.i = 1 << 20},
    };
    if (kc_shape_sig_encode(args, 2, KC_DIMS_POW2, sig, sizeof(sig), &sig_len) != KC_OK)
        return -1;
    kc_tuning_desc_t td = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_source_digest(saxpy_src, strlen(saxpy_src), NULL, 0),
        .entry = "saxpy",
        .options = user_opts,
        .n_options = 1,
        .space_digest = kc_key_hash("none", 4),
        .shape_sig = {sig, sig_len},
        .arch = "sm_90",
        .sm_count = 132,
        .device_name = "NVIDIA H100 80GB HBM3",
    };
    if (kc_tuning_preimage_encode(&td, &tuning_pre, &tuning_pre_len) != KC_OK)
        return -1;
    tuning_cand = (kc_candidate_t){
        .build = kc_key_hash(builds[1].pre, builds[1].pre_len),
        .status = KC_CAND_OK,
        .median_ns = 9000,
        .reason = "",
    };
    tuning = (kc_tuning_rec_t){
        .preimage = {tuning_pre, tuning_pre_len},
        .winner_build = tuning_cand.build,
        .candidates = &tuning_cand,
        .n_candidates = 1,
        .tuning_us = 250000,
        .device_name = td.device_name,
        .arch = "sm_90",
        .sm_count = 132,
        .driver_version = 13000,
        .created = 1700005000,
    };
    return 0;
}

static int free_all(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        free(builds[i].cubin);
        kc_free(builds[i].pre);
    }
    kc_free(tuning_pre);
    return 0;
}

#define N_RECORDS 5 /* two blobs, two builds, one tuning */

/* ---- scratch stores and keys ---------------------------------------------------- */

typedef struct fixture {
    char root[512];
    char path[2][600];
    char key_base[2][600]; /* <root>/a, <root>/b: key pairs from keygen */
    kc_store_t *st[2];     /* a filled source, an empty target */
    kc_bundle_key_t key[2];
    kc_bundle_key_t pub[2]; /* the public halves, loaded from the .pub files */
    char *bundle;
    size_t bundle_len;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_tmpdir("test_bundle_sign", f->root, sizeof(f->root)) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        char pub[620];
        snprintf(f->path[i], sizeof(f->path[i]), "%s/store%d", f->root, i);
        if (kc_store_open(f->path[i], NULL, &f->st[i]) != KC_OK)
            return -1;
        snprintf(f->key_base[i], sizeof(f->key_base[i]), "%s/%c", f->root, 'a' + i);
        if (kc_bundle_keygen(f->key_base[i], &f->key[i]) != KC_OK)
            return -1;
        snprintf(pub, sizeof(pub), "%s.pub", f->key_base[i]);
        if (kc_bundle_key_load(pub, &f->pub[i]) != KC_OK)
            return -1;
    }
    kc_buf_t cubins[2] = {{builds[0].cubin, builds[0].cubin_len},
                          {builds[1].cubin, builds[1].cubin_len}};
    kc_build_rec_t recs[2] = {builds[0].rec, builds[1].rec};
    kc_publish_t pub = {cubins, 2, recs, 2, &tuning, NULL, 0};
    if (kc_store_publish(f->st[0], &pub) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    for (int i = 0; i < 2; i++) {
        kc_store_close(f->st[i]);
        kc_bundle_key_wipe(&f->key[i]);
    }
    kct_rmtree(f->root, 0);
    free(f->bundle);
    free(f);
    return 0;
}

/* Export the source store, signed with key (NULL: unsigned), to f->bundle. */
static void export_signed(fixture_t *f, const kc_bundle_key_t *key, kc_bundle_stats_t *s)
{
    FILE *m;

    free(f->bundle);
    f->bundle = NULL;
    m = open_memstream(&f->bundle, &f->bundle_len);
    assert_non_null(m);
    assert_int_equal(kc_bundle_export_signed(f->st[0], NULL, key, m, s), KC_OK);
    assert_int_equal(fclose(m), 0);
}

static int import(fixture_t *f, const void *data, size_t len,
                  const kc_bundle_key_t *trust, kc_bundle_stats_t *s)
{
    kc_bundle_import_opts_t o = {
        .size = sizeof(kc_bundle_import_opts_t), .name = "signed.kcb", .trust = trust};
    return kc_bundle_import_mem(f->st[1], data, len, &o, s);
}

/* Blobs, builds and tunings in the target store. */
static uint64_t target_records(fixture_t *f)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(f->st[1], &s), KC_OK);
    return s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] + s.records[KC_REC_TUNING];
}

static int msg_has(fixture_t *f, const char *what)
{
    const char *m = kc_store_errmsg(f->st[1]);
    if (!m || !strstr(m, what)) {
        print_error("message \"%s\" lacks \"%s\"\n", m ? m : "(null)", what);
        return 0;
    }
    return 1;
}

/* The header's length: its fixed part, the producer and the checksum. */
static size_t header_len(const uint8_t *p)
{
    return KC__BUNDLE_HEAD_FIXED + kc__load_u32le(p + 16) + KC__BUNDLE_CHECKSUM;
}

/* ---- round trips ------------------------------------------------------------------- */

static void test_a_signed_bundle_imports_under_its_trusted_key(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t ex, im;
    void *cubin = NULL;
    size_t len;

    export_signed(f, &f->key[0], &ex);
    assert_true(ex.is_signed);
    assert_memory_equal(ex.signer, f->key[0].pk, 32);
    assert_int_equal(ex.records, N_RECORDS);
    assert_int_equal(ex.bytes, f->bundle_len);
    /* The header announces the block, and the block ends the bundle. */
    assert_int_equal(f->bundle[6], KC__BUNDLE_FLAG_SIGNED);
    assert_memory_equal(f->bundle + f->bundle_len - KC__BUNDLE_SIG_BLOCK,
                        KC__BUNDLE_SIG_MAGIC, 4);

    assert_int_equal(import(f, f->bundle, f->bundle_len, &f->pub[0], &im), KC_OK);
    assert_int_equal(im.added, N_RECORDS);
    assert_true(im.is_signed);
    assert_memory_equal(im.signer, f->key[0].pk, 32);
    assert_int_equal(kc_store_get_cubin(f->st[1], &builds[1].rec.blob, &cubin, &len),
                     KC_OK);
    assert_int_equal(len, builds[1].cubin_len);
    assert_memory_equal(cubin, builds[1].cubin, len);
    kc_free(cubin);
}

static void test_a_signed_bundle_imports_without_a_trusted_key(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t im;

    export_signed(f, &f->key[1], NULL);
    assert_int_equal(import(f, f->bundle, f->bundle_len, NULL, &im), KC_OK);
    assert_int_equal(im.added, N_RECORDS);
    assert_true(im.is_signed);
    assert_memory_equal(im.signer, f->key[1].pk, 32);
}

static void test_an_unsigned_bundle_still_imports_without_a_trusted_key(void **state)
{
    fixture_t *f = *state;
    kc_bundle_stats_t ex, im;

    export_signed(f, NULL, &ex);
    assert_false(ex.is_signed);
    assert_int_equal(f->bundle[6], 0);
    assert_int_equal(import(f, f->bundle, f->bundle_len, NULL, &im), KC_OK);
    assert_int_equal(im.added, N_RECORDS);
    assert_false(im.is_signed);
}

/* ---- refusals -----------------------------------------------------------------------
 */

static void test_an_unsigned_bundle_is_refused_under_trust(void **state)
{
    fixture_t *f = *state;

    export_signed(f, NULL, NULL);
    assert_int_equal(import(f, f->bundle, f->bundle_len, &f->pub[0], NULL),
                     KC_ESIGNATURE);
    assert_true(msg_has(f, "not signed"));
    assert_int_equal(target_records(f), 0);
}

static void test_a_bundle_signed_by_another_key_is_refused_under_trust(void **state)
{
    fixture_t *f = *state;
    char id[KC_BUNDLE_KEY_ID_LEN + 1];

    export_signed(f, &f->key[1], NULL);
    assert_int_equal(import(f, f->bundle, f->bundle_len, &f->pub[0], NULL),
                     KC_ESIGNATURE);
    kc_bundle_key_id(f->key[1].pk, id);
    assert_true(msg_has(f, id));
    assert_true(msg_has(f, "not the trusted key"));
    assert_int_equal(target_records(f), 0);
}

/* Every byte flipped in turn: the header's checksum catches the header, the
 * signature catches everything from the first frame through the trailer
 * (before any frame is parsed), and the block's checksum the block. */
static void test_any_flipped_byte_of_a_signed_bundle_is_refused(void **state)
{
    fixture_t *f = *state;
    size_t head, block;
    uint8_t *copy;

    export_signed(f, &f->key[0], NULL);
    head = header_len((const uint8_t *)f->bundle);
    block = f->bundle_len - KC__BUNDLE_SIG_BLOCK;
    copy = malloc(f->bundle_len);
    assert_non_null(copy);
    for (int trusted = 0; trusted < 2; trusted++) {
        for (size_t i = 0; i < f->bundle_len; i++) {
            int want = i < head ? KC_ECORRUPT : i < block ? KC_ESIGNATURE : KC_ECORRUPT;
            int rc;

            memcpy(copy, f->bundle, f->bundle_len);
            copy[i] ^= 0x01;
            rc = import(f, copy, f->bundle_len, trusted ? &f->pub[0] : NULL, NULL);
            if (rc != want)
                fail_msg("flip at byte %zu (trust %d): %s, expected %s: %s", i, trusted,
                         kc_err_name(rc), kc_err_name(want), kc_store_errmsg(f->st[1]));
        }
    }
    assert_int_equal(target_records(f), 0);
    free(copy);
}

/* A forger who fixes up the block's checksum is stopped by the signature. */
static void test_a_changed_signature_with_a_fixed_checksum_is_refused(void **state)
{
    fixture_t *f = *state;
    uint8_t *b;

    export_signed(f, &f->key[0], NULL);
    b = (uint8_t *)f->bundle + f->bundle_len - KC__BUNDLE_SIG_BLOCK;
    b[40 + 17] ^= 0x80; /* a byte of the signature */
    kc__store_u64le(b + 104, XXH3_64bits(b, 104));
    assert_int_equal(import(f, f->bundle, f->bundle_len, NULL, NULL), KC_ESIGNATURE);
    assert_true(msg_has(f, "does not verify"));
    assert_int_equal(import(f, f->bundle, f->bundle_len, &f->pub[0], NULL),
                     KC_ESIGNATURE);
    assert_int_equal(target_records(f), 0);
}

/* Swapping in the trusted key's public key does not make another key's
 * signature pass. */
static void test_a_signature_relabelled_with_the_trusted_key_is_refused(void **state)
{
    fixture_t *f = *state;
    uint8_t *b;

    export_signed(f, &f->key[1], NULL);
    b = (uint8_t *)f->bundle + f->bundle_len - KC__BUNDLE_SIG_BLOCK;
    memcpy(b + 8, f->key[0].pk, 32);
    kc__store_u64le(b + 104, XXH3_64bits(b, 104));
    assert_int_equal(import(f, f->bundle, f->bundle_len, &f->pub[0], NULL),
                     KC_ESIGNATURE);
    assert_true(msg_has(f, "does not verify"));
    assert_int_equal(target_records(f), 0);
}

static void test_a_signature_block_cut_off_is_refused_as_truncation(void **state)
{
    fixture_t *f = *state;
    const size_t cuts[] = {1, KC__BUNDLE_SIG_BLOCK - 1, KC__BUNDLE_SIG_BLOCK};

    export_signed(f, &f->key[0], NULL);
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        for (int trusted = 0; trusted < 2; trusted++) {
            assert_int_equal(import(f, f->bundle, f->bundle_len - cuts[i],
                                    trusted ? &f->pub[0] : NULL, NULL),
                             KC_ECORRUPT);
            assert_true(msg_has(f, "truncated"));
        }
    }
    assert_int_equal(target_records(f), 0);
}

/* Clearing the flag and recomputing the header checksum and the trailer's
 * digest (XXH3 is no protection against a forger) turns a signed bundle
 * into a sound unsigned one; trust is what refuses it. */
static void
test_a_stripped_signature_leaves_an_unsigned_bundle_that_trust_refuses(void **state)
{
    fixture_t *f = *state;
    uint8_t *p;
    size_t head, len, trailer;
    XXH128_canonical_t canon;

    export_signed(f, &f->key[0], NULL);
    p = (uint8_t *)f->bundle;
    head = header_len(p);
    len = f->bundle_len - KC__BUNDLE_SIG_BLOCK;
    trailer =
        len - (KC__BUNDLE_FRAME_HEAD + KC__BUNDLE_TRAILER_BODY + KC__BUNDLE_CHECKSUM);
    assert_int_equal(p[trailer], KC__FRAME_TRAILER);

    /* The block alone removed, the flag kept: truncation. */
    assert_int_equal(import(f, p, len, NULL, NULL), KC_ECORRUPT);

    p[6] = 0;
    kc__store_u64le(p + head - KC__BUNDLE_CHECKSUM,
                    XXH3_64bits(p, head - KC__BUNDLE_CHECKSUM));
    XXH128_canonicalFromHash(&canon, XXH3_128bits(p, trailer));
    memcpy(p + trailer + 16, canon.digest, 16);
    kc__store_u64le(p + trailer + 32, XXH3_64bits(p + trailer, 32));

    assert_int_equal(import(f, p, len, &f->pub[0], NULL), KC_ESIGNATURE);
    assert_true(msg_has(f, "not signed"));
    assert_int_equal(target_records(f), 0);
    /* The forgery is otherwise sound: without trust it is just unsigned. */
    assert_int_equal(import(f, p, len, NULL, NULL), KC_OK);
    assert_int_equal(target_records(f), N_RECORDS);
}

/* ---- keys -----------------------------------------------------------------------------
 */

static void test_keygen_writes_private_and_public_files_and_never_overwrites(void **state)
{
    fixture_t *f = *state;
    char path[620];
    struct stat sb;
    kc_bundle_key_t sk, again;
    uint8_t before[256];
    FILE *fp;
    size_t n;

    snprintf(path, sizeof(path), "%s.key", f->key_base[0]);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    n = fread(before, 1, sizeof(before), fp);
    fclose(fp);
    assert_true(n > 25);
    assert_memory_equal(before, "kcache-ed25519-secret-v1 ", 25);
    snprintf(path, sizeof(path), "%s.pub", f->key_base[0]);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);

    assert_int_equal(kc_bundle_keygen(f->key_base[0], &again), KC_EEXIST);
    assert_false(again.has_secret);
    snprintf(path, sizeof(path), "%s.key", f->key_base[0]);
    assert_int_equal(kc_bundle_key_load(path, &sk), KC_OK);
    assert_true(sk.has_secret);
    assert_memory_equal(sk.sk, f->key[0].sk, 64);
    assert_memory_equal(sk.pk, f->pub[0].pk, 32);
    assert_false(f->pub[0].has_secret);
    kc_bundle_key_wipe(&sk);
}

static void test_a_secret_key_open_to_others_or_malformed_is_not_loaded(void **state)
{
    fixture_t *f = *state;
    char path[620];
    kc_bundle_key_t k;
    FILE *fp;

    snprintf(path, sizeof(path), "%s.key", f->key_base[1]);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(kc_bundle_key_load(path, &k), KC_EPERM);
    assert_false(k.has_secret);

    snprintf(path, sizeof(path), "%s/junk.pub", f->root);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("kcache-ed25519-public-v1 AAAA\n", fp);
    fclose(fp);
    assert_int_equal(kc_bundle_key_load(path, &k), KC_ECORRUPT);

    snprintf(path, sizeof(path), "%s/absent.pub", f->root);
    assert_int_equal(kc_bundle_key_load(path, &k), KC_EIO);

    /* A secret key whose public half is not its seed's. */
    kc_bundle_key_t bad = f->key[0];
    char *b64;
    size_t cap = sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL);
    bad.sk[40] ^= 1;
    b64 = malloc(cap);
    assert_non_null(b64);
    sodium_bin2base64(b64, cap, bad.sk, 64, sodium_base64_VARIANT_ORIGINAL);
    snprintf(path, sizeof(path), "%s/mismatched.key", f->root);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "kcache-ed25519-secret-v1 %s\n", b64);
    fclose(fp);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kc_bundle_key_load(path, &k), KC_ECORRUPT);
    free(b64);
}

static void test_export_refuses_to_sign_with_a_public_key(void **state)
{
    fixture_t *f = *state;
    FILE *m;
    char *buf = NULL;
    size_t len = 0;

    m = open_memstream(&buf, &len);
    assert_non_null(m);
    assert_int_equal(kc_bundle_export_signed(f->st[0], NULL, &f->pub[0], m, NULL),
                     KC_EINVAL);
    fclose(m);
    assert_int_equal(len, 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_a_signed_bundle_imports_under_its_trusted_key),
        T(test_a_signed_bundle_imports_without_a_trusted_key),
        T(test_an_unsigned_bundle_still_imports_without_a_trusted_key),
        T(test_an_unsigned_bundle_is_refused_under_trust),
        T(test_a_bundle_signed_by_another_key_is_refused_under_trust),
        T(test_any_flipped_byte_of_a_signed_bundle_is_refused),
        T(test_a_changed_signature_with_a_fixed_checksum_is_refused),
        T(test_a_signature_relabelled_with_the_trusted_key_is_refused),
        T(test_a_signature_block_cut_off_is_refused_as_truncation),
        T(test_a_stripped_signature_leaves_an_unsigned_bundle_that_trust_refuses),
        T(test_keygen_writes_private_and_public_files_and_never_overwrites),
        T(test_a_secret_key_open_to_others_or_malformed_is_not_loaded),
        T(test_export_refuses_to_sign_with_a_public_key),
#undef T
    };
    return cmocka_run_group_tests(tests, compile_all, free_all);
}
