/* Prints, as JSON, the size of every public struct that the Python package
 * mirrors with ctypes (python/kcache/_structs.py) and the offset of each of
 * its fields, so that python/tests/test_layout.py can catch a layout that
 * drifted from the headers. */
#include <stddef.h>
#include <stdio.h>

#include "kcache/bundle.h"
#include "kcache/key.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

static int first_struct = 1;
static int first_field;

static void begin(const char *name, size_t size)
{
    printf("%s\n  \"%s\": {\"sizeof\": %zu, \"fields\": {", first_struct ? "{" : ",",
           name, size);
    first_struct = 0;
    first_field = 1;
}

static void field(const char *name, size_t offset)
{
    printf("%s\"%s\": %zu", first_field ? "" : ", ", name, offset);
    first_field = 0;
}

static void end(void)
{
    printf("}}");
}

#define S(type) begin(#type, sizeof(type))
#define F(type, member) field(#member, offsetof(type, member))

int main(void)
{
    S(kc_key_t), F(kc_key_t, b), end();
    S(kc_buf_t), F(kc_buf_t, data), F(kc_buf_t, size), end();
    S(kc_key_prefix_t), F(kc_key_prefix_t, key), F(kc_key_prefix_t, nibbles), end();
    S(kc_param_t), F(kc_param_t, name), F(kc_param_t, value), end();
    S(kc_build_desc_t), F(kc_build_desc_t, source_kind),
        F(kc_build_desc_t, source_digest), F(kc_build_desc_t, entry),
        F(kc_build_desc_t, options), F(kc_build_desc_t, n_options),
        F(kc_build_desc_t, params), F(kc_build_desc_t, n_params),
        F(kc_build_desc_t, arch), F(kc_build_desc_t, toolchain), end();
    S(kc_tuning_desc_t), F(kc_tuning_desc_t, source_kind),
        F(kc_tuning_desc_t, source_digest), F(kc_tuning_desc_t, entry),
        F(kc_tuning_desc_t, options), F(kc_tuning_desc_t, n_options),
        F(kc_tuning_desc_t, space_digest), F(kc_tuning_desc_t, shape_sig),
        F(kc_tuning_desc_t, arch), F(kc_tuning_desc_t, sm_count),
        F(kc_tuning_desc_t, device_name), end();
    S(kc_blob_rec_t), F(kc_blob_rec_t, codec), F(kc_blob_rec_t, dict_id),
        F(kc_blob_rec_t, raw_size), F(kc_blob_rec_t, frame), end();
    S(kc_build_rec_t), F(kc_build_rec_t, preimage), F(kc_build_rec_t, blob),
        F(kc_build_rec_t, entry), F(kc_build_rec_t, registers),
        F(kc_build_rec_t, static_smem), F(kc_build_rec_t, max_threads),
        F(kc_build_rec_t, local_bytes), F(kc_build_rec_t, compile_us),
        F(kc_build_rec_t, created), end();
    S(kc_candidate_t), F(kc_candidate_t, params), F(kc_candidate_t, n_params),
        F(kc_candidate_t, build), F(kc_candidate_t, status), F(kc_candidate_t, median_ns),
        F(kc_candidate_t, reason), end();
    S(kc_tuning_rec_t), F(kc_tuning_rec_t, preimage), F(kc_tuning_rec_t, winner),
        F(kc_tuning_rec_t, n_winner), F(kc_tuning_rec_t, winner_build),
        F(kc_tuning_rec_t, candidates), F(kc_tuning_rec_t, n_candidates),
        F(kc_tuning_rec_t, tuning_us), F(kc_tuning_rec_t, device_name),
        F(kc_tuning_rec_t, arch), F(kc_tuning_rec_t, sm_count),
        F(kc_tuning_rec_t, driver_version), F(kc_tuning_rec_t, created), end();
    S(kc_usage_rec_t), F(kc_usage_rec_t, last_use), F(kc_usage_rec_t, uses), end();
    S(kc_lease_rec_t), F(kc_lease_rec_t, host), F(kc_lease_rec_t, boot_id),
        F(kc_lease_rec_t, pid), F(kc_lease_rec_t, start), F(kc_lease_rec_t, ttl_ms),
        end();
    S(kc_meta_rec_t), F(kc_meta_rec_t, value), end();
    S(kc_binmeta_spec_t), F(kc_binmeta_spec_t, arg), F(kc_binmeta_spec_t, prop), end();
    S(kc_binmeta_arg_t), F(kc_binmeta_arg_t, name), F(kc_binmeta_arg_t, type), end();
    S(kc_binmeta_rec_t), F(kc_binmeta_rec_t, build), F(kc_binmeta_rec_t, entry),
        F(kc_binmeta_rec_t, arch), F(kc_binmeta_rec_t, threads_per_block),
        F(kc_binmeta_rec_t, num_warps), F(kc_binmeta_rec_t, warp_size),
        F(kc_binmeta_rec_t, num_ctas), F(kc_binmeta_rec_t, dyn_smem),
        F(kc_binmeta_rec_t, global_scratch_size),
        F(kc_binmeta_rec_t, global_scratch_align),
        F(kc_binmeta_rec_t, profile_scratch_size),
        F(kc_binmeta_rec_t, profile_scratch_align), F(kc_binmeta_rec_t, flags),
        F(kc_binmeta_rec_t, compiler), F(kc_binmeta_rec_t, compiler_version),
        F(kc_binmeta_rec_t, args), F(kc_binmeta_rec_t, n_args), F(kc_binmeta_rec_t, spec),
        F(kc_binmeta_rec_t, n_spec), end();
    S(kc_group_entry_t), F(kc_group_entry_t, name), F(kc_group_entry_t, blob),
        F(kc_group_entry_t, size), end();
    S(kc_group_rec_t), F(kc_group_rec_t, name), F(kc_group_rec_t, created),
        F(kc_group_rec_t, updated), F(kc_group_rec_t, files), F(kc_group_rec_t, n_files),
        end();
    S(kc_group_file_t), F(kc_group_file_t, name), F(kc_group_file_t, data),
        F(kc_group_file_t, size), end();
    S(kc_record_t), F(kc_record_t, kind), F(kc_record_t, version), F(kc_record_t, u),
        end();
    S(kc_store_opts_t), F(kc_store_opts_t, size), F(kc_store_opts_t, flags),
        F(kc_store_opts_t, map_size), F(kc_store_opts_t, zstd_level),
        F(kc_store_opts_t, max_readers), F(kc_store_opts_t, max_size), end();
    S(kc_store_stats_t), F(kc_store_stats_t, records),
        F(kc_store_stats_t, blob_raw_bytes), F(kc_store_stats_t, blob_stored_bytes),
        F(kc_store_stats_t, counters), F(kc_store_stats_t, file_bytes),
        F(kc_store_stats_t, map_bytes), F(kc_store_stats_t, used_bytes),
        F(kc_store_stats_t, format_version), F(kc_store_stats_t, readonly),
        F(kc_store_stats_t, record_bytes), F(kc_store_stats_t, totals_scanned), end();
    S(kc_gc_opts_t), F(kc_gc_opts_t, size), F(kc_gc_opts_t, max_bytes),
        F(kc_gc_opts_t, older_than), F(kc_gc_opts_t, dry_run), F(kc_gc_opts_t, list),
        F(kc_gc_opts_t, now), F(kc_gc_opts_t, progress), F(kc_gc_opts_t, progress_user),
        end();
    S(kc_gc_item_t), F(kc_gc_item_t, kind), F(kc_gc_item_t, key),
        F(kc_gc_item_t, last_use), F(kc_gc_item_t, bytes), end();
    S(kc_gc_report_t), F(kc_gc_report_t, evicted), F(kc_gc_report_t, bytes_freed),
        F(kc_gc_report_t, size_before), F(kc_gc_report_t, size_after),
        F(kc_gc_report_t, file_before), F(kc_gc_report_t, file_after),
        F(kc_gc_report_t, skipped), F(kc_gc_report_t, items), F(kc_gc_report_t, n_items),
        F(kc_gc_report_t, usage_swept), F(kc_gc_report_t, leases_swept), end();
    S(kc_bundle_filter_t), F(kc_bundle_filter_t, arch), F(kc_bundle_filter_t, name),
        F(kc_bundle_filter_t, since), F(kc_bundle_filter_t, tuned_only), end();
    S(kc_bundle_import_opts_t), F(kc_bundle_import_opts_t, size),
        F(kc_bundle_import_opts_t, prefer), F(kc_bundle_import_opts_t, max_bytes),
        F(kc_bundle_import_opts_t, name), F(kc_bundle_import_opts_t, trust), end();
    S(kc_bundle_stats_t), F(kc_bundle_stats_t, records), F(kc_bundle_stats_t, blobs),
        F(kc_bundle_stats_t, builds), F(kc_bundle_stats_t, tunings),
        F(kc_bundle_stats_t, dicts), F(kc_bundle_stats_t, bytes),
        F(kc_bundle_stats_t, damaged), F(kc_bundle_stats_t, added),
        F(kc_bundle_stats_t, present), F(kc_bundle_stats_t, replaced),
        F(kc_bundle_stats_t, kept), F(kc_bundle_stats_t, is_signed),
        F(kc_bundle_stats_t, signer), F(kc_bundle_stats_t, binmeta),
        F(kc_bundle_stats_t, groups), end();
    S(kc_launcher_opts_t), F(kc_launcher_opts_t, size), F(kc_launcher_opts_t, device),
        F(kc_launcher_opts_t, ordinal), F(kc_launcher_opts_t, sim),
        F(kc_launcher_opts_t, arch), F(kc_launcher_opts_t, store),
        F(kc_launcher_opts_t, store_dir), F(kc_launcher_opts_t, no_store),
        F(kc_launcher_opts_t, compile_threads), F(kc_launcher_opts_t, warmup),
        F(kc_launcher_opts_t, budget_ms), F(kc_launcher_opts_t, min_reps),
        F(kc_launcher_opts_t, max_reps), F(kc_launcher_opts_t, no_l2_flush),
        F(kc_launcher_opts_t, no_prefetch), F(kc_launcher_opts_t, no_warmup),
        F(kc_launcher_opts_t, remote_url), F(kc_launcher_opts_t, no_remote),
        F(kc_launcher_opts_t, log), F(kc_launcher_opts_t, log_user),
        F(kc_launcher_opts_t, log_level), F(kc_launcher_opts_t, contention),
        F(kc_launcher_opts_t, lease_ttl_ms), F(kc_launcher_opts_t, lease_wait_ms),
        F(kc_launcher_opts_t, max_modules), end();
    S(kc_arg_t), F(kc_arg_t, ptr), F(kc_arg_t, rank), F(kc_arg_t, dims),
        F(kc_arg_t, strides), F(kc_arg_t, value), end();
    S(kc_kernel_stats_t), F(kc_kernel_stats_t, launches), F(kc_kernel_stats_t, memo_hits),
        F(kc_kernel_stats_t, store_hits), F(kc_kernel_stats_t, tunes),
        F(kc_kernel_stats_t, compiles), F(kc_kernel_stats_t, builds_reused),
        F(kc_kernel_stats_t, candidates_failed), F(kc_kernel_stats_t, publishes),
        F(kc_kernel_stats_t, prefetched), F(kc_kernel_stats_t, remote_hits),
        F(kc_kernel_stats_t, configs), end();
    S(kc_sim_opts_t), F(kc_sim_opts_t, size), F(kc_sim_opts_t, arch),
        F(kc_sim_opts_t, sm_count), F(kc_sim_opts_t, name), F(kc_sim_opts_t, mem_limit),
        F(kc_sim_opts_t, max_threads), F(kc_sim_opts_t, max_shared), end();
    S(kc_sim_launch_t), F(kc_sim_launch_t, grid), F(kc_sim_launch_t, block),
        F(kc_sim_launch_t, shared), F(kc_sim_launch_t, params),
        F(kc_sim_launch_t, n_params), F(kc_sim_launch_t, cluster_x),
        F(kc_sim_launch_t, flags), end();
    S(kc_sim_counters_t), F(kc_sim_counters_t, modules_loaded),
        F(kc_sim_counters_t, modules_rejected), F(kc_sim_counters_t, launches),
        F(kc_sim_counters_t, bytes_allocated), F(kc_sim_counters_t, peak_bytes),
        F(kc_sim_counters_t, modules_unloaded), F(kc_sim_counters_t, dead_launches),
        end();
    printf("\n}\n");
    return 0;
}
