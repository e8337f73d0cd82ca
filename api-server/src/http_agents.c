/* GET /v1/agents/{agent_id}: an agent's trust and the span of its stored assertions.
 * The count comes from scanning the agent index ('a', agent id, timestamp, hash) and
 * stops at AGENT_COUNT_MAX keys, because keeping exact counters would need a
 * read-modify-write in every commit batch. */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_handlers.h"
#include "http_util.h"
#include "stemedb/hex.h"
#include "store.h"
#include "trust.h"

#define AGENT_COUNT_MAX 100000
#define AGENT_KEY_LEN   (1 + STEMEDB_AGENT_ID_LEN + 8 + STEMEDB_HASH_LEN)

struct agent_span {
	uint64_t count;
	bool complete;
	uint64_t first_seen;
	uint64_t last_seen;
};

static uint64_t key_timestamp(const uint8_t *key)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | key[1 + STEMEDB_AGENT_ID_LEN + i];
	return v;
}

static bool count_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
	struct agent_span *span = ctx;

	(void)value;
	(void)value_len;
	if (key_len != AGENT_KEY_LEN)
		return true;
	if (span->count == AGENT_COUNT_MAX) {
		span->complete = false;
		return false;
	}
	if (span->count == 0)
		span->first_seen = key_timestamp(key);
	span->count++;
	return true;
}

static bool last_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
	(void)value;
	(void)value_len;
	if (key_len != AGENT_KEY_LEN)
		return true;
	*(uint64_t *)ctx = key_timestamp(key);
	return false;
}

static enum store_result read_span(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                   struct agent_span *span)
{
	uint8_t prefix[1 + STEMEDB_AGENT_ID_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = sizeof(prefix)};
	enum store_result rc;

	memset(span, 0, sizeof(*span));
	span->complete = true;
	prefix[0] = STORE_VIEW_AGENT;
	memcpy(prefix + 1, agent, STEMEDB_AGENT_ID_LEN);
	rc = store_index_scan(s, &scan, count_key, span);
	if (rc != STORE_OK || span->count == 0)
		return rc;
	scan.reverse = true;
	return store_index_scan(s, &scan, last_key, &span->last_seen);
}

static json_t *time_or_null(bool present, uint64_t unix_seconds)
{
	return present ? json_integer((json_int_t)unix_seconds) : json_null();
}

void http_handle_agent(struct http_call *call)
{
	const char *text = call->path + strlen("/v1/agents/");
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	struct trust_summary trust;
	struct agent_span span;

	if (http_require_ready(call) == NULL || !http_query_reject_any(call))
		return;
	if (!hex_decode(text, strlen(text), agent, sizeof(agent))) {
		http_reply_error(call, 400, "invalid_parameter", "agent_id",
		                 "'%.100s' is not an agent id; give the 64 hex characters of an "
		                 "Ed25519 public key.",
		                 text);
		return;
	}
	if (read_span(call->state->store, agent, &span) != STORE_OK ||
	    trust_of_agent(call->state->store, agent, (uint64_t)time(NULL), &trust) != STORE_OK) {
		http_reply_error(call, 500, "internal_error", NULL,
		                 "Reading agent %.64s failed; see the server log.", text);
		return;
	}
	if (span.count == 0 && trust.accurate + trust.inaccurate == 0) {
		http_reply_error(
		        call, 404, "not_found", "agent_id",
		        "Agent %.64s has no assertions and no trust outcomes on this node.", text);
		return;
	}

	http_reply_json(call, 200,
	                json_pack("{s:s, s:f, s:I, s:b, s:o, s:o, s:{s:I, s:I, s:o}}", "agent_id",
	                          text, "trust", trust.trust, "assertion_count",
	                          (json_int_t)span.count, "assertion_count_complete", span.complete,
	                          "first_seen", time_or_null(span.count > 0, span.first_seen),
	                          "last_seen", time_or_null(span.count > 0, span.last_seen),
	                          "trust_outcomes", "accurate", (json_int_t)trust.accurate,
	                          "inaccurate", (json_int_t)trust.inaccurate, "last",
	                          time_or_null(trust.last_outcome > 0, trust.last_outcome)));
}
