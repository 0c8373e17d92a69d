/* The debug strip (launcher/src/cubin_strip.c) on a real NVRTC cubin
 * compiled with -lineinfo: the debug sections and their relocations go,
 * every other section keeps its bytes (the symbol table its entries, each
 * naming the same section), every segment its bytes, the reader accepts
 * the copy and finds the entry, and a second strip finds nothing to do. A
 * cubin whose layout the strip cannot keep whole (a segment over a debug
 * section, a kept section linked to a dropped one), a truncated one and a
 * debug-named symbol table are refused or kept, never half stripped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cubin_elf.h"
#include "cubin_strip.h"
#include "kcache/errors.h"
#include "nvrtc_dl.h"

static const char src[] = "extern \"C\" __global__ void scale(float *x, float s, int n)\n"
                          "{\n"
                          "    int i = blockIdx.x * 128 + threadIdx.x;\n"
                          "    if (i < n)\n"
                          "        x[i] = x[i] * s + 1.0f;\n"
                          "}\n";

typedef struct fixture {
    uint8_t *cubin;
    size_t len;
} fixture_t;

static int setup(void **state)
{
    static const char *const opts[] = {"--gpu-architecture=sm_90", "-lineinfo"};
    fixture_t *f = calloc(1, sizeof(*f));
    kct_nvrtc_t nv;
    char err[2048];
    void *cubin = NULL;

    if (!f)
        return -1;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0 ||
        kct_nvrtc_compile(&nv, src, "strip.cu", opts, 2, &cubin, &f->len, err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "NVRTC: %s\n", err);
        free(f);
        return -1;
    }
    kct_nvrtc_unload(&nv);
    f->cubin = cubin;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free(f->cubin);
    free(f);
    return 0;
}

/* ---- a small ELF64 view, independent of the code under test ---------- */

