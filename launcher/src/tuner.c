/* The autotuner (see tuner.h). Timing follows Triton's do_bench: warm up,
 * then time single runs between events after flushing L2, for a budget of
 * measured time rather than a fixed count, and keep the median. */
#include "tuner.h"

#include "abi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/record.h"

/* Saved copies stay in device memory only if this much is left free after
 * them: tuning must never be what runs a job out of memory. */
#define SAVE_MARGIN_MIN ((size_t)64 << 20)

static void say(char *buf, size_t cap, const char *what, kc__device_t *dev, int rc)
{
    if (!cap)
        return;
    if (dev && kc__device_errmsg(dev)[0])
        snprintf(buf, cap, "%s: %s (%s)", what, kc__device_errmsg(dev), kc_err_name(rc));
    else
        snprintf(buf, cap, "%s: %s", what, kc_strerror(rc));
}

static size_t total_bytes(const kc__tune_buf_t *bufs, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += bufs[i].bytes;
    return sum;
}

int kc__saved_take(kc__device_t *dev, void *stream, const kc__tune_buf_t *bufs, size_t n,
                   kc__saved_t *out, char *err, size_t errcap)
{
    const kc__device_ops_t *ops = dev->ops;
    size_t free_bytes = 0, need = total_bytes(bufs, n);
    int on_device = 0, rc;

    memset(out, 0, sizeof(*out));
    if (!n)
        return KC_OK;
    out->bufs = calloc(n, sizeof(*out->bufs));
    out->dev_copy = calloc(n, sizeof(*out->dev_copy));
    out->host_copy = calloc(n, sizeof(*out->host_copy));
    if (!out->bufs || !out->dev_copy || !out->host_copy) {
        rc = KC_ENOMEM;
        say(err, errcap, "saving written arguments", NULL, rc);
        goto fail;
    }
    memcpy(out->bufs, bufs, n * sizeof(*bufs));
    out->n = n;
    if (ops->mem_free_bytes(dev, &free_bytes) == KC_OK) {
        size_t margin =
            free_bytes / 8 > SAVE_MARGIN_MIN ? free_bytes / 8 : SAVE_MARGIN_MIN;
        on_device = need <= free_bytes && free_bytes - need >= margin;
    }
    for (size_t i = 0; i < n; i++) {
        if (!bufs[i].bytes)
            continue;
        /* An allocation that fails despite the estimate falls back to host. */
        if (on_device && ops->mem_alloc(dev, bufs[i].bytes, &out->dev_copy[i]) == KC_OK) {
            rc =
                ops->copy_dtod(dev, out->dev_copy[i], bufs[i].ptr, bufs[i].bytes, stream);
            if (rc != KC_OK) {
                say(err, errcap, "saving a written argument", dev, rc);
                goto fail;
            }
            out->device_bytes += bufs[i].bytes;
            continue;
        }
        out->dev_copy[i] = 0;
        out->host_copy[i] = malloc(bufs[i].bytes);
        if (!out->host_copy[i]) {
            rc = KC_ENOMEM;
            say(err, errcap, "saving a written argument in host memory", NULL, rc);
            goto fail;
        }
        rc = ops->copy_dtoh(dev, out->host_copy[i], bufs[i].ptr, bufs[i].bytes, stream);
        if (rc != KC_OK) {
            say(err, errcap, "saving a written argument", dev, rc);
            goto fail;
        }
        out->host_bytes += bufs[i].bytes;
    }
    rc = ops->stream_sync(dev, stream);
    if (rc != KC_OK) {
        say(err, errcap, "saving written arguments", dev, rc);
        goto fail;
    }
    return KC_OK;
fail:
    kc__saved_release(dev, out);
    return rc;
}

int kc__saved_restore(kc__device_t *dev, void *stream, const kc__saved_t *saved,
                      char *err, size_t errcap)
{
    int rc = KC_OK;

    for (size_t i = 0; i < saved->n && rc == KC_OK; i++) {
        const kc__tune_buf_t *b = &saved->bufs[i];
        if (!b->bytes)
            continue;
        if (saved->dev_copy[i])
            rc = dev->ops->copy_dtod(dev, b->ptr, saved->dev_copy[i], b->bytes, stream);
        else
            rc = dev->ops->copy_htod(dev, b->ptr, saved->host_copy[i], b->bytes, stream);
    }
    if (rc == KC_OK && saved->n)
        rc = dev->ops->stream_sync(dev, stream);
    if (rc != KC_OK)
        say(err, errcap, "restoring written arguments", dev, rc);
    return rc;
}

