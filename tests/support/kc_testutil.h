/* Helpers shared by the reliability tests (crash, stress, faults,
 * corruption): scratch directories, env-configurable sizes, synthetic
 * publishes whose every byte can be regenerated from an id, and checks that
 * a store holds a publish whole, or not at all, and has no dangling
 * references.
 *
 * A synthetic publish `id` with n builds holds n blobs (cubin j starts with
 * "KCTU", id and j, so any reader can regenerate and compare it), n builds
 * (build j names blob j) and one tuning whose winner is build 0: 2n + 1
 * records.
 */
#ifndef KC_TEST_KC_TESTUTIL_H
#define KC_TEST_KC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/store.h"

#define KCT_PUB_MAX 8

typedef struct kct_pub {
    kc_publish_t pub;
    kc_buf_t cubins[KCT_PUB_MAX];
    kc_build_rec_t builds[KCT_PUB_MAX];
    kc_candidate_t cands[KCT_PUB_MAX];
    kc_param_t params[KCT_PUB_MAX];
    kc_tuning_rec_t tuning;
    kc_key_t blob_keys[KCT_PUB_MAX];
    kc_key_t build_keys[KCT_PUB_MAX];
    kc_key_t tuning_key;
    unsigned n;
    void *mem[2 * KCT_PUB_MAX + 1];
} kct_pub_t;

/* An unsigned integer from the environment variable name, else def. */
uint64_t kct_env_u64(const char *name, uint64_t def);

/* A new empty directory under $KC_TEST_TMP (else /tmp) named tag.XXXXXX,
 * into out[cap]. Returns 0 or -1. */
int kct_tmpdir(const char *tag, char *out, size_t cap);

/* rm -rf path. */
void kct_rmrf(const char *path);

/* Remove the tree at path in-process (nftw, depth first, not following
 * links). With chmod_dirs, each directory is made 0755 first, for trees a
 * test made read-only. Errors are ignored: this is teardown. */
void kct_rmtree(const char *path, int chmod_dirs);

/* A new scratch directory as kct_tmpdir(tag, root, cap) with a store opened
 * in it (default options) into *st. Returns 0, or -1 with *st NULL. */
int kct_store_scratch(const char *tag, char *root, size_t cap, kc_store_t **st);

/* Close st (may be NULL) and remove root. */
void kct_store_scratch_free(const char *root, kc_store_t *st);

/* A cmocka fixture of one scratch store: kct_store_fx_setup(state, tag)
 * puts a kct_store_fx_t into *state, kct_store_fx_teardown frees it. */
typedef struct kct_store_fx {
    char root[512];
    kc_store_t *st;
} kct_store_fx_t;
int kct_store_fx_setup(void **state, const char *tag);
int kct_store_fx_teardown(void **state);

/* Monotonic milliseconds. */
uint64_t kct_now_ms(void);

/* Wait for child pid up to timeout_ms; on time, its wait status into
 * *status and 0. Past it the child is killed (SIGKILL), reaped, and -1
 * returned: a test's bound on "for ever", not a timing. */
int kct_wait_child(int pid, int timeout_ms, int *status);

/* Defined under ThreadSanitizer, which reports what some tests build on
 * purpose (a lock-order inversion) or do not support (threads started in
 * a child forked from a process with threads). */
#if defined(__SANITIZE_THREAD__)
#define KCT_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KCT_UNDER_TSAN 1
#endif
#endif

/* The size of synthetic cubin j of publish id, and its bytes into buf
 * (which must hold kct_cubin_size(id, j) bytes). */
size_t kct_cubin_size(uint64_t id, unsigned j);
void kct_cubin_fill(uint64_t id, unsigned j, uint8_t *buf);

/* Check a cubin read back from a store against the one its header names.
 * Returns 1 if it is a synthetic cubin and identical to its regeneration,
 * 0 otherwise. */
int kct_cubin_intact(const void *cubin, size_t len);

/* Build publish id with n (1..KCT_PUB_MAX) builds. Returns KC_OK or a code. */
int kct_pub_make(kct_pub_t *p, uint64_t id, unsigned n);
void kct_pub_free(kct_pub_t *p);

/* How much of publish id (made with n builds) the store holds: *present
 * records found (of 2n + 1), of which *intact decode, and, for blobs and
 * builds, yield the identical cubin. Either pointer may be NULL. Returns
 * KC_OK, or the first unexpected (non-miss) store error. */
int kct_pub_state(kc_store_t *st, uint64_t id, unsigned n, unsigned *present,
                  unsigned *intact);

/* Walk every blob, build and tuning: every tuning's winning build must
 * resolve, every build must yield its blob's cubin (kc_store_get_build_cubin),
 * every blob must decode, and synthetic cubins must equal their
 * regeneration. Returns the number of
 * violations, and (pointers may be NULL) the record counts. A negative
 * value is a store error from the walk. */
long kct_store_consistency(kc_store_t *st, uint64_t *tunings, uint64_t *builds,
                           uint64_t *blobs);

/* Path of the cachectl binary: $CACHECTL, else ../tools/cachectl beside the
 * running test executable. NULL if neither exists. */
const char *kct_cachectl(void);

/* Run `cachectl -s dir verify [--repair]` with output to /dev/null and
 * return its exit status (-1 if it could not run or was killed). */
int kct_cachectl_verify(const char *dir, int repair);

/* The number of byte offsets at which needle occurs in the file at path.
 * With flip, XOR each occurrence's byte at offset flip_at with 0x5a, in
 * place. Returns -1 if the file cannot be read or written. */
long kct_file_find_flip(const char *path, const void *needle, size_t len, int flip,
                        size_t flip_at);

#endif
