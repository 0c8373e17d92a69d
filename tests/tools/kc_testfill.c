/* kc_testfill: fill a store with real NVRTC-compiled kernels for tests.
 *
 * Usage: kc_testfill -s DIR [--arch sm_90] [--count N] [--dump DIR] [--binmeta]
 *                    [--group NAME]
 *
 * Compiles vec_add in N <= 16 configurations (-DBLOCK=64,128,...), saxpy and
 * block_sum to cubins for one arch, and publishes them in one transaction as
 * blobs and builds with realistic preimages, plus one tuning record for
 * vec_add over its N configurations. Prints every key it wrote, one per line,
 * as "<kind> <hex>". With --dump, each raw cubin is also written to
 * DIR/<blob key hex>.cubin so that a test can compare bytes. With --binmeta,
 * saxpy's build also gets launch metadata (a binmeta record) as if Triton
 * had compiled it. With --group NAME, a group NAME is stored too, as
 * Triton's cache manager would keep a cache entry: add_kernel.json,
 * add_kernel.ptx, add_kernel.cubin (saxpy's cubin, so its blob is shared
 * with saxpy's build) and an empty file, empty.txt.
 *
 * There is no GPU here: register counts and shared memory come from the
 * cubin's ELF sections, but the tuning's median times are made up
 * (deterministic, from the block size).
 */
#include <elf.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/shape.h"
#include "kcache/store.h"
#include "nvrtc_dl.h"

#define MAX_BUILDS 40

static const char vec_add_src[] =
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "vec_add(const float *a, const float *b, float *c, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n";

static const char saxpy_src[] =
    "extern \"C\" __global__ void saxpy(float a, const float *x, float *y, int n)\n"
    "{\n"
    "    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
    "         i += blockDim.x * gridDim.x)\n"
    "        y[i] = a * x[i] + y[i];\n"
    "}\n";

static const char block_sum_src[] =
    "extern \"C\" __global__ void __launch_bounds__(BLOCK)\n"
    "block_sum(const float *x, float *out, int n)\n"
    "{\n"
    "    __shared__ float s[BLOCK];\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    s[threadIdx.x] = i < n ? x[i] : 0.0f;\n"
    "    __syncthreads();\n"
    "    for (int k = BLOCK / 2; k > 0; k >>= 1) {\n"
    "        if (threadIdx.x < k)\n"
    "            s[threadIdx.x] += s[threadIdx.x + k];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    if (threadIdx.x == 0)\n"
    "        out[blockIdx.x] = s[0];\n"
    "}\n";

typedef struct build {
    const char *entry;
    const char *src;
    kc_param_t param; /* BLOCK, or name NULL */
    const char *const *options;
    size_t n_options;
    void *cubin;
    size_t cubin_len;
    void *preimage;
    size_t preimage_len;
    kc_key_t key, blob;
    kc_build_rec_t rec;
} build_t;

static const char *const user_opts[] = {"-std=c++17", "-lineinfo"};

static int die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "kc_testfill: ");
    fprintf(stderr, fmt, a ? a : "", b ? b : "");
    fputc('\n', stderr);
    return 1;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Registers, local (stack frame) bytes and static shared memory of entry,
 * read from the cubin: the global ".nv.info" section holds attributes
 * keyed by the kernel's symbol index (EIATTR_REGCOUNT 0x2f, EIATTR_FRAME_SIZE
 * 0x11), ".text.<entry>" names that index in sh_info, and
 * ".nv.shared.<entry>" is sized by the kernel's static shared memory. */
