/* Debug sections out of a cubin (cubin_strip.h). */
#include "cubin_strip.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cubin_elf.h"
#include "wire.h"
#include "kcache/errors.h"

#define SHT_PROGBITS 1
#define SHT_SYMTAB 2
#define SHT_RELA 4
#define SHT_NOBITS 8
#define SHT_REL 9
#define SHT_SYMTAB_SHNDX 18
#define SHF_INFO_LINK 0x40u
#define SHN_LORESERVE 0xff00u
#define EHDR_SIZE 64
#define SHDR_SIZE 64
#define PHDR_SIZE 56
#define SYM_SIZE 24
/* Larger section alignments are refused: they would only pad. */
#define MAX_ALIGN 65536

typedef struct shdr {
    kc__elf_shdr_t h; /* as in the image */
    uint64_t new_offset;
    uint64_t gap_from; /* the end of the kept bytes before this section */
    uint16_t new_index;
    int drop;
    int gap_copied; /* the bytes from gap_from up to it are copied */
} shdr_t;

typedef struct strip {
    const kc__elf_t *img;
    shdr_t *sh;
    uint16_t n_keep;
    uint16_t *order; /* kept sections but the null one, by file offset */
    size_t n_order;
    uint64_t end; /* the new end of the kept sections' bytes */
    char *why;
    size_t cap;
} strip_t;

/* .debug_*, .nv_debug_*, and .rel / .rela sections of those. */
static int is_debug_name(const char *name)
{
    if (strncmp(name, ".rela", 5) == 0)
        name += 5;
    else if (strncmp(name, ".rel", 4) == 0)
        name += 4;
    return strncmp(name, ".debug_", 7) == 0 || strncmp(name, ".nv_debug_", 10) == 0;
}

static int has_data(const shdr_t *s)
{
    return s->h.type != SHT_NOBITS && s->h.size > 0;
}

static int refers_by_info(const shdr_t *s)
{
    return s->h.type == SHT_REL || s->h.type == SHT_RELA || (s->h.flags & SHF_INFO_LINK);
}

static int corrupt(strip_t *s, const char *what, unsigned a, unsigned b)
{
    snprintf(s->why, s->cap, what, a, b);
    return KC_ECORRUPT;
}

static void store_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Whether [off, off + size) lies in the image's program header table. */
static int in_phdr_table(const kc__elf_t *img, uint64_t off, uint64_t size)
{
    uint64_t table = (uint64_t)img->phnum * PHDR_SIZE;
    return off >= img->phoff && off - img->phoff <= table &&
           size <= table - (off - img->phoff);
}

/* Mark the debug sections (program bits under a debug name) and the
 * relocation sections of them, whatever their names; how many. */
static int mark(strip_t *s, size_t *n_drop)
{
    uint16_t shstrndx = s->img->shstrndx;
    const shdr_t *names = &s->sh[shstrndx];
    size_t n = 0;

    if (names->h.type == SHT_NOBITS)
        return corrupt(s, "the section name table (section %u) holds no bytes", shstrndx,
                       0);
    for (unsigned i = 1; i < s->img->shnum; i++) {
        shdr_t *x = &s->sh[i];
        if (x->h.type == SHT_SYMTAB_SHNDX)
            return corrupt(s,
                           "section %u is an extended section index table, which "
                           "the strip does not renumber",
                           i, 0);
        if (x->h.name >= names->h.size)
            continue;
        const char *nm = (const char *)s->img->p + names->h.offset + x->h.name;
        if (x->h.type == SHT_PROGBITS && memchr(nm, 0, names->h.size - x->h.name) &&
            is_debug_name(nm)) {
            x->drop = 1;
            n++;
        }
    }
    for (unsigned i = 1; i < s->img->shnum; i++) {
        shdr_t *x = &s->sh[i];
        if (!x->drop && (x->h.type == SHT_REL || x->h.type == SHT_RELA) &&
            x->h.info < s->img->shnum && s->sh[x->h.info].drop) {
            x->drop = 1;
            n++;
        }
    }
    *n_drop = n;
    return KC_OK;
}

/* New indices, and the links of kept sections, which must stay inside. */
static int renumber(strip_t *s)
{
    uint16_t next = 0;
    for (unsigned i = 0; i < s->img->shnum; i++)
        if (!s->sh[i].drop)
            s->sh[i].new_index = next++;
    s->n_keep = next;
    for (unsigned i = 1; i < s->img->shnum; i++) {
        const shdr_t *x = &s->sh[i];
        if (x->drop)
            continue;
        if (x->h.link >= s->img->shnum || s->sh[x->h.link].drop)
            return corrupt(s, "section %u links to section %u, which is not kept", i,
                           x->h.link);
        if (refers_by_info(x) && x->h.info &&
            (x->h.info >= s->img->shnum || s->sh[x->h.info].drop))
            return corrupt(s, "section %u refers to section %u, which is not kept", i,
                           x->h.info);
    }
    return KC_OK;
}

typedef struct placed {
    uint64_t offset;
    uint16_t index;
} placed_t;

