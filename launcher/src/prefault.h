/* Code pages mapped ahead at load (prefault.c). */
#ifndef KC_LAUNCHER_PREFAULT_H
#define KC_LAUNCHER_PREFAULT_H

#include <stddef.h>

/* Enter the pages of the launcher's code and of LMDB's, zstd's and
 * xxHash's into the page tables; returns how many pages were (0 when
 * KCACHE_PREFAULT=0 or the kernel cannot). */
size_t kc__prefault_code(void);

#endif
