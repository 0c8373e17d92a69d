/* A bounded ELF64 reader for cubins (elf.h). */
#include "cubin_elf.h"

#include <stdio.h>
#include <string.h>

#include "wire.h"
#include "kcache/errors.h"

#define EM_CUDA 190
#define SHT_SYMTAB 2
#define SHT_NOBITS 8
#define STT_FUNC 2
#define ELF64_EHDR_SIZE 64
#define ELF64_SHDR_SIZE 64
#define ELF64_SYM_SIZE 24
#define ELF64_PHDR_SIZE 56

static int in_bounds(uint64_t off, uint64_t size, size_t len)
{
    return off <= len && size <= len - off;
}

kc__elf_shdr_t kc__elf_section(const kc__elf_t *img, unsigned i)
{
    kc__rcur_t r;
    kc__rcur_init(&r, img->p + img->shoff + (uint64_t)i * ELF64_SHDR_SIZE,
                  ELF64_SHDR_SIZE);
    kc__elf_shdr_t sh;
    sh.name = kc__r_u32(&r);
    sh.type = kc__r_u32(&r);
    sh.flags = kc__r_u64(&r);
    sh.addr = kc__r_u64(&r);
    sh.offset = kc__r_u64(&r);
    sh.size = kc__r_u64(&r);
    sh.link = kc__r_u32(&r);
    sh.info = kc__r_u32(&r);
    sh.align = kc__r_u64(&r);
    sh.entsize = kc__r_u64(&r);
    return sh;
}

/* The checks a driver would make before trusting an image's layout. */
int kc__elf_open(const void *data, size_t len, kc__elf_t *img, char *why, size_t cap)
{
    static const uint8_t magic[4] = {0x7f, 'E', 'L', 'F'};
    kc__rcur_t r;
    kc__rcur_init(&r, data, len);
    const uint8_t *ident = kc__r_bytes(&r, 16);
    if (!ident || len < ELF64_EHDR_SIZE) {
        snprintf(why, cap, "image of %zu bytes is shorter than an ELF64 header", len);
        return KC_ECORRUPT;
    }
    if (memcmp(ident, magic, 4) != 0) {
        snprintf(why, cap, "not an ELF image (bad magic)");
        return KC_ECORRUPT;
    }
    if (ident[4] != 2 || ident[5] != 1) {
        snprintf(why, cap, "not a little-endian ELF64 image (class %u, data %u)",
                 ident[4], ident[5]);
        return KC_ECORRUPT;
    }
    kc__r_u16(&r); /* e_type */
    uint16_t machine = kc__r_u16(&r);
    kc__r_u32(&r); /* e_version */
    kc__r_u64(&r); /* e_entry */
    uint64_t phoff = kc__r_u64(&r);
    uint64_t shoff = kc__r_u64(&r);
    kc__r_u32(&r); /* e_flags */
    kc__r_u16(&r); /* e_ehsize */
    uint16_t phentsize = kc__r_u16(&r);
    uint16_t phnum = kc__r_u16(&r);
    uint16_t shentsize = kc__r_u16(&r);
    uint16_t shnum = kc__r_u16(&r);
    uint16_t shstrndx = kc__r_u16(&r);
    if (machine != EM_CUDA) {
        snprintf(why, cap, "ELF machine %u is not EM_CUDA (190)", machine);
        return KC_ECORRUPT;
    }
    if (shnum == 0 || shentsize != ELF64_SHDR_SIZE || shstrndx >= shnum ||
        !in_bounds(shoff, (uint64_t)shnum * ELF64_SHDR_SIZE, len)) {
        snprintf(why, cap,
                 "section header table (offset %llu, %u x %u) is not in the image",
                 (unsigned long long)shoff, shnum, shentsize);
        return KC_ECORRUPT;
    }
    /* Executable cubins carry program headers (their table usually ends
     * the file): the table and every segment must lie inside the image. */
    if (phnum && (phentsize != ELF64_PHDR_SIZE ||
                  !in_bounds(phoff, (uint64_t)phnum * ELF64_PHDR_SIZE, len))) {
        snprintf(why, cap,
                 "program header table (offset %llu, %u x %u) is not in the image",
                 (unsigned long long)phoff, phnum, phentsize);
        return KC_ECORRUPT;
    }
    for (unsigned i = 0; i < phnum; i++) {
        kc__rcur_t ph;
        kc__rcur_init(&ph, (const uint8_t *)data + phoff + (uint64_t)i * ELF64_PHDR_SIZE,
                      ELF64_PHDR_SIZE);
        kc__r_u32(&ph); /* p_type */
        kc__r_u32(&ph); /* p_flags */
        uint64_t offset = kc__r_u64(&ph);
        kc__r_u64(&ph); /* p_vaddr */
        kc__r_u64(&ph); /* p_paddr */
        uint64_t filesz = kc__r_u64(&ph);
        if (!in_bounds(offset, filesz, len)) {
            snprintf(why, cap, "segment %u lies outside the image", i);
            return KC_ECORRUPT;
        }
    }
    img->p = data;
    img->len = len;
    img->shoff = shoff;
    img->phoff = phoff;
    img->shnum = shnum;
    img->phnum = phnum;
    img->shstrndx = shstrndx;
    /* Section 0 is ELF's null section: readers skip it and the strip
     * writes it as zeros, so one with contents would mean one thing to
     * one and another to the other. */
    kc__elf_shdr_t null = kc__elf_section(img, 0);
    if (null.type != 0) {
        snprintf(why, cap, "section 0 is not the null section (type %u)", null.type);
        return KC_ECORRUPT;
    }
    for (unsigned i = 0; i < shnum; i++) {
        kc__elf_shdr_t sh = kc__elf_section(img, i);
        if (sh.type != SHT_NOBITS && !in_bounds(sh.offset, sh.size, len)) {
            snprintf(why, cap, "section %u lies outside the image", i);
            return KC_ECORRUPT;
        }
    }
    return KC_OK;
}

