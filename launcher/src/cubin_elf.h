/* A bounded reader of ELF64 cubins: the layout checks a driver makes before
 * trusting an image, and its FUNC symbols. Internal. Used by the simulation
 * device (a module load) and by compile.c (a compiled cubin must hold the
 * entry it was compiled for). Every offset is checked against the image;
 * nothing is copied. */
#ifndef KCACHE_CUBIN_ELF_H
#define KCACHE_CUBIN_ELF_H

#include <stddef.h>
#include <stdint.h>

typedef struct kc__elf {
    const uint8_t *p;
    size_t len;
    uint64_t shoff, phoff;
    uint16_t shnum, phnum, shstrndx;
} kc__elf_t;

/* One section header, every field. */
typedef struct kc__elf_shdr {
    uint32_t name, type, link, info;
    uint64_t flags, addr, offset, size, align, entsize;
} kc__elf_shdr_t;

/* Check data[len] is an ELF64, little-endian, EM_CUDA image whose section
 * headers, sections and segments all lie inside it, and describe it in
 * *img (which borrows data). KC_OK, or KC_ECORRUPT with the reason in
 * why[cap]. */
int kc__elf_open(const void *data, size_t len, kc__elf_t *img, char *why, size_t cap);

/* Section header i (< img->shnum) of an image kc__elf_open accepted. */
kc__elf_shdr_t kc__elf_section(const kc__elf_t *img, unsigned i);

/* KC_OK if a FUNC symbol of .symtab is named name, else KC_ENOTFOUND. */
int kc__elf_find_func(const kc__elf_t *img, const char *name);

/* The names of the FUNC symbols, ", "-separated, into out[cap] (cut short
 * with "..." when they do not fit; "" when none). Returns how many there
 * are. Names are printed as they are stored, non-printable bytes as '?'. */
size_t kc__elf_list_funcs(const kc__elf_t *img, char *out, size_t cap);

#endif
