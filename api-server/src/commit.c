/* Group commit: one writer thread turns every queued request into WAL records, syncs
 * them once per group and applies them to the store with the new WAL cursor. Start-up
 * replays the records that the store has not applied yet. docs/storage.md explains why
 * replay is idempotent and when WAL segments are deleted. */

#include "commit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stemedb/log.h"
#include "stemedb/metrics.h"
#include "wal.h"

/* Replay applies records to the store in batches of this many. */
#define COMMIT_REPLAY_BATCH 1000

struct commit_metrics {
	struct histogram *fsync_latency;
	struct histogram *batch_size;
	struct metric *writes;
	struct metric *bytes_written;
	struct metric_family *write_errors;
	struct metric *segments;
	struct histogram *recovery_duration;
	struct metric *rotations;
	struct metric *ingested;
};

static struct commit_metrics metrics;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

/* A set of hashes for one group, so that a hash seen twice is written once. Open
 * addressing over a power-of-two table that is at least twice the group size. */
struct hash_set {
	const uint8_t **slots;
	size_t mask;
};

struct commit_pipeline {
	struct commit_options options;
	char *wal_dir;
	struct store *store;
	struct wal *wal;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct commit_request *head; /* queue, guarded by lock */
	struct commit_request *tail;
	bool stopping;

	/* Writer thread state. */
	atomic_bool healthy;
	bool unsynced; /* eventual mode: records written since the last sync */
	struct timespec next_sync;
	struct hlc_stamp last_hlc;
	uint64_t rotations_seen;
	struct store_batch *batch;
	struct buf envelopes;
	struct defense_window window; /* signatures of the group being applied */

	/* Read by commit_get_stats from any thread. */
	_Atomic uint64_t wal_end_offset;
	_Atomic uint64_t wal_segments;
	_Atomic uint64_t wal_syncs;
	_Atomic uint64_t groups;
	_Atomic uint64_t records_written;
	uint64_t records_replayed;
	double recovery_seconds;
};

/* One request of a group that needs a new WAL record. */
struct new_record {
	struct commit_request *req;
	struct hlc_stamp hlc;
	size_t envelope_offset;
	size_t envelope_len;
	struct defense_verdict verdict;
};

static void set_err(char *err, size_t err_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_size == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

/* ---- metrics ---- */

/* The registry is not thread-safe and aborts on a second registration of a name, so
 * every pipeline of a process shares one registration. */
static void register_metrics(void)
{
	static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
	static const double recovery_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};
	static const char *const error_labels[] = {"error", NULL};

	metrics.fsync_latency = metrics_histogram(
	        "stemedb_wal_fsync_latency_seconds", "Duration of one WAL fdatasync in seconds.",
	        METRICS_LATENCY_BUCKETS, METRICS_LATENCY_BUCKET_COUNT);
	metrics.batch_size = metrics_histogram("stemedb_wal_batch_size",
	                                       "Records appended to the WAL per commit group.",
	                                       batch_bounds, sizeof(batch_bounds) / sizeof(double));
	metrics.writes =
	        metrics_counter("stemedb_wal_writes_total", "Records appended to the WAL.");
	metrics.bytes_written =
	        metrics_counter("stemedb_wal_bytes_written_total",
	                        "Bytes appended to WAL segments, record headers included.");
	metrics.write_errors = metrics_counter_family(
	        "stemedb_wal_write_errors_total",
	        "Failures of the write path by stage (write, fsync, store).", error_labels);
	metrics.segments = metrics_gauge("stemedb_wal_segments", "WAL segment files on disk.");
	metrics.recovery_duration = metrics_histogram(
	        "stemedb_wal_recovery_duration_seconds",
	        "Time to open the WAL and replay unapplied records at start-up, in seconds.",
	        recovery_bounds, sizeof(recovery_bounds) / sizeof(double));
	metrics.rotations =
	        metrics_counter("stemedb_wal_rotations_total",
	                        "WAL segments sealed because they reached the size limit.");
	metrics.ingested = metrics_counter("stemedb_assertions_ingested_total",
	                                   "New assertions made durable by this node.");
}

static void count_error(const char *stage)
{
	const char *labels[] = {stage};

	metric_inc(metrics_family_child(metrics.write_errors, labels));
}

/* ---- small helpers ---- */

static double seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Stamps are strictly increasing: the wall clock when it moved forward, otherwise the
 * previous wall time with the logical counter raised. */
