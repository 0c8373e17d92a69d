/* KC_API marks the functions of kcache's public API.
 *
 * The libraries are built with hidden visibility by default
 * (-fvisibility=hidden), so that libkcache.so exports these functions and
 * nothing else: the kc__ internals and whatever the libraries link stay
 * private. Every function declared in a public header (kcache/<name>.h)
 * carries KC_API; a test (lint label) checks that libkcache.so exports only
 * kc_ names.
 *
 * Define KC_API before including a kcache header to override it (an empty
 * definition for a build that wants no visibility attribute).
 *
 * Options structs (kc_store_opts_t, kc_gc_opts_t, kc_bundle_import_opts_t,
 * kc_remote_opts_t, kc_launcher_opts_t, kc_sim_opts_t) can grow without
 * breaking programs built against an older kcache, as SQLite's and LMDB's
 * settings do. Each begins with a size_t `size` that the caller sets to the
 * sizeof of the struct it was compiled with; each has an initializer that
 * sets it and leaves every option at its default:
 *
 *     kc_store_opts_t o = KC_STORE_OPTS_INIT;
 *     o.flags = KC_STORE_RDONLY;
 *     rc = kc_store_open(dir, &o, &st);
 *
 * (or memset the struct to 0 and set size; with a designated initializer,
 * {.size = sizeof(kc_store_opts_t), .flags = ...}). The library reads only
 * the fields that lie within size: a field added in a later version, which
 * an older program does not know, keeps its default. New fields are only
 * ever appended. A size of 0 (never set) or larger than the library's own
 * struct (a program built against a newer kcache than the one it loaded)
 * is refused with KC_EINVAL. Where a call accepts a NULL options pointer,
 * NULL means every default.
 */
#ifndef KCACHE_API_H
#define KCACHE_API_H

#ifndef KC_API
#if defined(__GNUC__) || defined(__clang__)
#define KC_API __attribute__((visibility("default")))
#else
#define KC_API
#endif
#endif

#endif
