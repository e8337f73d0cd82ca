#include "breaker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stemedb/log.h"

struct breaker_entry {
	struct breaker_entry *next;
	uint8_t agent[BREAKER_AGENT_ID_LEN];
	enum breaker_state state;
	bool banned;
	uint64_t open_until_ms;
	char reason[BREAKER_REASON_MAX + 1];
	uint32_t failure_count; /* entries used in failures, at most the threshold */
	uint32_t failure_next;  /* ring position of the next failure */
	uint64_t failures[];    /* times of the latest failures, a ring of threshold slots */
};

struct breaker_table {
	pthread_mutex_t lock;
	struct breaker_config config;
	struct breaker_entry **buckets;
	size_t bucket_mask;
	size_t count;
	uint64_t untracked_failures; /* failures dropped because the table was full */
};

static size_t agent_bucket(const struct breaker_table *t, const uint8_t *agent)
{
	uint64_t h;

	/* Agent ids are public keys, so their bytes are already uniform. */
	memcpy(&h, agent, sizeof(h));
	return (size_t)h & t->bucket_mask;
}

struct breaker_table *breaker_table_new(const struct breaker_config *cfg)
{
	struct breaker_table *t = calloc(1, sizeof(*t));
	size_t buckets = 64;

	if (t == NULL)
		abort();
	t->config = *cfg;
	if (t->config.failure_threshold < 1)
		t->config.failure_threshold = 1;
	if (t->config.failure_threshold > BREAKER_THRESHOLD_MAX)
		t->config.failure_threshold = BREAKER_THRESHOLD_MAX;
	while (buckets < cfg->max_agents && buckets < (1u << 20))
		buckets *= 2;
	t->buckets = calloc(buckets, sizeof(*t->buckets));
	if (t->buckets == NULL)
		abort();
	t->bucket_mask = buckets - 1;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void breaker_table_free(struct breaker_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i <= t->bucket_mask; i++) {
		struct breaker_entry *e = t->buckets[i];

		while (e != NULL) {
			struct breaker_entry *next = e->next;

			free(e);
			e = next;
		}
	}
	free(t->buckets);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct breaker_entry *entry_find(struct breaker_table *t, const uint8_t *agent)
{
	for (struct breaker_entry *e = t->buckets[agent_bucket(t, agent)]; e != NULL; e = e->next) {
		if (memcmp(e->agent, agent, BREAKER_AGENT_ID_LEN) == 0)
			return e;
	}
	return NULL;
}

static uint32_t recent_failures(const struct breaker_table *t, const struct breaker_entry *e,
                                uint64_t now_ms)
{
	uint32_t recent = 0;

	for (uint32_t i = 0; i < e->failure_count; i++) {
		if (e->failures[i] + t->config.window_ms > now_ms)
			recent++;
	}
	return recent;
}

/* Open breakers whose time is up count as half-open. */
static enum breaker_state effective_state(const struct breaker_entry *e, uint64_t now_ms)
{
	if (e->state == BREAKER_OPEN && now_ms >= e->open_until_ms)
		return BREAKER_HALF_OPEN;
	return e->state;
}

static bool entry_idle(const struct breaker_table *t, const struct breaker_entry *e,
                       uint64_t now_ms)
{
	return e->state == BREAKER_CLOSED && recent_failures(t, e, now_ms) == 0;
}

/* Removes every closed breaker without failures in the window. */
static void evict_idle(struct breaker_table *t, uint64_t now_ms)
{
	size_t evicted = 0;

	for (size_t i = 0; i <= t->bucket_mask; i++) {
		struct breaker_entry **link = &t->buckets[i];

		while (*link != NULL) {
			struct breaker_entry *e = *link;

			if (entry_idle(t, e, now_ms)) {
				*link = e->next;
				free(e);
				t->count--;
				evicted++;
			} else {
				link = &e->next;
			}
		}
	}
	log_debug("circuit breakers: evicted %zu idle agents, %zu remain", evicted, t->count);
}

/* Returns the agent's entry, adding a closed one when absent. Returns NULL when the
 * table is full of breakers that cannot be evicted, unless force is set. */
static struct breaker_entry *entry_get(struct breaker_table *t, const uint8_t *agent,
                                       uint64_t now_ms, bool force)
{
	struct breaker_entry *e = entry_find(t, agent);
	size_t bucket;

	if (e != NULL)
		return e;
	if (t->count >= t->config.max_agents) {
		evict_idle(t, now_ms);
		if (t->count >= t->config.max_agents && !force)
			return NULL;
	}

	e = calloc(1, sizeof(*e) + t->config.failure_threshold * sizeof(e->failures[0]));
	if (e == NULL)
		abort();
	memcpy(e->agent, agent, BREAKER_AGENT_ID_LEN);
	bucket = agent_bucket(t, agent);
	e->next = t->buckets[bucket];
	t->buckets[bucket] = e;
	t->count++;
	return e;
}

static void snapshot_fill(const struct breaker_table *t, const struct breaker_entry *e,
                          uint64_t now_ms, struct breaker_snapshot *snap)
{
	memset(snap, 0, sizeof(*snap));
	memcpy(snap->agent, e->agent, BREAKER_AGENT_ID_LEN);
	snap->state = effective_state(e, now_ms);
	snap->recent_failures = recent_failures(t, e, now_ms);
	snap->open_until_ms = e->state == BREAKER_OPEN ? e->open_until_ms : 0;
	snap->banned = e->banned && snap->state == BREAKER_OPEN;
	snprintf(snap->reason, sizeof(snap->reason), "%s", e->reason);
}

static void entry_open(struct breaker_entry *e, uint64_t until_ms, bool banned, const char *reason)
{
	e->state = BREAKER_OPEN;
	e->open_until_ms = until_ms;
	e->banned = banned;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

static void entry_close(struct breaker_entry *e)
{
	e->state = BREAKER_CLOSED;
	e->open_until_ms = 0;
	e->banned = false;
	e->reason[0] = '\0';
	e->failure_count = 0;
	e->failure_next = 0;
}

enum breaker_verdict breaker_check(struct breaker_table *t, const uint8_t *agent, uint64_t now_ms,
                                   uint64_t *retry_after_ms)
{
	enum breaker_verdict verdict = BREAKER_ALLOW;
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_find(t, agent);
	if (e != NULL && e->state == BREAKER_OPEN) {
		if (now_ms >= e->open_until_ms) {
			e->state = BREAKER_HALF_OPEN;
			e->banned = false;
		} else {
			verdict = e->banned ? BREAKER_REJECT_BANNED : BREAKER_REJECT_OPEN;
			*retry_after_ms = e->open_until_ms - now_ms;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return verdict;
}

/* Adds a failure to a closed breaker; returns true when it reached the threshold
 * within the window. */
static bool closed_failure(struct breaker_table *t, struct breaker_entry *e, uint64_t now_ms)
{
	uint32_t threshold = (uint32_t)t->config.failure_threshold;

	e->failures[e->failure_next] = now_ms;
	e->failure_next = (e->failure_next + 1) % threshold;
	if (e->failure_count < threshold)
		e->failure_count++;
	return recent_failures(t, e, now_ms) >= threshold;
}

enum breaker_transition breaker_record(struct breaker_table *t, const uint8_t *agent, bool failure,
                                       uint64_t now_ms, struct breaker_snapshot *snap)
{
	enum breaker_transition transition = BREAKER_UNCHANGED;
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = failure ? entry_get(t, agent, now_ms, false) : entry_find(t, agent);
	if (e == NULL) {
		if (failure && t->untracked_failures++ % 1000 == 0)
			log_warn("circuit breakers: the table is full with %zu agents that cannot "
			         "be "
			         "evicted, so a failure went uncounted (%llu so far); raise "
			         "STEMEDB_CIRCUIT_BREAKER_MAX_AGENTS",
			         t->count, (unsigned long long)t->untracked_failures);
		pthread_mutex_unlock(&t->lock);
		return BREAKER_UNCHANGED;
	}

	switch (effective_state(e, now_ms)) {
	case BREAKER_CLOSED:
		if (failure && closed_failure(t, e, now_ms)) {
			entry_open(e, now_ms + t->config.open_ms, false,
			           "failure threshold reached");
			transition = BREAKER_OPENED;
		}
		break;
	case BREAKER_HALF_OPEN:
		if (failure) {
			entry_open(e, now_ms + t->config.open_ms, false, "failure while half-open");
			transition = BREAKER_OPENED;
		} else {
			entry_close(e);
			transition = BREAKER_CLOSED_AGAIN;
		}
		break;
	case BREAKER_OPEN:
	default:
		/* Requests admitted before the breaker opened finish without effect. */
		break;
	}
	if (transition != BREAKER_UNCHANGED)
		snapshot_fill(t, e, now_ms, snap);
	pthread_mutex_unlock(&t->lock);
	return transition;
}

void breaker_ban(struct breaker_table *t, const uint8_t *agent, uint64_t duration_ms,
                 const char *reason, uint64_t now_ms, struct breaker_snapshot *snap)
{
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_get(t, agent, now_ms, true);
	entry_open(e, now_ms + duration_ms, true, reason);
	snapshot_fill(t, e, now_ms, snap);
	pthread_mutex_unlock(&t->lock);
}

bool breaker_reset(struct breaker_table *t, const uint8_t *agent)
{
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_find(t, agent);
	if (e != NULL)
		entry_close(e);
	pthread_mutex_unlock(&t->lock);
	return e != NULL;
}

void breaker_restore(struct breaker_table *t, const struct breaker_snapshot *snap)
{
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_get(t, snap->agent, 0, true);
	if (snap->state == BREAKER_CLOSED)
		entry_close(e);
	else
		entry_open(e, snap->open_until_ms, snap->banned, snap->reason);
	pthread_mutex_unlock(&t->lock);
}

size_t breaker_list(struct breaker_table *t, uint64_t now_ms, struct breaker_snapshot **out)
{
	struct breaker_snapshot *list = NULL;
	size_t count = 0, capacity = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i <= t->bucket_mask; i++) {
		for (struct breaker_entry *e = t->buckets[i]; e != NULL; e = e->next) {
			if (entry_idle(t, e, now_ms))
				continue;
			if (count == capacity) {
				capacity = capacity == 0 ? 16 : capacity * 2;
				list = realloc(list, capacity * sizeof(*list));
				if (list == NULL)
					abort();
			}
			snapshot_fill(t, e, now_ms, &list[count++]);
		}
	}
	pthread_mutex_unlock(&t->lock);
	*out = list;
	return count;
}

void breaker_peek(struct breaker_table *t, const uint8_t *agent, uint64_t now_ms,
                  struct breaker_snapshot *snap)
{
	struct breaker_entry *e;

	pthread_mutex_lock(&t->lock);
	e = entry_find(t, agent);
	if (e != NULL) {
		snapshot_fill(t, e, now_ms, snap);
	} else {
		memset(snap, 0, sizeof(*snap));
		memcpy(snap->agent, agent, BREAKER_AGENT_ID_LEN);
		snap->state = BREAKER_CLOSED;
	}
	pthread_mutex_unlock(&t->lock);
}

void breaker_count_states(struct breaker_table *t, uint64_t now_ms, uint64_t counts[3])
{
	counts[BREAKER_CLOSED] = counts[BREAKER_OPEN] = counts[BREAKER_HALF_OPEN] = 0;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i <= t->bucket_mask; i++) {
		for (struct breaker_entry *e = t->buckets[i]; e != NULL; e = e->next)
			counts[effective_state(e, now_ms)]++;
	}
	pthread_mutex_unlock(&t->lock);
}

size_t breaker_tracked(struct breaker_table *t)
{
	size_t count;

	pthread_mutex_lock(&t->lock);
	count = t->count;
	pthread_mutex_unlock(&t->lock);
	return count;
}

const char *breaker_state_name(enum breaker_state state)
{
	switch (state) {
	case BREAKER_OPEN:
		return "OPEN";
	case BREAKER_HALF_OPEN:
		return "HALF_OPEN";
	case BREAKER_CLOSED:
	default:
		return "CLOSED";
	}
}
