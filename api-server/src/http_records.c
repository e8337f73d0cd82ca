/* Endpoints of the signed records other than assertions: votes, co-signatures, epochs,
 * sources and aliases. Every write goes through the commit pipeline like an assertion,
 * so a 201 or 200 reply means the record is durable and applied. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "http_handlers.h"
#include "http_records.h"
#include "http_util.h"
#include "protect.h"
#include "stemedb/hex.h"
#include "stemedb/record_json.h"

/* Type-specific checks against stored data before a record is submitted. Each replies
 * and returns false when the record must not be written. */
typedef bool (*record_check_fn)(struct http_call *call, const struct record *r);

struct record_write {
	struct http_call *call;
	struct record record;
	struct commit_request request;
};

static void reply_codec_error(struct http_call *call, const struct codec_error *e)
{
	int status = strcmp(e->code, "out_of_range") == 0 ? 422 : 400;

	http_reply_error(call, status, e->code, e->field, "%s", e->message);
}

/* Replies 422 when a signer does not verify; returns true when all do. */
static bool check_record_signers(struct http_call *call, const struct record *r,
                                 const uint8_t id[STEMEDB_HASH_LEN])
{
	/* Votes and co-signatures carry one "signature" field, the others an array. */
	bool one_signer = r->type == STEMEDB_RECORD_VOTE || r->type == STEMEDB_RECORD_COSIGNATURE;
	const char *single_field = one_signer ? "signature" : NULL;
	char field[48];
	size_t bad = 0;

	switch (record_verify(r, id, &bad)) {
	case RECORD_VALID:
		return true;
	case RECORD_UNSIGNED:
		http_reply_error(call, 422, "missing_signature",
		                 single_field ? single_field : "signatures",
		                 "The %s record has no signature; sign it as docs/formats.md "
		                 "describes.",
		                 record_type_name(r->type));
		return false;
	case RECORD_DUPLICATE:
		snprintf(field, sizeof(field), "signatures[%zu].agent_id", bad);
		http_reply_error(call, 422, "duplicate_signer", field,
		                 "Signature %zu repeats an agent that signed already; keep one "
		                 "signature per agent.",
		                 bad);
		return false;
	case RECORD_WRONG_SIGNER:
		http_reply_error(call, 422, "invalid_signature",
		                 single_field ? single_field : "signatures",
		                 "The %s record must be signed by the agent it names.",
		                 record_type_name(r->type));
		return false;
	case RECORD_BAD_SIGNATURE:
	default:
		if (single_field == NULL)
			snprintf(field, sizeof(field), "signatures[%zu].signature", bad);
		http_reply_error(call, 422, "invalid_signature",
		                 single_field ? single_field : field,
		                 "Signature %zu does not verify over the %s record; sign "
		                 "\"stemedb-%s-v1\" || id with the agent's key (a co-signature "
		                 "signs the assertion message).",
		                 bad, record_type_name(r->type), record_type_name(r->type));
		return false;
	}
}

static void finish_record_write(struct http_call *call)
{
	struct record_write *w = call->work;
	struct commit_pipeline *p = atomic_load(&call->state->pipeline);
	char id_hex[2 * STEMEDB_HASH_LEN + 1];
	bool wal_failed = p != NULL && !commit_healthy(p);

	hex_encode(w->request.hash, STEMEDB_HASH_LEN, id_hex);
	switch (w->request.status) {
	case COMMIT_CREATED:
	case COMMIT_EXISTS:
		http_reply_json(
		        call, w->request.status == COMMIT_CREATED ? 201 : 200,
		        json_pack("{s:s, s:s, s:s}", "id", id_hex, "type",
		                  record_type_name(w->record.type), "status",
		                  w->request.status == COMMIT_CREATED ? "created" : "exists"));
		break;
	case COMMIT_FAILED:
	default:
		http_reply_error(call, wal_failed ? 503 : 500,
		                 wal_failed ? "unavailable" : "internal_error", NULL,
		                 "The %s record %s was not stored because %s; see the server log "
		                 "and retry.",
		                 record_type_name(w->record.type), id_hex,
		                 wal_failed ? "the WAL failed" : "the write failed");
		break;
	}
	record_free(&w->record);
	free(w);
}

static void on_record_committed(struct commit_request *request)
{
	struct record_write *w = request->owner;

	http_call_resume(w->call);
}

