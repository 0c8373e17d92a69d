/* Kernels: registration (a spec becomes a kernel whose candidates start
 * compiling on the pool at once), the queries on a kernel, and its
 * teardown. The launch flow starts in launch.c. */
#include "kernel_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static kc_kernel_t *kernel_next(const kc_kernel_t *k)
{
    return k->next;
}

/* Queue the candidates' tasks on the pool; a task it refuses runs here. */
static void start_tasks(kc_kernel_t *k)
{
    for (size_t i = 0; i < k->n_cands; i++)
        if (kc__pool_submit(k->l->pool, kc__compile_one, &k->tasks[i]) != KC_OK)
            kc__compile_one(&k->tasks[i]);
}

int kc_kernel_wait_compiled(kc_kernel_t *k)
{
    int ok = 0;

    if (!k)
        return KC_EINVAL;
    pthread_mutex_lock(&k->mu);
    int held = k->tasks_held;
    k->tasks_held = 0;
    pthread_mutex_unlock(&k->mu);
    if (held)
        start_tasks(k);
    pthread_mutex_lock(&k->mu);
    while (!k->compile_done || !k->prefetch_done)
        pthread_cond_wait(&k->compiled_cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
    for (size_t i = 0; i < k->n_cands; i++)
        ok += k->cands[i].status == KC_CAND_OK;
    if (ok)
        return KC_OK;
    kc__errmsg_set(k->l, "%s: no candidate compiled; candidate 0: %s", kname(k),
                   k->cands[0].reason ? k->cands[0].reason : "failed");
    return KC_ECOMPILE;
}

static void abis_free(kc__abi_t *abis, size_t n)
{
    for (size_t i = 0; abis && i < n; i++)
        kc__abi_clear(&abis[i]);
    free(abis);
}

static void kernel_free(kc_kernel_t *k)
{
    kc__device_t *dev = k->l->dev;

    for (kept_t *m = k->kept, *next; m; m = next) {
        next = m->next;
        if (dev)
            dev->ops->module_unload(dev, m->module);
        free(m);
    }
    if (k->cands)
        kc__release_build_leases(k);
    for (size_t i = 0; k->cands && i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        free(c->reason);
        kc_free(c->cubin);
        kc_free(c->preimage);
        kc_free(c->entry);
    }
    abis_free(k->abis, k->n_cands);
    free(k->cands);
    free(k->cand_params);
    free(k->tasks);
    kc__memo_destroy(&k->memo);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->compiled_cv);
    pthread_cond_destroy(&k->flight_cv);
    kc__spec_free(k->spec);
    free(k);
}

/* A prebuilt kernel's candidates: each build's launch metadata, from the
 * store's layers, checked against the spec and the device at registration,
 * so that a binary kcache cannot launch right (TMA, another arch, other
 * arguments) fails here with the reason, not at the first launch. */
static int load_abis(kc_launcher_t *l, const kc__spec_t *sp, kc__abi_t **out)
{
    size_t n = sp->n_candidates;
    kc__abi_t *abis = calloc(n, sizeof(*abis));
    int rc = KC_OK;

    *out = NULL;
    if (!abis) {
        kc__errmsg_set(l, "out of memory registering a kernel");
        return KC_ENOMEM;
    }
    if (!l->layers) {
        kc__errmsg_set(l,
                       "spec '%s': a prebuilt kernel needs a store that holds its "
                       "binaries, and the launcher has none",
                       sp->s.name);
        free(abis);
        return KC_ESPEC;
    }
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        kc_record_t *rec = NULL;
        char hex[KC_KEY_HEX_LEN + 1], err[512] = "";
        kc_key_to_hex(&sp->prebuilt[i], hex);
        rc = kc_layers_get(l->layers, KC_REC_BINMETA, &sp->prebuilt[i], &rec, NULL);
        if (rc != KC_OK) {
            kc__errmsg_set(l,
                           "spec '%s': candidates[%zu]: build %s has no launch metadata "
                           "in the store (%s): import the binary first (cachectl "
                           "import-triton)",
                           sp->s.name, i, hex, kc_strerror(rc));
            rc = KC_ESPEC;
            break;
        }
        rc = kc__abi_from_binmeta(&rec->u.binmeta, sp, l->arch, &abis[i], err,
                                  sizeof(err));
        kc_free(rec);
        if (rc != KC_OK)
            kc__errmsg_set(l, "spec '%s': candidates[%zu] (build %s): %s", sp->s.name, i,
                           hex, err);
    }
    if (rc != KC_OK) {
        abis_free(abis, n);
        return rc;
    }
    *out = abis;
    return KC_OK;
}