static void cubin_resources(const void *cubin, size_t len, const char *entry,
                            kc_build_rec_t *r)
{
    const uint8_t *base = cubin;
    const Elf64_Ehdr *eh = cubin;
    const Elf64_Shdr *info = NULL;
    uint32_t sym = UINT32_MAX;
    char text[160], shared[160];

    if (len < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shoff > len ||
        eh->e_shnum > (len - eh->e_shoff) / sizeof(Elf64_Shdr) ||
        eh->e_shstrndx >= eh->e_shnum)
        return;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    const Elf64_Shdr *strs = &sh[eh->e_shstrndx];
    if (strs->sh_offset > len || strs->sh_size > len - strs->sh_offset)
        return;
    const char *names = (const char *)base + strs->sh_offset;
    snprintf(text, sizeof text, ".text.%s", entry);
    snprintf(shared, sizeof shared, ".nv.shared.%s", entry);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_name >= strs->sh_size)
            continue;
        const char *n = names + sh[i].sh_name;
        size_t room = strs->sh_size - sh[i].sh_name;
        if (strnlen(n, room) == room)
            continue;
        if (strcmp(n, text) == 0)
            sym = sh[i].sh_info & 0xffffff;
        else if (strcmp(n, shared) == 0)
            r->static_smem = (uint32_t)sh[i].sh_size;
        else if (strcmp(n, ".nv.info") == 0 && sh[i].sh_offset <= len &&
                 sh[i].sh_size <= len - sh[i].sh_offset)
            info = &sh[i];
    }
    if (!info || sym == UINT32_MAX)
        return;
    /* Entries: format byte, attribute byte, then for format 4 a 16-bit size
     * and that many bytes, else a 16-bit value. */
    const uint8_t *p = base + info->sh_offset, *end = p + info->sh_size;
    while (end - p >= 4) {
        uint8_t fmt = p[0], attr = p[1];
        uint16_t sz = (uint16_t)(p[2] | p[3] << 8);
        if (fmt != 4) {
            p += 4;
            continue;
        }
        if (end - p - 4 < sz)
            break;
        if (sz == 8) {
            uint32_t s, v;
            memcpy(&s, p + 4, 4);
            memcpy(&v, p + 8, 4);
            if (s == sym && attr == 0x2f)
                r->registers = v;
            else if (s == sym && attr == 0x11)
                r->local_bytes = v;
        }
        p += 4 + sz;
    }
}