/* Runs the per-agent protection layers for the record's signers, before their
 * signatures are verified. Returns false after replying. */
static bool admit_record_signer(struct http_call *call, const struct record *r)
{
	uint8_t signers[STEMEDB_RECORD_SIGNERS_MAX][STEMEDB_AGENT_ID_LEN];

	for (size_t i = 0; i < r->signer_count; i++)
		memcpy(signers[i], r->signers[i].agent_id, STEMEDB_AGENT_ID_LEN);
	return protect_http_write(call, (const uint8_t(*)[32])signers, r->signer_count, true);
}

/* Parses, checks and submits one record of the given type from body. Takes body. */
static void submit_record(struct http_call *call, struct commit_pipeline *p, json_t *body,
                          uint8_t type, record_check_fn check)
{
	struct record_write *w = calloc(1, sizeof(*w));
	struct codec_error e;

	if (w == NULL)
		abort();
	record_init(&w->record, type);
	memset(&e, 0, sizeof(e));
	if (!json_is_object(body)) {
		http_reply_error(call, 400, "invalid_field", NULL,
		                 "The body is not a JSON object; send the %s fields as docs/api.md "
		                 "lists them.",
		                 record_type_name(type));
		goto fail;
	}
	if (!record_from_json(body, true, &w->record, &e)) {
		reply_codec_error(call, &e);
		goto fail;
	}
	if (!record_id(&w->record, w->request.hash)) {
		http_reply_error(call, 422, "out_of_range", NULL,
		                 "The %s record cannot be encoded; check the field lengths.",
		                 record_type_name(type));
		goto fail;
	}
	if ((w->record.signer_count > 0 &&
	     !auth_check_signer(call, w->record.signers[0].agent_id)) ||
	    !admit_record_signer(call, &w->record) ||
	    !check_record_signers(call, &w->record, w->request.hash) ||
	    (check != NULL && !check(call, &w->record)))
		goto fail;

	json_decref(body);
	w->call = call;
	w->request.record = &w->record;
	w->request.on_complete = on_record_committed;
	w->request.owner = w;
	call->on_resume = finish_record_write;
	call->work = w;
	commit_submit(p, &w->request);
	return;

fail:
	json_decref(body);
	record_free(&w->record);
	free(w);
}

/* Reads the parameter between prefix and suffix of the path as a 32-byte hex id. */
static bool path_hash(struct http_call *call, const char *prefix, const char *suffix,
                      const char *name, uint8_t out[STEMEDB_HASH_LEN])
{
	const char *text = call->path + strlen(prefix);
	size_t len = strlen(text) - (suffix != NULL ? strlen(suffix) : 0);

	if (!hex_decode(text, len, out, STEMEDB_HASH_LEN)) {
		http_reply_error(call, 400, "invalid_parameter", name,
		                 "'%.*s' is not a %s; give 64 hex characters.",
		                 (int)(len > 100 ? 100 : len), text, name);
		return false;
	}
	return true;
}

/* Replies 404 (or 500) and returns false unless the assertion is stored. */
static bool require_assertion(struct http_call *call, const uint8_t hash[STEMEDB_HASH_LEN],
                              const char *field)
{
	char hex[2 * STEMEDB_HASH_LEN + 1];
	enum store_result rc = store_has_assertion(call->state->store, hash);

	hex_encode(hash, STEMEDB_HASH_LEN, hex);
	if (rc == STORE_NOT_FOUND)
		http_reply_error(call, 404, "assertion_not_found", field,
		                 "No assertion has hash %s on this node; store it first or check "
		                 "the hash.",
		                 hex);
	else if (rc != STORE_OK)
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading assertion %s failed; see the server log.", hex);
	return rc == STORE_OK;
}

/* ---- votes ---- */

static bool check_vote(struct http_call *call, const struct record *r)
{
	return require_assertion(call, r->u.vote.assertion_hash, "assertion_hash");
}

void http_handle_vote(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	json_t *body;

	if (p == NULL || !http_query_reject_any(call))
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body != NULL)
		submit_record(call, p, body, STEMEDB_RECORD_VOTE, check_vote);
}

struct vote_listing {
	json_t *votes;
	int64_t weight_sum_micro;
};

