/* The library's version, as it was built (kcache/version.h). */
#include "kcache/version.h"

unsigned kc_version_number(void)
{
    return KC_VERSION_NUMBER;
}

const char *kc_version(void)
{
    return KC_VERSION_STRING;
}
