/* Fuzz bundle import. Each input is imported into a throwaway store as it
 * is, then again with its header checksum, frame checksums and trailer made
 * right, so that mutations get past the framing and reach the record,
 * preimage and blob checks behind it. Nothing may crash, leak or trip a
 * sanitizer; an import that fails must leave the store as it was. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle_internal.h"
#include "kcache/bundle.h"
#include "kcache/store.h"
#include "wire.h"

static kc_store_t *store;
static char dir[256];

static void cleanup(void)
{
    char cmd[300];

    kc_store_close(store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_bundle: could not remove %s\n", dir);
}

static kc_store_t *the_store(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    if (store)
        return store;
    snprintf(dir, sizeof(dir), "%s/fuzz_bundle.XXXXXX", base);
    if (!mkdtemp(dir) || kc_store_open(dir, NULL, &store) != KC_OK)
        abort();
    atexit(cleanup);
    return store;
}

static uint64_t records(kc_store_t *st)
{
    kc_store_stats_t s;
    if (kc_store_stats(st, &s) != KC_OK)
        abort();
    return s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] + s.records[KC_REC_TUNING];
}

static void try_import(const uint8_t *data, size_t size)
{
    kc_store_t *st = the_store();
    kc_bundle_import_opts_t o = {.size = sizeof(kc_bundle_import_opts_t),
                                 .prefer = (kc_bundle_prefer_t)(size % 3)};
    kc_bundle_stats_t s;
    uint64_t before = records(st);
    int rc = kc_bundle_import_mem(st, data, size, &o, &s);

    if (rc != KC_OK && records(st) != before)
        abort();
    if (rc == KC_OK && records(st) != before + s.added)
        abort();
}

/* A copy of data whose checksums, count and digest are right: the header's
 * checksum, each whole frame's checksum, then a fresh trailer after the
 * last whole frame. NULL if the header is not even there. */
static uint8_t *fix_up(const uint8_t *data, size_t size, size_t *out_len)
{
    size_t off, n, tlen = KC__BUNDLE_FRAME_HEAD + KC__BUNDLE_TRAILER_BODY + 8;
    uint64_t count = 0;
    uint8_t *p;

    if (size < KC__BUNDLE_HEAD_FIXED)
        return NULL;
    n = KC__BUNDLE_HEAD_FIXED + kc__load_u32le(data + 16);
    if (kc__load_u32le(data + 16) > KC__BUNDLE_PRODUCER_MAX || size < n + 8)
        return NULL;
    p = malloc(size + tlen);
    if (!p)
        return NULL;
    memcpy(p, data, size);
    kc__store_u64le(p + n, XXH3_64bits(p, n));
    off = n + 8;
    while (size - off >= KC__BUNDLE_FRAME_HEAD && p[off] == KC__FRAME_RECORD) {
        size_t body = KC__BUNDLE_FRAME_HEAD +
                      ((size_t)p[off + 2] | (size_t)p[off + 3] << 8) +
                      kc__load_u32le(p + off + 4);
        if (size - off < body + 8)
            break;
        kc__store_u64le(p + off + body, XXH3_64bits(p + off, body));
        off += body + 8;
        count++;
    }
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(p, off));
    memset(p + off, 0, tlen);
    p[off] = KC__FRAME_TRAILER;
    kc__store_u32le(p + off + 4, KC__BUNDLE_TRAILER_BODY);
    kc__store_u64le(p + off + 8, count);
    memcpy(p + off + 16, canon.digest, 16);
    kc__store_u64le(p + off + 32, XXH3_64bits(p + off, 32));
    *out_len = off + tlen;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    size_t len;

    try_import(data, size);
    if ((fixed = fix_up(data, size, &len)) != NULL) {
        try_import(fixed, len);
        free(fixed);
    }
    return 0;
}
