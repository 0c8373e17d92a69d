/* Compiling a kernel's candidates on the pool: stored builds reused first
 * (from any layer, or pulled from the remote tier), then NVRTC for CUDA C or
 * the driver's JIT for PTX, one build lease per candidate across processes. */
#include "kernel_int.h"

#include "cubin_elf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

void kc__release_build_lease(kc_kernel_t *k, cand_t *c)
{
    if (!c->leased)
        return;
    c->leased = 0;
    kc_store_lease_release(k->l->store, &c->build_key);
}

void kc__release_build_leases(kc_kernel_t *k)
{
    /* One transaction for each 32 of them (a kernel has a few): a publish
     * ends with the leases of every build it carried. */
    kc_key_t keys[32];
    size_t n = 0;

    for (size_t i = 0; i < k->n_cands; i++) {
        if (!k->cands[i].leased)
            continue;
        k->cands[i].leased = 0;
        keys[n++] = k->cands[i].build_key;
        if (n == sizeof(keys) / sizeof(keys[0])) {
            kc_store_lease_release_many(k->l->store, keys, n, NULL);
            n = 0;
        }
    }
    if (n)
        kc_store_lease_release_many(k->l->store, keys, n, NULL);
}

/* "compile error: " and the first lines of the log, on one line. */
static char *reason_from_log(const char *prefix, const char *log)
{
    char buf[512];
    size_t len = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);
    unsigned lines = 0;

    for (const char *p = log ? log : ""; *p && len + 4 < sizeof(buf); p++) {
        if (*p == '\n') {
            while (p[1] == '\n')
                p++;
            if (!p[1] || ++lines == REASON_LINES)
                break;
            buf[len++] = ' ';
            buf[len++] = '|';
            buf[len++] = ' ';
            continue;
        }
        buf[len++] = *p;
    }
    buf[len] = '\0';
    return strdup(buf);
}

/* ---- compiling --------------------------------------------------------- */

/* Adopt a stored build: its record only. The cubin is fetched (and
 * verified) when a tuning needs to load the candidate, so a process whose
 * tunings are all stored never decompresses a cubin it will not run. */
static int reuse_stored(kc_kernel_t *k, cand_t *c)
{
    kc_store_t *st = k->l->store;
    kc_record_t *rec = NULL;
    int rc;

    if (!st)
        return KC_ENOTFOUND;
    size_t layer = 0;
    rc = kc_layers_get(k->l->layers, KC_REC_BUILD, &c->build_key, &rec, &layer);
    if (rc != KC_OK)
        return rc;
    c->foreign = kc_layers_store(k->l->layers, layer) != st;
    c->blob_key = rec->u.build.blob;
    if (!c->preimage && rec->u.build.preimage.size) {
        /* A prebuilt build's preimage is not computed here: keep the
         * stored one, so that a winner from a lower layer can be copied up
         * with its tuning. */
        c->preimage = malloc(rec->u.build.preimage.size);
        if (!c->preimage) {
            kc_free(rec);
            return KC_ENOMEM;
        }
        memcpy(c->preimage, rec->u.build.preimage.data, rec->u.build.preimage.size);
        c->preimage_len = rec->u.build.preimage.size;
    }
    c->entry = strdup(rec->u.build.entry);
    c->compile_us = rec->u.build.compile_us;
    c->attrs = (kc__funcattrs_t){rec->u.build.registers, rec->u.build.static_smem,
                                 rec->u.build.max_threads, rec->u.build.local_bytes};
    kc_free(rec);
    if (!c->entry)
        return KC_ENOMEM;
    kc_store_touch(st, KC_REC_BUILD, &c->build_key);
    return KC_OK;
}

