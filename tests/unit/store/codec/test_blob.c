/* Blob records: compression round trips, and every way a stored blob can
 * lie about itself (wrong key, damaged frame, wrong size, bombs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include <zdict.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_frameHeaderSize */
#include <zstd.h>

#include "blob_internal.h"
#include "kcache/blob.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "wire.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KC_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||               \
    __has_feature(memory_sanitizer)
#define KC_TEST_SANITIZED 1
#endif
#endif

/* ---- helpers ------------------------------------------------------------ */

typedef struct enc {
    uint8_t *p;
    size_t n;
} enc_t;

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Something shaped like a cubin: an ELF header, runs of repeated 16-byte
 * "instructions" with varying operands, a string table and some noise. */
static uint8_t *make_elfish(size_t size, uint32_t seed)
{
    static const char *const names[] = {".text.matmul",  ".nv.info", ".nv.shared.matmul",
                                        ".nv.constant0", ".symtab",  ".strtab"};
    uint8_t *p = malloc(size ? size : 1);
    assert_non_null(p);
    uint32_t s = seed;
    size_t i = 0;

    static const uint8_t ehdr[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33, 7};
    for (; i < size && i < sizeof(ehdr); i++)
        p[i] = ehdr[i];
    while (i < size) {
        uint32_t what = lcg(&s) % 8;
        size_t run = 16 + lcg(&s) % 512;
        for (size_t j = 0; j < run && i < size; j++, i++) {
            if (what < 5)
                p[i] = (uint8_t)((j % 16 == 3) ? lcg(&s) : 0x10 + (j % 16) * 7 + what);
            else if (what < 7)
                p[i] = (uint8_t)names[(i / 32) % 6][j % 8];
            else
                p[i] = (uint8_t)lcg(&s);
        }
    }
    return p;
}

static enc_t blob_record(const void *frame, size_t frame_len, uint64_t raw_size,
                         uint32_t dict_id)
{
    kc_record_t r;
    enc_t e = {NULL, 0};
    void *p = NULL;

    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_BLOB;
    r.u.blob.codec = KC_CODEC_ZSTD;
    r.u.blob.dict_id = dict_id;
    r.u.blob.raw_size = raw_size;
    r.u.blob.frame = (kc_buf_t){frame, frame_len};
    assert_int_equal(kc_record_encode(&r, &p, &e.n), KC_OK);
    e.p = p;
    return e;
}

static void reseal(uint8_t *p, size_t n)
{
    kc__store_u64le(p + n - 8, XXH3_64bits(p, n - 8));
}

/* A one-shot frame, with or without the content size in its header. */
static enc_t compress_frame(const void *src, size_t n, int with_size)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    enc_t e;
    assert_non_null(c);
    e.p = malloc(ZSTD_compressBound(n));
    assert_non_null(e.p);
    assert_false(
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size)));
    e.n = ZSTD_compress2(c, e.p, ZSTD_compressBound(n), src, n);
    assert_false(ZSTD_isError(e.n));
    ZSTD_freeCCtx(c);
    return e;
}

/* A frame of `total` zero bytes, compressed a MiB at a time so that the
 * test never holds the whole input. */
static enc_t stream_zeros(uint64_t total, int with_size)
{
    const size_t chunk = 1 << 20;
    uint8_t *zeros = calloc(1, chunk);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    enc_t e = {NULL, 0};
    size_t cap = 1 << 16;

    assert_non_null(zeros);
    assert_non_null(c);
    e.p = malloc(cap);
    assert_non_null(e.p);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1)));
    assert_false(
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size)));
    if (with_size)
        assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, total)));
    for (uint64_t done = 0;;) {
        size_t n = total - done < chunk ? (size_t)(total - done) : chunk;
        done += n;
        ZSTD_EndDirective mode = done == total ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer in = {zeros, n, 0};
        size_t left;
        do {
            if (cap - e.n < ZSTD_CStreamOutSize()) {
                cap *= 2;
                e.p = realloc(e.p, cap);
                assert_non_null(e.p);
            }
            ZSTD_outBuffer out = {e.p, cap, e.n};
            left = ZSTD_compressStream2(c, &out, &in, mode);
            assert_false(ZSTD_isError(left));
            e.n = out.pos;
        } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
        if (mode == ZSTD_e_end)
            break;
    }
    ZSTD_freeCCtx(c);
    free(zeros);
    return e;
}

