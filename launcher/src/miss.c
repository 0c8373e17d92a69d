/* A signature missing from the memo: the stored tuning (memo -> layers ->
 * remote tier), else single flight (one thread of the process, one process
 * of the machine under the tuning lease) tunes while the others wait or run
 * untuned. */
#include "kernel_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "deadline.h"

/* ---- the store --------------------------------------------------------- */

static size_t find_row(const kc_kernel_t *k, const int64_t *config)
{
    size_t np = k->spec->s.n_params;
    for (size_t i = 0; i < k->n_cands; i++)
        if (!np ||
            memcmp(k->spec->candidates + i * np, config, np * sizeof(int64_t)) == 0)
            return i;
    return SIZE_MAX;
}

/* A stored tuning: map its winner onto this spec's parameters and load the
 * winning build (or find it loaded). Anything that does not fit is a miss,
 * never an error. *compile_us receives what its build cost to compile, for
 * the "saved" counter. */
static int load_stored_winner(kc_kernel_t *k, const kc_tuning_rec_t *t, int64_t *config,
                              size_t *cand, kept_t **kept, void **fn,
                              uint64_t *compile_us)
{
    const kc__spec_t *sp = k->spec;
    kc_store_t *st = k->l->store;
    int fetched, rc;

    if (t->n_winner != sp->s.n_params)
        return KC_ENOTFOUND;
    for (size_t p = 0; p < sp->s.n_params; p++) {
        size_t w = 0;
        while (w < t->n_winner && strcmp(t->winner[w].name, sp->s.params[p].name) != 0)
            w++;
        if (w == t->n_winner)
            return KC_ENOTFOUND;
        config[p] = t->winner[w].value;
    }
    *cand = find_row(k, config);
    if (sp->prebuilt) {
        /* Prebuilt candidates are told apart by their binaries, and the
         * launch needs the winner's ABI: no candidate, no hit. */
        *cand = SIZE_MAX;
        for (size_t i = 0; i < k->n_cands; i++)
            if (kc_key_cmp(&sp->prebuilt[i], &t->winner_build) == 0)
                *cand = i;
        if (*cand == SIZE_MAX)
            return KC_ENOTFOUND;
    }
    /* The prefetch at registration may be loading it: then this waits for
     * that load; a build it has not reached yet is loaded here. */
    rc = kc__load_stored(k, &t->winner_build, 1, kept, fn, compile_us, &fetched);
    if (rc == KC_OK) {
        kc_store_touch(st, KC_REC_BUILD, &t->winner_build);
    } else if (rc != KC_ENOTFOUND) {
        kc__log(k->l, KC_LOG_WARN,
                "kcache: %s: stored build unusable (%s: %s); tuning again", kname(k),
                kc_strerror(rc), rc == KC_ESTICKY ? kc__device_errmsg(k->l->dev) : "");
    }
    return rc;
}

/* ---- resolving a missed signature -------------------------------------- */

/* The store's tuning for tkey, loaded and memoized into *out: KC_OK on a
 * hit; KC_ENOTFOUND on a miss, with *had_tuning set when a tuning was
 * there but its winner could not be loaded; or an error to return. */
static int store_hit(kc_kernel_t *k, const kc__miss_t *m, const kc_key_t *tkey,
                     int *had_tuning)
{
    kc_launcher_t *l = k->l;
    kc_store_t *st = l->store;
    kc_record_t *rec = NULL;
    int64_t config[KC__SPEC_MAX_PARAMS];
    size_t cand = SIZE_MAX;
    kept_t *kept = NULL;
    void *fn = NULL;
    uint64_t compile_us = 0;
    int rc = kc_layers_get(l->layers, KC_REC_TUNING, tkey, &rec, NULL);

    *had_tuning = rc == KC_OK;
    if (rc != KC_OK)
        return KC_ENOTFOUND;
    /* No bind: the device makes its context current when it loads. */
    rc = load_stored_winner(k, &rec->u.tuning, config, &cand, &kept, &fn, &compile_us);
    if (rc == KC_OK) {
        kc_store_count(st, KC_COUNTER_TUNE_US_SAVED, rec->u.tuning.tuning_us);
        kc_store_count(st, KC_COUNTER_COMPILE_US_SAVED, compile_us);
    }
    kc_free(rec);
    if (rc == KC_ESTICKY) {
        kc__errmsg_set(k->l, "%s: loading the stored winner: %s", kname(k),
                       kc__device_errmsg(l->dev));
        return rc;
    }
    if (rc != KC_OK)
        return KC_ENOTFOUND;
    bump(&k->store_hits);
    kc_store_count(st, KC_COUNTER_HITS, 1);
    kc_store_touch(st, KC_REC_TUNING, tkey);
    rc = kc__memoize(k, m, kept, fn, cand, config);
    if (rc != KC_OK)
        kc__errmsg_set(k->l, "%s: out of memory in the memo", kname(k));
    return rc;
}

