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

/* Header flag bit 0: a signature block follows the trailer. */
#define KC__BUNDLE_FLAG_SIGNED 0x0001u
#define KC__BUNDLE_SIG_MAGIC "KCBS"
#define KC__BUNDLE_SIG_VERSION 1
#define KC__BUNDLE_SIG_ED25519PH 1
/* magic, version, algorithm, public key, signature, checksum. */
#define KC__BUNDLE_SIG_BLOCK (4 + 2 + 2 + 32 + 64 + KC__BUNDLE_CHECKSUM)

struct kc_bundle_key;

/* A sequential bundle writer. Every byte before the trailer goes through
 * the digest; the first failed write sticks. */
typedef struct kc__bw {
    FILE *f;
    XXH3_state_t *digest;
    uint64_t count; /* record frames written */
    uint64_t bytes; /* bytes written */
    int failed;     /* KC_EIO or KC_ENOMEM */
    /* Signing: the libsodium multi-part state over every byte written, and
     * the key; both NULL for an unsigned bundle. */
    void *sign;
    const struct kc_bundle_key *key;
} kc__bw_t;

/* Write the header. On failure (KC_ENOMEM, KC_EIO, KC_EINVAL for a producer
 * name over 255 bytes) nothing needs releasing. */
int kc__bw_begin(kc__bw_t *w, FILE *f, uint64_t created, const char *producer);

/* The same, for a bundle signed with key (which must hold a secret; NULL:
 * unsigned): the header says a signature block follows, and finish writes
 * it after the trailer. */
int kc__bw_begin_signed(kc__bw_t *w, FILE *f, uint64_t created, const char *producer,
                        const struct kc_bundle_key *key);

/* Write one record frame: kind, key[key_len], rec[rec_len] as given. */
int kc__bw_frame(kc__bw_t *w, int kind, const void *key, size_t key_len, const void *rec,
                 size_t rec_len);

/* Write the trailer and release the writer. */
int kc__bw_finish(kc__bw_t *w);

/* Release the writer without writing a trailer. Accepts a zeroed one. */
void kc__bw_abandon(kc__bw_t *w);

/* ---- signatures (bundle_sign.c) ---- */

/* libsodium's sodium_init, once; KC_OK or KC_EINTERNAL. */
int kc__sodium_init(void);

/* Start a signature over the bytes to come: *state receives an allocated
 * crypto_sign_state. KC_OK, KC_ENOMEM or KC_EINTERNAL. */
int kc__bsig_begin(void **state);
void kc__bsig_update(void *state, const void *p, size_t n);
/* Finish the signature and encode the signature block into
 * out[KC__BUNDLE_SIG_BLOCK]; releases state. */
int kc__bsig_finish(void *state, const struct kc_bundle_key *key, uint8_t *out);
/* Release a state without signing. Accepts NULL. */
void kc__bsig_abandon(void *state);

struct kc_store;
struct kc_bundle_stats;
/* Check the signature of the bundle p[len] whose header flags are flags,
 * against trust (NULL: none configured), before anything else of the
 * bundle is judged. *body_len receives the length of the bundle without
 * its signature block, and stats (may be NULL) whether it is signed and
 * by whom. Messages go to st, naming the bundle name. */
int kc__bsig_check(const struct kc_store *st, const char *name, const uint8_t *p,
                   size_t len, unsigned flags, const struct kc_bundle_key *trust,
                   size_t *body_len, struct kc_bundle_stats *stats);

#endif
