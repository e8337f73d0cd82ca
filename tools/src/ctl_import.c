/* import: turns the records of a JSON or JSON Lines file into signed assertions through
 * a mapping (docs/importer.md) and writes them with /v1/assert/batch.
 *
 * Every assertion of one import carries the same deterministic timestamp and the
 * BLAKE2b-256 of the data file as its source hash, so importing the same file again
 * yields the same hashes and the server reports them as existing. */

#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "stemedb/log.h"
#include "stemedb/mapping.h"

#define IMPORT_DEFAULT_BATCH 500
#define IMPORT_MAX_BATCH     1000 /* the server's per-request item limit */
/* Attempts per batch for connection failures, 429 and 503; the waits double from 0.5 s
 * to at most 8 s, so a node gets about 15 s to come back before the import gives up. */
#define IMPORT_MAX_ATTEMPTS    6
#define IMPORT_FIRST_BACKOFF_S 0.5
#define IMPORT_MAX_BACKOFF_S   8.0
/* Messages kept per rejection code for the summary. */
#define IMPORT_EXAMPLES_PER_CODE 3

static const char import_help[] =
        "usage: stemedb-ctl import --mapping FILE --key KEY --source-class CLASS [OPTIONS] DATA\n"
        "\n"
        "Reads the records of DATA (JSON, or JSON Lines for .jsonl and .ndjson files),\n"
        "builds one signed assertion per record and mapped field, and writes them in\n"
        "batches. docs/importer.md describes the mapping format.\n"
        "\n"
        "Options:\n"
        "  --mapping FILE       mapping document (JSON)\n"
        "  --key KEY            agent key file that signs every assertion\n"
        "  --source-class CLASS regulatory, clinical, observational, expert, community or\n"
        "                       anecdotal\n"
        "  --batch-size N       assertions per request, 1 to 1000 (default 500)\n"
        "  --timestamp UNIX     claim time in Unix seconds; overrides the mapping's\n"
        "                       \"timestamp\" (one of the two is required)\n"
        "  --jsonl              read DATA as JSON Lines whatever its extension\n"
        "  --no-progress        never draw the progress line\n"
        "\n"
        "Exit status: 0 nothing rejected, 1 some items rejected, 2 usage or transport\n"
        "error.\n";

enum import_option {
	OPT_MAPPING = 1,
	OPT_KEY,
	OPT_SOURCE_CLASS,
	OPT_BATCH_SIZE,
	OPT_TIMESTAMP,
	OPT_JSONL,
	OPT_NO_PROGRESS,
	OPT_HELP,
};

struct import_args {
	const char *mapping_path;
	const char *key_path;
	const char *data_path;
	bool has_source_class;
	uint8_t source_class;
	size_t batch_size;
	bool has_timestamp;
	uint64_t timestamp;
	bool jsonl;
	bool no_progress;
	bool help;
};

/* Origin of a batch item, named in rejection messages. */
struct item_origin {
	size_t record;
	const char *predicate;
	char *subject;
	char hash[2 * STEMEDB_HASH_LEN + 1];
};

struct import_run {
	struct ctl_http *http;
	const struct import_args *args;
	struct mapping mapping;
	struct ctl_key key;
	uint64_t timestamp;
	uint8_t source_hash[STEMEDB_HASH_LEN];
	json_t *records;
	json_t *batch; /* array of assertion objects waiting to be sent */
	struct item_origin *origins;
	size_t batch_number;
	struct ctl_progress progress;
	bool hash_mismatch_reported;

	size_t built;
	size_t created;
	size_t existing;
	size_t rejected;
	size_t quarantined; /* stored but held back from the index by content defense */
	size_t skipped;
	size_t without_subject;
	json_t *subject_examples; /* first reasons why a record had no subject */
	json_t *skips;            /* predicate -> count */
	json_t *rejections;       /* code -> {"count", "examples": [...]} */
};

static bool apply_import_option(struct import_args *args, int opt)
{
	switch (opt) {
	case OPT_MAPPING:
		args->mapping_path = optarg;
		return true;
	case OPT_KEY:
		args->key_path = optarg;
		return true;
	case OPT_SOURCE_CLASS:
		args->has_source_class = true;
		return ctl_parse_source_class("--source-class", optarg, &args->source_class);
	case OPT_BATCH_SIZE:
		return ctl_parse_size("--batch-size", optarg, 1, IMPORT_MAX_BATCH,
		                      &args->batch_size);
	case OPT_TIMESTAMP:
		args->has_timestamp = true;
		return ctl_parse_u64("--timestamp", optarg, &args->timestamp);
	case OPT_JSONL:
		args->jsonl = true;
		return true;
	case OPT_NO_PROGRESS:
		args->no_progress = true;
		return true;
	case OPT_HELP:
		args->help = true;
		return true;
	default:
		ctl_usage_error("import");
		return false;
	}
}

