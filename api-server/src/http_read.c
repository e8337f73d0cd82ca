#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "defense.h"
#include "http_audit.h"
#include "http_handlers.h"
#include "http_read.h"
#include "http_records.h"
#include "http_util.h"
#include "lens.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/log.h"
#include "trust.h"

#define QUERY_LIMIT_DEFAULT 100
#define QUERY_LIMIT_MAX     10000

static void reply_bad_param(struct http_call *call, const char *name, const char *value,
                            const char *expected)
{
	http_reply_error(call, 400, "invalid_parameter", name,
	                 "Query parameter %s='%.100s' is invalid; give %s.", name, value, expected);
}

/* Reads a required text parameter of 1..max bytes. */
static bool read_text_param(struct http_call *call, const struct http_query *q, const char *name,
                            size_t max, const char **value, size_t *len)
{
	const struct http_param *p = http_query_get(q, name);

	if (p == NULL) {
		http_reply_error(call, 400, "missing_parameter", name,
		                 "Query parameter '%s' is missing; add %s=VALUE to the URL.", name,
		                 name);
		return false;
	}
	if (p->value_len == 0 || p->value_len > max) {
		http_reply_error(call, 400, "invalid_parameter", name,
		                 "Query parameter '%s' has %zu bytes; give 1 to %zu bytes.", name,
		                 p->value_len, max);
		return false;
	}
	*value = p->value;
	*len = p->value_len;
	return true;
}

/* Reads the optional filters and lens options; replies and returns false on the
 * first invalid one. */
static bool read_options(struct http_call *call, const struct http_query *q, struct read_params *rp)
{
	const struct http_param *p;
	char *end;

	if ((p = http_query_get(q, "as_of")) != NULL) {
		if (!http_parse_u64(p->value, 0, UINT64_MAX, &rp->as_of)) {
			reply_bad_param(call, "as_of", p->value, "Unix seconds as an integer");
			return false;
		}
		rp->has_as_of = true;
	}
	if ((p = http_query_get(q, "lifecycle")) != NULL) {
		if (!lifecycle_parse(p->value, &rp->lifecycle)) {
			reply_bad_param(call, "lifecycle", p->value,
			                "proposed, under_review, approved, deprecated or rejected");
			return false;
		}
		rp->has_lifecycle = true;
	}
	if ((p = http_query_get(q, "source_class")) != NULL) {
		if (!source_class_parse(p->value, &rp->source_class)) {
			reply_bad_param(call, "source_class", p->value,
			                "regulatory, clinical, observational, expert, community or "
			                "anecdotal");
			return false;
		}
		rp->has_source_class = true;
	}
	if ((p = http_query_get(q, "decay")) != NULL) {
		if (strcmp(p->value, "true") != 0 && strcmp(p->value, "false") != 0) {
			reply_bad_param(call, "decay", p->value, "true or false");
			return false;
		}
		rp->lens_params.decay = strcmp(p->value, "true") == 0;
	}
	rp->lens_params.trust = trust_lens_lookup;
	rp->lens_params.trust_ctx = call->state->store;
	rp->lens_params.votes = http_records_vote_sum;
	rp->lens_params.votes_ctx = call->state->store;
	if ((p = http_query_get(q, "include_superseded")) != NULL) {
		if (strcmp(p->value, "true") != 0 && strcmp(p->value, "false") != 0) {
			reply_bad_param(call, "include_superseded", p->value, "true or false");
			return false;
		}
		rp->include_superseded = strcmp(p->value, "true") == 0;
	}
	if ((p = http_query_get(q, "tolerance")) != NULL) {
		rp->lens_params.tolerance = strtod(p->value, &end);
		if (p->value[0] == '\0' || *end != '\0' || !isfinite(rp->lens_params.tolerance) ||
		    rp->lens_params.tolerance < 0 || rp->lens_params.tolerance > 1) {
			reply_bad_param(call, "tolerance", p->value, "a number from 0 to 1");
			return false;
		}
	}
	return true;
}

