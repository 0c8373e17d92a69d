/* The structure check's stamp: a store the process cannot write beside
 * keeps its stamp under the user's cache directory, so only the first open
 * of that file pays the walk; a damaged file is refused all the same. Run
 * as root, the unwritable store is made so by opening it as another user
 * (nobody) in a child process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"
#include "lmdb_check.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_check_stamp");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

/* Files in dir (0 if it does not exist). */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* In a child running as nobody with HOME=home: open root read-only; the
 * open's result code is the exit status (0 for KC_OK, 1 for
 * KC_EDAMAGED, 2 otherwise, 3 when the child could not become nobody). */
static int open_as_nobody(const char *root, const char *home)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        setenv("HOME", home, 1);
        unsetenv("XDG_CACHE_HOME");
        kc_store_opts_t o = KC_STORE_OPTS_INIT;
        o.flags |= KC_STORE_RDONLY;
        kc_store_t *st = NULL;
        int rc = kc_store_open(root, &o, &st);
        kc_store_close(st);
        _exit(rc == KC_OK ? 0 : rc == KC_EDAMAGED ? 1 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_an_unwritable_store_keeps_its_stamp_in_the_users_cache(void **state)
{
    fixture_t *f = *state;
    char home[600], stamps[700], data[600], beside[640];

    if (geteuid() != 0)
        skip(); /* needs to become another user */
    kct_pub_t p;
    assert_int_equal(kct_pub_make(&p, 1, 2), KC_OK);
    assert_int_equal(kc_store_publish(f->st, &p.pub), KC_OK);
    kct_pub_free(&p);
    kc_store_close(f->st);
    f->st = NULL;
    snprintf(data, sizeof(data), "%s/data.mdb", f->root);
    snprintf(beside, sizeof(beside), "%s/data.mdb.checked", f->root);
    unlink(beside); /* as if copied into an image: never checked here */
    /* The store is readable by all, writable by root only. */
    assert_int_equal(chmod(f->root, 0755), 0);
    assert_int_equal(chmod(data, 0644), 0);
    snprintf(home, sizeof(home), "%s.home", f->root);
    assert_int_equal(mkdir(home, 0755), 0);
    assert_int_equal(chown(home, 65534, 65534), 0);
    snprintf(stamps, sizeof(stamps), "%s/.cache/kcache-checked", home);

    int rc = open_as_nobody(f->root, home);
    if (rc == 3)
        skip();
    assert_int_equal(rc, 0);
    assert_int_equal(access(beside, F_OK), -1); /* nothing written beside it */
    assert_int_equal(count_files(stamps), 1);   /* but a stamp in the cache */
    assert_int_equal(open_as_nobody(f->root, home), 0);
    assert_int_equal(count_files(stamps), 1);

    /* The file changes (cut one page short, as an interrupted copy): the
     * stamp no longer matches, and the open is refused. */
    struct stat sb;
    assert_int_equal(stat(data, &sb), 0);
    assert_int_equal(truncate(data, sb.st_size - 4096), 0);
    assert_int_equal(open_as_nobody(f->root, home), 1);
    kct_rmtree(home, 0);
}

/* ---- the structure check: free lists keyed outside the store's txnids --- */

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* A free list keyed 0 (LMDB's "none yet": its writer takes the list again
 * and again and aborts on a page it dirtied twice, found by
 * fuzz_store_file) or by a transaction after the store's is damage: the
 * check refuses the file before LMDB maps it. */
static void test_a_free_list_keyed_outside_the_stores_transactions_is_damage(void **state)
{
    fixture_t *f = *state;
    char path[600];
    kc_key_t k[8];
    kc__mdb_check_t res;

    for (int i = 0; i < 8; i++) {
        char data[64];
        snprintf(data, sizeof(data), "cubin %d", i);
        assert_int_equal(kc_store_put_cubin(f->st, data, strlen(data), &k[i]), KC_OK);
    }
    for (int i = 0; i < 4; i++) /* the next writes free pages */
        assert_int_equal(kc_store_del(f->st, KC_REC_BLOB, &k[i]), KC_OK);
    kc_store_close(f->st);
    f->st = NULL;
    snprintf(path, sizeof(path), "%s/data.mdb", f->root);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    size_t size = (size_t)ftell(fp);
    uint8_t *d = malloc(size);
    assert_non_null(d);
    rewind(fp);
    assert_int_equal(fread(d, 1, size, fp), size);
    fclose(fp);
    assert_int_equal(kc__mdb_check_mem(d, size, &res), KC_OK);

    /* The newer meta page (a header of 16 bytes, then magic, version,
     * address, map size; the free database's record, whose first 4 bytes
     * hold the page size and whose root is at 40; last page, txnid). */
    const uint8_t *m0 = d + 16, *m1 = d + 4096 + 16;
    const uint8_t *m = u64_at(m0 + 128) > u64_at(m1 + 128) ? m0 : m1;
    uint32_t psize;
    memcpy(&psize, m + 24, sizeof(psize));
    uint64_t txnid = u64_at(m + 128), root = u64_at(m + 24 + 40);
    assert_true(root != UINT64_MAX && (root + 1) * psize <= size);
    uint8_t *leaf = d + root * psize;
    uint16_t flags, first;
    memcpy(&flags, leaf + 10, sizeof(flags));
    assert_true(flags & 0x02); /* a leaf: the free tree is one page here */
    memcpy(&first, leaf + 16, sizeof(first));
    uint8_t *key = leaf + first + 8;
    uint64_t keys[2] = {0, txnid + 1};
    for (int i = 0; i < 2; i++) {
        memcpy(key, &keys[i], sizeof(keys[i]));
        assert_int_equal(kc__mdb_check_mem(d, size, &res), KC_EDAMAGED);
        assert_non_null(strstr(res.why, "free pages"));
    }
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_an_unwritable_store_keeps_its_stamp_in_the_users_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_free_list_keyed_outside_the_stores_transactions_is_damage, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
