/* A cubin without its debug sections. Internal: kc_triton_import's
 * strip_debug option (triton_cache.c) and the fuzz target fuzz/fuzz_elf.c.
 *
 * ptxas run with -lineinfo (Triton's default) adds sections that only tools
 * read: the PTX text (.nv_debug_ptx_txt), the line tables (.debug_line,
 * .nv_debug_line_sass), .debug_frame, .debug_str and their relocations.
 * In Triton's binaries they are about half the bytes. The copy keeps every
 * other section byte for byte, in the same order, and every segment's bytes
 * (docs/ARCHITECTURE.md, "Stripped cubins"). */
#ifndef KCACHE_CUBIN_STRIP_H
#define KCACHE_CUBIN_STRIP_H

#include <stddef.h>

/* Copy the cubin data[len] without its debug sections into a new malloc'd
 * image (*out, *out_len; the caller frees it).
 *
 * Dropped: every section of program bits named .debug_* or .nv_debug_*
 * (never a symbol or string table, whatever its name), and every REL/RELA
 * section that relocates a dropped one (whatever its name).
 *
 * What else changes: the file offsets; section indices are renumbered wherever the image
 * holds one (e_shstrndx, sh_link, sh_info of relocation sections and of
 * sections flagged SHF_INFO_LINK, st_shndx of symbols; a symbol of a
 * dropped section, such as its section symbol, gets SHN_UNDEF). Symbol
 * indices do not change, so relocations and .nv.info attributes stay valid.
 *
 * Returns KC_OK with *out set, or KC_OK with *out NULL and *out_len 0 when
 * the image has no debug section (nothing to do: use data). KC_ECORRUPT,
 * with the reason in why[cap], when data is not a cubin kc__elf_open
 * accepts, or when the strip cannot keep it whole: a kept section that
 * links to a dropped one, a segment whose bytes span a dropped section, an
 * extended section index table. KC_ENOMEM. */
int kc__elf_strip_debug(const void *data, size_t len, void **out, size_t *out_len,
                        char *why, size_t cap);

#endif