bool http_read_params_parse(struct http_call *call, const struct http_query *q,
                            struct read_params *rp)
{
	const struct http_param *p;

	memset(rp, 0, sizeof(*rp));
	rp->lens = LENS_RECENCY;
	rp->limit = QUERY_LIMIT_DEFAULT;
	rp->lens_params.decay = true;

	if (!read_text_param(call, q, "subject", STEMEDB_SUBJECT_MAX, &rp->subject,
	                     &rp->subject_len) ||
	    !read_text_param(call, q, "predicate", STEMEDB_PREDICATE_MAX, &rp->predicate,
	                     &rp->predicate_len) ||
	    !read_options(call, q, rp))
		return false;

	if ((p = http_query_get(q, "lens")) != NULL && !lens_parse(p->value, &rp->lens)) {
		reply_bad_param(call, "lens", p->value,
		                "recency, confidence, consensus, authority or vote");
		return false;
	}
	if ((p = http_query_get(q, "limit")) != NULL &&
	    !http_parse_u64(p->value, 1, QUERY_LIMIT_MAX, &rp->limit)) {
		reply_bad_param(call, "limit", p->value, "an integer from 1 to 10000");
		return false;
	}
	rp->lens_params.reference_time = rp->has_as_of ? rp->as_of : (uint64_t)time(NULL);
	return true;
}

/* Scans the candidates and drops those outside the lifecycle and source class
 * filters. Replies 500 and returns false on a storage error. */
bool http_read_load_candidates(struct http_call *call, struct read_params *rp,
                               struct candidate_list *list)
{
	size_t kept_count = 0;

	candidate_list_init(list);
	if (store_scan_candidates(call->state->store, rp->subject, rp->subject_len, rp->predicate,
	                          rp->predicate_len, rp->has_as_of ? rp->as_of : UINT64_MAX, 0,
	                          list) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading the candidates of subject '%.100s' failed; see the "
		                 "server log.",
		                 rp->subject);
		return false;
	}
	if (!http_records_add_alias_candidates(call, rp, list))
		return false;

	/* Dropped candidates move past count so that candidate_list_free still frees
	 * their text: the list frees items[0..count), so swap rather than overwrite. */
	for (size_t i = 0; i < list->count; i++) {
		struct candidate *c = &list->items[i];
		struct candidate tmp;

		if ((rp->has_lifecycle && c->lifecycle != rp->lifecycle) ||
		    (rp->has_source_class && c->source_class != rp->source_class))
			continue;
		if (i != kept_count) {
			tmp = list->items[kept_count];
			list->items[kept_count] = *c;
			*c = tmp;
		}
		kept_count++;
	}
	for (size_t i = kept_count; i < list->count; i++) {
		free(list->items[i].object.text);
		list->items[i].object.text = NULL;
	}
	list->count = kept_count;
	return http_records_filter_superseded(call, rp, list);
}

/* Writes {"type", "value"} as object_value_to_json builds it. */
void http_read_write_object(struct json_writer *w, const struct object_value *o)
{
	json_writer_object_begin(w);
	json_writer_key(w, "type");
	json_writer_cstring(w, object_type_name(o->type));
	json_writer_key(w, "value");
	switch (o->type) {
	case OBJECT_TEXT:
	case OBJECT_REFERENCE:
		json_writer_string(w, o->text != NULL ? o->text : "", o->text_len);
		break;
	case OBJECT_NUMBER:
		json_writer_double(w, o->number);
		break;
	case OBJECT_BOOLEAN:
	default:
		json_writer_bool(w, o->boolean);
		break;
	}
	json_writer_object_end(w);
}