/* Run fn in a child process whose address space may grow by at most `room`
 * bytes, and return its result code. A decoder that reserved memory for a
 * size it should have refused would fail there with KC_ENOMEM instead of
 * returning the code the test expects. (Sanitizers reserve terabytes of
 * shadow memory, so under them the limit is left off.) */
typedef int (*child_fn)(void *arg);

static int run_with_memory_limit(child_fn fn, void *arg, size_t room)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#ifndef KC_TEST_SANITIZED
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1)
            _exit(100);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + room;
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(101);
#else
        (void)room;
#endif
        _exit(-fn(arg));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_true(WEXITSTATUS(status) < 100);
    return -WEXITSTATUS(status);
}

typedef struct decode_args {
    const enc_t *rec;
    kc_key_t key;
    uint64_t max_raw;
} decode_args_t;

static int decode_in_child(void *p)
{
    const decode_args_t *a = p;
    void *raw = NULL;
    size_t n = 0;
    int rc = kc_blob_decode(a->rec->p, a->rec->n, &a->key, a->max_raw, NULL, 0, &raw, &n);
    kc_free(raw);
    return rc;
}

/* ---- tests -------------------------------------------------------------- */

/* The encoder stores literals raw (docs/FORMAT.md, "Blob"): in every
 * compressed block of the frame, the literals section is Raw or RLE, never
 * Huffman-coded. Walks the frame by the zstd format (RFC 8878). */
static void test_frames_store_literals_raw(void **state)
{
    (void)state;
    if (ZSTD_versionNumber() < 10500)
        skip();
    /* Literals from a small alphabet, which zstd's default would
     * Huffman-code (as it does a real cubin's). */
    const size_t size = 64 << 10;
    uint8_t *raw = malloc(size);
    uint32_t s = 7;
    kc_key_t key;
    void *rec = NULL;
    size_t rec_len = 0;
    kc_blob_rec_t view;
    int compressed_blocks = 0;

    assert_non_null(raw);
    for (size_t i = 0; i < size; i++)
        raw[i] = (i / 64) % 3 == 0 ? 0 : (uint8_t)(lcg(&s) & 0x1f);

    assert_int_equal(kc_blob_encode(raw, size, 0, &key, &rec, &rec_len), KC_OK);
    assert_int_equal(kc__blob_view(rec, rec_len, &view), KC_OK);
    const uint8_t *f = view.frame.data;
    size_t n = view.frame.size;
    size_t at = ZSTD_frameHeaderSize(f, n);
    assert_false(ZSTD_isError(at));
    for (int last = 0; !last;) {
        assert_true(at + 3 <= n);
        uint32_t hdr = f[at] | (uint32_t)f[at + 1] << 8 | (uint32_t)f[at + 2] << 16;
        unsigned type = (hdr >> 1) & 3, bsize = hdr >> 3;
        last = hdr & 1;
        at += 3;
        if (type == 2) { /* compressed: the literals section comes first */
            assert_true(at < n);
            unsigned lit_type = f[at] & 3;
            assert_true(lit_type == 0 || lit_type == 1);
            compressed_blocks++;
        }
        at += type == 1 ? 1 : bsize; /* an RLE block holds one byte */
    }
    assert_int_equal(at, n);
    assert_true(compressed_blocks > 0);
    assert_true(rec_len < size / 2); /* still compresses */
    kc_free(rec);
    free(raw);
}

static void *decode_once(void *p)
{
    enc_t *e = p;
    kc_key_t key;
    void *rec = NULL, *out = NULL;
    size_t rec_len = 0, out_len = 0;
    intptr_t ok =
        kc_blob_encode(e->p, e->n, 0, &key, &rec, &rec_len) == KC_OK &&
        kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len) == KC_OK &&
        out_len == e->n && memcmp(out, e->p, e->n) == 0;
    kc_free(out);
    kc_free(rec);
    return (void *)ok;
}

/* kc_blob_warm leaves a used decompression context, which the next thread
 * that decodes takes (and decodes correctly with); warming again while one
 * waits changes nothing. */
