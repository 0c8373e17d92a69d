/* The bounded ELF64 reader (launcher/src/elf.c) on a real NVRTC cubin: it
 * finds the entry and lists the FUNC symbols (a C++ one by its mangled
 * name), and refuses, without reading outside the image, every truncation
 * and a few corrupted headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cubin_elf.h"
#include "kcache/errors.h"
#include "nvrtc_dl.h"

static const char src[] =
    "extern \"C\" __global__ void scale(float *x, float s, int n)\n"
    "{ int i = blockIdx.x * 128 + threadIdx.x; if (i < n) x[i] *= s; }\n"
    "__global__ void helper(float *x) { x[0] = 1.0f; }\n";

typedef struct fixture {
    void *cubin;
    size_t len;
} fixture_t;

static int setup(void **state)
{
    static const char *const opts[] = {"--gpu-architecture=sm_90"};
    fixture_t *f = calloc(1, sizeof(*f));
    kct_nvrtc_t nv;
    char err[2048];

    if (!f)
        return -1;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0 ||
        kct_nvrtc_compile(&nv, src, "elf.cu", opts, 1, &f->cubin, &f->len, err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "NVRTC: %s\n", err);
        free(f);
        return -1;
    }
    kct_nvrtc_unload(&nv);
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

static void test_a_real_cubin_names_its_functions(void **state)
{
    fixture_t *f = *state;
    kc__elf_t img;
    char why[256], list[256];

    assert_int_equal(kc__elf_open(f->cubin, f->len, &img, why, sizeof(why)), KC_OK);
    assert_int_equal(kc__elf_find_func(&img, "scale"), KC_OK);
    assert_int_equal(kc__elf_find_func(&img, "_Z6helperPf"), KC_OK);
    assert_int_equal(kc__elf_find_func(&img, "scal"), KC_ENOTFOUND);
    assert_int_equal(kc__elf_find_func(&img, "scalex"), KC_ENOTFOUND);
    assert_int_equal(kc__elf_find_func(&img, "helper"), KC_ENOTFOUND);
    assert_int_equal(kc__elf_list_funcs(&img, list, sizeof(list)), 2);
    assert_non_null(strstr(list, "scale"));
    assert_non_null(strstr(list, "_Z6helperPf"));
    assert_non_null(strstr(list, ", "));
    /* Too small for both: the list ends with "..." and still counts both. */
    char small[12];
    assert_int_equal(kc__elf_list_funcs(&img, small, sizeof(small)), 2);
    assert_true(strlen(small) < sizeof(small));
    assert_non_null(strstr(small, "..."));
    assert_int_equal(kc__elf_list_funcs(&img, small, 0), 2);
}

static void test_damaged_images_are_refused_with_a_reason(void **state)
{
    fixture_t *f = *state;
    kc__elf_t img;
    char why[256];
    uint8_t *copy = malloc(f->len);

    assert_non_null(copy);
    /* Every truncation: refused, or (past the last section) read within
     * the shorter image. Under ASan a read past it would fail the test. */
    for (size_t n = 0; n < f->len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        assert_non_null(cut);
        memcpy(cut, f->cubin, n);
        why[0] = '\0';
        if (kc__elf_open(cut, n, &img, why, sizeof(why)) == KC_OK) {
            char list[64];
            kc__elf_find_func(&img, "scale");
            kc__elf_list_funcs(&img, list, sizeof(list));
        } else {
            assert_true(why[0] != '\0');
        }
        free(cut);
    }
    memcpy(copy, f->cubin, f->len);
    copy[0] = 'X';
    assert_int_equal(kc__elf_open(copy, f->len, &img, why, sizeof(why)), KC_ECORRUPT);
    assert_non_null(strstr(why, "magic"));
    memcpy(copy, f->cubin, f->len);
    copy[4] = 1; /* ELFCLASS32 */
    assert_int_equal(kc__elf_open(copy, f->len, &img, why, sizeof(why)), KC_ECORRUPT);
    memcpy(copy, f->cubin, f->len);
    memset(copy + 0x28, 0xff, 8); /* e_shoff far past the end */
    assert_int_equal(kc__elf_open(copy, f->len, &img, why, sizeof(why)), KC_ECORRUPT);
    assert_non_null(strstr(why, "section header table"));
    /* Section 0 must be the null section: made a symbol table, the reader
     * would list its functions and the strip would write it as zeros. */
    memcpy(copy, f->cubin, f->len);
    uint64_t shoff = 0;
    memcpy(&shoff, copy + 0x28, 8);
    copy[shoff + 4] = 2; /* sh_type SHT_SYMTAB */
    assert_int_equal(kc__elf_open(copy, f->len, &img, why, sizeof(why)), KC_ECORRUPT);
    assert_non_null(strstr(why, "null section"));
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_real_cubin_names_its_functions),
        cmocka_unit_test(test_damaged_images_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
