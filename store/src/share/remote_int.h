/* The remote tier's servers and their URLs. Internal to share/. */
#ifndef KCACHE_REMOTE_INT_H
#define KCACHE_REMOTE_INT_H

#include <stddef.h>

/* The most servers one handle spreads its keys over. */
#define KC__REMOTE_MAX_SHARDS 64

/* One Redis server, as its URL names it. */
typedef struct kc__rserver {
    char host[256]; /* TCP: a name or an address; "" for a unix socket */
    int port;
    char path[108]; /* a unix socket's path, or "" */
    int db;         /* SELECT db after connecting (0: none) */
    char user[128]; /* AUTH user password (ACL), or "" */
    char pass[256]; /* AUTH password, or "" for none */
    char name[384]; /* "host:port" or "unix:path": messages and the shard hash */
} kc__rserver_t;

/* Parse one server URL (kcache/remote.h):
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:/path/to/socket[?db=N][&user=U][&password=P]
 * user and password may be percent-encoded. rediss:// is refused: this
 * build's hiredis has no TLS. KC_EINVAL with a message under owner. */
int kc__remote_parse_url(const char *url, size_t len, kc__rserver_t *out,
                         const void *owner);

#endif
