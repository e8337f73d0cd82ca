/* assert: builds one assertion from options, signs it with the agent key and posts it
 * to /v1/assert. The signing step is shared with the importer. */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"

static const char assert_help[] =
        "usage: stemedb-ctl assert --key FILE --subject S --predicate P VALUE [OPTIONS]\n"
        "\n"
        "Signs one assertion with the agent key in FILE and writes it. Prints the\n"
        "assertion hash and \"created\" or \"exists\", or \"quarantined\" and the reason.\n"
        "\n"
        "VALUE, exactly one of:\n"
        "  --text V            text value (UTF-8)\n"
        "  --number N          finite decimal number, e.g. 1098581 or 6.94\n"
        "  --bool true|false   boolean value\n"
        "  --reference R       reference to another subject, e.g. country/BO\n"
        "\n"
        "Options:\n"
        "  --confidence C      confidence from 0 to 1 (default 0.9)\n"
        "  --source-class NAME regulatory, clinical, observational, expert, community or\n"
        "                      anecdotal (default anecdotal)\n"
        "  --lifecycle NAME    proposed, under_review, approved, deprecated or rejected\n"
        "                      (default proposed)\n"
        "  --timestamp UNIX    claim time in Unix seconds (default now)\n"
        "  --parent HASH       hash of the assertion this one revises or refutes\n"
        "  --source-hash HASH  hash of the evidence (default all zeros)\n"
        "  --epoch HASH        epoch id this claim belongs to\n";

enum assert_option {
	OPT_KEY = 1,
	OPT_SUBJECT,
	OPT_PREDICATE,
	OPT_TEXT,
	OPT_NUMBER,
	OPT_BOOL,
	OPT_REFERENCE,
	OPT_CONFIDENCE,
	OPT_SOURCE_CLASS,
	OPT_LIFECYCLE,
	OPT_TIMESTAMP,
	OPT_PARENT,
	OPT_SOURCE_HASH,
	OPT_EPOCH,
	OPT_HELP,
};

static const struct option assert_options[] = {
        {"key", required_argument, NULL, OPT_KEY},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"predicate", required_argument, NULL, OPT_PREDICATE},
        {"text", required_argument, NULL, OPT_TEXT},
        {"number", required_argument, NULL, OPT_NUMBER},
        {"bool", required_argument, NULL, OPT_BOOL},
        {"reference", required_argument, NULL, OPT_REFERENCE},
        {"confidence", required_argument, NULL, OPT_CONFIDENCE},
        {"source-class", required_argument, NULL, OPT_SOURCE_CLASS},
        {"lifecycle", required_argument, NULL, OPT_LIFECYCLE},
        {"timestamp", required_argument, NULL, OPT_TIMESTAMP},
        {"parent", required_argument, NULL, OPT_PARENT},
        {"source-hash", required_argument, NULL, OPT_SOURCE_HASH},
        {"epoch", required_argument, NULL, OPT_EPOCH},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
};

struct assert_args {
	const char *key_path;
	const char *subject;
	const char *predicate;
	const char *value;
	int value_option; /* OPT_TEXT .. OPT_REFERENCE, 0 when none given */
	double confidence;
	uint8_t source_class;
	uint8_t lifecycle;
	uint64_t timestamp;
	bool has_parent;
	uint8_t parent[STEMEDB_HASH_LEN];
	uint8_t source_hash[STEMEDB_HASH_LEN];
	bool has_epoch;
	uint8_t epoch[STEMEDB_HASH_LEN];
};

json_t *ctl_sign_assertion(struct assertion *a, const struct ctl_key *key,
                           char hash_hex[2 * STEMEDB_HASH_LEN + 1])
{
	uint8_t hash[STEMEDB_HASH_LEN];

	if (!assertion_hash(a, hash) || !assertion_sign(a, hash, key->secret_key, a->timestamp))
		return NULL;
	hex_encode(hash, sizeof(hash), hash_hex);
	return assertion_to_json(a, hash);
}

static bool set_value_option(struct assert_args *args, int option, const char *value)
{
	if (args->value_option != 0) {
		ctl_error("assert: give exactly one of --text, --number, --bool, --reference");
		return false;
	}
	args->value_option = option;
	args->value = value;
	return true;
}

/* Handles one parsed option; returns false after printing an error. */
static bool apply_option(struct assert_args *args, int opt)
{
	switch (opt) {
	case OPT_KEY:
		args->key_path = optarg;
		return true;
	case OPT_SUBJECT:
		args->subject = optarg;
		return true;
	case OPT_PREDICATE:
		args->predicate = optarg;
		return true;
	case OPT_TEXT:
	case OPT_NUMBER:
	case OPT_BOOL:
	case OPT_REFERENCE:
		return set_value_option(args, opt, optarg);
	case OPT_CONFIDENCE:
		return ctl_parse_confidence("--confidence", optarg, &args->confidence);
	case OPT_SOURCE_CLASS:
		return ctl_parse_source_class("--source-class", optarg, &args->source_class);
	case OPT_LIFECYCLE:
		return ctl_parse_lifecycle("--lifecycle", optarg, &args->lifecycle);
	case OPT_TIMESTAMP:
		return ctl_parse_u64("--timestamp", optarg, &args->timestamp);
	case OPT_PARENT:
		args->has_parent = true;
		return ctl_parse_hash("--parent", optarg, args->parent);
	case OPT_SOURCE_HASH:
		return ctl_parse_hash("--source-hash", optarg, args->source_hash);
	case OPT_EPOCH:
		args->has_epoch = true;
		return ctl_parse_hash("--epoch", optarg, args->epoch);
	default:
		return false;
	}
}

