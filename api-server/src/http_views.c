/* Read-side views over the stored assertions: the layered view per source tier and the
 * lineage trace along parent_hash links. */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_audit.h"
#include "http_handlers.h"
#include "http_read.h"
#include "http_util.h"
#include "lens.h"
#include "stemedb/hex.h"
#include "stemedb/json_codec.h"
#include "stemedb/log.h"
#include "stemedb/record_json.h"

#define TRACE_DEPTH_DEFAULT 10
#define TRACE_DEPTH_MAX     100
/* Bound on the descendants one trace lists, so that a hash revised by many assertions
 * cannot make one reply unbounded. */
#define TRACE_DESCENDANTS_MAX 1000

static const char *const layered_param_names[] = {
        "subject",   "predicate",          "as_of", "lifecycle", "decay",
        "tolerance", "include_superseded", NULL};

/* Writes the leading claim of a skeptic result, or null when it has no claim. */
static void write_leading_claim(struct json_writer *w, const struct skeptic_result *result,
                                const struct candidate *items)
{
	if (result->claims.count == 0) {
		json_writer_null(w);
		return;
	}
	http_read_write_claim(w, &result->claims.claims[0], items);
}

static void write_tier(struct json_writer *w, const struct layered_tier *layer)
{
	json_writer_object_begin(w);
	json_writer_key(w, "source_class");
	json_writer_cstring(w, source_class_name(layer->tier));
	json_writer_key(w, "tier");
	json_writer_uint(w, layer->tier);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, layer->count);
	json_writer_key(w, "claim_count");
	json_writer_uint(w, layer->skeptic.claims.count);
	json_writer_key(w, "status");
	json_writer_cstring(w, skeptic_status_name(layer->skeptic.status));
	json_writer_key(w, "conflict_score");
	json_writer_double(w, layer->skeptic.conflict_score);
	json_writer_key(w, "leading_claim");
	write_leading_claim(w, &layer->skeptic, layer->items);
	json_writer_object_end(w);
}

static void write_layered(struct json_writer *w, const struct read_params *rp,
                          const struct candidate_list *list, const struct layered_result *result)
{
	http_read_write_header(w, rp);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, list->count);

	json_writer_key(w, "answer");
	if (result->tier_count > 0)
		write_leading_claim(w, &result->tiers[0].skeptic, result->tiers[0].items);
	else
		json_writer_null(w);
	json_writer_key(w, "answer_source_class");
	if (result->tier_count > 0)
		json_writer_cstring(w, source_class_name(result->tiers[0].tier));
	else
		json_writer_null(w);

	json_writer_key(w, "cross_tier_status");
	json_writer_cstring(w, skeptic_status_name(result->overall.status));
	json_writer_key(w, "cross_tier_conflict_score");
	json_writer_double(w, result->overall.conflict_score);

	json_writer_key(w, "tiers");
	json_writer_array_begin(w);
	for (size_t k = 0; k < result->tier_count; k++)
		write_tier(w, &result->tiers[k]);
	json_writer_array_end(w);
	json_writer_object_end(w);
}

/* The representative candidate of the overall result, or NULL without candidates. */
static const struct candidate *layered_answer(const struct layered_result *result)
{
	const struct layered_tier *top = &result->tiers[0];

	if (result->tier_count == 0 || top->skeptic.claims.count == 0)
		return NULL;
	return &top->items[top->skeptic.claims.claims[0].representative];
}

void http_handle_layered(struct http_call *call)
{
	struct audit_entry entry;
	struct layered_result result;
	struct candidate_list list;
	struct read_params rp;
	struct http_query q;
	struct json_writer w;
	struct buf body;

	if (!http_read_begin(call, layered_param_names, "layered", &q, &rp, &list, &entry))
		return;

	lens_layered(list.items, list.count, &rp.lens_params, &result);
	http_reply_begin(&body, &w);
	write_layered(&w, &rp, &list, &result);
	/* Before the reply, because http_reply_text frees the call. */
	http_audit_submit_claims(call, &entry, &list, &rp.lens_params, layered_answer(&result));
	http_reply_text(call, 200, &body);

	layered_result_free(&result);
	candidate_list_free(&list);
	http_query_free(&q);
}