static bool list_vote(void *ctx, const struct store_vote *vote)
{
	struct vote_listing *l = ctx;
	char voter[2 * STEMEDB_AGENT_ID_LEN + 1];
	char id[2 * STEMEDB_HASH_LEN + 1];

	hex_encode(vote->voter, STEMEDB_AGENT_ID_LEN, voter);
	hex_encode(vote->id, STEMEDB_HASH_LEN, id);
	l->weight_sum_micro += vote->weight_micro;
	json_array_append_new(l->votes,
	                      json_pack("{s:s, s:f, s:I, s:s, s:I}", "voter", voter, "weight",
	                                (double)vote->weight_micro / 1e6, "timestamp",
	                                (json_int_t)vote->timestamp, "id", id, "superseded_votes",
	                                (json_int_t)vote->superseded));
	return true;
}

void http_handle_assertion_votes(struct http_call *call)
{
	uint8_t hash[STEMEDB_HASH_LEN];
	char hex[2 * STEMEDB_HASH_LEN + 1];
	struct vote_listing l = {json_array(), 0};

	if (http_require_ready(call) == NULL || !http_query_reject_any(call) ||
	    !path_hash(call, "/v1/assertions/", "/votes", "hash", hash) ||
	    !require_assertion(call, hash, "hash"))
		goto done;

	if (store_scan_votes(call->state->store, hash, list_vote, &l) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading the votes of an assertion failed; see the server log.");
		goto done;
	}
	hex_encode(hash, STEMEDB_HASH_LEN, hex);
	http_reply_json(call, 200,
	                json_pack("{s:s, s:I, s:f, s:O}", "assertion_hash", hex, "count",
	                          (json_int_t)json_array_size(l.votes), "weight_sum",
	                          (double)l.weight_sum_micro / 1e6, "votes", l.votes));

done:
	json_decref(l.votes);
}

static bool add_vote_weight(void *ctx, const struct store_vote *vote)
{
	int64_t *sum = ctx;

	*sum += vote->weight_micro;
	return true;
}

double http_records_vote_sum(void *ctx, const uint8_t hash[STEMEDB_HASH_LEN])
{
	int64_t sum = 0;

	/* A read error counts as no votes; store_scan_votes has logged it. */
	if (store_scan_votes(ctx, hash, add_vote_weight, &sum) != STORE_OK)
		return 0.0;
	return (double)sum / 1e6;
}

/* ---- co-signatures ---- */

/* The assertion must exist, must not be signed by the agent already, and must have a
 * free signer slot. An identical co-signature record passes, so that it gets 200. */
static bool check_cosignature(struct http_call *call, const struct record *r)
{
	const struct cosignature *cs = &r->u.cosignature;
	uint8_t id[STEMEDB_HASH_LEN];
	char agent[2 * STEMEDB_AGENT_ID_LEN + 1];
	struct hlc_stamp hlc;
	struct assertion a;
	bool ok = false;

	if (!require_assertion(call, cs->assertion_hash, "assertion_hash"))
		return false;
	if (record_id(r, id) && store_has_record(call->state->store, r->type, id) == STORE_OK)
		return true;

	assertion_init(&a);
	hex_encode(cs->agent_id, STEMEDB_AGENT_ID_LEN, agent);
	if (store_get_assertion(call->state->store, cs->assertion_hash, &a, &hlc) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading the co-signed assertion failed; see the server log.");
		goto done;
	}
	for (size_t i = 0; i < a.signature_count; i++) {
		if (memcmp(a.signatures[i].agent_id, cs->agent_id, STEMEDB_AGENT_ID_LEN) == 0) {
			http_reply_error(call, 409, "already_signed", "agent_id",
			                 "Agent %s has signed this assertion already; each agent "
			                 "signs an assertion once.",
			                 agent);
			goto done;
		}
	}
	if (a.signature_count >= STEMEDB_SIGNATURES_MAX) {
		http_reply_error(call, 409, "too_many_signatures", NULL,
		                 "The assertion has %d signatures, the maximum; it takes no more.",
		                 STEMEDB_SIGNATURES_MAX);
		goto done;
	}
	ok = true;

done:
	assertion_free(&a);
	return ok;
}

