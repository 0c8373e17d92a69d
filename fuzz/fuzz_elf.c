/* Fuzz the bounded ELF64 reader (launcher/src/cubin_elf.c) that checks a
 * compiled cubin holds its entry: an image either is refused with a reason
 * or gives a layout whose symbols can be searched and listed, with every
 * read inside the input (the sanitizers see any other). And the debug
 * strip (launcher/src/cubin_strip.c) on the same image: refused with a
 * reason, nothing to do, or a copy the reader accepts that lists the same
 * FUNC symbols and is stripped already. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cubin_elf.h"
#include "cubin_strip.h"
#include "kcache/errors.h"

static void check_strip(const uint8_t *data, size_t size, const char *funcs)
{
    char why[256] = "", again[4096];
    void *out = NULL, *twice = NULL;
    size_t out_len = 0, twice_len = 0;
    kc__elf_t img;

    int rc = kc__elf_strip_debug(data, size, &out, &out_len, why, sizeof(why));
    if (rc != KC_OK) {
        if (out || (rc == KC_ECORRUPT && !why[0]))
            abort();
        return;
    }
    if (!out)
        return;
    if (kc__elf_open(out, out_len, &img, why, sizeof(why)) != KC_OK)
        abort(); /* the copy must be an image the reader accepts */
    kc__elf_list_funcs(&img, again, sizeof(again));
    if (strcmp(again, funcs) != 0)
        abort(); /* and keep every FUNC symbol */
    if (kc__elf_strip_debug(out, out_len, &twice, &twice_len, why, sizeof(why)) !=
            KC_OK ||
        twice)
        abort(); /* with nothing left to strip */
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc__elf_t img;
    char why[256] = "", small[16], big[4096];

    if (kc__elf_open(data, size, &img, why, sizeof(why)) != KC_OK) {
        if (!why[0])
            abort(); /* a refusal always says why */
        return 0;
    }
    size_t n = kc__elf_list_funcs(&img, big, sizeof(big));
    if (kc__elf_list_funcs(&img, small, sizeof(small)) != n ||
        strlen(small) >= sizeof(small))
        abort();
    if (n == 0 && (big[0] || kc__elf_find_func(&img, "scale") == KC_OK))
        abort();
    check_strip(data, size, big);
    return 0;
}