static int by_offset(const void *a, const void *b)
{
    const placed_t *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Whether a dropped section's bytes or an old header table lie in
 * [from, to): such a gap is cut, not copied. */
static int gap_holds_dropped(const strip_t *s, uint64_t from, uint64_t to)
{
    const kc__elf_t *img = s->img;
    uint64_t tables[2][2] = {{img->phoff, (uint64_t)img->phnum * PHDR_SIZE},
                             {img->shoff, (uint64_t)img->shnum * SHDR_SIZE}};

    for (unsigned i = 1; i < s->img->shnum; i++) {
        const shdr_t *x = &s->sh[i];
        if (x->drop && has_data(x) && x->h.offset < to && x->h.offset + x->h.size > from)
            return 1;
    }
    for (int t = 0; t < 2; t++)
        if (tables[t][1] && tables[t][0] < to && tables[t][0] + tables[t][1] > from)
            return 1;
    return 0;
}

/* Kept sections in file order. Every byte the strip keeps moves back by a
 * shift that grows only across a gap holding dropped bytes, and then by a
 * multiple of the largest alignment a kept section asks for: so each kept
 * section stays aligned, and kept sections with no dropped bytes between
 * them keep their distance and the bytes between (a segment's padding).
 * Of a cut gap, the bytes the shift does not remove become zeros. The new
 * end of the last kept byte in s->end. */
static int lay_out(strip_t *s)
{
    uint64_t shift = 0, prev_end = EHDR_SIZE, step = 1;
    unsigned last = 0;

    placed_t *sorted = malloc(s->img->shnum * sizeof(*sorted));
    if (!sorted)
        return KC_ENOMEM;
    s->n_order = 0;
    for (unsigned i = 1; i < s->img->shnum; i++)
        if (!s->sh[i].drop)
            sorted[s->n_order++] = (placed_t){s->sh[i].h.offset, (uint16_t)i};
    qsort(sorted, s->n_order, sizeof(*sorted), by_offset);
    for (size_t k = 0; k < s->n_order; k++)
        s->order[k] = sorted[k].index;
    free(sorted);
    for (size_t k = 0; k < s->n_order; k++) {
        const shdr_t *x = &s->sh[s->order[k]];
        uint64_t align = x->h.align ? x->h.align : 1;
        if (align > MAX_ALIGN || (align & (align - 1)))
            return corrupt(s, "section %u asks for an alignment of %u bytes", s->order[k],
                           (unsigned)(align > MAX_ALIGN ? MAX_ALIGN + 1 : align));
        if (align > step)
            step = align;
    }
    for (size_t k = 0; k < s->n_order; k++) {
        unsigned i = s->order[k];
        shdr_t *x = &s->sh[i];
        if (has_data(x)) {
            if (x->h.offset < prev_end)
                return corrupt(s,
                               "section %u overlaps what precedes it (section %u or "
                               "the ELF header)",
                               i, last);
            x->gap_copied = !gap_holds_dropped(s, prev_end, x->h.offset);
            if (!x->gap_copied)
                shift += (x->h.offset - prev_end) / step * step;
            x->gap_from = prev_end;
            prev_end = x->h.offset + x->h.size;
            last = i;
        }
        /* A section of no bytes moves with the next one that has some. */
        x->new_offset = x->h.offset >= shift ? x->h.offset - shift : 0;
    }
    s->end = prev_end - shift;
    /* A section of no bytes past the kept ones stays inside the image. */
    for (size_t k = 0; k < s->n_order; k++) {
        shdr_t *x = &s->sh[s->order[k]];
        if (!has_data(x) && x->new_offset > s->end)
            x->new_offset = s->end;
    }
    return KC_OK;
}

/* Where a segment starting at off goes: inside the program header table,
 * it moves with the table; else with the first kept section holding bytes
 * that ends after off (the one it starts in, or the next); a segment of no
 * bytes past every section goes to the end of the sections' bytes. */
static int segment_offset(strip_t *s, unsigned j, uint64_t off, uint64_t filesz,
                          uint64_t new_phoff, uint64_t *out)
{
    if (in_phdr_table(s->img, off, filesz)) {
        *out = new_phoff + (off - s->img->phoff);
        return KC_OK;
    }
    for (size_t k = 0; k < s->n_order; k++) {
        const shdr_t *x = &s->sh[s->order[k]];
        if (has_data(x) && x->h.offset + x->h.size > off) {
            uint64_t shift = x->h.offset - x->new_offset;
            if (off < shift)
                break;
            *out = off - shift;
            return KC_OK;
        }
    }
    if (filesz == 0) {
        *out = s->end;
        return KC_OK;
    }
    return corrupt(s, "segment %u lies in no section the strip keeps", j, 0);
}

static int write_image(strip_t *s, uint8_t *o, uint64_t new_phoff, uint64_t new_shoff,
                       uint64_t out_len)
{
    const kc__elf_t *img = s->img;
    const uint8_t *p = img->p;
    uint16_t phnum = img->phnum;
    int rc;

    memcpy(o, p, EHDR_SIZE);
    kc__store_u64le(o + 0x20, phnum ? new_phoff : 0);
    kc__store_u64le(o + 0x28, new_shoff);
    store_u16(o + 0x3c, s->n_keep);
    store_u16(o + 0x3e, s->sh[img->shstrndx].new_index);
    for (size_t k = 0; k < s->n_order; k++) {
        const shdr_t *x = &s->sh[s->order[k]];
        if (!has_data(x))
            continue;
        uint64_t shift = x->h.offset - x->new_offset;
        if (x->gap_copied)
            memcpy(o + x->gap_from - shift, p + x->gap_from, x->h.offset - x->gap_from);
        memcpy(o + x->new_offset, p + x->h.offset, x->h.size);
    }
    for (unsigned j = 0; j < phnum; j++) {
        const uint8_t *h = p + img->phoff + (uint64_t)j * PHDR_SIZE;
        uint8_t *n = o + new_phoff + (uint64_t)j * PHDR_SIZE;
        uint64_t off = kc__load_u64le(h + 8), filesz = kc__load_u64le(h + 32), moved;
        if ((rc = segment_offset(s, j, off, filesz, new_phoff, &moved)) != KC_OK)
            return rc;
        memcpy(n, h, PHDR_SIZE);
        kc__store_u64le(n + 8, moved);
    }
    for (unsigned i = 0; i < s->img->shnum; i++) {
        const shdr_t *x = &s->sh[i];
        if (x->drop)
            continue;
        uint8_t *n = o + new_shoff + (uint64_t)x->new_index * SHDR_SIZE;
        if (i == 0)
            continue; /* the null section's header: zeros, as ELF has it */
        memcpy(n, p + img->shoff + (uint64_t)i * SHDR_SIZE, SHDR_SIZE);
        kc__store_u64le(n + 24, x->new_offset);
        kc__store_u32le(n + 40, s->sh[x->h.link].new_index);
        if (refers_by_info(x) && x->h.info)
            kc__store_u32le(n + 44, s->sh[x->h.info].new_index);
        if (x->h.type != SHT_SYMTAB || !has_data(x))
            continue;
        for (uint64_t k = 0; k < x->h.size / SYM_SIZE; k++) {
            uint8_t *sym = o + x->new_offset + k * SYM_SIZE;
            uint16_t ndx = kc__load_u16le(sym + 6);
            if (ndx == 0 || ndx >= SHN_LORESERVE)
                continue;
            if (ndx >= s->img->shnum)
                return corrupt(s, "symbol %u names section %u, past the table",
                               (unsigned)k, ndx);
            store_u16(sym + 6, s->sh[ndx].drop ? 0 : s->sh[ndx].new_index);
        }
    }
    /* What the driver loads must not change: every segment's bytes. */
    for (unsigned j = 0; j < phnum; j++) {
        const uint8_t *h = p + img->phoff + (uint64_t)j * PHDR_SIZE;
        uint64_t off = kc__load_u64le(h + 8), filesz = kc__load_u64le(h + 32);
        uint64_t moved = kc__load_u64le(o + new_phoff + (uint64_t)j * PHDR_SIZE + 8);
        if (filesz == 0 || in_phdr_table(img, off, filesz))
            continue;
        if (moved > out_len || filesz > out_len - moved ||
            memcmp(o + moved, p + off, filesz) != 0)
            return corrupt(s, "segment %u spans bytes the strip drops or moves apart", j,
                           0);
    }
    return KC_OK;
}

int kc__elf_strip_debug(const void *data, size_t len, void **out, size_t *out_len,
                        char *why, size_t cap)
{
    kc__elf_t img;
    strip_t s = {.img = &img, .why = why, .cap = cap};
    size_t n_drop = 0;
    uint8_t *o = NULL;
    int rc;

    *out = NULL;
    *out_len = 0;
    if ((rc = kc__elf_open(data, len, &img, why, cap)) != KC_OK)
        return rc;
    s.sh = calloc(img.shnum, sizeof(*s.sh));
    s.order = calloc(img.shnum, sizeof(*s.order));
    if (!s.sh || !s.order) {
        rc = KC_ENOMEM;
        goto done;
    }
    for (unsigned i = 0; i < img.shnum; i++)
        s.sh[i].h = kc__elf_section(&img, i);
    if ((rc = mark(&s, &n_drop)) != KC_OK || n_drop == 0 ||
        (rc = renumber(&s)) != KC_OK || (rc = lay_out(&s)) != KC_OK)
        goto done;
    uint64_t new_phoff = (s.end + 7) / 8 * 8;
    uint64_t new_shoff = (new_phoff + (uint64_t)img.phnum * PHDR_SIZE + 7) / 8 * 8;
    uint64_t total = new_shoff + (uint64_t)s.n_keep * SHDR_SIZE;
    if (!(o = calloc(1, total))) {
        rc = KC_ENOMEM;
        goto done;
    }
    if ((rc = write_image(&s, o, new_phoff, new_shoff, total)) != KC_OK)
        goto done;
    *out = o;
    *out_len = total;
    o = NULL;
done:
    free(o);
    free(s.sh);
    free(s.order);
    return rc;
}
