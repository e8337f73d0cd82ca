/* Configuration from STEMEDB_* environment variables and --flags. Precedence: flag,
 * then variable, then default. */
#include "stemedb/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Every STEMEDB_* variable that some StemeDB program or test tool reads. A variable
 * outside this list is rejected at start-up, because a misspelt name would otherwise
 * be ignored without a word. Adding a variable is one line here. */
static const char *const KNOWN_VARIABLES[] = {
        "STEMEDB_DATA_DIR",
        "STEMEDB_WAL_DIR",
        "STEMEDB_RUN_DIR",
        "STEMEDB_API_LISTEN",
        "STEMEDB_GATEWAY_LISTEN",
        "STEMEDB_REPLICATOR_LISTEN",
        "STEMEDB_GOSSIP_LISTEN",
        "STEMEDB_NODE_ID",
        "STEMEDB_SEEDS",
        "STEMEDB_DURABILITY",
        "STEMEDB_LOG_LEVEL",
        "STEMEDB_ADMIN_TOKEN",
        "STEMEDB_AUTH_ENABLED",
        "STEMEDB_WAL_SYNC_INTERVAL_MS",
        "STEMEDB_WAL_SEGMENT_BYTES",
        "STEMEDB_HTTP_THREADS",
        "STEMEDB_MAX_BODY_BYTES",
        "STEMEDB_MAX_BATCH_BODY_BYTES",
        "STEMEDB_MAX_HEADER_BYTES",
        "STEMEDB_READ_TIMEOUT_MS",
        "STEMEDB_IDLE_TIMEOUT_MS",
        "STEMEDB_MAX_CONNECTIONS",
        "STEMEDB_ALLOWED_ORIGINS",
        "STEMEDB_REPLICATION_FACTOR",
        "STEMEDB_SHARDS",
        "STEMEDB_API_URL",
        "STEMEDB_KEY_FILE",
        "STEMEDB_GATEWAY_IPC_TIMEOUT_MS",
        "STEMEDB_GATEWAY_ADMIN_TIMEOUT_MS",
        "STEMEDB_GATEWAY_ARCHIVE_STALL_MS",
        "STEMEDB_WAL_ARCHIVE_DIR",
        "STEMEDB_WAL_ARCHIVE_COMMAND",
        "STEMEDB_WAL_ARCHIVE_VERIFY_COMMAND",
        "STEMEDB_WAL_ARCHIVE_INTERVAL_MS",
        "STEMEDB_WAL_ARCHIVE_RETRY_INITIAL_MS",
        "STEMEDB_WAL_ARCHIVE_RETRY_MAX_MS",
        "STEMEDB_WAL_ARCHIVE_COMMAND_TIMEOUT_MS",
        "STEMEDB_WAL_ARCHIVE",
        "STEMEDB_IPC_MAX_FRAME_BYTES",
        "STEMEDB_AUDIT_RETENTION_DAYS",
        "STEMEDB_AUDIT_RETENTION_SECONDS",
        "STEMEDB_HTTP2_LISTEN",
        "STEMEDB_ROOT_API_KEY",
        "STEMEDB_API_KEY", /* read by stemedb-ctl, sent as X-API-Key */
        "STEMEDB_RATE_LIMIT_ENABLED",
        "STEMEDB_RATE_LIMIT_WRITE_RATE",
        "STEMEDB_RATE_LIMIT_WRITE_BURST",
        "STEMEDB_RATE_LIMIT_READ_RATE",
        "STEMEDB_RATE_LIMIT_READ_BURST",
        "STEMEDB_RATE_LIMIT_OTHER_RATE",
        "STEMEDB_RATE_LIMIT_OTHER_BURST",
        "STEMEDB_RATE_LIMIT_MAX_CLIENTS",
        "STEMEDB_CIRCUIT_BREAKER_ENABLED",
        "STEMEDB_CIRCUIT_BREAKER_FAILURES",
        "STEMEDB_CIRCUIT_BREAKER_WINDOW_SECONDS",
        "STEMEDB_CIRCUIT_BREAKER_OPEN_SECONDS",
        "STEMEDB_CIRCUIT_BREAKER_MAX_AGENTS",
        "STEMEDB_ADMISSION_ENABLED",
        "STEMEDB_POW_NEW_AGENT_BITS",
        "STEMEDB_POW_GROWING_AGENT_BITS",
        "STEMEDB_POW_NEW_AGENT_ASSERTIONS",
        "STEMEDB_POW_ESTABLISHED_ASSERTIONS",
        "STEMEDB_POW_EXEMPT_TRUST",
        "STEMEDB_POW_VALIDITY_SECONDS",
        "STEMEDB_POW_REPLAY_CAPACITY",
        "STEMEDB_ADMISSION_COUNT_CACHE_SECONDS",
        "STEMEDB_QUOTA_ENABLED",
        "STEMEDB_QUOTA_TOKENS",
        "STEMEDB_QUOTA_WINDOW_SECONDS",
        "STEMEDB_QUOTA_MAX_AGENTS",
        "STEMEDB_QUOTA_ASSERT_COST",
        "STEMEDB_QUOTA_VOTE_COST",
        "STEMEDB_QUOTA_QUERY_COST",
        "STEMEDB_QUOTA_LENS_COST",
        "STEMEDB_QUOTA_READ_COST",
        "STEMEDB_QUOTA_KIB_COST",
        "STEMEDB_TRUST_AUTHORITY_KEYS",
        "STEMEDB_ADMIN_SIGNING_KEY_FILE",
        "STEMEDB_CONTENT_DEFENSE_ENABLED",
        "STEMEDB_DEFENSE_DUPLICATE_SIMILARITY",
        "STEMEDB_DEFENSE_MIN_QUALITY",
        "STEMEDB_DEFENSE_UNTRUSTED_BELOW",
        "STEMEDB_DEFENSE_HIGH_CONFIDENCE",
        "STEMEDB_TLS_CERT_FILE",
        "STEMEDB_TLS_KEY_FILE",
        "STEMEDB_MAX_CONNECTIONS_PER_CLIENT",
        "STEMEDB_BUILD",      /* set by scripts/run-tests.sh for the test drivers */
        "STEMEDB_SOURCE_DIR", /* lets the unit tests find tests/vectors */
};

