/* KC__COLD marks a function off the common path (a damaged or read-only
 * store, a first creation): the compiler keeps it out of line, so that the
 * path-sized buffers on its stack are not part of its caller's frame on
 * every call. A process's first store open touches each new stack page it
 * reaches, and each is a page fault (microseconds on a virtual machine):
 * with these buffers inlined, an open reached 48 KB of stack. Internal. */
#ifndef KCACHE_COMMON_COLD_H
#define KCACHE_COMMON_COLD_H

#define KC__COLD __attribute__((noinline, cold))

#endif
