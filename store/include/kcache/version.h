/* The version of kcache's libraries, at compile time (the macros) and at run
 * time (the functions), as zstd's ZSTD_VERSION_NUMBER and
 * ZSTD_versionNumber(): a program can check that the library it loaded is
 * the one it was built against, or new enough.
 *
 * The numbers here must equal project(kcache VERSION ...) in the top-level
 * CMakeLists.txt: configuring the build checks it. libkcache.so's soname
 * carries the major version (libkcache.so.0).
 */
#ifndef KCACHE_VERSION_H
#define KCACHE_VERSION_H

#include "kcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KC_VERSION_MAJOR 0
#define KC_VERSION_MINOR 1
#define KC_VERSION_PATCH 0

/* major * 10000 + minor * 100 + patch: 0.1.0 is 100, 1.2.3 is 10203. */
#define KC_VERSION_NUMBER                                                                \
    (KC_VERSION_MAJOR * 10000 + KC_VERSION_MINOR * 100 + KC_VERSION_PATCH)

#define KC__VERSION_STR_(x) #x
#define KC__VERSION_STR(x) KC__VERSION_STR_(x)
/* "0.1.0" */
#define KC_VERSION_STRING                                                                \
    KC__VERSION_STR(KC_VERSION_MAJOR)                                                    \
    "." KC__VERSION_STR(KC_VERSION_MINOR) "." KC__VERSION_STR(KC_VERSION_PATCH)

/* The library's KC_VERSION_NUMBER, as it was built. */
KC_API unsigned kc_version_number(void);

/* The library's KC_VERSION_STRING, as it was built ("0.1.0"). Static. */
KC_API const char *kc_version(void);

#ifdef __cplusplus
}
#endif
#endif