/* Returns 0 when no compiler ran (NVRTC could not be loaded), else 1. */
static int compile_cuda(kc_kernel_t *k, cand_t *c, const kc_param_t *params)
{
    const kc_kernel_spec_t *s = &k->spec->s;
    kc__compile_in_t in = {
        .source = s->source,
        .source_len = s->source_len,
        .headers = s->headers,
        .n_headers = s->n_headers,
        .name = s->name,
        .entry = s->entry,
        .options = s->options,
        .n_options = s->n_options,
        .params = params,
        .n_params = s->n_params,
        .arch = k->l->arch,
    };
    kc__compile_out_t out = {0};
    char err[512];
    int rc = kc__nvrtc_load(err, sizeof(err));

    if (rc != KC_OK) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = reason_from_log("NVRTC unavailable: ", err);
        return 0;
    }
    rc = kc__nvrtc_compile(&in, &out);
    if (rc != KC_OK) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = reason_from_log(
            rc == KC_ECOMPILE ? "compile error: " : "NVRTC error: ", out.log);
        kc__compile_out_free(&out);
        return 1;
    }
    c->cubin = out.cubin;
    c->cubin_len = out.cubin_len;
    c->entry = out.lowered_entry ? out.lowered_entry : strdup(s->entry);
    c->compile_us = out.compile_us;
    out.cubin = NULL;
    out.lowered_entry = NULL;
    kc__compile_out_free(&out);
    return 1;
}

static void compile_ptx(kc_kernel_t *k, cand_t *c)
{
    kc__device_t *dev = k->l->dev;
    char log[2048] = "";
    uint64_t t0 = now_us();
    int rc;

    /* nvJitLink first: no driver, no device, any arch (the build's
     * toolchain id says which of the two made it, kernel.c). */
    if (kc__nvjitlink_load(NULL, 0) == KC_OK) {
        rc = kc__nvjitlink_ptx_to_cubin(k->spec->s.source, k->spec->s.source_len,
                                        k->l->arch, &c->cubin, &c->cubin_len, log,
                                        sizeof(log));
        if (rc != KC_OK) {
            c->status = KC_CAND_COMPILE_ERROR;
            c->reason = reason_from_log("nvJitLink error: ", log);
            return;
        }
    } else if (!dev || !dev->ops->ptx_to_cubin) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = strdup("PTX needs nvJitLink or the CUDA driver's JIT, and neither is "
                           "here");
        return;
    } else {
        rc = dev->ops->bind(dev);
        if (rc == KC_OK)
            rc = dev->ops->ptx_to_cubin(dev, k->spec->s.source, k->spec->s.source_len,
                                        k->l->arch, &c->cubin, &c->cubin_len, log,
                                        sizeof(log));
        if (rc != KC_OK) {
            c->status = KC_CAND_COMPILE_ERROR;
            c->reason =
                reason_from_log("PTX JIT error: ", log[0] ? log : kc__device_errmsg(dev));
            return;
        }
    }
    c->entry = strdup(k->spec->s.entry);
    c->compile_us = now_us() - t0;
}

/* A compiled cubin must hold the symbol it is launched by. NVRTC compiles
 * a source without the spec's entry (a typo, a name that C++ mangled)
 * without complaint, and with no GPU (populate) nothing else would notice
 * before the build is published. A cubin this reader cannot lay out (or
 * PTX) is left to the driver, which checks it at load. */
static void check_entry(cand_t *c)
{
    kc__elf_t img;
    char why[256], syms[400], reason[640];

    if (kc__elf_open(c->cubin, c->cubin_len, &img, why, sizeof(why)) != KC_OK ||
        kc__elf_find_func(&img, c->entry) == KC_OK)
        return;
    if (kc__elf_list_funcs(&img, syms, sizeof(syms)))
        snprintf(reason, sizeof(reason),
                 "entry '%.150s' is not a symbol of the compiled cubin (symbols: %s)",
                 c->entry, syms);
    else
        snprintf(reason, sizeof(reason),
                 "entry '%.150s' is not a symbol of the compiled cubin (it has no "
                 "function symbols)",
                 c->entry);
    c->status = KC_CAND_COMPILE_ERROR;
    c->reason = strdup(reason);
    kc_free(c->cubin);
    c->cubin = NULL;
    c->cubin_len = 0;
    free(c->entry);
    c->entry = NULL;
}

/* Compile one candidate here and now (no stored build, or a stored one
 * whose cubin turned out to be missing or corrupt). */
