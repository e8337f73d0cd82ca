/* GET /v1/admin/quarantine and POST /v1/admin/quarantine/{hash}/approve|reject: the
 * admin side of content defense. stemedb-api keeps the quarantine; these handlers
 * validate the request, call it over IPC on a job thread and map its reply. */

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "gw_handlers.h"
#include "gw_http.h"
#include "gw_ipc.h"
#include "gw_job.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

#define QUARANTINE_HASH_LEN    32
#define QUARANTINE_LIMIT_MAX   1000
#define QUARANTINE_PATH_PREFIX "/v1/admin/quarantine/"
#define QUARANTINE_REASON_MAX  32

struct quarantine_job {
	struct gw_job job; /* first, so that a gw_job pointer is a quarantine_job pointer */
	bool is_list;
	/* list filters */
	uint8_t agent_id[QUARANTINE_HASH_LEN];
	bool has_agent;
	char reason[QUARANTINE_REASON_MAX];
	char status[QUARANTINE_REASON_MAX];
	uint32_t limit;
	uint8_t after[QUARANTINE_HASH_LEN];
	bool has_after;
	/* decision */
	uint8_t hash[QUARANTINE_HASH_LEN];
	bool approve;
	ipc_envelope *reply;
	struct gw_ipc_status status_ipc;
};

static void quarantine_work(struct gw_job *job)
{
	struct quarantine_job *q = (struct quarantine_job *)job;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__QuarantineListRequest list =
	        STEMEDB__IPC__V1__QUARANTINE_LIST_REQUEST__INIT;
	Stemedb__Ipc__V1__QuarantineDecisionRequest decision =
	        STEMEDB__IPC__V1__QUARANTINE_DECISION_REQUEST__INIT;
	const struct gw_config *cfg = job->request->gw->config;

	if (q->is_list) {
		if (q->has_agent) {
			list.agent_id.data = q->agent_id;
			list.agent_id.len = sizeof(q->agent_id);
		}
		list.reason = q->reason;
		list.status = q->status;
		list.limit = q->limit;
		if (q->has_after) {
			list.after.data = q->after;
			list.after.len = sizeof(q->after);
		}
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_LIST_REQUEST;
		request.quarantine_list_request = &list;
		q->reply = gw_ipc_call(cfg, "quarantine_list", &request,
		                       STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_LIST_RESPONSE,
		                       cfg->ipc_timeout_ms, &q->status_ipc);
		return;
	}
	decision.hash.data = q->hash;
	decision.hash.len = sizeof(q->hash);
	decision.approve = q->approve;
	request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_DECISION_REQUEST;
	request.quarantine_decision_request = &decision;
	q->reply = gw_ipc_call(cfg, "quarantine_decision", &request,
	                       STEMEDB__IPC__V1__ENVELOPE__BODY_QUARANTINE_DECISION_RESPONSE,
	                       cfg->ipc_timeout_ms, &q->status_ipc);
}

static json_t *hex_json(const ProtobufCBinaryData *data)
{
	char text[2 * QUARANTINE_HASH_LEN + 1];

	if (data->len != QUARANTINE_HASH_LEN)
		return json_null();
	hex_encode(data->data, data->len, text);
	return json_string(text);
}

static json_t *item_json(const Stemedb__Ipc__V1__QuarantineItem *item)
{
	json_t *out = json_pack("{s:o, s:s, s:s, s:f, s:o, s:I}", "hash", hex_json(&item->hash),
	                        "reason", item->reason, "status", item->status, "quality",
	                        item->quality, "agent_id", hex_json(&item->agent_id), "created_ms",
	                        (json_int_t)item->created_ms);

	if (item->resembles.len == QUARANTINE_HASH_LEN) {
		json_object_set_new(out, "resembles", hex_json(&item->resembles));
		json_object_set_new(out, "similarity", json_real(item->similarity));
	}
	if (item->decided_ms != 0)
		json_object_set_new(out, "decided_ms", json_integer((json_int_t)item->decided_ms));
	return out;
}

/* Maps a failed call: the remote error codes to 400, 404 and 409, the rest to 503. */
static void reply_failure(struct gw_request *r, const struct gw_ipc_status *status)
{
	if (status->result == IPC_ERR_REMOTE) {
		switch (status->remote_code) {
		case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT:
			gw_reply_error(r, 400, "invalid_parameter", NULL, "%s", status->message);
			return;
		case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_NOT_FOUND:
			gw_reply_error(r, 404, "not_found", "hash", "%s", status->message);
			return;
		case STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_CONFLICT:
			gw_reply_error(r, 409, "conflict", "hash", "%s", status->message);
			return;
		default:
			break;
		}
	}
	gw_reply_error(r, 503, "unavailable", NULL, "stemedb-api did not answer: %s; retry",
	               status->message);
}

static void reply_list(struct gw_request *r, const Stemedb__Ipc__V1__QuarantineListResponse *res)
{
	json_t *items = json_array();
	json_t *agents = json_array();
	json_t *body;

	for (size_t i = 0; i < res->n_items; i++)
		json_array_append_new(items, item_json(res->items[i]));
	for (size_t i = 0; i < res->n_agents; i++)
		json_array_append_new(agents,
		                      json_pack("{s:o, s:I}", "agent_id",
		                                hex_json(&res->agents[i]->agent_id), "count",
		                                (json_int_t)res->agents[i]->count));
	body = json_pack("{s:o, s:o, s:I}", "items", items, "agents", agents, "total",
	                 (json_int_t)res->total);
	json_object_set_new(body, "next_cursor", hex_json(&res->next_after));
	gw_reply_json(r, 200, body);
}

