/* The store's size limit, enforced after publishes. Internal; gc.c.
 *
 * The handle holds the limit (kc_store_t.max_size, resolved by
 * kc_store_open from its options and KCACHE_MAX_SIZE); only this layer acts
 * on it. */
#ifndef KCACHE_GC_INTERNAL_H
#define KCACHE_GC_INTERNAL_H

#include <stdint.h>

#include "kcache/store.h"

/* Called by kc_store_publish after its transaction committed. If the store
 * is above the handle's limit, run gc down to 90% of it, sparing records
 * used at or after since (the publish's own). The result is ignored: a
 * failed gc is not a failed publish. */
void kc__gc_after_publish(kc_store_t *store, uint64_t since);

#endif
