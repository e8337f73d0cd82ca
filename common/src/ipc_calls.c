/* Typed requests to stemedb-api's api.sock, built on ipc_client_call. */

#include "stemedb/ipc.h"

#define BODY(name) STEMEDB__IPC__V1__ENVELOPE__BODY_##name

enum ipc_result ipc_call_stats(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                               char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__StatsRequest body = STEMEDB__IPC__V1__STATS_REQUEST__INIT;

	req.body_case = BODY(STATS_REQUEST);
	req.stats_request = &body;
	return ipc_client_call(c, &req, BODY(STATS_RESPONSE), timeout_ms, reply, NULL, err,
	                       err_size);
}

enum ipc_result ipc_call_ready(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                               char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ReadyRequest body = STEMEDB__IPC__V1__READY_REQUEST__INIT;

	req.body_case = BODY(READY_REQUEST);
	req.ready_request = &body;
	return ipc_client_call(c, &req, BODY(READY_RESPONSE), timeout_ms, reply, NULL, err,
	                       err_size);
}

enum ipc_result ipc_call_get_assertion(struct ipc_client *c, const uint8_t hash[32],
                                       uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                       size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__GetAssertionRequest body = STEMEDB__IPC__V1__GET_ASSERTION_REQUEST__INIT;

	body.hash.data = (uint8_t *)hash;
	body.hash.len = 32;
	req.body_case = BODY(GET_ASSERTION_REQUEST);
	req.get_assertion_request = &body;
	return ipc_client_call(c, &req, BODY(GET_ASSERTION_RESPONSE), timeout_ms, reply, NULL, err,
	                       err_size);
}

enum ipc_result ipc_call_create_checkpoint(struct ipc_client *c, const char *target_dir,
                                           uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                           size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__CreateCheckpointRequest body =
	        STEMEDB__IPC__V1__CREATE_CHECKPOINT_REQUEST__INIT;

	body.target_dir = (char *)target_dir;
	req.body_case = BODY(CREATE_CHECKPOINT_REQUEST);
	req.create_checkpoint_request = &body;
	return ipc_client_call(c, &req, BODY(CREATE_CHECKPOINT_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}

enum ipc_result ipc_call_set_archived_watermark(struct ipc_client *c, uint64_t watermark,
                                                uint32_t timeout_ms, ipc_envelope **reply,
                                                char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__SetArchivedWatermarkRequest body =
	        STEMEDB__IPC__V1__SET_ARCHIVED_WATERMARK_REQUEST__INIT;

	body.watermark = watermark;
	req.body_case = BODY(SET_ARCHIVED_WATERMARK_REQUEST);
	req.set_archived_watermark_request = &body;
	return ipc_client_call(c, &req, BODY(ARCHIVED_WATERMARK_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}

enum ipc_result ipc_call_get_archived_watermark(struct ipc_client *c, uint32_t timeout_ms,
                                                ipc_envelope **reply, char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__GetArchivedWatermarkRequest body =
	        STEMEDB__IPC__V1__GET_ARCHIVED_WATERMARK_REQUEST__INIT;

	req.body_case = BODY(GET_ARCHIVED_WATERMARK_REQUEST);
	req.get_archived_watermark_request = &body;
	return ipc_client_call(c, &req, BODY(ARCHIVED_WATERMARK_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}

enum ipc_result ipc_call_compact(struct ipc_client *c, uint32_t timeout_ms, ipc_envelope **reply,
                                 char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__CompactRequest body = STEMEDB__IPC__V1__COMPACT_REQUEST__INIT;

	req.body_case = BODY(COMPACT_REQUEST);
	req.compact_request = &body;
	return ipc_client_call(c, &req, BODY(COMPACT_RESPONSE), timeout_ms, reply, NULL, err,
	                       err_size);
}

enum ipc_result ipc_call_rebuild_indexes(struct ipc_client *c, uint32_t timeout_ms,
                                         ipc_envelope **reply, char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__RebuildIndexesRequest body =
	        STEMEDB__IPC__V1__REBUILD_INDEXES_REQUEST__INIT;

	req.body_case = BODY(REBUILD_INDEXES_REQUEST);
	req.rebuild_indexes_request = &body;
	return ipc_client_call(c, &req, BODY(REBUILD_INDEXES_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}

enum ipc_result ipc_call_list_circuit_breakers(struct ipc_client *c, uint32_t timeout_ms,
                                               ipc_envelope **reply, char *err, size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ListCircuitBreakersRequest body =
	        STEMEDB__IPC__V1__LIST_CIRCUIT_BREAKERS_REQUEST__INIT;

	req.body_case = BODY(LIST_CIRCUIT_BREAKERS_REQUEST);
	req.list_circuit_breakers_request = &body;
	return ipc_client_call(c, &req, BODY(LIST_CIRCUIT_BREAKERS_RESPONSE), timeout_ms, reply,
	                       NULL, err, err_size);
}

enum ipc_result ipc_call_ban_circuit_breaker(struct ipc_client *c, const uint8_t agent[32],
                                             uint64_t duration_seconds, const char *reason,
                                             uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                             size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__BanCircuitBreakerRequest body =
	        STEMEDB__IPC__V1__BAN_CIRCUIT_BREAKER_REQUEST__INIT;

	body.agent_id.data = (uint8_t *)agent;
	body.agent_id.len = 32;
	body.duration_seconds = duration_seconds;
	body.reason = (char *)reason;
	req.body_case = BODY(BAN_CIRCUIT_BREAKER_REQUEST);
	req.ban_circuit_breaker_request = &body;
	return ipc_client_call(c, &req, BODY(CIRCUIT_BREAKER_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}

enum ipc_result ipc_call_reset_circuit_breaker(struct ipc_client *c, const uint8_t agent[32],
                                               uint32_t timeout_ms, ipc_envelope **reply, char *err,
                                               size_t err_size)
{
	ipc_envelope req = STEMEDB__IPC__V1__ENVELOPE__INIT;
	Stemedb__Ipc__V1__ResetCircuitBreakerRequest body =
	        STEMEDB__IPC__V1__RESET_CIRCUIT_BREAKER_REQUEST__INIT;

	body.agent_id.data = (uint8_t *)agent;
	body.agent_id.len = 32;
	req.body_case = BODY(RESET_CIRCUIT_BREAKER_REQUEST);
	req.reset_circuit_breaker_request = &body;
	return ipc_client_call(c, &req, BODY(CIRCUIT_BREAKER_RESPONSE), timeout_ms, reply, NULL,
	                       err, err_size);
}