/* ---- GET /v1/trace/{hash} ---- */

struct trace {
	struct http_call *call;
	uint64_t max_depth;
	uint8_t (*seen)[STEMEDB_HASH_LEN]; /* every hash listed so far, for cycle protection */
	size_t seen_count;
	size_t seen_cap;
	bool truncated;
	bool failed;
};

static bool trace_seen(struct trace *t, const uint8_t hash[STEMEDB_HASH_LEN])
{
	for (size_t i = 0; i < t->seen_count; i++) {
		if (memcmp(t->seen[i], hash, STEMEDB_HASH_LEN) == 0)
			return true;
	}
	return false;
}

static void trace_mark(struct trace *t, const uint8_t hash[STEMEDB_HASH_LEN])
{
	if (t->seen_count == t->seen_cap) {
		t->seen_cap = t->seen_cap == 0 ? 16 : t->seen_cap * 2;
		t->seen = realloc(t->seen, t->seen_cap * STEMEDB_HASH_LEN);
		if (t->seen == NULL)
			abort();
	}
	memcpy(t->seen[t->seen_count++], hash, STEMEDB_HASH_LEN);
}

/* Reads one assertion into a and builds its JSON with its distance from the traced one,
 * or a {"hash", "depth", "stored": false} stub when the hash is not stored on this node.
 * Sets *stored to whether the assertion was found. */
static json_t *trace_node(struct trace *t, const uint8_t hash[STEMEDB_HASH_LEN], uint64_t depth,
                          struct assertion *a, bool *stored)
{
	char hex[2 * STEMEDB_HASH_LEN + 1];
	struct hlc_stamp hlc;
	enum store_result rc;
	json_t *node;

	assertion_free(a);
	assertion_init(a);
	rc = store_get_assertion(t->call->state->store, hash, a, &hlc);
	if (rc == STORE_ERROR)
		t->failed = true;
	*stored = rc == STORE_OK;
	if (rc != STORE_OK) {
		hex_encode(hash, STEMEDB_HASH_LEN, hex);
		return json_pack("{s:s, s:I, s:b}", "hash", hex, "depth", (json_int_t)depth,
		                 "stored", 0);
	}
	node = assertion_to_json(a, hash);
	json_object_set_new(node, "depth", json_integer((json_int_t)depth));
	json_object_set_new(node, "stored", json_true());
	return node;
}

/* Follows parent_hash from the traced assertion up to max_depth steps. */
static json_t *trace_ancestors(struct trace *t, const struct assertion *start)
{
	json_t *list = json_array();
	uint8_t next[STEMEDB_HASH_LEN];
	bool has_next = start->has_parent;
	struct assertion a;
	bool stored;

	assertion_init(&a);
	if (has_next)
		memcpy(next, start->parent_hash, STEMEDB_HASH_LEN);
	for (uint64_t depth = 1; has_next && !t->failed; depth++) {
		if (depth > t->max_depth) {
			t->truncated = true;
			break;
		}
		if (trace_seen(t, next)) {
			log_warn("the parent_hash chain of a traced assertion loops back to an "
			         "assertion already listed; the trace stops there");
			break;
		}
		trace_mark(t, next);
		json_array_append_new(list, trace_node(t, next, depth, &a, &stored));
		has_next = stored && a.has_parent;
		if (has_next)
			memcpy(next, a.parent_hash, STEMEDB_HASH_LEN);
	}
	assertion_free(&a);
	return list;
}

struct child_list {
	uint8_t (*hashes)[STEMEDB_HASH_LEN];
	size_t count;
	size_t cap;
};

static bool collect_child(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                          size_t value_len)
{
	struct child_list *children = ctx;

	(void)value;
	(void)value_len;
	if (key_len != 1 + 2 * STEMEDB_HASH_LEN)
		return true;
	if (children->count == children->cap) {
		children->cap = children->cap == 0 ? 16 : children->cap * 2;
		children->hashes = realloc(children->hashes, children->cap * STEMEDB_HASH_LEN);
		if (children->hashes == NULL)
			abort();
	}
	memcpy(children->hashes[children->count++], key + 1 + STEMEDB_HASH_LEN, STEMEDB_HASH_LEN);
	return children->count <= TRACE_DESCENDANTS_MAX;
}