/* Launch the first candidate, in spec order, that compiled and whose
 * geometry fits the arguments, without tuning, publishing or memoizing:
 * another process is tuning this signature. */
static int launch_untuned(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n)
{
    kc_launcher_t *l = k->l;
    const kc__spec_t *sp = k->spec;
    char err[512] = "no candidate compiled";
    prep_t p;
    int rc = kc_kernel_wait_compiled(k);

    if (rc != KC_OK)
        return rc;
    rc = l->dev->ops->bind(l->dev);
    if (rc != KC_OK) {
        kc__errmsg_set(k->l, "%s: %s", kname(k), kc__device_errmsg(l->dev));
        return rc;
    }
    for (size_t i = 0; i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        void *module = NULL, *fn = NULL;
        kept_t *kept;

        if (c->status != KC_CAND_OK ||
            kc__cand_misfit(k, i, args, err, sizeof(err)) != SIZE_MAX)
            continue;
        if (kc__prepare(sp, sp->candidates + i * sp->s.n_params, NULL, args, n, &p, err,
                        sizeof(err)) != KC_OK)
            continue;
        /* Pinned: the launcher's bound must not unload it under the launch. */
        kept = kc__pin_kept(k, &c->build_key, &fn);
        if (!kept) {
            /* The cubin and the candidate's fields are the tuner's too. */
            pthread_mutex_lock(&l->tune_lock);
            kc__ensure_cubin(k, c, i);
            rc = c->status == KC_CAND_OK
                     ? kc__load_cubin(k, c->cubin, c->cubin_len, c->entry, &module, &fn)
                     : KC_ECOMPILE;
            pthread_mutex_unlock(&l->tune_lock);
            if (rc == KC_ESTICKY) {
                kc__errmsg_set(k->l, "%s: loading candidate %zu: %s", kname(k), i,
                               kc__device_errmsg(l->dev));
                return rc;
            }
            if (rc != KC_OK)
                continue;
            /* Not resident: another process is tuning, so its build may
             * not be in the store yet. */
            kept = kc__keep_module(k, &c->build_key, module, &fn, c->compile_us, 0, 1);
        }
        rc = kc__build_params(k->l, sp, args, n, p.vals, p.params);
        if (rc == KC_OK)
            rc = kc__launch_cand(k, i, fn, &p, stream);
        if (kept)
            kc__unpin(kept);
        if (rc != KC_OK)
            kc__errmsg_set(k->l, "%s: untuned launch: %s", kname(k),
                           kc__device_errmsg(l->dev));
        return rc;
    }
    kc__errmsg_set(k->l, "%s: no candidate can run untuned: %s", kname(k), err);
    return KC_ENOCANDIDATE;
}

/* What single_flight decided. */
enum { SF_TUNE, SF_HIT, SF_UNTUNED };

/* Single flight across processes on a missed tuning: take the lease on
 * its key (then *leased and SF_TUNE), or, while another live process holds
 * it, wait for its tuning (SF_HIT, memoized into *out) or run untuned
 * (SF_UNTUNED), as the launcher's contention option says. A lease that
 * cannot be taken for another reason lets this process tune unleased. */
