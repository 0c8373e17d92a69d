/* What export and import share: bundle summaries and key files. */
#include "bundle_util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "kcache/bundle.h"

json_t *ctl_bundle_stats_json(const kc_bundle_stats_t *s)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "records", ctl_json_u64(s->records));
    json_object_set_new(doc, "blobs", ctl_json_u64(s->blobs));
    json_object_set_new(doc, "builds", ctl_json_u64(s->builds));
    json_object_set_new(doc, "tunings", ctl_json_u64(s->tunings));
    json_object_set_new(doc, "dictionaries", ctl_json_u64(s->dicts));
    json_object_set_new(doc, "groups", ctl_json_u64(s->groups));
    json_object_set_new(doc, "bytes", ctl_json_u64(s->bytes));
    return doc;
}

const char *ctl_plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* Load a key file for option opt, saying clearly why it cannot be used. */
int ctl_load_key(const char *cmd, const char *opt, const char *path, int need,
                 kc_bundle_key_t *key)
{
    int rc = kc_bundle_key_load(path, key);

    /* KC_EPERM: a secret key, open to others too. */
    if (need == CTL_KEY_PUBLIC && (rc == KC_EPERM || (rc == KC_OK && key->has_secret))) {
        kc_bundle_key_wipe(key);
        ctl_err("%s: %s %s is a SECRET key; trust takes the public key, NAME.pub, "
                "which 'cachectl keygen -o NAME' wrote beside NAME.key (keep the "
                "secret key where bundles are signed, never where they are checked)",
                cmd, opt, path);
        return -1;
    }
    switch (rc) {
    case KC_OK:
        if (need == CTL_KEY_SECRET && !key->has_secret) {
            ctl_err("%s: %s %s holds a public key; signing needs the secret key "
                    "(NAME.key)",
                    cmd, opt, path);
            return -1;
        }
        return 0;
    case KC_EIO:
        ctl_err("%s: cannot read key file %s: %s", cmd, path, strerror(errno));
        break;
    case KC_EPERM:
        ctl_err("%s: secret key file %s is open to group or others; chmod 600 it", cmd,
                path);
        break;
    case KC_ECORRUPT:
        ctl_err("%s: %s is not a kcache key file (one line, 'kcache-ed25519-secret-v1 "
                "...' or 'kcache-ed25519-public-v1 ...')",
                cmd, path);
        break;
    default:
        ctl_err("%s: cannot load key file %s: %s", cmd, path, kc_strerror(rc));
    }
    return -1;
}

json_t *ctl_signer_json(const kc_bundle_stats_t *s)
{
    char id[KC_BUNDLE_KEY_ID_LEN + 1];
    if (!s->is_signed)
        return json_null();
    kc_bundle_key_id(s->signer, id);
    return json_string(id);
}
