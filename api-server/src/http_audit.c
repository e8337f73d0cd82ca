/* Audit hooks of the read handlers and the audit endpoints GET /v1/audit/queries and
 * GET /v1/audit/query/{id}. */

#include "http_audit.h"

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "http_handlers.h"
#include "stemedb/hex.h"

#define AUDIT_LIST_LIMIT_DEFAULT 100
#define AUDIT_LIST_LIMIT_MAX     1000
/* Maximum index key length: 'a', agent id, time, record id. */
#define AUDIT_CURSOR_MAX (1 + STEMEDB_AGENT_ID_LEN + 8 + AUDIT_ID_LEN)

bool http_audit_begin(struct http_call *call, const struct http_query *q, const char *endpoint,
                      struct audit_entry *e, char query_id[AUDIT_ID_HEX_LEN + 1])
{
	const char *agent =
	        evhttp_find_header(evhttp_request_get_input_headers(call->req), "X-Agent-Id");
	uint8_t agent_id[STEMEDB_AGENT_ID_LEN];

	memset(e, 0, sizeof(*e));
	query_id[0] = '\0';
	if (agent != NULL && !hex_decode(agent, strlen(agent), agent_id, sizeof(agent_id))) {
		http_reply_error(call, 400, "invalid_header", "X-Agent-Id",
		                 "Header X-Agent-Id '%.100s' is not an agent id; give 64 hex "
		                 "characters or leave the header out.",
		                 agent);
		return false;
	}
	if (!audit_log_enabled(call->state->audit))
		return true;

	audit_entry_init(e, endpoint, agent != NULL ? agent_id : NULL);
	for (size_t i = 0; i < q->count; i++)
		audit_entry_add_parameter(e, q->params[i].name, q->params[i].value,
		                          q->params[i].value_len);
	memcpy(query_id, e->id_hex, AUDIT_ID_HEX_LEN + 1);
	return true;
}

void http_audit_submit_lens(struct http_call *call, struct audit_entry *e,
                            const struct candidate_list *list, const struct lens_result *result)
{
	if (!audit_log_enabled(call->state->audit))
		return;
	audit_entry_set_winner(e, result->has_winner ? list->items[result->winner].hash : NULL);
	for (size_t i = 0; i < list->count; i++)
		audit_entry_add(e, list->items[i].hash,
		                i < result->score_count ? result->scores[i] : 0.0);
	audit_log_submit(call->state->audit, e);
}

void http_audit_submit_claims(struct http_call *call, struct audit_entry *e,
                              const struct candidate_list *list, const struct lens_params *params,
                              const struct candidate *leading)
{
	if (!audit_log_enabled(call->state->audit))
		return;
	audit_entry_set_winner(e, leading != NULL ? leading->hash : NULL);
	for (size_t i = 0; i < list->count; i++) {
		const struct candidate *c = &list->items[i];

		audit_entry_add(e, c->hash,
		                lens_effective_confidence(c, params) *
		                        lens_tier_weight(c->source_class));
	}
	audit_log_submit(call->state->audit, e);
}

/* ---- GET /v1/audit/query/{id} ---- */

void http_handle_audit_query(struct http_call *call)
{
	const char *text = call->path + strlen("/v1/audit/query/");
	uint8_t id[AUDIT_ID_LEN];
	enum audit_result rc;
	json_t *record;

	if (!http_query_reject_any(call))
		return;
	if (!hex_decode(text, strlen(text), id, sizeof(id))) {
		http_reply_error(call, 400, "invalid_parameter", "id",
		                 "'%.100s' is not a query id; give the 32 hex characters of "
		                 "query_id.",
		                 text);
		return;
	}

	rc = audit_log_get(call->state->audit, id, &record);
	if (rc == AUDIT_OK)
		http_reply_json(call, 200, record);
	else if (rc == AUDIT_NOT_FOUND)
		http_reply_error(call, 404, "not_found", "id",
		                 "No audit record has id %.32s; it may have expired, may still be "
		                 "queued (records are stored within 100 ms), or auditing is off.",
		                 text);
	else
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading audit record %.32s failed; see the server log.", text);
}

