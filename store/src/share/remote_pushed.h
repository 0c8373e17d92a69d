/* The builds a remote handle pushed lately. Internal.
 *
 * A tuning's push carries its candidates' builds and their cubins, and the
 * tunings of one kernel (one per shape signature) name the same
 * candidates: without this, each new signature, and each tuning of a
 * `cachectl remote push`, uploads them all again. A handle skips a build
 * it pushed itself less than a window ago (60 s, or half the values' TTL
 * if that is shorter, so that TTLs are still refreshed). A direct-mapped
 * table of 4,096 keys: a key that lost its slot is just pushed again. A
 * pull that meets a damaged value clears it, so that pushes repair. */
#ifndef KCACHE_REMOTE_PUSHED_H
#define KCACHE_REMOTE_PUSHED_H

#include <stdint.h>

#include "kcache/key.h"

typedef struct kc__pushed kc__pushed_t;

/* NULL when out of memory (every build is then pushed). */
kc__pushed_t *kc__pushed_new(uint64_t ttl_s);
void kc__pushed_free(kc__pushed_t *p);

/* Whether key was noted within the window before now_us. Accepts NULL. */
int kc__pushed_recent(kc__pushed_t *p, const kc_key_t *key, uint64_t now_us);
/* Note that key was pushed at now_us. Accepts NULL. */
void kc__pushed_note(kc__pushed_t *p, const kc_key_t *key, uint64_t now_us);
/* Forget every key: a pull met a damaged value, and pushes repair. */
void kc__pushed_clear(kc__pushed_t *p);
/* In a forked child: the lock made anew (a thread of the parent may have
 * held it at the fork). Accepts NULL. */
void kc__pushed_after_fork(kc__pushed_t *p);

#endif
