/* The kcache launcher: compile on a miss, autotune on real inputs, publish,
 * and launch hits at the cost of cuLaunchKernel.
 *
 * A program registers a kernel once (kc_kernel_get) with its source, entry,
 * tuning space, argument descriptors and launch-geometry expressions, then
 * calls kc_kernel_launch with real arguments. The first call for a shape
 * signature looks the tuning up in the store; on a miss it compiles every
 * candidate (in parallel, reusing stored builds), times each on the real
 * arguments, publishes builds and tuning in one transaction, and launches
 * the winner. Later calls with the same signature hit an in-process memo and
 * only evaluate the geometry and launch.
 *
 * Threads: a launcher and its kernels may be used from many threads. A
 * launcher serves one CUDA context (see kc_launcher_opts_t.device).
 * The launch hot path allocates nothing and takes no lock that a reader
 * waits on.
 */
#ifndef KCACHE_LAUNCH_H
#define KCACHE_LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/shape.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_launcher kc_launcher_t;
typedef struct kc_kernel kc_kernel_t;
typedef struct kc_sim kc_sim_t; /* kcache/sim.h */

typedef enum kc_device_kind {
    /* The CUDA driver, loaded with dlopen("libcuda.so.1"). The launcher uses
     * the context current on the creating thread if there is one, else the
     * primary context of device `ordinal`, which it retains. */
    KC_DEVICE_CUDA = 0,
    /* The CPU simulation device of kcache/sim.h (tests, CI). */
    KC_DEVICE_SIM = 1,
    /* No device: kernels compile and publish builds, launches fail with
     * KC_ENODEVICE. Needs arch. */
    KC_DEVICE_NONE = 2,
} kc_device_kind_t;

typedef enum kc_log_level {
    KC_LOG_ERROR = 0,
    KC_LOG_WARN = 1,
    KC_LOG_INFO = 2,
    KC_LOG_DEBUG = 3,
} kc_log_level_t;

typedef void (*kc_log_fn)(void *user, kc_log_level_t level, const char *msg);

/* What a launch does when another process holds the lease on the tuning it
 * misses (it is compiling and tuning the same kernel for the same shape
 * signature and device class). */
typedef enum kc_contention {
    /* Poll the store (backing off from 1 to 50 ms) until the tuning appears
     * (then it is a store hit), the lease dies (then take it over and
     * tune), or lease_wait_ms passes (then launch untuned, as below). */
    KC_CONTENTION_WAIT = 0,
    /* Launch at once the first candidate, in spec order, that compiled:
     * no tuning, nothing published and nothing memoized, so that a later
     * launch of the signature looks in the store again. */
    KC_CONTENTION_UNTUNED = 1,
} kc_contention_t;

