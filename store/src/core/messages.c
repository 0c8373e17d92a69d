/* The store's messages: what kc_store_errmsg and kc_store_open_errmsg
 * return, and the helpers every public call uses to leave them. They are the
 * common diagnostics (common/diag.h) with the handle as owner, and
 * kc__diag_store_open for a failed open. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/statvfs.h>

#include "store_internal.h"

const char *kc_store_errmsg(const kc_store_t *store)
{
    return kc__diag_get(store);
}

const char *kc_store_open_errmsg(void)
{
    return kc__diag_get(kc__diag_store_open);
}

void kc__store_set_open_errmsg(const char *msg)
{
    kc__diag_fail(kc__diag_store_open, 0, "%s", msg);
}

void kc__store_begin_call(const kc_store_t *st)
{
    kc__diag_release(st);
}

int kc__store_fail(const kc_store_t *st, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kc__diag_vfail(st, rc, fmt, ap);
    va_end(ap);
    return rc;
}

int kc__store_finish(const kc_store_t *st, int rc, const char *what)
{
    if (rc == 0)
        return KC_OK;
    if (kc__is_mdb_rc(rc)) {
        int code = kc__mdb_code(rc);
        if (code == KC_ENOTFOUND)
            return code;
        /* LMDB reports a write cut short by a full disk as EIO; say what
         * happened when the filesystem is indeed (nearly) out of space. */
        struct statvfs vfs;
        if (rc == EIO && statvfs(st->path, &vfs) == 0 &&
            (uint64_t)vfs.f_bavail * vfs.f_frsize < ((uint64_t)1 << 20))
            return kc__store_fail(st, KC_ENOSPC,
                                  "%s: no space left on the filesystem of store %s (%s)",
                                  what, st->path, mdb_strerror(rc));
        return kc__store_fail(st, code, "%s: %s (store %s)", what, mdb_strerror(rc),
                              st->path);
    }
    if (rc != KC_ENOTFOUND && !kc__diag_owns(st))
        kc__store_fail(st, rc, "%s: %s (store %s)", what, kc_strerror(rc), st->path);
    return rc;
}

int kc__store_check_writable(const kc_store_t *st, const char *what)
{
    if (st->readonly && st->sealed)
        return kc__store_fail(st, KC_EREADONLY,
                              "%s: store %s is sealed (read-only for everyone; `cachectl "
                              "unseal` lifts it)",
                              what, st->path);
    if (st->readonly)
        return kc__store_fail(st, KC_EREADONLY, "%s: store %s is read-only", what,
                              st->path);
    return KC_OK;
}

int kc__store_open_fail(int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kc__diag_vfail(kc__diag_store_open, rc, fmt, ap);
    va_end(ap);
    return rc;
}
