#include <stdlib.h>

#include "kcache/key.h"

void kc_free(void *p)
{
    free(p);
}
