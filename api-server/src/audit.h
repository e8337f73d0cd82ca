#ifndef STEMEDB_AUDIT_H
#define STEMEDB_AUDIT_H

/* Query audit: every /v1/query, /v1/skeptic and /v1/layered call leaves a record of its
 * parameters, caller, winner and contributing assertions in the "audit" column family.
 * Handlers encode the record as they go and only queue it. A writer thread
 * stores the queue in batches every 100 ms, so a crash can lose the records of the last
 * interval. The same thread deletes records older than the retention. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stemedb/assertion.h"
#include "stemedb/buf.h"

struct store;
struct audit_log;

#define AUDIT_ID_LEN           16
#define AUDIT_ID_HEX_LEN       (2 * AUDIT_ID_LEN)
#define AUDIT_CONTRIBUTORS_MAX 100

enum audit_result { AUDIT_OK = 0, AUDIT_NOT_FOUND, AUDIT_ERROR };

/* retention_seconds 0 turns auditing off: audit_log_start then returns NULL, and every
 * other function accepts that NULL. Returns NULL with a message in err on failure too. */
struct audit_log *audit_log_start(struct store *store, uint64_t retention_seconds, char *err,
                                  size_t err_size);
/* Stores what is queued, then stops the writer thread. */
void audit_log_stop(struct audit_log *log);
bool audit_log_enabled(const struct audit_log *log);

enum audit_entry_stage {
	AUDIT_ENTRY_EMPTY = 0,
	AUDIT_ENTRY_PARAMETERS,   /* after audit_entry_init */
	AUDIT_ENTRY_CONTRIBUTORS, /* after audit_entry_set_winner */
};

/* One audited call. The handler fills it in this order: audit_entry_init,
 * audit_entry_add_parameter per query parameter, audit_entry_set_winner, audit_entry_add
 * per contributing assertion, audit_log_submit. Each step appends to the encoded record
 * (binary, see audit.c), and calls out of this order are bugs that abort the process. */
struct audit_entry {
	char id_hex[AUDIT_ID_HEX_LEN + 1]; /* set by audit_entry_init */
	uint8_t id[AUDIT_ID_LEN];
	uint64_t time_ms; /* Unix milliseconds */
	bool has_agent;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	size_t contributor_count; /* every contributor, also those past the stored 100 */
	enum audit_entry_stage stage;
	size_t parameter_count;
	size_t flags_at; /* offsets into record of fields filled in later */
	size_t parameter_count_at;
	size_t counts_at;
	struct buf record; /* the encoded record so far, owned */
};

/* Draws an id, stamps the time and starts the record with the endpoint and the agent
 * (NULL for an anonymous call). */
void audit_entry_init(struct audit_entry *e, const char *endpoint,
                      const uint8_t agent[STEMEDB_AGENT_ID_LEN]);
/* Adds one query parameter; value is UTF-8 of value_len bytes. */
void audit_entry_add_parameter(struct audit_entry *e, const char *name, const char *value,
                               size_t value_len);
/* Ends the parameters and records the winner (NULL when there is none). */
void audit_entry_set_winner(struct audit_entry *e, const uint8_t winner[STEMEDB_HASH_LEN]);
/* Adds one contributing assertion; past AUDIT_CONTRIBUTORS_MAX only the count grows. */
void audit_entry_add(struct audit_entry *e, const uint8_t hash[STEMEDB_HASH_LEN], double weight);
/* Completes the record and queues it or, when the queue is full or auditing is off,
 * drops it. The entry is empty afterwards. */
void audit_log_submit(struct audit_log *log, struct audit_entry *e);
void audit_entry_free(struct audit_entry *e);

/* Reads one record as JSON (new reference in *out). */
enum audit_result audit_log_get(struct audit_log *log, const uint8_t id[AUDIT_ID_LEN],
                                json_t **out);

struct audit_filter {
	bool has_agent;
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	uint64_t from_ms; /* inclusive */
	uint64_t to_ms;   /* inclusive */
	size_t limit;
	const uint8_t *cursor; /* index key of the last record of the previous page */
	size_t cursor_len;
};

/* Appends the matching records, newest first, to records. Sets *next (hex, allocated)
 * to the cursor of the next page, or NULL on the last page. */
enum audit_result audit_log_list(struct audit_log *log, const struct audit_filter *filter,
                                 json_t *records, char **next);

/* Deletes the records older than now_ms minus the retention; returns how many. */
size_t audit_log_expire(struct audit_log *log, uint64_t now_ms);

#endif