static int same_identity(const void *item, const void *key)
{
    return kc_key_cmp(&((const kc_kernel_t *)item)->spec->identity, key) == 0;
}

static int same_name(const void *item, const void *key)
{
    return strcmp(((const kc_kernel_t *)item)->spec->s.name, key) == 0;
}

/* Register an owned spec: the same identity gives the kernel already
 * registered. Takes spec in every case. */
static int register_spec(kc_launcher_t *l, kc__spec_t *spec, kc_kernel_t **out)
{
    kc_kernel_t *k = NULL;
    kc__abi_t *abis = NULL;
    int rc = KC_ENOMEM;

    if (spec->s.n_args > KC__MAX_ARGS) {
        kc__errmsg_set(l, "spec '%s': args: %zu arguments, at most %d are supported",
                       spec->s.name, spec->s.n_args, KC__MAX_ARGS);
        kc__spec_free(spec);
        return KC_ESPEC;
    }
    /* The store is opened at the first registration (launcher.c). */
    kc__launcher_open_store(l);
    if (spec->prebuilt && (rc = load_abis(l, spec, &abis)) != KC_OK) {
        kc__spec_free(spec);
        return rc;
    }
    rc = KC_ENOMEM;
    pthread_mutex_lock(&l->lock);
    kc_kernel_t *x = kc__index_get(&l->by_identity, kc__index_key_hash(&spec->identity),
                                   same_identity, &spec->identity);
    if (x) {
        pthread_mutex_unlock(&l->lock);
        abis_free(abis, spec->n_candidates);
        kc__spec_free(spec);
        *out = x;
        return KC_OK;
    }
    /* Room in both indexes first: once the kernel exists, its puts cannot
     * fail. */
    if (kc__index_reserve(&l->by_identity, l->by_identity.count + 1) != KC_OK ||
        kc__index_reserve(&l->by_name, l->by_name.count + 1) != KC_OK)
        goto fail;
    k = calloc(1, sizeof(*k));
    if (!k)
        goto fail;
    k->l = l;
    k->spec = spec;
    k->abis = abis;
    abis = NULL;
    spec = NULL;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->compiled_cv, NULL);
    pthread_cond_init(&k->flight_cv, NULL);
    if (kc__memo_init(&k->memo) != KC_OK) {
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->compiled_cv);
        pthread_cond_destroy(&k->flight_cv);
        spec = k->spec;
        free(k);
        k = NULL;
        goto fail;
    }
    size_t nc = k->spec->n_candidates, np = k->spec->s.n_params;
    k->n_cands = nc;
    k->cands = calloc(nc, sizeof(*k->cands));
    k->cand_params = calloc(nc * np + 1, sizeof(*k->cand_params));
    k->tasks = calloc(nc, sizeof(*k->tasks));
    if (!k->cands || !k->cand_params || !k->tasks) {
        kernel_free(k);
        k = NULL;
        goto fail;
    }
    for (size_t i = 0; i < nc; i++) {
        for (size_t p = 0; p < np; p++)
            k->cand_params[i * np + p] =
                (kc_param_t){k->spec->s.params[p].name, k->spec->candidates[i * np + p]};
        k->tasks[i] = (compile_task_t){k, i};
    }
    /* NVRTC's version, part of CUDA build keys, is read by the compile
     * tasks: loading NVRTC takes milliseconds that registration, and a warm
     * launch that needs no build key, should not wait for. */
    /* PTX builds are keyed by what turns them into cubins: nvJitLink where
     * the toolkit has it (any machine, no driver), else this driver's JIT. */
    if (k->spec->s.source_kind == KC_SOURCE_PTX && kc__nvjitlink_load(NULL, 0) == KC_OK)
        snprintf(k->toolchain, sizeof(k->toolchain), "%s", kc__nvjitlink_toolchain_id());
    else
        snprintf(k->toolchain, sizeof(k->toolchain), "driver-%u", l->info.driver_version);
    k->pending = nc;
    k->compile_done = nc == 0;
    /* Threads only for work that needs them. A prebuilt kernel's
     * candidates are binaries in the store: nothing compiles, and a launch
     * of a stored tuning needs none of them, so their tasks (build lookups)
     * wait for a miss that tunes (kc_kernel_wait_compiled). The prefetch
     * and the warm-up then use threads a compile started, and start none:
     * without them, the first launch loads its winner itself. */
    int hold = k->spec->prebuilt != NULL && nc > 0;
    k->tasks_held = hold;
    /* Prefetch only where a device will launch and a store may hold
     * winners. */
    int prefetch = l->dev && l->store && !l->no_prefetch;
    k->prefetch_done = !prefetch;
    k->prefetch_task = (compile_task_t){k, 0};
    k->next = l->kernels;
    l->kernels = k;
    kc__index_put(&l->by_identity, kc__index_key_hash(&k->spec->identity), k,
                  same_identity, &k->spec->identity, NULL);
    kc__index_put(&l->by_name, kc__index_str_hash(k->spec->s.name), k, same_name,
                  k->spec->s.name, NULL);
    pthread_mutex_unlock(&l->lock);

    /* The prefetch first: a stored winner is what the first launch most
     * likely needs, and the pool runs tasks in order, so queued behind the
     * candidates' compiles it would start after them. Then the asynchronous
     * compile at load: every candidate at once. A task the pool refuses
     * runs here instead; a held kernel's prefetch that finds no thread is
     * not run at all. */
    if (prefetch) {
        rc = hold ? kc__pool_submit_idle(l->pool, kc__prefetch_winners, &k->prefetch_task)
                  : kc__pool_submit(l->pool, kc__prefetch_winners, &k->prefetch_task);
        if (rc == KC_EBUSY) {
            pthread_mutex_lock(&k->mu);
            k->prefetch_done = 1;
            pthread_mutex_unlock(&k->mu);
        } else if (rc != KC_OK) {
            kc__prefetch_winners(&k->prefetch_task);
        }
    }
    /* The warm-up (the launcher's first registration only) ahead of the
     * compiles: it is short, and a launch of a stored kernel, which needs
     * none of the compiles, may follow at once. */
    kc__launcher_warm_once(l, !hold);
    if (!hold)
        start_tasks(k);
    *out = k;
    return KC_OK;
