/* Reading settings from the process environment. Internal.
 *
 * A setting that is set but does not parse is an error the caller reports
 * (KC_EINVAL, with a message naming the variable and the accepted forms):
 * a typo in KCACHE_MAX_SIZE must not silently turn the limit off. */
#ifndef KCACHE_ENVVAR_H
#define KCACHE_ENVVAR_H

#include <stddef.h>
#include <stdint.h>

/* The size in environment variable name, as kc_size_parse reads it ("2G",
 * "500M"): *size is 0 if it is unset or empty. KC_EINVAL, with *size 0 and
 * "NAME='text': not a size (...)" in msg[cap], if it does not parse. */
int kc__envvar_size(const char *name, uint64_t *size, char *msg, size_t cap);

#endif