static void test_warm_hands_its_context_to_the_next_decoding_thread(void **state)
{
    (void)state;
    enc_t e = {make_elfish(20000, 3), 20000};
    pthread_t t;
    void *ok = NULL;
    long before = kc__blob_live_contexts();

    kc_blob_warm();
    assert_true(kc__blob_has_spare());
    kc_blob_warm();
    assert_true(kc__blob_has_spare());
    assert_int_equal(pthread_create(&t, NULL, decode_once, &e), 0);
    assert_int_equal(pthread_join(t, &ok), 0);
    assert_true(ok != NULL);
    assert_false(kc__blob_has_spare());
    assert_int_equal(kc__blob_live_contexts(), before);
    free(e.p);
}

static void test_elf_like_blob_round_trips_smaller_than_it_started(void **state)
{
    (void)state;
    const size_t size = 64 << 10;
    uint8_t *raw = make_elfish(size, 1);
    kc_key_t key, want = kc_key_hash(raw, size);
    void *rec = NULL, *out = NULL;
    size_t rec_len = 0, out_len = 0;

    assert_int_equal(kc_blob_encode(raw, size, 0, &key, &rec, &rec_len), KC_OK);
    assert_memory_equal(key.b, want.b, 16);
    assert_true(rec_len < size / 2);

    kc_blob_rec_t view;
    assert_int_equal(kc__blob_view(rec, rec_len, &view), KC_OK);
    assert_true(view.raw_size == size);
    assert_int_equal(view.dict_id, 0);
    assert_int_equal(view.codec, KC_CODEC_ZSTD);
    assert_true(ZSTD_getFrameContentSize(view.frame.data, view.frame.size) == size);

    assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                     KC_OK);
    assert_int_equal(out_len, size);
    assert_memory_equal(out, raw, size);

    kc_free(out);
    kc_free(rec);
    free(raw);
}

static void test_every_level_including_negative_round_trips(void **state)
{
    (void)state;
    const size_t size = 8 << 10;
    uint8_t *raw = make_elfish(size, 2);
    int levels[] = {-5, 1, 3, 19, ZSTD_maxCLevel()};

    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        kc_key_t key;
        void *rec = NULL, *out = NULL;
        size_t rec_len, out_len;
        assert_int_equal(kc_blob_encode(raw, size, levels[i], &key, &rec, &rec_len),
                         KC_OK);
        assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                         KC_OK);
        assert_int_equal(out_len, size);
        assert_memory_equal(out, raw, size);
        kc_free(out);
        kc_free(rec);
    }
    free(raw);
}

static void test_empty_blob_round_trips(void **state)
{
    (void)state;
    static const char nothing[1] = "";
    const void *inputs[] = {NULL, nothing};
    kc_key_t want = kc_key_hash(nothing, 0);

    for (int i = 0; i < 2; i++) {
        kc_key_t key;
        void *rec = NULL, *out = NULL;
        size_t rec_len, out_len = 99;
        assert_int_equal(kc_blob_encode(inputs[i], 0, 0, &key, &rec, &rec_len), KC_OK);
        assert_memory_equal(key.b, want.b, 16);
        assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                         KC_OK);
        assert_int_equal(out_len, 0);
        assert_non_null(out);
        kc_free(out);
        kc_free(rec);
    }
}

static void test_encode_refuses_bad_arguments(void **state)
{
    (void)state;
    kc_key_t key;
    void *rec = NULL;
    size_t rec_len = 0;
    char byte = 'x';

    assert_int_equal(kc_blob_encode(NULL, 5, 0, &key, &rec, &rec_len), KC_EINVAL);
    assert_int_equal(kc_blob_encode(&byte, 1, ZSTD_maxCLevel() + 1, &key, &rec, &rec_len),
                     KC_EINVAL);
    assert_int_equal(kc_blob_encode(&byte, 1, 0, NULL, &rec, &rec_len), KC_EINVAL);
    assert_null(rec);
}

static void test_blob_under_the_wrong_key_is_corrupt(void **state)
{
    (void)state;
    const size_t size = 4096;
    uint8_t *raw = make_elfish(size, 3);
    kc_key_t key;
    void *rec = NULL, *out = NULL;
    size_t rec_len, out_len = 7;

    assert_int_equal(kc_blob_encode(raw, size, 3, &key, &rec, &rec_len), KC_OK);
    key.b[15] ^= 1;
    assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);
    assert_null(out);
    assert_int_equal(out_len, 0);
    kc_free(rec);
    free(raw);
}