void kc__saved_release(kc__device_t *dev, kc__saved_t *saved)
{
    for (size_t i = 0; i < saved->n; i++) {
        if (saved->dev_copy && saved->dev_copy[i])
            dev->ops->mem_free(dev, saved->dev_copy[i]);
        if (saved->host_copy)
            free(saved->host_copy[i]);
    }
    free(saved->bufs);
    free(saved->dev_copy);
    free(saved->host_copy);
    memset(saved, 0, sizeof(*saved));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One launch of a candidate, under its binary's ABI if it has one. */
static int run(kc__device_t *dev, const kc__tune_cand_t *c, void *stream, void **params)
{
    if (c->abi)
        return kc__abi_launch(dev, c->abi, c->fn, c->grid, stream, params, c->n_args);
    return dev->ops->launch(dev, c->fn, c->grid, c->block, c->shared, stream, params);
}

int kc__tune_time(kc__device_t *dev, const kc__tune_opts_t *opts, void *stream,
                  const kc__tune_cand_t *c, void **params, uint64_t *median_ns,
                  char *reason, size_t reason_cap)
{
    const kc__device_ops_t *ops = dev->ops;
    unsigned max_reps = opts->max_reps ? opts->max_reps : 1;
    unsigned min_reps = opts->min_reps < max_reps ? opts->min_reps : max_reps;
    void *start = NULL, *end = NULL;
    double *samples = NULL, total = 0;
    unsigned reps = 0;
    int rc;

    kc__device_clear_errmsg(dev);
    for (unsigned w = 0; w < opts->warmup; w++) {
        rc = run(dev, c, stream, params);
        if (rc != KC_OK) {
            say(reason, reason_cap, "launch", dev, rc);
            goto fail;
        }
    }
    /* Launch errors can surface asynchronously: catch them before timing. */
    rc = ops->stream_sync(dev, stream);
    if (rc != KC_OK) {
        say(reason, reason_cap, "launch", dev, rc);
        goto fail;
    }
    samples = malloc(max_reps * sizeof(*samples));
    if (!samples) {
        rc = KC_ENOMEM;
        say(reason, reason_cap, "timing", NULL, rc);
        goto fail;
    }
    rc = ops->event_create(dev, &start);
    if (rc == KC_OK)
        rc = ops->event_create(dev, &end);
    if (rc != KC_OK) {
        say(reason, reason_cap, "creating timing events", dev, rc);
        goto fail;
    }
    while (reps < max_reps && (reps < min_reps || total < opts->budget_ms)) {
        float ms = 0;
        if (!opts->no_l2_flush) {
            rc = ops->flush_l2(dev, stream);
            if (rc != KC_OK) {
                say(reason, reason_cap, "flushing L2", dev, rc);
                goto fail;
            }
        }
        rc = ops->event_record(dev, start, stream);
        if (rc != KC_OK) {
            say(reason, reason_cap, "recording an event", dev, rc);
            goto fail;
        }
        rc = run(dev, c, stream, params);
        if (rc != KC_OK) {
            say(reason, reason_cap, "launch", dev, rc);
            goto fail;
        }
        rc = ops->event_record(dev, end, stream);
        if (rc == KC_OK)
            rc = ops->event_elapsed_ms(dev, start, end, &ms);
        if (rc != KC_OK) {
            say(reason, reason_cap, "timing", dev, rc);
            goto fail;
        }
        samples[reps++] = ms;
        total += ms;
    }
    qsort(samples, reps, sizeof(*samples), cmp_double);
    double med =
        reps % 2 ? samples[reps / 2] : (samples[reps / 2 - 1] + samples[reps / 2]) / 2;
    *median_ns = (uint64_t)(med * 1e6 + 0.5);
    rc = KC_OK;
fail:
    if (start)
        ops->event_destroy(dev, start);
    if (end)
        ops->event_destroy(dev, end);
    free(samples);
    return rc;
}

int kc__tune(kc__device_t *dev, const kc__tune_opts_t *opts, void *stream,
             const kc__tune_buf_t *bufs, size_t n_bufs, kc__tune_cand_t *cands, size_t n,
             void **params, size_t *winner, char *err, size_t errcap)
{
    kc__saved_t saved;
    size_t best = n;
    int rc;

    rc = kc__saved_take(dev, stream, bufs, n_bufs, &saved, err, errcap);
    if (rc != KC_OK)
        return rc == KC_ESTICKY ? KC_ESTICKY : rc;
    for (size_t i = 0; i < n; i++) {
        kc__tune_cand_t *c = &cands[i];
        if (c->status != KC_CAND_OK || !c->fn)
            continue;
        rc = kc__saved_restore(dev, stream, &saved, err, errcap);
        if (rc != KC_OK)
            goto fail;
        c->reason[0] = '\0';
        rc = kc__tune_time(dev, opts, stream, c, params, &c->median_ns, c->reason,
                           sizeof(c->reason));
        if (rc == KC_ESTICKY) {
            snprintf(err, errcap,
                     "candidate %zu broke the CUDA context (%s); tuning stopped, the "
                     "context must be recreated",
                     i, c->reason);
            c->status = KC_CAND_LAUNCH_FAILED;
            goto fail;
        }
        if (rc == KC_ETOOBIG) {
            c->status = KC_CAND_RESOURCES;
            continue;
        }
        if (rc != KC_OK) {
            c->status = KC_CAND_LAUNCH_FAILED;
            continue;
        }
        if (best == n || c->median_ns < cands[best].median_ns)
            best = i;
    }
    rc = kc__saved_restore(dev, stream, &saved, err, errcap);
    if (rc != KC_OK)
        goto fail;
    if (best == n) {
        rc = KC_ENOCANDIDATE;
        snprintf(err, errcap, "none of the %zu candidates ran", n);
        goto fail;
    }
    *winner = best;
fail:
    kc__saved_release(dev, &saved);
    return rc;
}
