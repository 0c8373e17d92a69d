/* Reading settings from the process environment. Internal.
 *
 * A setting that does not parse is ignored rather than failing every call
 * over a typo in the environment: the callers fall back to their default. */
#ifndef KCACHE_ENVVAR_H
#define KCACHE_ENVVAR_H

#include <stdint.h>

/* The size in environment variable name, as kc_size_parse reads it ("2G",
 * "500M"), or 0 if it is unset, empty or does not parse. */
uint64_t kc__envvar_size(const char *name);

#endif