static void compile_candidate(kc_kernel_t *k, cand_t *c, const kc_param_t *params,
                              size_t i)
{
    int ran = 1;
    if (k->spec->s.source_kind == KC_SOURCE_PTX)
        compile_ptx(k, c);
    else
        ran = compile_cuda(k, c, params);
    /* Counted when a compiler ran, whatever it said. */
    if (ran) {
        bump(&k->compiles);
        if (k->l->store)
            kc_store_count(k->l->store, KC_COUNTER_COMPILES, 1);
    }
    if (c->status == KC_CAND_OK && !c->entry) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = strdup("out of memory");
    }
    if (c->status == KC_CAND_OK)
        check_entry(c);
    if (c->status != KC_CAND_OK) {
        bump(&k->candidates_failed);
        kc__log(k->l, KC_LOG_DEBUG, "kcache: %s: candidate %zu: %s", kname(k), i,
                c->reason ? c->reason : "failed");
        return;
    }
    c->blob_key = kc_key_hash(c->cubin, c->cubin_len);
    c->compiled_here = 1;
}

/* Make sure a candidate's cubin is in memory: fetch a stored build's cubin
 * (verified against its key), or compile it again if the store lost it. */
void kc__ensure_cubin(kc_kernel_t *k, cand_t *c, size_t i)
{
    if (c->cubin || c->status != KC_CAND_OK)
        return;
    if (k->l->layers && kc_layers_get_cubin(k->l->layers, &c->blob_key, &c->cubin,
                                            &c->cubin_len, NULL) == KC_OK)
        return;
    if (k->spec->prebuilt) {
        /* Nothing to compile it from. */
        kc__log(k->l, KC_LOG_WARN,
                "kcache: %s: the stored cubin of prebuilt candidate %zu is unreadable",
                kname(k), i);
        c->status = KC_CAND_LOAD_FAILED;
        free(c->reason);
        c->reason = strdup("the stored cubin is missing or corrupt");
        return;
    }
    kc__log(k->l, KC_LOG_WARN,
            "kcache: %s: stored build of candidate %zu is unreadable; "
            "compiling it again",
            kname(k), i);
    free(c->entry);
    c->entry = NULL;
    compile_candidate(k, c, k->cand_params + i * k->spec->s.n_params, i);
}

/* The toolchain id in the kernel's build preimages: the driver's version
 * for PTX, NVRTC's for CUDA C (loading NVRTC on first use). */
static const char *kernel_toolchain(const kc_kernel_t *k)
{
    return k->spec->s.source_kind == KC_SOURCE_PTX ? k->toolchain
                                                   : kc__nvrtc_toolchain_id();
}

/* The lease on c's build is ours. Returns 1 if the build was published
 * between the lookup and the lease (it is then reused and the lease given
 * back), 0 if it is ours to compile. */
static int take_leased_build(kc_kernel_t *k, cand_t *c)
{
    c->leased = 1;
    if (reuse_stored(k, c) != KC_OK) {
        free(c->entry);
        c->entry = NULL;
        return 0;
    }
    kc__release_build_lease(k, c);
    bump(&k->builds_reused);
    return 1;
}

/* Wait for the builds other processes held leases on: reuse each once it
 * is published, take over the lease of a holder that died, and compile
 * here what is still missing after lease_wait_ms. */
static void await_deferred(kc_kernel_t *k)
{
    kc_launcher_t *l = k->l;
    uint64_t deadline = now_us() + l->lease_wait_ms * 1000u;

    for (size_t i = 0; i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        unsigned nap = 1;

        if (!c->deferred)
            continue;
        c->deferred = 0;
        for (;;) {
            if (reuse_stored(k, c) == KC_OK) {
                bump(&k->builds_reused);
                break;
            }
            free(c->entry);
            c->entry = NULL;
            int rc =
                kc_store_lease_acquire(l->store, &c->build_key, l->lease_ttl_ms, NULL);
            if (rc == KC_OK && take_leased_build(k, c))
                break;
            if (rc != KC_EBUSY || now_us() >= deadline) {
                if (rc == KC_EBUSY)
                    kc__log(l, KC_LOG_WARN,
                            "kcache: %s: candidate %zu: waited %llu ms for another "
                            "process's build; compiling it here",
                            kname(k), i, (unsigned long long)l->lease_wait_ms);
                compile_candidate(k, c, k->cand_params + i * k->spec->s.n_params, i);
                if (c->status != KC_CAND_OK)
                    kc__release_build_lease(k, c);
                break;
            }
            nap_ms(&nap);
        }
    }
}

