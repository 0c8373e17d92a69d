/* What cachectl export and import share: bundle summaries and key files. */
#ifndef CACHECTL_BUNDLE_UTIL_H
#define CACHECTL_BUNDLE_UTIL_H

#include "cachectl.h"

#include "kcache/bundle.h"

/* A bundle's record counts and sizes as a JSON object. */
json_t *ctl_bundle_stats_json(const kc_bundle_stats_t *s);
/* one if n is 1, else many. */
const char *ctl_plural(uint64_t n, const char *one, const char *many);
/* What a key file must hold for ctl_load_key. */
enum { CTL_KEY_PUBLIC, CTL_KEY_SECRET };
/* Load a key file for option opt of command cmd, saying clearly why it
 * cannot be used: need is CTL_KEY_SECRET for signing, CTL_KEY_PUBLIC for
 * a trusted key (a secret key file is refused there: it must not travel to
 * where bundles are checked). Returns 0 when *key is loaded, else -1 (the
 * reason is printed; *key is wiped). */
int ctl_load_key(const char *cmd, const char *opt, const char *path, int need,
                 kc_bundle_key_t *key);
/* Who signed the bundle, as JSON (null when unsigned). */
json_t *ctl_signer_json(const kc_bundle_stats_t *s);

#endif