static int single_flight(kc_kernel_t *k, const kc__miss_t *m, const kc_key_t *tkey,
                         int *what, int *leased)
{
    kc_launcher_t *l = k->l;
    kc_store_t *st = l->store;
    uint64_t deadline = 0;
    unsigned nap = 1;
    int waited = 0, had, rc;

    *what = SF_TUNE;
    for (;;) {
        rc = kc_store_lease_acquire(st, tkey, l->lease_ttl_ms, NULL);
        if (rc == KC_OK) {
            /* Published between the lookup and the lease (or by the
             * holder we waited for before it died)? */
            rc = store_hit(k, m, tkey, &had);
            if (rc == KC_ENOTFOUND) {
                *leased = 1;
                return KC_OK;
            }
            kc_store_lease_release(st, tkey);
            *what = SF_HIT;
            return rc;
        }
        if (rc != KC_EBUSY)
            return KC_OK;
        if (!waited) {
            /* The holder may be waiting for builds this process holds
             * leases on: publish them before waiting for it. */
            kc_kernel_wait_compiled(k);
            pthread_mutex_lock(&l->tune_lock);
            kc__publish(k, NULL);
            pthread_mutex_unlock(&l->tune_lock);
            deadline = now_us() + l->lease_wait_ms * 1000u;
            waited = 1;
        }
        if (l->contention == KC_CONTENTION_UNTUNED) {
            *what = SF_UNTUNED;
            return KC_OK;
        }
        rc = store_hit(k, m, tkey, &had);
        if (rc != KC_ENOTFOUND) {
            *what = SF_HIT;
            return rc;
        }
        if (now_us() >= deadline) {
            kc__log(l, KC_LOG_WARN,
                    "kcache: %s: another process has been tuning this signature for "
                    "over %llu ms; launching untuned",
                    kname(k), (unsigned long long)l->lease_wait_ms);
            *what = SF_UNTUNED;
            return KC_OK;
        }
        nap_ms(&nap);
    }
}

/* ---- the remote tier: read on a miss ------------------------------------- */

/* A local miss: pull the tuning's chain from the remote into the writable
 * store (verified there), then take it as a store hit. KC_ENOTFOUND when
 * the remote has nothing usable (or is down: it fails open). */
static int remote_hit(kc_kernel_t *k, const kc__miss_t *m, const kc_key_t *tkey)
{
    kc_launcher_t *l = k->l;
    int had, rc = kc_remote_pull(l->remote, l->store, tkey);

    kc__remote_account(l);
    if (rc != KC_OK) {
        if (rc != KC_ENOTFOUND)
            kc__remote_failed(l, "pull", rc);
        return KC_ENOTFOUND;
    }
    rc = store_hit(k, m, tkey, &had);
    if (rc == KC_OK) {
        bump(&k->remote_hits);
        kc__log(l, KC_LOG_DEBUG, "kcache: %s: tuning pulled from the remote tier",
                kname(k));
    }
    return rc;
}

/* ---- the remote tier: single flight across machines ---------------------- */

/* Keeps a remote lease alive while this machine compiles and tunes: renews
 * it every third of its life until stopped. */
typedef struct renewer {
    kc_launcher_t *l;
    kc_key_t key;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, running;
} renewer_t;