/* ---- GET /v1/audit/queries ---- */

static bool bad_audit_param(struct http_call *call, const char *name, const char *value,
                            const char *expected)
{
	http_reply_error(call, 400, "invalid_parameter", name,
	                 "Query parameter %s='%.100s' is invalid; give %s.", name, value, expected);
	return false;
}

static bool parse_cursor(struct http_call *call, const struct http_param *p, struct audit_filter *f,
                         uint8_t *storage)
{
	size_t len = p->value_len / 2;
	size_t expected =
	        f->has_agent ? 1 + STEMEDB_AGENT_ID_LEN + 8 + AUDIT_ID_LEN : 1 + 8 + AUDIT_ID_LEN;

	if (p->value_len % 2 != 0 || len != expected ||
	    !hex_decode(p->value, p->value_len, storage, len) ||
	    storage[0] != (f->has_agent ? 'a' : 't') ||
	    (f->has_agent && memcmp(storage + 1, f->agent, STEMEDB_AGENT_ID_LEN) != 0))
		return bad_audit_param(call, "cursor", p->value,
		                       "next_cursor of the previous page with the same agent_id");
	f->cursor = storage;
	f->cursor_len = len;
	return true;
}

static bool parse_audit_filter(struct http_call *call, const struct http_query *q,
                               struct audit_filter *f, uint8_t *cursor)
{
	const struct http_param *p;
	uint64_t value;

	memset(f, 0, sizeof(*f));
	f->to_ms = UINT64_MAX;
	f->limit = AUDIT_LIST_LIMIT_DEFAULT;
	if ((p = http_query_get(q, "agent_id")) != NULL) {
		if (!hex_decode(p->value, p->value_len, f->agent, sizeof(f->agent)))
			return bad_audit_param(call, "agent_id", p->value, "64 hex characters");
		f->has_agent = true;
	}
	if ((p = http_query_get(q, "from")) != NULL) {
		if (!http_parse_u64(p->value, 0, UINT64_MAX / 1000, &value))
			return bad_audit_param(call, "from", p->value,
			                       "Unix seconds as an integer");
		f->from_ms = value * 1000;
	}
	if ((p = http_query_get(q, "to")) != NULL) {
		if (!http_parse_u64(p->value, 0, UINT64_MAX / 1000 - 1, &value))
			return bad_audit_param(call, "to", p->value, "Unix seconds as an integer");
		f->to_ms = value * 1000 + 999;
	}
	if (f->to_ms < f->from_ms)
		return bad_audit_param(call, "to", http_query_get(q, "to")->value,
		                       "a time not before from");
	if ((p = http_query_get(q, "limit")) != NULL) {
		if (!http_parse_u64(p->value, 1, AUDIT_LIST_LIMIT_MAX, &value))
			return bad_audit_param(call, "limit", p->value,
			                       "an integer from 1 to 1000");
		f->limit = value;
	}
	if ((p = http_query_get(q, "cursor")) != NULL)
		return parse_cursor(call, p, f, cursor);
	return true;
}

void http_handle_audit_queries(struct http_call *call)
{
	static const char *const names[] = {"agent_id", "from", "to", "limit", "cursor", NULL};
	uint8_t cursor[AUDIT_CURSOR_MAX];
	struct audit_filter filter;
	json_t *records = NULL;
	struct http_query q;
	char *next = NULL;

	if (!http_query_parse(call, names, &q) || !parse_audit_filter(call, &q, &filter, cursor))
		goto done;

	records = json_array();
	if (audit_log_list(call->state->audit, &filter, records, &next) != AUDIT_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Listing audit records failed; see the server log.");
		goto done;
	}
	http_reply_json(call, 200,
	                json_pack("{s:O, s:s?, s:b}", "records", records, "next_cursor", next,
	                          "enabled", audit_log_enabled(call->state->audit)));
done:
	json_decref(records);
	free(next);
	http_query_free(&q);
}
