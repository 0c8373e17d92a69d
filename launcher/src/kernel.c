/* Kernels and the launch flow: memo -> store -> single-flight -> compile
 * (reusing stored builds) -> tune on the real arguments -> publish ->
 * launch.
 *
 * A kernel's candidates compile in the background from registration on;
 * their results do not depend on shapes, so they serve every signature the
 * process meets. A signature missing from the memo is resolved once per
 * process: the first thread to miss it looks it up in the store or tunes,
 * the others wait for it and then find it in the memo.
 */
#include "launcher_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "compiler.h"
#include "memo.h"
#include "spec.h"

/* The signature of KC__MAX_ARGS pointers of the highest rank. */
#define SIG_CAP (4 + KC__MAX_ARGS * (3 + 8 * KC_MAX_RANK + 1))
#define MAX_VARS (KC__SPEC_MAX_PARAMS + KC__MAX_ARGS)
/* Above this much dynamic shared memory, a function needs an opt-in. */
#define SMEM_NO_OPTIN (48u * 1024)
#define REASON_LINES 4

typedef struct cand {
    /* Set by the compile task, read only after compile_done. */
    uint8_t status; /* KC_CAND_OK or KC_CAND_COMPILE_ERROR */
    char *reason;   /* NULL when OK */
    void *cubin;
    size_t cubin_len;
    kc_key_t blob_key;
    void *preimage;
    size_t preimage_len;
    kc_key_t build_key;
    char *entry; /* the symbol to look up */
    uint64_t compile_us;
    int compiled_here; /* not reused from the store */
    int foreign;       /* reused from a layer below the one publishes go to */
    /* Single flight across processes (compile tasks, then after
     * compile_done under the launcher's tune lock). */
    int leased;   /* this process holds the lease on build_key */
    int deferred; /* another process held it: wait for its build */
    /* Set while tuning, under the launcher's tune lock. */
    int published;
    kc__funcattrs_t attrs;
} cand_t;

typedef struct compile_task {
    kc_kernel_t *k;
    size_t i;
} compile_task_t;

/* A module kept loaded because it won a signature. */
typedef struct kept {
    struct kept *next;
    kc_key_t build;
    void *module;
    void *fn;
    uint64_t compile_us; /* what the build cost to make: counted as saved */
} kept_t;

/* One signature being resolved by a leader while others wait. */
typedef struct flight {
    struct flight *next;
    uint64_t hash;
    size_t len;
    int done;
    unsigned waiters;
    uint8_t sig[];
} flight_t;

struct kc_kernel {
    kc_launcher_t *l;
    kc__spec_t *spec;
    kc_kernel_t *next;
    size_t n_cands;
    cand_t *cands;
    kc_param_t *cand_params; /* n_cands rows of n_params, names from the spec */
    compile_task_t *tasks;
    char toolchain[64];

    pthread_mutex_t mu;
    pthread_cond_t compiled_cv;
    pthread_cond_t flight_cv;
    size_t pending;
    int compile_done;
    int prefetch_done; /* the stored winners' modules are loaded (or none) */
    compile_task_t prefetch_task;
    flight_t *flights;
    kept_t *kept;

    kc__memo_t memo;
    _Atomic(const kc__memo_entry_t *) last;

    /* memo_misses: launches that did not find their signature in the memo
     * (errors before the lookup included); memo hits are the rest, so the
     * hot path bumps one counter, not two. */
    _Atomic uint64_t launches, memo_misses, store_hits, tunes, compiles, builds_reused,
        candidates_failed, publishes, prefetched, remote_hits;
};

kc_kernel_t *kc__kernel_next(const kc_kernel_t *k)
{
    return k->next;
}

static void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *kname(const kc_kernel_t *k)
{
    return k->spec->s.name;
}

static void nap_ms(unsigned *ms)
{
    struct timespec ts = {0, (long)*ms * 1000000L};
    nanosleep(&ts, NULL);
    *ms = *ms * 2 > 50 ? 50 : *ms * 2;
}

/* Leases need a store this process can write. */
static int leasing(const kc_launcher_t *l)
{
    return l->store && !kc_store_is_readonly(l->store);
}

static void release_build_lease(kc_kernel_t *k, cand_t *c)
{
    if (!c->leased)
        return;
    c->leased = 0;
    kc_store_lease_release(k->l->store, &c->build_key);
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

    if (!dev || !dev->ops->ptx_to_cubin) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = strdup("PTX needs the CUDA driver's JIT, and this device has none");
        return;
    }
    rc = dev->ops->bind(dev);
    if (rc == KC_OK)
        rc = dev->ops->ptx_to_cubin(dev, k->spec->s.source, k->spec->s.source_len,
                                    k->l->arch, &c->cubin, &c->cubin_len, log,
                                    sizeof(log));
    if (rc != KC_OK) {
        c->status = KC_CAND_COMPILE_ERROR;
        c->reason = reason_from_log("PTX JIT error: ", log[0] ? log : dev->errmsg);
        return;
    }
    c->entry = strdup(k->spec->s.entry);
    c->compile_us = now_us() - t0;
}

static int publish(kc_kernel_t *k, const kc_tuning_rec_t *tuning);

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
static void ensure_cubin(kc_kernel_t *k, cand_t *c, size_t i)
{
    if (c->cubin || c->status != KC_CAND_OK)
        return;
    if (k->l->layers && kc_layers_get_cubin(k->l->layers, &c->blob_key, &c->cubin,
                                            &c->cubin_len, NULL) == KC_OK)
        return;
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
    release_build_lease(k, c);
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
                    release_build_lease(k, c);
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
        publish(k, NULL);
        await_deferred(k);
    }
    /* Without a device nothing will tune: the builds are the whole result,
     * so they are published as soon as the last candidate is done. */
    if (!k->l->dev)
        publish(k, NULL);
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
    if (rc != KC_OK && rc != KC_ENOTFOUND)
        kc__remote_failed(k->l, "pull build", rc);
    return rc;
}

