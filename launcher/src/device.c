#include "device.h"

#include <stdarg.h>
#include <stdio.h>

void kc__device_set_errmsg(kc__device_t *dev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dev->errmsg, sizeof(dev->errmsg), fmt, ap);
    va_end(ap);
}
