/* See remote_pushed.h. */
#include "remote_pushed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PUSHED_SLOTS 4096 /* a power of two */
#define PUSHED_WINDOW_US (60u * 1000000u)

typedef struct slot {
    kc_key_t key;
    uint64_t at_us; /* 0: empty */
} slot_t;

struct kc__pushed {
    pthread_mutex_t mu;
    uint64_t window_us;
    slot_t slots[PUSHED_SLOTS];
};

kc__pushed_t *kc__pushed_new(uint64_t ttl_s)
{
    kc__pushed_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->window_us = PUSHED_WINDOW_US;
    if (ttl_s && ttl_s * 1000000u / 2 < p->window_us)
        p->window_us = ttl_s * 1000000u / 2;
    return p;
}

void kc__pushed_after_fork(kc__pushed_t *p)
{
    if (p)
        pthread_mutex_init(&p->mu, NULL);
}

void kc__pushed_free(kc__pushed_t *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Keys are hashes: their first bytes spread evenly. */
static slot_t *slot_of(kc__pushed_t *p, const kc_key_t *key)
{
    uint32_t h;
    memcpy(&h, key->b, sizeof(h));
    return &p->slots[h & (PUSHED_SLOTS - 1)];
}

int kc__pushed_recent(kc__pushed_t *p, const kc_key_t *key, uint64_t now_us)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    const slot_t *s = slot_of(p, key);
    int recent = s->at_us && kc_key_cmp(&s->key, key) == 0 && now_us >= s->at_us &&
                 now_us - s->at_us < p->window_us;
    pthread_mutex_unlock(&p->mu);
    return recent;
}

void kc__pushed_note(kc__pushed_t *p, const kc_key_t *key, uint64_t now_us)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    slot_t *s = slot_of(p, key);
    s->key = *key;
    s->at_us = now_us ? now_us : 1;
    pthread_mutex_unlock(&p->mu);
}

void kc__pushed_clear(kc__pushed_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    memset(p->slots, 0, sizeof(p->slots));
    pthread_mutex_unlock(&p->mu);
}