static void test_corrupt_frame_byte_is_corrupt(void **state)
{
    (void)state;
    const size_t size = 4096;
    uint8_t *raw = make_elfish(size, 4);
    kc_key_t key;
    void *rec = NULL, *out = NULL;
    size_t rec_len, out_len;

    assert_int_equal(kc_blob_encode(raw, size, 3, &key, &rec, &rec_len), KC_OK);
    kc_blob_rec_t view;
    assert_int_equal(kc__blob_view(rec, rec_len, &view), KC_OK);
    size_t frame_off = (size_t)((const uint8_t *)view.frame.data - (const uint8_t *)rec);
    uint8_t *p = rec;

    /* Caught by the record checksum. */
    p[frame_off + view.frame.size / 2] ^= 0x20;
    assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);
    /* With the checksum redone the damage reaches zstd: caught by the frame's
     * own checksum, a decoding error, or the key. */
    reseal(p, rec_len);
    assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);
    p[frame_off + view.frame.size / 2] ^= 0x20;
    reseal(p, rec_len);

    /* Every byte of the frame, damaged in turn: never wrong bytes out. A few
     * header bits (say, the window size) may not matter to the result. */
    size_t refused = 0;
    for (size_t i = 0; i < view.frame.size; i++) {
        p[frame_off + i] ^= 0xff;
        reseal(p, rec_len);
        int rc = kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len);
        if (rc == KC_OK) {
            assert_int_equal(out_len, size);
            assert_memory_equal(out, raw, size);
            kc_free(out);
        } else {
            assert_int_equal(rc, KC_ECORRUPT);
            refused++;
        }
        p[frame_off + i] ^= 0xff;
    }
    assert_true(refused > view.frame.size / 2);
    kc_free(rec);
    free(raw);
}

static void test_records_of_other_kinds_are_not_blobs(void **state)
{
    (void)state;
    kc_record_t r;
    void *rec = NULL, *out = NULL;
    size_t rec_len, out_len;
    kc_key_t key = kc_key_hash("", 0);

    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_META;
    assert_int_equal(kc_record_encode(&r, &rec, &rec_len), KC_OK);
    assert_int_equal(kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);
    kc_blob_rec_t view;
    assert_int_equal(kc__blob_view(rec, rec_len, &view), KC_ECORRUPT);
    kc_free(rec);
}

