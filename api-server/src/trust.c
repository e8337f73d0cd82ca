#include "trust.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemedb/buf.h"

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

	if (key_len != 1 + STEMEDB_AGENT_ID_LEN + 8 + TRUST_OUTCOME_ID_LEN || value_len < 1)
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

static bool key_exists(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
	(void)key;
	(void)key_len;
	(void)value;
	(void)value_len;
	*(bool *)ctx = true;
	return false;
}

enum store_result trust_record_outcome(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                       bool accurate, const char *note, size_t note_len,
                                       uint64_t timestamp, uint8_t id[TRUST_OUTCOME_ID_LEN],
                                       bool *created)
{
	crypto_generichash_state hash;
	struct store_scan scan = {.family = STORE_INDEX_VIEWS};
	uint8_t outcome = accurate ? 1 : 0;
	struct buf key, value;
	enum store_result rc;
	bool exists = false;

	buf_init(&key);
	buf_init(&value);
	buf_put_u64be(&key, timestamp);
	crypto_generichash_init(&hash, NULL, 0, TRUST_OUTCOME_ID_LEN);
	crypto_generichash_update(&hash, agent, STEMEDB_AGENT_ID_LEN);
	crypto_generichash_update(&hash, key.data, key.len);
	crypto_generichash_update(&hash, &outcome, 1);
	crypto_generichash_update(&hash, (const uint8_t *)note, note_len);
	crypto_generichash_final(&hash, id, TRUST_OUTCOME_ID_LEN);

	buf_reset(&key);
	buf_put_u8(&key, STORE_VIEW_TRUST_OUTCOME);
	buf_append(&key, agent, STEMEDB_AGENT_ID_LEN);
	buf_put_u64be(&key, timestamp);
	buf_append(&key, id, TRUST_OUTCOME_ID_LEN);
	scan.prefix = key.data;
	scan.prefix_len = key.len;
	rc = store_index_scan(s, &scan, key_exists, &exists);

	*created = false;
	if (rc == STORE_OK && !exists) {
		buf_put_u8(&value, outcome);
		buf_append(&value, note, note_len);
		rc = store_put_view_durable(s, key.data, key.len, value.data, value.len);
		*created = rc == STORE_OK;
	}
	buf_free(&key);
	buf_free(&value);
	return rc;
}