/* Appends to children the assertions whose parent_hash is parent, in hash order. */
static void trace_children(struct trace *t, const uint8_t parent[STEMEDB_HASH_LEN],
                           struct child_list *children)
{
	uint8_t prefix[1 + STEMEDB_HASH_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = sizeof(prefix)};

	prefix[0] = STORE_VIEW_CHILDREN;
	memcpy(prefix + 1, parent, STEMEDB_HASH_LEN);
	if (store_index_scan(t->call->state->store, &scan, collect_child, children) != STORE_OK)
		t->failed = true;
}

/* Lists what revises the traced assertion, breadth first: every assertion whose parent is
 * the traced one at depth 1, their revisions at depth 2, and so on up to max_depth. */
static json_t *trace_descendants(struct trace *t, const uint8_t root[STEMEDB_HASH_LEN])
{
	struct child_list level = {0};
	struct child_list next = {0};
	json_t *list = json_array();
	struct assertion a;
	bool stored;

	assertion_init(&a);
	trace_children(t, root, &level);
	for (uint64_t depth = 1; level.count > 0 && !t->failed; depth++) {
		if (depth > t->max_depth || json_array_size(list) >= TRACE_DESCENDANTS_MAX) {
			t->truncated = true;
			break;
		}
		next.count = 0;
		for (size_t i = 0; i < level.count && json_array_size(list) < TRACE_DESCENDANTS_MAX;
		     i++) {
			if (trace_seen(t, level.hashes[i]))
				continue;
			trace_mark(t, level.hashes[i]);
			json_array_append_new(list,
			                      trace_node(t, level.hashes[i], depth, &a, &stored));
			trace_children(t, level.hashes[i], &next);
		}
		struct child_list swap = level;
		level = next;
		next = swap;
	}
	assertion_free(&a);
	free(level.hashes);
	free(next.hashes);
	return list;
}

static bool parse_trace_depth(struct http_call *call, uint64_t *depth)
{
	static const char *const names[] = {"depth", NULL};
	const struct http_param *p;
	struct http_query q;
	bool ok = false;

	*depth = TRACE_DEPTH_DEFAULT;
	if (!http_query_parse(call, names, &q))
		goto done;
	p = http_query_get(&q, "depth");
	if (p != NULL && !http_parse_u64(p->value, 0, TRACE_DEPTH_MAX, depth)) {
		http_reply_error(
		        call, 400, "invalid_parameter", "depth",
		        "Query parameter depth='%.100s' is invalid; give an integer from 0 "
		        "to %d.",
		        p->value, TRACE_DEPTH_MAX);
		goto done;
	}
	ok = true;
done:
	http_query_free(&q);
	return ok;
}

/* The source record registered under hash, without its content, or null when the hash
 * is all zeros or no source is registered under it on this node. */
static json_t *trace_source(struct trace *t, const uint8_t hash[STEMEDB_HASH_LEN])
{
	static const uint8_t none[STEMEDB_HASH_LEN] = {0};
	struct hlc_stamp hlc;
	enum store_result rc;
	struct record r;
	json_t *out;

	if (memcmp(hash, none, STEMEDB_HASH_LEN) == 0)
		return json_null();
	record_init(&r, STEMEDB_RECORD_SOURCE);
	rc = store_get_record(t->call->state->store, STEMEDB_RECORD_SOURCE, hash, &r, &hlc);
	if (rc == STORE_ERROR)
		t->failed = true;
	out = rc == STORE_OK ? record_to_json(&r, hash, false) : json_null();
	record_free(&r);
	return out;
}

static json_t *build_trace(struct trace *t, const uint8_t hash[STEMEDB_HASH_LEN],
                           const struct assertion *root)
{
	json_t *body = json_object();
	char source[2 * STEMEDB_HASH_LEN + 1];

	trace_mark(t, hash);
	json_object_set_new(body, "assertion", assertion_to_json(root, hash));
	json_object_set_new(body, "depth_limit", json_integer((json_int_t)t->max_depth));
	json_object_set_new(body, "ancestors", trace_ancestors(t, root));
	json_object_set_new(body, "descendants", trace_descendants(t, hash));
	json_object_set_new(body, "truncated", json_boolean(t->truncated));

	hex_encode(root->source_hash, STEMEDB_HASH_LEN, source);
	json_object_set_new(body, "source_hash", json_string(source));
	json_object_set_new(body, "source", trace_source(t, root->source_hash));
	return body;
}

