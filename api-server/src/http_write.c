#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_handlers.h"
#include "http_util.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/log.h"

#define HTTP_BATCH_ITEMS_MAX 1000

/* Rejection of one written item before it reaches the commit pipeline: the HTTP
 * status and the error body. */
struct item_error {
	int status;
	struct codec_error error;
};

static void item_error_set(struct item_error *e, int status, const char *code, const char *field)
{
	e->status = status;
	snprintf(e->error.code, sizeof(e->error.code), "%s", code);
	snprintf(e->error.field, sizeof(e->error.field), "%s", field);
}

/* Checks the signatures of a parsed assertion over its hash. */
static bool http_check_signatures(struct commit_request *r, struct item_error *e)
{
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	size_t bad = 0;
	enum signature_check check = assertion_verify_signatures(&r->assertion, r->hash, &bad);

	hex_encode(r->hash, STEMEDB_HASH_LEN, hash_hex);
	switch (check) {
	case SIGNATURES_VALID:
		return true;
	case SIGNATURES_MISSING:
		item_error_set(e, 422, "out_of_range", "signatures");
		snprintf(e->error.message, sizeof(e->error.message),
		         "Assertion %s has no signature; add 1 to 16 signatures.", hash_hex);
		return false;
	case SIGNATURES_DUPLICATE:
		item_error_set(e, 422, "duplicate_signer", "");
		snprintf(e->error.field, sizeof(e->error.field), "signatures[%zu].agent_id", bad);
		snprintf(e->error.message, sizeof(e->error.message),
		         "Signature %zu of assertion %s repeats an agent that signed already; "
		         "keep one signature per agent.",
		         bad, hash_hex);
		return false;
	case SIGNATURES_INVALID:
	default:
		item_error_set(e, 422, "invalid_signature", "");
		snprintf(e->error.field, sizeof(e->error.field), "signatures[%zu].signature", bad);
		snprintf(e->error.message, sizeof(e->error.message),
		         "Signature %zu does not verify over assertion %s; sign "
		         "\"stemedb-assertion-v1\" || hash || timestamp with the agent's key.",
		         bad, hash_hex);
		return false;
	}
}

/* Parses, hashes and verifies one assertion into r (initialized by the caller).
 * Field errors are 400 except out_of_range, which is valid JSON with an invalid claim
 * and therefore 422. */
static bool http_prepare_request(const json_t *obj, struct commit_request *r, struct item_error *e)
{
	memset(e, 0, sizeof(*e));
	if (!json_is_object(obj)) {
		item_error_set(e, 400, "invalid_field", "");
		snprintf(e->error.message, sizeof(e->error.message),
		         "The assertion is not a JSON object; send an object with subject, "
		         "predicate, object, confidence, timestamp and signatures.");
		return false;
	}
	if (!assertion_from_json(obj, &r->assertion, &e->error)) {
		e->status = strcmp(e->error.code, "out_of_range") == 0 ? 422 : 400;
		return false;
	}
	if (!assertion_hash(&r->assertion, r->hash)) {
		item_error_set(e, 422, "out_of_range", "");
		snprintf(e->error.message, sizeof(e->error.message),
		         "The assertion cannot be encoded; check the field lengths.");
		return false;
	}
	return http_check_signatures(r, e);
}

static void http_reply_item_error(struct http_call *call, const struct item_error *e)
{
	http_reply_error(call, e->status, e->error.code, e->error.field, "%s", e->error.message);
}

/* Maps a failed commit to the reply: 503 when the WAL has failed (the node takes no
 * more writes), else 500. */
static void commit_failure(struct http_call *call, const uint8_t hash[STEMEDB_HASH_LEN],
                           struct item_error *e)
{
	struct commit_pipeline *p = atomic_load(&call->state->pipeline);
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	bool wal_failed = p != NULL && !commit_healthy(p);

	hex_encode(hash, STEMEDB_HASH_LEN, hash_hex);
	item_error_set(e, wal_failed ? 503 : 500, wal_failed ? "unavailable" : "internal_error",
	               "");
	snprintf(e->error.message, sizeof(e->error.message),
	         "Assertion %s was not stored because %s; see the server log and retry on "
	         "another node.",
	         hash_hex, wal_failed ? "the WAL failed" : "the write failed");
}

struct single_write {
	struct http_call *call;
	struct commit_request request;
};

static void on_single_committed(struct commit_request *request)
{
	struct single_write *w = request->owner;

	http_call_resume(w->call);
}

static void http_finish_assert(struct http_call *call)
{
	struct single_write *w = call->work;
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	struct item_error e;

	hex_encode(w->request.hash, STEMEDB_HASH_LEN, hash_hex);
	switch (w->request.status) {
	case COMMIT_CREATED:
		http_reply_json(call, 201,
		                json_pack("{s:s, s:s}", "hash", hash_hex, "status", "created"));
		break;
	case COMMIT_EXISTS:
		http_reply_json(call, 200,
		                json_pack("{s:s, s:s}", "hash", hash_hex, "status", "exists"));
		break;
	case COMMIT_FAILED:
	default:
		commit_failure(call, w->request.hash, &e);
		http_reply_item_error(call, &e);
		break;
	}
	assertion_free(&w->request.assertion);
	free(w);
}

void http_handle_assert(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	struct single_write *w;
	struct item_error e;
	json_t *body;

	if (p == NULL)
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body == NULL)
		return;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	assertion_init(&w->request.assertion);
	if (!http_prepare_request(body, &w->request, &e)) {
		json_decref(body);
		assertion_free(&w->request.assertion);
		free(w);
		http_reply_item_error(call, &e);
		return;
	}
	json_decref(body);

	w->call = call;
	w->request.on_complete = on_single_committed;
	w->request.owner = w;
	call->on_resume = http_finish_assert;
	call->work = w;
	commit_submit(p, &w->request);
}