static void compile_one(void *arg)
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
        .toolchain = kernel_toolchain(k),
    };
    int last;

    int rc = kc_build_preimage_encode(&desc, &c->preimage, &c->preimage_len);
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
        release_build_lease(k, c); /* failures are not published */
done:
    pthread_mutex_lock(&k->mu);
    last = --k->pending == 0;
    pthread_mutex_unlock(&k->mu);
    if (last)
        finish_compiles(k);
}

/* ---- publishing -------------------------------------------------------- */

/* Publish the builds compiled in this process and not yet published, and
 * the tuning if any, in one transaction. A failure is logged: the cache
 * must not fail the user's launch. */
static int publish(kc_kernel_t *k, const kc_tuning_rec_t *tuning)
{
    kc_store_t *st = k->l->store;
    kc_buf_t *cubins = NULL;
    kc_build_rec_t *builds = NULL;
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
    }
    if (!n && !tuning)
        goto fail;
    kc_publish_t pub = {cubins, n, builds, n, tuning};
    rc = kc_store_publish(st, &pub);
    if (rc != KC_OK) {
        kc__log(k->l, KC_LOG_WARN, "kcache: %s: publishing to %s failed: %s (%s)",
                kname(k), kc_store_path(st), kc_strerror(rc), kc_store_errmsg(st));
        goto fail;
    }
    bump(&k->publishes);
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
    for (size_t i = 0; i < k->n_cands; i++)
        release_build_lease(k, &k->cands[i]);
    free(cubins);
    free(builds);
    return rc;
}

/* ---- launching a function ---------------------------------------------- */

typedef union scalar {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
} scalar_t;

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
    int exp = (int)((x >> 23) & 0xff);

    if (exp == 0xff) /* inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    exp = exp - 127 + 15;
    if (exp >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        unsigned shift = (unsigned)(14 - exp);
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1),
                 mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent rounds up correctly, to inf at most */
    return (uint16_t)h;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* cuLaunchKernel reads each argument with the width of its C type: an i32
 * must be passed as 4 bytes, an f32 as a float. */
static int build_params(const kc__spec_t *sp, const kc_arg_t *args, size_t n,
                        scalar_t *vals, void **params)
{
    for (size_t i = 0; i < n; i++) {
        const kc_arg_spec_t *a = &sp->s.args[i];
        const kc_arg_t *v = &args[i];
        if (a->kind == KC_ARG_POINTER) {
            params[i] = (void *)&v->ptr;
            continue;
        }
        switch (a->dtype) {
        case KC_DTYPE_BOOL:
            vals[i].u8 = v->value.i != 0;
            break;
        case KC_DTYPE_I8:
        case KC_DTYPE_U8:
            vals[i].u8 = (uint8_t)v->value.u;
            break;
        case KC_DTYPE_I16:
        case KC_DTYPE_U16:
            vals[i].u16 = (uint16_t)v->value.u;
            break;
        case KC_DTYPE_I32:
        case KC_DTYPE_U32:
            vals[i].u32 = (uint32_t)v->value.u;
            break;
        case KC_DTYPE_I64:
        case KC_DTYPE_U64:
            vals[i].u64 = v->value.u;
            break;
        case KC_DTYPE_F16:
            vals[i].u16 = f32_to_f16((float)v->value.f);
            break;
        case KC_DTYPE_BF16:
            vals[i].u16 = f32_to_bf16((float)v->value.f);
            break;
        case KC_DTYPE_F32:
            vals[i].f32 = (float)v->value.f;
            break;
        case KC_DTYPE_F64:
            vals[i].f64 = v->value.f;
            break;
        default:
            kc__errmsg_set("spec '%s': args[%zu] '%s': %s scalars cannot be passed",
                           sp->s.name, i, a->name, kc_dtype_name(a->dtype));
            return KC_EINVAL;
        }
        params[i] = &vals[i];
    }
    return KC_OK;
}

/* Everything one launch needs, computed on the stack. */
typedef struct prep {
    int64_t vars[MAX_VARS];
    kc__argshape_t shapes[KC__MAX_ARGS];
    scalar_t vals[KC__MAX_ARGS];
    void *params[KC__MAX_ARGS];
    unsigned grid[3], block[3], shared;
} prep_t;

/* fixed: the config-only geometry of a memo entry, or NULL. */
static int prepare(const kc__spec_t *sp, const int64_t *config, const int64_t *fixed,
                   const kc_arg_t *args, size_t n, prep_t *p, char *err, size_t errcap)
{
    int rc = kc__spec_bind(sp, config, args, n, p->vars, p->shapes, err, errcap);
    if (rc != KC_OK)
        return rc;
    return kc__spec_eval_geometry_with(sp, fixed, p->vars, p->shapes, n, p->grid,
                                       p->block, &p->shared, err, errcap);
}

/* Memoize: the config-only geometry is evaluated here, once, not on every
 * launch. If it fails (it cannot for a config that ran), the entry simply
 * evaluates everything per launch. */
static int memoize(kc_kernel_t *k, const uint8_t *sig, size_t len, uint64_t hash,
                   void *fn, void *module, size_t cand, const int64_t *config,
                   const kc__memo_entry_t **out)
{
    int64_t geo[KC__MEMO_GEO];
    int fixed_ok = kc__spec_eval_geometry_fixed(k->spec, config, geo, NULL, 0) == KC_OK;
    return kc__memo_insert(&k->memo, sig, len, hash, fn, module, cand, config,
                           k->spec->s.n_params, fixed_ok ? geo : NULL, out);
}