static void test_bytes_after_the_frame_are_corrupt(void **state)
{
    (void)state;
    const size_t size = 2000;
    uint8_t *raw = make_elfish(size, 5);
    kc_key_t key = kc_key_hash(raw, size);
    enc_t f = compress_frame(raw, size, 1);
    void *out = NULL;
    size_t out_len;

    uint8_t *two = malloc(2 * f.n + 1);
    assert_non_null(two);
    memcpy(two, f.p, f.n);
    two[f.n] = 0;
    enc_t junk = blob_record(two, f.n + 1, size, 0);
    assert_int_equal(kc_blob_decode(junk.p, junk.n, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);

    /* Two frames that together decode to raw-then-raw: still one blob's
     * worth of frame only. */
    memcpy(two + f.n, f.p, f.n);
    enc_t pair = blob_record(two, 2 * f.n, size, 0);
    assert_int_equal(kc_blob_decode(pair.p, pair.n, &key, 0, NULL, 0, &out, &out_len),
                     KC_ECORRUPT);

    enc_t good = blob_record(f.p, f.n, size, 0);
    assert_int_equal(kc_blob_decode(good.p, good.n, &key, 0, NULL, 0, &out, &out_len),
                     KC_OK);
    kc_free(out);
    kc_free(good.p);
    kc_free(pair.p);
    kc_free(junk.p);
    free(two);
    free(f.p);
    free(raw);
}

static void test_declared_size_over_the_bound_is_too_big(void **state)
{
    (void)state;
    const size_t size = 4096;
    uint8_t *raw = make_elfish(size, 6);
    kc_key_t key;
    void *rec = NULL, *out = NULL;
    size_t rec_len, out_len;

    assert_int_equal(kc_blob_encode(raw, size, 3, &key, &rec, &rec_len), KC_OK);
    assert_int_equal(
        kc_blob_decode(rec, rec_len, &key, size - 1, NULL, 0, &out, &out_len),
        KC_ETOOBIG);
    assert_null(out);
    assert_int_equal(kc_blob_decode(rec, rec_len, &key, size, NULL, 0, &out, &out_len),
                     KC_OK);
    kc_free(out);

    /* The same frame under a forged raw size of 1 GiB, with only 64 MiB of
     * address space to spare: refused by the bound before any allocation. */
    kc_blob_rec_t view;
    assert_int_equal(kc__blob_view(rec, rec_len, &view), KC_OK);
    enc_t forged = blob_record(view.frame.data, view.frame.size, (uint64_t)1 << 30, 0);
    decode_args_t a = {&forged, key, 0};
    assert_int_equal(run_with_memory_limit(decode_in_child, &a, 64 << 20), KC_ETOOBIG);
    a.max_raw = (uint64_t)1 << 29;
    assert_int_equal(run_with_memory_limit(decode_in_child, &a, 64 << 20), KC_ETOOBIG);
    a.max_raw = 0;
    forged.p[KC_RECORD_HEADER_SIZE + 5 + 7] = 0xff; /* raw_size's top byte */
    reseal(forged.p, forged.n);
    assert_int_equal(run_with_memory_limit(decode_in_child, &a, 64 << 20), KC_ETOOBIG);

    kc_free(forged.p);
    kc_free(rec);
    free(raw);
}

static void test_raw_size_that_disagrees_with_the_frame_is_corrupt(void **state)
{
    (void)state;
    const size_t size = 1000;
    uint8_t *raw = make_elfish(size, 7);
    kc_key_t key = kc_key_hash(raw, size);
    uint64_t wrong[] = {size - 1, size + 1, 500, 2000, 0};

    for (int with_size = 0; with_size <= 1; with_size++) {
        enc_t f = compress_frame(raw, size, with_size);
        assert_true(ZSTD_getFrameContentSize(f.p, f.n) ==
                    (with_size ? size : ZSTD_CONTENTSIZE_UNKNOWN));
        for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
            enc_t rec = blob_record(f.p, f.n, wrong[i], 0);
            void *out = NULL;
            size_t out_len;
            assert_int_equal(
                kc_blob_decode(rec.p, rec.n, &key, 0, NULL, 0, &out, &out_len),
                KC_ECORRUPT);
            assert_null(out);
            kc_free(rec.p);
        }
        /* The frame itself is fine, with or without a declared size. */
        enc_t rec = blob_record(f.p, f.n, size, 0);
        void *out = NULL;
        size_t out_len;
        assert_int_equal(kc_blob_decode(rec.p, rec.n, &key, 0, NULL, 0, &out, &out_len),
                         KC_OK);
        assert_memory_equal(out, raw, size);
        kc_free(out);
        kc_free(rec.p);
        free(f.p);
    }
    free(raw);
}

static void test_decompression_bomb_is_refused_as_too_big(void **state)
{
    (void)state;
    const uint64_t gib = (uint64_t)1 << 30;
    enc_t bomb = stream_zeros(gib, 1);

    assert_true(bomb.n < (1 << 20));
    assert_true(ZSTD_getFrameContentSize(bomb.p, bomb.n) == gib);
    enc_t rec = blob_record(bomb.p, bomb.n, gib, 0);
    decode_args_t a = {&rec, kc_key_hash("", 0), 0};
    assert_int_equal(run_with_memory_limit(decode_in_child, &a, 64 << 20), KC_ETOOBIG);
    kc_free(rec.p);
    free(bomb.p);
}

/* 64 MiB of real content behind a raw size of 4 KiB: the output buffer is
 * 4 KiB and decompression stops when it is full. */
static void test_frame_with_more_content_than_declared_is_corrupt(void **state)
{
    (void)state;
    const uint64_t big = (uint64_t)64 << 20;
    const size_t small = 4096;
    uint8_t *zeros = calloc(1, small);
    assert_non_null(zeros);

    for (int with_size = 0; with_size <= 1; with_size++) {
        enc_t f = stream_zeros(big, with_size);
        enc_t rec = blob_record(f.p, f.n, small, 0);
        /* The key of what the first 4 KiB would be, so that only the size
         * can give the lie away. */
        decode_args_t a = {&rec, kc_key_hash(zeros, small), 0};
        assert_int_equal(run_with_memory_limit(decode_in_child, &a, 32 << 20),
                         KC_ECORRUPT);
        kc_free(rec.p);
        free(f.p);
    }
    free(zeros);
}

typedef struct worker {
    int id;
    int failures;
} worker_t;

