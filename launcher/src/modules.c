/* Loaded modules: a winner's module kept loaded (one per build; for the
 * kernel's lifetime, or until the launcher's bound unloads it, resident.c),
 * a cubin loaded and its function looked up, and the prefetch at
 * registration of the modules that won before. */
#include "kernel_int.h"
#include "wire.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* ---- kept modules ------------------------------------------------------ */

/* Under k->mu: m's module is loaded again (m was unloaded). */
static void reloaded_locked(kept_t *m, void *module, void *fn)
{
    m->module = module;
    atomic_store_explicit(&m->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&m->used, 1, memory_order_relaxed);
    m->gen++;
    atomic_store(&m->state, KEPT_LIVE);
}

/* Under k->mu: whether m's module is loaded; one being unloaded is taken
 * back (its unloader sees the generation change and leaves it). */
static int usable_locked(kept_t *m)
{
    int state = atomic_load(&m->state);
    if (state == KEPT_RETIRING) {
        m->gen++;
        atomic_store(&m->state, KEPT_LIVE);
        return 1;
    }
    return state == KEPT_LIVE;
}

/* Under k->mu: the kept entry of build, loaded or not. */
static kept_t *kept_of_locked(const kc_kernel_t *k, const kc_key_t *build)
{
    for (kept_t *m = k->kept; m; m = m->next)
        if (kc_key_cmp(&m->build, build) == 0)
            return m;
    return NULL;
}

/* Under k->mu: pin m for the caller (its state is KEPT_LIVE, so an
 * unloader takes the pin into account). */
static void pin_locked(kept_t *m, void **fn)
{
    atomic_fetch_add(&m->pins, 1);
    *fn = atomic_load_explicit(&m->fn, memory_order_relaxed);
}

kept_t *kc__keep_module(kc_kernel_t *k, const kc_key_t *build, void *module, void **fn,
                        uint64_t compile_us, int resident, int pin)
{
    kc_launcher_t *l = k->l;
    int loaded = 0, reloaded = 0;
    kept_t *m;

    /* A prebuilt binary's shared-memory opt-in is made once, before the
     * function is kept where other threads find it and launch it; a failure
     * shows at its launch. (If another thread kept one first, this call on
     * our copy was only wasted.) */
    for (size_t i = 0; k->abis && i < k->n_cands; i++)
        if (kc_key_cmp(&k->spec->prebuilt[i], build) == 0) {
            kc__abi_opt_in(l->dev, &k->abis[i], *fn);
            break;
        }
    pthread_mutex_lock(&k->mu);
    m = kept_of_locked(k, build);
    if (m && usable_locked(m)) {
        *fn = atomic_load_explicit(&m->fn, memory_order_relaxed);
        if (pin)
            pin_locked(m, fn);
        pthread_mutex_unlock(&k->mu);
        l->dev->ops->module_unload(l->dev, module);
        return m;
    }
    if (m) {
        /* Unloaded by the bound: ours is its module again. */
        reloaded_locked(m, module, *fn);
        loaded = reloaded = m->resident;
    } else {
        m = calloc(1, sizeof(*m));
        if (m) {
            m->next = k->kept;
            m->k = k;
            m->build = *build;
            m->module = module;
            atomic_init(&m->fn, *fn);
            m->compile_us = compile_us;
            atomic_init(&m->state, KEPT_LIVE);
            atomic_init(&m->pins, 0);
            atomic_init(&m->used, 1);
            m->resident = resident && l->bounded && kc__resident_add(l, m);
            loaded = m->resident;
            k->kept = m;
        }
    }
    if (m && pin)
        pin_locked(m, fn);
    pthread_mutex_unlock(&k->mu);
    /* Without memory to track it the module simply stays loaded until the
     * process ends; the launch still works. */
    if (loaded)
        kc__resident_loaded(l, reloaded);
    return m;
}

/* Under k->mu: the kept entry of build if its module is loaded, with
 * its function and what its build cost. */
