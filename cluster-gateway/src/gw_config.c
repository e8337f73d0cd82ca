#include "gw_config.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stemedb/config.h"
#include "stemedb/daemon.h"
#include "stemedb/hex.h"
#include "stemedb/ipc.h"

/* Longest accepted admin token. A bearer token travels in one header line, so it has
 * to fit well inside the gateway's header limit. */
#define GW_ADMIN_TOKEN_MAX 1024
static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};

/* Fills the option table with pointers into cfg. */
static size_t gw_config_options(struct gw_config *cfg, struct config_option *o)
{
	size_t n = 0;

	o[n++] = (struct config_option){"STEMEDB_GATEWAY_LISTEN",
	                                "gateway-listen",
	                                CONFIG_ENDPOINT,
	                                &cfg->listen,
	                                "127.0.0.1:18181",
	                                0,
	                                0,
	                                NULL,
	                                "host:port of the gateway's HTTP listener (internal port)"};
	o[n++] = (struct config_option){"STEMEDB_API_LISTEN",
	                                "api-listen",
	                                CONFIG_ENDPOINT,
	                                &cfg->api_listen,
	                                "127.0.0.1:18180",
	                                0,
	                                0,
	                                NULL,
	                                "host:port of stemedb-api, reported in the cluster status"};
	o[n++] = (struct config_option){"STEMEDB_DATA_DIR",
	                                "data-dir",
	                                CONFIG_STRING,
	                                &cfg->data_dir,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "data directory of the node; the run directory defaults to "
	                                "DATA_DIR/run (default: $STATE_DIRECTORY, else ./var)"};
	o[n++] = (struct config_option){"STEMEDB_RUN_DIR",
	                                "run-dir",
	                                CONFIG_STRING,
	                                &cfg->run_dir,
	                                "",
	                                0,
	                                0,
	                                NULL,
	                                "directory of api.sock (default: $RUNTIME_DIRECTORY, else "
	                                "DATA_DIR/run)"};
	o[n++] =
	        (struct config_option){"STEMEDB_ADMIN_TOKEN",
	                               NULL,
	                               CONFIG_STRING,
	                               &cfg->admin_token,
	                               "",
	                               0,
	                               0,
	                               NULL,
	                               "bearer token that /v1/admin/* requires (environment only)"};
	o[n++] = (struct config_option){"STEMEDB_LOG_LEVEL",
	                                "log-level",
	                                CONFIG_CHOICE,
	                                &cfg->log_level_name,
	                                "info",
	                                0,
	                                0,
	                                log_level_choices,
	                                "lowest level that is logged"};
	o[n++] = (struct config_option){"STEMEDB_GATEWAY_IPC_TIMEOUT_MS",
	                                "gateway-ipc-timeout-ms",
	                                CONFIG_UINT,
	                                &cfg->ipc_timeout_ms,
	                                "1000",
	                                10,
	                                60000,
	                                NULL,
	                                "deadline of the health and status calls to stemedb-api, "
	                                "in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_GATEWAY_ADMIN_TIMEOUT_MS",
	                                "gateway-admin-timeout-ms",
	                                CONFIG_UINT,
	                                &cfg->admin_timeout_ms,
	                                "600000",
	                                1000,
	                                86400000,
	                                NULL,
	                                "deadline of compaction and backup calls to stemedb-api, "
	                                "in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_GATEWAY_ARCHIVE_STALL_MS",
	                                "gateway-archive-stall-ms",
	                                CONFIG_UINT,
	                                &cfg->archive_stall_ms,
	                                "300000",
	                                1000,
	                                86400000,
	                                NULL,
	                                "how long sealed WAL may wait for the archiver without the "
	                                "archived offset moving before health reports it stalled, "
	                                "in milliseconds"};
	o[n++] = (struct config_option){"STEMEDB_AUTH_ENABLED",
	                                "auth-enabled",
	                                CONFIG_BOOL,
	                                &cfg->auth_enabled,
	                                "false",
	                                0,
	                                0,
	                                NULL,
	                                "accept an admin-scope X-API-Key on /v1/admin/*, and "
	                                "require credentials there even without an admin token"};
	o[n++] =
	        (struct config_option){"STEMEDB_ADMIN_SIGNING_KEY_FILE",
	                               "admin-signing-key-file",
	                               CONFIG_STRING,
	                               &cfg->admin_signing_key_file,
	                               "",
	                               0,
	                               0,
	                               NULL,
	                               "key file (from `stemedb-ctl keygen`) that signs trust "
	                               "outcome records (default: none, so outcomes are rejected)"};
	return n;
}

#define GW_CONFIG_OPTION_MAX 12

static bool replace_string(char **target, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL)
		return false;
	free(*target);
	*target = copy;
	return true;
}

/* Rejects a token that cannot be sent in an Authorization header as one word. */
static bool check_admin_token(const char *token, char *err, size_t err_size)
{
	size_t len = strlen(token);

	if (len > GW_ADMIN_TOKEN_MAX) {
		snprintf(err, err_size,
		         "STEMEDB_ADMIN_TOKEN is %zu characters long; use at most %d "
		         "(for instance the output of `openssl rand -hex 32`)",
		         len, GW_ADMIN_TOKEN_MAX);
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)token[i];

		if (c < 0x21 || c > 0x7e) {
			snprintf(err, err_size,
			         "STEMEDB_ADMIN_TOKEN contains byte 0x%02x at position %zu; use "
			         "printable ASCII without spaces",
			         c, i);
			return false;
		}
	}
	return true;
}

