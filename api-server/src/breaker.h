#ifndef STEMEDB_BREAKER_H
#define STEMEDB_BREAKER_H

/* Per-agent circuit breakers. A closed breaker opens after failure_threshold failures
 * within window_ms and then rejects the agent for open_ms. After that it is half-open:
 * the next success closes it and the next failure opens it again. An admin ban opens
 * it for a chosen duration with a reason. Every function takes the wall clock in Unix
 * milliseconds as now_ms, so tests can drive the clock, and the open deadline can be
 * stored and still be meaningful after a restart. The table is safe to use from many
 * threads. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BREAKER_AGENT_ID_LEN  32
#define BREAKER_REASON_MAX    256
#define BREAKER_THRESHOLD_MAX 64

struct breaker_config {
	uint64_t failure_threshold; /* 1..BREAKER_THRESHOLD_MAX */
	uint64_t window_ms;
	uint64_t open_ms;
	uint64_t max_agents; /* bound on the tracked agents */
};

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN };

enum breaker_verdict { BREAKER_ALLOW = 0, BREAKER_REJECT_OPEN, BREAKER_REJECT_BANNED };

/* Change of state made by an outcome, returned so that the caller can store it. */
enum breaker_transition { BREAKER_UNCHANGED = 0, BREAKER_OPENED, BREAKER_CLOSED_AGAIN };

/* State of one agent's breaker as seen at some time. */
struct breaker_snapshot {
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	enum breaker_state state;
	uint32_t recent_failures; /* failures inside the window */
	uint64_t open_until_ms;   /* 0 unless open or banned */
	bool banned;
	char reason[BREAKER_REASON_MAX + 1];
};

struct breaker_table;

struct breaker_table *breaker_table_new(const struct breaker_config *cfg);
void breaker_table_free(struct breaker_table *t);

/* Decides whether the agent may make a request now. On a rejection sets *retry_after_ms
 * to the time left until the breaker becomes half-open. An open breaker whose time is
 * up turns half-open here. */
enum breaker_verdict breaker_check(struct breaker_table *t, const uint8_t *agent, uint64_t now_ms,
                                   uint64_t *retry_after_ms);

/* Records the outcome of a finished request. Returns BREAKER_OPENED or
 * BREAKER_CLOSED_AGAIN when the outcome moved the breaker, with its new state in *snap. */
enum breaker_transition breaker_record(struct breaker_table *t, const uint8_t *agent, bool failure,
                                       uint64_t now_ms, struct breaker_snapshot *snap);

/* Opens the agent's breaker until now_ms + duration_ms with the reason, tracking the
 * agent even when the table is full. Fills *snap with the new state. */
void breaker_ban(struct breaker_table *t, const uint8_t *agent, uint64_t duration_ms,
                 const char *reason, uint64_t now_ms, struct breaker_snapshot *snap);

/* Closes the agent's breaker and clears its failures. Returns false when the agent
 * was not tracked. */
bool breaker_reset(struct breaker_table *t, const uint8_t *agent);

/* Loads a stored open or banned breaker at start-up. */
void breaker_restore(struct breaker_table *t, const struct breaker_snapshot *snap);

/* Copies every tracked breaker that is not closed-and-idle into a new array (freed by
 * the caller) and returns how many; *out is NULL when there are none. */
size_t breaker_list(struct breaker_table *t, uint64_t now_ms, struct breaker_snapshot **out);

/* Fills *snap with the agent's breaker at now_ms, or a closed breaker without failures
 * when the agent is not tracked. */
void breaker_peek(struct breaker_table *t, const uint8_t *agent, uint64_t now_ms,
                  struct breaker_snapshot *snap);

/* Counts the tracked breakers by state at now_ms (indexed by enum breaker_state). */
void breaker_count_states(struct breaker_table *t, uint64_t now_ms, uint64_t counts[3]);

/* Number of agents in the table. */
size_t breaker_tracked(struct breaker_table *t);

const char *breaker_state_name(enum breaker_state state);

#endif
