#include "api_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stemedb/config.h"
#include "stemedb/daemon.h"
#include "stemedb/hex.h"

#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

static const char *const durability_choices[] = {"immediate", "eventual", NULL};
static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};

/* $STATE_DIRECTORY under systemd (StateDirectory=), else ./var. */
static const char *default_data_dir(void)
{
	static char dir[4096];

	if (!daemon_default_data_dir(dir, sizeof(dir)))
		snprintf(dir, sizeof(dir), "./var");
	return dir;
}

/* Fills the option table with pointers into cfg. The table is rebuilt for each call
 * because its targets are the fields of one particular struct. */
#define RATE_OPTION(env_name, flag_name, field, default_text, help_text)                           \
	(struct config_option)                                                                     \
	{                                                                                          \
		env_name, flag_name, CONFIG_DOUBLE, &cfg->field, default_text, 0.001, 1e9, NULL,   \
		        help_text                                                                  \
	}

/* Options of the API key check and the rate limits. */
static size_t api_config_protection_options(struct api_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_AUTH_ENABLED",
	                                "auth-enabled",
	                                CONFIG_BOOL,
	                                &cfg->auth_enabled,
	                                "false",
	                                0,
	                                0,
	                                NULL,
	                                "require an X-API-Key on every endpoint except health, "
	                                "ready and metrics"};
	o[n++] = (struct config_option){"STEMEDB_ROOT_API_KEY",
	                                NULL,
	                                CONFIG_STRING,
	                                &cfg->root_api_key,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "API key with every scope, stored at start "
	                                "(environment only)"};
	o[n++] = (struct config_option){"STEMEDB_RATE_LIMIT_ENABLED",
	                                "rate-limit-enabled",
	                                CONFIG_BOOL,
	                                &cfg->rate_limit_enabled,
	                                "true",
	                                0,
	                                0,
	                                NULL,
	                                "limit the request rate of each client"};
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_WRITE_RATE", "rate-limit-write-rate",
	                     rate_limit_write_rate, "50000",
	                     "POST requests per second that one client may send");
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_WRITE_BURST", "rate-limit-write-burst",
	                     rate_limit_write_burst, "100000",
	                     "POST requests that one client may send at once (bucket size)");
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_READ_RATE", "rate-limit-read-rate",
	                     rate_limit_read_rate, "100000",
	                     "read requests per second that one client may send");
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_READ_BURST", "rate-limit-read-burst",
	                     rate_limit_read_burst, "200000",
	                     "read requests that one client may send at once (bucket size)");
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_OTHER_RATE", "rate-limit-other-rate",
	                     rate_limit_other_rate, "1000",
	                     "audit and OpenAPI requests per second that one client may send");
	o[n++] = RATE_OPTION("STEMEDB_RATE_LIMIT_OTHER_BURST", "rate-limit-other-burst",
	                     rate_limit_other_burst, "2000",
	                     "audit and OpenAPI requests that one client may send at once");
	o[n++] = (struct config_option){"STEMEDB_RATE_LIMIT_MAX_CLIENTS",
	                                "rate-limit-max-clients",
	                                CONFIG_UINT,
	                                &cfg->rate_limit_max_clients,
	                                "100000",
	                                64,
	                                100000000,
	                                NULL,
	                                "clients whose buckets are kept in memory; idle ones are "
	                                "evicted first"};
	return n;
}

/* Content defense: the on/off switch and every threshold (docs/protection.md). */
static size_t api_config_defense_options(struct api_config *cfg, struct config_option *o, size_t n)
{
	o[n++] = (struct config_option){"STEMEDB_CONTENT_DEFENSE_ENABLED",
	                                "content-defense-enabled",
	                                CONFIG_BOOL,
	                                &cfg->defense.enabled,
	                                "true",
	                                0,
	                                0,
	                                NULL,
	                                "check new assertions and hold suspicious ones in "
	                                "quarantine"};
	o[n++] = (struct config_option){"STEMEDB_DEFENSE_DUPLICATE_SIMILARITY",
	                                "defense-duplicate-similarity",
	                                CONFIG_DOUBLE,
	                                &cfg->defense.duplicate_similarity,
	                                "0.9",
	                                0.01,
	                                1.0,
	                                NULL,
	                                "estimated Jaccard similarity (0..1) to another agent's "
	                                "assertion at which a new one is a duplicate"};
	o[n++] = (struct config_option){"STEMEDB_DEFENSE_MIN_QUALITY",
	                                "defense-min-quality",
	                                CONFIG_DOUBLE,
	                                &cfg->defense.min_quality,
	                                "0.4",
	                                0.0,
	                                1.0,
	                                NULL,
	                                "quality score (0..1) below which an assertion is "
	                                "low_quality"};
	o[n++] = (struct config_option){"STEMEDB_DEFENSE_UNTRUSTED_BELOW",
	                                "defense-untrusted-below",
	                                CONFIG_DOUBLE,
	                                &cfg->defense.untrusted_below,
	                                "0.5",
	                                0.0,
	                                1.0,
	                                NULL,
	                                "signer trust (0..1) below which a high-confidence "
	                                "assertion is untrusted_high_confidence"};
	o[n++] = (struct config_option){"STEMEDB_DEFENSE_HIGH_CONFIDENCE",
	                                "defense-high-confidence",
	                                CONFIG_DOUBLE,
	                                &cfg->defense.high_confidence,
	                                "0.8",
	                                0.0,
	                                1.0,
	                                NULL,
	                                "confidence (0..1) above which the trust rule applies"};
	return n;
}

