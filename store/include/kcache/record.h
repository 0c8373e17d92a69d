/* Records: the values stored under keys, and their byte encoding.
 *
 * Every record is a 12-byte header (magic "KCR\0", kind, version, reserved,
 * payload length), the payload, and an 8-byte XXH3-64 checksum of everything
 * before it. docs/FORMAT.md gives each payload byte by byte. Decoders check
 * every length against the bytes they have: damaged input gives KC_ECORRUPT,
 * a record written by a newer format gives KC_EVERSION, never a crash.
 */
#ifndef KCACHE_RECORD_H
#define KCACHE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"
#include "kcache/key.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kc_rec_kind {
    KC_REC_BLOB = 1,
    KC_REC_BUILD = 2,
    KC_REC_TUNING = 3,
    KC_REC_USAGE = 4,
    KC_REC_LEASE = 5,
    KC_REC_META = 6,
    KC_REC_BINMETA = 7, /* launch metadata of a binary kcache did not compile */
    KC_REC_GROUP = 8,   /* named files stored together (revision 1.2) */
} kc_rec_kind_t;
#define KC_REC_KIND_MIN 1
#define KC_REC_KIND_MAX 8

/* "blob", "build", ...; NULL for an unknown kind. */
KC_API const char *kc_rec_kind_name(int kind);
/* 0 for an unknown name. */
KC_API int kc_rec_kind_from_name(const char *name);

/* Current format version of every record kind. */
#define KC_RECORD_VERSION 1
#define KC_RECORD_HEADER_SIZE 12
#define KC_RECORD_TRAILER_SIZE 8

typedef enum kc_codec {
    KC_CODEC_ZSTD = 1,
} kc_codec_t;

typedef struct kc_blob_rec {
    uint8_t codec;     /* kc_codec_t */
    uint32_t dict_id;  /* 0: no dictionary */
    uint64_t raw_size; /* size of the decompressed cubin */
    kc_buf_t frame;    /* the compressed frame */
} kc_blob_rec_t;

typedef struct kc_build_rec {
    kc_buf_t preimage; /* the build preimage; its XXH3-128 is the key */
    kc_key_t blob;     /* key of the cubin */
    const char *entry; /* the kernel's symbol in the cubin (mangled if C++) */
    uint32_t registers;
    uint32_t static_smem;
    uint32_t max_threads;
    uint32_t local_bytes;
    uint64_t compile_us; /* compile time in microseconds */
    uint64_t created;    /* unix seconds */
} kc_build_rec_t;

typedef enum kc_cand_status {
    KC_CAND_OK = 0,
    KC_CAND_COMPILE_ERROR = 1,
    KC_CAND_RESOURCES = 2, /* too many registers, threads or shared memory */
    KC_CAND_LAUNCH_FAILED = 3,
    KC_CAND_LOAD_FAILED = 4,
    KC_CAND_SKIPPED = 5, /* excluded by the space's constraint */
} kc_cand_status_t;

KC_API const char *kc_cand_status_name(int status);

typedef struct kc_candidate {
    const kc_param_t *params;
    size_t n_params;
    kc_key_t build;     /* zero if it never compiled */
    uint8_t status;     /* kc_cand_status_t */
    uint64_t median_ns; /* valid when status == KC_CAND_OK */
    const char *reason; /* "" when OK */
} kc_candidate_t;

typedef struct kc_tuning_rec {
    kc_buf_t preimage;
    const kc_param_t *winner;
    size_t n_winner;
    kc_key_t winner_build;
    const kc_candidate_t *candidates;
    size_t n_candidates;
    uint64_t tuning_us;
    const char *device_name;
    const char *arch;
    uint32_t sm_count;
    uint32_t driver_version;
    uint64_t created;
} kc_tuning_rec_t;

typedef struct kc_usage_rec {
    uint64_t last_use; /* unix seconds */
    uint64_t uses;
} kc_usage_rec_t;

typedef struct kc_lease_rec {
    const char *host;
    const char *boot_id;
    uint32_t pid;
    uint64_t start;  /* unix milliseconds */
    uint64_t ttl_ms; /* the lease is dead after start + ttl_ms */
} kc_lease_rec_t;

typedef struct kc_meta_rec {
    kc_buf_t value;
} kc_meta_rec_t;

/* Launch metadata of a binary that another compiler made (Triton first):
 * what a launch needs beyond the cubin and its entry. It is stored under the
 * key of the build record it describes, which it carries in build. */

/* flags: a set of these bits; any other bit is refused. */
#define KC_BINMETA_COOPERATIVE 0x1u /* needs a cooperative grid launch */
#define KC_BINMETA_PDL 0x2u         /* programmatic dependent launch */
#define KC_BINMETA_TMA 0x4u         /* uses tensor descriptors (TMA) */
#define KC_BINMETA_FLAGS_ALL 0x7u

