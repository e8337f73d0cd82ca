#ifndef STEMEDB_API_CONFIG_H
#define STEMEDB_API_CONFIG_H

/* Configuration of stemedb-api: every STEMEDB_* variable the daemon reads, also
 * accepted as a --flag. docs/configuration.md lists each one with its default and
 * range. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"
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
};

/* Loads the configuration from argv and the environment. On an invalid value returns
 * false with a message naming the variable, the value and the accepted range in err.
 * Sets *help_requested (and returns true) after printing usage for --help. */
bool api_config_load(struct api_config *cfg, int argc, char **argv, bool *help_requested, char *err,
                     size_t err_size);

void api_config_free(struct api_config *cfg);

#endif
