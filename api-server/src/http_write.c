#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "http_handlers.h"
#include "http_util.h"
#include "protect.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/log.h"

#define HTTP_BATCH_ITEMS_MAX 1000

/* Items per verification task. A 500-item batch becomes 8 tasks, enough to keep every
 * core busy. Each task is long enough that the queue lock is cheap by comparison: about
 * 3 ms at the 50 µs that one Ed25519 verification takes on the benchmark machine. */
#define VERIFY_CHUNK_ITEMS 64

/* Upper bound on verification threads, whatever the number of online CPUs. */
#define VERIFY_THREADS_MAX 64

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

/* Parses and hashes one assertion into r (initialized by the caller). Field errors are
 * 400 except out_of_range, which is valid JSON with an invalid claim and therefore 422. */
static bool http_parse_request(const json_t *obj, struct commit_request *r, struct item_error *e)
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
	return true;
}

/* Verifies the signatures of a parsed assertion and, when defense is not NULL,
 * computes the content defense input into it for the writer. */
static bool http_verify_request(struct commit_request *r, struct item_error *e,
                                struct defense_input *defense)
{
	if (!http_check_signatures(r, e))
		return false;
	if (defense != NULL) {
		defense_prepare(&r->assertion, defense);
		r->defense = defense;
	}
	return true;
}

/* Parses, hashes and verifies one assertion into r (initialized by the caller); see
 * http_verify_request for defense. */
static bool http_prepare_request(const json_t *obj, struct commit_request *r, struct item_error *e,
                                 struct defense_input *defense)
{
	return http_parse_request(obj, r, e) && http_verify_request(r, e, defense);
}

/* Copies the signer ids of an assertion into signers and returns how many there are. */
static size_t assertion_signers(const struct assertion *a,
                                uint8_t signers[STEMEDB_SIGNATURES_MAX][STEMEDB_AGENT_ID_LEN])
{
	for (size_t i = 0; i < a->signature_count; i++)
		memcpy(signers[i], a->signatures[i].agent_id, STEMEDB_AGENT_ID_LEN);
	return a->signature_count;
}

/* Counts a newly stored assertion for its signers' admission difficulty. */
static void count_stored(struct http_call *call, const struct assertion *a)
{
	uint8_t signers[STEMEDB_SIGNATURES_MAX][STEMEDB_AGENT_ID_LEN];
	size_t count = assertion_signers(a, signers);

	protect_assertion_stored(call->state->protect, (const uint8_t(*)[32])signers, count);
}

/* The content defense input to fill for a write on this node, or NULL when it is off. */
static struct defense_input *defense_slot(const struct http_call *call, struct defense_input *slot)
{
	return call->state->config->defense.enabled ? slot : NULL;
}

/* Sends 202 {"hash", "status": "quarantined", "reason"} and counts the rejection. */
static void http_reply_quarantined(struct http_call *call, const uint8_t hash[STEMEDB_HASH_LEN],
                                   enum defense_reason reason)
{
	struct json_writer w;
	struct buf body;

	http_count_rejection(defense_reason_name(reason));
	http_reply_begin(&body, &w);
	json_writer_object_begin(&w);
	json_writer_key(&w, "hash");
	json_writer_hex(&w, hash, STEMEDB_HASH_LEN);
	json_writer_key(&w, "status");
	json_writer_cstring(&w, "quarantined");
	json_writer_key(&w, "reason");
	json_writer_cstring(&w, defense_reason_name(reason));
	json_writer_object_end(&w);
	http_reply_text(call, 202, &body);
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
	struct defense_input defense;
};

static void on_single_committed(struct commit_request *request)
{
	struct single_write *w = request->owner;

	http_call_resume(w->call);
}

/* Sends {"hash", "status"} for a stored or already present assertion. */
static void http_reply_assert_status(struct http_call *call, int status,
                                     const uint8_t hash[STEMEDB_HASH_LEN], const char *outcome)
{
	struct json_writer w;
	struct buf body;

	http_reply_begin(&body, &w);
	json_writer_object_begin(&w);
	json_writer_key(&w, "hash");
	json_writer_hex(&w, hash, STEMEDB_HASH_LEN);
	json_writer_key(&w, "status");
	json_writer_cstring(&w, outcome);
	json_writer_object_end(&w);
	http_reply_text(call, status, &body);
}

