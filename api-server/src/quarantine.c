#include "quarantine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemedb/hex.h"
#include "stemedb/log.h"

struct list_scan {
	const struct quarantine_filter *filter;
	struct quarantine_page *page;
	size_t agent_cap;
};

static bool entry_matches(const struct quarantine_filter *f, const struct quarantine_entry *e)
{
	if (e->status != f->status)
		return false;
	if (f->has_reason && e->reason != f->reason)
		return false;
	return !f->has_agent || memcmp(e->agent, f->agent, STEMEDB_AGENT_ID_LEN) == 0;
}

static void count_agent(struct list_scan *scan, const uint8_t *agent)
{
	struct quarantine_page *page = scan->page;

	for (size_t i = 0; i < page->agent_count; i++) {
		if (memcmp(page->agents[i].agent, agent, STEMEDB_AGENT_ID_LEN) == 0) {
			page->agents[i].count++;
			return;
		}
	}
	if (page->agent_count == scan->agent_cap) {
		scan->agent_cap = scan->agent_cap == 0 ? 16 : 2 * scan->agent_cap;
		page->agents = realloc(page->agents, scan->agent_cap * sizeof(*page->agents));
		if (page->agents == NULL)
			abort();
	}
	memcpy(page->agents[page->agent_count].agent, agent, STEMEDB_AGENT_ID_LEN);
	page->agents[page->agent_count].count = 1;
	page->agent_count++;
}

static bool on_entry(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
	struct list_scan *scan = ctx;
	const struct quarantine_filter *f = scan->filter;
	struct quarantine_page *page = scan->page;
	struct quarantine_entry entry;
	const uint8_t *hash = key + 1;

	if (key_len != QUARANTINE_KEY_LEN || !quarantine_entry_decode(value, value_len, &entry)) {
		log_warn("skipping a quarantine entry with an unknown layout (%zu bytes)",
		         value_len);
		return true;
	}
	if (!entry_matches(f, &entry))
		return true;
	page->total++;
	count_agent(scan, entry.agent);

	if (f->has_after && memcmp(hash, f->after, STEMEDB_HASH_LEN) <= 0)
		return true;
	if (page->count == f->limit) {
		page->more = true;
		return true;
	}
	memcpy(page->items[page->count].hash, hash, STEMEDB_HASH_LEN);
	page->items[page->count].entry = entry;
	page->count++;
	return true;
}

enum store_result quarantine_list(struct store *s, const struct quarantine_filter *filter,
                                  struct quarantine_page *page)
{
	struct list_scan scan = {.filter = filter, .page = page};
	uint8_t prefix = QUARANTINE_KIND;

	memset(page, 0, sizeof(*page));
	page->items = calloc(filter->limit > 0 ? filter->limit : 1, sizeof(*page->items));
	if (page->items == NULL)
		abort();
	return store_protect_scan(s, &prefix, 1, on_entry, &scan);
}

void quarantine_page_free(struct quarantine_page *page)
{
	free(page->items);
	free(page->agents);
	memset(page, 0, sizeof(*page));
}

struct decision {
	struct store *store;
	const uint8_t *hash;
	bool approve;
	struct quarantine_entry *entry;
	enum quarantine_decision_result result;
};

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs on the writer thread (commit_run_exclusive). */
static void decide_exclusive(void *ctx)
{
	struct decision *d = ctx;
	uint8_t key[QUARANTINE_KEY_LEN];
	uint8_t value[QUARANTINE_VALUE_LEN];
	char hash_hex[2 * STEMEDB_HASH_LEN + 1];
	struct store_batch *batch;
	enum store_result rc;
	char err[256];

	hex_encode(d->hash, STEMEDB_HASH_LEN, hash_hex);
	rc = quarantine_get(d->store, d->hash, d->entry);
	if (rc != STORE_OK) {
		d->result = rc == STORE_NOT_FOUND ? QUARANTINE_NOT_FOUND : QUARANTINE_FAILED;
		return;
	}
	if (d->entry->status != QUARANTINE_PENDING) {
		d->result = QUARANTINE_CONFLICT;
		return;
	}

	batch = store_batch_new();
	if (d->approve && (store_batch_put_index(d->store, batch, d->hash) != STORE_OK ||
	                   defense_batch_put_approved(d->store, batch, d->hash) != STORE_OK)) {
		log_error("approving quarantined assertion %s failed: its record cannot be read",
		          hash_hex);
		store_batch_free(batch);
		d->result = QUARANTINE_FAILED;
		return;
	}
	d->entry->status = d->approve ? QUARANTINE_APPROVED : QUARANTINE_REJECTED;
	d->entry->decided_ms = unix_ms();
	quarantine_entry_encode(d->entry, value);
	key[0] = QUARANTINE_KIND;
	memcpy(key + 1, d->hash, STEMEDB_HASH_LEN);
	store_batch_put_protect(batch, key, sizeof(key), value, sizeof(value));
	rc = store_batch_commit_durable(d->store, batch, err, sizeof(err));
	store_batch_free(batch);
	if (rc != STORE_OK) {
		log_error("storing the decision on quarantined assertion %s failed: %s", hash_hex,
		          err);
		d->entry->status = QUARANTINE_PENDING;
		d->result = QUARANTINE_FAILED;
		return;
	}
	defense_pending_add(-1);
	log_info("quarantined assertion %s (%s) %s", hash_hex,
	         defense_reason_name(d->entry->reason),
	         d->approve ? "approved and indexed" : "rejected");
	d->result = QUARANTINE_DECIDED;
}

enum quarantine_decision_result quarantine_decide(struct commit_pipeline *p, struct store *s,
                                                  const uint8_t hash[STEMEDB_HASH_LEN],
                                                  bool approve, struct quarantine_entry *entry)
{
	struct decision d = {.store = s,
	                     .hash = hash,
	                     .approve = approve,
	                     .entry = entry,
	                     .result = QUARANTINE_FAILED};

	commit_run_exclusive(p, decide_exclusive, &d);
	return d.result;
}
