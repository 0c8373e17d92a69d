/* jansson's hash seed, set once before kcache's first parse. Internal. */
#ifndef KCACHE_JSON_SEED_H
#define KCACHE_JSON_SEED_H

/* Seeds jansson's object hash from getrandom(2), once per process, so that
 * the first json_loadb does not open and read /dev/urandom itself (about
 * 15-20 us of a process's first call). A no-op if the program's own jansson
 * use seeded it first, or if getrandom has nothing to give (jansson then
 * seeds itself as before). */
void kc__json_seed(void);

#endif