static kept_t *kept_locked(kc_kernel_t *k, const kc_key_t *build, void **fn,
                           uint64_t *compile_us)
{
    kept_t *m = kept_of_locked(k, build);

    if (!m || !usable_locked(m))
        return NULL;
    *fn = atomic_load_explicit(&m->fn, memory_order_relaxed);
    *compile_us = m->compile_us;
    return m;
}

kept_t *kc__pin_kept(kc_kernel_t *k, const kc_key_t *build, void **fn)
{
    uint64_t compile_us;

    pthread_mutex_lock(&k->mu);
    kept_t *m = kept_locked(k, build, fn, &compile_us);
    if (m)
        pin_locked(m, fn);
    pthread_mutex_unlock(&k->mu);
    return m;
}

/* Under k->mu: the slot of build among the loads in progress, or -1. */
static int loading_slot(const kc_kernel_t *k, const kc_key_t *build)
{
    for (size_t i = 0; i < k->n_loading; i++)
        if (kc_key_cmp(&k->loading[i], build) == 0)
            return (int)i;
    return -1;
}

int kc__load_stored(kc_kernel_t *k, const kc_key_t *build, int wait, kept_t **kept,
                    void **fn, uint64_t *compile_us, int *fetched)
{
    kc_record_t *brec = NULL;
    void *cubin = NULL, *module = NULL;
    size_t cubin_len = 0;
    int claimed = 0, rc;

    *fetched = 0;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        if ((*kept = kept_locked(k, build, fn, compile_us))) {
            pthread_mutex_unlock(&k->mu);
            return KC_OK;
        }
        /* Without wait (the prefetch), a module the bound unloaded is left
         * for a launch to load again: it was not launched lately. */
        if (!wait && kept_of_locked(k, build)) {
            pthread_mutex_unlock(&k->mu);
            return KC_EBUSY;
        }
        if (loading_slot(k, build) < 0)
            break;
        if (!wait) {
            pthread_mutex_unlock(&k->mu);
            return KC_EBUSY;
        }
        /* Another thread is loading it: its module, or its failure, comes
         * with the broadcast; a failure lets this thread try itself. */
        pthread_cond_wait(&k->compiled_cv, &k->mu);
    }
    if (k->n_loading < KC__LOADING_MAX) {
        k->loading[k->n_loading++] = *build;
        claimed = 1;
    }
    pthread_mutex_unlock(&k->mu);

    rc = kc_layers_get_build_cubin(k->l->layers, build, &brec, &cubin, &cubin_len, NULL);
    if (rc == KC_OK)
        rc = kc__load_cubin(k, cubin, cubin_len, brec->u.build.entry, &module, fn);
    if (rc == KC_OK) {
        *compile_us = brec->u.build.compile_us;
        *kept = kc__keep_module(k, build, module, fn, *compile_us, 1, 0);
        *fetched = 1;
    }
    kc_free(cubin);
    kc_free(brec);
    if (claimed) {
        pthread_mutex_lock(&k->mu);
        int slot = loading_slot(k, build);
        if (slot >= 0)
            k->loading[slot] = k->loading[--k->n_loading];
        pthread_cond_broadcast(&k->compiled_cv);
        pthread_mutex_unlock(&k->mu);
    }
    return rc;
}

int kc__pin_slow(kc_kernel_t *k, kept_t *m, void **fn)
{
    for (;;) {
        kept_t *kept = NULL;
        uint64_t compile_us = 0;
        int fetched = 0;

        pthread_mutex_lock(&k->mu);
        if (usable_locked(m)) {
            pin_locked(m, fn);
            pthread_mutex_unlock(&k->mu);
            return KC_OK;
        }
        pthread_mutex_unlock(&k->mu);
        /* Unloaded by the bound: its build is in the store (that is what
         * made it resident), unless something removed it since. */
        int rc = kc__load_stored(k, &m->build, 1, &kept, fn, &compile_us, &fetched);
        if (rc != KC_OK) {
            kc__errmsg_set(k->l,
                           "%s: loading its unloaded module again from the store: %s%s%s",
                           kname(k), kc_strerror(rc), rc == KC_ESTICKY ? ": " : "",
                           rc == KC_ESTICKY ? kc__device_errmsg(k->l->dev) : "");
            return rc;
        }
    }
}

