/* Settings from the process environment. */
#include "envvar.h"

#include <stdlib.h>

#include "kcache/store.h"

uint64_t kc__envvar_size(const char *name)
{
    const char *v = getenv(name);
    uint64_t size;

    if (v && *v && kc_size_parse(v, &size) == KC_OK)
        return size;
    return 0;
}