typedef struct kc_launcher_opts {
    /* sizeof(kc_launcher_opts_t), as KC_LAUNCHER_OPTS_INIT sets it (kcache/api.h,
     * "Options structs"): fields past it read as their defaults. */
    size_t size;
    kc_device_kind_t device;
    int ordinal;      /* CUDA device ordinal when no context is current */
    kc_sim_t *sim;    /* required for KC_DEVICE_SIM; borrowed */
    const char *arch; /* target arch override ("sm_90"); required for NONE */

    /* The store: a handle (borrowed, must outlive the launcher), or a
     * directory or colon-separated list of directories searched in order
     * (kcache/layers.h), or neither: then the layers of KCACHE_PATH, else
     * KCACHE_DIR, else $XDG_CACHE_HOME/kcache, else $HOME/.cache/kcache.
     * Publishes go to the first writable layer; a winner found in a lower
     * layer is copied up with a new tuning that names it. Set no_store to
     * run without one: every process then compiles and tunes again. */
    kc_store_t *store;
    const char *store_dir;
    int no_store;

    /* The compile pool's size (0: the CPUs this process may run on, its
     * affinity, at most 16). Its threads start when compiles need them, not
     * in kc_launcher_create. */
    unsigned compile_threads;

    /* Tuning: each candidate runs `warmup` times, then is timed until
     * `budget_ms` of GPU time is spent, at least min_reps and at most
     * max_reps runs; the median is kept. 0 picks the default (warmup 2,
     * budget 25 ms, min 5, max 200). */
    unsigned warmup;
    double budget_ms;
    unsigned min_reps;
    unsigned max_reps;
    /* Flush L2 before each timed run (default on; set 1 to disable). */
    int no_l2_flush;
    /* kc_kernel_get loads, on the thread pool, the modules of the configs
     * that won for this kernel on this device class before (at most 16), so
     * that the first launch of a stored signature needs no decompress and
     * no module load. Set 1 to load each winner only when a launch needs
     * it. The launcher's first prefetch reads every stored tuning once and
     * files the winners by kernel; later registrations look theirs up, and
     * tunings stored after that read (by other processes) are loaded by
     * their first launch instead. A launch waits for the prefetch only if
     * the prefetch is loading the very build it needs. */
    int no_prefetch;
    /* The launcher's first kc_kernel_get warms the store's read path on
     * the thread pool (kc_store_warm: a first transaction, the B-trees'
     * upper pages, a used decompression context), so that the process's
     * first store hit does not pay those first-use costs. Set 1 to skip it
     * (benchmarks). */
    int no_warmup;

    /* The remote tier (kcache/remote.h): one URL or several (sharded),
     * "redis://[[user]:password@]host:port[/db]" or "unix:/path", else
     * KCACHE_REMOTE, else none; no_remote ignores both. A local miss asks
     * it for the tuning, its build and cubin, verifies them (signatures
     * too, with KCACHE_TRUST) and publishes them into the writable layer;
     * a miss there takes the tuning's lease in Redis, so that one machine
     * tunes while the others wait for its tuning (contention, lease_ttl_ms,
     * lease_wait_ms apply). Every publish, builds without a tuning
     * included, is copied to it by a pool task (a bounded queue,
     * KCACHE_REMOTE_QUEUE). It fails open: a remote that is down or slow
     * costs at most one connect or I/O timeout, then is left alone for a
     * while (see kc_remote_opts_t), and never fails a launch. Without a
     * writable layer the remote is not used. */
    const char *remote_url;
    int no_remote;

    kc_log_fn log;
    void *log_user;
    kc_log_level_t log_level; /* messages above it are dropped */

    /* Single flight across processes sharing a writable store (see
     * kc_store_lease_acquire). A miss takes the lease on its tuning key
     * before it tunes; a candidate whose build is not stored takes the
     * lease on its build key before it compiles, and a process that finds
     * a build's lease held waits for the build to be published (bounded by
     * lease_wait_ms; a dead holder's lease is taken over). Leases are
     * released once what they cover is published, on failure, and at
     * kc_launcher_destroy. A holder renews its tuning lease when its
     * compiles are done, so lease_ttl_ms should exceed the longest tuning
     * run; an expired lease only costs duplicated work. With a device,
     * builds are published with the tuning (or, earlier, when this process
     * itself waits for another's builds or tuning), so a process waiting
     * for a build may wait until its holder has tuned; a holder that
     * registers a kernel and launches it only much later can stall such a
     * waiter up to lease_wait_ms. Leases identify processes, not
     * launchers: two launchers of one process do not exclude each other
     * (within one launcher, threads already resolve a miss once). */
    kc_contention_t contention;
    uint64_t lease_ttl_ms;  /* 0: 60000 */
    uint64_t lease_wait_ms; /* 0: 30000 */

    /* The most modules loaded from the store that stay loaded at once: a
     * fixed bound; KC_MODULES_UNBOUNDED: none; 0: KCACHE_MAX_MODULES if it
     * is a number (0 there: none), else the automatic bound, which starts
     * at KC_MODULES_AUTO_START and doubles, up to KC_MODULES_AUTO_MAX,
     * each time the modules launched again after their unload (since it
     * last changed) reach an eighth of it. The driver's cuModuleLoadData
     * gets slower with every module a context holds (on driver 580 a new
     * kernel's store hit costs 13x more at 16,384 loaded modules than at
     * the first; BENCHMARKS.md), so past the bound a pool thread unloads
     * the least recently launched ones (a clock), and their next launch
     * loads them again from the store. An unload waits for launches of
     * that module in progress (they hold a pin) and, in the driver, for
     * its queued GPU work; it never runs on a launching thread. The bound
     * is soft: modules in use when the pool comes to them stay. Modules
     * whose build is not in the store (tuned with a read-only store or
     * none, untuned launches) stay loaded and are not counted. A process
     * that launches more distinct kernels in a loop than a fixed bound
     * loads some again on every round: the automatic bound grows there. */
    unsigned max_modules;
} kc_launcher_opts_t;