static void next_hlc(struct commit_pipeline *p, struct hlc_stamp *out)
{
	uint64_t now = wall_ms();

	if (now > p->last_hlc.wall_ms) {
		p->last_hlc.wall_ms = now;
		p->last_hlc.logical = 0;
	} else if (p->last_hlc.logical == UINT32_MAX) {
		p->last_hlc.wall_ms++;
		p->last_hlc.logical = 0;
	} else {
		p->last_hlc.logical++;
	}
	memcpy(p->last_hlc.node_id, p->options.node_id, sizeof(p->last_hlc.node_id));
	*out = p->last_hlc;
}

static bool hlc_after(const struct hlc_stamp *a, const struct hlc_stamp *b)
{
	return a->wall_ms > b->wall_ms || (a->wall_ms == b->wall_ms && a->logical > b->logical);
}

static void hash_set_init(struct hash_set *set, size_t count)
{
	size_t size = 16;

	while (size < count * 2) {
		size *= 2;
	}
	set->slots = calloc(size, sizeof(*set->slots));
	if (set->slots == NULL) {
		abort();
	}
	set->mask = size - 1;
}

/* Adds hash (which must outlive the set); returns false when it was already present. */
static bool hash_set_add(struct hash_set *set, const uint8_t *hash)
{
	size_t i = (size_t)load_u64le(hash) & set->mask;

	while (set->slots[i] != NULL) {
		if (memcmp(set->slots[i], hash, STEMEDB_HASH_LEN) == 0) {
			return false;
		}
		i = (i + 1) & set->mask;
	}
	set->slots[i] = hash;
	return true;
}

static void update_wal_stats(struct commit_pipeline *p)
{
	struct wal_stats stats;

	wal_get_stats(p->wal, &stats);
	atomic_store(&p->wal_end_offset, stats.end_offset);
	atomic_store(&p->wal_segments, stats.segments);
	atomic_store(&p->wal_syncs, stats.syncs);
	atomic_store(&p->records_written, stats.records_written);
	metric_set(metrics.segments, (double)stats.segments);
}

/* ---- content defense ---- */

static bool defense_on(const struct commit_pipeline *p)
{
	return p->options.defense != NULL && p->options.defense->enabled;
}

/* Decides on one new assertion and puts it into the batch, with its index keys unless
 * it is held in quarantine. Returns false on a storage error. */
static bool put_checked_assertion(struct commit_pipeline *p, const struct assertion *a,
                                  const uint8_t *hash, const struct defense_input *input,
                                  const struct hlc_stamp *hlc, const uint8_t *envelope,
                                  size_t envelope_len, bool replay, struct defense_verdict *verdict)
{
	struct defense_input computed;
	bool quarantined;

	memset(verdict, 0, sizeof(*verdict));
	if (!defense_on(p) || a->signature_count == 0) {
		store_batch_put_assertion(p->batch, hash, a, hlc, envelope, envelope_len);
		return true;
	}
	if (input == NULL) {
		defense_prepare(a, &computed);
		input = &computed;
	}
	if (!defense_decide(p->store, p->options.defense, &p->window, a, hash, input, hlc->wall_ms,
	                    replay, p->batch, verdict))
		return false;

	quarantined = verdict->reason != DEFENSE_NONE &&
	              !(verdict->existing && verdict->status == QUARANTINE_APPROVED);
	if (quarantined)
		store_batch_put_assertion_unindexed(p->batch, hash, envelope, envelope_len);
	else
		store_batch_put_assertion(p->batch, hash, a, hlc, envelope, envelope_len);
	return true;
}

/* Counts a quarantine that the last applied batch created. */
static void count_new_quarantine(const struct defense_verdict *verdict)
{
	if (verdict->reason == DEFENSE_NONE || verdict->existing)
		return;
	defense_pending_add(1);
	defense_count_quarantined(verdict->reason);
}

/* ---- replay at start-up ---- */

struct replay_state {
	struct commit_pipeline *p;
	uint64_t cursor;   /* records below it are applied already */
	uint64_t applied;  /* offset just past the last record handled */
	uint64_t replayed; /* new assertions stored */
	size_t pending;    /* new assertions in the current batch */
	size_t batched;    /* new records of every type in the current batch */
	struct hash_set seen;
	uint8_t (*hashes)[STEMEDB_HASH_LEN];
	struct defense_verdict *verdicts; /* of the assertions in the current batch */
	bool failed;
	char *err;
	size_t err_size;
};

