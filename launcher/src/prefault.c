/* Code pages mapped ahead: when the launcher's library is loaded, the pages
 * of its own code and of the libraries on a first call's path (LMDB, zstd,
 * xxHash) are entered into the process's page tables in one madvise each
 * (MADV_POPULATE_READ, Linux 5.14 and later), so that a process's first
 * kernel launch does not take them one page fault at a time. On a virtual
 * machine a fault costs microseconds (3 us on the GPU host), and a first
 * call runs code spread over dozens of pages that nothing has run before.
 * The pages are those of files already in memory (the loader has just read
 * them); nothing is read that the process does not map anyway. Failures
 * (an older kernel, a refusal) are ignored: this only moves when the
 * faults happen. KCACHE_PREFAULT=0 turns it off (docs/ARCHITECTURE.md,
 * "A process's first call"). */
#include "prefault.h"

#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* The libraries a first call runs besides the launcher's own code. */
static const char *const kNeeded[] = {"/liblmdb.so", "/libzstd.so", "/libxxhash.so"};

typedef struct {
    uintptr_t own; /* an address in the object that holds this code */
    uintptr_t page;
    size_t pages;
} prefault_ctx_t;

static int wanted(const struct dl_phdr_info *info, const prefault_ctx_t *c)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && c->own >= start && c->own - start < ph->p_memsz)
            return 1;
    }
    for (size_t i = 0; info->dlpi_name && i < sizeof(kNeeded) / sizeof(kNeeded[0]); i++)
        if (strstr(info->dlpi_name, kNeeded[i]))
            return 1;
    return 0;
}

static int populate_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    prefault_ctx_t *c = arg;

    (void)size;
    if (!wanted(info, c))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        /* Code and read-only data: what a first call reads and nothing
         * writes (writable pages would be copied, not shared). */
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz == 0)
            continue;
        uintptr_t start = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        uintptr_t end = start + ph->p_memsz;
        start &= ~(c->page - 1);
        end = (end + c->page - 1) & ~(c->page - 1);
        if (madvise((void *)start, end - start, MADV_POPULATE_READ) == 0)
            c->pages += (end - start) / c->page;
    }
    return 0;
}

size_t kc__prefault_code(void)
{
    const char *env = getenv("KCACHE_PREFAULT");
    long page = sysconf(_SC_PAGESIZE);

    if ((env && strcmp(env, "0") == 0) || page <= 0)
        return 0;
    /* This code's own object (libkcache.so, or the program it is linked
     * into) is the one whose segments hold this function. */
    prefault_ctx_t c = {(uintptr_t)kc__prefault_code, (uintptr_t)page, 0};
    dl_iterate_phdr(populate_object, &c);
    return c.pages;
}
