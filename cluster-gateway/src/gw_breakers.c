/* Circuit breaker admin endpoints: GET /v1/admin/circuit_breakers,
 * POST /v1/admin/circuit_breakers/{agent_id}/ban and .../reset. Each calls stemedb-api
 * over api.sock from a job thread. */

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "gw_handlers.h"
#include "gw_http.h"
#include "gw_ipc.h"
#include "gw_job.h"
#include "stemedb/hex.h"
#include "stemedb/log.h"

#define AGENT_ID_LEN    32
#define REASON_MAX      256
#define BAN_SECONDS_MAX 31536000

enum breaker_call { CALL_LIST, CALL_BAN, CALL_RESET };

struct breaker_job {
	struct gw_job job; /* first, so that a gw_job pointer is a breaker_job pointer */
	enum breaker_call call;
	uint8_t agent_id[AGENT_ID_LEN];
	uint64_t duration_seconds;
	char reason[REASON_MAX + 1];
	ipc_envelope *reply;
	struct gw_ipc_status status;
};

static void breaker_work(struct gw_job *job)
{
	struct breaker_job *b = (struct breaker_job *)job;
	const struct gw_config *cfg = job->request->gw->config;
	Stemedb__Ipc__V1__ListCircuitBreakersRequest list =
	        STEMEDB__IPC__V1__LIST_CIRCUIT_BREAKERS_REQUEST__INIT;
	Stemedb__Ipc__V1__BanCircuitBreakerRequest ban =
	        STEMEDB__IPC__V1__BAN_CIRCUIT_BREAKER_REQUEST__INIT;
	Stemedb__Ipc__V1__ResetCircuitBreakerRequest reset =
	        STEMEDB__IPC__V1__RESET_CIRCUIT_BREAKER_REQUEST__INIT;
	ipc_envelope request = STEMEDB__IPC__V1__ENVELOPE__INIT;
	ipc_body_case expected = STEMEDB__IPC__V1__ENVELOPE__BODY_CIRCUIT_BREAKER_RESPONSE;
	const char *name = "ban_circuit_breaker";

	switch (b->call) {
	case CALL_LIST:
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_CIRCUIT_BREAKERS_REQUEST;
		request.list_circuit_breakers_request = &list;
		expected = STEMEDB__IPC__V1__ENVELOPE__BODY_LIST_CIRCUIT_BREAKERS_RESPONSE;
		name = "list_circuit_breakers";
		break;
	case CALL_BAN:
		ban.agent_id.data = b->agent_id;
		ban.agent_id.len = AGENT_ID_LEN;
		ban.duration_seconds = b->duration_seconds;
		ban.reason = b->reason;
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_BAN_CIRCUIT_BREAKER_REQUEST;
		request.ban_circuit_breaker_request = &ban;
		break;
	case CALL_RESET:
	default:
		reset.agent_id.data = b->agent_id;
		reset.agent_id.len = AGENT_ID_LEN;
		request.body_case = STEMEDB__IPC__V1__ENVELOPE__BODY_RESET_CIRCUIT_BREAKER_REQUEST;
		request.reset_circuit_breaker_request = &reset;
		name = "reset_circuit_breaker";
		break;
	}
	b->reply = gw_ipc_call(cfg, name, &request, expected, cfg->ipc_timeout_ms, &b->status);
}

static json_t *breaker_json(const Stemedb__Ipc__V1__CircuitBreaker *m)
{
	char agent[2 * AGENT_ID_LEN + 1] = "";

	if (m->agent_id.len == AGENT_ID_LEN)
		hex_encode(m->agent_id.data, AGENT_ID_LEN, agent);
	return json_pack("{s:s, s:s, s:i, s:I, s:b, s:s}", "agent_id", agent, "state", m->state,
	                 "recent_failures", (int)m->recent_failures, "open_until_unix_ms",
	                 (json_int_t)m->open_until_unix_ms, "banned", m->banned, "reason",
	                 m->reason);
}

static void breaker_finish(struct gw_job *job)
{
	struct breaker_job *b = (struct breaker_job *)job;
	char agent[2 * AGENT_ID_LEN + 1];
	json_t *list;

	hex_encode(b->agent_id, AGENT_ID_LEN, agent);
	if (b->reply == NULL) {
		log_warn("circuit breaker admin call for agent %s failed: %s",
		         b->call == CALL_LIST ? "(all)" : agent, b->status.message);
		gw_reply_error(job->request, 503, "unavailable", NULL,
		               "stemedb-api did not complete the call: %s; retry the same request",
		               b->status.message);
		goto done;
	}
	if (b->call == CALL_LIST) {
		const Stemedb__Ipc__V1__ListCircuitBreakersResponse *res =
		        b->reply->list_circuit_breakers_response;

		list = json_array();
		for (size_t i = 0; i < res->n_breakers; i++)
			json_array_append_new(list, breaker_json(res->breakers[i]));
		gw_reply_json(job->request, 200,
		              json_pack("{s:o, s:b}", "circuit_breakers", list, "truncated",
		                        res->truncated));
		goto done;
	}

	log_info("admin %s the circuit breaker of agent %s",
	         b->call == CALL_BAN ? "banned" : "reset", agent);
	if (b->reply->circuit_breaker_response->breaker == NULL) {
		gw_reply_error(job->request, 502, "bad_gateway", NULL,
		               "stemedb-api replied without the breaker state; check its version");
		goto done;
	}
	gw_reply_json(job->request, 200,
	              json_pack("{s:o, s:b}", "circuit_breaker",
	                        breaker_json(b->reply->circuit_breaker_response->breaker), "found",
	                        b->reply->circuit_breaker_response->found));
done:
	if (b->reply != NULL)
		ipc_envelope_free(b->reply);
	free(b);
}

