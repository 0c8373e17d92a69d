/* Digested zstd dictionaries for decoding, shared by every thread.
 *
 * Decoding with a raw dictionary loads its entropy tables on every call,
 * which costs more than the decompress itself: a get of a 5.5 KiB cubin
 * took 9.3 us with its 12.5 KiB dictionary against 4.1 us without one. So
 * each dictionary met is digested once into a ZSTD_DDict and kept for the
 * life of the process. A dictionary is known by its id, its length and the
 * XXH3-64 of its bytes: two stores may hold different dictionaries under
 * one id. At most KC__DDICT_MAX are kept; past that a dictionary is used
 * undigested, slower but correct. Entries are only ever appended and a
 * ZSTD_DDict is read-only once made, so lookups take no lock; making one
 * takes a mutex, so that two threads never digest the same one twice. */
#include "blob_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#include <xxhash.h>
#include <zstd.h>

#define KC__DDICT_MAX 8

typedef struct ddict_ent {
    uint32_t id;
    size_t len;
    uint64_t hash;
    ZSTD_DDict *ddict;
} ddict_ent_t;

static ddict_ent_t ents[KC__DDICT_MAX];
static _Atomic size_t n_ents; /* entries [0, n_ents) are complete */
static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child's lock is made anew: a thread of the parent may have held
 * it at the fork. */
static void make_lock_after_fork_in_child(void)
{
    pthread_mutex_init(&make_lock, NULL);
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, make_lock_after_fork_in_child);
}

static const ZSTD_DDict *find(size_t n, uint32_t id, size_t len, uint64_t hash)
{
    for (size_t i = 0; i < n; i++)
        if (ents[i].id == id && ents[i].len == len && ents[i].hash == hash)
            return ents[i].ddict;
    return NULL;
}

const ZSTD_DDict *kc__blob_ddict(const void *dict, size_t len, uint32_t id)
{
    uint64_t hash = XXH3_64bits(dict, len);
    const ZSTD_DDict *dd =
        find(atomic_load_explicit(&n_ents, memory_order_acquire), id, len, hash);
    if (dd)
        return dd;
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&make_lock);
    size_t n = atomic_load_explicit(&n_ents, memory_order_relaxed);
    dd = find(n, id, len, hash);
    if (!dd && n < KC__DDICT_MAX) {
        ZSTD_DDict *made = ZSTD_createDDict(dict, len);
        if (made) {
            ents[n] = (ddict_ent_t){id, len, hash, made};
            atomic_store_explicit(&n_ents, n + 1, memory_order_release);
            dd = made;
        }
    }
    pthread_mutex_unlock(&make_lock);
    return dd;
}
