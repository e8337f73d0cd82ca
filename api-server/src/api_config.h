#ifndef STEMEDB_API_CONFIG_H
#define STEMEDB_API_CONFIG_H

/* Configuration of stemedb-api: every STEMEDB_* variable the daemon reads, also
 * accepted as a --flag. docs/configuration.md lists each one with its default and
 * range. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"
#include "defense.h"
#include "protect.h"
#include "stemedb/log.h"

struct api_config {
	char *data_dir;
	char *wal_dir; /* resolved: $data_dir/wal when the variable is empty */
	char *listen;  /* host:port */
	char *node_id; /* empty: generated once and stored in $data_dir/node_id */
	char *durability_name;
	enum durability durability;
	uint64_t wal_sync_interval_ms;
	uint64_t wal_segment_bytes;
	char *log_level_name;
	enum log_level log_level;
	uint64_t http_threads; /* resolved: online CPUs when configured as 0 */
	uint64_t max_body_bytes;
	uint64_t max_batch_body_bytes;
	uint64_t max_header_bytes;
	uint64_t read_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t max_connections;
	char *run_dir;          /* empty: $RUNTIME_DIRECTORY, else $data_dir/run */
	bool wal_archive;       /* sealed WAL segments wait for the archiver's watermark */
	uint64_t ipc_max_frame; /* frame limit of api.sock, in bytes */
	uint64_t audit_retention_days;
	uint64_t audit_retention_seconds; /* when not 0, replaces audit_retention_days */
	char *http2_listen;               /* empty: no extra HTTP/2 listener */
	char *tls_cert_file;              /* empty: cleartext */
	char *tls_key_file;
	uint64_t max_connections_per_client; /* 0: no limit */
	char *allowed_origins;               /* empty: no CORS headers */
	bool auth_enabled;                   /* STEMEDB_AUTH_ENABLED: API keys required */
	char *root_api_key;                  /* empty: no root key bootstrap */
	bool rate_limit_enabled;
	double rate_limit_write_rate; /* tokens per second of each endpoint class */
	double rate_limit_write_burst;
	double rate_limit_read_rate;
	double rate_limit_read_burst;
	double rate_limit_other_rate;
	double rate_limit_other_burst;
	uint64_t rate_limit_max_clients;
	struct protect_config protect; /* circuit breaker, admission, quota */
	/* Ed25519 public keys whose trust outcome records this node accepts, from
	 * STEMEDB_TRUST_AUTHORITY_KEYS (comma-separated hex). Empty: no outcome is accepted. */
	char *trust_authority_keys_text;
	uint8_t (*trust_authority_keys)[32];
	size_t trust_authority_key_count;
	struct defense_config defense; /* content defense and quarantine */
};

/* True when agent is one of the configured trust authority keys. */
bool api_config_is_trust_authority(const struct api_config *cfg, const uint8_t agent[32]);

/* Loads the configuration from argv and the environment. On an invalid value returns
 * false with a message naming the variable, the value and the accepted range in err.
 * Sets *help_requested (and returns true) after printing usage for --help. */
bool api_config_load(struct api_config *cfg, int argc, char **argv, bool *help_requested, char *err,
                     size_t err_size);

void api_config_free(struct api_config *cfg);

#endif