void http_handle_cosign(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	uint8_t hash[STEMEDB_HASH_LEN];
	char hex[2 * STEMEDB_HASH_LEN + 1];
	json_t *body;
	const json_t *body_hash;

	if (p == NULL || !http_query_reject_any(call) ||
	    !path_hash(call, "/v1/assertions/", "/signatures", "hash", hash))
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body == NULL)
		return;

	/* The path names the assertion; a body field may repeat it but not contradict it. */
	hex_encode(hash, STEMEDB_HASH_LEN, hex);
	body_hash = json_is_object(body) ? json_object_get(body, "assertion_hash") : NULL;
	if (body_hash != NULL &&
	    !(json_is_string(body_hash) && strcmp(json_string_value(body_hash), hex) == 0)) {
		json_decref(body);
		http_reply_error(call, 400, "invalid_field", "assertion_hash",
		                 "assertion_hash does not match the hash in the path (%s); omit it "
		                 "or send the same value.",
		                 hex);
		return;
	}
	if (json_is_object(body))
		json_object_set_new(body, "assertion_hash", json_string(hex));
	submit_record(call, p, body, STEMEDB_RECORD_COSIGNATURE, check_cosignature);
}

/* ---- epochs ---- */

/* Maximum number of superseding epochs followed before a chain counts as a cycle. */
#define EPOCH_CHAIN_MAX 64

void http_handle_epoch(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	json_t *body;

	if (p == NULL || !http_query_reject_any(call))
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body != NULL)
		submit_record(call, p, body, STEMEDB_RECORD_EPOCH, NULL);
}

static bool take_first_superseding(void *ctx, const uint8_t *key, size_t key_len,
                                   const uint8_t *value, size_t value_len)
{
	uint8_t *out = ctx;

	(void)value;
	(void)value_len;
	if (key_len == 1 + 2 * STEMEDB_HASH_LEN)
		memcpy(out, key + 1 + STEMEDB_HASH_LEN, STEMEDB_HASH_LEN);
	return false;
}

/* Finds the stored epoch that supersedes epoch; with several, the smallest id. */
static enum store_result superseding_epoch(struct store *s, const uint8_t epoch[STEMEDB_HASH_LEN],
                                           uint8_t by[STEMEDB_HASH_LEN])
{
	uint8_t prefix[1 + STEMEDB_HASH_LEN];
	uint8_t none[STEMEDB_HASH_LEN] = {0};
	struct store_scan scan = {
	        .family = STORE_INDEX_RECORDS, .prefix = prefix, .prefix_len = sizeof(prefix)};

	prefix[0] = STORE_RECORDS_SUPERSEDED_BY;
	memcpy(prefix + 1, epoch, STEMEDB_HASH_LEN);
	memcpy(by, none, STEMEDB_HASH_LEN);
	if (store_index_scan(s, &scan, take_first_superseding, by) != STORE_OK)
		return STORE_ERROR;
	return memcmp(by, none, STEMEDB_HASH_LEN) == 0 ? STORE_NOT_FOUND : STORE_OK;
}

enum epoch_state { EPOCH_CURRENT = 0, EPOCH_SUPERSEDED, EPOCH_MISSING, EPOCH_CYCLE, EPOCH_FAILED };

/* Follows the superseding epochs from epoch to the end of the chain. */
static enum epoch_state epoch_state_of(struct store *s, const uint8_t epoch[STEMEDB_HASH_LEN])
{
	uint8_t chain[EPOCH_CHAIN_MAX + 1][STEMEDB_HASH_LEN];
	enum store_result rc = store_has_record(s, STEMEDB_RECORD_EPOCH, epoch);

	if (rc != STORE_OK)
		return rc == STORE_NOT_FOUND ? EPOCH_MISSING : EPOCH_FAILED;

	memcpy(chain[0], epoch, STEMEDB_HASH_LEN);
	for (size_t n = 0; n < EPOCH_CHAIN_MAX; n++) {
		rc = superseding_epoch(s, chain[n], chain[n + 1]);
		if (rc == STORE_NOT_FOUND)
			return n == 0 ? EPOCH_CURRENT : EPOCH_SUPERSEDED;
		if (rc != STORE_OK)
			return EPOCH_FAILED;
		for (size_t k = 0; k <= n; k++) {
			if (memcmp(chain[k], chain[n + 1], STEMEDB_HASH_LEN) == 0)
				return EPOCH_CYCLE;
		}
	}
	return EPOCH_CYCLE;
}