static bool replay_commit(struct replay_state *st)
{
	char err[256];

	store_batch_set_cursor(st->p->batch, st->applied);
	if (store_batch_commit(st->p->store, st->p->batch, st->pending, err, sizeof(err)) !=
	    STORE_OK) {
		set_err(st->err, st->err_size, "replaying the WAL into the store failed: %s", err);
		return false;
	}

	for (size_t i = 0; i < st->batched; i++)
		count_new_quarantine(&st->verdicts[i]);
	memset(st->verdicts, 0, COMMIT_REPLAY_BATCH * sizeof(*st->verdicts));
	defense_window_clear(&st->p->window);
	st->replayed += st->pending;
	st->pending = 0;
	st->batched = 0;
	store_batch_clear(st->p->batch);
	memset(st->seen.slots, 0, (st->seen.mask + 1) * sizeof(*st->seen.slots));
	return true;
}

/* Stores one logged assertion unless the store or this replay batch has it already. */
static bool replay_assertion(struct replay_state *st, const struct assertion *a,
                             const struct hlc_stamp *hlc, const uint8_t *payload, size_t len)
{
	uint8_t *hash = st->hashes[st->batched];
	enum store_result has;

	if (!assertion_hash(a, hash)) {
		set_err(st->err, st->err_size, "hashing a logged assertion during replay failed");
		return false;
	}
	has = store_has_assertion(st->p->store, hash);
	if (has == STORE_ERROR) {
		set_err(st->err, st->err_size, "reading the store during WAL replay failed");
		return false;
	}
	if (has == STORE_OK || !hash_set_add(&st->seen, hash)) {
		return true;
	}

	if (!put_checked_assertion(st->p, a, hash, NULL, hlc, payload, len, true,
	                           &st->verdicts[st->batched])) {
		set_err(st->err, st->err_size,
		        "reading the content defense state during WAL replay failed");
		return false;
	}
	st->pending++;
	st->batched++;
	return true;
}

/* Stores one logged vote, epoch, co-signature, source or alias unless the store or this
 * replay batch has it already. */
static bool replay_record(struct replay_state *st, uint64_t offset, const uint8_t *payload,
                          size_t len)
{
	uint8_t *id = st->hashes[st->batched];
	struct record r;
	struct hlc_stamp hlc;
	enum store_result has;
	bool ok = false;

	record_init(&r, 0);
	if (!record_decode_envelope(payload, len, &r, &hlc) || !record_id(&r, id)) {
		set_err(st->err, st->err_size,
		        "WAL record at offset %" PRIu64
		        " in %s has a valid checksum but an invalid "
		        "record envelope (%zu bytes); restore the node as described in "
		        "docs/operations/restore.md",
		        offset, st->p->wal_dir, len);
		goto done;
	}
	if (hlc_after(&hlc, &st->p->last_hlc))
		st->p->last_hlc = hlc;
	ok = true;
	if (offset < st->cursor)
		goto done;

	has = store_has_record(st->p->store, r.type, id);
	if (has == STORE_ERROR) {
		set_err(st->err, st->err_size, "reading the store during WAL replay failed");
		ok = false;
		goto done;
	}
	if (has == STORE_NOT_FOUND && hash_set_add(&st->seen, id)) {
		store_batch_put_record(st->p->store, st->p->batch, id, &r, payload, len);
		st->batched++;
	}

done:
	record_free(&r);
	return ok;
}