static bool parse_import_args(int argc, char **argv, struct import_args *args)
{
	static const struct option options[] = {
	        {"mapping", required_argument, NULL, OPT_MAPPING},
	        {"key", required_argument, NULL, OPT_KEY},
	        {"source-class", required_argument, NULL, OPT_SOURCE_CLASS},
	        {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
	        {"timestamp", required_argument, NULL, OPT_TIMESTAMP},
	        {"jsonl", no_argument, NULL, OPT_JSONL},
	        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	        {"help", no_argument, NULL, OPT_HELP},
	        {NULL, 0, NULL, 0},
	};
	int opt;

	memset(args, 0, sizeof(*args));
	args->batch_size = IMPORT_DEFAULT_BATCH;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (!apply_import_option(args, opt))
			return false;
	}
	if (args->help)
		return true;
	if (optind + 1 != argc) {
		ctl_error("import: expected exactly one DATA file after the options, got %d; "
		          "run `stemedb-ctl import --help`",
		          argc - optind);
		return false;
	}
	args->data_path = argv[optind];
	if (!args->has_source_class) {
		ctl_error("import: missing --source-class CLASS; name the class of this source, "
		          "e.g. expert or community");
		return false;
	}
	return ctl_require("import", "--mapping FILE", args->mapping_path) &&
	       ctl_require("import", "--key KEY", args->key_path);
}

static bool has_extension(const char *path, const char *ext)
{
	size_t len = strlen(path);
	size_t ext_len = strlen(ext);

	return len > ext_len && strcmp(path + len - ext_len, ext) == 0;
}

static bool hash_file(const char *path, uint8_t out[STEMEDB_HASH_LEN])
{
	crypto_generichash_state state;
	unsigned char chunk[65536];
	FILE *f = fopen(path, "rb");
	size_t n;
	bool ok;

	if (f == NULL) {
		ctl_error("import: fopen(\"%s\") failed: %s", path, strerror(errno));
		return false;
	}
	crypto_generichash_init(&state, NULL, 0, STEMEDB_HASH_LEN);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		crypto_generichash_update(&state, chunk, n);
	ok = !ferror(f);
	if (!ok)
		ctl_error("import: reading \"%s\" failed: %s", path, strerror(errno));
	fclose(f);
	crypto_generichash_final(&state, out, STEMEDB_HASH_LEN);
	return ok;
}

static void count_skip(struct import_run *run, const char *predicate)
{
	json_t *count = json_object_get(run->skips, predicate);

	run->skipped++;
	json_object_set_new(run->skips, predicate,
	                    json_integer(count != NULL ? json_integer_value(count) + 1 : 1));
}

static void count_rejection(struct import_run *run, const char *code, const char *message)
{
	json_t *entry = json_object_get(run->rejections, code);
	json_t *examples;

	run->rejected++;
	if (entry == NULL) {
		entry = json_pack("{s:i, s:[]}", "count", 0, "examples");
		json_object_set_new(run->rejections, code, entry);
	}
	json_object_set_new(entry, "count",
	                    json_integer(json_integer_value(json_object_get(entry, "count")) + 1));
	examples = json_object_get(entry, "examples");
	if (json_array_size(examples) < IMPORT_EXAMPLES_PER_CODE)
		json_array_append_new(examples, json_string(message));
}

static void record_rejection(struct import_run *run, size_t record, const char *subject,
                             const char *predicate, const char *code, const char *reason)
{
	char message[512];

	snprintf(message, sizeof(message), "record %zu (%s %s): %s", record,
	         subject != NULL ? subject : "no subject", predicate, reason);
	count_rejection(run, code, message);
}

static void clear_batch(struct import_run *run)
{
	for (size_t i = 0; i < json_array_size(run->batch); i++) {
		free(run->origins[i].subject);
		run->origins[i].subject = NULL;
	}
	json_array_clear(run->batch);
}

