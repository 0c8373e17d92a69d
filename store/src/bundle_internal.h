/* The bundle stream's layout and its writer, shared by export, import and
 * the tests that forge bundles. Internal. docs/FORMAT.md ("Bundles") is the
 * specification. */
#ifndef KCACHE_BUNDLE_INTERNAL_H
#define KCACHE_BUNDLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#endif
#include <xxhash.h>

#define KC__BUNDLE_MAGIC "KCB\0"
/* magic, version, flags, created, producer length. */
#define KC__BUNDLE_HEAD_FIXED 20
#define KC__BUNDLE_PRODUCER_MAX 255
/* tag, kind, key length, record length. */
#define KC__BUNDLE_FRAME_HEAD 8
#define KC__BUNDLE_CHECKSUM 8
/* A trailer's body: record count, then the XXH3-128 digest. */
#define KC__BUNDLE_TRAILER_BODY 24
/* The longest meta name a frame may carry as its key. */
#define KC__BUNDLE_META_KEY_MAX 64

enum { KC__FRAME_RECORD = 'R', KC__FRAME_TRAILER = 'T' };

/* A sequential bundle writer. Every byte before the trailer goes through
 * the digest; the first failed write sticks. */
typedef struct kc__bw {
    FILE *f;
    XXH3_state_t *digest;
    uint64_t count; /* record frames written */
    uint64_t bytes; /* bytes written */
    int failed;     /* KC_EIO or KC_ENOMEM */
} kc__bw_t;

/* Write the header. On failure (KC_ENOMEM, KC_EIO, KC_EINVAL for a producer
 * name over 255 bytes) nothing needs releasing. */
int kc__bw_begin(kc__bw_t *w, FILE *f, uint64_t created, const char *producer);

/* Write one record frame: kind, key[key_len], rec[rec_len] as given. */
int kc__bw_frame(kc__bw_t *w, int kind, const void *key, size_t key_len, const void *rec,
                 size_t rec_len);

/* Write the trailer and release the writer. */
int kc__bw_finish(kc__bw_t *w);

/* Release the writer without writing a trailer. Accepts a zeroed one. */
void kc__bw_abandon(kc__bw_t *w);

#endif