/* kc_launcher_opts_t.max_modules: no bound on loaded modules. */
#define KC_MODULES_UNBOUNDED 0xffffffffu
/* The automatic bound on loaded modules: where it starts, and the most it
 * grows to. */
#define KC_MODULES_AUTO_START 512u
#define KC_MODULES_AUTO_MAX 4096u

/* Every option (the CUDA device, the default store) at their defaults: kc_launcher_opts_t
 * o = KC_LAUNCHER_OPTS_INIT; then set fields. */
#define KC_LAUNCHER_OPTS_INIT                                                            \
    {                                                                                    \
        .size = sizeof(kc_launcher_opts_t)                                               \
    }

/* Create a launcher. opts may be NULL (every default); KC_EINVAL for an
 * opts->size of 0 or larger than this library's. With KC_DEVICE_CUDA and no driver on the
 * machine it returns KC_ENODEVICE and kc_launcher_create_errmsg() says so. Which
 * store is read here (the options, KCACHE_PATH, KCACHE_DIR, ... as they are
 * now), but it is opened at its first use: the first kc_kernel_get,
 * kc_kernel_load_file or kc_kernel_load_json, or kc_launcher_store (at once
 * with a remote tier). A store that cannot be opened is not fatal: the
 * launcher logs a warning then and runs without one (a cache must never fail
 * the user's work). */
KC_API int kc_launcher_create(const kc_launcher_opts_t *opts, kc_launcher_t **out);
/* Destroy the launcher, its kernels and their modules. Waits for background
 * compiles. Accepts NULL. */
KC_API void kc_launcher_destroy(kc_launcher_t *launcher);

/* Detail of the last failure of a call on this launcher or one of its
 * kernels in this thread (the NVRTC log, the CUresult name, the spec field
 * and position), or "" when this thread's last kcache failure belongs to
 * another object (messages are per thread and keyed by object, as for
 * kc_store_errmsg). Never NULL; valid until this thread's next kcache call. */
KC_API const char *kc_launcher_errmsg(const kc_launcher_t *launcher);
/* Why the last kc_launcher_create in this thread failed, likewise. */
KC_API const char *kc_launcher_create_errmsg(void);

/* The store the launcher publishes to, or NULL. Borrowed. Opens it if no
 * kernel has yet. */
KC_API kc_store_t *kc_launcher_store(const kc_launcher_t *launcher);
/* The device's target arch, e.g. "sm_90". */
KC_API const char *kc_launcher_arch(const kc_launcher_t *launcher);

/* ---- kernel specs ------------------------------------------------------ */

typedef enum kc_access {
    KC_ACCESS_IN = 1,
    KC_ACCESS_OUT = 2,
    KC_ACCESS_INOUT = 3,
} kc_access_t;

typedef struct kc_arg_spec {
    const char *name;
    kc_arg_kind_t kind; /* KC_ARG_POINTER or KC_ARG_SCALAR */
    kc_dtype_t dtype;   /* element type, or the scalar's type */
    kc_access_t access; /* pointers: written args are saved and restored while tuning */
    int is_key;         /* scalars: the value (not its class) enters the signature */
} kc_arg_spec_t;