static size_t api_config_options(struct api_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_DATA_DIR",
	                                "data-dir",
	                                CONFIG_STRING,
	                                &cfg->data_dir,
	                                default_data_dir(),
	                                0,
	                                0,
	                                NULL,
	                                "directory of the database, the WAL and the node id"};
	o[n++] = (struct config_option){"STEMEDB_WAL_DIR",
	                                "wal-dir",
	                                CONFIG_STRING,
	                                &cfg->wal_dir,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "directory of the WAL segments (default: DATA_DIR/wal)"};
	o[n++] = (struct config_option){"STEMEDB_API_LISTEN",
	                                "api-listen",
	                                CONFIG_ENDPOINT,
	                                &cfg->listen,
	                                "127.0.0.1:18180",
	                                0,
	                                0,
	                                NULL,
	                                "host:port of the HTTP API"};
	o[n++] = (struct config_option){"STEMEDB_NODE_ID",
	                                "node-id",
	                                CONFIG_STRING,
	                                &cfg->node_id,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "UUID of this node (default: generated once and stored in "
	                                "DATA_DIR/node_id)"};
	o[n++] = (struct config_option){"STEMEDB_DURABILITY",
	                                "durability",
	                                CONFIG_CHOICE,
	                                &cfg->durability_name,
	                                "immediate",
	                                0,
	                                0,
	                                durability_choices,
	                                "immediate: acknowledge after fdatasync; eventual: after "
	                                "write(2), synced every WAL_SYNC_INTERVAL_MS"};
	o[n++] = (struct config_option){"STEMEDB_WAL_SYNC_INTERVAL_MS",
	                                "wal-sync-interval-ms",
	                                CONFIG_UINT,
	                                &cfg->wal_sync_interval_ms,
	                                "100",
	                                1,
	                                60000,
	                                NULL,
	                                "WAL sync period in eventual mode, in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_WAL_SEGMENT_BYTES",
	                                "wal-segment-bytes",
	                                CONFIG_UINT,
	                                &cfg->wal_segment_bytes,
	                                "67108864",
	                                MIB,
	                                4 * GIB,
	                                NULL,
	                                "WAL segment size before rotation, in bytes"};
	o[n++] = (struct config_option){"STEMEDB_LOG_LEVEL",
	                                "log-level",
	                                CONFIG_CHOICE,
	                                &cfg->log_level_name,
	                                "info",
	                                0,
	                                0,
	                                log_level_choices,
	                                "lowest level that is logged"};
	o[n++] = (struct config_option){"STEMEDB_HTTP_THREADS",
	                                "http-threads",
	                                CONFIG_UINT,
	                                &cfg->http_threads,
	                                "0",
	                                0,
	                                256,
	                                NULL,
	                                "HTTP worker threads (0: one per online CPU)"};
	o[n++] = (struct config_option){"STEMEDB_MAX_BODY_BYTES",
	                                "max-body-bytes",
	                                CONFIG_UINT,
	                                &cfg->max_body_bytes,
	                                "1048576",
	                                KIB,
	                                GIB,
	                                NULL,
	                                "maximum request body, in bytes (batch endpoint excepted)"};
	o[n++] = (struct config_option){"STEMEDB_MAX_BATCH_BODY_BYTES",
	                                "max-batch-body-bytes",
	                                CONFIG_UINT,
	                                &cfg->max_batch_body_bytes,
	                                "16777216",
	                                KIB,
	                                GIB,
	                                NULL,
	                                "maximum body of POST /v1/assert/batch, in bytes"};
	o[n++] = (struct config_option){"STEMEDB_MAX_HEADER_BYTES",
	                                "max-header-bytes",
	                                CONFIG_UINT,
	                                &cfg->max_header_bytes,
	                                "16384",
	                                KIB,
	                                MIB,
	                                NULL,
	                                "maximum size of the request line and headers, in bytes"};
	o[n++] =
	        (struct config_option){"STEMEDB_READ_TIMEOUT_MS",
	                               "read-timeout-ms",
	                               CONFIG_UINT,
	                               &cfg->read_timeout_ms,
	                               "10000",
	                               100,
	                               3600000,
	                               NULL,
	                               "inactivity limit while a request is read, in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_IDLE_TIMEOUT_MS",
	                                "idle-timeout-ms",
	                                CONFIG_UINT,
	                                &cfg->idle_timeout_ms,
	                                "60000",
	                                100,
	                                3600000,
	                                NULL,
	                                "idle keep-alive connection limit, in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_MAX_CONNECTIONS",
	                                "max-connections",
	                                CONFIG_UINT,
	                                &cfg->max_connections,
	                                "1024",
	                                1,
	                                1000000,
	                                NULL,
	                                "maximum open client connections"};
	o[n++] = (struct config_option){"STEMEDB_RUN_DIR",
	                                "run-dir",
	                                CONFIG_STRING,
	                                &cfg->run_dir,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "directory of api.sock (default: $RUNTIME_DIRECTORY under "
	                                "systemd, else DATA_DIR/run)"};
	o[n++] = (struct config_option){"STEMEDB_WAL_ARCHIVE",
	                                "wal-archive",
	                                CONFIG_BOOL,
	                                &cfg->wal_archive,
	                                "false",
	                                0,
	                                0,
	                                NULL,
	                                "keep each sealed WAL segment until stemedb-walarchiver "
	                                "reports it archived"};
	o[n++] = (struct config_option){"STEMEDB_IPC_MAX_FRAME_BYTES",
	                                "ipc-max-frame-bytes",
	                                CONFIG_UINT,
	                                &cfg->ipc_max_frame,
	                                "16777216",
	                                4096,
	                                1073741824,
	                                NULL,
	                                "largest IPC frame accepted or sent on api.sock, in bytes"};
	o[n++] = (struct config_option){"STEMEDB_AUDIT_RETENTION_DAYS",
	                                "audit-retention-days",
	                                CONFIG_UINT,
	                                &cfg->audit_retention_days,
	                                "30",
	                                0,
	                                36500,
	                                NULL,
	                                "days that query audit records are kept (0: no audit)"};
	o[n++] = (struct config_option){"STEMEDB_AUDIT_RETENTION_SECONDS",
	                                "audit-retention-seconds",
	                                CONFIG_UINT,
	                                &cfg->audit_retention_seconds,
	                                "0",
	                                0,
	                                3153600000,
	                                NULL,
	                                "seconds that query audit records are kept; when not 0, "
	                                "replaces AUDIT_RETENTION_DAYS"};
	o[n++] = (struct config_option){"STEMEDB_HTTP2_LISTEN",
	                                "http2-listen",
	                                CONFIG_STRING,
	                                &cfg->http2_listen,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "host:port of an extra HTTP/2 (h2c) listener (default: "
	                                "none; the API port serves HTTP/2 as well)"};
	n += api_config_protection_options(cfg, o + n);
	n += protect_config_options(&cfg->protect, o + n);
	n = api_config_defense_options(cfg, o, n);
	o[n++] = (struct config_option){"STEMEDB_TLS_CERT_FILE",
	                                "tls-cert-file",
	                                CONFIG_STRING,
	                                &cfg->tls_cert_file,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "PEM certificate chain; with TLS_KEY_FILE the API port "
	                                "serves TLS 1.3 only"};
	o[n++] = (struct config_option){"STEMEDB_TLS_KEY_FILE",
	                                "tls-key-file",
	                                CONFIG_STRING,
	                                &cfg->tls_key_file,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "PEM private key of TLS_CERT_FILE, unencrypted"};
	o[n++] = (struct config_option){"STEMEDB_MAX_CONNECTIONS_PER_CLIENT",
	                                "max-connections-per-client",
	                                CONFIG_UINT,
	                                &cfg->max_connections_per_client,
	                                "64",
	                                0,
	                                1000000,
	                                NULL,
	                                "open connections allowed per client IP address (0: no "
	                                "limit)"};
	o[n++] = (struct config_option){"STEMEDB_ALLOWED_ORIGINS",
	                                "allowed-origins",
	                                CONFIG_STRING,
	                                &cfg->allowed_origins,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "comma-separated origins allowed by CORS, or * (default: "
	                                "no CORS headers)"};
	o[n++] = (struct config_option){"STEMEDB_TRUST_AUTHORITY_KEYS",
	                                "trust-authority-keys",
	                                CONFIG_STRING,
	                                &cfg->trust_authority_keys_text,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "comma-separated hex public keys allowed to sign trust "
	                                "outcomes (default: none, so outcomes are rejected)"};
	return n;
}