int kc__load_cubin(kc_kernel_t *k, const void *cubin, size_t len, const char *entry,
                   void **module, void **fn)
{
    kc__device_t *dev = k->l->dev;
    int rc = dev->ops->module_load(dev, cubin, len, module);
    if (rc != KC_OK)
        return rc;
    rc = dev->ops->get_function(dev, *module, entry, fn);
    if (rc != KC_OK) {
        dev->ops->module_unload(dev, *module);
        *module = NULL;
    }
    return rc;
}

/* ---- prefetch: the asynchronous load at registration ------------------- */

/* At registration the shape signatures to come are unknown, but the store
 * knows which configs won for this kernel on this device class before. A
 * pool task loads those winners' modules, so that the first launch of a
 * stored signature finds its module loaded and costs a tuning lookup and a
 * memo insert, not a decompress and a cuModuleLoadData. It loads at most
 * KC__PREFETCH_MAX distinct builds. A launch that comes first simply loads
 * its winner itself; keep_module drops the copy that loses the race.
 *
 * Which builds won for a kernel is found in the launcher's prefetch index:
 * the first prefetch of the launcher reads every stored tuning once (a
 * store holds thousands, not millions) and files each one's winner under
 * its kernel (prefetch_id) if it was tuned on this device class; later
 * registrations look their kernel up. Tunings stored after that pass (by
 * another process) are not prefetched: their first launch loads them. */
typedef struct prefetch_entry {
    kc_key_t id; /* prefetch_id */
    size_t n;
    kc_key_t builds[]; /* n distinct winners, in the order the stores gave them */
} prefetch_entry_t;

static int same_entry(const void *item, const void *key)
{
    return kc_key_cmp(&((const prefetch_entry_t *)item)->id, key) == 0;
}

/* The key of what a tuning's winner is prefetched for: the kernel's
 * source, its entry and options, its space (the device is checked apart).
 * Kept in this process only: the bytes hashed are the wire format's. */
static int prefetch_id(kc_source_kind_t kind, const kc_key_t *source,
                       const kc_key_t *space, const char *entry,
                       const char *const *options, size_t n_options, kc_key_t *out)
{
    kc__wbuf_t w;
    void *buf = NULL;
    size_t len = 0;

    kc__wbuf_init(&w);
    kc__w_u8(&w, (uint8_t)kind);
    kc__w_bytes(&w, source->b, sizeof(source->b));
    kc__w_bytes(&w, space->b, sizeof(space->b));
    kc__w_str(&w, entry);
    kc__w_u32(&w, (uint32_t)n_options);
    for (size_t i = 0; i < n_options; i++)
        kc__w_str(&w, options[i]);
    int rc = kc__wbuf_finish(&w, &buf, &len);
    if (rc != KC_OK)
        return rc;
    *out = kc_key_hash(buf, len);
    free(buf);
    return KC_OK;
}

/* A stored tuning: its winner filed under its kernel, if it was tuned on
 * this launcher's device class. */