/* Records the server's verdict on item i of the batch. */
static void apply_result(struct import_run *run, const json_t *result, size_t i)
{
	const struct item_origin *origin = &run->origins[i];
	const char *status = json_string_value(json_object_get(result, "status"));
	const char *hash = json_string_value(json_object_get(result, "hash"));
	const json_t *error = json_object_get(result, "error");
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *message = json_string_value(json_object_get(error, "message"));

	if (status != NULL && strcmp(status, "created") == 0)
		run->created++;
	else if (status != NULL && strcmp(status, "exists") == 0)
		run->existing++;
	else if (status != NULL && strcmp(status, "quarantined") == 0)
		run->quarantined++;
	else {
		record_rejection(run, origin->record, origin->subject, origin->predicate,
		                 code != NULL ? code : "unknown",
		                 message != NULL ? message : "rejected without a message");
		return;
	}

	if (hash != NULL && strcmp(hash, origin->hash) != 0 && !run->hash_mismatch_reported) {
		log_warn("import: server hash %s differs from local hash %s for record %zu", hash,
		         origin->hash, origin->record);
		run->hash_mismatch_reported = true;
	}
}

static int apply_batch_response(struct import_run *run, const json_t *body)
{
	const json_t *results = json_object_get(body, "results");
	size_t count = json_array_size(run->batch);
	bool *seen = calloc(count, sizeof(*seen));
	size_t i;
	json_t *result;
	int status = CTL_EXIT_OK;

	if (seen == NULL)
		abort();
	json_array_foreach(results, i, result)
	{
		json_int_t index = json_integer_value(json_object_get(result, "index"));

		if (!json_is_integer(json_object_get(result, "index")) || index < 0 ||
		    (size_t)index >= count || seen[index]) {
			ctl_error("import: batch %zu: result %zu has a missing, out-of-range or "
			          "repeated index",
			          run->batch_number, i);
			status = CTL_EXIT_USAGE;
			break;
		}
		seen[index] = true;
		apply_result(run, result, (size_t)index);
	}
	if (status == CTL_EXIT_OK && json_array_size(results) != count) {
		ctl_error("import: batch %zu: the server answered %zu results for %zu items",
		          run->batch_number, json_array_size(results), count);
		status = CTL_EXIT_USAGE;
	}
	free(seen);
	return status;
}

/* A whole-batch 4xx rejects every item of it with the same error. */
static void reject_batch(struct import_run *run, const struct ctl_response *resp)
{
	const json_t *error = json_object_get(resp->body, "error");
	const char *code = json_string_value(json_object_get(error, "code"));
	const char *message = json_string_value(json_object_get(error, "message"));
	char fallback[32];

	/* The server's HTTP parser rejects an oversized body with a bare 413 and no JSON. */
	if (code == NULL && resp->status == 413) {
		code = "payload_too_large";
		message = "the batch body exceeds the server's limit; lower --batch-size";
	}
	snprintf(fallback, sizeof(fallback), "http_%ld", resp->status);
	for (size_t i = 0; i < json_array_size(run->batch); i++)
		record_rejection(run, run->origins[i].record, run->origins[i].subject,
		                 run->origins[i].predicate, code != NULL ? code : fallback,
		                 message != NULL ? message : "the server rejected the whole batch");
}

