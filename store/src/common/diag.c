/* Per-thread, owner-keyed diagnostics (see diag.h). */
#include "diag.h"

#include <stdio.h>
#include <string.h>

const char kc__diag_store_open[] = "store open";
const char kc__diag_launcher_create[] = "launcher create";
const char kc__diag_remote_open[] = "remote open";

static _Thread_local char tls_msg[KC__DIAG_SIZE];
static _Thread_local const void *tls_owner;

int kc__diag_vfail(const void *owner, int rc, const char *fmt, va_list ap)
{
    /* Formatted aside first: the arguments may be the slot itself, as when a
     * launcher wraps its device's message in its own. */
    char msg[KC__DIAG_SIZE];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    memcpy(tls_msg, msg, sizeof(msg));
    tls_owner = owner;
    return rc;
}

int kc__diag_fail(const void *owner, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kc__diag_vfail(owner, rc, fmt, ap);
    va_end(ap);
    return rc;
}

const char *kc__diag_get(const void *owner)
{
    if (owner && tls_owner == owner)
        return tls_msg;
    return "";
}

int kc__diag_owns(const void *owner)
{
    return owner && tls_owner == owner;
}

void kc__diag_clear(void)
{
    tls_owner = NULL;
    tls_msg[0] = '\0';
}

void kc__diag_release(const void *owner)
{
    if (tls_owner == owner)
        kc__diag_clear();
}
