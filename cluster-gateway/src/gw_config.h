#ifndef STEMEDB_GW_CONFIG_H
#define STEMEDB_GW_CONFIG_H

/* Configuration of stemedb-gateway: every STEMEDB_* variable the daemon reads, also
 * accepted as a --flag (except the admin token, which is read from the environment
 * only so that it never shows in the process list). docs/configuration.md lists each
 * one with its default and range. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/log.h"

struct gw_config {
	char *listen;      /* host:port of the gateway's HTTP listener */
	char *api_listen;  /* host:port of stemedb-api, reported in cluster status */
	char *data_dir;    /* resolved: see daemon_resolve_data_dir */
	char *run_dir;     /* resolved: directory of api.sock */
	char *admin_token; /* empty: the admin endpoints take no credentials */
	char *log_level_name;
	enum log_level log_level;
	uint64_t ipc_timeout_ms;   /* deadline of status and health calls */
	uint64_t admin_timeout_ms; /* deadline of compaction and checkpoint calls */
	uint64_t archive_stall_ms; /* unarchived WAL this long without progress: stalled */
	char api_socket[4096];     /* resolved: $run_dir/api.sock */
	bool auth_enabled;         /* STEMEDB_AUTH_ENABLED: API keys of stemedb-api */
	/* Operator key that signs trust outcome records, from
	 * STEMEDB_ADMIN_SIGNING_KEY_FILE (a `stemedb-ctl keygen` file). */
	char *admin_signing_key_file; /* empty: trust outcomes are rejected with 503 */
	bool has_admin_signing_key;
	uint8_t admin_signing_key[64]; /* libsodium Ed25519 secret key: seed, public key */
};

/* Loads the configuration from argv and the environment. On an invalid value returns
 * false with a message naming the variable, the value and the accepted range in err.
 * Sets *help_requested (and returns true) after printing usage for --help. */
bool gw_config_load(struct gw_config *cfg, int argc, char **argv, bool *help_requested, char *err,
                    size_t err_size);

void gw_config_free(struct gw_config *cfg);

#endif