static int write_file(const char *dir, const kc_key_t *key, const void *p, size_t n)
{
    char hex[KC_KEY_HEX_LEN + 1], path[4096];
    FILE *f;

    kc_key_to_hex(key, hex);
    snprintf(path, sizeof path, "%s/%s.cubin", dir, hex);
    f = fopen(path, "wb");
    if (!f)
        return die("cannot create %s: %s", path, strerror(errno));
    if (fwrite(p, 1, n, f) != n || fclose(f) != 0)
        return die("cannot write %s: %s", path, strerror(errno));
    return 0;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: kc_testfill -s DIR [--arch sm_90] [--count N] [--dump DIR] [--binmeta]\n"
        "                   [--group NAME]\n"
        "Compile test kernels with NVRTC and publish them into the store in DIR.\n"
        "Prints \"<kind> <key>\" for every record written.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'}, {"arch", required_argument, NULL, 'a'},
        {"count", required_argument, NULL, 'n'}, {"dump", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},        {"binmeta", no_argument, NULL, 'm'},
        {"group", required_argument, NULL, 'g'}, {0},
    };
    const char *dir = getenv("KCACHE_DIR"), *arch = "sm_90", *dump = NULL, *group = NULL;
    long count = 2;
    int with_binmeta = 0;
    kct_nvrtc_t nv;
    build_t b[MAX_BUILDS];
    size_t nb = 0;
    kc_store_t *st = NULL;
    char err[8192], toolchain[32], arch_opt[64];
    kc_buf_t cubins[MAX_BUILDS];
    kc_build_rec_t recs[MAX_BUILDS];
    int c, rc = 1;

    memset(b, 0, sizeof b);
    while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            dir = optarg;
            break;
        case 'a':
            arch = optarg;
            break;
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 'd':
            dump = optarg;
            break;
        case 'm':
            with_binmeta = 1;
            break;
        case 'g':
            group = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!dir || optind != argc || count < 1 || count > 16) {
        usage(stderr);
        return 2;
    }
    if (kct_nvrtc_load(&nv, err, sizeof err) != 0)
        return die("%s%s", err, NULL);
    snprintf(toolchain, sizeof toolchain, "nvrtc-%d.%d", nv.major, nv.minor);
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", arch);

    for (long i = 0; i < count; i++)
        b[nb++] = (build_t){
            .entry = "vec_add", .src = vec_add_src, .param = {"BLOCK", 64 * (i + 1)}};
    b[nb++] = (build_t){.entry = "saxpy", .src = saxpy_src};
    b[nb++] =
        (build_t){.entry = "block_sum", .src = block_sum_src, .param = {"BLOCK", 256}};

    for (size_t i = 0; i < nb; i++) {
        char define[64];
        const char *opts[8];
        int n_opts = 0;
        uint64_t t0 = now_us();

        b[i].options = user_opts;
        b[i].n_options = sizeof user_opts / sizeof user_opts[0];
        opts[n_opts++] = arch_opt;
        for (size_t k = 0; k < b[i].n_options; k++)
            opts[n_opts++] = b[i].options[k];
        if (b[i].param.name) {
            snprintf(define, sizeof define, "-D%s=%" PRId64, b[i].param.name,
                     b[i].param.value);
            opts[n_opts++] = define;
        }
        if (kct_nvrtc_compile(&nv, b[i].src, b[i].entry, opts, n_opts, &b[i].cubin,
                              &b[i].cubin_len, err, sizeof err) != 0) {
            die("%s%s", err, NULL);
            goto fail;
        }
        kc_build_desc_t d = {
            .source_kind = KC_SOURCE_CUDA,
            .source_digest = kc_source_digest(b[i].src, strlen(b[i].src), NULL, 0),
            .entry = b[i].entry,
            .options = b[i].options,
            .n_options = b[i].n_options,
            .params = b[i].param.name ? &b[i].param : NULL,
            .n_params = b[i].param.name ? 1 : 0,
            .arch = arch,
            .toolchain = toolchain,
        };
        if ((c = kc_build_preimage_encode(&d, &b[i].preimage, &b[i].preimage_len)) !=
            KC_OK) {
            die("build preimage: %s%s", kc_strerror(c), NULL);
            goto fail;
        }
        b[i].key = kc_key_hash(b[i].preimage, b[i].preimage_len);
        b[i].blob = kc_key_hash(b[i].cubin, b[i].cubin_len);
        kc_build_rec_t *r = &b[i].rec;
        r->preimage = (kc_buf_t){b[i].preimage, b[i].preimage_len};
        r->blob = b[i].blob;
        r->entry = b[i].entry;
        cubin_resources(b[i].cubin, b[i].cubin_len, b[i].entry, r);
        r->max_threads = b[i].param.name ? (uint32_t)b[i].param.value : 1024;
        r->compile_us = now_us() - t0;
        r->created = (uint64_t)time(NULL);
        cubins[i] = (kc_buf_t){b[i].cubin, b[i].cubin_len};
        recs[i] = *r;
        if (dump && write_file(dump, &b[i].blob, b[i].cubin, b[i].cubin_len) != 0)
            goto fail;
    }

    /* One tuning of vec_add over its configurations, for 2^20 floats. */
    int64_t dims[1] = {1 << 20};
    kc_argdesc_t args[4] = {
        {.kind = KC_ARG_POINTER,
         .dtype = KC_DTYPE_F32,
         .rank = 1,
         .dims = dims,
         .addr = 0x7f0000000000},
        {.kind = KC_ARG_POINTER,
         .dtype = KC_DTYPE_F32,
         .rank = 1,
         .dims = dims,
         .addr = 0x7f0000400000},
        {.kind = KC_ARG_POINTER,
         .dtype = KC_DTYPE_F32,
         .rank = 1,
         .dims = dims,
         .addr = 0x7f0000800000},
        {.kind = KC_ARG_SCALAR, .dtype = KC_DTYPE_I32, .value.i = 1 << 20},
    };
    uint8_t sig[256];
    size_t sig_len = 0;
    if ((c = kc_shape_sig_encode(args, 4, KC_DIMS_POW2, sig, sizeof sig, &sig_len)) !=
        KC_OK) {
        die("shape signature: %s%s", kc_strerror(c), NULL);
        goto fail;
    }
    char space[256];
    size_t sp = (size_t)snprintf(space, sizeof space, "BLOCK in");
    for (long i = 0; i < count; i++)
        sp += (size_t)snprintf(space + sp, sizeof space - sp, " %" PRId64,
                               b[i].param.value);
    kc_tuning_desc_t td = {
        .source_kind = KC_SOURCE_CUDA,
        .source_digest = kc_source_digest(vec_add_src, strlen(vec_add_src), NULL, 0),
        .entry = "vec_add",
        .options = user_opts,
        .n_options = sizeof user_opts / sizeof user_opts[0],
        .space_digest = kc_key_hash(space, strlen(space)),
        .shape_sig = {sig, sig_len},
        .arch = arch,
        .sm_count = 132,
        .device_name = "NVIDIA H100 80GB HBM3",
    };
    void *tpre = NULL;
    size_t tpre_len = 0;
    if ((c = kc_tuning_preimage_encode(&td, &tpre, &tpre_len)) != KC_OK) {
        die("tuning preimage: %s%s", kc_strerror(c), NULL);
        goto fail;
    }
    kc_candidate_t cands[MAX_BUILDS];
    size_t win = 0;
    for (long i = 0; i < count; i++) {
        int64_t blk = b[i].param.value;
        cands[i] = (kc_candidate_t){
            .params = &b[i].param,
            .n_params = 1,
            .build = b[i].key,
            .status = KC_CAND_OK,
            /* Made up: fastest at 256 threads, slower either side. */
            .median_ns = 9000 + (uint64_t)(blk > 256 ? blk - 256 : 256 - blk) * 11,
            .reason = "",
        };
        if (cands[i].median_ns < cands[win].median_ns)
            win = (size_t)i;
    }
    kc_tuning_rec_t tr = {
        .preimage = {tpre, tpre_len},
        .winner = &b[win].param,
        .n_winner = 1,
        .winner_build = b[win].key,
        .candidates = cands,
        .n_candidates = (size_t)count,
        .tuning_us = 250000 + (uint64_t)count * 40000,
        .device_name = td.device_name,
        .arch = arch,
        .sm_count = td.sm_count,
        .driver_version = 13000,
        .created = (uint64_t)time(NULL),
    };
    kc_key_t tkey = kc_key_hash(tpre, tpre_len);

    if ((c = kc_store_open(dir, NULL, &st)) != KC_OK) {
        die("cannot open store %s: %s", dir, kc_store_open_errmsg());
        kc_free(tpre);
        goto fail;
    }
    kc_publish_t pub = {cubins, nb, recs, nb, &tr, NULL, 0};
    c = kc_store_publish(st, &pub);
    kc_free(tpre);
    if (c != KC_OK) {
        die("publish: %s: %s", kc_strerror(c), kc_store_errmsg(st));
        goto fail;
    }

    char hex[KC_KEY_HEX_LEN + 1];
    if (with_binmeta) {
        static const kc_binmeta_arg_t margs[] = {
            {"a", "fp32"}, {"x_ptr", "*fp32"}, {"y_ptr", "*fp32"}, {"n", "i32"}};
        static const kc_binmeta_spec_t mspec[] = {
            {1, KC_SPEC_ALIGN16}, {2, KC_SPEC_ALIGN16}, {3, KC_SPEC_DIV16}};
        const build_t *sx = &b[(size_t)count]; /* saxpy */
        kc_record_t mr = {.kind = KC_REC_BINMETA,
                          .u.binmeta = {.build = sx->key,
                                        .entry = "saxpy",
                                        .arch = arch,
                                        .threads_per_block = 128,
                                        .num_warps = 4,
                                        .warp_size = 32,
                                        .num_ctas = 1,
                                        .global_scratch_align = 1,
                                        .profile_scratch_align = 1,
                                        .compiler = "triton",
                                        .compiler_version = "3.6.0",
                                        .args = margs,
                                        .n_args = 4,
                                        .spec = mspec,
                                        .n_spec = 3}};
        if ((c = kc_store_put(st, &sx->key, &mr)) != KC_OK) {
            die("binmeta: %s: %s", kc_strerror(c), kc_store_errmsg(st));
            goto fail;
        }
        kc_key_to_hex(&sx->key, hex);
        printf("binmeta %s\n", hex);
    }
    if (group) {
        static const char json[] = "{\"name\": \"add_kernel\", \"num_warps\": 4}";
        static const char ptx[] = ".version 8.4\n.target sm_90\n";
        const build_t *sx = &b[(size_t)count]; /* saxpy */
        kc_group_file_t gf[] = {
            {"add_kernel.json", json, sizeof json - 1},
            {"add_kernel.ptx", ptx, sizeof ptx - 1},
            {"add_kernel.cubin", sx->cubin, sx->cubin_len},
            {"empty.txt", NULL, 0},
        };
        kc_key_t gk;
        if ((c = kc_store_group_put(st, group, gf, 4, 0)) != KC_OK) {
            die("group: %s: %s", kc_strerror(c), kc_store_errmsg(st));
            goto fail;
        }
        kc_group_key(group, &gk);
        kc_key_to_hex(&gk, hex);
        printf("group %s\n", hex);
    }
    for (size_t i = 0; i < nb; i++) {
        size_t j;
        for (j = 0; j < i && kc_key_cmp(&b[j].blob, &b[i].blob) != 0; j++)
            ;
        if (j == i) {
            kc_key_to_hex(&b[i].blob, hex);
            printf("blob %s\n", hex);
        }
    }
    for (size_t i = 0; i < nb; i++) {
        kc_key_to_hex(&b[i].key, hex);
        printf("build %s\n", hex);
    }
    kc_key_to_hex(&tkey, hex);
    printf("tuning %s\n", hex);
    rc = fflush(stdout) == 0 ? 0 : 1;
fail:
    kc_store_close(st);
    for (size_t i = 0; i < nb; i++) {
        free(b[i].cubin);
        kc_free(b[i].preimage);
    }
    kct_nvrtc_unload(&nv);
    return rc;
}
