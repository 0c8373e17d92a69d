/* Loaded modules: a winner's module kept loaded for the kernel's lifetime
 * (one per build), a cubin loaded and its function looked up, and the
 * prefetch at registration of the modules that won before. */
#include "kernel_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* ---- kept modules ------------------------------------------------------ */

/* Keep module as the loaded copy of build, or if another thread kept one
 * first, unload ours and use that. */
void kc__keep_module(kc_kernel_t *k, const kc_key_t *build, void **module, void **fn,
                     uint64_t compile_us)
{
    kept_t *m;

    pthread_mutex_lock(&k->mu);
    for (m = k->kept; m; m = m->next)
        if (kc_key_cmp(&m->build, build) == 0)
            break;
    if (m) {
        pthread_mutex_unlock(&k->mu);
        k->l->dev->ops->module_unload(k->l->dev, *module);
        *module = m->module;
        *fn = m->fn;
        return;
    }
    m = malloc(sizeof(*m));
    if (m) {
        *m = (kept_t){k->kept, *build, *module, *fn, compile_us};
        k->kept = m;
    }
    pthread_mutex_unlock(&k->mu);
    /* A prebuilt binary's shared-memory opt-in is made once, here, for
     * every launch of the function kept; a failure shows at its launch. */
    for (size_t i = 0; k->abis && i < k->n_cands; i++)
        if (kc_key_cmp(&k->spec->prebuilt[i], build) == 0) {
            kc__abi_opt_in(k->l->dev, &k->abis[i], *fn);
            break;
        }
    /* Without memory to track it the module simply stays loaded until the
     * process ends; the launch still works. */
}

int kc__find_kept(kc_kernel_t *k, const kc_key_t *build, void **module, void **fn,
                  uint64_t *compile_us)
{
    int found = 0;
    pthread_mutex_lock(&k->mu);
    for (kept_t *m = k->kept; m; m = m->next)
        if (kc_key_cmp(&m->build, build) == 0) {
            *module = m->module;
            *fn = m->fn;
            if (compile_us)
                *compile_us = m->compile_us;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&k->mu);
    return found;
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
 * memo insert, not a decompress and a cuModuleLoadData. It scans the tuning
 * records (a store holds thousands, not millions) and loads at most
 * KC__PREFETCH_MAX distinct builds. A launch that comes first simply loads
 * its winner itself; keep_module drops the copy that loses the race. */
#define KC__PREFETCH_MAX 16

typedef struct prefetch_scan {
    kc_kernel_t *k;
    kc_key_t builds[KC__PREFETCH_MAX];
    size_t n;
} prefetch_scan_t;

static int same_options(const kc_tuning_desc_t *d, const kc_kernel_spec_t *s)
{
    if (d->n_options != s->n_options)
        return 0;
    for (size_t i = 0; i < d->n_options; i++)
        if (strcmp(d->options[i], s->options[i]) != 0)
            return 0;
    return 1;
}

static int scan_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    prefetch_scan_t *ps = user;
    const kc_kernel_t *k = ps->k;
    const kc__spec_t *sp = k->spec;
    kc_record_t *rec = NULL;
    kc_tuning_desc_t *d = NULL;

    (void)kind;
    (void)key;
    if (kc_record_decode(data, len, &rec) != KC_OK ||
        kc_tuning_preimage_decode(rec->u.tuning.preimage.data,
                                  rec->u.tuning.preimage.size, &d) != KC_OK)
        goto done;
    if (d->source_kind != sp->s.source_kind ||
        kc_key_cmp(&d->source_digest, &sp->source_digest) != 0 ||
        kc_key_cmp(&d->space_digest, &sp->space_digest) != 0 ||
        strcmp(d->entry, sp->s.entry) != 0 || !same_options(d, &sp->s) ||
        strcmp(d->arch, k->l->arch) != 0 || d->sm_count != k->l->info.sm_count ||
        strcmp(d->device_name, k->l->info.name) != 0)
        goto done;
    for (size_t i = 0; i < ps->n; i++)
        if (kc_key_cmp(&ps->builds[i], &rec->u.tuning.winner_build) == 0)
            goto done;
    ps->builds[ps->n++] = rec->u.tuning.winner_build;
done:
    kc_free(d);
    kc_free(rec);
    return ps->n == KC__PREFETCH_MAX; /* stop once full */
}

void kc__prefetch_winners(void *arg)
{
    kc_kernel_t *k = ((compile_task_t *)arg)->k;
    prefetch_scan_t ps = {.k = k};

    for (size_t i = 0; i < kc_layers_count(k->l->layers) && ps.n < KC__PREFETCH_MAX; i++)
        kc_store_iterate(kc_layers_store(k->l->layers, i), KC_REC_TUNING, scan_tuning,
                         &ps);
    for (size_t i = 0; i < ps.n; i++) {
        kc_record_t *brec = NULL;
        void *cubin = NULL, *module = NULL, *fn = NULL;
        size_t cubin_len = 0;

        if (kc__find_kept(k, &ps.builds[i], &module, &fn, NULL))
            continue;
        if (kc_layers_get_build_cubin(k->l->layers, &ps.builds[i], &brec, &cubin,
                                      &cubin_len, NULL) == KC_OK &&
            kc__load_cubin(k, cubin, cubin_len, brec->u.build.entry, &module, &fn) ==
                KC_OK) {
            kc__keep_module(k, &ps.builds[i], &module, &fn, brec->u.build.compile_us);
            bump(&k->prefetched);
        }
        kc_free(cubin);
        kc_free(brec);
    }
    pthread_mutex_lock(&k->mu);
    k->prefetch_done = 1;
    pthread_cond_broadcast(&k->compiled_cv);
    pthread_mutex_unlock(&k->mu);
}

/* Memoize: the config-only geometry is evaluated here, once, not on every
 * launch. If it fails (it cannot for a config that ran), the entry simply
 * evaluates everything per launch. */
int kc__memoize(kc_kernel_t *k, const kc__miss_t *m, void *fn, void *module, size_t cand,
                const int64_t *config)
{
    int64_t geo[KC__MEMO_GEO];
    int fixed_ok = kc__spec_eval_geometry_fixed(k->spec, config, geo, NULL, 0) == KC_OK;
    return kc__memo_insert(&k->memo, m->sig, m->len, m->hash, fn, module, cand, config,
                           k->spec->s.n_params, fixed_ok ? geo : NULL, m->out);
}
