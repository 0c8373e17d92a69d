/* kcache error codes.
 *
 * Every fallible kcache call returns KC_OK (0) or one of the negative codes
 * below. The list is the single source of truth: it generates the enum,
 * kc_strerror() and kc_err_name(). Codes are only ever appended; an existing
 * number never changes meaning.
 *
 * KC_ENOTFOUND is how a lookup reports a miss. It is not an error.
 */
#ifndef KCACHE_ERRORS_H
#define KCACHE_ERRORS_H

#include "kcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, number, message) */
#define KC_ERRNO_MAP(X)                                                                  \
    X(KC_ENOTFOUND, -1, "not found")                                                     \
    X(KC_EINVAL, -2, "invalid argument")                                                 \
    X(KC_ENOMEM, -3, "out of memory")                                                    \
    X(KC_EIO, -4, "input/output error")                                                  \
    X(KC_ECORRUPT, -5, "corrupt data")                                                   \
    X(KC_EVERSION, -6, "unsupported format version")                                     \
    X(KC_ETOOBIG, -7, "size exceeds limit")                                              \
    X(KC_EREADONLY, -8, "store is read-only")                                            \
    X(KC_ENFS, -9, "store is on a network filesystem")                                   \
    X(KC_ELMDB, -10, "LMDB error")                                                       \
    X(KC_EZSTD, -11, "zstd error")                                                       \
    X(KC_EEXIST, -12, "already exists")                                                  \
    X(KC_EPERM, -13, "permission denied")                                                \
    X(KC_ENOSPC, -14, "no space left on device")                                         \
    X(KC_EBUSY, -15, "resource busy")                                                    \
    X(KC_EAMBIGUOUS, -16, "key prefix matches more than one record")                     \
    X(KC_ENODEVICE, -17, "no CUDA driver or device found")                               \
    X(KC_ECUDA, -18, "CUDA driver error")                                                \
    X(KC_ENVRTC, -19, "NVRTC error")                                                     \
    X(KC_ECOMPILE, -20, "kernel compilation failed")                                     \
    X(KC_ELAUNCH, -21, "kernel launch failed")                                           \
    X(KC_ESPEC, -22, "invalid kernel spec")                                              \
    X(KC_EEXPR, -23, "invalid expression")                                               \
    X(KC_ENOCANDIDATE, -24, "no tuning candidate succeeded")                             \
    X(KC_ESTICKY, -25, "sticky CUDA context error")                                      \
    X(KC_ETIMEDOUT, -26, "timed out")                                                    \
    X(KC_EREADERS, -27, "too many store readers")                                        \
    X(KC_EARCH, -28, "wrong device architecture")                                        \
    X(KC_EUNSUPPORTED, -29, "operation not supported")                                   \
    X(KC_EINTERNAL, -30, "internal error")                                               \
    X(KC_ESIGNATURE, -31, "signature missing, untrusted or invalid")                     \
    X(KC_EREMOTE, -32, "remote tier unreachable or failing")                             \
    X(KC_EDAMAGED, -33, "store file is damaged")

typedef enum kc_errno {
    KC_OK = 0,
#define KC__ERRNO_ENUM(name, num, msg) name = (num),
    KC_ERRNO_MAP(KC__ERRNO_ENUM)
#undef KC__ERRNO_ENUM
} kc_errno_t;

/* Static, human-readable text for code. Never NULL; unknown codes give
 * "unknown error". */
KC_API const char *kc_strerror(int code);

/* The code's symbolic name ("KC_ECORRUPT"), or NULL for an unknown code. */
KC_API const char *kc_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