static void write_candidate(struct json_writer *w, const struct candidate *c,
                            const struct lens_params *lp, const struct lens_result *result,
                            size_t index)
{
	json_writer_object_begin(w);
	json_writer_key(w, "hash");
	json_writer_hex(w, c->hash, STEMEDB_HASH_LEN);
	json_writer_key(w, "object");
	http_read_write_object(w, &c->object);
	json_writer_key(w, "confidence");
	json_writer_micro(w, c->confidence_micro);
	json_writer_key(w, "effective_confidence");
	json_writer_double(w, lens_effective_confidence(c, lp));
	json_writer_key(w, "source_class");
	json_writer_cstring(w, source_class_name(c->source_class));
	json_writer_key(w, "lifecycle");
	json_writer_cstring(w, lifecycle_name(c->lifecycle));
	json_writer_key(w, "timestamp");
	json_writer_uint(w, c->timestamp);

	json_writer_key(w, "agents");
	json_writer_array_begin(w);
	for (size_t i = 0; i < c->agent_count; i++)
		json_writer_hex(w, c->agents[i], STEMEDB_AGENT_ID_LEN);
	json_writer_array_end(w);

	json_writer_key(w, "score");
	if (result != NULL && index < result->score_count)
		json_writer_double(w, result->scores[index]);
	else
		json_writer_null(w);
	if (c->has_epoch) {
		json_writer_key(w, "epoch");
		json_writer_hex(w, c->epoch, STEMEDB_HASH_LEN);
	}
	json_writer_object_end(w);
}

/* Orders candidates newest first: timestamp, then HLC, then smaller hash. */
static int compare_newest_first(const void *a, const void *b, void *ctx)
{
	const struct candidate *items = ctx;
	const struct candidate *x = &items[*(const size_t *)a];
	const struct candidate *y = &items[*(const size_t *)b];

	if (x->timestamp != y->timestamp)
		return x->timestamp > y->timestamp ? -1 : 1;
	if (x->hlc.wall_ms != y->hlc.wall_ms)
		return x->hlc.wall_ms > y->hlc.wall_ms ? -1 : 1;
	if (x->hlc.logical != y->hlc.logical)
		return x->hlc.logical > y->hlc.logical ? -1 : 1;
	return memcmp(x->hash, y->hash, STEMEDB_HASH_LEN);
}

/* Writes the candidates newest first. The winner's object, already written at
 * [winner_start, winner_end) of the reply, is copied instead of written again. */
static void write_candidates(struct json_writer *w, const struct candidate_list *list,
                             const struct read_params *rp, const struct lens_result *result,
                             size_t winner_start, size_t winner_end)
{
	size_t *order = malloc((list->count > 0 ? list->count : 1) * sizeof(*order));
	size_t shown_count = list->count < rp->limit ? list->count : (size_t)rp->limit;

	if (order == NULL)
		abort();
	for (size_t i = 0; i < list->count; i++)
		order[i] = i;
	qsort_r(order, list->count, sizeof(*order), compare_newest_first, list->items);

	json_writer_array_begin(w);
	for (size_t i = 0; i < shown_count; i++) {
		if (result->has_winner && order[i] == result->winner)
			json_writer_repeat(w, winner_start, winner_end);
		else
			write_candidate(w, &list->items[order[i]], &rp->lens_params, result,
			                order[i]);
	}
	json_writer_array_end(w);
	free(order);
}

/* Opens the reply object and writes the fields that /v1/query and /v1/skeptic share. */
void http_read_write_header(struct json_writer *w, const struct read_params *rp)
{
	json_writer_object_begin(w);
	json_writer_key(w, "subject");
	json_writer_string(w, rp->subject, rp->subject_len);
	json_writer_key(w, "predicate");
	json_writer_string(w, rp->predicate, rp->predicate_len);
	if (rp->has_as_of) {
		json_writer_key(w, "as_of");
		json_writer_uint(w, rp->as_of);
	}
	http_records_write_warnings(w, rp);
	json_writer_key(w, "reference_time");
	json_writer_uint(w, rp->lens_params.reference_time);
	if (rp->query_id[0] != '\0') {
		json_writer_key(w, "query_id");
		json_writer_cstring(w, rp->query_id);
	}
}

