/* Autotuning on the real arguments: load the candidates, time them, record
 * the tuning, publish it (builds and tuning in one transaction) and push it
 * to the remote tier behind. */
#include "kernel_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* ---- publishing -------------------------------------------------------- */

static void tune_state_free(kc_kernel_t *k, tune_state_t *s, size_t keep)
{
    for (size_t i = 0; s->modules && i < k->n_cands; i++)
        if (s->modules[i] && i != keep)
            k->l->dev->ops->module_unload(k->l->dev, s->modules[i]);
    free(s->tc);
    free(s->modules);
    free(s->fns);
    free(s->preps);
}

/* Load every compiled candidate and evaluate its geometry; failures are
 * recorded in its kc__tune_cand_t. Returns the number that can run, or a
 * negative code for a sticky error. */
static int load_candidates(kc_kernel_t *k, const kc_arg_t *args, size_t n,
                           tune_state_t *s)
{
    kc__device_t *dev = k->l->dev;
    int runnable = 0;

    for (size_t i = 0; i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        kc__tune_cand_t *t = &s->tc[i];
        const int64_t *row = k->spec->candidates + i * k->spec->s.n_params;
        int rc;

        t->status = c->status;
        if (c->status == KC_CAND_OK &&
            kc__cand_misfit(k, i, args, t->reason, sizeof(t->reason)) != SIZE_MAX) {
            t->status = KC_CAND_LAUNCH_FAILED; /* its specialization; reason set */
            continue;
        }
        if (c->status != KC_CAND_OK) {
            snprintf(t->reason, sizeof(t->reason), "%s",
                     c->reason ? c->reason : "failed");
            continue;
        }
        kc__ensure_cubin(k, c, i);
        if (c->status != KC_CAND_OK) {
            t->status = c->status;
            snprintf(t->reason, sizeof(t->reason), "%s",
                     c->reason ? c->reason : "failed");
            continue;
        }
        kc__device_clear_errmsg(dev);
        rc = kc__load_cubin(k, c->cubin, c->cubin_len, c->entry, &s->modules[i],
                            &s->fns[i]);
        if (rc == KC_ESTICKY) {
            kc__errmsg_set(k->l, "%s: loading candidate %zu: %s", kname(k), i,
                           kc__device_errmsg(dev));
            return KC_ESTICKY;
        }
        if (rc != KC_OK) {
            t->status = KC_CAND_LOAD_FAILED;
            snprintf(t->reason, sizeof(t->reason), "load failed: %.200s (%s)",
                     kc__device_errmsg(dev), kc_err_name(rc));
            continue;
        }
        dev->ops->func_attrs(dev, s->fns[i], &c->attrs);
        rc = kc__prepare(k->spec, row, NULL, args, n, &s->preps[i], t->reason,
                         sizeof(t->reason));
        if (rc == KC_EINVAL) {
            kc__errmsg_set(k->l, "%s: %zu arguments given, the spec has %zu", kname(k), n,
                           k->spec->s.n_args);
            return KC_EINVAL;
        }
        if (rc != KC_OK) {
            t->status = kc__geometry_status(k, &s->preps[i]);
            continue;
        }
        if (k->abis) {
            s->preps[i].block[0] = k->abis[i].threads;
            s->preps[i].block[1] = s->preps[i].block[2] = 1;
            s->preps[i].shared = k->abis[i].dyn_smem;
            t->abi = &k->abis[i];
            t->n_args = n;
        }
        if (s->preps[i].shared > SMEM_NO_OPTIN &&
            dev->ops->set_dyn_smem(dev, s->fns[i], s->preps[i].shared) != KC_OK) {
            t->status = KC_CAND_RESOURCES;
            snprintf(t->reason, sizeof(t->reason), "%.250s", kc__device_errmsg(dev));
            continue;
        }
        t->fn = s->fns[i];
        memcpy(t->grid, s->preps[i].grid, sizeof(t->grid));
        memcpy(t->block, s->preps[i].block, sizeof(t->block));
        t->shared = s->preps[i].shared;
        runnable++;
    }
    return runnable;
}

/* Step 1, run: load every candidate, time the runnable ones on the real
 * arguments (one candidate: no timing), then the one real launch of the
 * winner on the restored buffers. *winner is SIZE_MAX when none ran; a
 * failure of the winner's real launch is recorded on it. */
