/* query, skeptic and health: read commands that print a readable summary or, with
 * --json, the server's JSON unchanged. */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char query_help[] =
        "usage: stemedb-ctl query --subject S --predicate P [OPTIONS]\n"
        "\n"
        "Resolves the claims about S and P through a lens and prints the candidates,\n"
        "newest first, with the winner marked by '*'.\n"
        "\n"
        "Options:\n"
        "  --lens L          recency (default), confidence, consensus or authority\n"
        "  --as-of UNIX      only claims with timestamp <= UNIX (Unix seconds)\n"
        "  --tolerance T     relative tolerance from 0 to 1 for grouping equal numbers\n"
        "  --decay BOOL      true (default) weighs old claims down by their source class's\n"
        "                    half-life; false weighs every claim at its stated confidence\n"
        "  --json            print the server's JSON response\n";

static const char skeptic_help[] =
        "usage: stemedb-ctl skeptic --subject S --predicate P [OPTIONS]\n"
        "\n"
        "Shows whether the sources agree on S and P: the status (unanimous, agreed,\n"
        "contested, no_data), the conflict score from 0 to 1, and each claimed value\n"
        "with its share of the weight, source classes and agents.\n"
        "\n"
        "Options:\n"
        "  --names DIR       show agents by the names of the *.key files in DIR\n"
        "  --as-of UNIX      only claims with timestamp <= UNIX (Unix seconds)\n"
        "  --tolerance T     relative tolerance from 0 to 1 for grouping equal numbers\n"
        "  --decay BOOL      true (default) weighs old claims down by their source class's\n"
        "                    half-life; false weighs every claim at its stated confidence\n"
        "  --json            print the server's JSON response\n";

static const char health_help[] =
        "usage: stemedb-ctl health [--json]\n"
        "\n"
        "Prints the node's health. Exits 0 when the node is healthy, 1 when it reports\n"
        "degraded or unhealthy, 2 when it cannot be reached.\n";

enum read_option {
	OPT_SUBJECT = 1,
	OPT_PREDICATE,
	OPT_LENS,
	OPT_AS_OF,
	OPT_TOLERANCE,
	OPT_NAMES,
	OPT_DECAY,
	OPT_JSON,
	OPT_HELP,
};

static const struct option read_options[] = {
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"predicate", required_argument, NULL, OPT_PREDICATE},
        {"lens", required_argument, NULL, OPT_LENS},
        {"as-of", required_argument, NULL, OPT_AS_OF},
        {"tolerance", required_argument, NULL, OPT_TOLERANCE},
        {"names", required_argument, NULL, OPT_NAMES},
        {"decay", required_argument, NULL, OPT_DECAY},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
};

struct read_args {
	const char *subject;
	const char *predicate;
	const char *lens;
	const char *as_of;
	const char *tolerance;
	const char *names;
	const char *decay;
	bool json;
	bool help;
};

static bool lens_valid(const char *lens)
{
	static const char *const lenses[] = {"recency", "confidence", "consensus", "authority"};

	for (size_t i = 0; i < sizeof(lenses) / sizeof(lenses[0]); i++) {
		if (strcmp(lens, lenses[i]) == 0)
			return true;
	}
	ctl_error("query: invalid --lens \"%s\": expected recency, confidence, consensus or "
	          "authority",
	          lens);
	return false;
}

static bool check_values(const char *command, const struct read_args *args)
{
	uint64_t as_of;
	double tolerance;

	if (args->as_of != NULL && !ctl_parse_u64("--as-of", args->as_of, &as_of))
		return false;
	if (args->tolerance != NULL &&
	    !ctl_parse_confidence("--tolerance", args->tolerance, &tolerance))
		return false;
	if (args->lens != NULL && !lens_valid(args->lens))
		return false;
	if (args->decay != NULL && strcmp(args->decay, "true") != 0 &&
	    strcmp(args->decay, "false") != 0) {
		ctl_error("%s: invalid --decay \"%s\": expected true or false", command,
		          args->decay);
		return false;
	}
	return ctl_require(command, "--subject S", args->subject) &&
	       ctl_require(command, "--predicate P", args->predicate);
}

