#ifndef STEMEDB_QUARANTINE_H
#define STEMEDB_QUARANTINE_H

/* Admin operations on the quarantine: listing the entries and deciding on one. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "commit.h"
#include "defense.h"
#include "store.h"

#define QUARANTINE_LIST_DEFAULT 100
#define QUARANTINE_LIST_MAX     1000

struct quarantine_filter {
	bool has_agent;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	bool has_reason;
	enum defense_reason reason;
	enum quarantine_status status;
	size_t limit;
	bool has_after;
	uint8_t after[STEMEDB_HASH_LEN]; /* resume after this hash */
};

struct quarantine_listed {
	uint8_t hash[STEMEDB_HASH_LEN];
	struct quarantine_entry entry;
};

struct quarantine_agent_count {
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	uint64_t count;
};

struct quarantine_page {
	struct quarantine_listed *items;
	size_t count;
	bool more; /* entries past the last item match too */
	struct quarantine_agent_count *agents;
	size_t agent_count;
	uint64_t total;
};

/* Lists the entries that match filter in hash order, up to filter->limit after
 * filter->after, and counts every matching entry per agent. The count scans all
 * entries of the quarantine, so it costs one pass over them per call. */
enum store_result quarantine_list(struct store *s, const struct quarantine_filter *filter,
                                  struct quarantine_page *page);
void quarantine_page_free(struct quarantine_page *page);

enum quarantine_decision_result {
	QUARANTINE_DECIDED = 0,
	QUARANTINE_NOT_FOUND,
	QUARANTINE_CONFLICT, /* decided before: entry has the earlier decision */
	QUARANTINE_FAILED,
};

/* Approves (writes the assertion's index keys) or rejects a pending entry. Runs on the
 * commit writer thread, so no group or co-signature runs meanwhile, and syncs RocksDB's
 * WAL before returning. entry receives the entry after the decision. */
enum quarantine_decision_result quarantine_decide(struct commit_pipeline *p, struct store *s,
                                                  const uint8_t hash[STEMEDB_HASH_LEN],
                                                  bool approve, struct quarantine_entry *entry);

#endif