static bool set_object(struct object_value *o, const struct assert_args *args)
{
	char *end;

	switch (args->value_option) {
	case OPT_TEXT:
		object_set_text(o, OBJECT_TEXT, args->value, strlen(args->value));
		return true;
	case OPT_REFERENCE:
		object_set_text(o, OBJECT_REFERENCE, args->value, strlen(args->value));
		return true;
	case OPT_BOOL:
		o->type = OBJECT_BOOLEAN;
		o->boolean = strcmp(args->value, "true") == 0;
		if (o->boolean || strcmp(args->value, "false") == 0)
			return true;
		ctl_error("assert: invalid --bool \"%s\": expected true or false", args->value);
		return false;
	default:
		o->type = OBJECT_NUMBER;
		errno = 0;
		o->number = strtod(args->value, &end);
		if (args->value[0] != '\0' && *end == '\0' && errno == 0 && isfinite(o->number))
			return true;
		ctl_error("assert: invalid --number \"%s\": expected a finite decimal number "
		          "such as 1098581 or 6.94",
		          args->value);
		return false;
	}
}

static bool build_assertion(const struct assert_args *args, struct assertion *a)
{
	const char *field = NULL;
	char message[256];

	assertion_set_subject(a, args->subject, strlen(args->subject));
	assertion_set_predicate(a, args->predicate, strlen(args->predicate));
	if (!set_object(&a->object, args))
		return false;
	a->confidence_micro = confidence_to_micro(args->confidence);
	a->source_class = args->source_class;
	a->lifecycle = args->lifecycle;
	memcpy(a->source_hash, args->source_hash, STEMEDB_HASH_LEN);
	a->has_parent = args->has_parent;
	memcpy(a->parent_hash, args->parent, STEMEDB_HASH_LEN);
	a->has_epoch = args->has_epoch;
	memcpy(a->epoch, args->epoch, STEMEDB_HASH_LEN);
	a->timestamp = args->timestamp;

	if (!assertion_validate(a, &field, message, sizeof(message))) {
		ctl_error("assert: invalid %s: %s", field != NULL ? field : "assertion", message);
		return false;
	}
	return true;
}

static int post_assertion(struct ctl_http *http, const json_t *body, const char *local_hash)
{
	struct ctl_response resp;
	const char *hash;
	const char *status;
	int exit_status = CTL_EXIT_OK;

	ctl_http_request(http, "POST", "/v1/assert", NULL, body, &resp);
	/* 202: stored in quarantine by content defense, printed with its reason. */
	if (resp.status != 200 && resp.status != 201 && resp.status != 202) {
		exit_status = ctl_report_failure("assert", &resp);
		goto done;
	}
	hash = json_string_value(json_object_get(resp.body, "hash"));
	status = json_string_value(json_object_get(resp.body, "status"));
	if (hash == NULL || status == NULL) {
		ctl_error("assert: response has no \"hash\" or \"status\" (HTTP %ld)", resp.status);
		exit_status = CTL_EXIT_USAGE;
		goto done;
	}
	if (strcmp(hash, local_hash) != 0)
		ctl_error("warning: the server stored hash %s but the local hash is %s", hash,
		          local_hash);
	if (resp.status == 202)
		printf("%s %s %s\n", hash, status,
		       json_string_value(json_object_get(resp.body, "reason")) != NULL
		               ? json_string_value(json_object_get(resp.body, "reason"))
		               : "unknown");
	else
		printf("%s %s\n", hash, status);

done:
	ctl_response_free(&resp);
	return exit_status;
}

static bool parse_assert_args(int argc, char **argv, struct assert_args *args, bool *help)
{
	int opt;

	memset(args, 0, sizeof(*args));
	args->confidence = 0.9;
	args->source_class = SOURCE_ANECDOTAL;
	args->lifecycle = LIFECYCLE_PROPOSED;
	args->timestamp = (uint64_t)time(NULL);
	*help = false;
	while ((opt = getopt_long(argc, argv, "", assert_options, NULL)) != -1) {
		if (opt == OPT_HELP) {
			*help = true;
			return true;
		}
		if (opt == '?') {
			ctl_usage_error("assert");
			return false;
		}
		if (!apply_option(args, opt))
			return false;
	}
	if (optind < argc) {
		ctl_error("assert: unexpected argument \"%s\"; values go after --text, "
		          "--number, --bool or --reference",
		          argv[optind]);
		return false;
	}
	if (args->value_option == 0) {
		ctl_error("assert: missing value; give one of --text, --number, --bool, "
		          "--reference");
		return false;
	}
	return ctl_require("assert", "--key FILE", args->key_path) &&
	       ctl_require("assert", "--subject S", args->subject) &&
	       ctl_require("assert", "--predicate P", args->predicate);
}

int ctl_cmd_assert(struct ctl_http *http, int argc, char **argv)
{
	struct assert_args args;
	struct ctl_key key;
	struct assertion a;
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	json_t *body = NULL;
	bool help;
	int status = CTL_EXIT_USAGE;

	if (!parse_assert_args(argc, argv, &args, &help))
		return CTL_EXIT_USAGE;
	if (help) {
		fputs(assert_help, stdout);
		return CTL_EXIT_OK;
	}
	if (!ctl_key_load(args.key_path, &key))
		return CTL_EXIT_USAGE;
	ctl_http_set_agent(http, key.agent_id);

	assertion_init(&a);
	if (!build_assertion(&args, &a))
		goto done;
	body = ctl_sign_assertion(&a, &key, hash_hex);
	if (body == NULL) {
		ctl_error("assert: signing failed");
		goto done;
	}
	status = post_assertion(http, body, hash_hex);

done:
	json_decref(body);
	assertion_free(&a);
	ctl_key_wipe(&key);
	return status;
}
