/* Fuzzes the remote tier's URL parser (kc_remote_open does not connect):
 * one URL or a list separated by commas and white space, each redis://
 * (with credentials, port, db) or unix:. An accepted list must start, after
 * separators, with redis:// or unix:, and a refused one must leave a
 * message; neither may crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/remote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    kc_remote_t *r = NULL;

    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    int rc = kc_remote_open(url, NULL, &r);
    if (rc == KC_OK) {
        const char *u = url + strspn(url, ", \t\r\n");
        if (!r || kc_remote_shards(r) < 1 ||
            (strncmp(u, "redis://", 8) != 0 && strncmp(u, "unix:", 5) != 0))
            abort();
        kc_remote_close(r);
    } else if (rc != KC_EINVAL || r || !*kc_remote_errmsg(NULL)) {
        abort();
    }
    free(url);
    return 0;
}