void http_handle_trace(struct http_call *call)
{
	const char *text = call->path + strlen("/v1/trace/");
	struct trace t = {.call = call};
	uint8_t hash[STEMEDB_HASH_LEN];
	struct hlc_stamp hlc;
	struct assertion root;
	enum store_result rc;
	json_t *body;

	assertion_init(&root);
	if (http_require_ready(call) == NULL || !parse_trace_depth(call, &t.max_depth))
		goto done;
	if (!hex_decode(text, strlen(text), hash, sizeof(hash))) {
		http_reply_error(call, 400, "invalid_parameter", "hash",
		                 "'%.100s' is not an assertion hash; give 64 hex characters.",
		                 text);
		goto done;
	}

	rc = store_get_assertion(call->state->store, hash, &root, &hlc);
	if (rc == STORE_NOT_FOUND) {
		http_reply_error(call, 404, "not_found", "hash",
		                 "No assertion has hash %.64s on this node; check the hash.", text);
		goto done;
	}
	if (rc == STORE_OK)
		body = build_trace(&t, hash, &root);
	if (rc != STORE_OK || t.failed) {
		if (rc == STORE_OK)
			json_decref(body);
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Tracing assertion %.64s failed; see the server log.", text);
		goto done;
	}
	http_reply_json(call, 200, body);
done:
	free(t.seen);
	assertion_free(&root);
}

/* ---- GET /v1/query?subject_prefix=... ---- */

#define PREFIX_LIMIT_DEFAULT 100
#define PREFIX_LIMIT_MAX     1000

static const char *const prefix_param_names[] = {"subject_prefix",
                                                 "predicate",
                                                 "lens",
                                                 "as_of",
                                                 "lifecycle",
                                                 "source_class",
                                                 "decay",
                                                 "tolerance",
                                                 "limit",
                                                 "cursor",
                                                 "subject",
                                                 "include_superseded",
                                                 NULL};

struct prefix_page {
	struct http_call *call;
	struct read_params rp; /* subject and predicate change per pair */
	struct json_writer *w;
	uint64_t limit;
	size_t written;
	struct buf last; /* "subject 0x00 predicate" of the last pair written */
	bool more;       /* a pair exists after the page */
	bool failed;     /* a reply (500) has been sent */
};

static void write_prefix_result(struct prefix_page *page, const struct candidate_list *list,
                                const struct lens_result *result)
{
	struct json_writer *w = page->w;

	json_writer_object_begin(w);
	json_writer_key(w, "subject");
	json_writer_string(w, page->rp.subject, page->rp.subject_len);
	json_writer_key(w, "predicate");
	json_writer_string(w, page->rp.predicate, page->rp.predicate_len);
	json_writer_key(w, "candidate_count");
	json_writer_uint(w, list->count);
	json_writer_key(w, "winner");
	if (result->has_winner)
		http_read_write_candidate(w, &list->items[result->winner], &page->rp.lens_params,
		                          result, result->winner);
	else
		json_writer_null(w);
	json_writer_key(w, "confidence");
	if (result->has_winner)
		json_writer_double(w, result->confidence);
	else
		json_writer_null(w);
	json_writer_object_end(w);
}

/* Resolves the lens for one (subject, predicate) pair and writes it to the page. The
 * strings are copied because http_read_load_candidates wants NUL-terminated text. */
