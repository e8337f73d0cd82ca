#ifndef STEMEDB_COMMIT_H
#define STEMEDB_COMMIT_H

/* The write path of stemedb-api: one writer thread takes every queued request,
 * drops duplicates, appends the new records to the WAL in one write, syncs once for
 * the whole group (durability "immediate"), applies them to RocksDB in one batch with
 * the WAL cursor, and then completes each request. A lone writer never waits for
 * company: the thread takes whatever is queued the moment it is free. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "defense.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/records.h"
#include "store.h"

enum durability { DURABILITY_IMMEDIATE = 0, DURABILITY_EVENTUAL };

enum commit_status {
	COMMIT_CREATED = 0, /* durable and readable on this node */
	COMMIT_EXISTS,      /* already stored: nothing was written */
	COMMIT_FAILED,      /* not durable: WAL or storage failure, see the log */
};

/* One assertion to store. The caller fills assertion and hash (signatures already
 * verified) and on_complete, then submits it. on_complete runs on the writer thread,
 * so it must only hand the request back to its owner (for instance wake an event loop). */
struct commit_request {
	struct assertion assertion;
	/* A vote, epoch, co-signature, source or alias to store instead of the assertion,
	 * with its id in hash and its signers verified; NULL for an assertion. */
	struct record *record;
	uint8_t hash[STEMEDB_HASH_LEN];
	/* Content defense input computed by the HTTP worker (defense_prepare); NULL lets
	 * the writer compute it when content defense is on. */
	const struct defense_input *defense;
	enum commit_status status;
	/* Set with COMMIT_CREATED: DEFENSE_NONE when the assertion was indexed, else the
	 * reason it was stored in quarantine. */
	enum defense_reason quarantine_reason;
	void (*on_complete)(struct commit_request *req);
	void *owner;
	/* Set only by commit_run_exclusive: a function to run instead of a write. */
	void (*exclusive)(void *ctx);
	void *exclusive_ctx;
	struct commit_request *next; /* queue link, owned by the pipeline while queued */
};

/* One newly stored assertion, reported to commit_options.on_ingested. */
struct commit_ingested {
	const uint8_t *hash; /* STEMEDB_HASH_LEN bytes, valid only during the call */
	struct hlc_stamp hlc;
	uint64_t wal_offset;     /* global WAL offset of the record */
	uint64_t envelope_bytes; /* size of the stored envelope */
};

struct commit_options {
	const char *wal_dir;
	uint64_t segment_bytes; /* WAL segment size before rotation */
	enum durability durability;
	uint64_t sync_interval_ms; /* eventual mode: background sync period */
	uint8_t node_id[16];       /* HLC node id */
	/* Optional: holds back the deletion of applied, sealed WAL segments until it returns
	 * true (a WAL archiver ships them first). NULL lets every applied segment go. */
	bool (*segment_retention)(void *ctx, const char *path, uint64_t base_offset,
	                          uint64_t end_offset);
	void *segment_retention_ctx;
	/* Optional: called on the writer thread after each group is durable and applied,
	 * before the requests complete, with every assertion the group stored. It must not
	 * block (for instance it queues events for IPC subscribers). */
	void (*on_ingested)(void *ctx, const struct commit_ingested *items, size_t count);
	void *on_ingested_ctx;
	/* Content defense settings, read by the writer and by replay; NULL turns the
	 * checks off. */
	const struct defense_config *defense;
};

struct commit_pipeline;

/* Opens the WAL, replays every record past the store's cursor into the store, and
 * starts the writer thread. Returns NULL with a message in err when the WAL is
 * corrupt or cannot be opened; the message names the file and offset. */
struct commit_pipeline *commit_start(const struct commit_options *options, struct store *store,
                                     char *err, size_t err_size);

/* Queues requests (linked through ->next). Never blocks on I/O. After a fatal WAL
 * error every request completes at once with COMMIT_FAILED. */
void commit_submit(struct commit_pipeline *p, struct commit_request *head);

/* Runs fn(ctx) on the writer thread between two groups and waits for it, so that fn
 * finds no group half applied and no group runs during fn (quarantine decisions). */
void commit_run_exclusive(struct commit_pipeline *p, void (*fn)(void *ctx), void *ctx);

/* Stops accepting, finishes queued requests, syncs the WAL, joins the thread. */
void commit_stop(struct commit_pipeline *p);

/* False after an fsync or write failure: the node is unhealthy and takes no writes. */
bool commit_healthy(struct commit_pipeline *p);

struct commit_stats {
	uint64_t wal_end_offset;
	uint64_t wal_segments;
	uint64_t records_replayed; /* at start-up */
	double recovery_seconds;
	uint64_t wal_syncs;       /* fdatasync calls on WAL segments since start */
	uint64_t groups;          /* groups of requests the writer has processed */
	uint64_t records_written; /* WAL records appended since start */
};
void commit_get_stats(struct commit_pipeline *p, struct commit_stats *out);

#endif