static void add_warning(struct read_params *rp, const char *fmt, const char *epoch_hex)
{
	if (rp->warning_count < READ_WARNINGS_MAX)
		snprintf(rp->warnings[rp->warning_count++], READ_WARNING_LEN, fmt, epoch_hex);
}

/* The state of each distinct epoch among the candidates, looked up once per request. */
struct epoch_cache {
	uint8_t (*ids)[STEMEDB_HASH_LEN];
	enum epoch_state *states;
	size_t count;
};

static enum epoch_state cached_state(struct epoch_cache *cache, struct store *s,
                                     struct read_params *rp, const uint8_t epoch[STEMEDB_HASH_LEN])
{
	char hex[2 * STEMEDB_HASH_LEN + 1];
	enum epoch_state state;

	for (size_t i = 0; i < cache->count; i++) {
		if (memcmp(cache->ids[i], epoch, STEMEDB_HASH_LEN) == 0)
			return cache->states[i];
	}

	state = epoch_state_of(s, epoch);
	memcpy(cache->ids[cache->count], epoch, STEMEDB_HASH_LEN);
	cache->states[cache->count++] = state;
	hex_encode(epoch, STEMEDB_HASH_LEN, hex);
	if (state == EPOCH_MISSING)
		add_warning(
		        rp,
		        "Epoch %s has no stored record, so its candidates are kept; register it "
		        "with POST /v1/epoch.",
		        hex);
	else if (state == EPOCH_CYCLE)
		add_warning(rp,
		            "The supersession chain of epoch %s has a cycle or is longer than 64 "
		            "epochs, so its candidates are kept.",
		            hex);
	return state;
}

bool http_records_filter_superseded(struct http_call *call, struct read_params *rp,
                                    struct candidate_list *list)
{
	struct epoch_cache cache = {0};
	size_t kept = 0;
	bool ok = true;

	cache.ids = malloc((list->count + 1) * sizeof(*cache.ids));
	cache.states = malloc((list->count + 1) * sizeof(*cache.states));
	if (cache.ids == NULL || cache.states == NULL)
		abort();

	/* Dropped candidates are swapped past count so that candidate_list_free frees them. */
	for (size_t i = 0; i < list->count; i++) {
		struct candidate *c = &list->items[i];
		enum epoch_state state =
		        c->has_epoch ? cached_state(&cache, call->state->store, rp, c->epoch)
		                     : EPOCH_CURRENT;
		struct candidate tmp;

		ok = ok && state != EPOCH_FAILED;
		if (state == EPOCH_SUPERSEDED && !rp->include_superseded) {
			rp->superseded_excluded++;
			continue;
		}
		tmp = list->items[kept];
		list->items[kept++] = *c;
		*c = tmp;
	}
	for (size_t i = kept; i < list->count; i++) {
		free(list->items[i].object.text);
		list->items[i].object.text = NULL;
	}
	list->count = kept;
	free(cache.ids);
	free(cache.states);

	if (!ok)
		http_reply_error(
		        call, 500, "internal_error", NULL,
		        "Reading the epochs of the candidates failed; see the server log.");
	return ok;
}

void http_records_write_warnings(struct json_writer *w, const struct read_params *rp)
{
	if (rp->alias_count > 0) {
		json_writer_key(w, "aliases_included");
		json_writer_uint(w, rp->alias_count);
	}
	if (rp->aliases_truncated) {
		json_writer_key(w, "aliases_truncated");
		json_writer_bool(w, true);
	}
	if (rp->superseded_excluded > 0) {
		json_writer_key(w, "superseded_excluded");
		json_writer_uint(w, rp->superseded_excluded);
	}
	if (rp->warning_count == 0)
		return;

	json_writer_key(w, "warnings");
	json_writer_array_begin(w);
	for (size_t i = 0; i < rp->warning_count; i++)
		json_writer_cstring(w, rp->warnings[i]);
	json_writer_array_end(w);
}

static bool list_superseding(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                             size_t value_len)
{
	char hex[2 * STEMEDB_HASH_LEN + 1];

	(void)value;
	(void)value_len;
	if (key_len == 1 + 2 * STEMEDB_HASH_LEN) {
		hex_encode(key + 1 + STEMEDB_HASH_LEN, STEMEDB_HASH_LEN, hex);
		json_array_append_new(ctx, json_string(hex));
	}
	return json_array_size(ctx) < 100;
}