static uint64_t rd(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void wr(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

typedef struct sec {
    const char *name;
    uint32_t type, link, info;
    uint64_t flags, offset, size;
} sec_t;

static unsigned shnum(const uint8_t *d)
{
    return (unsigned)rd(d + 0x3c, 2);
}

static sec_t sec(const uint8_t *d, unsigned i)
{
    const uint8_t *h = d + rd(d + 0x28, 8) + 64 * (uint64_t)i;
    const uint8_t *names =
        d + rd(d + rd(d + 0x28, 8) + 64 * rd(d + 0x3e, 2) + 24, 8); /* shstrtab */
    sec_t s = {.name = (const char *)names + rd(h, 4),
               .type = (uint32_t)rd(h + 4, 4),
               .flags = rd(h + 8, 8),
               .offset = rd(h + 24, 8),
               .size = rd(h + 32, 8),
               .link = (uint32_t)rd(h + 40, 4),
               .info = (uint32_t)rd(h + 44, 4)};
    return s;
}

static int find(const uint8_t *d, const char *name)
{
    for (unsigned i = 1; i < shnum(d); i++)
        if (strcmp(sec(d, i).name, name) == 0)
            return (int)i;
    return -1;
}

static int is_debug(const char *name)
{
    return strstr(name, ".debug_") || strstr(name, ".nv_debug_");
}

static void test_strip_drops_debug_sections_and_keeps_the_rest(void **state)
{
    fixture_t *f = *state;
    void *out = NULL, *again = (void *)1;
    size_t out_len = 0, again_len = 1;
    char why[256] = "";
    unsigned n_debug = 0;

    for (unsigned i = 1; i < shnum(f->cubin); i++)
        n_debug += is_debug(sec(f->cubin, i).name) != 0;
    /* -lineinfo gave line tables: else this test would show nothing. */
    assert_true(find(f->cubin, ".nv_debug_line_sass") > 0 ||
                find(f->cubin, ".debug_line") > 0);
    assert_true(n_debug >= 2);

    assert_int_equal(
        kc__elf_strip_debug(f->cubin, f->len, &out, &out_len, why, sizeof(why)), KC_OK);
    assert_non_null(out);
    assert_true(out_len < f->len);
    const uint8_t *o = out;
    kc__elf_t img;
    assert_int_equal(kc__elf_open(o, out_len, &img, why, sizeof(why)), KC_OK);
    assert_int_equal(kc__elf_find_func(&img, "scale"), KC_OK);
    assert_int_equal(shnum(o), shnum(f->cubin) - n_debug);

    for (unsigned i = 1; i < shnum(f->cubin); i++) {
        sec_t a = sec(f->cubin, i);
        int j = find(o, a.name);
        if (is_debug(a.name)) {
            assert_int_equal(j, -1);
            continue;
        }
        assert_true(j > 0);
        sec_t b = sec(o, (unsigned)j);
        assert_int_equal(a.type, b.type);
        assert_int_equal(a.size, b.size);
        assert_int_equal(a.flags, b.flags);
        /* Links name the same section as before. */
        if (a.link)
            assert_string_equal(sec(f->cubin, a.link).name, sec(o, b.link).name);
        if (a.type == 8 /* NOBITS */)
            continue;
        if (a.type != 2 /* SYMTAB */) {
            assert_memory_equal(f->cubin + a.offset, o + b.offset, a.size);
            continue;
        }
        /* Symbols: every field as before; the section each names is the
         * same one, or none for a dropped section's. */
        for (uint64_t k = 0; k < a.size / 24; k++) {
            const uint8_t *sa = f->cubin + a.offset + 24 * k, *sb = o + b.offset + 24 * k;
            assert_memory_equal(sa, sb, 6);
            assert_memory_equal(sa + 8, sb + 8, 16);
            unsigned na = (unsigned)rd(sa + 6, 2), nb = (unsigned)rd(sb + 6, 2);
            if (na == 0 || na >= 0xff00) {
                assert_int_equal(na, nb);
            } else if (is_debug(sec(f->cubin, na).name)) {
                assert_int_equal(nb, 0);
            } else {
                assert_string_equal(sec(f->cubin, na).name, sec(o, nb).name);
            }
        }
    }
    /* Every segment's bytes (but the program header table's own). */
    uint64_t phoff = rd(f->cubin + 0x20, 8), nphoff = rd(o + 0x20, 8);
    unsigned phnum = (unsigned)rd(f->cubin + 0x38, 2);
    assert_true(phnum > 0);
    assert_int_equal(rd(o + 0x38, 2), phnum);
    for (unsigned j = 0; j < phnum; j++) {
        const uint8_t *pa = f->cubin + phoff + 56 * j, *pb = o + nphoff + 56 * j;
        uint64_t fa = rd(pa + 32, 8), oa = rd(pa + 8, 8), ob = rd(pb + 8, 8);
        assert_int_equal(fa, rd(pb + 32, 8));
        assert_int_equal(rd(pa, 4), rd(pb, 4));
        if (fa == 0 || (oa >= phoff && oa < phoff + 56 * (uint64_t)phnum))
            continue;
        assert_true(ob + fa <= out_len);
        assert_memory_equal(f->cubin + oa, o + ob, fa);
    }
    /* Nothing left to strip. */
    assert_int_equal(
        kc__elf_strip_debug(out, out_len, &again, &again_len, why, sizeof(why)), KC_OK);
    assert_null(again);
    assert_int_equal(again_len, 0);
    free(out);
}

static void expect_refused(const uint8_t *img, size_t len, const char *reason)
{
    void *out = (void *)1;
    size_t out_len = 1;
    char why[256] = "";

    assert_int_equal(kc__elf_strip_debug(img, len, &out, &out_len, why, sizeof(why)),
                     KC_ECORRUPT);
    assert_null(out);
    assert_int_equal(out_len, 0);
    if (!strstr(why, reason))
        fail_msg("reason '%s' does not say '%s'", why, reason);
}

static void test_strip_refuses_what_it_cannot_keep_whole(void **state)
{
    fixture_t *f = *state;
    uint8_t *bad = malloc(f->len);
    assert_non_null(bad);

    /* A load segment made to start inside a debug section. */
    int dbg = find(f->cubin, ".nv_debug_line_sass") > 0
                  ? find(f->cubin, ".nv_debug_line_sass")
                  : find(f->cubin, ".debug_line");
    memcpy(bad, f->cubin, f->len);
    uint64_t phoff = rd(bad + 0x20, 8);
    unsigned load = 0;
    for (unsigned j = 0; j < rd(bad + 0x38, 2) && !load; j++)
        if (rd(bad + phoff + 56 * j, 4) == 1 && rd(bad + phoff + 56 * j + 32, 8) > 0 &&
            rd(bad + phoff + 56 * j + 8, 8) != phoff)
            load = j;
    assert_true(load > 0);
    wr(bad + phoff + 56 * load + 8, sec(bad, (unsigned)dbg).offset, 8);
    wr(bad + phoff + 56 * load + 32, sec(bad, (unsigned)dbg).size, 8);
    expect_refused(bad, f->len, "segment");

    /* A kept section whose link names a dropped one. */
    memcpy(bad, f->cubin, f->len);
    int info = find(bad, ".nv.info");
    assert_true(info > 0);
    wr(bad + rd(bad + 0x28, 8) + 64 * (uint64_t)info + 40, (uint64_t)dbg, 4);
    expect_refused(bad, f->len, "links to section");

    /* Truncated: the reader's reason. */
    expect_refused(f->cubin, f->len / 2, "");
    expect_refused(f->cubin, 10, "shorter than an ELF64 header");
    free(bad);
}

static void test_strip_keeps_a_symbol_table_with_a_debug_name(void **state)
{
    fixture_t *f = *state;
    uint8_t *img = malloc(f->len);
    void *out = NULL;
    size_t out_len = 0;
    char why[256] = "";
    kc__elf_t view;

    assert_non_null(img);
    memcpy(img, f->cubin, f->len);
    /* Rename .symtab to .debug_ (same length): a name is not a kind. */
    int sym = find(img, ".symtab");
    assert_true(sym > 0);
    char *name = (char *)sec(img, (unsigned)sym).name;
    memcpy(name, ".debug_", 7);
    assert_int_equal(kc__elf_strip_debug(img, f->len, &out, &out_len, why, sizeof(why)),
                     KC_OK);
    assert_non_null(out);
    assert_int_equal(kc__elf_open(out, out_len, &view, why, sizeof(why)), KC_OK);
    assert_int_equal(kc__elf_find_func(&view, "scale"), KC_OK);
    assert_true(find(out, ".debug_") > 0);
    free(out);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strip_drops_debug_sections_and_keeps_the_rest),
        cmocka_unit_test(test_strip_refuses_what_it_cannot_keep_whole),
        cmocka_unit_test(test_strip_keeps_a_symbol_table_with_a_debug_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
