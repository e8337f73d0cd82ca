#include "trust.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRUST_INITIAL         0.5
#define TRUST_ACCURATE_STEP   0.05
#define TRUST_INACCURATE_STEP 0.10
#define TRUST_HALF_LIFE_S     (30.0 * 86400.0)
/* Outcomes read per agent; older ones beyond this are ignored. */
#define TRUST_OUTCOMES_MAX 100000

static double decay_toward_initial(double trust, uint64_t from, uint64_t to)
{
	if (to <= from)
		return trust;
	return TRUST_INITIAL +
	       (trust - TRUST_INITIAL) * exp2(-(double)(to - from) / TRUST_HALF_LIFE_S);
}

double trust_fold(const struct trust_outcome *outcomes, size_t count, uint64_t now)
{
	double trust = TRUST_INITIAL;
	uint64_t last = 0;

	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			trust = decay_toward_initial(trust, last, outcomes[i].timestamp);
		trust += outcomes[i].accurate ? TRUST_ACCURATE_STEP : -TRUST_INACCURATE_STEP;
		trust = trust < 0.0 ? 0.0 : (trust > 1.0 ? 1.0 : trust);
		last = outcomes[i].timestamp;
	}
	if (count > 0)
		trust = decay_toward_initial(trust, last, now);
	return trust;
}

static uint64_t load_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

struct outcome_list {
	struct trust_outcome *items;
	size_t count;
	size_t cap;
};

static bool collect_outcome(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                            size_t value_len)
{
	struct outcome_list *list = ctx;

	if (key_len != 1 + STEMEDB_AGENT_ID_LEN + 8 + STORE_TRUST_OUTCOME_KEY_ID_LEN ||
	    value_len < 1)
		return true;
	if (list->count == list->cap) {
		list->cap = list->cap == 0 ? 16 : list->cap * 2;
		list->items = realloc(list->items, list->cap * sizeof(*list->items));
		if (list->items == NULL)
			abort();
	}
	list->items[list->count].timestamp = load_be64(key + 1 + STEMEDB_AGENT_ID_LEN);
	list->items[list->count].accurate = value[0] == 1;
	list->count++;
	return list->count < TRUST_OUTCOMES_MAX;
}

enum store_result trust_of_agent(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                 uint64_t now, struct trust_summary *out)
{
	uint8_t prefix[1 + STEMEDB_AGENT_ID_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = sizeof(prefix)};
	struct outcome_list list = {0};
	enum store_result rc;

	memset(out, 0, sizeof(*out));
	prefix[0] = STORE_VIEW_TRUST_OUTCOME;
	memcpy(prefix + 1, agent, STEMEDB_AGENT_ID_LEN);
	rc = store_index_scan(s, &scan, collect_outcome, &list);

	out->trust = trust_fold(list.items, list.count, now);
	for (size_t i = 0; i < list.count; i++) {
		if (list.items[i].accurate)
			out->accurate++;
		else
			out->inaccurate++;
	}
	if (list.count > 0)
		out->last_outcome = list.items[list.count - 1].timestamp;
	free(list.items);
	return rc;
}

enum store_result trust_of_agent_at(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                    uint64_t at, double *trust)
{
	uint8_t prefix[1 + STEMEDB_AGENT_ID_LEN];
	struct store_scan scan = {
	        .family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = sizeof(prefix)};
	struct outcome_list list = {0};
	enum store_result rc;
	size_t kept = 0;

	prefix[0] = STORE_VIEW_TRUST_OUTCOME;
	memcpy(prefix + 1, agent, STEMEDB_AGENT_ID_LEN);
	rc = store_index_scan(s, &scan, collect_outcome, &list);

	/* Keys sort by timestamp, so the outcomes up to at are a prefix of the list. */
	while (kept < list.count && list.items[kept].timestamp <= at)
		kept++;
	*trust = trust_fold(list.items, kept, at);
	free(list.items);
	return rc;
}

double trust_lens_lookup(void *store, const uint8_t agent[STEMEDB_AGENT_ID_LEN])
{
	struct trust_summary summary;

	if (trust_of_agent(store, agent, (uint64_t)time(NULL), &summary) != STORE_OK)
		return TRUST_INITIAL;
	return summary.trust;
}
