/* Loads an installed libkcache.so.0 with dlopen, as a plugin host or a
 * foreign-language binding would, and calls kc_version through dlsym.
 *
 *   dlopen_version LIBRARY   prints "kcache VERSION (NUMBER)"; fails if a
 *                            kc_ call is missing or an internal is visible.
 */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dlopen_version LIBRARY\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen_version: %s\n", dlerror());
        return 1;
    }
    const char *(*version)(void);
    unsigned (*number)(void);
    /* POSIX guarantees the object-to-function pointer round trip. */
    *(void **)&version = dlsym(lib, "kc_version");
    *(void **)&number = dlsym(lib, "kc_version_number");
    if (!version || !number) {
        fprintf(stderr, "dlopen_version: kc_version or kc_version_number missing\n");
        return 1;
    }
    /* The library's internals are hidden. */
    if (dlsym(lib, "kc__env_acquire")) {
        fprintf(stderr, "dlopen_version: an internal kc__ symbol is exported\n");
        return 1;
    }
    printf("kcache %s (%u)\n", version(), number());
    dlclose(lib);
    return 0;
}