static const char *const read_param_names[] = {
        "subject",   "predicate",          "lens",  "as_of",
        "lifecycle", "source_class",       "decay", "tolerance",
        "limit",     "include_superseded", NULL};
static const char *const skeptic_param_names[] = {"subject",   "predicate",          "as_of",
                                                  "lifecycle", "source_class",       "decay",
                                                  "tolerance", "include_superseded", NULL};

static void write_query(struct json_writer *w, const struct read_params *rp,
                        const struct candidate_list *list, const struct lens_result *result)
{
	size_t winner_start, winner_end;

	http_read_write_header(w, rp);
	json_writer_key(w, "lens");
	json_writer_cstring(w, lens_name(rp->lens));
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, list->count);

	json_writer_key(w, "winner");
	winner_start = w->out->len;
	if (result->has_winner)
		write_candidate(w, &list->items[result->winner], &rp->lens_params, result,
		                result->winner);
	else
		json_writer_null(w);
	winner_end = w->out->len;
	json_writer_key(w, "confidence");
	if (result->has_winner)
		json_writer_double(w, result->confidence);
	else
		json_writer_null(w);

	json_writer_key(w, "candidates");
	write_candidates(w, list, rp, result, winner_start, winner_end);
	json_writer_key(w, "truncated");
	json_writer_bool(w, list->count > rp->limit);
	json_writer_object_end(w);
}

bool http_read_begin(struct http_call *call, const char *const *param_names, const char *endpoint,
                     struct http_query *q, struct read_params *rp, struct candidate_list *list,
                     struct audit_entry *entry)
{
	if (http_require_ready(call) == NULL)
		return false;
	if (!http_query_parse(call, param_names, q) || !http_read_params_parse(call, q, rp) ||
	    !http_read_load_candidates(call, rp, list)) {
		http_query_free(q);
		return false;
	}
	if (!http_audit_begin(call, q, endpoint, entry, rp->query_id)) {
		candidate_list_free(list);
		http_query_free(q);
		return false;
	}
	return true;
}

void http_handle_query(struct http_call *call)
{
	uint64_t started = http_now_ns();
	struct audit_entry entry;
	struct candidate_list list;
	struct lens_result result;
	struct read_params rp;
	struct http_query q;
	struct json_writer w;
	struct buf body;

	if (!http_read_begin(call, read_param_names, "query", &q, &rp, &list, &entry))
		return;

	memset(&result, 0, sizeof(result));
	lens_resolve(rp.lens, list.items, list.count, &rp.lens_params, &result);
	http_reply_begin(&body, &w);
	write_query(&w, &rp, &list, &result);
	/* The audit entry is queued before the reply, because replying frees the call. */
	http_audit_submit_lens(call, &entry, &list, &result);
	http_reply_text(call, 200, &body);

	lens_result_free(&result);
	candidate_list_free(&list);
	http_query_free(&q);
	metric_inc(http_metrics.queries_query);
	histogram_observe(http_metrics.latency_query, (double)(http_now_ns() - started) / 1e9);
}

/* Writes each agent of c that seen (raw ids) does not contain yet, and adds it there. */
static void write_distinct_agents(struct json_writer *w, const struct candidate *c,
                                  uint8_t (*seen)[32], size_t *seen_count)
{
	for (size_t a = 0; a < c->agent_count; a++) {
		bool known = false;

		for (size_t s = 0; s < *seen_count && !known; s++)
			known = memcmp(seen[s], c->agents[a], STEMEDB_AGENT_ID_LEN) == 0;
		if (known)
			continue;
		memcpy(seen[(*seen_count)++], c->agents[a], STEMEDB_AGENT_ID_LEN);
		json_writer_hex(w, c->agents[a], STEMEDB_AGENT_ID_LEN);
	}
}

