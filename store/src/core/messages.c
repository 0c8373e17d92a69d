/* The store's messages: what kc_store_errmsg and kc_store_open_errmsg
 * return, and the helpers every public call uses to leave them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/statvfs.h>

#include "store_internal.h"

/* Messages are per thread, and a handle's message belongs to the handle
 * that left it. */
static _Thread_local char tls_msg[KC__STORE_MSG_SIZE];
static _Thread_local const kc_store_t *tls_msg_owner;
static _Thread_local char tls_open_msg[KC__STORE_MSG_SIZE];

const char *kc_store_errmsg(const kc_store_t *store)
{
    if (store && tls_msg_owner == store)
        return tls_msg;
    return "";
}

const char *kc_store_open_errmsg(void)
{
    return tls_open_msg;
}

void kc__store_set_open_errmsg(const char *msg)
{
    snprintf(tls_open_msg, sizeof(tls_open_msg), "%s", msg);
}

void kc__store_begin_call(void)
{
    tls_msg_owner = NULL;
}

int kc__store_fail(const kc_store_t *st, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof(tls_msg), fmt, ap);
    va_end(ap);
    tls_msg_owner = st;
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
    if (rc != KC_ENOTFOUND && tls_msg_owner != st)
        kc__store_fail(st, rc, "%s: %s (store %s)", what, kc_strerror(rc), st->path);
    return rc;
}

int kc__store_check_writable(const kc_store_t *st, const char *what)
{
    if (st->readonly)
        return kc__store_fail(st, KC_EREADONLY, "%s: store %s is read-only", what,
                              st->path);
    return KC_OK;
}

int kc__store_open_fail(int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tls_open_msg, sizeof(tls_open_msg), fmt, ap);
    va_end(ap);
    return rc;
}
