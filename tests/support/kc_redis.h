/* A real redis-server for tests, on a free loopback port, with no
 * persistence, started and stopped by the test itself. */
#ifndef KC_TEST_KC_REDIS_H
#define KC_TEST_KC_REDIS_H

#include <sys/types.h>

typedef struct kct_redis {
    pid_t pid;
    int port;
    char url[256];      /* redis://[:password@]127.0.0.1:port */
    char password[64];  /* requirepass, or "" */
    char sock[108];     /* its unix socket, or "" */
    char unix_url[256]; /* unix:sock[?password=...], or "" */
} kct_redis_t;

/* A free TCP port on 127.0.0.1 (bound and released: nothing listens on it). */
int kct_free_port(void);

/* Start redis-server on port (0: a free one) and wait until it answers
 * PING (up to 10 s). 0, or -1 with a message on stderr (redis-server
 * missing or not answering). */
int kct_redis_start(kct_redis_t *r, int port);

/* The same with requirepass password (NULL: none) and, if unix_socket,
 * also listening on a unix socket in /tmp (r->sock, r->unix_url). */
int kct_redis_start_ex(kct_redis_t *r, int port, const char *password, int unix_socket);

/* Stop it (SIGTERM, then wait). Accepts a server that was never started. */
void kct_redis_stop(kct_redis_t *r);

#endif
