/* How the launcher loads the CUDA driver (launcher/src/device_cuda.c),
 * against a stand-in libcuda.so.1 (tests/support/fake_libcuda.c, put first
 * on LD_LIBRARY_PATH by ctest): the driver the host program initialized is
 * not initialized again; an uninitialized one is; the entry points a
 * stored kernel's launch does not call are resolved at the first call that
 * needs one, so a driver without them opens and launches, and only the
 * calls that need them fail, naming what it lacks. The driver is loaded once per process,
 * so each case runs in a child of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device.h"
#include "kcache/errors.h"

/* The stand-in, as this process loads it; NULL when ctest did not put it
 * on the library path (or a real driver came first). */
static void *fake(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib && !dlsym(lib, "fake_cuda_init_calls")) {
        dlclose(lib);
        return NULL;
    }
    return lib;
}

static int fake_count(void *lib, const char *what)
{
    int (*fn)(void) = (int (*)(void))dlsym(lib, what);
    return fn ? fn() : -1;
}

/* Run body in a child; the test passes if it exits 0. */
static void in_child(int (*body)(void))
{
    void *lib = fake();
    if (!lib)
        skip();
    dlclose(lib);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(body());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

#define CHECK(cond, code)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
            return code;                                                                 \
        }                                                                                \
    } while (0)

static int host_initialized(void)
{
    void *lib = fake();
    int (*init)(unsigned) = (int (*)(unsigned))dlsym(lib, "cuInit");
    CHECK(init && init(0) == 0, 1); /* the host program's own cuInit */
    kc__device_t *dev = NULL;
    char err[256] = "";
    CHECK(kc__device_cuda_open(0, &dev, err, sizeof(err)) == KC_OK, 2);
    CHECK(fake_count(lib, "fake_cuda_init_calls") == 1, 3); /* not again */
    kc__devinfo_t info;
    CHECK(dev->ops->info(dev, &info) == KC_OK && strcmp(info.arch, "sm_90") == 0, 4);
    dev->ops->destroy(dev);
    return 0;
}

static void test_a_driver_the_host_initialized_is_not_initialized_again(void **state)
{
    (void)state;
    in_child(host_initialized);
}

static int not_initialized(void)
{
    void *lib = fake();
    kc__device_t *dev = NULL;
    char err[256] = "";
    CHECK(kc__device_cuda_open(0, &dev, err, sizeof(err)) == KC_OK, 1);
    CHECK(fake_count(lib, "fake_cuda_init_calls") == 1, 2);
    dev->ops->destroy(dev);
    return 0;
}

static void test_an_uninitialized_driver_is_initialized(void **state)
{
    (void)state;
    in_child(not_initialized);
}

static int later_symbols(void)
{
    void *lib = fake();
    kc__device_t *dev = NULL;
    char err[256] = "";
    /* The stand-in has no cuMemAlloc_v2, cuEventCreate, cuLinkCreate_v2...:
     * the device opens anyway and launches what it loads. */
    CHECK(kc__device_cuda_open(0, &dev, err, sizeof(err)) == KC_OK, 1);
    void *module = NULL, *fn = NULL;
    static const char cubin[16] = {0};
    CHECK(dev->ops->module_load(dev, cubin, sizeof(cubin), &module) == KC_OK, 2);
    CHECK(dev->ops->get_function(dev, module, "k", &fn) == KC_OK, 3);
    unsigned grid[3] = {1, 1, 1}, block[3] = {32, 1, 1};
    CHECK(dev->ops->launch(dev, fn, grid, block, 0, NULL, NULL) == KC_OK, 4);
    CHECK(fake_count(lib, "fake_cuda_launches") == 1, 5);
    /* A call that needs them fails, naming the first the driver lacks (the
     * later ones are resolved together, in CU_LATER_SYMBOLS' order). */
    uint64_t ptr = 1;
    CHECK(dev->ops->mem_alloc(dev, 256, &ptr) == KC_ENODEVICE && ptr == 0, 6);
    CHECK(strstr(kc__device_errmsg(dev), "lacks cuFuncGetAttribute") != NULL, 7);
    void *event = (void *)1;
    CHECK(dev->ops->event_create(dev, &event) == KC_ENODEVICE && event == NULL, 8);
    dev->ops->mem_free(dev, 0x1000); /* a no-op, not a crash */
    dev->ops->module_unload(dev, module);
    dev->ops->destroy(dev);
    return 0;
}

static void test_a_driver_without_the_later_entry_points_still_launches(void **state)
{
    (void)state;
    in_child(later_symbols);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_driver_the_host_initialized_is_not_initialized_again),
        cmocka_unit_test(test_an_uninitialized_driver_is_initialized),
        cmocka_unit_test(test_a_driver_without_the_later_entry_points_still_launches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