/* Parses the options of query or skeptic; allowed lists the option ids the command
 * takes, so that skeptic rejects --lens instead of ignoring it. */
static bool parse_read_args(const char *command, int argc, char **argv, unsigned allowed,
                            struct read_args *args)
{
	int opt;

	memset(args, 0, sizeof(*args));
	while ((opt = getopt_long(argc, argv, "", read_options, NULL)) != -1) {
		if (opt == '?' || (opt != OPT_HELP && !(allowed & (1u << opt)))) {
			if (opt != '?')
				ctl_error("%s: option %s does not apply here", command,
				          argv[optind - 1]);
			ctl_usage_error(command);
			return false;
		}
		args->subject = opt == OPT_SUBJECT ? optarg : args->subject;
		args->predicate = opt == OPT_PREDICATE ? optarg : args->predicate;
		args->lens = opt == OPT_LENS ? optarg : args->lens;
		args->as_of = opt == OPT_AS_OF ? optarg : args->as_of;
		args->tolerance = opt == OPT_TOLERANCE ? optarg : args->tolerance;
		args->names = opt == OPT_NAMES ? optarg : args->names;
		args->decay = opt == OPT_DECAY ? optarg : args->decay;
		args->json = args->json || opt == OPT_JSON;
		args->help = args->help || opt == OPT_HELP;
	}
	if (args->help)
		return true;
	if (optind < argc) {
		ctl_error("%s: unexpected argument \"%s\"", command, argv[optind]);
		return false;
	}
	return check_values(command, args);
}

static char *build_query(struct ctl_http *http, const struct read_args *args)
{
	char *query = NULL;

	ctl_http_query_add(http, &query, "subject", args->subject);
	ctl_http_query_add(http, &query, "predicate", args->predicate);
	if (args->lens != NULL)
		ctl_http_query_add(http, &query, "lens", args->lens);
	if (args->as_of != NULL)
		ctl_http_query_add(http, &query, "as_of", args->as_of);
	if (args->tolerance != NULL)
		ctl_http_query_add(http, &query, "tolerance", args->tolerance);
	if (args->decay != NULL)
		ctl_http_query_add(http, &query, "decay", args->decay);
	return query;
}

/* Runs a GET and leaves the 200 response in resp; otherwise reports and returns the
 * exit status. */
static int fetch(struct ctl_http *http, const char *command, const char *path, const char *query,
                 struct ctl_response *resp)
{
	ctl_http_request(http, "GET", path, query, NULL, resp);
	if (resp->status == 200 && resp->body != NULL)
		return CTL_EXIT_OK;
	return ctl_report_failure(command, resp);
}

static void print_candidate(const json_t *c, const char *winner_hash)
{
	const char *hash = json_string_value(json_object_get(c, "hash"));
	char value[64];

	ctl_format_value(json_object_get(c, "object"), value, sizeof(value));
	printf("%s %-28s %6.3f %9.3f %10.4g  %-13s %-12s %-11" JSON_INTEGER_FORMAT " %-6zu %.16s\n",
	       winner_hash != NULL && hash != NULL && strcmp(hash, winner_hash) == 0 ? "*" : " ",
	       value, json_number_value(json_object_get(c, "confidence")),
	       json_number_value(json_object_get(c, "effective_confidence")),
	       json_number_value(json_object_get(c, "score")),
	       json_string_value(json_object_get(c, "source_class")),
	       json_string_value(json_object_get(c, "lifecycle")),
	       json_integer_value(json_object_get(c, "timestamp")),
	       json_array_size(json_object_get(c, "agents")), hash != NULL ? hash : "?");
}