static bool on_prefix_pair(void *ctx, const char *subject, size_t subject_len,
                           const char *predicate, size_t predicate_len)
{
	struct prefix_page *page = ctx;
	char *subject_text = strndup(subject, subject_len);
	char *predicate_text = strndup(predicate, predicate_len);
	struct candidate_list list;
	struct lens_result result;

	if (subject_text == NULL || predicate_text == NULL)
		abort();
	if (page->written == page->limit) {
		page->more = true;
		goto done;
	}

	page->rp.subject = subject_text;
	page->rp.subject_len = subject_len;
	page->rp.predicate = predicate_text;
	page->rp.predicate_len = predicate_len;
	if (!http_read_load_candidates(page->call, &page->rp, &list)) {
		page->failed = true;
		goto done;
	}
	memset(&result, 0, sizeof(result));
	lens_resolve(page->rp.lens, list.items, list.count, &page->rp.lens_params, &result);
	write_prefix_result(page, &list, &result);
	lens_result_free(&result);
	candidate_list_free(&list);

	buf_reset(&page->last);
	buf_append(&page->last, subject, subject_len);
	buf_put_u8(&page->last, 0);
	buf_append(&page->last, predicate, predicate_len);
	page->written++;
done:
	free(subject_text);
	free(predicate_text);
	return !page->more && !page->failed;
}

/* Decodes the cursor, "subject 0x00 predicate" in hex, and checks that it lies under the
 * prefix. Replies 400 and returns false otherwise. */
static bool parse_prefix_cursor(struct http_call *call, const struct http_param *p,
                                const struct store_pair_filter *filter, struct buf *out)
{
	size_t len = p->value_len / 2;
	const uint8_t *nul;

	buf_reserve(out, len + 1);
	if (p->value_len % 2 != 0 || len == 0 ||
	    len > STEMEDB_SUBJECT_MAX + 1 + STEMEDB_PREDICATE_MAX ||
	    !hex_decode(p->value, p->value_len, out->data, len))
		goto invalid;
	out->len = len;
	nul = memchr(out->data, 0, len);
	if (nul == NULL || (size_t)(nul - out->data) < filter->subject_prefix_len ||
	    memcmp(out->data, filter->subject_prefix, filter->subject_prefix_len) != 0)
		goto invalid;
	return true;
invalid:
	http_reply_error(call, 400, "invalid_parameter", "cursor",
	                 "Query parameter cursor='%.100s' is not a cursor of this subject_prefix; "
	                 "pass next_cursor from the previous page unchanged.",
	                 p->value);
	return false;
}

/* Reads the parameters that only the prefix form has: subject_prefix, the optional
 * predicate, limit and cursor. Replies 400 and returns false on a bad one. */
static bool parse_prefix_params(struct http_call *call, const struct http_query *q,
                                struct prefix_page *page, struct store_pair_filter *filter,
                                struct buf *cursor)
{
	const struct http_param *p = http_query_get(q, "subject_prefix");

	if (http_query_get(q, "subject") != NULL) {
		http_reply_error(call, 400, "invalid_parameter", "subject",
		                 "Give either subject or subject_prefix, not both.");
		return false;
	}
	if (p->value_len == 0 || p->value_len > STEMEDB_SUBJECT_MAX) {
		http_reply_error(
		        call, 400, "invalid_parameter", "subject_prefix",
		        "Query parameter 'subject_prefix' has %zu bytes; give 1 to %d bytes.",
		        p->value_len, STEMEDB_SUBJECT_MAX);
		return false;
	}
	filter->subject_prefix = p->value;
	filter->subject_prefix_len = p->value_len;

	if ((p = http_query_get(q, "predicate")) != NULL) {
		if (p->value_len == 0 || p->value_len > STEMEDB_PREDICATE_MAX) {
			http_reply_error(call, 400, "invalid_parameter", "predicate",
			                 "Query parameter 'predicate' has %zu bytes; give 1 to %d "
			                 "bytes.",
			                 p->value_len, STEMEDB_PREDICATE_MAX);
			return false;
		}
		filter->predicate = p->value;
		filter->predicate_len = p->value_len;
	}
	if ((p = http_query_get(q, "limit")) != NULL &&
	    !http_parse_u64(p->value, 1, PREFIX_LIMIT_MAX, &page->limit)) {
		http_reply_error(
		        call, 400, "invalid_parameter", "limit",
		        "Query parameter limit='%.100s' is invalid; give an integer from 1 "
		        "to %d.",
		        p->value, PREFIX_LIMIT_MAX);
		return false;
	}
	if ((p = http_query_get(q, "cursor")) != NULL) {
		if (!parse_prefix_cursor(call, p, filter, cursor))
			return false;
		filter->after = cursor->data;
		filter->after_len = cursor->len;
	}
	return true;
}