struct batch_item {
	struct commit_request request;
	bool submitted;
	struct item_error error;
};

struct batch_write {
	struct http_call *call;
	struct batch_item *items;
	size_t count;
	atomic_size_t pending; /* submitted items the writer has not completed yet */
};

static void on_batch_item_committed(struct commit_request *request)
{
	struct batch_write *b = request->owner;

	if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel) == 1)
		http_call_resume(b->call);
}

static void batch_write_free(struct batch_write *b)
{
	for (size_t i = 0; i < b->count; i++)
		assertion_free(&b->items[i].request.assertion);
	free(b->items);
	free(b);
}

/* Builds the result of one item and counts it under created, existing or rejected. */
static json_t *batch_item_result(struct http_call *call, struct batch_item *item, size_t index,
                                 size_t counts[3])
{
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	const struct item_error *e = &item->error;
	struct item_error failure;

	hex_encode(item->request.hash, STEMEDB_HASH_LEN, hash_hex);
	if (item->submitted && item->request.status == COMMIT_CREATED) {
		counts[0]++;
		return json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "status", "created",
		                 "hash", hash_hex);
	}
	if (item->submitted && item->request.status == COMMIT_EXISTS) {
		counts[1]++;
		return json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "status", "exists",
		                 "hash", hash_hex);
	}
	if (item->submitted) {
		commit_failure(call, item->request.hash, &failure);
		e = &failure;
	}

	counts[2]++;
	http_count_rejection(e->error.code);
	return json_pack("{s:I, s:s, s:o}", "index", (json_int_t)index, "status", "rejected",
	                 "error",
	                 http_error_object(e->error.code, e->error.field, e->error.message));
}

static void http_finish_batch(struct http_call *call)
{
	struct batch_write *b = call->work;
	size_t counts[3] = {0, 0, 0};
	json_t *results = json_array();

	for (size_t i = 0; i < b->count; i++)
		json_array_append_new(results, batch_item_result(call, &b->items[i], i, counts));

	if (counts[2] > 0)
		log_info("POST /v1/assert/batch: %zu of %zu items rejected", counts[2], b->count);
	http_reply_json(call, 200,
	                json_pack("{s:o, s:I, s:I, s:I}", "results", results, "created",
	                          (json_int_t)counts[0], "existing", (json_int_t)counts[1],
	                          "rejected", (json_int_t)counts[2]));
	batch_write_free(b);
}

/* Returns the "assertions" array of a batch body, or replies and returns NULL. */
static json_t *batch_items(struct http_call *call, json_t *body)
{
	json_t *items = json_object_get(body, "assertions");
	const char *key;
	json_t *value;

	json_object_foreach(body, key, value)
	{
		if (strcmp(key, "assertions") != 0) {
			http_reply_error(call, 400, "unknown_field", key,
			                 "Field '%.64s' is not part of a batch; send only "
			                 "{\"assertions\": [...]}.",
			                 key);
			return NULL;
		}
	}
	if (items == NULL) {
		http_reply_error(call, 400, "missing_field", "assertions",
		                 "Field 'assertions' is missing; send {\"assertions\": [...]}.");
		return NULL;
	}
	if (!json_is_array(items)) {
		http_reply_error(call, 400, "invalid_field", "assertions",
		                 "Field 'assertions' is not an array; send an array of up to %d "
		                 "assertions.",
		                 HTTP_BATCH_ITEMS_MAX);
		return NULL;
	}
	if (json_array_size(items) > HTTP_BATCH_ITEMS_MAX) {
		http_reply_error(call, 413, "batch_too_large", "assertions",
		                 "The batch has %zu assertions, more than %d; split it into "
		                 "smaller batches.",
		                 json_array_size(items), HTTP_BATCH_ITEMS_MAX);
		return NULL;
	}
	return items;
}

/* Prepares every item and links the valid ones for one submission. */
static struct commit_request *batch_prepare(struct batch_write *b, json_t *items)
{
	struct commit_request *head = NULL, **tail = &head;
	size_t valid = 0;

	for (size_t i = 0; i < b->count; i++) {
		struct batch_item *item = &b->items[i];

		assertion_init(&item->request.assertion);
		if (!http_prepare_request(json_array_get(items, i), &item->request, &item->error))
			continue;

		item->submitted = true;
		item->request.on_complete = on_batch_item_committed;
		item->request.owner = b;
		*tail = &item->request;
		tail = &item->request.next;
		valid++;
	}
	*tail = NULL;
	atomic_store(&b->pending, valid);
	return head;
}

void http_handle_batch(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	struct commit_request *head;
	struct batch_write *b;
	json_t *body, *items;

	if (p == NULL)
		return;
	body = http_read_json_body(call, call->state->config->max_batch_body_bytes);
	if (body == NULL)
		return;
	items = batch_items(call, body);
	if (items == NULL) {
		json_decref(body);
		return;
	}

	b = calloc(1, sizeof(*b));
	if (b == NULL)
		abort();
	b->count = json_array_size(items);
	b->items = calloc(b->count > 0 ? b->count : 1, sizeof(*b->items));
	if (b->items == NULL)
		abort();
	b->call = call;
	call->work = b;
	call->on_resume = http_finish_batch;

	head = batch_prepare(b, items);
	json_decref(body);
	if (head == NULL) {
		http_finish_batch(call);
		return;
	}
	commit_submit(p, head);
}