static void wait_seconds(double seconds)
{
	struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool should_retry(const struct ctl_response *resp)
{
	return (resp->transport && resp->retryable) || resp->status == 503 || resp->status == 429;
}

/* Sends the pending batch, retrying connection failures, 429 (rate limited) and 503
 * with backoff. */
static int send_batch(struct import_run *run)
{
	json_t *body = json_pack("{s:O}", "assertions", run->batch);
	struct ctl_response resp = {0};
	double backoff = IMPORT_FIRST_BACKOFF_S;
	char reason[64];
	int status;

	run->batch_number++;
	for (int attempt = 1;; attempt++) {
		ctl_http_request(run->http, "POST", "/v1/assert/batch", NULL, body, &resp);
		if (!should_retry(&resp) || attempt == IMPORT_MAX_ATTEMPTS)
			break;
		snprintf(reason, sizeof(reason), "HTTP %ld %s", resp.status,
		         resp.status == 429 ? "rate limited" : "unavailable");
		log_warn("import: batch %zu attempt %d of %d failed (%s); retrying in %.1f s",
		         run->batch_number, attempt, IMPORT_MAX_ATTEMPTS,
		         resp.transport ? resp.error : reason, backoff);
		ctl_response_free(&resp);
		wait_seconds(backoff);
		backoff = backoff * 2 > IMPORT_MAX_BACKOFF_S ? IMPORT_MAX_BACKOFF_S : backoff * 2;
	}

	if (resp.status == 200 && resp.body != NULL)
		status = apply_batch_response(run, resp.body);
	else if (resp.status >= 400 && resp.status < 500) {
		reject_batch(run, &resp);
		status = CTL_EXIT_OK;
	} else
		status = ctl_report_failure("import", &resp);

	clear_batch(run);
	ctl_response_free(&resp);
	json_decref(body);
	return status;
}

static void fill_assertion(struct import_run *run, const char *subject,
                           const struct mapping_predicate *p, struct object_value *value,
                           struct assertion *a)
{
	assertion_set_subject(a, subject, strlen(subject));
	assertion_set_predicate(a, p->predicate, strlen(p->predicate));
	a->object = *value;
	value->text = NULL; /* now owned by a */
	a->confidence_micro = confidence_to_micro(p->confidence);
	a->source_class = run->args->source_class;
	a->lifecycle = LIFECYCLE_PROPOSED;
	memcpy(a->source_hash, run->source_hash, STEMEDB_HASH_LEN);
	a->timestamp = run->timestamp;
}

/* Signs one assertion and queues it; invalid ones are counted as rejected here. */
static void queue_assertion(struct import_run *run, size_t record, const char *subject,
                            const struct mapping_predicate *p, struct object_value *value)
{
	struct assertion a;
	const char *field = NULL;
	char reason[256];
	struct item_origin *origin = &run->origins[json_array_size(run->batch)];
	json_t *json;

	assertion_init(&a);
	fill_assertion(run, subject, p, value, &a);
	if (!assertion_validate(&a, &field, reason, sizeof(reason))) {
		record_rejection(run, record, subject, p->predicate, "out_of_range", reason);
		goto done;
	}
	json = ctl_sign_assertion(&a, &run->key, origin->hash);
	if (json == NULL) {
		record_rejection(run, record, subject, p->predicate, "out_of_range",
		                 "the assertion cannot be encoded");
		goto done;
	}
	origin->record = record;
	origin->predicate = p->predicate;
	origin->subject = strdup(subject);
	json_array_append_new(run->batch, json);
	run->built++;

done:
	assertion_free(&a);
}

static int map_predicate(struct import_run *run, size_t record_index, const json_t *record,
                         const char *subject, const struct mapping_predicate *p)
{
	struct object_value value = {0};
	char reason[256];
	enum mapping_result result;

	result = mapping_value(&run->mapping, p, record, &value, reason, sizeof(reason));
	if (result == MAPPING_SKIPPED) {
		count_skip(run, p->predicate);
		return CTL_EXIT_OK;
	}
	if (result == MAPPING_INVALID) {
		record_rejection(run, record_index, subject, p->predicate, "invalid_value", reason);
		return CTL_EXIT_OK;
	}

	queue_assertion(run, record_index, subject, p, &value);
	free(value.text);
	if (json_array_size(run->batch) < run->args->batch_size)
		return CTL_EXIT_OK;
	return send_batch(run);
}

static int map_record(struct import_run *run, size_t index, const json_t *record)
{
	char *subject = NULL;
	char reason[256];
	enum mapping_result result;
	int status = CTL_EXIT_OK;

	result = mapping_subject(&run->mapping, record, &subject, reason, sizeof(reason));
	if (result == MAPPING_SKIPPED) {
		run->without_subject++;
		if (json_array_size(run->subject_examples) < IMPORT_EXAMPLES_PER_CODE)
			json_array_append_new(run->subject_examples,
			                      json_sprintf("record %zu: %s", index, reason));
	}
	if (result != MAPPING_OK) {
		/* Without a subject none of the record's predicates can be written. */
		for (size_t i = 0; i < run->mapping.predicate_count; i++) {
			if (result == MAPPING_SKIPPED)
				count_skip(run, run->mapping.predicates[i].predicate);
			else
				record_rejection(run, index, NULL,
				                 run->mapping.predicates[i].predicate,
				                 "invalid_value", reason);
		}
		return CTL_EXIT_OK;
	}

	for (size_t i = 0; i < run->mapping.predicate_count && status == CTL_EXIT_OK; i++)
		status = map_predicate(run, index, record, subject, &run->mapping.predicates[i]);
	free(subject);
	return status;
}

static int import_records(struct import_run *run)
{
	size_t total = json_array_size(run->records);
	int status = CTL_EXIT_OK;

	ctl_progress_start(&run->progress, total, !run->args->no_progress && isatty(STDERR_FILENO));
	for (size_t i = 0; i < total && status == CTL_EXIT_OK; i++) {
		status = map_record(run, i, json_array_get(run->records, i));
		ctl_progress_update(&run->progress, i + 1, false);
	}
	if (status == CTL_EXIT_OK && json_array_size(run->batch) > 0)
		status = send_batch(run);
	ctl_progress_finish(&run->progress, total);
	return status;
}

static void print_counts(const char *title, const json_t *counts)
{
	const char *key;
	json_t *value;

	if (json_object_size(counts) == 0)
		return;
	printf("%s:", title);
	json_object_foreach((json_t *)counts, key, value)
	{
		printf(" %s %" JSON_INTEGER_FORMAT ";", key, json_integer_value(value));
	}
	printf("\n");
}

static void print_summary(const struct import_run *run)
{
	const char *code;
	json_t *entry;

	printf("imported %s: %zu records, %zu assertions sent\n", run->args->data_path,
	       json_array_size(run->records), run->built);
	printf("created %zu, existing %zu, rejected %zu, skipped %zu\n", run->created,
	       run->existing, run->rejected, run->skipped);
	if (run->quarantined > 0)
		printf("quarantined %zu (stored, not indexed until an admin approves them; see "
		       "docs/protection.md)\n",
		       run->quarantined);
	print_counts("skipped (field missing or empty, or no subject) by predicate", run->skips);
	if (run->without_subject > 0) {
		size_t i;
		json_t *example;

		printf("records without a subject: %zu\n", run->without_subject);
		json_array_foreach(run->subject_examples, i, example)
		{
			printf("  %s\n", json_string_value(example));
		}
	}
	json_object_foreach(run->rejections, code, entry)
	{
		size_t i;
		json_t *example;

		printf("rejected %s: %" JSON_INTEGER_FORMAT "\n", code,
		       json_integer_value(json_object_get(entry, "count")));
		json_array_foreach(json_object_get(entry, "examples"), i, example)
		{
			printf("  %s\n", json_string_value(example));
		}
	}
}

/* Loads mapping, key, timestamp and records; prints the error and returns false when
 * one of them is unusable. */
static bool prepare_run(struct import_run *run)
{
	const struct import_args *args = run->args;
	char err[512];
	bool jsonl;

	if (!mapping_load(args->mapping_path, &run->mapping, err, sizeof(err))) {
		ctl_error("import: %s", err);
		return false;
	}
	if (!args->has_timestamp && !run->mapping.has_timestamp) {
		ctl_error("import: no claim timestamp; set \"timestamp\" in %s or pass "
		          "--timestamp UNIX, so that a repeated import yields the same hashes",
		          args->mapping_path);
		return false;
	}
	run->timestamp = args->has_timestamp ? args->timestamp : run->mapping.timestamp;
	if (!ctl_key_load(args->key_path, &run->key) ||
	    !hash_file(args->data_path, run->source_hash))
		return false;
	ctl_http_set_agent(run->http, run->key.agent_id);

	jsonl = args->jsonl || run->mapping.jsonl == 1 ||
	        (run->mapping.jsonl == -1 && (has_extension(args->data_path, ".jsonl") ||
	                                      has_extension(args->data_path, ".ndjson")));
	run->records =
	        mapping_read_records(&run->mapping, args->data_path, jsonl, err, sizeof(err));
	if (run->records == NULL)
		ctl_error("import: %s", err);
	return run->records != NULL;
}

int ctl_cmd_import(struct ctl_http *http, int argc, char **argv)
{
	struct import_args args;
	struct import_run run = {0};
	int status = CTL_EXIT_USAGE;

	if (!parse_import_args(argc, argv, &args))
		return CTL_EXIT_USAGE;
	if (args.help) {
		fputs(import_help, stdout);
		return CTL_EXIT_OK;
	}

	run.http = http;
	run.args = &args;
	run.batch = json_array();
	run.origins = calloc(args.batch_size, sizeof(*run.origins));
	run.skips = json_object();
	run.subject_examples = json_array();
	run.rejections = json_object();
	if (run.origins == NULL)
		abort();
	if (!prepare_run(&run))
		goto done;

	status = import_records(&run);
	print_summary(&run);
	if (status == CTL_EXIT_OK && run.rejected > 0)
		status = CTL_EXIT_REJECTED;

done:
	clear_batch(&run);
	json_decref(run.batch);
	free(run.origins);
	json_decref(run.records);
	json_decref(run.skips);
	json_decref(run.subject_examples);
	json_decref(run.rejections);
	mapping_free(&run.mapping);
	ctl_key_wipe(&run.key);
	return status;
}