static int index_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                        const void *data, size_t len)
{
    kc_launcher_t *l = user;
    kc_record_t *rec = NULL;
    kc_tuning_desc_t *d = NULL;
    prefetch_entry_t *e, *grown;
    void *old = NULL;
    kc_key_t id;

    (void)kind;
    (void)key;
    if (kc_record_decode(data, len, &rec) != KC_OK ||
        kc_tuning_preimage_decode(rec->u.tuning.preimage.data,
                                  rec->u.tuning.preimage.size, &d) != KC_OK)
        goto done;
    if (strcmp(d->arch, l->arch) != 0 || d->sm_count != l->info.sm_count ||
        strcmp(d->device_name, l->info.name) != 0 ||
        prefetch_id(d->source_kind, &d->source_digest, &d->space_digest, d->entry,
                    d->options, d->n_options, &id) != KC_OK)
        goto done;
    uint64_t h = kc__index_key_hash(&id);
    e = kc__index_get(&l->prefetch_index, h, same_entry, &id);
    if (e && e->n == KC__PREFETCH_MAX)
        goto done;
    for (size_t i = 0; e && i < e->n; i++)
        if (kc_key_cmp(&e->builds[i], &rec->u.tuning.winner_build) == 0)
            goto done;
    /* A new entry, or a copy with one winner more that replaces the old one
     * (freed only once the index no longer holds it). */
    size_t n = e ? e->n : 0;
    grown = malloc(sizeof(*e) + (n + 1) * sizeof(kc_key_t));
    if (!grown)
        goto done;
    *grown = (prefetch_entry_t){.id = id, .n = n};
    if (n)
        memcpy(grown->builds, e->builds, n * sizeof(kc_key_t));
    grown->builds[grown->n++] = rec->u.tuning.winner_build;
    if (kc__index_put(&l->prefetch_index, h, grown, same_entry, &id, &old) != KC_OK) {
        free(grown);
        goto done;
    }
    free(old);
done:
    kc_free(d);
    kc_free(rec);
    return 0;
}

/* Under the launcher's prefetch lock: the stored winners of kernel k, read
 * from every layer the first time. */
static size_t stored_winners(kc_kernel_t *k, kc_key_t *builds)
{
    kc_launcher_t *l = k->l;
    const kc__spec_t *sp = k->spec;
    const prefetch_entry_t *e;
    kc_key_t id;
    size_t n = 0;

    if (!l->prefetch_indexed) {
        for (size_t i = 0; i < kc_layers_count(l->layers); i++)
            kc_store_iterate(kc_layers_store(l->layers, i), KC_REC_TUNING, index_tuning,
                             l);
        l->prefetch_indexed = 1;
    }
    if (prefetch_id(sp->s.source_kind, &sp->source_digest, &sp->space_digest, sp->s.entry,
                    sp->s.options, sp->s.n_options, &id) != KC_OK)
        return 0;
    e = kc__index_get(&l->prefetch_index, kc__index_key_hash(&id), same_entry, &id);
    for (; e && n < e->n; n++)
        builds[n] = e->builds[n];
    return n;
}

void kc__prefetch_winners(void *arg)
{
    kc_kernel_t *k = ((compile_task_t *)arg)->k;
    kc_key_t builds[KC__PREFETCH_MAX];

    pthread_mutex_lock(&k->l->prefetch_lock);
    size_t n = stored_winners(k, builds);
    pthread_mutex_unlock(&k->l->prefetch_lock);
    for (size_t i = 0; i < n; i++) {
        kept_t *kept = NULL;
        void *fn = NULL;
        uint64_t compile_us = 0;
        int fetched = 0;

        /* A build that a launch is loading already is left to it: the
         * prefetch never makes a launch wait, nor waits for one. */
        if (kc__load_stored(k, &builds[i], 0, &kept, &fn, &compile_us, &fetched) ==
                KC_OK &&
            fetched)
            bump(&k->prefetched);
    }
    pthread_mutex_lock(&k->mu);
    k->prefetch_done = 1;
    pthread_cond_broadcast(&k->compiled_cv);
    pthread_mutex_unlock(&k->mu);
}

/* Memoize: the config-only geometry is evaluated here, once, not on every
 * launch. If it fails (it cannot for a config that ran), the entry simply
 * evaluates everything per launch. */
int kc__memoize(kc_kernel_t *k, const kc__miss_t *m, kept_t *kept, void *fn, size_t cand,
                const int64_t *config)
{
    int64_t geo[KC__MEMO_GEO];
    int fixed_ok = kc__spec_eval_geometry_fixed(k->spec, config, geo, NULL, 0) == KC_OK;
    /* A module the bound never unloads (no bound, or its build is not in
     * the store) needs no pin: its launches take the function as is. */
    if (kept && !kept->resident)
        kept = NULL;
    return kc__memo_insert(&k->memo, m->sig, m->len, m->hash, kept, fn, cand, config,
                           k->spec->s.n_params, fixed_ok ? geo : NULL, m->out);
}