static bool on_replay_record(void *ctx, uint64_t offset, uint64_t next_offset, uint8_t type,
                             const uint8_t *payload, size_t payload_len)
{
	struct replay_state *st = ctx;
	struct assertion a;
	struct hlc_stamp hlc;
	bool ok = true;

	if (record_type_name(type) != NULL) {
		/* A co-signature rewrites its assertion, which must be in the store first. */
		if (type == STEMEDB_RECORD_COSIGNATURE && st->batched > 0 && !replay_commit(st)) {
			st->failed = true;
			return false;
		}
		ok = replay_record(st, offset, payload, payload_len);
		st->applied = offset >= st->cursor ? next_offset : st->applied;
		if (ok && st->batched == COMMIT_REPLAY_BATCH)
			ok = replay_commit(st);
		st->failed = !ok;
		return ok;
	}
	if (type != STEMEDB_RECORD_ASSERTION) {
		log_warn("WAL record at offset %" PRIu64 " has unknown type %u; skipping it",
		         offset, type);
		st->applied = next_offset > st->applied ? next_offset : st->applied;
		return true;
	}

	assertion_init(&a);
	if (!assertion_decode_envelope(payload, payload_len, &a, &hlc)) {
		set_err(st->err, st->err_size,
		        "WAL record at offset %" PRIu64
		        " in %s has a valid checksum but an invalid "
		        "assertion envelope (%zu bytes); restore the node as described in "
		        "docs/operations/restore.md",
		        offset, st->p->wal_dir, payload_len);
		ok = false;
		goto done;
	}
	if (hlc_after(&hlc, &st->p->last_hlc)) {
		st->p->last_hlc = hlc;
	}
	if (offset < st->cursor) {
		goto done;
	}

	ok = replay_assertion(st, &a, &hlc, payload, payload_len);
	st->applied = next_offset;
	if (ok && st->batched == COMMIT_REPLAY_BATCH) {
		ok = replay_commit(st);
	}

done:
	assertion_free(&a);
	st->failed = !ok;
	return ok;
}

/* Brings the WAL and the store cursor into line before replay. */
static bool reconcile_cursor(struct commit_pipeline *p, uint64_t cursor, char *err, size_t err_size)
{
	struct wal_stats stats;

	wal_get_stats(p->wal, &stats);
	if (cursor < stats.first_offset) {
		set_err(err, err_size,
		        "the store has applied the WAL up to offset %" PRIu64 " but the oldest "
		        "segment in %s starts at %" PRIu64 ", so logged records are missing; "
		        "restore the node as described in docs/operations/restore.md",
		        cursor, p->wal_dir, stats.first_offset);
		return false;
	}
	if (cursor <= stats.end_offset) {
		return true;
	}

	/* Eventual durability acknowledges before the sync, so after a power loss the store
	 * can hold flushed records whose WAL tail is gone. Every record left in the log is
	 * below the cursor, so it is applied already and the log can restart there. */
	log_warn("the WAL in %s ends at offset %" PRIu64 " but the store has applied records up "
	         "to %" PRIu64 "; starting a new segment at the store's cursor",
	         p->wal_dir, stats.end_offset, cursor);
	if (wal_restart_at(p->wal, cursor) != WAL_OK) {
		set_err(err, err_size, "cannot restart the WAL in %s at offset %" PRIu64,
		        p->wal_dir, cursor);
		return false;
	}
	return true;
}

static bool replay_wal(struct commit_pipeline *p, char *err, size_t err_size)
{
	struct replay_state st = {.p = p, .err = err, .err_size = err_size};
	struct wal_stats stats;
	uint64_t from;
	bool ok = false;

	if (store_get_cursor(p->store, &st.cursor) != STORE_OK) {
		set_err(err, err_size, "cannot read the WAL cursor from the store");
		return false;
	}
	if (!reconcile_cursor(p, st.cursor, err, err_size)) {
		return false;
	}

	/* Start at the last record even when it is applied, to seed the HLC past it. */
	wal_get_stats(p->wal, &stats);
	from = stats.last_record_offset < st.cursor ? stats.last_record_offset : st.cursor;
	st.applied = st.cursor;
	hash_set_init(&st.seen, COMMIT_REPLAY_BATCH);
	st.hashes = malloc(COMMIT_REPLAY_BATCH * sizeof(*st.hashes));
	st.verdicts = calloc(COMMIT_REPLAY_BATCH, sizeof(*st.verdicts));
	if (st.hashes == NULL || st.verdicts == NULL) {
		abort();
	}

	if (wal_replay(p->wal, from, on_replay_record, &st, err, err_size) != WAL_OK || st.failed) {
		goto done;
	}
	if (st.applied > st.cursor && !replay_commit(&st)) {
		goto done;
	}
	p->records_replayed = st.replayed;
	ok = true;

done:
	free(st.seen.slots);
	free(st.hashes);
	free(st.verdicts);
	defense_window_clear(&p->window);
	store_batch_clear(p->batch);
	return ok;
}

/* Flushes the store and removes the sealed segments it no longer needs. */
static void trim_wal(struct commit_pipeline *p)
{
	char err[256];
	uint64_t cursor;
	size_t removed = 0;

	if (store_flush(p->store, err, sizeof(err)) != STORE_OK) {
		log_error("keeping every WAL segment because the store flush failed: %s", err);
		count_error("store");
		return;
	}
	if (store_get_cursor(p->store, &cursor) != STORE_OK) {
		return;
	}
	/* A failed directory sync inside puts the WAL into its failed state, so the next
	 * append fails the group and the pipeline turns unhealthy there. */
	if (wal_delete_applied(p->wal, cursor, &removed) != WAL_OK) {
		count_error("segment_delete");
	}
	update_wal_stats(p);
}