/* Lists the older epochs that epoch supersedes, following "supersedes" links, and marks
 * the first one that has no stored record or that repeats. */
static json_t *supersedes_chain(struct store *s, const struct record *start, bool *failed)
{
	json_t *chain = json_array();
	struct record r;
	uint8_t next[STEMEDB_HASH_LEN];
	uint8_t seen[EPOCH_CHAIN_MAX][STEMEDB_HASH_LEN];
	size_t seen_count = 0;
	bool has_next = start->u.epoch.has_supersedes;
	char hex[2 * STEMEDB_HASH_LEN + 1];

	memcpy(next, start->u.epoch.supersedes, STEMEDB_HASH_LEN);
	while (has_next && seen_count < EPOCH_CHAIN_MAX) {
		struct hlc_stamp hlc;
		enum store_result rc;
		bool repeated = false;

		for (size_t k = 0; k < seen_count; k++)
			repeated = repeated || memcmp(seen[k], next, STEMEDB_HASH_LEN) == 0;
		hex_encode(next, STEMEDB_HASH_LEN, hex);
		if (repeated) {
			json_array_append_new(chain,
			                      json_pack("{s:s, s:b}", "id", hex, "cycle", 1));
			break;
		}
		memcpy(seen[seen_count++], next, STEMEDB_HASH_LEN);

		record_init(&r, STEMEDB_RECORD_EPOCH);
		rc = store_get_record(s, STEMEDB_RECORD_EPOCH, next, &r, &hlc);
		if (rc != STORE_OK) {
			*failed = rc == STORE_ERROR;
			json_array_append_new(chain,
			                      json_pack("{s:s, s:b}", "id", hex, "missing", 1));
			record_free(&r);
			break;
		}
		json_array_append_new(chain, json_pack("{s:s, s:s%}", "id", hex, "name",
		                                       r.u.epoch.name, r.u.epoch.name_len));
		has_next = r.u.epoch.has_supersedes;
		memcpy(next, r.u.epoch.supersedes, STEMEDB_HASH_LEN);
		record_free(&r);
	}
	return chain;
}

static const char *epoch_state_name(enum epoch_state state)
{
	switch (state) {
	case EPOCH_CURRENT:
		return "current";
	case EPOCH_SUPERSEDED:
		return "superseded";
	case EPOCH_CYCLE:
		return "cycle";
	default:
		return "unknown";
	}
}

void http_handle_epoch_get(struct http_call *call)
{
	uint8_t id[STEMEDB_HASH_LEN];
	uint8_t prefix[1 + STEMEDB_HASH_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_RECORDS, .prefix = prefix, .prefix_len = sizeof(prefix)};
	struct store *s = call->state->store;
	struct hlc_stamp hlc;
	struct record r;
	enum store_result rc;
	json_t *body = NULL;
	json_t *superseded_by = json_array();
	bool failed = false;

	record_init(&r, STEMEDB_RECORD_EPOCH);
	if (http_require_ready(call) == NULL || !http_query_reject_any(call) ||
	    !path_hash(call, "/v1/epochs/", NULL, "id", id))
		goto done;

	rc = store_get_record(s, STEMEDB_RECORD_EPOCH, id, &r, &hlc);
	if (rc == STORE_NOT_FOUND) {
		http_reply_error(call, 404, "epoch_not_found", "id",
		                 "No epoch has id %.64s on this node; check the id.",
		                 call->path + strlen("/v1/epochs/"));
		goto done;
	}

	prefix[0] = STORE_RECORDS_SUPERSEDED_BY;
	memcpy(prefix + 1, id, STEMEDB_HASH_LEN);
	if (rc == STORE_OK)
		failed = store_index_scan(s, &scan, list_superseding, superseded_by) != STORE_OK;
	if (rc != STORE_OK || failed) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading epoch %.64s failed; see the server log.",
		                 call->path + strlen("/v1/epochs/"));
		goto done;
	}

	body = record_to_json(&r, id, false);
	json_object_set_new(body, "state", json_string(epoch_state_name(epoch_state_of(s, id))));
	json_object_set(body, "superseded_by", superseded_by);
	json_object_set_new(body, "supersedes_chain", supersedes_chain(s, &r, &failed));
	http_reply_json(call, 200, body);

