/* The autotuner: time candidates on the real arguments through the device
 * layer, keeping the user's written buffers as if the kernel ran once.
 * Internal.
 */
#ifndef KCACHE_TUNER_H
#define KCACHE_TUNER_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"

typedef struct kc__tune_opts {
    unsigned warmup;
    double budget_ms; /* measured time per candidate */
    unsigned min_reps;
    unsigned max_reps;
    int no_l2_flush;
} kc__tune_opts_t;

/* A buffer the kernel writes (an out or inout argument). */
typedef struct kc__tune_buf {
    uint64_t ptr;
    size_t bytes;
} kc__tune_buf_t;

typedef struct kc__tune_cand {
    /* in: the loaded function, or NULL when status already says why the
     * candidate cannot run (compile error, load failure). */
    void *fn;
    unsigned grid[3], block[3], shared;
    /* in: a prebuilt binary's ABI (its launches append scratch pointers to
     * params after n_args), or NULL. */
    const struct kc__abi *abi;
    size_t n_args;
    /* in: KC_CAND_OK to time it; any other status is kept and the
     * candidate skipped. out: the result. */
    uint8_t status;
    uint64_t median_ns;
    char reason[256];
} kc__tune_cand_t;

/* Copies of written buffers, in device memory while it has room to spare,
 * else in host memory, so that tuning never runs a job out of memory. */
typedef struct kc__saved {
    kc__tune_buf_t *bufs;
    size_t n;
    uint64_t *dev_copy; /* per buffer, 0 when it went to host memory */
    void **host_copy;
    uint64_t device_bytes, host_bytes;
} kc__saved_t;

int kc__saved_take(kc__device_t *dev, void *stream, const kc__tune_buf_t *bufs, size_t n,
                   kc__saved_t *out, char *err, size_t errcap);
int kc__saved_restore(kc__device_t *dev, void *stream, const kc__saved_t *saved,
                      char *err, size_t errcap);
void kc__saved_release(kc__device_t *dev, kc__saved_t *saved);

/* Time one candidate: warm-up runs, then timed runs (each after an L2
 * flush, between two events) until budget_ms of measured time or max_reps,
 * at least min_reps; *median_ns gets the median. Returns KC_OK, KC_ETOOBIG
 * (resources), KC_ESTICKY, or another launch failure; the device's message
 * goes to reason. */
int kc__tune_time(kc__device_t *dev, const kc__tune_opts_t *opts, void *stream,
                  const kc__tune_cand_t *cand, void **params, uint64_t *median_ns,
                  char *reason, size_t reason_cap);

/* Tune cands[n] sharing params: save the written buffers, restore them
 * before each candidate and after the last, time each runnable candidate
 * and record failures in it. *winner receives the fastest. KC_ENOCANDIDATE
 * when none ran; KC_ESTICKY (tuning stops at once, buffers not restored)
 * when the context broke; err says why. */
int kc__tune(kc__device_t *dev, const kc__tune_opts_t *opts, void *stream,
             const kc__tune_buf_t *bufs, size_t n_bufs, kc__tune_cand_t *cands, size_t n,
             void **params, size_t *winner, char *err, size_t errcap);

#endif