/* ---- the writer ---- */

static void fail_group(struct commit_pipeline *p, struct commit_request *head, const char *stage)
{
	if (stage != NULL) {
		count_error(stage);
		atomic_store(&p->healthy, false);
		log_error("the write path is unhealthy after a %s failure; every later write "
		          "fails until the node restarts",
		          stage);
	}
	for (struct commit_request *r = head; r != NULL; r = r->next) {
		r->status = COMMIT_FAILED;
	}
}

/* Sorts the group into existing and new requests; encodes the new ones. */
static size_t classify_group(struct commit_pipeline *p, struct commit_request *head,
                             struct new_record *out)
{
	struct hash_set seen;
	size_t count = 0;
	size_t fresh = 0;

	for (struct commit_request *r = head; r != NULL; r = r->next) {
		count++;
	}
	hash_set_init(&seen, count);
	buf_reset(&p->envelopes);

	for (struct commit_request *r = head; r != NULL; r = r->next) {
		enum store_result has = STORE_NOT_FOUND;

		r->status = COMMIT_EXISTS;
		if (hash_set_add(&seen, r->hash)) {
			has = r->record != NULL
			              ? store_has_record(p->store, r->record->type, r->hash)
			              : store_has_assertion(p->store, r->hash);
		} else {
			continue;
		}
		if (has == STORE_ERROR) {
			r->status = COMMIT_FAILED;
			continue;
		}
		if (has == STORE_OK) {
			continue;
		}

		struct new_record *n = &out[fresh++];

		n->req = r;
		next_hlc(p, &n->hlc);
		n->envelope_offset = p->envelopes.len;
		if (!(r->record != NULL
		              ? record_encode_envelope(r->record, &n->hlc, &p->envelopes)
		              : assertion_encode_envelope(&r->assertion, &n->hlc, &p->envelopes))) {
			/* Only an unvalidated field length can fail here; drop the partial bytes.
			 */
			log_error("encoding the envelope of a submitted assertion failed; it was "
			          "not validated before submission");
			p->envelopes.len = n->envelope_offset;
			r->status = COMMIT_FAILED;
			fresh--;
			continue;
		}
		n->envelope_len = p->envelopes.len - n->envelope_offset;
	}

	free(seen.slots);
	return fresh;
}

static bool append_group(struct commit_pipeline *p, struct new_record *items, size_t count,
                         uint64_t *end_offset)
{
	struct wal_record *records = malloc(count * sizeof(*records));
	enum wal_result rc;

	if (records == NULL) {
		abort();
	}
	for (size_t i = 0; i < count; i++) {
		records[i].type = items[i].req->record != NULL ? items[i].req->record->type
		                                               : STEMEDB_RECORD_ASSERTION;
		records[i].payload = p->envelopes.data + items[i].envelope_offset;
		records[i].payload_len = items[i].envelope_len;
	}
	rc = wal_append(p->wal, records, count, end_offset);
	free(records);
	return rc == WAL_OK;
}

static bool sync_wal(struct commit_pipeline *p)
{
	struct timespec start;
	bool ok;

	clock_gettime(CLOCK_MONOTONIC, &start);
	ok = wal_sync(p->wal) == WAL_OK;
	if (ok) {
		histogram_observe(metrics.fsync_latency, seconds_since(&start));
		p->unsynced = false;
	}
	return ok;
}

static bool apply_group(struct commit_pipeline *p, struct new_record *items, size_t count,
                        uint64_t end_offset)
{
	char err[256];
	uint64_t assertions = 0;

	store_batch_clear(p->batch);
	defense_window_clear(&p->window);
	for (size_t i = 0; i < count; i++) {
		struct commit_request *r = items[i].req;
		const uint8_t *envelope = p->envelopes.data + items[i].envelope_offset;

		if (r->record != NULL) {
			store_batch_put_record(p->store, p->batch, r->hash, r->record, envelope,
			                       items[i].envelope_len);
			continue;
		}
		if (!put_checked_assertion(p, &r->assertion, r->hash, r->defense, &items[i].hlc,
		                           envelope, items[i].envelope_len, false,
		                           &items[i].verdict))
			return false;
		assertions++;
	}
	store_batch_set_cursor(p->batch, end_offset);
	return store_batch_commit(p->store, p->batch, assertions, err, sizeof(err)) == STORE_OK;
}

