/* Settings from the process environment. */
#include "envvar.h"

#include <stdio.h>
#include <stdlib.h>

#include "kcache/store.h"

int kc__envvar_size(const char *name, uint64_t *size, char *msg, size_t cap)
{
    const char *v = getenv(name);

    *size = 0;
    if (!v || !*v)
        return KC_OK;
    if (kc_size_parse(v, size) == KC_OK)
        return KC_OK;
    *size = 0;
    snprintf(msg, cap,
             "%s='%.100s': not a size (a number of GiB, or a number with K, M, G, T, "
             "Ki, Mi, Gi, Ti or B, e.g. 10G, 512M, 2Gi; 0: no limit)",
             name, v);
    return KC_EINVAL;
}