typedef struct kc_param_spec {
    const char *name;
    const int64_t *values;
    size_t n_values;
} kc_param_spec_t;

/* A prebuilt candidate: a binary kcache did not compile (Triton's, imported
 * with `cachectl import-triton` or kc_triton_import), named by the key of
 * its build record, which must be in one of the launcher's store layers
 * with its launch metadata (a binmeta record), and the config values it was
 * built for (a Triton autotuner config's, e.g. XBLOCK=1024, num_warps=4).
 * Every candidate of a kernel names the same config parameters in the same
 * order; geometry expressions may read them. */
typedef struct kc_prebuilt {
    kc_key_t build;
    const kc_param_t *config;
    size_t n_config;
} kc_prebuilt_t;

/* A kernel. Strings are copied by kc_kernel_get.
 *
 * Geometry expressions are small integer expressions over the config
 * parameters, the scalar arguments and the dims of pointer arguments:
 * integers, names, + - * / % (C semantics on int64, division by zero is an
 * error at launch), unary -, parentheses, cdiv(a, b), min(a, b), max(a, b),
 * dim(arg, i) and numel(arg). grid[0] and block[0] are required; grid[1],
 * grid[2], block[1], block[2] default to "1" and shared to "0". The
 * constraint, if any, is an expression over parameters only; candidates for
 * which it is 0 are skipped. */
typedef struct kc_kernel_spec {
    const char *name; /* for messages, `cachectl why` and ls --name */
    kc_source_kind_t source_kind;
    const char *source;
    size_t source_len; /* 0: strlen(source) */
    const kc_header_t *headers;
    size_t n_headers;
    const char *entry; /* extern "C" name, or the mangled name */
    const char *const *options;
    size_t n_options;
    const kc_param_spec_t *params;
    size_t n_params;
    const char *constraint;
    const kc_arg_spec_t *args;
    size_t n_args;
    const char *grid[3];
    const char *block[3];
    const char *shared;
    kc_dims_policy_t dims_policy;
    /* source_kind KC_SOURCE_PREBUILT: the candidate binaries (1 to 4096),
     * in place of source, headers, entry, options, params and constraint.
     * Block and shared memory come from each binary's metadata (giving
     * them is an error), and the launch follows the binary's ABI (see
     * docs/SPEC.md, "Prebuilt kernels"): Triton's scratch arguments,
     * clusters, programmatic dependent launch, shared memory above 48 KiB,
     * and its specialization, checked against the arguments. */
    const kc_prebuilt_t *prebuilt;
    size_t n_prebuilt;
} kc_kernel_spec_t;

/* Register a kernel: validate the spec, parse its expressions, and start
 * compiling its candidates on the thread pool (the asynchronous compile at
 * load; stored builds are reused, not recompiled). Registering an identical
 * spec twice returns the same kernel. The kernel belongs to the launcher.
 * KC_ESPEC / KC_EEXPR with kc_launcher_errmsg naming the spec, the field and
 * the position. */
KC_API int kc_kernel_get(kc_launcher_t *launcher, const kc_kernel_spec_t *spec,
                         kc_kernel_t **out);

/* Load specs from a JSON spec file (docs/SPEC.md; the format `cachectl
 * populate` reads) and register each. *out receives a malloc'd array of
 * *n kernels (free the array with kc_free; the kernels belong to the
 * launcher). */
KC_API int kc_kernel_load_file(kc_launcher_t *launcher, const char *path,
                               kc_kernel_t ***out, size_t *n);

/* The same from a JSON document in memory (len bytes; bindings such as the
 * Python package pass a spec built as a dict). name is used in messages in
 * place of the file's name (NULL: "spec"); base_dir resolves source_file and
 * header files (NULL: such references are an error). */