static void http_finish_assert(struct http_call *call)
{
	struct single_write *w = call->work;
	struct item_error e;

	switch (w->request.status) {
	case COMMIT_CREATED:
		if (w->request.quarantine_reason != DEFENSE_NONE) {
			http_reply_quarantined(call, w->request.hash, w->request.quarantine_reason);
		} else {
			count_stored(call, &w->request.assertion);
			http_reply_assert_status(call, 201, w->request.hash, "created");
		}
		break;
	case COMMIT_EXISTS:
		http_reply_assert_status(call, 200, w->request.hash, "exists");
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
	bool json_ok;

	if (p == NULL)
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body == NULL)
		return;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		abort();
	assertion_init(&w->request.assertion);
	json_ok = http_parse_request(body, &w->request, &e);
	json_decref(body);
	if (json_ok) {
		uint8_t signers[STEMEDB_SIGNATURES_MAX][STEMEDB_AGENT_ID_LEN];
		size_t count = assertion_signers(&w->request.assertion, signers);

		/* The API key's agent binding, then the protection layers, reply themselves
		 * when they reject the request. */
		if ((count > 0 && !auth_check_signer(call, signers[0])) ||
		    !protect_http_write(call, (const uint8_t(*)[32])signers, count, true)) {
			assertion_free(&w->request.assertion);
			free(w);
			return;
		}
	}
	if (!json_ok || !http_verify_request(&w->request, &e, defense_slot(call, &w->defense))) {
		assertion_free(&w->request.assertion);
		free(w);
		http_reply_item_error(call, &e);
		return;
	}

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
	struct defense_input defense;
};

struct batch_write;

/* A range of batch items that one verification thread prepares. */
struct verify_task {
	struct batch_write *batch;
	size_t begin;
	size_t end;
	struct verify_task *next;
};

struct batch_write {
	struct http_call *call;
	struct commit_pipeline *pipeline;
	json_t *body; /* the parsed request, read by the verification threads */
	json_t *array;
	struct batch_item *items;
	size_t count;
	struct verify_task *tasks;
	size_t task_count;
	atomic_size_t tasks_left; /* tasks not yet finished by the verification threads */
	atomic_size_t pending;    /* submitted items the writer has not completed yet */
};

/* Threads that parse, hash and verify batch items, so that one large batch keeps every
 * core busy instead of the one HTTP worker that received it. Connections stay with the
 * worker that accepted them, so without this pool several batch clients on one worker
 * leave the other cores idle. The threads start with the first batch and run until
 * the process exits. */
struct verify_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct verify_task *head;
	struct verify_task *tail;
};

static struct verify_pool verify_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL,
                                         NULL};
static pthread_once_t verify_pool_once = PTHREAD_ONCE_INIT;
static bool verify_pool_started;

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
	free(b->tasks);
	free(b);
}

static void batch_write_result(struct json_writer *w, const struct batch_item *item, size_t index,
                               const char *status)
{
	json_writer_object_begin(w);
	json_writer_key(w, "index");
	json_writer_uint(w, index);
	json_writer_key(w, "status");
	json_writer_cstring(w, status);
	json_writer_key(w, "hash");
	json_writer_hex(w, item->request.hash, STEMEDB_HASH_LEN);
	json_writer_object_end(w);
}

/* Writes the result of one item and counts it under created, existing, rejected or
 * quarantined. */
static void batch_item_result(struct http_call *call, struct json_writer *w,
                              struct batch_item *item, size_t index, size_t counts[4])
{
	const struct item_error *e = &item->error;
	struct item_error failure;

	if (item->submitted && item->request.status == COMMIT_CREATED &&
	    item->request.quarantine_reason != DEFENSE_NONE) {
		counts[3]++;
		http_count_rejection(defense_reason_name(item->request.quarantine_reason));
		json_writer_object_begin(w);
		json_writer_key(w, "index");
		json_writer_uint(w, index);
		json_writer_key(w, "status");
		json_writer_cstring(w, "quarantined");
		json_writer_key(w, "hash");
		json_writer_hex(w, item->request.hash, STEMEDB_HASH_LEN);
		json_writer_key(w, "reason");
		json_writer_cstring(w, defense_reason_name(item->request.quarantine_reason));
		json_writer_object_end(w);
		return;
	}
	if (item->submitted && item->request.status == COMMIT_CREATED) {
		count_stored(call, &item->request.assertion);
		counts[0]++;
		batch_write_result(w, item, index, "created");
		return;
	}
	if (item->submitted && item->request.status == COMMIT_EXISTS) {
		counts[1]++;
		batch_write_result(w, item, index, "exists");
		return;
	}
	if (item->submitted) {
		commit_failure(call, item->request.hash, &failure);
		e = &failure;
	}