/* Hands the stored records to the on_ingested hook. Records follow each other in the
 * WAL from first_offset on, each taking its header and payload in offset space. */
static void report_ingested(struct commit_pipeline *p, const struct new_record *items, size_t count,
                            uint64_t first_offset)
{
	struct commit_ingested *out;
	uint64_t offset = first_offset;

	if (p->options.on_ingested == NULL) {
		return;
	}
	out = malloc(count * sizeof(*out));
	if (out == NULL) {
		abort();
	}
	size_t assertions = 0;

	/* Subscribers follow assertions only, but every record takes its place in the log. */
	for (size_t i = 0; i < count; i++) {
		if (items[i].req->record == NULL && items[i].verdict.reason == DEFENSE_NONE) {
			out[assertions].hash = items[i].req->hash;
			out[assertions].hlc = items[i].hlc;
			out[assertions].wal_offset = offset;
			out[assertions].envelope_bytes = items[i].envelope_len;
			assertions++;
		}
		offset += WAL_RECORD_HEADER_SIZE + items[i].envelope_len;
	}
	if (assertions > 0)
		p->options.on_ingested(p->options.on_ingested_ctx, out, assertions);
	free(out);
}

/* Writes, syncs and applies the new records of one group. Returns the stage that
 * failed, or NULL. */
static const char *write_group(struct commit_pipeline *p, struct new_record *items, size_t count)
{
	struct wal_stats before;
	struct wal_stats after;
	uint64_t end_offset;

	wal_get_stats(p->wal, &before);
	if (!append_group(p, items, count, &end_offset)) {
		return "write";
	}
	if (p->options.durability == DURABILITY_IMMEDIATE && !sync_wal(p)) {
		return "fsync";
	}
	p->unsynced = p->options.durability == DURABILITY_EVENTUAL;
	if (!apply_group(p, items, count, end_offset)) {
		return "store";
	}

	report_ingested(p, items, count, before.end_offset);
	wal_get_stats(p->wal, &after);
	histogram_observe(metrics.batch_size, (double)count);
	metric_add(metrics.writes, (double)count);
	metric_add(metrics.bytes_written, (double)(after.bytes_written - before.bytes_written));
	for (size_t i = 0; i < count; i++) {
		items[i].req->status = COMMIT_CREATED;
		items[i].req->quarantine_reason = items[i].verdict.reason;
		count_new_quarantine(&items[i].verdict);
		if (items[i].req->record == NULL)
			metric_inc(metrics.ingested);
	}
	return NULL;
}

static void after_rotation(struct commit_pipeline *p)
{
	struct wal_stats stats;

	wal_get_stats(p->wal, &stats);
	if (stats.rotations == p->rotations_seen) {
		return;
	}
	metric_add(metrics.rotations, (double)(stats.rotations - p->rotations_seen));
	p->rotations_seen = stats.rotations;

	/* NOTE: the flush runs on the writer thread, so writes wait for it once per sealed
	 * segment (every 64 MiB of log by default). */
	trim_wal(p);
}

static void complete_all(struct commit_request *head)
{
	while (head != NULL) {
		struct commit_request *next = head->next;

		/* The owner may free the request inside on_complete. */
		head->on_complete(head);
		head = next;
	}
}

/* Moves the commit_run_exclusive requests out of *head, in order, into the result. */
static struct commit_request *take_exclusive(struct commit_request **head)
{
	struct commit_request *exclusive = NULL, **exclusive_tail = &exclusive;
	struct commit_request **link = head;

	while (*link != NULL) {
		struct commit_request *r = *link;

		if (r->exclusive == NULL) {
			link = &r->next;
			continue;
		}
		*link = r->next;
		r->next = NULL;
		*exclusive_tail = r;
		exclusive_tail = &r->next;
	}
	return exclusive;
}

