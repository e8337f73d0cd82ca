#ifndef STEMEDB_CONFIG_H
#define STEMEDB_CONFIG_H

/* Configuration from STEMEDB_* environment variables and --flags. A flag wins over
 * the variable, which wins over the default. Every value is range-checked, and a bad
 * one produces a message that names the variable, the value and the accepted range. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum config_kind {
	CONFIG_STRING,   /* target: char ** (owned copy) */
	CONFIG_UINT,     /* target: uint64_t *, checked against [min, max] */
	CONFIG_DOUBLE,   /* target: double *, checked against [min, max] */
	CONFIG_BOOL,     /* target: bool *; true/false, 1/0, yes/no, on/off */
	CONFIG_CHOICE,   /* target: char ** ; value must be one of choices */
	CONFIG_ENDPOINT, /* target: char ** ; "host:port" with port 1..65535 */
};

struct config_option {
	const char *env;  /* "STEMEDB_DATA_DIR" */
	const char *flag; /* "data-dir", used as --data-dir=VALUE or --data-dir VALUE */
	enum config_kind kind;
	void *target;
	const char *default_value; /* NULL: no default (empty string for strings) */
	double min;
	double max;
	const char *const *choices; /* NULL-terminated, for CONFIG_CHOICE */
	const char *help;           /* says what it sets and in which unit */
};

/* Loads every option from argv and the environment. Also rejects STEMEDB_* variables
 * that no StemeDB program knows (a misspelling would otherwise be ignored) and unknown
 * flags. "--help" prints usage to stdout and sets *help_requested. Returns false with
 * a message in err on the first invalid value. */
bool config_load(const struct config_option *options, size_t count, int argc, char **argv,
                 bool *help_requested, char *err, size_t err_size);

void config_print_usage(FILE *out, const char *program, const char *summary,
                        const struct config_option *options, size_t count);

/* Splits "host:port" (IPv4, [IPv6] or a name). Returns false on a malformed value. */
bool config_split_endpoint(const char *endpoint, char *host, size_t host_size, uint16_t *port);

/* Releases the strings that config_load allocated. */
void config_free(const struct config_option *options, size_t count);

#endif
