#include <jansson.h>
#include <stdatomic.h>

#include "defense.h"
#include "http_handlers.h"
#include "http_util.h"
#include "protect.h"
#include "stemedb/buf.h"
#include "stemedb/metrics.h"

#ifndef STEMEDB_VERSION
#define STEMEDB_VERSION "0.1.0"
#endif

void http_handle_health(struct http_call *call)
{
	struct api_state *state = call->state;
	struct commit_pipeline *p = atomic_load_explicit(&state->pipeline, memory_order_acquire);
	struct commit_stats stats = {0};
	bool wal_healthy = p != NULL && commit_healthy(p);
	const char *status;
	json_t *body;

	if (!http_query_reject_any(call))
		return;
	if (p != NULL)
		commit_get_stats(p, &stats);

	/* Replay in progress is degraded (the node will become healthy by itself); a
	 * failed replay or WAL is unhealthy (an operator has to act). */
	if (atomic_load(&state->recovery_failed) || (p != NULL && !wal_healthy))
		status = "unhealthy";
	else if (p == NULL)
		status = "degraded";
	else
		status = "healthy";

	body = json_pack("{s:s, s:s, s:I, s:I, s:b, s:{s:b, s:I, s:I}, s:s, s:s}", "status", status,
	                 "version", STEMEDB_VERSION, "uptime_seconds",
	                 (json_int_t)((http_now_ns() - state->started_ns) / 1000000000u),
	                 "assertions_count", (json_int_t)store_assertion_count(state->store),
	                 "ready", p != NULL, "wal", "healthy", wal_healthy, "end_offset",
	                 (json_int_t)stats.wal_end_offset, "segments",
	                 (json_int_t)stats.wal_segments, "durability",
	                 state->config->durability_name, "node_id", state->node_id);
	json_object_set_new(body, "quarantine",
	                    json_pack("{s:b, s:I}", "enabled", state->config->defense.enabled,
	                              "pending", (json_int_t)defense_pending()));
	http_reply_json(call, p != NULL && wal_healthy ? 200 : 503, body);
}

void http_handle_ready(struct http_call *call)
{
	struct commit_pipeline *p =
	        atomic_load_explicit(&call->state->pipeline, memory_order_acquire);

	if (!http_query_reject_any(call))
		return;
	http_reply_json(call, p != NULL ? 200 : 503, json_pack("{s:b}", "ready", p != NULL));
}

void http_handle_metrics(struct http_call *call)
{
	struct buf text;

	if (!http_query_reject_any(call))
		return;
	metric_set(http_metrics.assertions, (double)store_assertion_count(call->state->store));
	protect_refresh_metrics(call->state->protect);

	buf_init(&text);
	metrics_render(&text);
	http_reply_bytes(call, 200, "text/plain; version=0.0.4; charset=utf-8", text.data,
	                 text.len);
	buf_free(&text);
}
