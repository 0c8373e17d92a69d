/* Diagnostics: the one way every kcache object leaves the detail of a
 * failure. Internal.
 *
 * The model is errno's, keyed by owner. Each thread has one message slot and
 * remembers which object wrote it. A call that fails writes the slot with its
 * owner (a store, a launcher, a remote handle, a device) and returns a code;
 * the object's public errmsg call (kc_store_errmsg, kc_launcher_errmsg,
 * kc_remote_errmsg) returns the slot only when it belongs to that object, and
 * "" otherwise, so a message never describes somebody else's failure.
 *
 * A constructor that fails has no object yet: it writes under one of the
 * static owners below, which kc_store_open_errmsg(),
 * kc_launcher_create_errmsg() and kc_remote_open's NULL handle read.
 *
 * Everything here is thread-safe by construction (thread-local state only);
 * a message written on a pool thread is that thread's, never the caller's.
 */
#ifndef KCACHE_COMMON_DIAG_H
#define KCACHE_COMMON_DIAG_H

#include <stdarg.h>

/* The capacity of a message, NUL included; longer ones are cut. */
#define KC__DIAG_SIZE 1024

/* Owners for failures that happen before an object exists. */
extern const char kc__diag_store_open[];
extern const char kc__diag_launcher_create[];
extern const char kc__diag_remote_open[];

/* Write this thread's message from a format, owned by owner; return rc. */
__attribute__((format(printf, 3, 4))) int kc__diag_fail(const void *owner, int rc,
                                                        const char *fmt, ...);
__attribute__((format(printf, 3, 0))) int kc__diag_vfail(const void *owner, int rc,
                                                         const char *fmt, va_list ap);

/* The thread's message if owner wrote it last, else "". Never NULL; valid
 * until this thread's next kc__diag_* call. */
const char *kc__diag_get(const void *owner);

/* Whether owner wrote this thread's message last. */
int kc__diag_owns(const void *owner);

/* Forget this thread's message (a public call starting afresh). */
void kc__diag_clear(void);

/* Forget this thread's message if owner wrote it: a call on owner starts, so
 * owner's old message no longer describes its last failure. */
void kc__diag_release(const void *owner);

#endif