	counts[2]++;
	http_count_rejection(e->error.code);
	json_writer_object_begin(w);
	json_writer_key(w, "index");
	json_writer_uint(w, index);
	json_writer_key(w, "status");
	json_writer_cstring(w, "rejected");
	json_writer_key(w, "error");
	http_write_error_object(w, e->error.code, e->error.field, e->error.message);
	json_writer_object_end(w);
}

static void http_finish_batch(struct http_call *call)
{
	struct batch_write *b = call->work;
	size_t counts[4] = {0, 0, 0, 0};
	struct json_writer w;
	struct buf body;

	http_reply_begin(&body, &w);
	json_writer_object_begin(&w);
	json_writer_key(&w, "results");
	json_writer_array_begin(&w);
	for (size_t i = 0; i < b->count; i++)
		batch_item_result(call, &w, &b->items[i], i, counts);
	json_writer_array_end(&w);
	json_writer_key(&w, "created");
	json_writer_uint(&w, counts[0]);
	json_writer_key(&w, "existing");
	json_writer_uint(&w, counts[1]);
	json_writer_key(&w, "rejected");
	json_writer_uint(&w, counts[2]);
	json_writer_key(&w, "quarantined");
	json_writer_uint(&w, counts[3]);
	json_writer_object_end(&w);

	if (counts[2] > 0)
		log_info("POST /v1/assert/batch: %zu of %zu items rejected", counts[2], b->count);
	http_reply_text(call, 200, &body);
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

/* Links the valid items in index order for one submission and sets the count that
 * the commit callbacks wait for. */
static struct commit_request *batch_link_valid(struct batch_write *b)
{
	struct commit_request *head = NULL, **tail = &head;
	size_t valid = 0;

	for (size_t i = 0; i < b->count; i++) {
		struct batch_item *item = &b->items[i];

		if (!item->submitted)
			continue;
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

/* Runs on the thread that finished the last task of a batch: every item is prepared,
 * so the valid ones go to the commit pipeline, or the call resumes at once when none
 * is valid. */
static void batch_prepared(struct batch_write *b)
{
	struct commit_request *head = batch_link_valid(b);

	json_decref(b->body);
	b->body = NULL;
	if (head == NULL) {
		http_call_resume(b->call);
		return;
	}
	/* NOTE: this assumes the pipeline outlives the call. Shutdown waits for calls in
	 * flight before it stops the pipeline, but only up to its drain deadline. */
	commit_submit(b->pipeline, head);
}

static void verify_task_run(struct verify_task *task)
{
	struct batch_write *b = task->batch;

	for (size_t i = task->begin; i < task->end; i++) {
		struct batch_item *item = &b->items[i];

		item->submitted =
		        http_prepare_request(json_array_get(b->array, i), &item->request,
		                             &item->error, defense_slot(b->call, &item->defense));
	}
	if (atomic_fetch_sub_explicit(&b->tasks_left, 1, memory_order_acq_rel) == 1)
		batch_prepared(b);
}

static void *verify_thread_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct verify_task *task;

		pthread_mutex_lock(&verify_pool.lock);
		while (verify_pool.head == NULL)
			pthread_cond_wait(&verify_pool.wake, &verify_pool.lock);
		task = verify_pool.head;
		verify_pool.head = task->next;
		if (verify_pool.head == NULL)
			verify_pool.tail = NULL;
		pthread_mutex_unlock(&verify_pool.lock);

		verify_task_run(task);
	}
	return NULL;
}

/* Starts one detached verification thread per online CPU. When none can be started,
 * batches are prepared on the HTTP worker that received them. */
static void verify_pool_start(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t wanted = cpus > 0 ? (size_t)cpus : 1;
	size_t started = 0;

	if (wanted > VERIFY_THREADS_MAX)
		wanted = VERIFY_THREADS_MAX;
	for (size_t i = 0; i < wanted; i++) {
		pthread_t thread;
		int rc = pthread_create(&thread, NULL, verify_thread_main, NULL);

		if (rc != 0) {
			log_error("pthread_create for batch verification thread %zu of %zu failed: "
			          "%s",
			          i + 1, wanted, strerror(rc));
			break;
		}
		pthread_detach(thread);
		started++;
	}
	verify_pool_started = started > 0;
	if (started > 0)
		log_info("started %zu batch verification threads", started);
}

/* Splits the batch into tasks and queues them for the verification threads, or
 * prepares them here when the pool could not start. */
static void batch_dispatch(struct batch_write *b)
{
	b->task_count = (b->count + VERIFY_CHUNK_ITEMS - 1) / VERIFY_CHUNK_ITEMS;
	b->tasks = calloc(b->task_count, sizeof(*b->tasks));
	if (b->tasks == NULL)
		abort();
	for (size_t t = 0; t < b->task_count; t++) {
		b->tasks[t].batch = b;
		b->tasks[t].begin = t * VERIFY_CHUNK_ITEMS;
		b->tasks[t].end = b->tasks[t].begin + VERIFY_CHUNK_ITEMS < b->count
		                          ? b->tasks[t].begin + VERIFY_CHUNK_ITEMS
		                          : b->count;
		b->tasks[t].next = t + 1 < b->task_count ? &b->tasks[t + 1] : NULL;
	}
	atomic_store(&b->tasks_left, b->task_count);

	pthread_once(&verify_pool_once, verify_pool_start);
	if (!verify_pool_started) {
		for (size_t t = 0; t < b->task_count; t++)
			verify_task_run(&b->tasks[t]);
		return;
	}

	pthread_mutex_lock(&verify_pool.lock);
	if (verify_pool.tail != NULL)
		verify_pool.tail->next = &b->tasks[0];
	else
		verify_pool.head = &b->tasks[0];
	verify_pool.tail = &b->tasks[b->task_count - 1];
	pthread_cond_broadcast(&verify_pool.wake);
	pthread_mutex_unlock(&verify_pool.lock);
}

/* Decodes the first signer of the first item, the agent of a batch, into agent.
 * Returns false when that item names no valid signer. */
static bool batch_first_signer(json_t *items, uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	json_t *signatures = json_object_get(json_array_get(items, 0), "signatures");
	const char *agent_hex =
	        json_string_value(json_object_get(json_array_get(signatures, 0), "agent_id"));

	return agent_hex != NULL &&
	       hex_decode(agent_hex, strlen(agent_hex), agent, STEMEDB_AGENT_ID_LEN);
}

/* Checks the agent of a batch against the agent binding of the request's API key. A
 * missing or malformed signer passes here, because the item's own validation rejects
 * it. */
static bool batch_signer_allowed(struct http_call *call, json_t *items)
{
	uint8_t agent[STEMEDB_AGENT_ID_LEN];

	if (!batch_first_signer(items, agent))
		return true;
	return auth_check_signer(call, agent);
}

/* Runs the per-agent protection layers for a batch. Without X-Agent-Id the requesting
 * agent is the first signer of the first item, so that item must name one while a
 * layer is enabled. Returns false after replying. */
static bool admit_batch(struct http_call *call, json_t *items)
{
	uint8_t agent[1][STEMEDB_AGENT_ID_LEN];

	if (call->agent_from_header || json_array_size(items) == 0 ||
	    !protect_any_enabled(call->state->protect))
		return true;
	if (!batch_first_signer(items, agent[0])) {
		http_reply_error(call, 400, "missing_field", "assertions[0].signatures[0].agent_id",
		                 "The first assertion of the batch names no valid signer, so the "
		                 "requesting agent is unknown; fix its first signature or send "
		                 "X-Agent-Id.");
		return false;
	}
	return protect_http_write(call, (const uint8_t(*)[32])agent, 1, false);
}

void http_handle_batch(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	struct batch_write *b;
	json_t *body, *items;

	if (p == NULL)
		return;
	body = http_read_json_body(call, call->state->config->max_batch_body_bytes);
	if (body == NULL)
		return;
	items = batch_items(call, body);
	if (items == NULL || !batch_signer_allowed(call, items) || !admit_batch(call, items)) {
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
	for (size_t i = 0; i < b->count; i++)
		assertion_init(&b->items[i].request.assertion);
	b->call = call;
	b->pipeline = p;
	b->body = body;
	b->array = items;
	call->work = b;
	call->on_resume = http_finish_batch;

	if (b->count == 0) {
		json_decref(body);
		http_finish_batch(call);
		return;
	}
	batch_dispatch(b);
}