/* Run by the task that finishes the last candidate. */
static void finish_compiles(kc_kernel_t *k)
{
    int deferred = 0;

    for (size_t i = 0; i < k->n_cands; i++)
        deferred |= k->cands[i].deferred;
    if (deferred) {
        /* Publish ours before waiting for theirs: a holder that waits for
         * builds this process holds leases on would otherwise stall both
         * until lease_wait_ms. */
        kc__publish(k, NULL);
        await_deferred(k);
    }
    /* Without a device nothing will tune: the builds are the whole result,
     * so they are published as soon as the last candidate is done. */
    if (!k->l->dev)
        kc__publish(k, NULL);
    pthread_mutex_lock(&k->mu);
    k->compile_done = 1;
    pthread_cond_broadcast(&k->compiled_cv);
    pthread_mutex_unlock(&k->mu);
}

/* Another machine may have compiled c: pull its build from the remote
 * tier into the writable store (checked there). */
static int pull_build(kc_kernel_t *k, cand_t *c)
{
    int rc = kc_remote_pull_build(k->l->remote, k->l->store, &c->build_key);
    kc__remote_account(k->l);
    if (rc != KC_OK && rc != KC_ENOTFOUND)
        kc__remote_failed(k->l, "pull build", rc);
    return rc;
}

/* A prebuilt candidate: its build must be stored (or on the remote tier);
 * nothing is compiled. */
static void adopt_prebuilt(kc_kernel_t *k, cand_t *c, size_t i)
{
    c->build_key = k->spec->prebuilt[i];
    if (reuse_stored(k, c) == KC_OK ||
        (k->l->remote && pull_build(k, c) == KC_OK && reuse_stored(k, c) == KC_OK)) {
        bump(&k->builds_reused);
        return;
    }
    char hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(&c->build_key, hex);
    free(c->entry);
    c->entry = NULL;
    c->status = KC_CAND_COMPILE_ERROR;
    c->reason = malloc(128);
    if (c->reason)
        snprintf(c->reason, 128, "prebuilt build %s is not in the store", hex);
    bump(&k->candidates_failed);
}

void kc__compile_one(void *arg)
{
    compile_task_t *t = arg;
    kc_kernel_t *k = t->k;
    cand_t *c = &k->cands[t->i];
    const kc__spec_t *sp = k->spec;
    const kc_param_t *params = k->cand_params + t->i * sp->s.n_params;
    kc_build_desc_t desc = {
        .source_kind = sp->s.source_kind,
        .source_digest = sp->source_digest,
        .entry = sp->s.entry,
        .options = sp->s.options,
        .n_options = sp->s.n_options,
        .params = params,
        .n_params = sp->s.n_params,
        .arch = k->l->arch,
        /* Not for a prebuilt binary: its build is named, nothing compiles,
         * and asking for NVRTC's version would load NVRTC. */
        .toolchain = sp->prebuilt ? NULL : kernel_toolchain(k),
    };
    int last, rc;

    if (sp->prebuilt) {
        adopt_prebuilt(k, c, t->i);
        goto done;
    }
    rc = kc_build_preimage_encode(&desc, &c->preimage, &c->preimage_len);
    if (rc != KC_OK) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = strdup("cannot encode the build preimage");
        goto done;
    }
    c->build_key = kc_key_hash(c->preimage, c->preimage_len);
    if (reuse_stored(k, c) == KC_OK ||
        (k->l->remote && pull_build(k, c) == KC_OK && reuse_stored(k, c) == KC_OK)) {
        bump(&k->builds_reused);
        goto done;
    }
    free(c->entry);
    c->entry = NULL;
    if (leasing(k->l)) {
        rc = kc_store_lease_acquire(k->l->store, &c->build_key, k->l->lease_ttl_ms, NULL);
        if (rc == KC_EBUSY) {
            /* Another process compiles it: wait for its build once this
             * process's own compiles are done (finish_compiles). */
            c->deferred = 1;
            goto done;
        }
        if (rc == KC_OK && take_leased_build(k, c))
            goto done;
    }
    compile_candidate(k, c, params, t->i);
    if (c->status != KC_CAND_OK)
        kc__release_build_lease(k, c); /* failures are not published */
done:
    pthread_mutex_lock(&k->mu);
    last = --k->pending == 0;
    pthread_mutex_unlock(&k->mu);
    if (last)
        finish_compiles(k);
}

