/* Fuzz the store-file checker (store/src/core/lmdb_check.c). Each input is
 * a whole data.mdb. The checker must not crash on it; and when it accepts
 * the input, the input is written to a scratch directory as data.mdb and
 * LMDB itself (through its map, trusting every byte) opens it and reads
 * every record of every database, then commits one write (which reads the
 * free lists). Any crash, assertion or hang there is a file the checker
 * should have refused. The scan `cachectl recover` uses runs on every
 * input too. */
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kcache/errors.h"
#include "lmdb_check.h"

static char dir[256];
static char path[300];

static void cleanup(void)
{
    char p[320];
    snprintf(p, sizeof(p), "%s/lock.mdb", dir);
    unlink(p);
    unlink(path);
    rmdir(dir);
}

static int scan_fn(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                   int db, void *ctx)
{
    uint64_t *sum = ctx;
    *sum += (uint64_t)db;
    for (size_t i = 0; i < klen; i++)
        *sum += key[i];
    for (size_t i = 0; i < vlen; i++)
        *sum += val[i];
    return 0;
}

static void read_db(MDB_txn *txn, MDB_dbi dbi, uint64_t *sum)
{
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(txn, dbi, &c) != 0)
        return;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        for (size_t i = 0; i < k.mv_size; i++)
            *sum += ((const uint8_t *)k.mv_data)[i];
        for (size_t i = 0; i < v.mv_size; i++)
            *sum += ((const uint8_t *)v.mv_data)[i];
    }
    /* Backwards too: another path through the branch pages. */
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_LAST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_PREV))
        *sum += k.mv_size;
    mdb_cursor_close(c);
}

static void read_all(void)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t sum = 0;
    char names[16][64];
    int n = 0;

    if (mdb_env_create(&env) != 0)
        abort();
    mdb_env_set_maxdbs(env, 32);
    if (mdb_env_open(env, dir, MDB_NOSYNC, 0600) != 0)
        goto out;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
        goto out;
    read_db(txn, 1, &sum); /* the main database: 1 is MAIN_DBI */
    if (mdb_cursor_open(txn, 1, &c) == 0) {
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < 16;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size == 0 || k.mv_size >= sizeof(names[0]) ||
                memchr(k.mv_data, 0, k.mv_size))
                continue;
            memcpy(names[n], k.mv_data, k.mv_size);
            names[n++][k.mv_size] = '\0';
        }
        mdb_cursor_close(c);
    }
    for (int i = 0; i < n; i++) {
        MDB_dbi dbi;
        if (mdb_dbi_open(txn, names[i], 0, &dbi) == 0)
            read_db(txn, dbi, &sum);
    }
    mdb_txn_abort(txn);
    txn = NULL;
    /* A write: the writer reads the free lists to reuse pages. */
    if (mdb_txn_begin(env, NULL, 0, &txn) == 0) {
        MDB_dbi dbi;
        for (int i = 0; i < 4 && mdb_dbi_open(txn, NULL, 0, &dbi) == 0; i++) {
            char key[32];
            char val[600];
            memset(val, (int)i, sizeof(val));
            snprintf(key, sizeof(key), "fuzz-%d", i);
            k.mv_size = strlen(key);
            k.mv_data = key;
            v.mv_size = sizeof(val);
            v.mv_data = val;
            if (mdb_put(txn, dbi, &k, &v, 0) != 0)
                break;
        }
        if (mdb_txn_commit(txn) != 0)
            txn = NULL;
        txn = NULL;
    }
out:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    if (sum == 42)
        fprintf(stderr, " ");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc__mdb_check_t res;
    uint64_t sum = 0, pages;
    int fd;

    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof(dir), "%s/fuzz_store_file.XXXXXX", base);
        if (!mkdtemp(dir))
            abort();
        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        atexit(cleanup);
    }
    if (size > (64u << 20))
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    kc__mdb_scan(fd, size, scan_fn, &sum, &pages);
    close(fd);
    if (kc__mdb_check_mem(data, size, &res) != KC_OK || size == 0)
        return 0;
    {
        char p[320];
        snprintf(p, sizeof(p), "%s/lock.mdb", dir);
        unlink(p);
    }
    read_all();
    return 0;
}
