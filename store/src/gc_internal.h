/* The store's size limit, enforced after publishes. Internal; gc.c. */
#ifndef KCACHE_GC_INTERNAL_H
#define KCACHE_GC_INTERNAL_H

#include <stdint.h>

#include "kcache/store.h"

/* The limit a handle enforces: requested if non-zero, else the value of
 * KCACHE_MAX_SIZE if it parses, else 0 (none). An unparsable value is
 * ignored rather than failing every open over a typo in the environment. */
uint64_t kc__gc_limit(uint64_t requested);

/* Called by kc_store_publish after its transaction committed. If the store
 * is above the handle's limit, run gc down to 90% of it, sparing records
 * used at or after since (the publish's own). The result is ignored: a
 * failed gc is not a failed publish. */
void kc__gc_after_publish(kc_store_t *store, uint64_t since);

#endif