static void print_query(const json_t *body)
{
	const json_t *winner = json_object_get(body, "winner");
	const char *winner_hash = json_string_value(json_object_get(winner, "hash"));
	const json_t *candidates = json_object_get(body, "candidates");
	char value[64];
	size_t i;
	json_t *c;

	printf("%s %s (lens %s): %" JSON_INTEGER_FORMAT " candidates\n",
	       json_string_value(json_object_get(body, "subject")),
	       json_string_value(json_object_get(body, "predicate")),
	       json_string_value(json_object_get(body, "lens")),
	       json_integer_value(json_object_get(body, "candidate_count")));
	if (json_is_object(winner)) {
		ctl_format_value(json_object_get(winner, "object"), value, sizeof(value));
		printf("winner: %s (lens confidence %.3f)\n", value,
		       json_number_value(json_object_get(body, "confidence")));
	} else {
		printf("winner: none\n");
	}
	if (json_array_size(candidates) == 0)
		return;

	printf("\n  %-28s %6s %9s %10s  %-13s %-12s %-11s %-6s %s\n", "VALUE", "CONF", "EFFECTIVE",
	       "SCORE", "CLASS", "LIFECYCLE", "TIMESTAMP", "AGENTS", "HASH");
	json_array_foreach(candidates, i, c)
	{
		print_candidate(c, winner_hash);
	}
	if (json_is_true(json_object_get(body, "truncated")))
		printf("(list truncated; the server returned the newest candidates only)\n");
}

int ctl_cmd_query(struct ctl_http *http, int argc, char **argv)
{
	unsigned allowed = 1u << OPT_SUBJECT | 1u << OPT_PREDICATE | 1u << OPT_LENS |
	                   1u << OPT_AS_OF | 1u << OPT_TOLERANCE | 1u << OPT_DECAY | 1u << OPT_JSON;
	struct read_args args;
	struct ctl_response resp;
	char *query;
	int status;

	if (!parse_read_args("query", argc, argv, allowed, &args))
		return CTL_EXIT_USAGE;
	if (args.help) {
		fputs(query_help, stdout);
		return CTL_EXIT_OK;
	}

	query = build_query(http, &args);
	status = fetch(http, "query", "/v1/query", query, &resp);
	if (status == CTL_EXIT_OK && args.json)
		ctl_print_json(resp.body);
	else if (status == CTL_EXIT_OK)
		print_query(resp.body);
	ctl_response_free(&resp);
	free(query);
	return status;
}

/* Joins strings of a JSON array with ", ", mapping agent ids through names. */
static void join_list(const json_t *list, const json_t *names, char *out, size_t out_size)
{
	size_t i;
	json_t *item;
	size_t used = 0;

	out[0] = '\0';
	json_array_foreach(list, i, item)
	{
		const char *text = json_string_value(item);
		const char *name =
		        json_string_value(json_object_get(names, text != NULL ? text : ""));
		int n;

		if (names != NULL && name == NULL && text != NULL)
			n = snprintf(out + used, out_size - used, "%s%.12s…", i > 0 ? ", " : "",
			             text);
		else
			n = snprintf(out + used, out_size - used, "%s%s", i > 0 ? ", " : "",
			             name != NULL ? name : (text != NULL ? text : "?"));
		if (n < 0 || (size_t)n >= out_size - used)
			return;
		used += (size_t)n;
	}
}

static void print_skeptic(const json_t *body, const json_t *names)
{
	const json_t *claims = json_object_get(body, "claims");
	char value[64];
	char classes[128];
	char agents[512];
	size_t i;
	json_t *claim;

	printf("%s %s: %s (conflict score %.3f), %" JSON_INTEGER_FORMAT
	       " claims from %" JSON_INTEGER_FORMAT " assertions\n",
	       json_string_value(json_object_get(body, "subject")),
	       json_string_value(json_object_get(body, "predicate")),
	       json_string_value(json_object_get(body, "status")),
	       json_number_value(json_object_get(body, "conflict_score")),
	       json_integer_value(json_object_get(body, "claim_count")),
	       json_integer_value(json_object_get(body, "candidate_count")));
	if (json_array_size(claims) == 0)
		return;

	printf("\n  %6s  %-28s %-24s %s\n", "SHARE", "VALUE", "SOURCE CLASSES", "AGENTS");
	json_array_foreach(claims, i, claim)
	{
		ctl_format_value(json_object_get(claim, "value"), value, sizeof(value));
		join_list(json_object_get(claim, "source_classes"), NULL, classes, sizeof(classes));
		join_list(json_object_get(claim, "agents"), names, agents, sizeof(agents));
		printf("  %5.1f%%  %-28s %-24s %s\n",
		       100.0 * json_number_value(json_object_get(claim, "share")), value, classes,
		       agents);
	}
}

