/* Compilers: CUDA C -> cubin with NVRTC (loaded with dlopen), PTX -> cubin
 * with nvJitLink (loaded with dlopen, no driver needed), else with the
 * driver's JIT linker (through the device layer). Internal. */
#ifndef KCACHE_COMPILER_H
#define KCACHE_COMPILER_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/key.h"

typedef struct kc__compile_in {
    const char *source;
    size_t source_len;
    const kc_header_t *headers;
    size_t n_headers;
    const char *name;  /* program name for messages */
    const char *entry; /* the kernel to keep; name expressions for C++ */
    const char *const *options;
    size_t n_options;
    const kc_param_t *params; /* passed as -DNAME=VALUE */
    size_t n_params;
    const char *arch; /* "sm_90" */
} kc__compile_in_t;

typedef struct kc__compile_out {
    void *cubin; /* free with kc_free */
    size_t cubin_len;
    char *log;           /* compile log, NUL-terminated, may be NULL; free with kc_free */
    char *lowered_entry; /* the symbol to look up (mangled if needed); kc_free */
    uint64_t compile_us;
} kc__compile_out_t;

/* Loads NVRTC once per process (dlopen of libnvrtc.so.<major>, then
 * libnvrtc.so, then $CUDA_HOME/lib64 and /usr/local/cuda/lib64). Thread
 * safe. KC_ENVRTC with a message if it can't be found. */
int kc__nvrtc_load(char *errmsg, size_t errcap);
/* "nvrtc-13.0": part of the build preimage. */
const char *kc__nvrtc_toolchain_id(void);
/* Whether this process has tried to load NVRTC (for tests: a launcher
 * whose kernels are all prebuilt never does). */
int kc__nvrtc_attempted(void);

/* Compile CUDA C to a cubin for in->arch. KC_ECOMPILE with out->log set for
 * a compile error; KC_ENVRTC for NVRTC missing or failing otherwise. */
int kc__nvrtc_compile(const kc__compile_in_t *in, kc__compile_out_t *out);
/* Compile CUDA C to PTX for the virtual arch of in->arch ("sm_90" and
 * "compute_90" both give compute_90), for the driver's JIT (ptx_to_cubin).
 * out->cubin receives the NUL-terminated PTX text, cubin_len its length
 * without the NUL. Codes as for kc__nvrtc_compile. */
int kc__nvrtc_compile_ptx(const kc__compile_in_t *in, kc__compile_out_t *out);
void kc__compile_out_free(kc__compile_out_t *out);

/* Loads nvJitLink once per process (KCACHE_NVJITLINK: a path, or "none";
 * else libnvJitLink.so.13, libnvJitLink.so, $CUDA_HOME/lib64,
 * /usr/local/cuda/lib64). Thread safe. KC_EUNSUPPORTED with a message if
 * it is not there. */
int kc__nvjitlink_load(char *errmsg, size_t errcap);
/* "nvjitlink-13.0": the toolchain id of PTX builds it makes. */
const char *kc__nvjitlink_toolchain_id(void);
/* PTX (len bytes, NUL not needed) -> a cubin for arch ("sm_90"), malloc'd
 * (free with free() or kc_free). KC_ECOMPILE with the linker's log in
 * log[log_cap] for bad PTX; KC_EINVAL for an arch that is not sm_NN;
 * KC_EUNSUPPORTED without nvJitLink. */
int kc__nvjitlink_ptx_to_cubin(const char *ptx, size_t len, const char *arch,
                               void **cubin, size_t *cubin_len, char *log,
                               size_t log_cap);

#endif
