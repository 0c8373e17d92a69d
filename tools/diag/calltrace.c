/* libkcache_calltrace.so: a diagnostic for machines without strace or perf
 * (the GPU host). Preloaded into a program (LD_PRELOAD), it times every call
 * the program makes to the functions below (file and memory system calls,
 * LMDB, zstd, jansson, pthread_create, dlopen) and writes, at exit, one line
 * per call to stderr: "SHIM <start, monotonic us> <duration us> <function>
 * <argument>". kc_run_spec prints its first call's start on the same clock
 * (t0_monotonic_us), so the calls of each part can be picked out.
 * BENCHMARKS.md, "Where a first call goes", was read this way. Not
 * installed; not part of the library. Keeps the first 4,096 calls. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    double t, d;
    const char *name;
    char arg[48];
} ent_t;
static ent_t ents[4096];
static int n_ents;
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static void rec(const char *name, double t, const char *arg)
{
    if (n_ents < 4096) {
        ents[n_ents].t = t;
        ents[n_ents].d = now() - t;
        ents[n_ents].name = name;
        snprintf(ents[n_ents].arg, 48, "%s", arg ? arg : "");
        n_ents++;
    }
}
__attribute__((destructor)) static void dump(void)
{
    for (int i = 0; i < n_ents; i++)
        fprintf(stderr, "SHIM %.1f %.1f %s %s\n", ents[i].t, ents[i].d, ents[i].name,
                ents[i].arg);
}
#define REAL(ret, name, ...)                                                             \
    static ret (*real_##name)(__VA_ARGS__);                                              \
    if (!real_##name)                                                                    \
    real_##name = dlsym(RTLD_NEXT, #name)

int open(const char *p, int f, ...)
{
    va_list ap;
    va_start(ap, f);
    int m = va_arg(ap, int);
    va_end(ap);
    REAL(int, open, const char *, int, ...);
    double t = now();
    int r = real_open(p, f, m);
    rec("open", t, p);
    return r;
}
int open64(const char *p, int f, ...)
{
    va_list ap;
    va_start(ap, f);
    int m = va_arg(ap, int);
    va_end(ap);
    REAL(int, open64, const char *, int, ...);
    double t = now();
    int r = real_open64(p, f, m);
    rec("open64", t, p);
    return r;
}
int close(int fd)
{
    REAL(int, close, int);
    double t = now();
    int r = real_close(fd);
    rec("close", t, 0);
    return r;
}
int stat(const char *p, struct stat *s)
{
    REAL(int, stat, const char *, struct stat *);
    double t = now();
    int r = real_stat(p, s);
    rec("stat", t, p);
    return r;
}
int fstat(int fd, struct stat *s)
{
    REAL(int, fstat, int, struct stat *);
    double t = now();
    int r = real_fstat(fd, s);
    rec("fstat", t, 0);
    return r;
}
int access(const char *p, int m)
{
    REAL(int, access, const char *, int);
    double t = now();
    int r = real_access(p, m);
    rec("access", t, p);
    return r;
}
int statfs(const char *p, struct statfs *s)
{
    REAL(int, statfs, const char *, struct statfs *);
    double t = now();
    int r = real_statfs(p, s);
    rec("statfs", t, p);
    return r;
}
int fstatfs(int fd, struct statfs *s)
{
    REAL(int, fstatfs, int, struct statfs *);
    double t = now();
    int r = real_fstatfs(fd, s);
    rec("fstatfs", t, 0);
    return r;
}
void *mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
    REAL(void *, mmap, void *, size_t, int, int, int, off_t);
    double t = now();
    void *r = real_mmap(a, l, p, f, fd, o);
    char b[48];
    snprintf(b, 48, "%zu fd=%d", l, fd);
    rec("mmap", t, b);
    return r;
}
void *mmap64(void *a, size_t l, int p, int f, int fd, off_t o)
{
    REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
    double t = now();
    void *r = real_mmap64(a, l, p, f, fd, o);
    char b[48];
    snprintf(b, 48, "%zu fd=%d", l, fd);
    rec("mmap64", t, b);
    return r;
}
int munmap(void *a, size_t l)
{
    REAL(int, munmap, void *, size_t);
    double t = now();
    int r = real_munmap(a, l);
    char b[48];
    snprintf(b, 48, "%zu", l);
    rec("munmap", t, b);
    return r;
}
int madvise(void *a, size_t l, int adv)
{
    REAL(int, madvise, void *, size_t, int);
    double t = now();
    int r = real_madvise(a, l, adv);
    char b[48];
    snprintf(b, 48, "%zu adv=%d", l, adv);
    rec("madvise", t, b);
    return r;
}
ssize_t pread(int fd, void *b, size_t n, off_t o)
{
    REAL(ssize_t, pread, int, void *, size_t, off_t);
    double t = now();
    ssize_t r = real_pread(fd, b, n, o);
    rec("pread", t, 0);
    return r;
}
ssize_t pread64(int fd, void *b, size_t n, off_t o)
{
    REAL(ssize_t, pread64, int, void *, size_t, off_t);
    double t = now();
    ssize_t r = real_pread64(fd, b, n, o);
    rec("pread64", t, 0);
    return r;
}
ssize_t read(int fd, void *b, size_t n)
{
    REAL(ssize_t, read, int, void *, size_t);
    double t = now();
    ssize_t r = real_read(fd, b, n);
    rec("read", t, 0);
    return r;
}
int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *a = va_arg(ap, void *);
    va_end(ap);
    REAL(int, fcntl, int, int, ...);
    double t = now();
    int r = real_fcntl(fd, cmd, a);
    char b[48];
    snprintf(b, 48, "cmd=%d", cmd);
    rec("fcntl", t, b);
    return r;
}
int pthread_create(pthread_t *th, const pthread_attr_t *at, void *(*fn)(void *),
                   void *arg)
{
    REAL(int, pthread_create, pthread_t *, const pthread_attr_t *, void *(*)(void *),
         void *);
    double t = now();
    int r = real_pthread_create(th, at, fn, arg);
    rec("pthread_create", t, 0);
    return r;
}
int mdb_env_create(void **e)
{
    REAL(int, mdb_env_create, void **);
    double t = now();
    int r = real_mdb_env_create(e);
    rec("mdb_env_create", t, 0);
    return r;
}
int mdb_env_open(void *e, const char *p, unsigned f, int m)
{
    REAL(int, mdb_env_open, void *, const char *, unsigned, int);
    double t = now();
    int r = real_mdb_env_open(e, p, f, m);
    rec("mdb_env_open", t, p);
    return r;
}
int mdb_txn_begin(void *e, void *p, unsigned f, void **x)
{
    REAL(int, mdb_txn_begin, void *, void *, unsigned, void **);
    double t = now();
    int r = real_mdb_txn_begin(e, p, f, x);
    rec("mdb_txn_begin", t, 0);
    return r;
}
int mdb_txn_commit(void *x)
{
    REAL(int, mdb_txn_commit, void *);
    double t = now();
    int r = real_mdb_txn_commit(x);
    rec("mdb_txn_commit", t, 0);
    return r;
}
void mdb_txn_abort(void *x)
{
    REAL(void, mdb_txn_abort, void *);
    double t = now();
    real_mdb_txn_abort(x);
    rec("mdb_txn_abort", t, 0);
}
int mdb_dbi_open(void *x, const char *n, unsigned f, unsigned *d)
{
    REAL(int, mdb_dbi_open, void *, const char *, unsigned, unsigned *);
    double t = now();
    int r = real_mdb_dbi_open(x, n, f, d);
    rec("mdb_dbi_open", t, n);
    return r;
}
int mdb_get(void *x, unsigned d, void *k, void *v)
{
    REAL(int, mdb_get, void *, unsigned, void *, void *);
    double t = now();
    int r = real_mdb_get(x, d, k, v);
    rec("mdb_get", t, 0);
    return r;
}
int mdb_reader_check(void *e, int *dead)
{
    REAL(int, mdb_reader_check, void *, int *);
    double t = now();
    int r = real_mdb_reader_check(e, dead);
    rec("mdb_reader_check", t, 0);
    return r;
}
int mdb_env_set_mapsize(void *e, size_t s)
{
    REAL(int, mdb_env_set_mapsize, void *, size_t);
    double t = now();
    int r = real_mdb_env_set_mapsize(e, s);
    rec("mdb_env_set_mapsize", t, 0);
    return r;
}
int mdb_env_info(void *e, void *s)
{
    REAL(int, mdb_env_info, void *, void *);
    double t = now();
    int r = real_mdb_env_info(e, s);
    rec("mdb_env_info", t, 0);
    return r;
}
int mdb_env_stat(void *e, void *s)
{
    REAL(int, mdb_env_stat, void *, void *);
    double t = now();
    int r = real_mdb_env_stat(e, s);
    rec("mdb_env_stat", t, 0);
    return r;
}
size_t ZSTD_decompressDCtx(void *c, void *d, size_t dc, const void *s, size_t sc)
{
    REAL(size_t, ZSTD_decompressDCtx, void *, void *, size_t, const void *, size_t);
    double t = now();
    size_t r = real_ZSTD_decompressDCtx(c, d, dc, s, sc);
    rec("ZSTD_decompressDCtx", t, 0);
    return r;
}
void *ZSTD_createDCtx(void)
{
    REAL(void *, ZSTD_createDCtx, void);
    double t = now();
    void *r = real_ZSTD_createDCtx();
    rec("ZSTD_createDCtx", t, 0);
    return r;
}
void *json_loadb(const char *b, size_t n, size_t f, void *e)
{
    REAL(void *, json_loadb, const char *, size_t, size_t, void *);
    double t = now();
    void *r = real_json_loadb(b, n, f, e);
    rec("json_loadb", t, 0);
    return r;
}
void *json_load_file(const char *p, size_t f, void *e)
{
    REAL(void *, json_load_file, const char *, size_t, void *);
    double t = now();
    void *r = real_json_load_file(p, f, e);
    rec("json_load_file", t, p);
    return r;
}
void *dlopen(const char *p, int f)
{
    REAL(void *, dlopen, const char *, int);
    double t = now();
    void *r = real_dlopen(p, f);
    rec("dlopen", t, p);
    return r;
}
