/* dlsym of a CUDA driver entry point a tool cannot run without (the tools
 * open libcuda with dlopen, so that they build without a driver). */
#ifndef KCACHE_TOOLS_CUDA_SYM_H
#define KCACHE_TOOLS_CUDA_SYM_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

/* name in lib, or a message naming tool and the symbol, then exit(code). */
static inline void *kc_tool_cu_sym(void *lib, const char *tool, const char *name,
                                   int code)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "%s: libcuda lacks %s\n", tool, name);
        exit(code);
    }
    return p;
}

#endif