void http_read_write_claim(struct json_writer *w, const struct claim *claim,
                           const struct candidate *items)
{
	uint8_t(*seen)[32] = malloc((claim->member_count * STEMEDB_SIGNATURES_MAX + 1) * 32);
	bool tiers[SOURCE_CLASS_COUNT] = {false};
	size_t seen_count = 0;

	if (seen == NULL)
		abort();
	json_writer_object_begin(w);
	json_writer_key(w, "value");
	http_read_write_object(w, &items[claim->representative].object);
	json_writer_key(w, "share");
	json_writer_double(w, claim->share);
	json_writer_key(w, "weight");
	json_writer_double(w, claim->weight);
	json_writer_key(w, "assertion_count");
	json_writer_uint(w, claim->member_count);

	json_writer_key(w, "agents");
	json_writer_array_begin(w);
	for (size_t m = 0; m < claim->member_count; m++) {
		const struct candidate *c = &items[claim->members[m]];

		write_distinct_agents(w, c, seen, &seen_count);
		tiers[c->source_class % SOURCE_CLASS_COUNT] = true;
	}
	json_writer_array_end(w);
	free(seen);

	json_writer_key(w, "source_classes");
	json_writer_array_begin(w);
	for (uint8_t t = 0; t < SOURCE_CLASS_COUNT; t++) {
		if (tiers[t])
			json_writer_cstring(w, source_class_name(t));
	}
	json_writer_array_end(w);

	json_writer_key(w, "assertions");
	json_writer_array_begin(w);
	for (size_t m = 0; m < claim->member_count; m++)
		json_writer_hex(w, items[claim->members[m]].hash, STEMEDB_HASH_LEN);
	json_writer_array_end(w);
	json_writer_object_end(w);
}

static void write_skeptic(struct json_writer *w, const struct read_params *rp,
                          const struct candidate_list *list, const struct skeptic_result *result)
{
	http_read_write_header(w, rp);
	json_writer_key(w, "status");
	json_writer_cstring(w, skeptic_status_name(result->status));
	json_writer_key(w, "conflict_score");
	json_writer_double(w, result->conflict_score);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, list->count);
	json_writer_key(w, "claim_count");
	json_writer_uint(w, result->claims.count);

	json_writer_key(w, "claims");
	json_writer_array_begin(w);
	for (size_t i = 0; i < result->claims.count; i++)
		http_read_write_claim(w, &result->claims.claims[i], list->items);
	json_writer_array_end(w);
	json_writer_object_end(w);
}

void http_handle_skeptic(struct http_call *call)
{
	uint64_t started = http_now_ns();
	struct audit_entry entry;
	struct skeptic_result result;
	struct candidate_list list;
	struct read_params rp;
	struct http_query q;
	struct json_writer w;
	struct buf body;

	if (!http_read_begin(call, skeptic_param_names, "skeptic", &q, &rp, &list, &entry))
		return;

	memset(&result, 0, sizeof(result));
	skeptic_analyze(list.items, list.count, &rp.lens_params, &result);
	http_reply_begin(&body, &w);
	write_skeptic(&w, &rp, &list, &result);
	http_audit_submit_claims(call, &entry, &list, &rp.lens_params,
	                         result.claims.count > 0
	                                 ? &list.items[result.claims.claims[0].representative]
	                                 : NULL);
	http_reply_text(call, 200, &body);

	skeptic_result_free(&result);
	candidate_list_free(&list);
	http_query_free(&q);
	metric_inc(http_metrics.queries_skeptic);
	histogram_observe(http_metrics.latency_skeptic, (double)(http_now_ns() - started) / 1e9);
}

static json_t *hlc_json(const struct hlc_stamp *hlc)
{
	char node[37];
	const uint8_t *b = hlc->node_id;

	snprintf(node, sizeof(node),
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
	         b[15]);
	return json_pack("{s:I, s:I, s:s}", "wall_ms", (json_int_t)hlc->wall_ms, "logical",
	                 (json_int_t)hlc->logical, "node_id", node);
}