static void *renew_main(void *arg)
{
    renewer_t *w = arg;
    uint64_t every_ms = w->l->lease_ttl_ms / 3 ? w->l->lease_ttl_ms / 3 : 1;

    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until = kc__deadline_after(CLOCK_REALTIME, every_ms * 1000000u);
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        kc_remote_lease_acquire(w->l->remote, &w->key, w->l->lease_ttl_ms);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void renewer_start(renewer_t *w, kc_launcher_t *l, const kc_key_t *key)
{
    *w = (renewer_t){.l = l, .key = *key};
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    /* Without the thread the lease still lives lease_ttl_ms. */
    w->running = pthread_create(&w->th, NULL, renew_main, w) == 0;
}

static void renewer_stop(renewer_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->running)
        pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Single flight across machines on a missed tuning: take the remote lease
 * on its key (then *rleased and SF_TUNE); while another machine holds it,
 * pull its tuning as soon as it is pushed (SF_HIT), or run untuned (at
 * once with KC_CONTENTION_UNTUNED, else after lease_wait_ms). A lease that
 * cannot be asked (the remote down) lets this machine tune: fail open. */
static int remote_flight(kc_kernel_t *k, const kc__miss_t *m, const kc_key_t *tkey,
                         int *what, int *rleased)
{
    kc_launcher_t *l = k->l;
    uint64_t deadline = now_us() + l->lease_wait_ms * 1000u;
    unsigned nap = 1;
    int rc, logged = 0;

    *what = SF_TUNE;
    *rleased = 0;
    for (;;) {
        rc = kc_remote_lease_acquire(l->remote, tkey, l->lease_ttl_ms);
        if (rc == KC_OK) {
            /* Pushed between our pull and the lease, or by the holder that
             * just released it? */
            rc = remote_hit(k, m, tkey);
            if (rc == KC_ENOTFOUND) {
                *rleased = 1;
                return KC_OK;
            }
            kc_remote_lease_release(l->remote, tkey);
            *what = SF_HIT;
            return rc;
        }
        if (rc != KC_EBUSY) {
            kc__remote_failed(l, "lease", rc);
            kc__remote_account(l);
            return KC_OK;
        }
        if (l->contention == KC_CONTENTION_UNTUNED) {
            *what = SF_UNTUNED;
            return KC_OK;
        }
        if (!logged) {
            kc__log(l, KC_LOG_DEBUG,
                    "kcache: %s: another machine is tuning this signature; waiting for "
                    "its tuning on the remote tier",
                    kname(k));
            logged = 1;
        }
        nap_ms(&nap);
        rc = remote_hit(k, m, tkey);
        if (rc != KC_ENOTFOUND) {
            *what = SF_HIT;
            return rc;
        }
        if (now_us() >= deadline) {
            kc__log(l, KC_LOG_WARN,
                    "kcache: %s: another machine has been tuning this signature for over "
                    "%llu ms; launching untuned",
                    kname(k), (unsigned long long)l->lease_wait_ms);
            *what = SF_UNTUNED;
            return KC_OK;
        }
    }
}

/* The leader's work for one signature: the store, else compile and tune.
 * *launched says whether the real launch already happened (tuning does
 * it, so that it runs on the restored buffers). */
static int resolve_leader(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                          const kc__miss_t *m, int *launched)
{
    kc_launcher_t *l = k->l;
    kc_store_t *st = l->store;
    kc_key_t tkey;
    int rc, leased = 0, rleased = 0;
    renewer_t renewer;

    if (st) {
        void *pre = NULL;
        size_t pre_len;
        int had_tuning = 0, keyed;

        rc = kc__tuning_key(k, m->sig, m->len, &pre, &pre_len, &tkey);
        kc_free(pre);
        keyed = rc == KC_OK;
        if (keyed) {
            rc = store_hit(k, m, &tkey, &had_tuning);
            if (rc != KC_ENOTFOUND)
                return rc;
            if (!had_tuning && l->remote) {
                rc = remote_hit(k, m, &tkey);
                if (rc != KC_ENOTFOUND)
                    return rc;
            }
        }
        kc_store_count(st, KC_COUNTER_MISSES, 1);
        kc_store_count(
            st, had_tuning ? KC_COUNTER_MISS_BUILD_UNUSABLE : KC_COUNTER_MISS_NO_TUNING,
            1);
        if (keyed && leasing(l)) {
            int what;
            rc = single_flight(k, m, &tkey, &what, &leased);
            if (rc == KC_OK && what == SF_TUNE && l->remote) {
                /* This process leads on this machine: now across machines. */
                rc = remote_flight(k, m, &tkey, &what, &rleased);
                if (what != SF_TUNE && leased) {
                    kc_store_lease_release(st, &tkey);
                    leased = 0;
                }
            }
            if (rc != KC_OK || what == SF_HIT)
                return rc;
            if (what == SF_UNTUNED) {
                rc = launch_untuned(k, stream, args, n);
                *launched = rc == KC_OK;
                return rc;
            }
        }
    }
    if (rleased)
        renewer_start(&renewer, l, &tkey);

    kc_kernel_wait_compiled(k);
    /* Renew: the compiles may have taken a good part of the lease's life. */
    if (leased)
        kc_store_lease_acquire(st, &tkey, l->lease_ttl_ms, NULL);
    /* Serialized per launcher: timings taken side by side on one device
     * would disturb each other. */
    pthread_mutex_lock(&l->tune_lock);
    /* With the remote lease, the tuning is pushed below, before the lease
     * goes; else queued. */
    rc = kc__tune_and_publish(k, stream, args, n, m, !rleased);
    pthread_mutex_unlock(&l->tune_lock);
    /* After the publish: a waiter that finds the lease gone finds the
     * tuning too (or, after a failure, tunes itself). Across machines the
     * tuning must be on the remote first: pushed here, not behind. */
    if (rleased) {
        renewer_stop(&renewer);
        if (rc == KC_OK) {
            int prc = kc_remote_push(l->remote, st, &tkey);
            if (prc != KC_OK)
                kc__remote_failed(l, "push", prc);
        }
        kc_remote_lease_release(l->remote, &tkey);
        kc__remote_account(l);
    }
    if (leased)
        kc_store_lease_release(st, &tkey);
    *launched = rc == KC_OK;
    return rc;
}

/* In-process single flight: one thread per signature resolves a miss while
 * the others wait for it, then find the result in the memo. If the leader
 * fails, a waiter takes over and tries itself. */
int kc__resolve(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                const kc__miss_t *m, int *launched)
{
    flight_t *f;
    int rc;

    *m->out = NULL;
    *launched = 0;
    if (k->abis) {
        /* A binary run on arguments its specialization excludes computes
         * wrong results or faults: refuse the launch unless one fits. A
         * signature holds each argument's class (aligned, divisible by 16,
         * 1), so the check is made once per signature, here. */
        char why[256] = "";
        size_t bad = SIZE_MAX, fits = 0;
        for (size_t i = 0; i < k->n_cands && !fits; i++) {
            char err[256];
            size_t a = kc__cand_misfit(k, i, args, err, sizeof(err));
            if (a == SIZE_MAX)
                fits = 1;
            else if (bad == SIZE_MAX) {
                bad = a;
                snprintf(why, sizeof(why), "%s", err);
            }
        }
        if (!fits) {
            kc__errmsg_set(k->l, "%s: launch refused: %s (candidate 0%s)", kname(k), why,
                           k->n_cands > 1 ? "; no candidate admits these arguments" : "");
            return KC_EINVAL;
        }
    }
    pthread_mutex_lock(&k->mu);
    for (;;) {
        *m->out = kc__memo_find(&k->memo, m->sig, m->len, m->hash);
        if (*m->out) {
            pthread_mutex_unlock(&k->mu);
            return KC_OK;
        }
        for (f = k->flights; f; f = f->next)
            if (f->hash == m->hash && f->len == m->len &&
                memcmp(f->sig, m->sig, m->len) == 0)
                break;
        if (!f)
            break;
        f->waiters++;
        while (!f->done)
            pthread_cond_wait(&k->flight_cv, &k->mu);
        if (--f->waiters == 0)
            free(f);
    }
    f = malloc(sizeof(*f) + m->len);
    if (!f) {
        pthread_mutex_unlock(&k->mu);
        kc__errmsg_set(k->l, "%s: out of memory", kname(k));
        return KC_ENOMEM;
    }
    *f = (flight_t){.next = k->flights, .hash = m->hash, .len = m->len};
    memcpy(f->sig, m->sig, m->len);
    k->flights = f;
    pthread_mutex_unlock(&k->mu);

    rc = resolve_leader(k, stream, args, n, m, launched);

    pthread_mutex_lock(&k->mu);
    for (flight_t **pp = &k->flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    f->done = 1;
    if (f->waiters == 0)
        free(f);
    else
        pthread_cond_broadcast(&k->flight_cv);
    pthread_mutex_unlock(&k->mu);
    return rc;
}
