#include "quota.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/log.h"

uint64_t quota_cost(const struct quota_costs *costs, enum quota_request kind, uint64_t lenses,
                    uint64_t body_bytes)
{
	uint64_t base;

	switch (kind) {
	case QUOTA_ASSERT:
		base = costs->assert_tokens;
		break;
	case QUOTA_VOTE:
		base = costs->vote_tokens;
		break;
	case QUOTA_QUERY:
		base = costs->query_tokens + lenses * costs->lens_tokens;
		break;
	case QUOTA_READ:
	default:
		base = costs->read_tokens;
		break;
	}
	return base + (body_bytes + 1023) / 1024 * costs->tokens_per_kib;
}

uint64_t quota_limit(uint64_t base_tokens, double multiplier)
{
	double limit = (double)base_tokens * multiplier;

	return limit < 1.0 ? 1 : (uint64_t)(limit + 0.5);
}

struct quota_entry {
	struct quota_entry *next;
	uint8_t agent[QUOTA_AGENT_ID_LEN];
	uint64_t window_start;
	uint64_t used;
};

struct quota_table {
	pthread_mutex_t lock;
	uint64_t window_seconds;
	size_t max_agents;
	size_t count;
	struct quota_entry **buckets;
	size_t bucket_mask;
	uint64_t untracked; /* charges let through because the table was full */
};

struct quota_table *quota_table_new(uint64_t window_seconds, size_t max_agents)
{
	struct quota_table *t = calloc(1, sizeof(*t));
	size_t buckets = 64;

	if (t == NULL)
		abort();
	while (buckets < max_agents && buckets < (1u << 20))
		buckets *= 2;
	t->buckets = calloc(buckets, sizeof(*t->buckets));
	if (t->buckets == NULL)
		abort();
	t->bucket_mask = buckets - 1;
	t->window_seconds = window_seconds > 0 ? window_seconds : 1;
	t->max_agents = max_agents > 0 ? max_agents : 1;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void quota_table_free(struct quota_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i <= t->bucket_mask; i++) {
		struct quota_entry *e = t->buckets[i];

		while (e != NULL) {
			struct quota_entry *next = e->next;

			free(e);
			e = next;
		}
	}
	free(t->buckets);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static size_t agent_bucket(const struct quota_table *t, const uint8_t *agent)
{
	uint64_t h;

	memcpy(&h, agent, sizeof(h));
	return (size_t)h & t->bucket_mask;
}

/* Drops the entries whose window has ended: their agents start with a full quota. */
static void evict_ended(struct quota_table *t, uint64_t now)
{
	for (size_t i = 0; i <= t->bucket_mask; i++) {
		struct quota_entry **link = &t->buckets[i];

		while (*link != NULL) {
			struct quota_entry *e = *link;

			if (e->window_start + t->window_seconds <= now) {
				*link = e->next;
				free(e);
				t->count--;
			} else {
				link = &e->next;
			}
		}
	}
}

static struct quota_entry *entry_find(struct quota_table *t, const uint8_t *agent)
{
	for (struct quota_entry *e = t->buckets[agent_bucket(t, agent)]; e != NULL; e = e->next) {
		if (memcmp(e->agent, agent, QUOTA_AGENT_ID_LEN) == 0)
			return e;
	}
	return NULL;
}

/* Returns the agent's entry with a current window, or NULL when the table is full of
 * agents whose windows have not ended. */
static struct quota_entry *entry_get(struct quota_table *t, const uint8_t *agent, uint64_t now)
{
	struct quota_entry *e = entry_find(t, agent);
	size_t bucket;

	if (e != NULL) {
		if (e->window_start + t->window_seconds <= now) {
			e->window_start = now;
			e->used = 0;
		}
		return e;
	}
	if (t->count >= t->max_agents) {
		evict_ended(t, now);
		if (t->count >= t->max_agents)
			return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		abort();
	memcpy(e->agent, agent, QUOTA_AGENT_ID_LEN);
	e->window_start = now;
	bucket = agent_bucket(t, agent);
	e->next = t->buckets[bucket];
	t->buckets[bucket] = e;
	t->count++;
	return e;
}

static void status_fill(const struct quota_table *t, uint64_t window_start, uint64_t used,
                        uint64_t limit, struct quota_status *status)
{
	status->limit = limit;
	status->used = used;
	status->remaining = used < limit ? limit - used : 0;
	status->reset_at = window_start + t->window_seconds;
}

bool quota_charge(struct quota_table *t, const uint8_t *agent, uint64_t limit, uint64_t cost,
                  uint64_t now, struct quota_status *status)
{
	struct quota_entry *e;
	bool allowed;

	pthread_mutex_lock(&t->lock);
	e = entry_get(t, agent, now);
	if (e == NULL) {
		/* NOTE: a full table lets the charge through untracked, so that new agents
		 * are not locked out; admission's proof of work still limits them. */
		if (t->untracked++ % 1000 == 0)
			log_warn(
			        "quota: the table holds %zu agents with open windows, so a request "
			        "went uncharged (%llu so far); raise STEMEDB_QUOTA_MAX_AGENTS",
			        t->count, (unsigned long long)t->untracked);
		status_fill(t, now, 0, limit, status);
		pthread_mutex_unlock(&t->lock);
		return true;
	}
	allowed = cost <= limit && e->used <= limit - cost;
	if (allowed)
		e->used += cost;
	status_fill(t, e->window_start, e->used, limit, status);
	pthread_mutex_unlock(&t->lock);
	return allowed;
}

void quota_peek(struct quota_table *t, const uint8_t *agent, uint64_t limit, uint64_t now,
                struct quota_status *status)
{
	struct quota_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_find(t, agent);
	if (e == NULL || e->window_start + t->window_seconds <= now)
		status_fill(t, now, 0, limit, status);
	else
		status_fill(t, e->window_start, e->used, limit, status);
	pthread_mutex_unlock(&t->lock);
}
