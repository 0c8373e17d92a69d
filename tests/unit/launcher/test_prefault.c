/* prefault.c: the launcher's code pages entered into the page tables at
 * load, unless KCACHE_PREFAULT=0 or the kernel cannot. */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "prefault.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* Whether this kernel has MADV_POPULATE_READ (Linux 5.14). */
static int kernel_can_populate(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 0;
    int ok = madvise(p, (size_t)page, MADV_POPULATE_READ) == 0;
    munmap(p, (size_t)page);
    return ok;
}

static int resident(void *addr)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char vec = 0;
    void *start = (void *)((uintptr_t)addr & ~(uintptr_t)(page - 1));
    return mincore(start, (size_t)page, &vec) == 0 && (vec & 1);
}

static void test_code_pages_are_populated_where_the_kernel_can(void **state)
{
    (void)state;
    unsetenv("KCACHE_PREFAULT");
    size_t pages = kc__prefault_code();
    if (!kernel_can_populate()) {
        assert_int_equal(pages, 0);
        skip();
    }
    /* This program's own code (prefault.c is linked into it): its page
     * is resident. */
    assert_true(pages > 0);
    assert_true(resident((void *)(uintptr_t)kc__prefault_code));
    /* Once LMDB is loaded, its code is covered too. */
    void *lmdb = dlopen("liblmdb.so.0", RTLD_NOW);
    assert_non_null(lmdb);
    size_t with_lmdb = kc__prefault_code();
    assert_true(with_lmdb > pages);
    assert_true(resident(dlsym(lmdb, "mdb_env_create")));
    dlclose(lmdb);
}

static void test_kcache_prefault_0_turns_it_off(void **state)
{
    (void)state;
    setenv("KCACHE_PREFAULT", "0", 1);
    assert_int_equal(kc__prefault_code(), 0);
    unsetenv("KCACHE_PREFAULT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_pages_are_populated_where_the_kernel_can),
        cmocka_unit_test(test_kcache_prefault_0_turns_it_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