fail:
    pthread_mutex_unlock(&l->lock);
    if (spec)
        abis_free(abis, spec->n_candidates);
    kc__spec_free(spec);
    kc__errmsg_set(l, "out of memory registering a kernel");
    return rc;
}

int kc_kernel_get(kc_launcher_t *l, const kc_kernel_spec_t *in, kc_kernel_t **out)
{
    kc__spec_t *spec = NULL;
    char err[1024];
    int rc;

    if (out)
        *out = NULL;
    if (!l || !in || !out) {
        kc__errmsg_set(l, "kc_kernel_get: NULL argument");
        return KC_EINVAL;
    }
    err[0] = '\0';
    rc = kc__spec_create(in, &spec, err, sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set(l, "%s", err);
        return rc;
    }
    return register_spec(l, spec, out);
}

/* Register every spec of a loaded array (takes the specs). */
static int register_all(kc_launcher_t *l, const char *what, kc__spec_t **specs,
                        size_t count, kc_kernel_t ***out, size_t *n)
{
    kc_kernel_t **ks = malloc((count ? count : 1) * sizeof(*ks));
    size_t i = 0;
    int rc = KC_OK;

    if (!ks) {
        rc = KC_ENOMEM;
        kc__errmsg_set(l, "%s: out of memory", what);
        goto fail;
    }
    for (; i < count; i++) {
        kc__spec_t *sp = specs[i];
        specs[i] = NULL; /* register_spec takes it */
        rc = register_spec(l, sp, &ks[i]);
        if (rc != KC_OK)
            goto fail;
    }
    kc__spec_free_array(specs, count);
    *out = ks;
    *n = count;
    return KC_OK;
fail:
    /* Kernels registered so far stay with the launcher. */
    free(ks);
    kc__spec_free_array(specs, count);
    return rc;
}

int kc_kernel_load_file(kc_launcher_t *l, const char *path, kc_kernel_t ***out, size_t *n)
{
    kc__spec_t **specs = NULL;
    size_t count = 0;
    char err[1024];
    int rc;

    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!l || !path || !out || !n)
        return KC_EINVAL;
    err[0] = '\0';
    rc = kc__spec_load_json(path, &specs, &count, err, sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set(l, "%s", err);
        return rc;
    }
    return register_all(l, path, specs, count, out, n);
}

int kc_kernel_load_json(kc_launcher_t *l, const char *json, size_t len, const char *name,
                        const char *base_dir, kc_kernel_t ***out, size_t *n)
{
    kc__spec_t **specs = NULL;
    size_t count = 0;
    char err[1024];
    int rc;

    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!l || !json || !out || !n)
        return KC_EINVAL;
    if (!name)
        name = "spec";
    err[0] = '\0';
    rc = kc__spec_load_json_mem(json, len, name, base_dir, &specs, &count, err,
                                sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set(l, "%s", err);
        return rc;
    }
    return register_all(l, name, specs, count, out, n);
}