done:
	json_decref(superseded_by);
	record_free(&r);
}

/* ---- sources ---- */

/* Body limit of POST /v1/sources: 1 MiB of content can grow sixfold as JSON escapes
 * (\u0000), plus room for the other fields. */
#define SOURCE_BODY_MAX       (6u * STEMEDB_SOURCE_CONTENT_MAX + 65536u)
#define SOURCES_LIMIT_DEFAULT 100
#define SOURCES_LIMIT_MAX     1000

void http_handle_source_create(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	uint64_t limit = call->state->config->max_body_bytes;
	json_t *body;

	if (p == NULL || !http_query_reject_any(call))
		return;
	body = http_read_json_body(call, limit > SOURCE_BODY_MAX ? limit : SOURCE_BODY_MAX);
	if (body != NULL)
		submit_record(call, p, body, STEMEDB_RECORD_SOURCE, NULL);
}

void http_handle_source_get(struct http_call *call)
{
	uint8_t id[STEMEDB_HASH_LEN];
	struct hlc_stamp hlc;
	struct record r;
	enum store_result rc;

	record_init(&r, STEMEDB_RECORD_SOURCE);
	if (http_require_ready(call) == NULL || !http_query_reject_any(call) ||
	    !path_hash(call, "/v1/sources/", NULL, "hash", id))
		goto done;

	rc = store_get_record(call->state->store, STEMEDB_RECORD_SOURCE, id, &r, &hlc);
	if (rc == STORE_NOT_FOUND)
		http_reply_error(call, 404, "source_not_found", "hash",
		                 "No source has hash %.64s on this node; check the hash.",
		                 call->path + strlen("/v1/sources/"));
	else if (rc != STORE_OK)
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading source %.64s failed; see the server log.",
		                 call->path + strlen("/v1/sources/"));
	else
		http_reply_json(call, 200, record_to_json(&r, id, true));

done:
	record_free(&r);
}

struct source_page {
	struct store *store;
	json_t *items;
	uint64_t limit;
	bool more;   /* a key past the page exists */
	bool failed; /* a listed record could not be read */
	uint8_t last[STEMEDB_HASH_LEN];
};

static bool list_source(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                        size_t value_len)
{
	struct source_page *page = ctx;
	struct record r;
	struct hlc_stamp hlc;

	if (key_len != 1 + STEMEDB_HASH_LEN)
		return true;
	if (json_array_size(page->items) == page->limit) {
		page->more = true;
		return false;
	}

	record_init(&r, STEMEDB_RECORD_SOURCE);
	if (!record_decode_envelope(value, value_len, &r, &hlc)) {
		page->failed = true;
		record_free(&r);
		return false;
	}
	memcpy(page->last, key + 1, STEMEDB_HASH_LEN);
	json_array_append_new(page->items, record_to_json(&r, key + 1, false));
	record_free(&r);
	return true;
}

/* Reads limit and cursor; replies 400 and returns false when one is invalid. */
static bool parse_source_query(struct http_call *call, struct source_page *page,
                               uint8_t cursor[STEMEDB_HASH_LEN], bool *has_cursor)
{
	static const char *const names[] = {"limit", "cursor", NULL};
	const struct http_param *p;
	struct http_query q;
	bool ok = false;

	if (!http_query_parse(call, names, &q))
		goto done;
	p = http_query_get(&q, "limit");
	if (p != NULL && !http_parse_u64(p->value, 1, SOURCES_LIMIT_MAX, &page->limit)) {
		http_reply_error(call, 400, "invalid_parameter", "limit",
		                 "Query parameter limit='%.40s' is invalid; give an integer from 1 "
		                 "to 1000.",
		                 p->value);
		goto done;
	}
	p = http_query_get(&q, "cursor");
	*has_cursor = p != NULL;
	if (p != NULL && !hex_decode(p->value, p->value_len, cursor, STEMEDB_HASH_LEN)) {
		http_reply_error(call, 400, "invalid_parameter", "cursor",
		                 "Query parameter cursor='%.80s' is invalid; pass next_cursor from "
		                 "the previous page.",
		                 p->value);
		goto done;
	}
	ok = true;

done:
	http_query_free(&q);
	return ok;
}