/* Calls fn for each FUNC symbol of every .symtab (names come from the
 * string table the symtab's sh_link names; a name whose NUL does not lie
 * inside that table is passed over). Stops when fn returns non-zero and
 * returns that. */
static int for_each_func(const kc__elf_t *img,
                         int (*fn)(void *user, const char *name, size_t len), void *user)
{
    for (unsigned i = 0; i < img->shnum; i++) {
        kc__elf_shdr_t sym = kc__elf_section(img, i);
        if (sym.type != SHT_SYMTAB || sym.entsize != ELF64_SYM_SIZE ||
            sym.link >= img->shnum)
            continue;
        kc__elf_shdr_t str = kc__elf_section(img, sym.link);
        if (str.type == SHT_NOBITS)
            continue;
        const uint8_t *strtab = img->p + str.offset;
        for (uint64_t k = 0; k < sym.size / ELF64_SYM_SIZE; k++) {
            kc__rcur_t r;
            kc__rcur_init(&r, img->p + sym.offset + k * ELF64_SYM_SIZE, ELF64_SYM_SIZE);
            uint32_t st_name = kc__r_u32(&r);
            uint8_t st_info = kc__r_u8(&r);
            if ((st_info & 0xf) != STT_FUNC || st_name >= str.size)
                continue;
            const uint8_t *nul = memchr(strtab + st_name, 0, str.size - st_name);
            if (!nul)
                continue;
            int rc = fn(user, (const char *)strtab + st_name,
                        (size_t)(nul - (strtab + st_name)));
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int is_name(void *user, const char *name, size_t len)
{
    const char *want = user;
    return strlen(want) == len && memcmp(want, name, len) == 0;
}

int kc__elf_find_func(const kc__elf_t *img, const char *name)
{
    return for_each_func(img, is_name, (void *)name) ? KC_OK : KC_ENOTFOUND;
}

typedef struct list_ctx {
    char *out;
    size_t cap, used, count;
    int cut;
} list_ctx_t;

static int add_name(void *user, const char *name, size_t len)
{
    list_ctx_t *c = user;
    size_t need = (c->count ? 2 : 0) + len;

    c->count++;
    if (c->cut)
        return 0;
    /* Room for this name and "...": else end the list with "...". */
    if (c->used + need + 4 > c->cap) {
        if (c->used + 4 <= c->cap)
            memcpy(c->out + c->used, "...", 4);
        c->cut = 1;
        return 0;
    }
    if (c->count > 1) {
        memcpy(c->out + c->used, ", ", 2);
        c->used += 2;
    }
    for (size_t i = 0; i < len; i++)
        c->out[c->used++] = name[i] > ' ' && name[i] < 127 ? name[i] : '?';
    c->out[c->used] = '\0';
    return 0;
}

size_t kc__elf_list_funcs(const kc__elf_t *img, char *out, size_t cap)
{
    list_ctx_t c = {out, cap, 0, 0, 0};

    if (cap)
        out[0] = '\0';
    else
        c.cut = 1;
    for_each_func(img, add_name, &c);
    return c.count;
}