static int launch_fn(kc_launcher_t *l, void *fn, const prep_t *p, void *stream)
{
    kc__device_t *dev = l->dev;
    int rc;

    if (p->shared > SMEM_NO_OPTIN) {
        rc = dev->ops->set_dyn_smem(dev, fn, p->shared);
        if (rc != KC_OK)
            return rc;
    }
    return dev->ops->launch(dev, fn, p->grid, p->block, p->shared, stream,
                            (void **)p->params);
}

static int launch_entry(kc_kernel_t *k, const kc__memo_entry_t *e, void *stream,
                        const kc_arg_t *args, size_t n)
{
    kc_launcher_t *l = k->l;
    char err[512];
    prep_t p;
    int rc;

    rc = prepare(k->spec, e->config, e->geo, args, n, &p, err, sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set("%s", err);
        return rc;
    }
    rc = build_params(k->spec, args, n, p.vals, p.params);
    if (rc != KC_OK)
        return rc;
    /* The device makes its context current itself when it must: a bind
     * here would cost a driver call on every launch. */
    rc = launch_fn(l, e->fn, &p, stream);
    if (rc != KC_OK)
        kc__errmsg_set("%s: launch: %s", kname(k), l->dev->errmsg);
    return rc;
}

/* ---- kept modules ------------------------------------------------------ */

/* Keep module as the loaded copy of build, or if another thread kept one
 * first, unload ours and use that. */
static void keep_module(kc_kernel_t *k, const kc_key_t *build, void **module, void **fn,
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
    /* Without memory to track it the module simply stays loaded until the
     * process ends; the launch still works. */
}