int ctl_cmd_skeptic(struct ctl_http *http, int argc, char **argv)
{
	unsigned allowed = 1u << OPT_SUBJECT | 1u << OPT_PREDICATE | 1u << OPT_AS_OF |
	                   1u << OPT_TOLERANCE | 1u << OPT_NAMES | 1u << OPT_DECAY | 1u << OPT_JSON;
	struct read_args args;
	struct ctl_response resp = {0};
	json_t *names = NULL;
	char *query = NULL;
	int status = CTL_EXIT_USAGE;

	if (!parse_read_args("skeptic", argc, argv, allowed, &args))
		return CTL_EXIT_USAGE;
	if (args.help) {
		fputs(skeptic_help, stdout);
		return CTL_EXIT_OK;
	}
	if (args.names != NULL && (names = ctl_key_names(args.names)) == NULL)
		goto done;

	query = build_query(http, &args);
	status = fetch(http, "skeptic", "/v1/skeptic", query, &resp);
	if (status == CTL_EXIT_OK && args.json)
		ctl_print_json(resp.body);
	else if (status == CTL_EXIT_OK)
		print_skeptic(resp.body, names);

done:
	ctl_response_free(&resp);
	json_decref(names);
	free(query);
	return status;
}

static void print_health(const json_t *body)
{
	const json_t *wal = json_object_get(body, "wal");

	printf("status:      %s\n", json_string_value(json_object_get(body, "status")));
	printf("version:     %s\n", json_string_value(json_object_get(body, "version")));
	printf("ready:       %s\n", json_is_true(json_object_get(body, "ready")) ? "yes" : "no");
	printf("uptime:      %" JSON_INTEGER_FORMAT " s\n",
	       json_integer_value(json_object_get(body, "uptime_seconds")));
	printf("assertions:  %" JSON_INTEGER_FORMAT "\n",
	       json_integer_value(json_object_get(body, "assertions_count")));
	printf("durability:  %s\n", json_string_value(json_object_get(body, "durability")));
	if (json_is_object(wal))
		printf("wal:         %s, end offset %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
		       " segments\n",
		       json_is_true(json_object_get(wal, "healthy")) ? "healthy" : "failed",
		       json_integer_value(json_object_get(wal, "end_offset")),
		       json_integer_value(json_object_get(wal, "segments")));
}

int ctl_cmd_health(struct ctl_http *http, int argc, char **argv)
{
	static const struct option options[] = {
	        {"json", no_argument, NULL, OPT_JSON},
	        {"help", no_argument, NULL, OPT_HELP},
	        {NULL, 0, NULL, 0},
	};
	struct ctl_response resp;
	bool json = false;
	int opt;
	int status;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == OPT_HELP) {
			fputs(health_help, stdout);
			return CTL_EXIT_OK;
		}
		if (opt != OPT_JSON)
			return ctl_usage_error("health");
		json = true;
	}
	if (optind < argc) {
		ctl_error("health: unexpected argument \"%s\"", argv[optind]);
		return CTL_EXIT_USAGE;
	}

	/* 503 carries a health body too: degraded and unhealthy nodes still describe
	 * themselves. */
	ctl_http_request(http, "GET", "/v1/health", NULL, NULL, &resp);
	if (resp.body == NULL || json_object_get(resp.body, "status") == NULL) {
		status = ctl_report_failure("health", &resp);
		ctl_response_free(&resp);
		return status;
	}
	if (json)
		ctl_print_json(resp.body);
	else
		print_health(resp.body);
	status = resp.status == 200 ? CTL_EXIT_OK : CTL_EXIT_REJECTED;
	ctl_response_free(&resp);
	return status;
}