void http_handle_assertion(struct http_call *call)
{
	const char *text = call->path + strlen("/v1/assertions/");
	uint8_t hash[STEMEDB_HASH_LEN];
	struct hlc_stamp hlc;
	struct assertion a;
	enum store_result rc;
	json_t *body;

	if (http_require_ready(call) == NULL || !http_query_reject_any(call))
		return;
	if (!hex_decode(text, strlen(text), hash, sizeof(hash))) {
		http_reply_error(call, 400, "invalid_parameter", "hash",
		                 "'%.100s' is not an assertion hash; give 64 hex characters.",
		                 text);
		return;
	}

	assertion_init(&a);
	rc = store_get_assertion(call->state->store, hash, &a, &hlc);
	if (rc == STORE_NOT_FOUND) {
		http_reply_error(call, 404, "not_found", "hash",
		                 "No assertion has hash %.64s on this node; check the hash.", text);
	} else if (rc != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading assertion %.64s failed; see the server log.", text);
	} else {
		struct quarantine_entry entry;

		body = assertion_to_json(&a, hash);
		json_object_set_new(body, "hlc", hlc_json(&hlc));
		/* NOTE: a failed read of the quarantine entry leaves the mark out. */
		if (quarantine_get(call->state->store, hash, &entry) == STORE_OK) {
			json_object_set_new(body, "quarantined",
			                    json_boolean(entry.status != QUARANTINE_APPROVED));
			json_object_set_new(body, "quarantine", quarantine_entry_json(&entry));
		}
		http_reply_json(call, 200, body);
	}
	assertion_free(&a);
}

struct predicate_counts {
	json_t *array;
	uint64_t total;
};

static bool on_predicate(void *ctx, const char *predicate, size_t predicate_len, uint64_t count)
{
	struct predicate_counts *pc = ctx;

	pc->total += count;
	json_array_append_new(pc->array, json_pack("{s:s%, s:I}", "predicate", predicate,
	                                           predicate_len, "count", (json_int_t)count));
	return true;
}

void http_handle_subject(struct http_call *call)
{
	const char *raw = call->path + strlen("/v1/subjects/");
	size_t raw_len = strlen(raw), len;
	char *subject = malloc(raw_len + 1);
	struct predicate_counts pc = {json_array(), 0};

	if (subject == NULL)
		abort();
	if (http_require_ready(call) == NULL || !http_query_reject_any(call))
		goto done;
	if (!http_percent_decode(raw, raw_len, false, subject, &len) || len == 0 ||
	    len > STEMEDB_SUBJECT_MAX || !utf8_valid(subject, len)) {
		http_reply_error(call, 400, "invalid_parameter", "subject",
		                 "The subject in the path is not 1 to %d bytes of UTF-8 without "
		                 "NUL; percent-encode it as UTF-8.",
		                 STEMEDB_SUBJECT_MAX);
		goto done;
	}

	if (store_subject_predicates(call->state->store, subject, len, on_predicate, &pc) !=
	    STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Listing the predicates of subject '%.100s' failed; see the "
		                 "server log.",
		                 subject);
	} else if (json_array_size(pc.array) == 0) {
		http_reply_error(call, 404, "not_found", "subject",
		                 "Subject '%.100s' has no assertions on this node.", subject);
	} else {
		http_reply_json(call, 200,
		                json_pack("{s:s%, s:I, s:O}", "subject", subject, len,
		                          "assertion_count", (json_int_t)pc.total, "predicates",
		                          pc.array));
	}
done:
	json_decref(pc.array);
	free(subject);
}

/* ---- exported for the views of http_views.c ---- */

bool http_read_options_parse(struct http_call *call, const struct http_query *q,
                             struct read_params *rp)
{
	return read_options(call, q, rp);
}

void http_read_write_candidate(struct json_writer *w, const struct candidate *c,
                               const struct lens_params *lp, const struct lens_result *result,
                               size_t index)
{
	write_candidate(w, c, lp, result, index);
}
