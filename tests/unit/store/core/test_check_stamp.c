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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_an_unwritable_store_keeps_its_stamp_in_the_users_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