#define PREFIX "STEMEDB_"

__attribute__((format(printf, 3, 4))) static bool fail(char *err, size_t err_size, const char *fmt,
                                                       ...)
{
	va_list args;

	va_start(args, fmt);
	vsnprintf(err, err_size, fmt, args);
	va_end(args);
	return false;
}

static bool is_string_kind(enum config_kind kind)
{
	return kind == CONFIG_STRING || kind == CONFIG_CHOICE || kind == CONFIG_ENDPOINT;
}

static bool parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"true", "1", "yes", "on"};
	static const char *const no[] = {"false", "0", "no", "off"};

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(text, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(text, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* Accepts only decimal digits, so "-1", "+1", " 1" and "1k" are invalid. */
static bool parse_uint(const char *text, uint64_t *out)
{
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = value;
	return true;
}

static bool parse_double(const char *text, double *out)
{
	char *end;

	if (text[0] == '\0')
		return false;
	errno = 0;
	double value = strtod(text, &end);
	if (errno != 0 || *end != '\0' || !isfinite(value))
		return false;
	*out = value;
	return true;
}

static bool is_choice(const struct config_option *o, const char *value)
{
	for (size_t i = 0; o->choices != NULL && o->choices[i] != NULL; i++) {
		if (strcmp(o->choices[i], value) == 0)
			return true;
	}
	return false;
}

/* Appends "a, b or c" for the error message. */
static void format_choices(const struct config_option *o, char *out, size_t out_size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; o->choices != NULL && o->choices[i] != NULL && used < out_size; i++) {
		const char *separator = i == 0 ? "" : (o->choices[i + 1] == NULL ? " or " : ", ");
		int n = snprintf(out + used, out_size - used, "%s%s", separator, o->choices[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static bool store_string(const struct config_option *o, const char *value)
{
	char **target = o->target;
	char *copy = strdup(value);

	if (copy == NULL)
		return false;
	free(*target);
	*target = copy;
	return true;
}

/* Checks value against the option's kind and range and stores it. source names where
 * the value came from ("STEMEDB_X" or "--x") for the message. */
static bool apply_value(const struct config_option *o, const char *source, const char *value,
                        char *err, size_t err_size)
{
	switch (o->kind) {
	case CONFIG_STRING:
		break;
	case CONFIG_UINT: {
		uint64_t number;
		if (!parse_uint(value, &number) || (double)number < o->min ||
		    (double)number > o->max)
			return fail(err, err_size,
			            "%s=%.64s is invalid; use an integer from %.0f to %.0f", source,
			            value, o->min, o->max);
		*(uint64_t *)o->target = number;
		return true;
	}
	case CONFIG_DOUBLE: {
		double number;
		if (!parse_double(value, &number) || number < o->min || number > o->max)
			return fail(err, err_size,
			            "%s=%.64s is invalid; use a number from %g to %g", source,
			            value, o->min, o->max);
		*(double *)o->target = number;
		return true;
	}
	case CONFIG_BOOL:
		if (!parse_bool(value, o->target))
			return fail(err, err_size,
			            "%s=%.64s is invalid; use true or false (also 1/0, yes/no, "
			            "on/off)",
			            source, value);
		return true;
	case CONFIG_CHOICE:
		if (!is_choice(o, value)) {
			char choices[160];
			format_choices(o, choices, sizeof(choices));
			return fail(err, err_size, "%s=%.64s is invalid; use %s", source, value,
			            choices);
		}
		break;
	case CONFIG_ENDPOINT: {
		char host[256];
		uint16_t port;
		if (!config_split_endpoint(value, host, sizeof(host), &port))
			return fail(err, err_size,
			            "%s=%.64s is invalid; use host:port with a port from 1 to "
			            "65535, and brackets around an IPv6 address ([::1]:18180)",
			            source, value);
		break;
	}
	}

	if (!store_string(o, value))
		return fail(err, err_size, "%s: strdup failed: out of memory", source);
	return true;
}

static bool is_known_variable(const char *name, size_t name_len,
                              const struct config_option *options, size_t count)
{
	size_t known = sizeof(KNOWN_VARIABLES) / sizeof(KNOWN_VARIABLES[0]);

	for (size_t i = 0; i < known; i++) {
		if (strlen(KNOWN_VARIABLES[i]) == name_len &&
		    strncmp(KNOWN_VARIABLES[i], name, name_len) == 0)
			return true;
	}
	for (size_t i = 0; i < count; i++) {
		if (options[i].env != NULL && strlen(options[i].env) == name_len &&
		    strncmp(options[i].env, name, name_len) == 0)
			return true;
	}
	return false;
}

static bool check_environment(const struct config_option *options, size_t count, char *err,
                              size_t err_size)
{
	for (char **entry = environ; entry != NULL && *entry != NULL; entry++) {
		if (strncmp(*entry, PREFIX, strlen(PREFIX)) != 0)
			continue;

		const char *equals = strchr(*entry, '=');
		size_t name_len = equals ? (size_t)(equals - *entry) : strlen(*entry);
		if (!is_known_variable(*entry, name_len, options, count))
			return fail(err, err_size,
			            "environment variable %.*s is unknown to StemeDB; check its "
			            "spelling or unset it",
			            (int)(name_len > 64 ? 64 : name_len), *entry);
	}
	return true;
}

static bool apply_defaults_and_environment(const struct config_option *options, size_t count,
                                           char *err, size_t err_size)
{
	for (size_t i = 0; i < count; i++) {
		const struct config_option *o = &options[i];
		const char *value = o->default_value;
		char source[96];

		snprintf(source, sizeof(source), "default of %s", o->env ? o->env : o->flag);
		if (value == NULL && o->kind == CONFIG_STRING)
			value = "";
		if (value != NULL && !apply_value(o, source, value, err, err_size))
			return false;

		value = o->env ? getenv(o->env) : NULL;
		if (value != NULL && !apply_value(o, o->env, value, err, err_size))
			return false;
	}
	return true;
}

static const struct config_option *find_flag(const struct config_option *options, size_t count,
                                             const char *name, size_t name_len)
{
	for (size_t i = 0; i < count; i++) {
		const char *flag = options[i].flag;
		if (flag != NULL && strlen(flag) == name_len && strncmp(flag, name, name_len) == 0)
			return &options[i];
	}
	return NULL;
}

/* Parses argv[*index] and, for "--flag VALUE", the argument after it. A boolean flag
 * given without "=VALUE" means true. */
static bool apply_flag(const struct config_option *options, size_t count, int argc, char **argv,
                       int *index, char *err, size_t err_size)
{
	const char *arg = argv[*index];

	if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
		return fail(err, err_size,
		            "argument \"%.64s\" is unknown; options look like "
		            "--name=VALUE (see --help)",
		            arg);

	const char *name = arg + 2;
	const char *equals = strchr(name, '=');
	size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
	const struct config_option *o = find_flag(options, count, name, name_len);
	if (o == NULL)
		return fail(err, err_size, "option --%.*s is unknown; see --help for the options",
		            (int)(name_len > 64 ? 64 : name_len), name);

	char source[80];
	snprintf(source, sizeof(source), "--%s", o->flag);
	if (equals != NULL)
		return apply_value(o, source, equals + 1, err, err_size);
	if (o->kind == CONFIG_BOOL)
		return apply_value(o, source, "true", err, err_size);
	if (*index + 1 >= argc)
		return fail(err, err_size, "option %s needs a value; use %s=VALUE", source, source);

	*index += 1;
	return apply_value(o, source, argv[*index], err, err_size);
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

bool config_load(const struct config_option *options, size_t count, int argc, char **argv,
                 bool *help_requested, char *err, size_t err_size)
{
	*help_requested = false;
	if (err_size > 0)
		err[0] = '\0';
	for (size_t i = 0; i < count; i++) {
		if (is_string_kind(options[i].kind))
			*(char **)options[i].target = NULL;
	}

	if (wants_help(argc, argv)) {
		const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
		const char *program = slash ? slash + 1 : (argc > 0 ? argv[0] : "stemedb");
		config_print_usage(stdout, program, NULL, options, count);
		*help_requested = true;
		return true;
	}

	if (!check_environment(options, count, err, err_size) ||
	    !apply_defaults_and_environment(options, count, err, err_size))
		goto failed;
	for (int i = 1; i < argc; i++) {
		if (!apply_flag(options, count, argc, argv, &i, err, err_size))
			goto failed;
	}
	return true;

failed:
	config_free(options, count);
	return false;
}

static const char *kind_placeholder(enum config_kind kind)
{
	switch (kind) {
	case CONFIG_UINT:
		return "=N";
	case CONFIG_DOUBLE:
		return "=X";
	case CONFIG_BOOL:
		return "[=BOOL]";
	case CONFIG_ENDPOINT:
		return "=HOST:PORT";
	case CONFIG_CHOICE:
	case CONFIG_STRING:
		break;
	}
	return "=VALUE";
}

static void print_option(FILE *out, const struct config_option *o)
{
	char detail[200] = "";
	size_t used = 0;

	if (o->kind == CONFIG_CHOICE) {
		char choices[160];
		format_choices(o, choices, sizeof(choices));
		used = (size_t)snprintf(detail, sizeof(detail), "; one of %s", choices);
	} else if (o->kind == CONFIG_UINT) {
		used = (size_t)snprintf(detail, sizeof(detail), "; %.0f to %.0f", o->min, o->max);
	} else if (o->kind == CONFIG_DOUBLE) {
		used = (size_t)snprintf(detail, sizeof(detail), "; %g to %g", o->min, o->max);
	}
	if (o->default_value != NULL && o->default_value[0] != '\0' && used < sizeof(detail))
		snprintf(detail + used, sizeof(detail) - used, "; default %s", o->default_value);

	fprintf(out, "  --%s%s", o->flag ? o->flag : "", kind_placeholder(o->kind));
	if (o->env != NULL)
		fprintf(out, "  (env %s)", o->env);
	fprintf(out, "\n      %s%s\n", o->help ? o->help : "", detail);
}

void config_print_usage(FILE *out, const char *program, const char *summary,
                        const struct config_option *options, size_t count)
{
	fprintf(out, "Usage: %s [OPTION]...\n", program);
	if (summary != NULL)
		fprintf(out, "%s\n", summary);
	fprintf(out, "\nOptions (a flag overrides its environment variable):\n");
	for (size_t i = 0; i < count; i++) {
		if (options[i].flag != NULL)
			print_option(out, &options[i]);
	}
	fprintf(out, "  --help\n      Print this help and exit.\n");
}

/* Parses a decimal port 1..65535 with no sign or spaces. */
static bool parse_port(const char *text, uint16_t *port)
{
	uint64_t value;

	if (!parse_uint(text, &value) || value < 1 || value > 65535 || strlen(text) > 5)
		return false;
	*port = (uint16_t)value;
	return true;
}

bool config_split_endpoint(const char *endpoint, char *host, size_t host_size, uint16_t *port)
{
	const char *host_start = endpoint;
	const char *host_end;
	const char *port_text;

	if (endpoint == NULL || host_size == 0)
		return false;

	if (endpoint[0] == '[') {
		host_start = endpoint + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return false;
		port_text = host_end + 2;
	} else {
		host_end = strrchr(endpoint, ':');
		if (host_end == NULL ||
		    memchr(endpoint, ':', (size_t)(host_end - endpoint)) != NULL)
			return false;
		port_text = host_end + 1;
	}

	size_t host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= host_size || memchr(host_start, ' ', host_len) != NULL)
		return false;
	if (!parse_port(port_text, port))
		return false;

	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	return true;
}

void config_free(const struct config_option *options, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (!is_string_kind(options[i].kind))
			continue;
		char **target = options[i].target;
		free(*target);
		*target = NULL;
	}
}
