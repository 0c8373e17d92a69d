/* The launch hot path: shape signature -> the kernel's memo -> evaluate the
 * geometry -> cuLaunchKernel. A launch with the shapes of the kernel's last
 * one skips the signature hash and the memo probe; a signature missing from
 * the memo goes to miss.c. */
#include "kernel_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int launch_entry(kc_kernel_t *k, const kc__memo_entry_t *e, void *fn, void *stream,
                        const kc_arg_t *args, size_t n)
{
    kc_launcher_t *l = k->l;
    char err[512];
    prep_t p;
    int rc;

    rc = kc__prepare(k->spec, e->config, e->geo, args, n, &p, err, sizeof(err));
    if (rc != KC_OK) {
        kc__errmsg_set(k->l, "%s", err);
        return rc;
    }
    rc = kc__build_params(k->l, k->spec, args, n, p.vals, p.params);
    if (rc != KC_OK)
        return rc;
    /* The device makes its context current itself when it must: a bind
     * here would cost a driver call on every launch. */
    rc = kc__launch_cand(k, e->cand, fn, &p, stream);
    if (rc != KC_OK)
        kc__errmsg_set(k->l, "%s: launch: %s", kname(k), kc__device_errmsg(l->dev));
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
        kc__errmsg_set(k->l,
                       "%s: the arguments do not describe a shape (rank over %d, a "
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
        rc = kc__tuning_key(k, sig, sig_len, &pre, &pre_len, key);
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
        kc__errmsg_set(k->l, "%s: %zu arguments given, the spec has %zu", kname(k), n,
                       sp->s.n_args);
        return KC_EINVAL;
    }
    if (!k->l->dev) {
        bump(&k->memo_misses);
        kc__errmsg_set(k->l, "%s: the launcher has no device (KC_DEVICE_NONE)", kname(k));
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
            kc__miss_t m = {sig, sig_len, hash, &e};
            rc = kc__resolve(k, stream, args, n, &m, &launched);
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
    if (!e->kept)
        return launch_entry(k, e, e->fn, stream, args, n);
    /* Under a bound on loaded modules: the launch holds a pin, so the
     * module is not unloaded under it; one unloaded already is loaded
     * again from the store. */
    void *fn;
    if (!kc__pin(e->kept, &fn)) {
        rc = kc__pin_slow(k, e->kept, &fn);
        if (rc != KC_OK)
            return rc;
    }
    rc = launch_entry(k, e, fn, stream, args, n);
    kc__unpin(e->kept);
    return rc;
}
