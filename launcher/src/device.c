/* What every device implementation shares: its messages, which are the
 * common diagnostics (store/src/common/diag.h) owned by the device. */
#include "device.h"

#include <stdarg.h>

#include "diag.h"

void kc__device_set_errmsg(kc__device_t *dev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kc__diag_vfail(dev, 0, fmt, ap);
    va_end(ap);
}

const char *kc__device_errmsg(const kc__device_t *dev)
{
    return kc__diag_get(dev);
}

void kc__device_clear_errmsg(const kc__device_t *dev)
{
    kc__diag_release(dev);
}