#define API_CONFIG_OPTION_MAX (56 + PROTECT_CONFIG_OPTIONS)

/* Parses the comma-separated list of 64-hex-character public keys. Spaces around each
 * key are ignored; an empty list is valid. */
static bool parse_trust_authority_keys(struct api_config *cfg, char *err, size_t err_size)
{
	const char *p = cfg->trust_authority_keys_text;
	size_t cap = 0;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *start = p;
		size_t key_len = len;

		while (key_len > 0 && *start == ' ') {
			start++;
			key_len--;
		}
		while (key_len > 0 && start[key_len - 1] == ' ')
			key_len--;
		if (cfg->trust_authority_key_count == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			cfg->trust_authority_keys =
			        realloc(cfg->trust_authority_keys,
			                cap * sizeof(*cfg->trust_authority_keys));
			if (cfg->trust_authority_keys == NULL)
				abort();
		}
		if (!hex_decode(start, key_len,
		                cfg->trust_authority_keys[cfg->trust_authority_key_count], 32)) {
			snprintf(err, err_size,
			         "STEMEDB_TRUST_AUTHORITY_KEYS entry %zu (\"%.*s\") is not a "
			         "public key; "
			         "give 64 hex characters per key, separated by commas",
			         cfg->trust_authority_key_count + 1,
			         (int)(key_len > 80 ? 80 : key_len), start);
			return false;
		}
		cfg->trust_authority_key_count++;
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

bool api_config_is_trust_authority(const struct api_config *cfg, const uint8_t agent[32])
{
	for (size_t i = 0; i < cfg->trust_authority_key_count; i++) {
		if (memcmp(cfg->trust_authority_keys[i], agent, 32) == 0)
			return true;
	}
	return false;
}

/* Derives the values that depend on others: enums from their names, the WAL directory
 * from the data directory, the thread count from the CPU count. */
static bool api_config_resolve(struct api_config *cfg, char *err, size_t err_size)
{
	cfg->durability = strcmp(cfg->durability_name, "eventual") == 0 ? DURABILITY_EVENTUAL
	                                                                : DURABILITY_IMMEDIATE;
	if (!log_level_parse(cfg->log_level_name, &cfg->log_level))
		cfg->log_level = LOG_LEVEL_INFO;

	if (cfg->data_dir[0] == '\0') {
		snprintf(err, err_size,
		         "STEMEDB_DATA_DIR is empty; set it to the directory that holds the "
		         "database");
		return false;
	}
	if (cfg->wal_dir[0] == '\0') {
		size_t size = strlen(cfg->data_dir) + sizeof("/wal");
		char *wal_dir = malloc(size);

		if (wal_dir == NULL)
			abort();
		snprintf(wal_dir, size, "%s/wal", cfg->data_dir);
		free(cfg->wal_dir);
		cfg->wal_dir = wal_dir;
	}

	if (cfg->rate_limit_write_burst < 1 || cfg->rate_limit_read_burst < 1 ||
	    cfg->rate_limit_other_burst < 1) {
		snprintf(
		        err, err_size,
		        "STEMEDB_RATE_LIMIT_WRITE_BURST, _READ_BURST and _OTHER_BURST must each be "
		        "at least 1, or no request would pass; they are %g, %g and %g",
		        cfg->rate_limit_write_burst, cfg->rate_limit_read_burst,
		        cfg->rate_limit_other_burst);
		return false;
	}

	if (cfg->http_threads == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		cfg->http_threads = cpus > 0 ? (uint64_t)cpus : 1;
		if (cfg->http_threads > 256)
			cfg->http_threads = 256;
	}
	return parse_trust_authority_keys(cfg, err, err_size);
}

bool api_config_load(struct api_config *cfg, int argc, char **argv, bool *help_requested, char *err,
                     size_t err_size)
{
	struct config_option options[API_CONFIG_OPTION_MAX];
	size_t count;

	memset(cfg, 0, sizeof(*cfg));
	count = api_config_options(cfg, options);
	*help_requested = false;

	if (!config_load(options, count, argc, argv, help_requested, err, err_size))
		return false;

	/* config_load has printed the usage already. */
	if (*help_requested)
		return true;
	return api_config_resolve(cfg, err, err_size);
}

void api_config_free(struct api_config *cfg)
{
	struct config_option options[API_CONFIG_OPTION_MAX];
	size_t count = api_config_options(cfg, options);

	config_free(options, count);
	free(cfg->trust_authority_keys);
	memset(cfg, 0, sizeof(*cfg));
}