/* Loads the operator key: a JSON file {"seed": 64 hex, "agent_id": 64 hex} that only
 * its owner may read, because the key signs the trust outcomes every node accepts. */
static bool load_admin_signing_key(struct gw_config *cfg, char *err, size_t err_size)
{
	const char *path = cfg->admin_signing_key_file;
	uint8_t seed[32];
	uint8_t stated_id[32];
	const char *seed_hex;
	const char *id_hex;
	json_error_t jerr;
	struct stat st;
	json_t *doc;
	bool ok = false;

	if (path[0] == '\0')
		return true;
	if (stat(path, &st) != 0) {
		snprintf(err, err_size,
		         "STEMEDB_ADMIN_SIGNING_KEY_FILE %s cannot be read: %s; create it with "
		         "`stemedb-ctl keygen --out FILE`",
		         path, strerror(errno));
		return false;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, err_size,
		         "STEMEDB_ADMIN_SIGNING_KEY_FILE %s is readable by other users; run chmod "
		         "600 "
		         "%s",
		         path, path);
		return false;
	}
	doc = json_load_file(path, 0, &jerr);
	seed_hex = json_string_value(json_object_get(doc, "seed"));
	id_hex = json_string_value(json_object_get(doc, "agent_id"));
	if (doc == NULL || seed_hex == NULL || !hex_decode(seed_hex, strlen(seed_hex), seed, 32)) {
		snprintf(err, err_size,
		         "STEMEDB_ADMIN_SIGNING_KEY_FILE %s has no valid \"seed\" (64 hex "
		         "characters)%s%s; create the file with `stemedb-ctl keygen --out FILE`",
		         path, doc == NULL ? ": " : "", doc == NULL ? jerr.text : "");
		goto done;
	}
	if (sodium_init() < 0 ||
	    crypto_sign_seed_keypair(stated_id, cfg->admin_signing_key, seed) != 0) {
		snprintf(err, err_size,
		         "deriving the key of STEMEDB_ADMIN_SIGNING_KEY_FILE failed");
		goto done;
	}
	if (id_hex != NULL && (!hex_decode(id_hex, strlen(id_hex), stated_id, 32) ||
	                       memcmp(stated_id, cfg->admin_signing_key + 32, 32) != 0)) {
		snprintf(err, err_size,
		         "STEMEDB_ADMIN_SIGNING_KEY_FILE %s: \"agent_id\" is not the public key of "
		         "its seed, so the file is damaged; create a new one with `stemedb-ctl "
		         "keygen`",
		         path);
		goto done;
	}
	cfg->has_admin_signing_key = true;
	ok = true;

done:
	sodium_memzero(seed, sizeof(seed));
	if (!ok)
		sodium_memzero(cfg->admin_signing_key, sizeof(cfg->admin_signing_key));
	json_decref(doc);
	return ok;
}

/* Derives the data and run directories the way every StemeDB daemon does, so that
 * the gateway finds api.sock where stemedb-api created it. */
static bool gw_config_resolve(struct gw_config *cfg, char *err, size_t err_size)
{
	char path[4096];

	if (!log_level_parse(cfg->log_level_name, &cfg->log_level))
		cfg->log_level = LOG_LEVEL_INFO;

	if (cfg->data_dir[0] == '\0') {
		if (!daemon_default_data_dir(path, sizeof(path))) {
			snprintf(err, err_size,
			         "$STATE_DIRECTORY is too long for a path; set STEMEDB_DATA_DIR");
			return false;
		}
		if (!replace_string(&cfg->data_dir, path))
			abort();
	}
	if (!daemon_resolve_run_dir(cfg->run_dir, cfg->data_dir, path, sizeof(path), err, err_size))
		return false;
	if (!replace_string(&cfg->run_dir, path))
		abort();

	if (!daemon_socket_path(cfg->run_dir, IPC_API_SOCKET_NAME, cfg->api_socket,
	                        sizeof(cfg->api_socket), err, err_size))
		return false;
	return check_admin_token(cfg->admin_token, err, err_size) &&
	       load_admin_signing_key(cfg, err, err_size);
}

bool gw_config_load(struct gw_config *cfg, int argc, char **argv, bool *help_requested, char *err,
                    size_t err_size)
{
	struct config_option options[GW_CONFIG_OPTION_MAX];
	size_t count;

	memset(cfg, 0, sizeof(*cfg));
	count = gw_config_options(cfg, options);
	*help_requested = false;

	if (!config_load(options, count, argc, argv, help_requested, err, err_size))
		return false;

	/* config_load has printed the usage already. */
	if (*help_requested)
		return true;
	return gw_config_resolve(cfg, err, err_size);
}

void gw_config_free(struct gw_config *cfg)
{
	struct config_option options[GW_CONFIG_OPTION_MAX];
	size_t count = gw_config_options(cfg, options);

	config_free(options, count);
	sodium_memzero(cfg->admin_signing_key, sizeof(cfg->admin_signing_key));
	memset(cfg, 0, sizeof(*cfg));
}