static int find_kept(kc_kernel_t *k, const kc_key_t *build, void **module, void **fn,
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

static int load_cubin(kc_kernel_t *k, const void *cubin, size_t len, const char *entry,
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

static void prefetch_winners(void *arg)
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

        if (find_kept(k, &ps.builds[i], &module, &fn, NULL))
            continue;
        if (kc_layers_get_build_cubin(k->l->layers, &ps.builds[i], &brec, &cubin,
                                      &cubin_len, NULL) == KC_OK &&
            load_cubin(k, cubin, cubin_len, brec->u.build.entry, &module, &fn) == KC_OK) {
            keep_module(k, &ps.builds[i], &module, &fn, brec->u.build.compile_us);
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

/* ---- the store --------------------------------------------------------- */

static int tuning_key(kc_kernel_t *k, const uint8_t *sig, size_t len, void **pre,
                      size_t *pre_len, kc_key_t *key)
{
    const kc__spec_t *sp = k->spec;
    kc_tuning_desc_t desc = {
        .source_kind = sp->s.source_kind,
        .source_digest = sp->source_digest,
        .entry = sp->s.entry,
        .options = sp->s.options,
        .n_options = sp->s.n_options,
        .space_digest = sp->space_digest,
        .shape_sig = {sig, len},
        .arch = k->l->arch,
        .sm_count = k->l->info.sm_count,
        .device_name = k->l->info.name,
    };
    int rc = kc_tuning_preimage_encode(&desc, pre, pre_len);
    if (rc == KC_OK)
        *key = kc_key_hash(*pre, *pre_len);
    return rc;
}

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
 * winning build. Anything that does not fit is a miss, never an error. */
/* Load a stored tuning's winner (or find it loaded). *compile_us receives
 * what its build cost to compile, for the "saved" counter. */
static int load_stored_winner(kc_kernel_t *k, const kc_tuning_rec_t *t, int64_t *config,
                              size_t *cand, void **module, void **fn,
                              uint64_t *compile_us)
{
    const kc__spec_t *sp = k->spec;
    kc_store_t *st = k->l->store;
    kc_record_t *brec = NULL;
    void *cubin = NULL;
    size_t cubin_len = 0;
    int rc;

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
    if (find_kept(k, &t->winner_build, module, fn, compile_us))
        return KC_OK;
    /* A prefetch under way is loading the stored winners: wait for it
     * rather than load the same module twice. */
    pthread_mutex_lock(&k->mu);
    while (!k->prefetch_done)
        pthread_cond_wait(&k->compiled_cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
    if (find_kept(k, &t->winner_build, module, fn, compile_us))
        return KC_OK;
    rc = kc_layers_get_build_cubin(k->l->layers, &t->winner_build, &brec, &cubin,
                                   &cubin_len, NULL);
    if (rc == KC_OK)
        rc = load_cubin(k, cubin, cubin_len, brec->u.build.entry, module, fn);
    if (rc == KC_OK) {
        kc_store_touch(st, KC_REC_BUILD, &t->winner_build);
        *compile_us = brec->u.build.compile_us;
        keep_module(k, &t->winner_build, module, fn, *compile_us);
    } else if (rc != KC_ENOTFOUND) {
        kc__log(k->l, KC_LOG_WARN,
                "kcache: %s: stored build unusable (%s: %s); tuning again", kname(k),
                kc_strerror(rc), rc == KC_ESTICKY ? k->l->dev->errmsg : "");
    }
    kc_free(cubin);
    kc_free(brec);
    return rc;
}

/* ---- tuning ------------------------------------------------------------ */

static size_t written_bytes(const kc_arg_spec_t *a, const kc_arg_t *v)
{
    size_t elems = 1;
    if (v->strides) {
        for (uint32_t r = 0; r < v->rank; r++) {
            if (v->dims[r] <= 0)
                return 0;
            if (v->strides[r] > 0)
                elems += (size_t)(v->dims[r] - 1) * (size_t)v->strides[r];
        }
    } else {
        for (uint32_t r = 0; r < v->rank; r++)
            elems *= v->dims[r] > 0 ? (size_t)v->dims[r] : 0;
    }
    return elems * kc_dtype_size(a->dtype);
}

/* Classify a candidate whose geometry could not be evaluated: a block the
 * device cannot run is a resource problem, anything else a launch failure. */
static uint8_t geometry_status(const kc_kernel_t *k, const prep_t *p)
{
    uint64_t threads = 1;
    for (int i = 0; i < 3; i++) {
        int64_t v;
        if (kc__expr_eval(k->spec->block[i], p->vars, p->shapes, k->spec->s.n_args, &v) !=
            KC_OK)
            return KC_CAND_LAUNCH_FAILED;
        if (v <= 0)
            return KC_CAND_LAUNCH_FAILED;
        threads *= (uint64_t)v;
        if (threads > UINT32_MAX)
            break;
    }
    unsigned max = k->l->info.max_threads_per_block ? k->l->info.max_threads_per_block
                                                    : KC__BLOCK_THREADS_MAX;
    return threads > max || threads > KC__BLOCK_THREADS_MAX ? KC_CAND_RESOURCES
                                                            : KC_CAND_LAUNCH_FAILED;
}

typedef struct tune_state {
    kc__tune_cand_t *tc;
    void **modules;
    void **fns;
    prep_t *preps;
} tune_state_t;

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
        if (c->status != KC_CAND_OK) {
            snprintf(t->reason, sizeof(t->reason), "%s",
                     c->reason ? c->reason : "failed");
            continue;
        }
        ensure_cubin(k, c, i);
        if (c->status != KC_CAND_OK) {
            t->status = c->status;
            snprintf(t->reason, sizeof(t->reason), "%s",
                     c->reason ? c->reason : "failed");
            continue;
        }
        dev->errmsg[0] = '\0';
        rc = load_cubin(k, c->cubin, c->cubin_len, c->entry, &s->modules[i], &s->fns[i]);
        if (rc == KC_ESTICKY) {
            kc__errmsg_set("%s: loading candidate %zu: %s", kname(k), i, dev->errmsg);
            return KC_ESTICKY;
        }
        if (rc != KC_OK) {
            t->status = KC_CAND_LOAD_FAILED;
            snprintf(t->reason, sizeof(t->reason), "load failed: %.200s (%s)",
                     dev->errmsg, kc_err_name(rc));
            continue;
        }
        dev->ops->func_attrs(dev, s->fns[i], &c->attrs);
        rc = prepare(k->spec, row, NULL, args, n, &s->preps[i], t->reason,
                     sizeof(t->reason));
        if (rc == KC_EINVAL) {
            kc__errmsg_set("%s: %zu arguments given, the spec has %zu", kname(k), n,
                           k->spec->s.n_args);
            return KC_EINVAL;
        }
        if (rc != KC_OK) {
            t->status = geometry_status(k, &s->preps[i]);
            continue;
        }
        if (s->preps[i].shared > SMEM_NO_OPTIN &&
            dev->ops->set_dyn_smem(dev, s->fns[i], s->preps[i].shared) != KC_OK) {
            t->status = KC_CAND_RESOURCES;
            snprintf(t->reason, sizeof(t->reason), "%.250s", dev->errmsg);
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

/* ---- the remote tier: write-behind ------------------------------------- */

typedef struct push_task {
    kc_launcher_t *l;
    kc_key_t tkey;
} push_task_t;

/* A pool task: copy a published tuning's chain to the remote. */
static void push_to_remote(void *arg)
{
    push_task_t *t = arg;
    int rc = kc_remote_push(t->l->remote, t->l->store, &t->tkey);
    if (rc != KC_OK)
        kc__remote_failed(t->l, "push", rc);
    free(t);
}

/* Write-behind: the launch does not wait for the remote. */
static void push_later(kc_launcher_t *l, const kc_key_t *tkey)
{
    push_task_t *t;
    if (!l->remote || !(t = malloc(sizeof(*t))))
        return;
    *t = (push_task_t){l, *tkey};
    if (kc__pool_submit(l->pool, push_to_remote, t) != KC_OK)
        free(t);
}

static int tune_and_publish(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                            const uint8_t *sig, size_t sig_len, uint64_t hash,
                            const kc__memo_entry_t **out)
{
    kc_launcher_t *l = k->l;
    kc__device_t *dev = l->dev;
    const kc__spec_t *sp = k->spec;
    tune_state_t s = {0};
    kc__tune_buf_t bufs[KC__MAX_ARGS];
    size_t n_bufs = 0, winner = SIZE_MAX, failed = 0;
    kc_candidate_t *rec_cands = NULL;
    void *pre = NULL;
    size_t pre_len = 0;
    kc_key_t tkey;
    char err[1024] = "";
    uint64_t t0 = now_us();
    int rc, runnable, timed = 0;

    s.tc = calloc(k->n_cands, sizeof(*s.tc));
    s.modules = calloc(k->n_cands, sizeof(*s.modules));
    s.fns = calloc(k->n_cands, sizeof(*s.fns));
    s.preps = calloc(k->n_cands, sizeof(*s.preps));
    rec_cands = calloc(k->n_cands, sizeof(*rec_cands));
    if (!s.tc || !s.modules || !s.fns || !s.preps || !rec_cands) {
        rc = KC_ENOMEM;
        kc__errmsg_set("%s: out of memory while tuning", kname(k));
        goto fail;
    }
    rc = dev->ops->bind(dev);
    if (rc != KC_OK) {
        kc__errmsg_set("%s: %s", kname(k), dev->errmsg);
        goto fail;
    }
    runnable = load_candidates(k, args, n, &s);
    if (runnable < 0) {
        rc = runnable;
        goto fail;
    }
    /* The arguments are the same for every candidate: only the geometry
     * and the compiled code differ. */
    rc = build_params(sp, args, n, s.preps[0].vals, s.preps[0].params);
    if (rc != KC_OK)
        goto fail;
    for (size_t i = 1; i < k->n_cands; i++) {
        memcpy(s.preps[i].vals, s.preps[0].vals, n * sizeof(scalar_t));
        for (size_t a = 0; a < n; a++)
            s.preps[i].params[a] = sp->s.args[a].kind == KC_ARG_POINTER
                                       ? s.preps[0].params[a]
                                       : (void *)&s.preps[i].vals[a];
    }

    if (runnable == 1) {
        /* One candidate: nothing to choose, so no timing. */
        for (size_t i = 0; i < k->n_cands; i++)
            if (s.tc[i].status == KC_CAND_OK && s.tc[i].fn)
                winner = i;
    } else if (runnable > 1) {
        for (size_t a = 0; a < n; a++)
            if (sp->s.args[a].kind == KC_ARG_POINTER &&
                (sp->s.args[a].access & KC_ACCESS_OUT) && args[a].ptr)
                bufs[n_bufs++] = (kc__tune_buf_t){
                    args[a].ptr, written_bytes(&sp->s.args[a], &args[a])};
        rc = kc__tune(dev, &l->tune, stream, bufs, n_bufs, s.tc, k->n_cands,
                      s.preps[0].params, &winner, err, sizeof(err));
        timed = 1;
        if (rc == KC_ESTICKY) {
            kc__errmsg_set("%s: %s", kname(k), err);
            goto fail;
        }
        if (rc != KC_OK && rc != KC_ENOCANDIDATE) {
            kc__errmsg_set("%s: tuning: %s", kname(k), err);
            goto fail;
        }
    }
    /* The one real launch: the user's buffers were restored after tuning. */
    if (winner != SIZE_MAX) {
        rc = launch_fn(l, s.fns[winner], &s.preps[winner], stream);
        if (rc == KC_ESTICKY) {
            kc__errmsg_set("%s: launch: %s", kname(k), dev->errmsg);
            goto fail;
        }
        if (rc != KC_OK) {
            s.tc[winner].status =
                rc == KC_ETOOBIG ? KC_CAND_RESOURCES : KC_CAND_LAUNCH_FAILED;
            snprintf(s.tc[winner].reason, sizeof(s.tc[winner].reason),
                     "launch: %.200s (%s)", dev->errmsg, kc_err_name(rc));
            winner = SIZE_MAX;
        }
    }
    for (size_t i = 0; i < k->n_cands; i++) {
        const kc__tune_cand_t *t = &s.tc[i];
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
            failed++;
            if (k->cands[i].status == KC_CAND_OK) /* compile failures counted once */
                bump(&k->candidates_failed);
        }
    }
    if (winner == SIZE_MAX) {
        publish(k, NULL);
        rc = KC_ENOCANDIDATE;
        size_t len = (size_t)snprintf(
            err, sizeof(err), "%s: none of %zu candidates ran:", kname(k), k->n_cands);
        for (size_t i = 0; i < k->n_cands && i < 4 && len < sizeof(err); i++)
            len += (size_t)snprintf(err + len, sizeof(err) - len, " [%zu] %s: %s;", i,
                                    kc_cand_status_name(s.tc[i].status), s.tc[i].reason);
        kc__errmsg_set("%s", err);
        goto fail;
    }

    bump(&k->tunes);
    if (l->store)
        kc_store_count(l->store, KC_COUNTER_TUNES, 1);
    rc = tuning_key(k, sig, sig_len, &pre, &pre_len, &tkey);
    if (rc == KC_OK) {
        kc_tuning_rec_t tr = {
            .preimage = {pre, pre_len},
            .winner = k->cand_params + winner * sp->s.n_params,
            .n_winner = sp->s.n_params,
            .winner_build = k->cands[winner].build_key,
            .candidates = rec_cands,
            .n_candidates = k->n_cands,
            .tuning_us = now_us() - t0,
            .device_name = l->info.name,
            .arch = l->arch,
            .sm_count = l->info.sm_count,
            .driver_version = l->info.driver_version,
            .created = (uint64_t)time(NULL),
        };
        if (publish(k, &tr) == KC_OK)
            push_later(l, &tkey);
    }
    {
        char cfg[256] = "";
        size_t len = 0;
        for (size_t p = 0; p < sp->s.n_params && len < sizeof(cfg); p++)
            len += (size_t)snprintf(
                cfg + len, sizeof(cfg) - len, "%s%s=%lld", p ? " " : "",
                sp->s.params[p].name,
                (long long)k->cand_params[winner * sp->s.n_params + p].value);
        kc__log(l, KC_LOG_INFO,
                "kcache: %s: %s %s (%llu ns) of %zu candidates, %zu failed", kname(k),
                timed ? "tuned:" : "one candidate:", cfg,
                (unsigned long long)s.tc[winner].median_ns, k->n_cands, failed);
    }

    keep_module(k, &k->cands[winner].build_key, &s.modules[winner], &s.fns[winner],
                k->cands[winner].compile_us);
    /* The launch happened: a memo without room only means the next launch
     * of this signature resolves it again. */
    if (memoize(k, sig, sig_len, hash, s.fns[winner], s.modules[winner], winner,
                sp->candidates + winner * sp->s.n_params, out) != KC_OK)
        *out = NULL;
    rc = KC_OK;
    /* The winner's module now belongs to the kept list. */
    tune_state_free(k, &s, winner);
    s = (tune_state_t){0};
fail:
    tune_state_free(k, &s, SIZE_MAX);
    free(rec_cands);
    kc_free(pre);
    return rc;
}

/* ---- resolving a missed signature -------------------------------------- */

/* The store's tuning for tkey, loaded and memoized into *out: KC_OK on a
 * hit; KC_ENOTFOUND on a miss, with *had_tuning set when a tuning was
 * there but its winner could not be loaded; or an error to return. */
static int store_hit(kc_kernel_t *k, const kc_key_t *tkey, const uint8_t *sig, size_t len,
                     uint64_t hash, const kc__memo_entry_t **out, int *had_tuning)
{
    kc_launcher_t *l = k->l;
    kc_store_t *st = l->store;
    kc_record_t *rec = NULL;
    int64_t config[KC__SPEC_MAX_PARAMS];
    size_t cand = SIZE_MAX;
    void *module = NULL, *fn = NULL;
    uint64_t compile_us = 0;
    int rc = kc_layers_get(l->layers, KC_REC_TUNING, tkey, &rec, NULL);

    *had_tuning = rc == KC_OK;
    if (rc != KC_OK)
        return KC_ENOTFOUND;
    /* No bind: the device makes its context current when it loads. */
    rc = load_stored_winner(k, &rec->u.tuning, config, &cand, &module, &fn, &compile_us);
    if (rc == KC_OK) {
        kc_store_count(st, KC_COUNTER_TUNE_US_SAVED, rec->u.tuning.tuning_us);
        kc_store_count(st, KC_COUNTER_COMPILE_US_SAVED, compile_us);
    }
    kc_free(rec);
    if (rc == KC_ESTICKY) {
        kc__errmsg_set("%s: loading the stored winner: %s", kname(k), l->dev->errmsg);
        return rc;
    }
    if (rc != KC_OK)
        return KC_ENOTFOUND;
    bump(&k->store_hits);
    kc_store_count(st, KC_COUNTER_HITS, 1);
    kc_store_touch(st, KC_REC_TUNING, tkey);
    rc = memoize(k, sig, len, hash, fn, module, cand, config, out);
    if (rc != KC_OK)
        kc__errmsg_set("%s: out of memory in the memo", kname(k));
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
        kc__errmsg_set("%s: %s", kname(k), l->dev->errmsg);
        return rc;
    }
    for (size_t i = 0; i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        void *module = NULL, *fn = NULL;

        if (c->status != KC_CAND_OK)
            continue;
        if (prepare(sp, sp->candidates + i * sp->s.n_params, NULL, args, n, &p, err,
                    sizeof(err)) != KC_OK)
            continue;
        if (!find_kept(k, &c->build_key, &module, &fn, NULL)) {
            /* The cubin and the candidate's fields are the tuner's too. */
            pthread_mutex_lock(&l->tune_lock);
            ensure_cubin(k, c, i);
            rc = c->status == KC_CAND_OK
                     ? load_cubin(k, c->cubin, c->cubin_len, c->entry, &module, &fn)
                     : KC_ECOMPILE;
            pthread_mutex_unlock(&l->tune_lock);
            if (rc == KC_ESTICKY) {
                kc__errmsg_set("%s: loading candidate %zu: %s", kname(k), i,
                               l->dev->errmsg);
                return rc;
            }
            if (rc != KC_OK)
                continue;
            keep_module(k, &c->build_key, &module, &fn, c->compile_us);
        }
        rc = build_params(sp, args, n, p.vals, p.params);
        if (rc == KC_OK)
            rc = launch_fn(l, fn, &p, stream);
        if (rc != KC_OK)
            kc__errmsg_set("%s: untuned launch: %s", kname(k), l->dev->errmsg);
        return rc;
    }
    kc__errmsg_set("%s: no candidate can run untuned: %s", kname(k), err);
    return KC_ENOCANDIDATE;
}

/* What single_flight decided. */
enum { SF_TUNE, SF_HIT, SF_UNTUNED };

/* Single flight across processes on a missed tuning: take the lease on
 * its key (then *leased and SF_TUNE), or, while another live process holds
 * it, wait for its tuning (SF_HIT, memoized into *out) or run untuned
 * (SF_UNTUNED), as the launcher's contention option says. A lease that
 * cannot be taken for another reason lets this process tune unleased. */
static int single_flight(kc_kernel_t *k, const kc_key_t *tkey, const uint8_t *sig,
                         size_t len, uint64_t hash, const kc__memo_entry_t **out,
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
            rc = store_hit(k, tkey, sig, len, hash, out, &had);
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
            publish(k, NULL);
            pthread_mutex_unlock(&l->tune_lock);
            deadline = now_us() + l->lease_wait_ms * 1000u;
            waited = 1;
        }
        if (l->contention == KC_CONTENTION_UNTUNED) {
            *what = SF_UNTUNED;
            return KC_OK;
        }
        rc = store_hit(k, tkey, sig, len, hash, out, &had);
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
static int remote_hit(kc_kernel_t *k, const kc_key_t *tkey, const uint8_t *sig,
                      size_t len, uint64_t hash, const kc__memo_entry_t **out)
{
    kc_launcher_t *l = k->l;
    int had, rc = kc_remote_pull(l->remote, l->store, tkey);

    if (rc != KC_OK) {
        if (rc != KC_ENOTFOUND)
            kc__remote_failed(l, "pull", rc);
        return KC_ENOTFOUND;
    }
    rc = store_hit(k, tkey, sig, len, hash, out, &had);
    if (rc == KC_OK) {
        bump(&k->remote_hits);
        kc__log(l, KC_LOG_DEBUG, "kcache: %s: tuning pulled from the remote tier",
                kname(k));
    }
    return rc;
}

/* The leader's work for one signature: the store, else compile and tune.
 * *launched says whether the real launch already happened (tuning does
 * it, so that it runs on the restored buffers). */
static int resolve_leader(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                          const uint8_t *sig, size_t len, uint64_t hash,
                          const kc__memo_entry_t **out, int *launched)
{
    kc_launcher_t *l = k->l;
    kc_store_t *st = l->store;
    kc_key_t tkey;
    int rc, leased = 0;

    if (st) {
        void *pre = NULL;
        size_t pre_len;
        int had_tuning = 0, keyed;

        rc = tuning_key(k, sig, len, &pre, &pre_len, &tkey);
        kc_free(pre);
        keyed = rc == KC_OK;
        if (keyed) {
            rc = store_hit(k, &tkey, sig, len, hash, out, &had_tuning);
            if (rc != KC_ENOTFOUND)
                return rc;
            if (!had_tuning && l->remote) {
                rc = remote_hit(k, &tkey, sig, len, hash, out);
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
            rc = single_flight(k, &tkey, sig, len, hash, out, &what, &leased);
            if (rc != KC_OK || what == SF_HIT)
                return rc;
            if (what == SF_UNTUNED) {
                rc = launch_untuned(k, stream, args, n);
                *launched = rc == KC_OK;
                return rc;
            }
        }
    }

    kc_kernel_wait_compiled(k);
    /* Renew: the compiles may have taken a good part of the lease's life. */
    if (leased)
        kc_store_lease_acquire(st, &tkey, l->lease_ttl_ms, NULL);
    /* Serialized per launcher: timings taken side by side on one device
     * would disturb each other. */
    pthread_mutex_lock(&l->tune_lock);
    rc = tune_and_publish(k, stream, args, n, sig, len, hash, out);
    pthread_mutex_unlock(&l->tune_lock);
    /* After the publish: a waiter that finds the lease gone finds the
     * tuning too (or, after a failure, tunes itself). */
    if (leased)
        kc_store_lease_release(st, &tkey);
    *launched = rc == KC_OK;
    return rc;
}

/* In-process single flight: one thread per signature resolves a miss while
 * the others wait for it, then find the result in the memo. If the leader
 * fails, a waiter takes over and tries itself. */
static int resolve(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n,
                   const uint8_t *sig, size_t len, uint64_t hash,
                   const kc__memo_entry_t **out, int *launched)
{
    flight_t *f;
    int rc;

    *out = NULL;
    *launched = 0;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        *out = kc__memo_find(&k->memo, sig, len, hash);
        if (*out) {
            pthread_mutex_unlock(&k->mu);
            return KC_OK;
        }
        for (f = k->flights; f; f = f->next)
            if (f->hash == hash && f->len == len && memcmp(f->sig, sig, len) == 0)
                break;
        if (!f)
            break;
        f->waiters++;
        while (!f->done)
            pthread_cond_wait(&k->flight_cv, &k->mu);
        if (--f->waiters == 0)
            free(f);
    }
    f = malloc(sizeof(*f) + len);
    if (!f) {
        pthread_mutex_unlock(&k->mu);
        kc__errmsg_set("%s: out of memory", kname(k));
        return KC_ENOMEM;
    }
    *f = (flight_t){.next = k->flights, .hash = hash, .len = len};
    memcpy(f->sig, sig, len);
    k->flights = f;
    pthread_mutex_unlock(&k->mu);

    rc = resolve_leader(k, stream, args, n, sig, len, hash, out, launched);

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

/* ---- the public calls -------------------------------------------------- */

/* The shape signature of args[n] (n checked by the caller) into sig. */
static int shape_sig(const kc_kernel_t *k, const kc_arg_t *args, size_t n, uint8_t *sig,
                     size_t *sig_len)
{
    const kc__spec_t *sp = k->spec;
    kc_argdesc_t desc[KC__MAX_ARGS];
    int rc;

    for (size_t i = 0; i < n; i++) {
        const kc_arg_spec_t *a = &sp->s.args[i];
        desc[i] = (kc_argdesc_t){.kind = a->kind,
                                 .dtype = a->dtype,
                                 .rank = args[i].rank,
                                 .dims = args[i].dims,
                                 .addr = args[i].ptr,
                                 .is_key = a->is_key};
        desc[i].value.u = args[i].value.u;
    }
    rc = kc_shape_sig_encode(desc, n, sp->s.dims_policy, sig, SIG_CAP, sig_len);
    if (rc != KC_OK)
        kc__errmsg_set("%s: the arguments do not describe a shape (rank over %d, a "
                       "negative dim, or dims missing)",
                       kname(k), KC_MAX_RANK);
    return rc;
}

int kc__kernel_tuning_key(kc_kernel_t *k, const kc_arg_t *args, size_t n, kc_key_t *key)
{
    uint8_t sig[SIG_CAP];
    size_t sig_len = 0;
    void *pre = NULL;
    size_t pre_len;
    int rc;

    if (!k || !key || (n && !args) || n != k->spec->s.n_args)
        return KC_EINVAL;
    rc = shape_sig(k, args, n, sig, &sig_len);
    if (rc == KC_OK)
        rc = tuning_key(k, sig, sig_len, &pre, &pre_len, key);
    kc_free(pre);
    return rc;
}

int kc_kernel_launch(kc_kernel_t *k, void *stream, const kc_arg_t *args, size_t n)
{
    uint8_t sig[SIG_CAP];
    size_t sig_len = 0;
    const kc__memo_entry_t *e;
    int rc, launched = 0;

    if (!k || (n && !args))
        return KC_EINVAL;
    const kc__spec_t *sp = k->spec;
    bump(&k->launches);
    if (n != sp->s.n_args) {
        bump(&k->memo_misses);
        kc__errmsg_set("%s: %zu arguments given, the spec has %zu", kname(k), n,
                       sp->s.n_args);
        return KC_EINVAL;
    }
    if (!k->l->dev) {
        bump(&k->memo_misses);
        kc__errmsg_set("%s: the launcher has no device (KC_DEVICE_NONE)", kname(k));
        return KC_ENODEVICE;
    }
    rc = shape_sig(k, args, n, sig, &sig_len);
    if (rc != KC_OK) {
        bump(&k->memo_misses);
        return rc;
    }
    /* The common case, the shapes of the kernel's last launch: one compare,
     * no hash and no table probe. */
    e = atomic_load_explicit(&k->last, memory_order_acquire);
    if (!e || e->sig_len != sig_len || memcmp(e->sig, sig, sig_len) != 0) {
        uint64_t hash = kc__memo_hash(sig, sig_len);
        e = kc__memo_find(&k->memo, sig, sig_len, hash);
        if (!e) {
            bump(&k->memo_misses);
            rc = resolve(k, stream, args, n, sig, sig_len, hash, &e, &launched);
            if (rc != KC_OK)
                return rc;
        }
        /* Written only when the shape changes: a store on every launch
         * would bounce the kernel's cache line between threads launching
         * it. */
        if (e)
            atomic_store_explicit(&k->last, e, memory_order_release);
    }
    if (launched)
        return KC_OK;
    return launch_entry(k, e, stream, args, n);
}

int kc_kernel_wait_compiled(kc_kernel_t *k)
{
    int ok = 0;

    if (!k)
        return KC_EINVAL;
    pthread_mutex_lock(&k->mu);
    while (!k->compile_done || !k->prefetch_done)
        pthread_cond_wait(&k->compiled_cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
    for (size_t i = 0; i < k->n_cands; i++)
        ok += k->cands[i].status == KC_CAND_OK;
    if (ok)
        return KC_OK;
    kc__errmsg_set("%s: no candidate compiled; candidate 0: %s", kname(k),
                   k->cands[0].reason ? k->cands[0].reason : "failed");
    return KC_ECOMPILE;
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
    for (size_t i = 0; k->cands && i < k->n_cands; i++) {
        cand_t *c = &k->cands[i];
        release_build_lease(k, c);
        free(c->reason);
        kc_free(c->cubin);
        kc_free(c->preimage);
        kc_free(c->entry);
    }
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

void kc__kernel_free(kc_kernel_t *k)
{
    if (k)
        kernel_free(k);
}

/* Register an owned spec: the same identity gives the kernel already
 * registered. Takes spec in every case. */
static int register_spec(kc_launcher_t *l, kc__spec_t *spec, kc_kernel_t **out)
{
    kc_kernel_t *k = NULL;
    int rc = KC_ENOMEM;

    if (spec->s.n_args > KC__MAX_ARGS) {
        kc__errmsg_set("spec '%s': args: %zu arguments, at most %d are supported",
                       spec->s.name, spec->s.n_args, KC__MAX_ARGS);
        kc__spec_free(spec);
        return KC_ESPEC;
    }
    pthread_mutex_lock(&l->lock);
    for (kc_kernel_t *x = l->kernels; x; x = x->next)
        if (kc_key_cmp(&x->spec->identity, &spec->identity) == 0) {
            pthread_mutex_unlock(&l->lock);
            kc__spec_free(spec);
            *out = x;
            return KC_OK;
        }
    k = calloc(1, sizeof(*k));
    if (!k)
        goto fail;
    k->l = l;
    k->spec = spec;
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
    snprintf(k->toolchain, sizeof(k->toolchain), "driver-%u", l->info.driver_version);
    k->pending = nc;
    k->compile_done = nc == 0;
    /* Prefetch only where a device will launch and a store may hold
     * winners. */
    int prefetch = l->dev && l->store && !l->no_prefetch;
    k->prefetch_done = !prefetch;
    k->prefetch_task = (compile_task_t){k, 0};
    k->next = l->kernels;
    l->kernels = k;
    pthread_mutex_unlock(&l->lock);

    /* The asynchronous compile at load: every candidate at once. A task
     * the pool refuses runs here instead. */
    for (size_t i = 0; i < nc; i++)
        if (kc__pool_submit(l->pool, compile_one, &k->tasks[i]) != KC_OK)
            compile_one(&k->tasks[i]);
    if (prefetch &&
        kc__pool_submit(l->pool, prefetch_winners, &k->prefetch_task) != KC_OK)
        prefetch_winners(&k->prefetch_task);
    *out = k;
    return KC_OK;
fail:
    pthread_mutex_unlock(&l->lock);
    kc__spec_free(spec);
    kc__errmsg_set("out of memory registering a kernel");
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
        kc__errmsg_set("kc_kernel_get: NULL argument");
        return KC_EINVAL;
    }
    err[0] = '\0';
    rc = kc__spec_create(in, &spec, err, sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set("%s", err);
        return rc;
    }
    return register_spec(l, spec, out);
}

int kc_kernel_load_file(kc_launcher_t *l, const char *path, kc_kernel_t ***out, size_t *n)
{
    kc__spec_t **specs = NULL;
    kc_kernel_t **ks = NULL;
    size_t count = 0, i = 0;
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
        kc__errmsg_set("%s", err);
        return rc;
    }
    ks = malloc((count ? count : 1) * sizeof(*ks));
    if (!ks) {
        rc = KC_ENOMEM;
        kc__errmsg_set("%s: out of memory", path);
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

int kc_kernel_find(kc_launcher_t *l, const char *name, kc_kernel_t **out)
{
    if (out)
        *out = NULL;
    if (!l || !name || !out)
        return KC_EINVAL;
    pthread_mutex_lock(&l->lock);
    for (kc_kernel_t *k = l->kernels; k; k = k->next)
        if (strcmp(k->spec->s.name, name) == 0) {
            *out = k;
            break;
        }
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