static void start_job(struct gw_request *r, struct breaker_job *b)
{
	b->job.request = r;
	b->job.work = breaker_work;
	b->job.finish = breaker_finish;
	if (!gw_job_start(&b->job)) {
		free(b);
		gw_reply_error(r, 503, "unavailable", NULL,
		               "the gateway has %d calls to stemedb-api open already; retry later",
		               GW_JOBS_MAX);
	}
}

static struct breaker_job *breaker_job_new(enum breaker_call call)
{
	struct breaker_job *b = calloc(1, sizeof(*b));

	if (b == NULL)
		abort();
	b->call = call;
	return b;
}

/* Reads {agent_id} from /v1/admin/circuit_breakers/{agent_id}/<action>; replies 400 and
 * returns false when it is not 64 hex characters. */
static bool path_agent(struct gw_request *r, const char *action, uint8_t agent[AGENT_ID_LEN])
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r->req));
	const char *start = path + strlen("/v1/admin/circuit_breakers/");
	size_t len = strlen(start) - strlen(action);

	if (!hex_decode(start, len, agent, AGENT_ID_LEN)) {
		gw_reply_error(r, 400, "invalid_parameter", "agent_id",
		               "'%.*s' in the path is not an agent id; give its 64 hex characters",
		               (int)(len > 80 ? 80 : len), start);
		return false;
	}
	return true;
}

void gw_handle_admin_breakers(struct gw_request *r)
{
	start_job(r, breaker_job_new(CALL_LIST));
}

/* Fills the duration and reason of a ban; replies 400 and returns false when invalid. */
static bool parse_ban(struct gw_request *r, json_t *body, struct breaker_job *b)
{
	static const char *const known[] = {"duration_seconds", "reason", NULL};
	json_t *duration = json_object_get(body, "duration_seconds");
	json_t *reason = json_object_get(body, "reason");

	if (!gw_reject_unknown_fields(r, body, known))
		return false;
	if (!json_is_integer(duration) || json_integer_value(duration) < 1 ||
	    json_integer_value(duration) > BAN_SECONDS_MAX) {
		gw_reply_error(r, 400, "invalid_field", "duration_seconds",
		               "duration_seconds must be an integer from 1 to %d", BAN_SECONDS_MAX);
		return false;
	}
	if (!json_is_string(reason) || json_string_length(reason) < 1 ||
	    json_string_length(reason) > REASON_MAX ||
	    memchr(json_string_value(reason), 0, json_string_length(reason)) != NULL) {
		gw_reply_error(r, 400, "invalid_field", "reason",
		               "reason must be a string of 1 to %d bytes without NUL", REASON_MAX);
		return false;
	}
	b->duration_seconds = (uint64_t)json_integer_value(duration);
	memcpy(b->reason, json_string_value(reason), json_string_length(reason) + 1);
	return true;
}

void gw_handle_admin_breaker_ban(struct gw_request *r)
{
	struct breaker_job *b = breaker_job_new(CALL_BAN);
	json_t *body;

	if (!path_agent(r, "/ban", b->agent_id)) {
		free(b);
		return;
	}
	body = gw_read_json_object(r);
	if (body == NULL) {
		free(b);
		return;
	}
	if (!parse_ban(r, body, b)) {
		json_decref(body);
		free(b);
		return;
	}
	json_decref(body);
	start_job(r, b);
}

void gw_handle_admin_breaker_reset(struct gw_request *r)
{
	struct breaker_job *b = breaker_job_new(CALL_RESET);
	json_t *body;

	if (!path_agent(r, "/reset", b->agent_id)) {
		free(b);
		return;
	}
	body = gw_read_json_object(r);
	if (body == NULL) {
		free(b);
		return;
	}
	if (json_object_size(body) != 0) {
		json_decref(body);
		free(b);
		gw_reply_error(r, 400, "unknown_field", NULL,
		               "reset takes no body fields; send an empty body or {}");
		return;
	}
	json_decref(body);
	start_job(r, b);
}