void http_handle_sources_list(struct http_call *call)
{
	struct source_page page = {.store = call->state->store, .limit = SOURCES_LIMIT_DEFAULT};
	uint8_t prefix = STEMEDB_RECORD_SOURCE;
	uint8_t after[1 + STEMEDB_HASH_LEN] = {STEMEDB_RECORD_SOURCE};
	struct store_scan scan = {
	        .family = STORE_INDEX_RECORDS, .prefix = &prefix, .prefix_len = 1};
	char next[2 * STEMEDB_HASH_LEN + 1];
	bool has_cursor = false;

	if (http_require_ready(call) == NULL ||
	    !parse_source_query(call, &page, after + 1, &has_cursor))
		return;
	if (has_cursor) {
		scan.after = after;
		scan.after_len = sizeof(after);
	}

	page.items = json_array();
	if (store_index_scan(call->state->store, &scan, list_source, &page) != STORE_OK ||
	    page.failed) {
		json_decref(page.items);
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Listing the sources failed; see the server log.");
		return;
	}
	hex_encode(page.last, STEMEDB_HASH_LEN, next);
	http_reply_json(call, 200,
	                json_pack("{s:o, s:s?}", "sources", page.items, "next_cursor",
	                          page.more ? next : NULL));
}

/* ---- aliases ---- */

static bool check_alias(struct http_call *call, const struct record *r)
{
	const struct alias *a = &r->u.alias;

	if (a->subject_a_len == a->subject_b_len &&
	    memcmp(a->subject_a, a->subject_b, a->subject_a_len) == 0) {
		http_reply_error(
		        call, 422, "out_of_range", "subject_b",
		        "subject_b equals subject_a; an alias links two different subjects.");
		return false;
	}
	return true;
}

void http_handle_alias(struct http_call *call)
{
	struct commit_pipeline *p = http_require_ready(call);
	json_t *body;

	if (p == NULL || !http_query_reject_any(call))
		return;
	body = http_read_json_body(call, call->state->config->max_body_bytes);
	if (body != NULL)
		submit_record(call, p, body, STEMEDB_RECORD_ALIAS, check_alias);
}

struct alias_scan {
	struct http_call *call;
	struct read_params *rp;
	struct candidate_list *list;
	size_t prefix_len;
	size_t added; /* aliased subjects scanned by this call */
	bool failed;
};

static bool add_alias_candidates(void *ctx, const uint8_t *key, size_t key_len,
                                 const uint8_t *value, size_t value_len)
{
	struct alias_scan *scan = ctx;
	struct read_params *rp = scan->rp;
	size_t len = key_len - scan->prefix_len;
	char subject[STEMEDB_SUBJECT_MAX + 1];

	(void)value;
	(void)value_len;
	if (len == 0 || len > STEMEDB_SUBJECT_MAX)
		return true;
	if (scan->added == READ_ALIASES_MAX) {
		rp->aliases_truncated = true;
		return false;
	}

	/* store_scan_candidates takes NUL-free text; the subject is copied out of the key. */
	memcpy(subject, key + scan->prefix_len, len);
	subject[len] = '\0';
	scan->added++;
	rp->alias_count++;
	if (store_scan_candidates(scan->call->state->store, subject, len, rp->predicate,
	                          rp->predicate_len, rp->has_as_of ? rp->as_of : UINT64_MAX, 0,
	                          scan->list) != STORE_OK) {
		scan->failed = true;
		return false;
	}
	return true;
}

bool http_records_add_alias_candidates(struct http_call *call, struct read_params *rp,
                                       struct candidate_list *list)
{
	struct alias_scan ctx = {.call = call, .rp = rp, .list = list};
	struct store_scan scan = {.family = STORE_INDEX_RECORDS};
	struct buf prefix;

	buf_init(&prefix);
	store_alias_prefix(&prefix, rp->subject, rp->subject_len);
	scan.prefix = prefix.data;
	scan.prefix_len = prefix.len;
	ctx.prefix_len = prefix.len;
	if (store_index_scan(call->state->store, &scan, add_alias_candidates, &ctx) != STORE_OK)
		ctx.failed = true;
	buf_free(&prefix);

	if (!ctx.failed)
		return true;

	/* The callers free the list only on success. */
	candidate_list_free(list);
	http_reply_error(call, 500, "internal_error", NULL,
	                 "Reading the aliases of subject '%.100s' failed; see the server log.",
	                 rp->subject);
	return false;
}
