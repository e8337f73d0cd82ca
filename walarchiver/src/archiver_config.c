/* Configuration of stemedb-walarchiver from STEMEDB_* variables and --flags.
 * docs/configuration.md lists each one with its default and range. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archiver.h"
#include "stemedb/config.h"
#include "stemedb/daemon.h"

#define ARCHIVER_OPTION_MAX 16
#define HOUR_MS             3600000.0

static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};

static struct config_option string_option(const char *env, const char *flag, char **target,
                                          const char *default_value, const char *help)
{
	return (struct config_option){env, flag, CONFIG_STRING, target, default_value,
	                              0,   0,    NULL,          help};
}

static struct config_option uint_option(const char *env, const char *flag, uint64_t *target,
                                        const char *default_value, double min, double max,
                                        const char *help)
{
	return (struct config_option){env, flag, CONFIG_UINT, target, default_value,
	                              min, max,  NULL,        help};
}

static size_t archiver_config_options(struct archiver_config *cfg, struct config_option *o)
{
	/* $STATE_DIRECTORY under systemd, else ./var, the same default as stemedb-api. */
	static char default_data_dir[4096];
	size_t n = 0;

	if (!daemon_default_data_dir(default_data_dir, sizeof(default_data_dir)))
		snprintf(default_data_dir, sizeof(default_data_dir), "./var");
	o[n++] = string_option("STEMEDB_DATA_DIR", "data-dir", &cfg->data_dir, default_data_dir,
	                       "data directory of the node whose WAL is archived");
	o[n++] = string_option("STEMEDB_WAL_DIR", "wal-dir", &cfg->wal_dir, "",
	                       "directory of the WAL segments (default: DATA_DIR/wal)");
	o[n++] = string_option("STEMEDB_RUN_DIR", "run-dir", &cfg->run_dir, "",
	                       "directory of api.sock and walarchiver.prom (default: "
	                       "$RUNTIME_DIRECTORY, else DATA_DIR/run)");
	o[n++] = string_option("STEMEDB_WAL_ARCHIVE_DIR", "wal-archive-dir", &cfg->archive_dir, "",
	                       "directory that receives a verified copy of every sealed segment");
	o[n++] = string_option("STEMEDB_WAL_ARCHIVE_COMMAND", "wal-archive-command",
	                       &cfg->archive_command, "",
	                       "shell command that archives one segment: %p is its path, %f its "
	                       "file name, %% a percent sign; exit status 0 means archived");
	o[n++] = string_option("STEMEDB_WAL_ARCHIVE_VERIFY_COMMAND", "wal-archive-verify-command",
	                       &cfg->verify_command, "",
	                       "optional shell command run after the archive command, with the "
	                       "same substitutions; exit status 0 means the copy is good");
	o[n++] = uint_option("STEMEDB_WAL_ARCHIVE_INTERVAL_MS", "wal-archive-interval-ms",
	                     &cfg->interval_ms, "1000", 10, HOUR_MS,
	                     "time between scans of the WAL directory, in milliseconds");
	o[n++] = uint_option("STEMEDB_WAL_ARCHIVE_RETRY_INITIAL_MS", "wal-archive-retry-initial-ms",
	                     &cfg->retry_initial_ms, "1000", 10, HOUR_MS,
	                     "delay before the first retry of a failed segment, in milliseconds; "
	                     "it doubles with each further failure");
	o[n++] = uint_option("STEMEDB_WAL_ARCHIVE_RETRY_MAX_MS", "wal-archive-retry-max-ms",
	                     &cfg->retry_max_ms, "60000", 10, HOUR_MS,
	                     "maximum delay between retries, in milliseconds");
	o[n++] = uint_option("STEMEDB_WAL_ARCHIVE_COMMAND_TIMEOUT_MS",
	                     "wal-archive-command-timeout-ms", &cfg->command_timeout_ms, "600000",
	                     100, 24 * HOUR_MS,
	                     "time after which an archive or verify command is killed and the "
	                     "attempt counts as failed, in milliseconds");
	o[n++] = (struct config_option){"STEMEDB_LOG_LEVEL",
	                                "log-level",
	                                CONFIG_CHOICE,
	                                &cfg->log_level_name,
	                                "info",
	                                0,
	                                0,
	                                log_level_choices,
	                                "least severe level logged: debug, info, warn or error"};
	return n;
}

static char *join_path(const char *dir, const char *name)
{
	size_t size = strlen(dir) + strlen(name) + 2;
	char *path = malloc(size);

	if (path == NULL)
		abort();
	snprintf(path, size, "%s/%s", dir, name);
	return path;
}

/* Checks that exactly one archive target is set and that every % sequence in the
 * commands is known, so a typo stops the start instead of every archive attempt. */
static bool check_targets(const struct archiver_config *cfg, char *err, size_t err_size)
{
	bool has_dir = cfg->archive_dir[0] != '\0';
	bool has_command = cfg->archive_command[0] != '\0';
	const char *commands[2] = {cfg->archive_command, cfg->verify_command};

	if (has_dir == has_command) {
		snprintf(err, err_size,
		         "%s; set exactly one of STEMEDB_WAL_ARCHIVE_DIR and "
		         "STEMEDB_WAL_ARCHIVE_COMMAND",
		         has_dir ? "both archive targets are set" : "no archive target is set");
		return false;
	}
	if (has_dir && cfg->verify_command[0] != '\0') {
		snprintf(err, err_size,
		         "STEMEDB_WAL_ARCHIVE_VERIFY_COMMAND applies only with "
		         "STEMEDB_WAL_ARCHIVE_COMMAND; a directory archive is verified by "
		         "re-reading the copy");
		return false;
	}

	for (size_t i = 0; i < 2; i++) {
		char *expanded =
		        archive_command_expand(commands[i], "/path", "name", err, err_size);

		if (expanded == NULL)
			return false;
		free(expanded);
	}
	return true;
}

bool archiver_config_load(struct archiver_config *cfg, int argc, char **argv, bool *help_requested,
                          char *err, size_t err_size)
{
	struct config_option options[ARCHIVER_OPTION_MAX];
	size_t count;

	memset(cfg, 0, sizeof(*cfg));
	count = archiver_config_options(cfg, options);
	*help_requested = false;
	if (!config_load(options, count, argc, argv, help_requested, err, err_size))
		return false;
	if (*help_requested)
		return true;

	if (!log_level_parse(cfg->log_level_name, &cfg->log_level))
		cfg->log_level = LOG_LEVEL_INFO;
	if (cfg->data_dir[0] == '\0') {
		snprintf(err, err_size,
		         "STEMEDB_DATA_DIR is empty; set it to the node's data "
		         "directory");
		return false;
	}
	if (cfg->wal_dir[0] == '\0') {
		free(cfg->wal_dir);
		cfg->wal_dir = join_path(cfg->data_dir, "wal");
	}
	if (cfg->retry_initial_ms > cfg->retry_max_ms) {
		snprintf(err, err_size,
		         "STEMEDB_WAL_ARCHIVE_RETRY_INITIAL_MS (%llu) is above "
		         "STEMEDB_WAL_ARCHIVE_RETRY_MAX_MS (%llu); lower it or raise the maximum",
		         (unsigned long long)cfg->retry_initial_ms,
		         (unsigned long long)cfg->retry_max_ms);
		return false;
	}
	return check_targets(cfg, err, err_size);
}

void archiver_config_free(struct archiver_config *cfg)
{
	struct config_option options[ARCHIVER_OPTION_MAX];
	size_t count = archiver_config_options(cfg, options);

	config_free(options, count);
	memset(cfg, 0, sizeof(*cfg));
}