static int tune_run(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                    tune_state_t *s, size_t *winner, int *timed)
{
    kc_launcher_t *l = k->l;
    kc__device_t *dev = l->dev;
    const kc__spec_t *sp = k->spec;
    kc__tune_buf_t bufs[KC__MAX_ARGS];
    size_t n_bufs = 0;
    char err[1024] = "";
    int rc, runnable;

    *winner = SIZE_MAX;
    *timed = 0;
    rc = dev->ops->bind(dev);
    if (rc != KC_OK) {
        kc__errmsg_set(k->l, "%s: %s", kname(k), kc__device_errmsg(dev));
        return rc;
    }
    runnable = load_candidates(k, args, n, s);
    if (runnable < 0)
        return runnable;
    /* The arguments are the same for every candidate: only the geometry
     * and the compiled code differ. */
    rc = kc__build_params(k->l, sp, args, n, s->preps[0].vals, s->preps[0].params);
    if (rc != KC_OK)
        return rc;
    for (size_t i = 1; i < k->n_cands; i++) {
        memcpy(s->preps[i].vals, s->preps[0].vals, n * sizeof(scalar_t));
        for (size_t a = 0; a < n; a++)
            s->preps[i].params[a] = sp->s.args[a].kind == KC_ARG_POINTER
                                        ? s->preps[0].params[a]
                                        : (void *)&s->preps[i].vals[a];
    }

    if (runnable == 1) {
        /* One candidate: nothing to choose, so no timing. */
        for (size_t i = 0; i < k->n_cands; i++)
            if (s->tc[i].status == KC_CAND_OK && s->tc[i].fn)
                *winner = i;
    } else if (runnable > 1) {
        for (size_t a = 0; a < n; a++)
            if (sp->s.args[a].kind == KC_ARG_POINTER &&
                (sp->s.args[a].access & KC_ACCESS_OUT) && args[a].ptr)
                bufs[n_bufs++] = (kc__tune_buf_t){
                    args[a].ptr, kc__written_bytes(&sp->s.args[a], &args[a])};
        rc = kc__tune(dev, &l->tune, stream, bufs, n_bufs, s->tc, k->n_cands,
                      s->preps[0].params, winner, err, sizeof(err));
        *timed = 1;
        if (rc == KC_ESTICKY) {
            kc__errmsg_set(k->l, "%s: %s", kname(k), err);
            return rc;
        }
        if (rc != KC_OK && rc != KC_ENOCANDIDATE) {
            kc__errmsg_set(k->l, "%s: tuning: %s", kname(k), err);
            return rc;
        }
    }
    /* The one real launch: the user's buffers were restored after tuning. */
    if (*winner != SIZE_MAX) {
        kc__tune_cand_t *w = &s->tc[*winner];
        rc = kc__launch_cand(k, *winner, s->fns[*winner], &s->preps[*winner], stream);
        if (rc == KC_ESTICKY) {
            kc__errmsg_set(k->l, "%s: launch: %s", kname(k), kc__device_errmsg(dev));
            return rc;
        }
        if (rc != KC_OK) {
            w->status = rc == KC_ETOOBIG ? KC_CAND_RESOURCES : KC_CAND_LAUNCH_FAILED;
            snprintf(w->reason, sizeof(w->reason), "launch: %.200s (%s)",
                     kc__device_errmsg(dev), kc_err_name(rc));
            *winner = SIZE_MAX;
        }
    }
    return KC_OK;
}

/* Step 2, record: every candidate's result as the tuning record lists them
 * (rec_cands[k->n_cands]); *failed counts those that did not run. With no
 * winner, KC_ENOCANDIDATE and a message naming the first failures. */
static int tune_record(kc_kernel_t *k, const tune_state_t *s, size_t winner,
                       kc_candidate_t *rec_cands, size_t *failed)
{
    const kc__spec_t *sp = k->spec;
    char err[1024];

    *failed = 0;
    for (size_t i = 0; i < k->n_cands; i++) {
        const kc__tune_cand_t *t = &s->tc[i];
        rec_cands[i] = (kc_candidate_t){
            .params = k->cand_params + i * sp->s.n_params,
            .n_params = sp->s.n_params,
            .status = t->status,
            .median_ns = t->status == KC_CAND_OK ? t->median_ns : 0,
            .reason = t->status == KC_CAND_OK ? "" : t->reason,
        };
        if (k->cands[i].status == KC_CAND_OK)
            rec_cands[i].build = k->cands[i].build_key;
        if (t->status != KC_CAND_OK) {
            (*failed)++;
            if (k->cands[i].status == KC_CAND_OK) /* compile failures counted once */
                bump(&k->candidates_failed);
        }
    }
    if (winner != SIZE_MAX)
        return KC_OK;
    size_t len = (size_t)snprintf(
        err, sizeof(err), "%s: none of %zu candidates ran:", kname(k), k->n_cands);
    for (size_t i = 0; i < k->n_cands && i < 4 && len < sizeof(err); i++)
        len += (size_t)snprintf(err + len, sizeof(err) - len, " [%zu] %s: %s;", i,
                                kc_cand_status_name(s->tc[i].status), s->tc[i].reason);
    kc__errmsg_set(k->l, "%s", err);
    return KC_ENOCANDIDATE;
}

