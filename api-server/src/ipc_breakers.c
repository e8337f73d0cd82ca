#include "ipc_breakers.h"

#include <stdlib.h>
#include <string.h>

#include "protect.h"
#include "stemedb/log.h"

#define BODY(name) STEMEDB__IPC__V1__ENVELOPE__BODY_##name
#define ERR(name)  STEMEDB__IPC__V1__ERROR_CODE__ERROR_CODE_##name

/* Maximum ban: one year, in seconds. */
#define BAN_SECONDS_MAX 31536000u

/* Largest listing. At about 200 bytes per breaker it stays far below the default
 * 16 MiB frame limit of api.sock. */
#define LIST_MAX 10000

/* Points the message at the snapshot's fields; snap must outlive the message. */
static void breaker_message(struct breaker_snapshot *snap, Stemedb__Ipc__V1__CircuitBreaker *m)
{
	stemedb__ipc__v1__circuit_breaker__init(m);
	m->agent_id.data = snap->agent;
	m->agent_id.len = sizeof(snap->agent);
	m->state = (char *)breaker_state_name(snap->state);
	m->recent_failures = snap->recent_failures;
	m->open_until_unix_ms = snap->open_until_ms;
	m->banned = snap->banned;
	m->reason = snap->reason;
}

static void list_breakers(struct api_state *state, struct ipc_conn *conn, uint64_t request_id)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ListCircuitBreakersResponse res =
	        STEMEDB__IPC__V1__LIST_CIRCUIT_BREAKERS_RESPONSE__INIT;
	struct breaker_snapshot *list = NULL;
	size_t count = protect_breaker_list(state->protect, &list);
	Stemedb__Ipc__V1__CircuitBreaker *messages = calloc(count + 1, sizeof(*messages));
	Stemedb__Ipc__V1__CircuitBreaker **pointers = calloc(count + 1, sizeof(*pointers));

	if (messages == NULL || pointers == NULL)
		abort();
	res.truncated = count > LIST_MAX;
	if (res.truncated) {
		log_warn("listing %zu circuit breakers over api.sock; the reply contains the first "
		         "%d",
		         count, LIST_MAX);
		count = LIST_MAX;
	}
	for (size_t i = 0; i < count; i++) {
		breaker_message(&list[i], &messages[i]);
		pointers[i] = &messages[i];
	}
	res.n_breakers = count;
	res.breakers = pointers;
	reply.request_id = request_id;
	reply.body_case = BODY(LIST_CIRCUIT_BREAKERS_RESPONSE);
	reply.list_circuit_breakers_response = &res;
	ipc_conn_reply(conn, &reply);
	free(pointers);
	free(messages);
	free(list);
}

static void reply_breaker(struct ipc_conn *conn, uint64_t request_id, struct breaker_snapshot *snap,
                          bool found)
{
	ipc_envelope reply = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__CircuitBreakerResponse res =
	        STEMEDB__IPC__V1__CIRCUIT_BREAKER_RESPONSE__INIT;
	Stemedb__Ipc__V1__CircuitBreaker breaker;

	breaker_message(snap, &breaker);
	res.breaker = &breaker;
	res.found = found;
	reply.request_id = request_id;
	reply.body_case = BODY(CIRCUIT_BREAKER_RESPONSE);
	reply.circuit_breaker_response = &res;
	ipc_conn_reply(conn, &reply);
}

static void ban_breaker(struct api_state *state, struct ipc_conn *conn, const ipc_envelope *request)
{
	const Stemedb__Ipc__V1__BanCircuitBreakerRequest *req =
	        request->ban_circuit_breaker_request;
	size_t reason_len = req->reason != NULL ? strlen(req->reason) : 0;
	struct breaker_snapshot snap;

	if (req->agent_id.len != 32 || req->duration_seconds < 1 ||
	    req->duration_seconds > BAN_SECONDS_MAX || reason_len < 1 ||
	    reason_len > BREAKER_REASON_MAX) {
		ipc_conn_reply_error(
		        conn, request->request_id, ERR(INVALID_ARGUMENT),
		        "send a 32-byte agent_id (got %zu bytes), duration_seconds from "
		        "1 to %u (got %llu) and a reason of 1 to %d bytes (got %zu)",
		        req->agent_id.len, BAN_SECONDS_MAX,
		        (unsigned long long)req->duration_seconds, BREAKER_REASON_MAX, reason_len);
		return;
	}
	if (!protect_breaker_ban(state->protect, req->agent_id.data, req->duration_seconds,
	                         req->reason, &snap)) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "the ban applies now but storing it failed, so a restart "
		                     "would lift it; see the stemedb-api log and retry");
		return;
	}
	reply_breaker(conn, request->request_id, &snap, true);
}

static void reset_breaker(struct api_state *state, struct ipc_conn *conn,
                          const ipc_envelope *request)
{
	const Stemedb__Ipc__V1__ResetCircuitBreakerRequest *req =
	        request->reset_circuit_breaker_request;
	struct breaker_snapshot snap;
	bool found = false;

	if (req->agent_id.len != 32) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INVALID_ARGUMENT),
		                     "agent_id is %zu bytes; send the 32-byte agent id",
		                     req->agent_id.len);
		return;
	}
	if (!protect_breaker_reset(state->protect, req->agent_id.data, &found)) {
		ipc_conn_reply_error(conn, request->request_id, ERR(INTERNAL),
		                     "the breaker is closed now but deleting its stored state "
		                     "failed, so a restart would restore it; see the stemedb-api "
		                     "log and retry");
		return;
	}
	memset(&snap, 0, sizeof(snap));
	memcpy(snap.agent, req->agent_id.data, 32);
	snap.state = BREAKER_CLOSED;
	reply_breaker(conn, request->request_id, &snap, found);
}

void ipc_breakers_handle(struct api_state *state, struct ipc_conn *conn,
                         const ipc_envelope *request)
{
	switch (request->body_case) {
	case BODY(LIST_CIRCUIT_BREAKERS_REQUEST):
		list_breakers(state, conn, request->request_id);
		break;
	case BODY(BAN_CIRCUIT_BREAKER_REQUEST):
		ban_breaker(state, conn, request);
		break;
	case BODY(RESET_CIRCUIT_BREAKER_REQUEST):
	default:
		reset_breaker(state, conn, request);
		break;
	}
}
