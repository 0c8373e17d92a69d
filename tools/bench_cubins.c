#include "bench_cubins.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int bench_load_cubins(const char *dir, cubin_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;

    *out = NULL;
    *n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 64)
            continue;
        if (*n == cap) {
            cubin_t *grown = realloc(*out, (cap ? cap * 2 : 16) * sizeof(**out));
            if (!grown)
                break;
            *out = grown;
            cap = cap ? cap * 2 : 16;
        }
        cubin_t *c = &(*out)[*n];
        c->len = (size_t)st.st_size;
        c->data = malloc(c->len);
        f = fopen(path, "rb");
        if (!c->data || !f || fread(c->data, 1, c->len, f) != c->len) {
            if (f)
                fclose(f);
            free(c->data);
            continue;
        }
        fclose(f);
        (*n)++;
    }
    closedir(d);
    return *n ? 0 : -1;
}
