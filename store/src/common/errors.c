#include "kcache/errors.h"
#include <stddef.h>

const char *kc_strerror(int code)
{
    switch (code) {
    case KC_OK:
        return "success";
#define KC__ERRNO_MSG(name, num, msg)                                                    \
    case name:                                                                           \
        return msg;
        KC_ERRNO_MAP(KC__ERRNO_MSG)
#undef KC__ERRNO_MSG
    }
    return "unknown error";
}

const char *kc_err_name(int code)
{
    switch (code) {
    case KC_OK:
        return "KC_OK";
#define KC__ERRNO_NAME(name, num, msg)                                                   \
    case name:                                                                           \
        return #name;
        KC_ERRNO_MAP(KC__ERRNO_NAME)
#undef KC__ERRNO_NAME
    }
    return NULL;
}
