/* Fuzz the Triton cache parsers from memory: the metadata json and the
 * kernel's signature line. An input is the json, a NUL byte, then the IR
 * text (no NUL: all json, no IR). A parse either fails with a message or
 * gives launch metadata that the binmeta encoder accepts as it is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/record.h"
#include "triton_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data, *ir = "";
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = size, ir_len = 0;
    kc__triton_meta_t m;
    char err[256];

    if (nul) {
        json_len = (size_t)(nul - data);
        ir = (const char *)nul + 1;
        ir_len = size - json_len - 1;
    }
    int rc = kc__triton_parse_mem(json, json_len, ir, ir_len, "k.json", "k.source", &m,
                                  err, sizeof err);
    if (rc != KC_OK) {
        if (!err[0] || (rc != KC_ECORRUPT && rc != KC_EUNSUPPORTED && rc != KC_ENOMEM))
            abort();
        if (m.args || m.name || m.n_args)
            abort(); /* a failed parse leaves nothing behind */
        return 0;
    }
    if (m.n_args > KC__TRITON_MAX_ARGS || (m.flags & KC_BINMETA_TMA))
        abort();
    kc_record_t rec = {.kind = KC_REC_BINMETA, .version = KC_RECORD_VERSION};
    rec.u.binmeta = (kc_binmeta_rec_t){.entry = m.name,
                                       .arch = "sm_90a",
                                       .threads_per_block = m.num_warps * m.warp_size,
                                       .num_warps = m.num_warps,
                                       .warp_size = m.warp_size,
                                       .num_ctas = m.num_ctas,
                                       .dyn_smem = m.shared,
                                       .global_scratch_size = m.gscratch_size,
                                       .global_scratch_align = m.gscratch_align,
                                       .profile_scratch_size = m.pscratch_size,
                                       .profile_scratch_align = m.pscratch_align,
                                       .flags = m.flags,
                                       .compiler = "triton",
                                       .compiler_version = m.version,
                                       .args = m.args,
                                       .n_args = m.n_args,
                                       .spec = m.spec,
                                       .n_spec = m.n_spec};
    rec.u.binmeta.build.b[0] = 1;
    void *enc = NULL;
    size_t len = 0;
    if (kc_record_encode(&rec, &enc, &len) != KC_OK)
        abort();
    kc_free(enc);
    kc__triton_meta_free(&m);
    return 0;
}