int kc_kernel_find(kc_launcher_t *l, const char *name, kc_kernel_t **out)
{
    if (out)
        *out = NULL;
    if (!l || !name || !out)
        return KC_EINVAL;
    pthread_mutex_lock(&l->lock);
    *out = kc__index_get(&l->by_name, kc__index_str_hash(name), same_name, name);
    pthread_mutex_unlock(&l->lock);
    return *out ? KC_OK : KC_ENOTFOUND;
}

int kc_kernel_stats(const kc_kernel_t *k, kc_kernel_stats_t *out)
{
    if (!k || !out)
        return KC_EINVAL;
    /* Misses first: a launch in flight may be counted in launches and not
     * yet classified, never the other way round, so hits never underflow. */
    uint64_t misses = atomic_load(&k->memo_misses);
    out->launches = atomic_load(&k->launches);
    out->memo_hits = out->launches - misses;
    out->store_hits = atomic_load(&k->store_hits);
    out->tunes = atomic_load(&k->tunes);
    out->compiles = atomic_load(&k->compiles);
    out->builds_reused = atomic_load(&k->builds_reused);
    out->candidates_failed = atomic_load(&k->candidates_failed);
    out->publishes = atomic_load(&k->publishes);
    out->prefetched = atomic_load(&k->prefetched);
    out->remote_hits = atomic_load(&k->remote_hits);
    out->configs = k->n_cands;
    return KC_OK;
}

const char *kc_kernel_name(const kc_kernel_t *k)
{
    return k ? k->spec->s.name : "";
}

int kc_kernel_candidate(const kc_kernel_t *k, size_t i, kc_param_t *out, size_t cap,
                        size_t *n, const char **reason)
{
    kc_kernel_t *kk = (kc_kernel_t *)k;
    int done;

    if (!k || !n || (cap && !out) || i >= k->n_cands)
        return KC_EINVAL;
    pthread_mutex_lock(&kk->mu);
    done = kk->compile_done;
    pthread_mutex_unlock(&kk->mu);
    if (!done)
        return KC_EBUSY;
    size_t np = k->spec->s.n_params;
    *n = np;
    for (size_t p = 0; p < np && p < cap; p++)
        out[p] = k->cand_params[i * np + p];
    if (reason)
        *reason = k->cands[i].status == KC_CAND_OK
                      ? NULL
                      : (k->cands[i].reason ? k->cands[i].reason : "failed");
    return KC_OK;
}

int kc_kernel_last_config(const kc_kernel_t *k, kc_param_t *out, size_t cap, size_t *n)
{
    if (!k || !n || (cap && !out))
        return KC_EINVAL;
    const kc__memo_entry_t *e = atomic_load_explicit(&k->last, memory_order_acquire);
    if (!e) {
        *n = 0;
        return KC_ENOTFOUND;
    }
    *n = e->n_config;
    for (size_t i = 0; i < e->n_config && i < cap; i++)
        out[i] = (kc_param_t){k->spec->s.params[i].name, e->config[i]};
    return KC_OK;
}

/* ---- the launcher's kernels -------------------------------------------- */

void kc_launcher_destroy(kc_launcher_t *l)
{
    if (!l)
        return;
    /* Background compiles reference kernels: finish them first. */
    kc__pool_destroy(l->pool);
    l->pool = NULL;
    while (l->kernels) {
        kc_kernel_t *next = kernel_next(l->kernels);
        kernel_free(l->kernels);
        l->kernels = next;
    }
    kc__launcher_free(l);
}

int kc_launcher_stats(const kc_launcher_t *launcher, kc_kernel_stats_t *out)
{
    kc_launcher_t *l = (kc_launcher_t *)launcher;

    if (!l || !out)
        return KC_EINVAL;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&l->lock);
    for (kc_kernel_t *k = l->kernels; k; k = kernel_next(k)) {
        kc_kernel_stats_t s;
        kc_kernel_stats(k, &s);
        out->launches += s.launches;
        out->memo_hits += s.memo_hits;
        out->store_hits += s.store_hits;
        out->tunes += s.tunes;
        out->compiles += s.compiles;
        out->builds_reused += s.builds_reused;
        out->candidates_failed += s.candidates_failed;
        out->publishes += s.publishes;
        out->prefetched += s.prefetched;
        out->remote_hits += s.remote_hits;
        out->configs += s.configs;
    }
    pthread_mutex_unlock(&l->lock);
    return KC_OK;
}
