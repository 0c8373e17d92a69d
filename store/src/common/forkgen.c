/* The fork generation (forkgen.h). */
#include "forkgen.h"

#include <pthread.h>

_Atomic unsigned kc__fork_generation;

static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

/* In the child, before fork() returns there: a new generation, and the
 * adoption lock made anew (a thread of the parent may have held it). */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&adopt_lock, NULL);
    atomic_fetch_add_explicit(&kc__fork_generation, 1, memory_order_release);
}

static void install(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

void kc__fork_watch(void)
{
    pthread_once(&watch_once, install);
}

void kc__fork_adopt_slow(_Atomic unsigned *gen, int (*adopt)(void *obj), void *obj)
{
    pthread_mutex_lock(&adopt_lock);
    if (kc__fork_inherited(gen) && adopt(obj) == 0)
        kc__fork_mark(gen);
    pthread_mutex_unlock(&adopt_lock);
}

void kc__fork_adopt_lock(void)
{
    pthread_mutex_lock(&adopt_lock);
}

void kc__fork_adopt_unlock(void)
{
    pthread_mutex_unlock(&adopt_lock);
}