KC_API int kc_kernel_load_json(kc_launcher_t *launcher, const char *json, size_t len,
                               const char *name, const char *base_dir, kc_kernel_t ***out,
                               size_t *n);

/* Look a kernel up by its spec name, e.g. after kc_kernel_load_file. */
KC_API int kc_kernel_find(kc_launcher_t *launcher, const char *name, kc_kernel_t **out);

/* ---- launching --------------------------------------------------------- */

/* One argument at launch, matching the spec's kc_arg_spec_t of the same
 * index. A pointer gives its device address, rank and dims (and strides in
 * elements, or NULL for contiguous row-major); a scalar gives its value in
 * the member that matches its dtype (i for signed and bool, u for unsigned,
 * f for floats). */
typedef struct kc_arg {
    uint64_t ptr;
    uint32_t rank;
    const int64_t *dims;
    const int64_t *strides;
    union {
        int64_t i;
        uint64_t u;
        double f;
    } value;
} kc_arg_t;

/* Launch on stream (a CUstream, or NULL for the default stream; ignored by
 * the simulation device). The first launch of a signature may compile and
 * tune (see the file comment); written arguments then hold the result of
 * exactly one launch. */
KC_API int kc_kernel_launch(kc_kernel_t *kernel, void *stream, const kc_arg_t *args,
                            size_t n_args);

/* Wait until the kernel's background work is done: the compiles started
 * at registration and the prefetch of stored winners. A prebuilt kernel's
 * candidates (build lookups, nothing to compile) are not started at
 * registration: this call starts them, as a launch that tunes does. */
KC_API int kc_kernel_wait_compiled(kc_kernel_t *kernel);

/* ---- introspection ----------------------------------------------------- */

typedef struct kc_kernel_stats {
    uint64_t launches;
    uint64_t memo_hits;
    uint64_t store_hits;    /* tunings found in the store */
    uint64_t tunes;         /* tunings run in this process */
    uint64_t compiles;      /* NVRTC / PTX JIT compiles run in this process (a
                             * candidate that found no NVRTC counts only in
                             * candidates_failed) */
    uint64_t builds_reused; /* candidates whose build came from the store */
    uint64_t candidates_failed;
    uint64_t publishes;
    uint64_t prefetched;  /* stored winners loaded at registration */
    uint64_t remote_hits; /* tunings pulled from the remote tier */
    uint64_t configs;     /* candidates in the tuning space (after the constraint) */
} kc_kernel_stats_t;

KC_API int kc_kernel_stats(const kc_kernel_t *kernel, kc_kernel_stats_t *out);
/* Sum over every kernel of the launcher. */
KC_API int kc_launcher_stats(const kc_launcher_t *launcher, kc_kernel_stats_t *out);

/* The kernel's spec name. Borrowed; valid while the launcher lives. */
KC_API const char *kc_kernel_name(const kc_kernel_t *kernel);

/* Candidate i (0 <= i < stats.configs, in spec order) once its compile is
 * done (after kc_kernel_wait_compiled): copies up to cap of its parameters
 * into out (names borrowed from the kernel), *n receives the count, and
 * *reason (may be NULL) receives NULL if it compiled or its build was
 * reused, else why it failed (borrowed; valid while the launcher lives).
 * Returns KC_OK, KC_EINVAL for a bad index or argument, or KC_EBUSY while
 * the kernel's compiles are still running (or, for a prebuilt kernel, not
 * started: see kc_kernel_wait_compiled). */
KC_API int kc_kernel_candidate(const kc_kernel_t *kernel, size_t i, kc_param_t *out,
                               size_t cap, size_t *n, const char **reason);

/* The config chosen for the last signature launched (for tests and tools):
 * copies up to cap parameters into out, *n receives the count. */
KC_API int kc_kernel_last_config(const kc_kernel_t *kernel, kc_param_t *out, size_t cap,
                                 size_t *n);

#ifdef __cplusplus
}
#endif
#endif
