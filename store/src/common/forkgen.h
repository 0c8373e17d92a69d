/* Objects that outlive a fork. A forked child has only the thread that
 * forked: a lock another thread of the parent held stays held, and an
 * object's hold on the parent's resources (an LMDB environment, a socket,
 * a thread) is not the child's. An object that must notice records the
 * fork generation when it is made and compares it at use: a different one
 * means it was inherited, and it is taken over (adopted) once, under
 * kc__fork_adopt_lock. Internal. */
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

/* Serializes adoptions in a process (made anew in each forked child). */
void kc__fork_adopt_lock(void);
void kc__fork_adopt_unlock(void);

#endif
