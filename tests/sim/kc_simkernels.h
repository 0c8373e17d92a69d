/* Kernels and fixtures shared by the launcher tests on the simulation
 * device: CUDA C sources for NVRTC, the C functions the sim runs in their
 * place (they really compute, so results can be checked element by
 * element), cost models, argument specs, vector arguments, and a fixture
 * holding a scratch store directory, a sim and a launcher.
 *
 * Defined once in kc_simkernels.c, the test library kc_test_sim (it needs
 * the launcher and cmocka; the support library kc_test_support links the
 * store only). Only the launcher tests link it.
 */
#ifndef KC_TEST_KC_SIMKERNELS_H
#define KC_TEST_KC_SIMKERNELS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/sim.h"

/* ---- kernels: CUDA C for NVRTC, C functions for the sim ----------------- */

extern const char kcs_vadd_src[];

extern const char kcs_inc_src[];

extern const kc_arg_spec_t kcs_vadd_args[];
extern const kc_arg_spec_t kcs_inc_args[];

#define KCS_PARAM_PTR(p) ((void *)(uintptr_t) * (const uint64_t *)(p))
#define KCS_PARAM_I32(p) (*(const int32_t *)(p))

/* What the sim functions do besides computing, per test: their user
 * pointer, or NULL to always compute. */
typedef struct kcs_behaviour {
    unsigned fail_block;   /* launches with this block size report a failure */
    unsigned sticky_block; /* ... or an illegal address */
} kcs_behaviour_t;

void kcs_for_each_thread(const kc_sim_launch_t *l, int n,
                         void (*body)(int, void *const *), void *const *params);

void kcs_vadd_body(int i, void *const *p);

void kcs_inc_body(int i, void *const *p);

int kcs_check_behaviour(void *user, const kc_sim_launch_t *l);

/* vadd(a, b, out, n); user is a kcs_behaviour_t or NULL. */
int kcs_sim_vadd(void *user, const kc_sim_launch_t *l);

/* inc(x, n); user is a kcs_behaviour_t or NULL. */
int kcs_sim_inc(void *user, const kc_sim_launch_t *l);

/* BLOCK = 256 is fastest; the rest are slower by their distance from it. */
uint64_t kcs_cost_256(void *user, const kc_sim_launch_t *l);

/* The smallest block is fastest. */
uint64_t kcs_cost_linear(void *user, const kc_sim_launch_t *l);

/* ---- vadd's arguments ------------------------------------------------------ */

/* 64-byte aligned floats, so every buffer has the same signature. */
float *kcs_falloc(size_t bytes);

/* a[i] = i, b[i] = 2i + 1, out[i] = -1: vadd makes out[i] = 3i + 1. */
typedef struct kcs_vecs {
    int n;
    int64_t dims[1];
    float *a, *b, *out;
    kc_arg_t args[4];
} kcs_vecs_t;

/* Returns 0, or -1 if out of memory. Asserts nothing, so that child
 * processes can use it. */
int kcs_vecs_try_init(kcs_vecs_t *v, int n);

void kcs_vecs_init(kcs_vecs_t *v, int n);

/* The first index whose out is not 3i + 1, or -1 if all are. */
int kcs_vecs_first_wrong(const kcs_vecs_t *v);

int kcs_vecs_ok(const kcs_vecs_t *v);

void kcs_vecs_check(const kcs_vecs_t *v);

void kcs_vecs_free(kcs_vecs_t *v);

/* ---- inc as a whole process would run it ----------------------------------- */

/* One-parameter (BLOCK) specs of the kernels above, grid cdiv(n, BLOCK):
 * vadd(a, b, out, n), and inc(x, n) or another kernel of inc's arguments
 * (source src, entry entry). */
kc_kernel_spec_t kcs_vadd_spec(const char *name, const kc_param_spec_t *params);

kc_kernel_spec_t kcs_inc_like_spec(const char *name, const char *src, const char *entry,
                                   const kc_param_spec_t *params);

kc_kernel_spec_t kcs_inc_spec(const char *name, const kc_param_spec_t *params);

typedef struct kcs_inc_run {
    int rc;               /* of kc_kernel_launch (-1: no launcher) */
    int wait_rc;          /* of kc_kernel_wait_compiled after it */
    char errmsg[1024];    /* kc_launcher_errmsg after the launch */
    int all_ones;         /* every x[i] became 1 */
    kc_kernel_stats_t st; /* the launcher's totals */
} kcs_inc_run_t;

/* One launch of inc on n zeros through a new sim and launcher on store_dir
 * (a directory or a layer list), as a fresh process would do it. Asserts
 * nothing, so that child processes can use it. */
kcs_inc_run_t kcs_run_inc(const char *store_dir, const char *name,
                          const kc_param_spec_t *params, int n);

/* ---- fixture: a store directory, a sim and a launcher on it --------------- */

typedef struct kcs_fx {
    char dir[512];
    kc_sim_t *sim;
    kc_launcher_t *l;
    kcs_behaviour_t bh;
    char log[4096];
    int with_inc; /* register inc and flaky (inc's C function) beside vadd */
} kcs_fx_t;

void kcs_capture_log(void *user, kc_log_level_t level, const char *msg);

/* A new sim (a new process): the fixture's launcher, if any, is destroyed
 * first, since it uses the old one. */
void kcs_new_sim(kcs_fx_t *f, const kc_sim_opts_t *opts);

kc_launcher_opts_t kcs_sim_opts(kcs_fx_t *f);

void kcs_new_launcher(kcs_fx_t *f);

/* A cmocka setup: a scratch directory tag.XXXXXX, a sim with vadd (and, with
 * with_inc, inc and flaky) and a launcher, into *state. */
int kcs_fx_setup(void **state, const char *tag, int with_inc);

int kcs_fx_teardown(void **state);

#endif