/* Publish the builds compiled in this process and not yet published, and
 * the tuning if any, in one transaction. A failure is logged: the cache
 * must not fail the user's launch. */
int kc__publish(kc_kernel_t *k, const kc_tuning_rec_t *tuning)
{
    kc_store_t *st = k->l->store;
    kc_buf_t *cubins = NULL;
    kc_build_rec_t *builds = NULL;
    kc_record_t *winner_meta = NULL; /* a prebuilt winner's, copied up */
    size_t n = 0;
    uint64_t created = (uint64_t)time(NULL);
    int rc = KC_OK;

    if (!st)
        return KC_OK;
    if (kc_store_is_readonly(st)) {
        kc__log(k->l, KC_LOG_INFO, "kcache: %s: store %s is read-only; not publishing",
                kname(k), kc_store_path(st));
        return KC_EREADONLY;
    }
    cubins = calloc(k->n_cands ? k->n_cands : 1, sizeof(*cubins));
    builds = calloc(k->n_cands ? k->n_cands : 1, sizeof(*builds));
    if (!cubins || !builds) {
        rc = KC_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < k->n_cands; i++) {
        const cand_t *c = &k->cands[i];
        /* A tuning's winner must sit in the same store as the tuning: one
         * reused from a lower (read-only) layer is copied up with it. */
        int winner_from_below = tuning && c->foreign && c->cubin &&
                                kc_key_cmp(&c->build_key, &tuning->winner_build) == 0;
        if (c->status != KC_CAND_OK ||
            ((!c->compiled_here || c->published) && !winner_from_below))
            continue;
        cubins[n] = (kc_buf_t){c->cubin, c->cubin_len};
        builds[n] = (kc_build_rec_t){
            .preimage = {c->preimage, c->preimage_len},
            .blob = c->blob_key,
            .entry = c->entry,
            .registers = c->attrs.registers,
            .static_smem = c->attrs.static_smem,
            .max_threads = c->attrs.max_threads,
            .local_bytes = c->attrs.local_bytes,
            .compile_us = c->compile_us,
            .created = created,
        };
        n++;
        /* A prebuilt binary is launched by its metadata: it goes up too. */
        if (winner_from_below && k->spec->prebuilt && !winner_meta &&
            kc_layers_get(k->l->layers, KC_REC_BINMETA, &c->build_key, &winner_meta,
                          NULL) != KC_OK)
            winner_meta = NULL;
    }
    if (!n && !tuning)
        goto fail;
    kc_publish_t pub = {
        .cubins = cubins,
        .n_cubins = n,
        .builds = builds,
        .n_builds = n,
        .tuning = tuning,
        .binmetas = winner_meta ? &winner_meta->u.binmeta : NULL,
        .n_binmetas = winner_meta ? 1 : 0,
    };
    rc = kc_store_publish(st, &pub);
    if (rc != KC_OK) {
        kc__log(k->l, KC_LOG_WARN, "kcache: %s: publishing to %s failed: %s (%s)",
                kname(k), kc_store_path(st), kc_strerror(rc), kc_store_errmsg(st));
        goto fail;
    }
    bump(&k->publishes);
    /* Builds published without a tuning (no device, or a tuning still to
     * come) go up on their own: a CPU-only job prepares builds for a
     * fleet. A tuning's push carries its builds. */
    for (size_t i = 0; !tuning && i < k->n_cands; i++)
        for (size_t j = 0; j < n; j++)
            if (builds[j].preimage.data == k->cands[i].preimage)
                kc__remote_push_later(k->l, KC_REC_BUILD, &k->cands[i].build_key);
    for (size_t i = 0; i < k->n_cands; i++)
        if (k->cands[i].status == KC_CAND_OK) {
            for (size_t j = 0; j < n; j++)
                if (builds[j].preimage.data == k->cands[i].preimage)
                    k->cands[i].foreign = 0;
            if (k->cands[i].compiled_here)
                k->cands[i].published = 1;
        }
fail:
    /* Published, or not publishable now: either way a waiting process
     * should stop waiting for these builds. */
    kc__release_build_leases(k);
    free(cubins);
    free(builds);
    kc_free(winner_meta);
    return rc;
}