/* Step 3, publish: the builds and the tuning for m's signature in one
 * transaction, then the tuning pushed to the remote tier behind, unless
 * the caller pushes it itself (push_tuning 0: it holds the tuning's remote
 * lease, and pushes before releasing it). A failure to publish costs only
 * a later process's tuning: the launch already happened. Returns whether
 * the builds and the tuning are in the store. */
static int tune_publish(kc_kernel_t *k, const kc__miss_t *m, size_t winner,
                        const kc_candidate_t *rec_cands, uint64_t started_us,
                        int push_tuning)
{
    kc_launcher_t *l = k->l;
    const kc__spec_t *sp = k->spec;
    void *pre = NULL;
    size_t pre_len = 0;
    kc_key_t tkey;
    int published;

    bump(&k->tunes);
    if (l->store)
        kc_store_count(l->store, KC_COUNTER_TUNES, 1);
    if (kc__tuning_key(k, m->sig, m->len, &pre, &pre_len, &tkey) != KC_OK)
        return 0;
    kc_tuning_rec_t tr = {
        .preimage = {pre, pre_len},
        .winner = k->cand_params + winner * sp->s.n_params,
        .n_winner = sp->s.n_params,
        .winner_build = k->cands[winner].build_key,
        .candidates = rec_cands,
        .n_candidates = k->n_cands,
        .tuning_us = now_us() - started_us,
        .device_name = l->info.name,
        .arch = l->arch,
        .sm_count = l->info.sm_count,
        .driver_version = l->info.driver_version,
        .created = (uint64_t)time(NULL),
    };
    published = l->store && kc__publish(k, &tr) == KC_OK;
    if (published && push_tuning)
        kc__remote_push_later(l, KC_REC_TUNING, &tkey);
    kc_free(pre);
    return published;
}

static void log_winner(kc_kernel_t *k, const tune_state_t *s, size_t winner, int timed,
                       size_t failed)
{
    const kc__spec_t *sp = k->spec;
    char cfg[256] = "";
    size_t len = 0;

    for (size_t p = 0; p < sp->s.n_params && len < sizeof(cfg); p++)
        len += (size_t)snprintf(
            cfg + len, sizeof(cfg) - len, "%s%s=%lld", p ? " " : "", sp->s.params[p].name,
            (long long)k->cand_params[winner * sp->s.n_params + p].value);
    kc__log(k->l, KC_LOG_INFO,
            "kcache: %s: %s %s (%llu ns) of %zu candidates, %zu failed", kname(k),
            timed ? "tuned:" : "one candidate:", cfg,
            (unsigned long long)s->tc[winner].median_ns, k->n_cands, failed);
}

/* Tune m's signature on the real arguments and launch the winner once:
 * run, record, publish (push_tuning: as tune_publish); then keep the
 * winner's module and memoize it into *m->out. */
int kc__tune_and_publish(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                         const kc__miss_t *m, int push_tuning)
{
    const kc__spec_t *sp = k->spec;
    tune_state_t s = {0};
    kc_candidate_t *rec_cands = NULL;
    size_t winner, failed;
    uint64_t t0 = now_us();
    int rc, timed;

    s.tc = calloc(k->n_cands, sizeof(*s.tc));
    s.modules = calloc(k->n_cands, sizeof(*s.modules));
    s.fns = calloc(k->n_cands, sizeof(*s.fns));
    s.preps = calloc(k->n_cands, sizeof(*s.preps));
    rec_cands = calloc(k->n_cands, sizeof(*rec_cands));
    if (!s.tc || !s.modules || !s.fns || !s.preps || !rec_cands) {
        rc = KC_ENOMEM;
        kc__errmsg_set(k->l, "%s: out of memory while tuning", kname(k));
        goto fail;
    }
    rc = tune_run(k, stream, args, n, &s, &winner, &timed);
    if (rc != KC_OK)
        goto fail;
    rc = tune_record(k, &s, winner, rec_cands, &failed);
    if (rc != KC_OK) {
        kc__publish(k, NULL); /* the candidates' builds are still worth keeping */
        goto fail;
    }
    int published = tune_publish(k, m, winner, rec_cands, t0, push_tuning);
    log_winner(k, &s, winner, timed, failed);

    /* Resident (the bound may unload it) only if its build is now in the
     * store, where a later launch can load it again. */
    kept_t *kept =
        kc__keep_module(k, &k->cands[winner].build_key, s.modules[winner], &s.fns[winner],
                        k->cands[winner].compile_us, published, 0);
    /* The launch happened: a memo without room only means the next launch
     * of this signature resolves it again. */
    if (kc__memoize(k, m, kept, s.fns[winner], winner,
                    sp->candidates + winner * sp->s.n_params) != KC_OK)
        *m->out = NULL;
    rc = KC_OK;
    /* The winner's module now belongs to the kept list. */
    tune_state_free(k, &s, winner);
    s = (tune_state_t){0};
fail:
    tune_state_free(k, &s, SIZE_MAX);
    free(rec_cands);
    return rc;
}