static void *round_trips(void *p)
{
    worker_t *w = p;
    for (int i = 0; i < 50; i++) {
        size_t size = 1000 + (size_t)((w->id * 7919 + i * 104729) % 30000);
        uint8_t *raw = malloc(size);
        uint32_t s = (uint32_t)(w->id * 1000 + i);
        if (!raw) {
            w->failures++;
            continue;
        }
        for (size_t j = 0; j < size; j++)
            raw[j] = (uint8_t)(j % 64 < 48 ? j / 64 + w->id : lcg(&s));
        kc_key_t key;
        void *rec = NULL, *out = NULL;
        size_t rec_len, out_len = 0;
        int ok =
            kc_blob_encode(raw, size, 1 + i % 5, &key, &rec, &rec_len) == KC_OK &&
            kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &out, &out_len) == KC_OK &&
            out_len == size && memcmp(out, raw, size) == 0;
        if (!ok)
            w->failures++;
        kc_free(out);
        kc_free(rec);
        free(raw);
    }
    return NULL;
}

static void
test_many_threads_encode_and_decode_at_once_and_free_their_contexts(void **state)
{
    (void)state;
    enum { N = 8 };
    pthread_t t[N];
    worker_t w[N];
    long before = kc__blob_live_contexts();

    for (int i = 0; i < N; i++) {
        w[i] = (worker_t){i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, round_trips, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(kc__blob_live_contexts(), before);
}

typedef struct dict {
    uint8_t *p;
    size_t n;
    unsigned id;
} dict_t;

/* PTX-like lines drawn from a vocabulary: SAMPLES samples into *buf, their
 * sizes into sizes[]. */
enum { SAMPLES = 600 };
static uint8_t *ptx_samples(uint32_t seed, size_t sizes[SAMPLES])
{
    static const char *const words[] = {"ld.global.f32 ",
                                        "st.shared.f32 ",
                                        "mov.u32 ",
                                        "mad.lo.s32 ",
                                        "bar.sync 0;\n",
                                        "%r",
                                        "%f",
                                        "[%rd",
                                        "], ",
                                        "add.s64 ",
                                        "setp.ge.s32 ",
                                        "@%p1 bra ",
                                        "BB0_",
                                        "fma.rn.f32 ",
                                        ";\n"};
    size_t cap = SAMPLES * 600;
    uint8_t *buf = malloc(cap);
    size_t used = 0;
    uint32_t s = seed;

    assert_non_null(buf);
    for (int i = 0; i < SAMPLES; i++) {
        size_t start = used;
        size_t want = 200 + lcg(&s) % 300;
        while (used - start < want) {
            const char *w = words[lcg(&s) % (sizeof(words) / sizeof(words[0]))];
            size_t n = strlen(w);
            memcpy(buf + used, w, n);
            used += n;
            used += (size_t)snprintf((char *)buf + used, 8, "%u", lcg(&s) % 64);
        }
        sizes[i] = used - start;
    }
    return buf;
}

/* Train a dictionary on PTX-like samples. */
static dict_t train_dict(uint32_t seed)
{
    size_t sizes[SAMPLES];
    uint8_t *buf = ptx_samples(seed, sizes);
    dict_t d;

    d.p = malloc(16 << 10);
    assert_non_null(d.p);
    d.n = ZDICT_trainFromBuffer(d.p, 16 << 10, buf, sizes, SAMPLES);
    assert_false(ZDICT_isError(d.n));
    d.id = ZSTD_getDictID_fromDict(d.p, d.n);
    assert_int_not_equal(d.id, 0);
    free(buf);
    return d;
}

/* A dictionary whose content is `content` and whose id is forced to id. */
static dict_t dict_with_id(const void *content, size_t len, unsigned id, uint32_t seed)
{
    size_t sizes[SAMPLES];
    uint8_t *buf = ptx_samples(seed, sizes);
    ZDICT_params_t params = {.compressionLevel = 3, .dictID = id};
    dict_t d;

    d.p = malloc(16 << 10);
    assert_non_null(d.p);
    d.n = ZDICT_finalizeDictionary(d.p, 16 << 10, content, len, buf, sizes, SAMPLES,
                                   params);
    assert_false(ZDICT_isError(d.n));
    d.id = ZSTD_getDictID_fromDict(d.p, d.n);
    assert_int_equal(d.id, id);
    free(buf);
    return d;
}

/* A blob record of text compressed with dictionary d. */
static enc_t dict_blob(const char *text, const dict_t *d, kc_key_t *key)
{
    size_t size = strlen(text);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(size);
    uint8_t *frame = malloc(cap);
    assert_non_null(frame);
    size_t fn = ZSTD_compress_usingDict(c, frame, cap, text, size, d->p, d->n, 3);
    assert_false(ZSTD_isError(fn));
    ZSTD_freeCCtx(c);
    *key = kc_key_hash(text, size);
    enc_t rec = blob_record(frame, fn, size, d->id);
    free(frame);
    return rec;
}

static int decodes_to(const enc_t *rec, const kc_key_t *key, const dict_t *d,
                      const char *text)
{
    void *out = NULL;
    size_t out_len = 0;
    int ok =
        kc_blob_decode(rec->p, rec->n, key, 0, d->p, d->n, &out, &out_len) == KC_OK &&
        out_len == strlen(text) && memcmp(out, text, out_len) == 0;
    kc_free(out);
    return ok;
}

static const char kPtxText[] =
    "ld.global.f32 %f1, [%rd4];\nmad.lo.s32 %r5, %r3, %r2, %r1;\n"
    "st.shared.f32 [%rd7], %f1;\nbar.sync 0;\n@%p1 bra BB0_3;\n";
static const char kPtxText2[] =
    "fma.rn.f32 %f9, %f2, %f3, %f1;\nsetp.ge.s32 %p2, %r8, %r1;\n"
    "add.s64 %rd9, %rd1, %rd4;\n@%p2 bra BB0_7;\nmov.u32 %r3, 0;\n";

/* Decoding digests each dictionary once and keeps it (blob_ddict.c); two
 * different dictionaries under one id must not be taken for each other. */
static void test_two_dictionaries_under_one_id_each_decode_their_own(void **state)
{
    (void)state;
    dict_t d = train_dict(11), other = train_dict(12);
    size_t hs = ZDICT_getDictHeaderSize(other.p, other.n);
    assert_false(ZDICT_isError(hs));
    dict_t twin = dict_with_id(other.p + hs, other.n - hs, d.id, 13);
    kc_key_t k1, k2;
    enc_t r1 = dict_blob(kPtxText, &d, &k1), r2 = dict_blob(kPtxText2, &twin, &k2);

    assert_true(decodes_to(&r1, &k1, &d, kPtxText));
    assert_true(decodes_to(&r2, &k2, &twin, kPtxText2));
    assert_true(decodes_to(&r1, &k1, &d, kPtxText));
    assert_true(decodes_to(&r2, &k2, &twin, kPtxText2));
    kc_free(r1.p);
    kc_free(r2.p);
    free(d.p);
    free(other.p);
    free(twin.p);
}

/* More dictionaries than the digest cache keeps: every one still decodes. */
static void test_more_dictionaries_than_the_cache_keeps_all_decode(void **state)
{
    (void)state;
    enum { N = 11 };
    for (int round = 0; round < 2; round++)
        for (uint32_t i = 0; i < N; i++) {
            dict_t d = train_dict(100 + i);
            kc_key_t k;
            enc_t r = dict_blob(i % 2 ? kPtxText : kPtxText2, &d, &k);
            assert_true(decodes_to(&r, &k, &d, i % 2 ? kPtxText : kPtxText2));
            kc_free(r.p);
            free(d.p);
        }
}

typedef struct dict_worker {
    const enc_t *rec;
    const kc_key_t *key;
    const dict_t *d;
    int failures;
} dict_worker_t;

static void *decode_dict_blobs(void *p)
{
    dict_worker_t *w = p;
    for (int i = 0; i < 200; i++)
        if (!decodes_to(w->rec, w->key, w->d, kPtxText))
            w->failures++;
    return NULL;
}

/* Threads decoding with the same new dictionary at once share one digest. */
static void test_threads_decode_with_one_dictionary_at_once(void **state)
{
    (void)state;
    enum { N = 4 };
    dict_t d = train_dict(77);
    kc_key_t k;
    enc_t r = dict_blob(kPtxText, &d, &k);
    pthread_t t[N];
    dict_worker_t w[N];

    for (int i = 0; i < N; i++) {
        w[i] = (dict_worker_t){&r, &k, &d, 0};
        assert_int_equal(pthread_create(&t[i], NULL, decode_dict_blobs, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    kc_free(r.p);
    free(d.p);
}

static void test_dictionary_blob_decodes_only_with_its_dictionary(void **state)
{
    (void)state;
    dict_t d = train_dict(1), other = train_dict(2);
    assert_int_not_equal(d.id, other.id);

    const char *text = "ld.global.f32 %f1, [%rd4];\nmad.lo.s32 %r5, %r3, %r2, %r1;\n"
                       "st.shared.f32 [%rd7], %f1;\nbar.sync 0;\n@%p1 bra BB0_3;\n";
    size_t size = strlen(text);
    kc_key_t key = kc_key_hash(text, size);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(size);
    uint8_t *frame = malloc(cap);
    assert_non_null(frame);
    size_t fn = ZSTD_compress_usingDict(c, frame, cap, text, size, d.p, d.n, 3);
    assert_false(ZSTD_isError(fn));
    assert_int_equal(ZSTD_getDictID_fromFrame(frame, fn), d.id);
    ZSTD_freeCCtx(c);

    enc_t rec = blob_record(frame, fn, size, d.id);
    void *out = NULL;
    size_t out_len;
    assert_int_equal(kc_blob_decode(rec.p, rec.n, &key, 0, NULL, 0, &out, &out_len),
                     KC_EUNSUPPORTED);
    assert_int_equal(kc_blob_decode(rec.p, rec.n, &key, 0, d.p, 0, &out, &out_len),
                     KC_EUNSUPPORTED);
    assert_int_equal(
        kc_blob_decode(rec.p, rec.n, &key, 0, other.p, other.n, &out, &out_len),
        KC_EUNSUPPORTED);
    assert_null(out);
    assert_int_equal(kc_blob_decode(rec.p, rec.n, &key, 0, d.p, d.n, &out, &out_len),
                     KC_OK);
    assert_int_equal(out_len, size);
    assert_memory_equal(out, text, size);
    kc_free(out);

    kc_blob_rec_t view;
    assert_int_equal(kc__blob_view(rec.p, rec.n, &view), KC_OK);
    assert_int_equal(view.dict_id, d.id);

    /* A record that claims no dictionary for a frame that names one. */
    enc_t lying = blob_record(frame, fn, size, 0);
    assert_int_equal(kc_blob_decode(lying.p, lying.n, &key, 0, d.p, d.n, &out, &out_len),
                     KC_ECORRUPT);

    /* The context used with a dictionary is clean for the next blob. */
    kc_key_t k2;
    void *r2 = NULL;
    size_t r2_len;
    assert_int_equal(kc_blob_encode(text, size, 0, &k2, &r2, &r2_len), KC_OK);
    assert_int_equal(kc_blob_decode(r2, r2_len, &k2, 0, NULL, 0, &out, &out_len), KC_OK);
    assert_memory_equal(out, text, size);
    kc_free(out);
    kc_free(r2);

    kc_free(lying.p);
    kc_free(rec.p);
    free(frame);
    free(d.p);
    free(other.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elf_like_blob_round_trips_smaller_than_it_started),
        cmocka_unit_test(test_every_level_including_negative_round_trips),
        cmocka_unit_test(test_empty_blob_round_trips),
        cmocka_unit_test(test_encode_refuses_bad_arguments),
        cmocka_unit_test(test_blob_under_the_wrong_key_is_corrupt),
        cmocka_unit_test(test_corrupt_frame_byte_is_corrupt),
        cmocka_unit_test(test_records_of_other_kinds_are_not_blobs),
        cmocka_unit_test(test_bytes_after_the_frame_are_corrupt),
        cmocka_unit_test(test_declared_size_over_the_bound_is_too_big),
        cmocka_unit_test(test_raw_size_that_disagrees_with_the_frame_is_corrupt),
        cmocka_unit_test(test_decompression_bomb_is_refused_as_too_big),
        cmocka_unit_test(test_frame_with_more_content_than_declared_is_corrupt),
        cmocka_unit_test(
            test_many_threads_encode_and_decode_at_once_and_free_their_contexts),
        cmocka_unit_test(test_dictionary_blob_decodes_only_with_its_dictionary),
        cmocka_unit_test(test_frames_store_literals_raw),
        cmocka_unit_test(test_two_dictionaries_under_one_id_each_decode_their_own),
        cmocka_unit_test(test_more_dictionaries_than_the_cache_keeps_all_decode),
        cmocka_unit_test(test_threads_decode_with_one_dictionary_at_once),
        cmocka_unit_test(test_warm_hands_its_context_to_the_next_decoding_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
