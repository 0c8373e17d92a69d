/* Reading the remote tier's server URLs. See remote_int.h. */
#include "remote_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "kcache/errors.h"
#include "wire.h"

/* Copy s[0..len) percent-decoded into out (size cap). -1 if it does not
 * fit or holds a bad escape. */
static int unescape(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int a = kc__hex_digit(s[i + 1]), b = kc__hex_digit(s[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            c = (char)(a * 16 + b);
            i += 2;
        }
        if (o + 1 >= cap || c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int bad(const void *owner, const char *url, size_t len, const char *why)
{
    return kc__diag_fail(owner, KC_EINVAL, "remote URL \"%.*s\": %s", (int)len, url, why);
}

static int parse_db(const char *s, size_t len, int *db)
{
    char buf[16], *e;
    long v;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtol(buf, &e, 10);
    if (*e || errno || v < 0 || v > INT_MAX || buf[0] == '-' || buf[0] == '+')
        return -1;
    *db = (int)v;
    return 0;
}

/* unix:/path[?db=N][&user=U][&password=P] */
static int parse_unix(const char *url, size_t len, kc__rserver_t *o, const void *owner)
{
    const char *p = url + 5, *end = url + len;
    const char *q = memchr(p, '?', (size_t)(end - p));
    size_t plen;

    if (!q)
        q = end;
    while (q - p > 1 && p[0] == '/' && p[1] == '/')
        p++; /* unix:///path */
    plen = (size_t)(q - p);
    if (plen == 0 || p[0] != '/')
        return bad(owner, url, len, "a unix socket needs an absolute path (unix:/path)");
    if (plen >= sizeof(o->path))
        return bad(owner, url, len, "the socket path is too long");
    memcpy(o->path, p, plen);
    o->path[plen] = '\0';
    snprintf(o->name, sizeof(o->name), "unix:%s", o->path);
    p = q < end ? q + 1 : end;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *eq;
        if (!amp)
            amp = end;
        eq = memchr(p, '=', (size_t)(amp - p));
        if (!eq)
            return bad(owner, url, len, "a query parameter without '='");
        size_t klen = (size_t)(eq - p), vlen = (size_t)(amp - eq - 1);
        if (klen == 2 && memcmp(p, "db", 2) == 0) {
            if (parse_db(eq + 1, vlen, &o->db) != 0)
                return bad(owner, url, len, "bad database number");
        } else if (klen == 4 && memcmp(p, "user", 4) == 0) {
            if (unescape(eq + 1, vlen, o->user, sizeof(o->user)) != 0)
                return bad(owner, url, len, "bad or too long user");
        } else if (klen == 8 && memcmp(p, "password", 8) == 0) {
            if (unescape(eq + 1, vlen, o->pass, sizeof(o->pass)) != 0)
                return bad(owner, url, len, "bad or too long password");
        } else {
            return bad(owner, url, len,
                       "unknown query parameter (db, user and password are known)");
        }
        p = amp < end ? amp + 1 : end;
    }
    return KC_OK;
}

int kc__remote_parse_url(const char *url, size_t len, kc__rserver_t *o, const void *owner)
{
    static const char scheme[] = "redis://";
    const char *p, *end = url + len, *at, *hend;
    size_t hlen;

    memset(o, 0, sizeof(*o));
    if (len >= 8 && memcmp(url, "rediss:/", 8) == 0)
        return bad(owner, url, len,
                   "TLS (rediss://) is not supported: this kcache's hiredis was built "
                   "without SSL; reach the server through a TLS tunnel (stunnel, "
                   "spiped) on a local port and use redis:// to it (docs/FORMAT.md, "
                   "\"Remote tier\")");
    if (len >= 5 && memcmp(url, "unix:", 5) == 0)
        return parse_unix(url, len, o, owner);
    if (len < sizeof(scheme) - 1 || memcmp(url, scheme, sizeof(scheme) - 1) != 0)
        return bad(owner, url, len,
                   "must start with redis:// or unix: (redis://[[user]:password@]"
                   "host[:port][/db] or unix:/path[?db=N])");
    p = url + sizeof(scheme) - 1;
    /* The credentials end at the last '@' before the path. */
    hend = p + strcspn(p, "/");
    if (hend > end)
        hend = end;
    at = NULL;
    for (const char *s = p; s < hend; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return bad(owner, url, len,
                       "credentials must be user:password@ or :password@");
        if (unescape(p, (size_t)(colon - p), o->user, sizeof(o->user)) != 0)
            return bad(owner, url, len, "bad or too long user (percent-encode it)");
        if (unescape(colon + 1, (size_t)(at - colon - 1), o->pass, sizeof(o->pass)) != 0)
            return bad(owner, url, len, "bad or too long password (percent-encode it)");
        if (!o->pass[0])
            return bad(owner, url, len, "an empty password");
        p = at + 1;
    }
    if (p < end && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return bad(owner, url, len, "unclosed [ in the host");
        hlen = (size_t)(rb - p - 1);
        if (hlen && hlen < sizeof(o->host))
            memcpy(o->host, p + 1, hlen);
        p = rb + 1;
    } else {
        const char *e = p;
        while (e < end && *e != ':' && *e != '/')
            e++;
        hlen = (size_t)(e - p);
        if (hlen && hlen < sizeof(o->host))
            memcpy(o->host, p, hlen);
        p = e;
    }
    if (hlen == 0 || hlen >= sizeof(o->host))
        return bad(owner, url, len, "no host, or one too long");
    o->host[hlen] = '\0';
    o->port = 6379;
    if (p < end && *p == ':') {
        const char *e = p + 1;
        int port = 0;
        while (e < end && *e >= '0' && *e <= '9' && port <= 65535)
            port = port * 10 + (*e++ - '0');
        if (e == p + 1 || port < 1 || port > 65535 || (e < end && *e != '/'))
            return bad(owner, url, len, "bad port");
        o->port = port;
        p = e;
    }
    if (p < end && *p == '/') {
        p++;
        if (p < end && parse_db(p, (size_t)(end - p), &o->db) != 0)
            return bad(owner, url, len, "bad database number");
        p = end;
    }
    if (p != end)
        return bad(owner, url, len, "unexpected text after the host");
    snprintf(o->name, sizeof(o->name), "%s:%d", o->host, o->port);
    return KC_OK;
}
