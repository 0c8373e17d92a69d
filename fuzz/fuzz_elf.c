/* Fuzz the bounded ELF64 reader (launcher/src/elf.c) that checks a
 * compiled cubin holds its entry: an image either is refused with a reason
 * or gives a layout whose symbols can be searched and listed, with every
 * read inside the input (the sanitizers see any other). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cubin_elf.h"
#include "kcache/errors.h"

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
    return 0;
}
