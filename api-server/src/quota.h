#ifndef STEMEDB_QUOTA_H
#define STEMEDB_QUOTA_H

/* Hourly token quotas per agent. Each agent has a fixed window that starts with its
 * first charged request and lasts window_seconds; the window's tokens reset when it
 * ends. The state lives in memory only, so a restart refills every quota. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUOTA_AGENT_ID_LEN 32

/* Kinds of request with their own token cost. */
enum quota_request {
	QUOTA_ASSERT = 0, /* also a batch, an epoch, an alias and a source */
	QUOTA_VOTE,       /* also a co-signature */
	QUOTA_QUERY,      /* a lens query: the base cost plus one per lens */
	QUOTA_READ        /* any other read of an agent-scoped request */
};

struct quota_costs {
	uint64_t assert_tokens;  /* 10 */
	uint64_t vote_tokens;    /* 1 */
	uint64_t query_tokens;   /* 5 */
	uint64_t lens_tokens;    /* 1 per lens */
	uint64_t read_tokens;    /* 1 */
	uint64_t tokens_per_kib; /* 1 per started KiB of body */
};

/* Returns the tokens that one request costs: the base cost of its kind, lens_tokens for
 * each lens it evaluates, and tokens_per_kib for each started KiB of body. */
uint64_t quota_cost(const struct quota_costs *costs, enum quota_request kind, uint64_t lenses,
                    uint64_t body_bytes);

/* Returns base_tokens times the tier multiplier, at least 1. */
uint64_t quota_limit(uint64_t base_tokens, double multiplier);

struct quota_status {
	uint64_t limit;
	uint64_t used;
	uint64_t remaining;
	uint64_t reset_at; /* Unix seconds when the window ends */
};

struct quota_table;

struct quota_table *quota_table_new(uint64_t window_seconds, size_t max_agents);
void quota_table_free(struct quota_table *t);

/* Charges cost tokens to the agent when they fit in limit, and returns whether they
 * did. *status gets the state after the charge (or unchanged state when rejected). */
bool quota_charge(struct quota_table *t, const uint8_t *agent, uint64_t limit, uint64_t cost,
                  uint64_t now, struct quota_status *status);

/* Fills *status without charging. */
void quota_peek(struct quota_table *t, const uint8_t *agent, uint64_t limit, uint64_t now,
                struct quota_status *status);

#endif
