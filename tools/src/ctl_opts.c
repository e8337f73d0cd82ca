/* Option value parsers shared by the commands. Every message names the option, the
 * value and what would be accepted. */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "stemedb/hex.h"

bool ctl_parse_u64(const char *option, const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (text[0] == '\0' || text[0] == '-' || text[0] == '+' || *end != '\0' || errno != 0) {
		ctl_error("invalid %s \"%s\": expected a non-negative integer such as 1700000000",
		          option, text);
		return false;
	}
	*out = value;
	return true;
}

bool ctl_parse_size(const char *option, const char *text, size_t min, size_t max, size_t *out)
{
	uint64_t value;

	if (!ctl_parse_u64(option, text, &value))
		return false;
	if (value < min || value > max) {
		ctl_error("invalid %s %s: expected an integer from %zu to %zu", option, text, min,
		          max);
		return false;
	}
	*out = (size_t)value;
	return true;
}

bool ctl_parse_confidence(const char *option, const char *text, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(text, &end);
	if (text[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(*out) || *out < 0.0 ||
	    *out > 1.0) {
		ctl_error("invalid %s \"%s\": expected a number from 0 to 1, e.g. 0.9", option,
		          text);
		return false;
	}
	return true;
}

bool ctl_parse_hash(const char *option, const char *text, uint8_t out[STEMEDB_HASH_LEN])
{
	if (!hex_decode(text, strlen(text), out, STEMEDB_HASH_LEN)) {
		ctl_error("invalid %s \"%s\": expected 64 hex characters (a BLAKE2b-256 hash)",
		          option, text);
		return false;
	}
	return true;
}

bool ctl_parse_source_class(const char *option, const char *text, uint8_t *out)
{
	if (!source_class_parse(text, out)) {
		ctl_error("invalid %s \"%s\": expected regulatory, clinical, observational, "
		          "expert, community or anecdotal",
		          option, text);
		return false;
	}
	return true;
}

bool ctl_parse_lifecycle(const char *option, const char *text, uint8_t *out)
{
	if (!lifecycle_parse(text, out)) {
		ctl_error("invalid %s \"%s\": expected proposed, under_review, approved, "
		          "deprecated or rejected",
		          option, text);
		return false;
	}
	return true;
}

bool ctl_require(const char *command, const char *option, const char *value)
{
	if (value != NULL)
		return true;
	ctl_error("%s: missing %s; run `stemedb-ctl %s --help`", command, option, command);
	return false;
}

int ctl_usage_error(const char *command)
{
	/* getopt_long has already printed which option is unknown or lacks a value. */
	ctl_error("%s: invalid options; run `stemedb-ctl %s --help`", command, command);
	return CTL_EXIT_USAGE;
}