/* What the compiler assumed of an argument when it specialized the binary. */
typedef enum kc_spec_prop {
    KC_SPEC_DIV16 = 1,   /* an integer divisible by 16 */
    KC_SPEC_EQ1 = 2,     /* an integer equal to 1 */
    KC_SPEC_ALIGN16 = 3, /* a pointer aligned to 16 bytes */
} kc_spec_prop_t;
#define KC_SPEC_PROP_MAX KC_SPEC_ALIGN16

/* "div16", "eq1", "align16"; NULL for an unknown value. */
KC_API const char *kc_spec_prop_name(int prop);

typedef struct kc_binmeta_spec {
    uint32_t arg; /* index into args */
    uint8_t prop; /* kc_spec_prop_t */
} kc_binmeta_spec_t;

typedef struct kc_binmeta_arg {
    const char *name; /* as the compiler wrote it: "x_ptr" */
    const char *type; /* "*fp32", "i32", "constexpr", ... */
} kc_binmeta_arg_t;

typedef struct kc_binmeta_rec {
    kc_key_t build;             /* the build record it describes: its key */
    const char *entry;          /* the kernel's symbol in the cubin; not empty */
    const char *arch;           /* sm_<digits>, optionally followed by 'a' or 'f' */
    uint32_t threads_per_block; /* num_warps * warp_size, not 0 */
    uint32_t num_warps;
    uint32_t warp_size; /* 32 or 64 */
    uint32_t num_ctas;  /* CTAs per cluster; 1: no cluster; not 0 */
    uint32_t dyn_smem;  /* dynamic shared memory, bytes */
    uint32_t global_scratch_size;
    uint32_t global_scratch_align; /* a power of two */
    uint32_t profile_scratch_size;
    uint32_t profile_scratch_align; /* a power of two */
    uint32_t flags;                 /* KC_BINMETA_* */
    const char *compiler;           /* "triton"; not empty */
    const char *compiler_version;   /* "3.6.0"; not empty */
    const kc_binmeta_arg_t *args;   /* the signature, in argument order */
    size_t n_args;
    /* Sorted by (arg, prop), no duplicates; arg < n_args; DIV16 and EQ1 on
     * an integer type (i..., u...), ALIGN16 on a pointer type (*...). */
    const kc_binmeta_spec_t *spec;
    size_t n_spec;
} kc_binmeta_rec_t;

/* A group: named files stored together under the group's name (Triton's
 * cache keeps one per cache key). The record holds the names and the blob
 * keys of the files; each file's bytes are an ordinary blob record. It is
 * stored under kc_group_key(name). */

#define KC_GROUP_NAME_MAX 1024 /* bytes of a group's name */
#define KC_GROUP_FNAME_MAX 255 /* bytes of a file's name */
#define KC_GROUP_FILES_MAX 4096

typedef struct kc_group_entry {
    /* 1..KC_GROUP_FNAME_MAX bytes, no '/', not "." or "..". */
    const char *name;
    kc_key_t blob; /* the blob key of the file's bytes */
    uint64_t size; /* the file's size, bytes */
} kc_group_entry_t;

typedef struct kc_group_rec {
    const char *name; /* 1..KC_GROUP_NAME_MAX bytes */
    uint64_t created; /* unix seconds: the group's first put */
    uint64_t updated; /* unix seconds: its last put */
    /* Sorted by name (bytewise, unsigned), each name once; at most
     * KC_GROUP_FILES_MAX. */
    const kc_group_entry_t *files;
    size_t n_files;
} kc_group_rec_t;

typedef struct kc_record {
    kc_rec_kind_t kind;
    uint8_t version;
    union {
        kc_blob_rec_t blob;
        kc_build_rec_t build;
        kc_tuning_rec_t tuning;
        kc_usage_rec_t usage;
        kc_lease_rec_t lease;
        kc_meta_rec_t meta;
        kc_binmeta_rec_t binmeta;
        kc_group_rec_t group;
    } u;
} kc_record_t;

/* Encode rec into a new malloc'd buffer (free with kc_free). KC_EINVAL for a
 * NULL string, an unknown kind, a field too long for its length prefix, or
 * a field the decoder would refuse (docs/FORMAT.md). */
KC_API int kc_record_encode(const kc_record_t *rec, void **out, size_t *out_len);

/* Check the header and checksum without decoding the payload. On success
 * *kind and *version (either may be NULL) describe the record. */
KC_API int kc_record_check(const void *data, size_t len, int *kind, int *version);

/* Decode a record. *out is one allocation that holds the struct, a copy of
 * the payload and every array and string the struct points to; free it with
 * kc_free. The input is not referenced after the call. */
KC_API int kc_record_decode(const void *data, size_t len, kc_record_t **out);

/* The key a record must be stored under, where the record determines it:
 * XXH3-128 of the preimage for builds and tunings, the build key it
 * carries for binmeta, kc_group_key of its name for a group. KC_EINVAL for
 * other kinds (blob keys hash the
 * decompressed bytes: see kcache/blob.h). */
KC_API int kc_record_derived_key(const kc_record_t *rec, kc_key_t *out);

#ifdef __cplusplus
}
#endif
#endif