static bool parse_prefix_query(struct http_call *call, const struct http_query *q,
                               struct prefix_page *page, struct store_pair_filter *filter,
                               struct buf *cursor)
{
	const struct http_param *p;

	page->rp.lens = LENS_RECENCY;
	page->rp.lens_params.decay = true;
	page->limit = PREFIX_LIMIT_DEFAULT;
	if (!parse_prefix_params(call, q, page, filter, cursor) ||
	    !http_read_options_parse(call, q, &page->rp))
		return false;
	if ((p = http_query_get(q, "lens")) != NULL && !lens_parse(p->value, &page->rp.lens)) {
		http_reply_error(call, 400, "invalid_parameter", "lens",
		                 "Query parameter lens='%.100s' is invalid; give recency, "
		                 "confidence, consensus, authority or vote.",
		                 p->value);
		return false;
	}
	page->rp.lens_params.reference_time =
	        page->rp.has_as_of ? page->rp.as_of : (uint64_t)time(NULL);
	return true;
}

static void write_prefix_head(struct json_writer *w, const struct prefix_page *page,
                              const struct store_pair_filter *filter)
{
	json_writer_object_begin(w);
	json_writer_key(w, "subject_prefix");
	json_writer_string(w, filter->subject_prefix, filter->subject_prefix_len);
	if (filter->predicate != NULL) {
		json_writer_key(w, "predicate");
		json_writer_string(w, filter->predicate, filter->predicate_len);
	}
	json_writer_key(w, "lens");
	json_writer_cstring(w, lens_name(page->rp.lens));
	json_writer_key(w, "reference_time");
	json_writer_uint(w, page->rp.lens_params.reference_time);
	json_writer_key(w, "results");
	json_writer_array_begin(w);
}

static void write_prefix_tail(struct json_writer *w, const struct prefix_page *page)
{
	json_writer_array_end(w);
	json_writer_key(w, "next_cursor");
	if (page->more)
		json_writer_hex(w, page->last.data, page->last.len);
	else
		json_writer_null(w);
	json_writer_object_end(w);
}

static void handle_subject_prefix(struct http_call *call)
{
	struct store_pair_filter filter = {0};
	struct prefix_page page = {.call = call};
	struct json_writer w;
	struct http_query q;
	struct buf cursor;
	struct buf body;

	buf_init(&cursor);
	buf_init(&page.last);
	if (!http_query_parse(call, prefix_param_names, &q) ||
	    !parse_prefix_query(call, &q, &page, &filter, &cursor))
		goto done;

	http_reply_begin(&body, &w);
	page.w = &w;
	write_prefix_head(&w, &page, &filter);
	if (store_subject_prefix_pairs(call->state->store, &filter, on_prefix_pair, &page) !=
	            STORE_OK &&
	    !page.failed) {
		page.failed = true;
		http_reply_error(call, 500, "internal_error", "subject_prefix",
		                 "Scanning subjects under '%.100s' failed; see the server log.",
		                 filter.subject_prefix);
	}
	if (page.failed) {
		buf_free(&body);
		goto done;
	}
	write_prefix_tail(&w, &page);
	http_reply_text(call, 200, &body);
done:
	http_query_free(&q);
	buf_free(&cursor);
	buf_free(&page.last);
}

/* True when the raw query string has a parameter named subject_prefix. */
static bool has_subject_prefix(const char *query)
{
	static const char name[] = "subject_prefix";
	const char *p = query;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, sizeof(name) - 1) == 0 &&
		    (p[sizeof(name) - 1] == '=' || p[sizeof(name) - 1] == '&' ||
		     p[sizeof(name) - 1] == '\0'))
			return true;
		p = strchr(p, '&');
		if (p != NULL)
			p++;
	}
	return false;
}

void http_handle_query_route(struct http_call *call)
{
	if (http_require_ready(call) == NULL)
		return;
	if (has_subject_prefix(call->query))
		handle_subject_prefix(call);
	else
		http_handle_query(call);
}