static void process_writes(struct commit_pipeline *p, struct commit_request *head)
{
	size_t count = 0;
	struct new_record *items;
	size_t fresh;

	if (!atomic_load(&p->healthy)) {
		fail_group(p, head, NULL);
		complete_all(head);
		return;
	}
	for (struct commit_request *r = head; r != NULL; r = r->next) {
		count++;
	}
	items = calloc(count, sizeof(*items));
	if (items == NULL) {
		abort();
	}

	fresh = classify_group(p, head, items);
	if (fresh > 0) {
		const char *failed_stage = write_group(p, items, fresh);

		if (failed_stage != NULL) {
			fail_group(p, head, failed_stage);
		}
		after_rotation(p);
	}

	free(items);
	atomic_fetch_add(&p->groups, 1);
	update_wal_stats(p);
	complete_all(head);
}

static void process_group(struct commit_pipeline *p, struct commit_request *head)
{
	struct commit_request *exclusive = take_exclusive(&head);

	if (head != NULL)
		process_writes(p, head);
	/* Exclusive functions run after the writes queued with them, never during a group. */
	while (exclusive != NULL) {
		struct commit_request *next = exclusive->next;

		exclusive->exclusive(exclusive->exclusive_ctx);
		exclusive->on_complete(exclusive);
		exclusive = next;
	}
}

struct exclusive_wait {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	bool done;
};

static void on_exclusive_done(struct commit_request *req)
{
	struct exclusive_wait *wait = req->owner;

	pthread_mutex_lock(&wait->lock);
	wait->done = true;
	pthread_cond_signal(&wait->done_cond);
	pthread_mutex_unlock(&wait->lock);
}

void commit_run_exclusive(struct commit_pipeline *p, void (*fn)(void *ctx), void *ctx)
{
	struct exclusive_wait wait = {.done = false};
	struct commit_request req;

	memset(&req, 0, sizeof(req));
	pthread_mutex_init(&wait.lock, NULL);
	pthread_cond_init(&wait.done_cond, NULL);
	req.exclusive = fn;
	req.exclusive_ctx = ctx;
	req.owner = &wait;
	req.on_complete = on_exclusive_done;
	commit_submit(p, &req);

	pthread_mutex_lock(&wait.lock);
	while (!wait.done)
		pthread_cond_wait(&wait.done_cond, &wait.lock);
	pthread_mutex_unlock(&wait.lock);
	pthread_cond_destroy(&wait.done_cond);
	pthread_mutex_destroy(&wait.lock);
}

static void schedule_sync(struct commit_pipeline *p)
{
	uint64_t ns = p->options.sync_interval_ms * 1000000u;

	clock_gettime(CLOCK_MONOTONIC, &p->next_sync);
	p->next_sync.tv_sec += (time_t)(ns / 1000000000u);
	p->next_sync.tv_nsec += (long)(ns % 1000000000u);
	if (p->next_sync.tv_nsec >= 1000000000L) {
		p->next_sync.tv_sec++;
		p->next_sync.tv_nsec -= 1000000000L;
	}
}

/* Eventual mode: syncs when the interval has passed since the last periodic sync. */
static void periodic_sync(struct commit_pipeline *p)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < p->next_sync.tv_sec ||
	    (now.tv_sec == p->next_sync.tv_sec && now.tv_nsec < p->next_sync.tv_nsec)) {
		return;
	}
	if (p->unsynced && atomic_load(&p->healthy) && !sync_wal(p)) {
		fail_group(p, NULL, "fsync");
	}
	schedule_sync(p);
	update_wal_stats(p);
}

/* Waits for requests; in eventual mode wakes up at the next sync deadline. */
static struct commit_request *take_queue(struct commit_pipeline *p, bool *stopping)
{
	struct commit_request *head;

	pthread_mutex_lock(&p->lock);
	while (p->head == NULL && !p->stopping) {
		if (p->options.durability == DURABILITY_EVENTUAL && p->unsynced) {
			if (pthread_cond_timedwait(&p->wake, &p->lock, &p->next_sync) ==
			    ETIMEDOUT) {
				break;
			}
		} else {
			pthread_cond_wait(&p->wake, &p->lock);
		}
	}
	head = p->head;
	p->head = NULL;
	p->tail = NULL;
	*stopping = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return head;
}

static void *writer_main(void *arg)
{
	struct commit_pipeline *p = arg;

	for (;;) {
		bool stopping;
		struct commit_request *head = take_queue(p, &stopping);

		if (head != NULL) {
			process_group(p, head);
		}
		if (p->options.durability == DURABILITY_EVENTUAL) {
			periodic_sync(p);
		}
		if (head == NULL && stopping) {
			break;
		}
	}

	if (p->unsynced && atomic_load(&p->healthy) && !sync_wal(p)) {
		fail_group(p, NULL, "fsync");
	}
	update_wal_stats(p);
	return NULL;
}

