/* jansson seeds the hash of its objects at their first use, from
 * /dev/urandom: an open, a read and a close on the first call of every
 * process that parses a spec. getrandom(2) gives the same entropy in one
 * system call. json_object_seed keeps the first seed it is given, so a
 * program that used jansson before keeps its own. */
#include "json_seed.h"

#include <jansson.h>
#include <pthread.h>
#include <sys/random.h>

static pthread_once_t seeded = PTHREAD_ONCE_INIT;

static void seed(void)
{
    size_t s = 0;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s) && s != 0)
        json_object_seed(s);
}

void kc__json_seed(void)
{
    pthread_once(&seeded, seed);
}
