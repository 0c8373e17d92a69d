/* NVRTC loaded with dlopen, for test helpers that need real cubins.
 *
 * Tests run on machines where the CUDA library directory is often not on the
 * loader path, so the loader tries the sonames first and then the toolkit's
 * usual locations ($CUDA_HOME/lib64, /usr/local/cuda/lib64).
 */
#ifndef KC_TEST_NVRTC_DL_H
#define KC_TEST_NVRTC_DL_H

#include <stddef.h>

#include <nvrtc.h>

typedef struct kct_nvrtc {
    void *lib;
    int major, minor;
    nvrtcResult (*version)(int *, int *);
    nvrtcResult (*create_program)(nvrtcProgram *, const char *, const char *, int,
                                  const char *const *, const char *const *);
    nvrtcResult (*compile_program)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*get_cubin_size)(nvrtcProgram, size_t *);
    nvrtcResult (*get_cubin)(nvrtcProgram, char *);
    nvrtcResult (*get_log_size)(nvrtcProgram, size_t *);
    nvrtcResult (*get_log)(nvrtcProgram, char *);
    nvrtcResult (*destroy_program)(nvrtcProgram *);
} kct_nvrtc_t;

/* Load NVRTC and resolve its functions. Returns 0, or -1 with a message in
 * err[err_cap]. */
int kct_nvrtc_load(kct_nvrtc_t *nv, char *err, size_t err_cap);

void kct_nvrtc_unload(kct_nvrtc_t *nv);

/* Compile src (named name, for messages) with opts to a cubin, once per
 * build tree: the cubin is kept in $KC_TEST_TMP/cubins under the XXH3-128 of
 * the NVRTC version, src, name and opts, and later calls (in any test) read
 * it from there (a damaged file is compiled again). *cubin
 * (malloc'd, free with free()) and *len. Returns 0, or -1 with the compile
 * log or the NVRTC error in err[err_cap]. The options must select a real
 * architecture (--gpu-architecture=sm_XX) for NVRTC to produce a cubin. */
int kct_nvrtc_compile(const kct_nvrtc_t *nv, const char *src, const char *name,
                      const char *const *opts, int n_opts, void **cubin, size_t *len,
                      char *err, size_t err_cap);

#endif