/* ---- public interface ---- */

static bool open_wal(struct commit_pipeline *p, char *err, size_t err_size)
{
	struct wal_options options = {
	        .dir = p->wal_dir,
	        .segment_bytes = p->options.segment_bytes,
	};

	/* A new WAL starts at the store's cursor, in case its old segments were removed. */
	if (store_get_cursor(p->store, &options.initial_offset) != STORE_OK) {
		set_err(err, err_size, "cannot read the WAL cursor from the store");
		return false;
	}
	if (wal_open(&options, &p->wal, err, err_size) != WAL_OK) {
		return false;
	}
	wal_set_retention(p->wal, p->options.segment_retention, p->options.segment_retention_ctx);
	return true;
}

static bool init_thread_state(struct commit_pipeline *p, char *err, size_t err_size)
{
	pthread_condattr_t attr;
	int rc;

	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &attr);
	pthread_condattr_destroy(&attr);
	schedule_sync(p);

	rc = pthread_create(&p->thread, NULL, writer_main, p);
	if (rc != 0) {
		set_err(err, err_size, "pthread_create() of the commit writer failed: %s",
		        strerror(rc));
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		return false;
	}
	return true;
}

static void free_pipeline(struct commit_pipeline *p)
{
	wal_close(p->wal);
	store_batch_free(p->batch);
	buf_free(&p->envelopes);
	defense_window_free(&p->window);
	free(p->wal_dir);
	free(p);
}

struct commit_pipeline *commit_start(const struct commit_options *options, struct store *store,
                                     char *err, size_t err_size)
{
	struct commit_pipeline *p = calloc(1, sizeof(*p));
	struct timespec start;

	if (p == NULL) {
		abort();
	}
	pthread_once(&metrics_once, register_metrics);
	clock_gettime(CLOCK_MONOTONIC, &start);
	p->options = *options;
	p->wal_dir = strdup(options->wal_dir);
	p->options.wal_dir = p->wal_dir;
	if (p->options.sync_interval_ms == 0) {
		p->options.sync_interval_ms = 100;
	}
	p->store = store;
	p->batch = store_batch_new();
	buf_init(&p->envelopes);
	defense_window_init(&p->window);
	atomic_store(&p->healthy, true);

	if (!open_wal(p, err, err_size) || !replay_wal(p, err, err_size)) {
		goto fail;
	}
	trim_wal(p);
	p->recovery_seconds = seconds_since(&start);
	histogram_observe(metrics.recovery_duration, p->recovery_seconds);
	update_wal_stats(p);
	log_info("WAL recovery in %s replayed %" PRIu64 " new assertions in %.3f s; the log ends "
	         "at offset %" PRIu64 " in %" PRIu64 " segments",
	         p->wal_dir, p->records_replayed, p->recovery_seconds,
	         atomic_load(&p->wal_end_offset), atomic_load(&p->wal_segments));

	if (!init_thread_state(p, err, err_size)) {
		goto fail;
	}
	return p;

fail:
	log_error("the commit pipeline did not start: %s", err != NULL ? err : "see above");
	free_pipeline(p);
	return NULL;
}

void commit_submit(struct commit_pipeline *p, struct commit_request *head)
{
	struct commit_request *last = head;

	if (head == NULL) {
		return;
	}
	while (last->next != NULL) {
		last = last->next;
	}

	pthread_mutex_lock(&p->lock);
	if (p->tail != NULL) {
		p->tail->next = head;
	} else {
		p->head = head;
	}
	p->tail = last;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

void commit_stop(struct commit_pipeline *p)
{
	if (p == NULL) {
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);

	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	log_info("the commit pipeline stopped at WAL offset %" PRIu64,
	         atomic_load(&p->wal_end_offset));
	free_pipeline(p);
}

bool commit_healthy(struct commit_pipeline *p)
{
	return atomic_load(&p->healthy);
}

void commit_get_stats(struct commit_pipeline *p, struct commit_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->wal_end_offset = atomic_load(&p->wal_end_offset);
	out->wal_segments = atomic_load(&p->wal_segments);
	out->records_replayed = p->records_replayed;
	out->recovery_seconds = p->recovery_seconds;
	out->wal_syncs = atomic_load(&p->wal_syncs);
	out->groups = atomic_load(&p->groups);
	out->records_written = atomic_load(&p->records_written);
}