static void quarantine_finish(struct gw_job *job)
{
	struct quarantine_job *q = (struct quarantine_job *)job;
	char hash[2 * QUARANTINE_HASH_LEN + 1];

	if (q->reply == NULL) {
		if (!q->is_list) {
			hex_encode(q->hash, sizeof(q->hash), hash);
			log_warn("%s of quarantined assertion %s failed: %s",
			         q->approve ? "approval" : "rejection", hash,
			         q->status_ipc.message);
		}
		reply_failure(job->request, &q->status_ipc);
	} else if (q->is_list) {
		reply_list(job->request, q->reply->quarantine_list_response);
	} else {
		gw_reply_json(job->request, 200,
		              item_json(q->reply->quarantine_decision_response->item));
	}
	if (q->reply != NULL)
		ipc_envelope_free(q->reply);
	free(q);
}

static void start_job(struct gw_request *r, struct quarantine_job *q)
{
	q->job.request = r;
	q->job.work = quarantine_work;
	q->job.finish = quarantine_finish;
	if (!gw_job_start(&q->job)) {
		free(q);
		gw_reply_error(r, 503, "unavailable", NULL,
		               "the gateway has %d calls to stemedb-api open already; retry later",
		               GW_JOBS_MAX);
	}
}

static bool parse_hex_param(struct gw_request *r, const char *name, const char *value,
                            uint8_t out[QUARANTINE_HASH_LEN])
{
	if (!hex_decode(value, strlen(value), out, QUARANTINE_HASH_LEN)) {
		gw_reply_error(r, 400, "invalid_parameter", name, "%s must be 64 hex characters",
		               name);
		return false;
	}
	return true;
}

/* Reads the query string into q; replies 400 and returns false on a bad parameter. */
static bool parse_list_query(struct gw_request *r, struct quarantine_job *q)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
	struct evkeyvalq params;
	struct evkeyval *p;
	bool ok = true;

	q->limit = 100;
	snprintf(q->status, sizeof(q->status), "pending");
	if (query == NULL)
		return true;
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(query, &params) != 0) {
		gw_reply_error(r, 400, "invalid_parameter", NULL,
		               "the query string is malformed; percent-encode the values");
		return false;
	}
	TAILQ_FOREACH(p, &params, next)
	{
		if (strcmp(p->key, "agent") == 0) {
			ok = parse_hex_param(r, "agent", p->value, q->agent_id);
			q->has_agent = ok;
		} else if (strcmp(p->key, "cursor") == 0) {
			ok = parse_hex_param(r, "cursor", p->value, q->after);
			q->has_after = ok;
		} else if (strcmp(p->key, "reason") == 0 || strcmp(p->key, "status") == 0) {
			char *target = p->key[0] == 'r' ? q->reason : q->status;

			if (strlen(p->value) >= QUARANTINE_REASON_MAX) {
				gw_reply_error(r, 400, "invalid_parameter", p->key,
				               "%s is too long; see docs/gateway.md for the values",
				               p->key);
				ok = false;
			} else {
				snprintf(target, QUARANTINE_REASON_MAX, "%s", p->value);
			}
		} else if (strcmp(p->key, "limit") == 0) {
			char *end = NULL;
			unsigned long limit = strtoul(p->value, &end, 10);

			if (p->value[0] < '0' || p->value[0] > '9' || *end != '\0' || limit == 0 ||
			    limit > QUARANTINE_LIMIT_MAX) {
				gw_reply_error(r, 400, "invalid_parameter", "limit",
				               "limit must be an integer from 1 to %d",
				               QUARANTINE_LIMIT_MAX);
				ok = false;
			} else {
				q->limit = (uint32_t)limit;
			}
		} else {
			gw_reply_error(
			        r, 400, "unknown_parameter", p->key,
			        "query parameter \"%.100s\" is not defined; use agent, reason, "
			        "status, limit or cursor",
			        p->key);
			ok = false;
		}
		if (!ok)
			break;
	}
	evhttp_clear_headers(&params);
	return ok;
}

void gw_handle_admin_quarantine_list(struct gw_request *r)
{
	struct quarantine_job *q = calloc(1, sizeof(*q));

	if (q == NULL)
		abort();
	q->is_list = true;
	if (!parse_list_query(r, q)) {
		free(q);
		return;
	}
	start_job(r, q);
}

void gw_handle_admin_quarantine_decision(struct gw_request *r)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r->req));
	const char *rest = path + strlen(QUARANTINE_PATH_PREFIX);
	const char *slash = strchr(rest, '/');
	struct quarantine_job *q;

	if (evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req)) != NULL) {
		gw_reply_error(r, 400, "unknown_parameter", NULL,
		               "this endpoint takes no query parameters; remove the query string");
		return;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		abort();
	if (slash == NULL || !hex_decode(rest, (size_t)(slash - rest), q->hash, sizeof(q->hash))) {
		free(q);
		gw_reply_error(r, 400, "invalid_parameter", "hash",
		               "the path must be /v1/admin/quarantine/{hash}/approve or /reject "
		               "with the 64 hex characters of the assertion hash");
		return;
	}
	q->approve = strcmp(slash, "/approve") == 0;
	start_job(r, q);
}
