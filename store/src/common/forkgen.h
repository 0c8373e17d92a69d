/* Objects that outlive a fork. A forked child has only the thread that
 * forked: a lock another thread of the parent held stays held, and an
 * object's hold on the parent's resources (an LMDB environment, a socket,
 * a thread) is not the child's. An object that must notice records the
 * fork generation when it is made and compares it at use: a different one
 * means it was inherited, and it is taken over (adopted) once
 * (kc__fork_adopt). Internal. */
#ifndef KCACHE_COMMON_FORKGEN_H
#define KCACHE_COMMON_FORKGEN_H

#include <stdatomic.h>

extern _Atomic unsigned kc__fork_generation;

/* Count forks from now on (a pthread_atfork handler, installed once per
 * process). Call it before a fork that an object made now must notice. */
void kc__fork_watch(void);

/* This process's generation: 0 in the first, one more in each forked
 * child (counted from the first kc__fork_watch). */
static inline unsigned kc__fork_gen(void)
{
    return atomic_load_explicit(&kc__fork_generation, memory_order_acquire);
}

/* An object made now: *gen records this process's generation. */
static inline void kc__fork_mark(_Atomic unsigned *gen)
{
    atomic_store_explicit(gen, kc__fork_gen(), memory_order_release);
}

/* Whether the object of *gen was made before this process was forked. */
static inline int kc__fork_inherited(_Atomic unsigned *gen)
{
    return atomic_load_explicit(gen, memory_order_acquire) != kc__fork_gen();
}

/* At every use of an object that must notice a fork: if it was inherited,
 * adopt(obj) runs, under the adoption lock, in the first thread that comes,
 * and the object is marked as this process's, unless adopt returns non-zero
 * (not now: the next use tries again). One atomic load otherwise. */
void kc__fork_adopt_slow(_Atomic unsigned *gen, int (*adopt)(void *obj), void *obj);
static inline void kc__fork_adopt(_Atomic unsigned *gen, int (*adopt)(void *obj),
                                  void *obj)
{
    if (__builtin_expect(kc__fork_inherited(gen), 0))
        kc__fork_adopt_slow(gen, adopt, obj);
}

/* The adoption lock, for what must not run beside an adoption (made anew
 * in each forked child). */
void kc__fork_adopt_lock(void);
void kc__fork_adopt_unlock(void);

#endif
