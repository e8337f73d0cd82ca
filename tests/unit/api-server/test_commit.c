/* Unit tests of the group-commit pipeline with a real WAL and a real RocksDB store in a
 * temporary directory. They cover concurrent writers sharing syncs, duplicates, replay
 * after a crash between the WAL write and the store apply, eventual durability, and the
 * permanent failure after a WAL error. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commit.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "store.h"
#include "wal.h"

#define WRITER_THREADS    8
#define WRITES_PER_THREAD 500

struct fixture {
	char root[64];
	char wal_dir[128];
	char db_dir[128];
	struct store *store;
	uint8_t secret_key[STEMEDB_SECRET_KEY_LEN];
};

/* A request with a completion counter, so a test can see each completion exactly once. */
struct tracked_request {
	struct commit_request req;
	atomic_int completions;
	pthread_mutex_t *lock;
	pthread_cond_t *done;
	atomic_int *remaining;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct store *open_store(const char *path)
{
	char err[512] = "";
	struct store *s = store_open(path, err, sizeof(err));

	if (s == NULL) {
		fail_msg("store_open(%s) failed: %s", path, err);
	}
	return s;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t seed[STEMEDB_SEED_LEN];
	uint8_t public_key[STEMEDB_AGENT_ID_LEN];

	if (sodium_init() < 0) {
		return -1;
	}
	strcpy(f->root, "/tmp/stemedb-test-commit-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->root);
	snprintf(f->db_dir, sizeof(f->db_dir), "%s/db", f->root);
	memset(seed, 3, sizeof(seed));
	crypto_sign_seed_keypair(public_key, f->secret_key, seed);
	f->store = open_store(f->db_dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->store);
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct commit_pipeline *start_pipeline(struct fixture *f, enum durability durability,
                                              uint64_t segment_bytes)
{
	struct commit_options options = {
	        .wal_dir = f->wal_dir,
	        .segment_bytes = segment_bytes,
	        .durability = durability,
	        .sync_interval_ms = 10,
	};
	char err[512] = "";
	struct commit_pipeline *p;

	memset(options.node_id, 0x42, sizeof(options.node_id));
	p = commit_start(&options, f->store, err, sizeof(err));
	if (p == NULL) {
		fail_msg("commit_start failed: %s", err);
	}
	return p;
}

/* Fills a signed claim whose subject and value derive from id. */
static void make_claim(struct fixture *f, struct assertion *a, uint8_t hash[STEMEDB_HASH_LEN],
                       unsigned id)
{
	char subject[32];
	char value[32];

	snprintf(subject, sizeof(subject), "subject-%u", id % 50);
	snprintf(value, sizeof(value), "value-%u", id);
	assertion_init(a);
	assertion_set_subject(a, subject, strlen(subject));
	assertion_set_predicate(a, "p", 1);
	object_set_text(&a->object, OBJECT_TEXT, value, strlen(value));
	a->confidence_micro = 500000;
	a->source_class = SOURCE_EXPERT;
	a->timestamp = 1700000000u + id;
	assert_true(assertion_hash(a, hash));
	assert_true(assertion_sign(a, hash, f->secret_key, a->timestamp));
}

static void on_complete(struct commit_request *req)
{
	struct tracked_request *t = (struct tracked_request *)req;

	atomic_fetch_add(&t->completions, 1);
	pthread_mutex_lock(t->lock);
	atomic_fetch_sub(t->remaining, 1);
	pthread_cond_broadcast(t->done);
	pthread_mutex_unlock(t->lock);
}

/* A set of tracked requests with one completion latch. */
struct request_set {
	struct tracked_request *items;
	size_t count;
	pthread_mutex_t lock;
	pthread_cond_t done;
	atomic_int remaining;
};

static void request_set_init(struct fixture *f, struct request_set *set, unsigned first_id,
                             size_t count)
{
	set->items = calloc(count, sizeof(*set->items));
	set->count = count;
	pthread_mutex_init(&set->lock, NULL);
	pthread_cond_init(&set->done, NULL);
	atomic_init(&set->remaining, 0);

	for (size_t i = 0; i < count; i++) {
		struct tracked_request *t = &set->items[i];

		make_claim(f, &t->req.assertion, t->req.hash, first_id + (unsigned)i);
		t->req.on_complete = on_complete;
		t->lock = &set->lock;
		t->done = &set->done;
		t->remaining = &set->remaining;
		atomic_init(&t->completions, 0);
	}
}

static void request_set_free(struct request_set *set)
{
	for (size_t i = 0; i < set->count; i++) {
		assertion_free(&set->items[i].req.assertion);
	}
	free(set->items);
	pthread_cond_destroy(&set->done);
	pthread_mutex_destroy(&set->lock);
}

/* Submits items [first, first + count) as one linked list and waits for all of them. */
static void submit_and_wait(struct commit_pipeline *p, struct request_set *set, size_t first,
                            size_t count)
{
	for (size_t i = first; i < first + count; i++) {
		set->items[i].req.next = i + 1 < first + count ? &set->items[i + 1].req : NULL;
	}
	atomic_fetch_add(&set->remaining, (int)count);
	commit_submit(p, &set->items[first].req);

	pthread_mutex_lock(&set->lock);
	while (atomic_load(&set->remaining) > 0) {
		pthread_cond_wait(&set->done, &set->lock);
	}
	pthread_mutex_unlock(&set->lock);
}

struct writer_args {
	struct commit_pipeline *pipeline;
	struct request_set set;
};

/* One client: each write waits for its acknowledgement before the next is sent. */
static void *writer_thread(void *arg)
{
	struct writer_args *w = arg;

	for (size_t i = 0; i < w->set.count; i++) {
		submit_and_wait(w->pipeline, &w->set, i, 1);
	}
	return NULL;
}

static void test_commit_concurrent_group(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	struct writer_args writers[WRITER_THREADS];
	pthread_t threads[WRITER_THREADS];
	struct commit_stats stats;
	const uint64_t total = WRITER_THREADS * WRITES_PER_THREAD;

	for (int t = 0; t < WRITER_THREADS; t++) {
		writers[t].pipeline = p;
		request_set_init(f, &writers[t].set, (unsigned)(t * WRITES_PER_THREAD),
		                 WRITES_PER_THREAD);
	}
	for (int t = 0; t < WRITER_THREADS; t++) {
		assert_int_equal(pthread_create(&threads[t], NULL, writer_thread, &writers[t]), 0);
	}
	for (int t = 0; t < WRITER_THREADS; t++) {
		pthread_join(threads[t], NULL);
	}

	for (int t = 0; t < WRITER_THREADS; t++) {
		for (size_t i = 0; i < WRITES_PER_THREAD; i++) {
			struct tracked_request *r = &writers[t].set.items[i];

			assert_int_equal(atomic_load(&r->completions), 1);
			assert_int_equal(r->req.status, COMMIT_CREATED);
			assert_int_equal(store_has_assertion(f->store, r->req.hash), STORE_OK);
		}
	}

	commit_get_stats(p, &stats);
	print_message("%" PRIu64 " records in %" PRIu64 " groups with %" PRIu64 " syncs\n",
	              stats.records_written, stats.groups, stats.wal_syncs);
	assert_int_equal(stats.records_written, total);
	assert_int_equal(store_assertion_count(f->store), total);
	/* Eight writers each waiting for their own acknowledgement must share syncs. */
	assert_true(stats.wal_syncs * 2 <= total);
	assert_true(stats.groups < total);

	commit_stop(p);
	for (int t = 0; t < WRITER_THREADS; t++) {
		request_set_free(&writers[t].set);
	}
}

static void test_commit_duplicates(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	struct request_set set;
	struct commit_stats stats;

	request_set_init(f, &set, 0, 5);
	/* Items 1 and 3 repeat item 0's hash, so one group contains it three times. */
	memcpy(set.items[1].req.hash, set.items[0].req.hash, STEMEDB_HASH_LEN);
	memcpy(set.items[3].req.hash, set.items[0].req.hash, STEMEDB_HASH_LEN);

	submit_and_wait(p, &set, 0, 4);
	assert_int_equal(set.items[0].req.status, COMMIT_CREATED);
	assert_int_equal(set.items[1].req.status, COMMIT_EXISTS);
	assert_int_equal(set.items[2].req.status, COMMIT_CREATED);
	assert_int_equal(set.items[3].req.status, COMMIT_EXISTS);

	/* A later group finds the stored copy. */
	memcpy(set.items[4].req.hash, set.items[2].req.hash, STEMEDB_HASH_LEN);
	submit_and_wait(p, &set, 4, 1);
	assert_int_equal(set.items[4].req.status, COMMIT_EXISTS);

	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_written, 2);
	assert_int_equal(store_assertion_count(f->store), 2);
	commit_stop(p);
	request_set_free(&set);
}

/* Appends assertions to the WAL directly, as a crash after the WAL write and before
 * the store apply leaves them. */
static void log_without_apply(struct fixture *f, struct request_set *set, size_t first,
                              size_t count)
{
	struct wal_options options = {.dir = f->wal_dir};
	struct wal *w = NULL;
	char err[256] = "";
	struct buf envelope;

	assert_int_equal(wal_open(&options, &w, err, sizeof(err)), WAL_OK);
	buf_init(&envelope);
	for (size_t i = first; i < first + count; i++) {
		struct hlc_stamp hlc = {.wall_ms = 1700000000000ull + i};
		struct wal_record record = {.type = STEMEDB_RECORD_ASSERTION};

		buf_reset(&envelope);
		assert_true(
		        assertion_encode_envelope(&set->items[i].req.assertion, &hlc, &envelope));
		record.payload = envelope.data;
		record.payload_len = envelope.len;
		assert_int_equal(wal_append(w, &record, 1, NULL), WAL_OK);
	}
	assert_int_equal(wal_sync(w), WAL_OK);
	buf_free(&envelope);
	wal_close(w);
}

static void test_commit_replay_after_crash(void **state)
{
	struct fixture *f = *state;
	struct request_set set;
	struct commit_stats stats;
	struct commit_pipeline *p;

	request_set_init(f, &set, 100, 4);
	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	submit_and_wait(p, &set, 0, 1);
	assert_int_equal(set.items[0].req.status, COMMIT_CREATED);
	commit_stop(p);

	/* Items 1 and 2 are logged but not applied; item 0 is logged a second time. */
	log_without_apply(f, &set, 1, 2);
	log_without_apply(f, &set, 0, 1);
	assert_int_equal(store_has_assertion(f->store, set.items[1].req.hash), STORE_NOT_FOUND);

	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_replayed, 2);
	assert_int_equal(store_assertion_count(f->store), 3);
	assert_int_equal(store_has_assertion(f->store, set.items[1].req.hash), STORE_OK);
	assert_int_equal(store_has_assertion(f->store, set.items[2].req.hash), STORE_OK);

	/* New writes continue after the replayed records. */
	submit_and_wait(p, &set, 3, 1);
	assert_int_equal(set.items[3].req.status, COMMIT_CREATED);
	commit_stop(p);

	store_close(f->store);
	f->store = open_store(f->db_dir);
	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_replayed, 0);
	assert_int_equal(store_assertion_count(f->store), 4);
	commit_stop(p);
	request_set_free(&set);
}

static void test_commit_eventual_mode(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_EVENTUAL, 0);
	struct request_set set;
	struct commit_stats stats;

	request_set_init(f, &set, 300, 20);
	submit_and_wait(p, &set, 0, 10);
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(set.items[i].req.status, COMMIT_CREATED);
	}
	assert_int_equal(store_assertion_count(f->store), 10);

	/* The writer syncs on its own once the 10 ms interval has passed. */
	for (int waited = 0; waited < 200; waited++) {
		commit_get_stats(p, &stats);
		if (stats.wal_syncs > 0) {
			break;
		}
		usleep(10000);
	}
	assert_true(stats.wal_syncs > 0);

	submit_and_wait(p, &set, 10, 10);
	commit_stop(p);

	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_replayed, 0);
	assert_int_equal(store_assertion_count(f->store), 20);
	commit_stop(p);
	request_set_free(&set);
}

static void test_commit_rotation_trims_wal(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_IMMEDIATE, 4096);
	struct request_set set;
	struct commit_stats stats;

	request_set_init(f, &set, 500, 200);
	for (size_t i = 0; i < 200; i += 10) {
		submit_and_wait(p, &set, i, 10);
	}
	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_written, 200);
	/* Every sealed segment has been applied and flushed, so at most the active one and
	 * the one sealed by the last group's own rotation remain. */
	assert_true(stats.wal_segments <= 2);
	commit_stop(p);

	p = start_pipeline(f, DURABILITY_IMMEDIATE, 4096);
	commit_get_stats(p, &stats);
	assert_int_equal(stats.records_replayed, 0);
	assert_int_equal(store_assertion_count(f->store), 200);
	commit_stop(p);
	request_set_free(&set);
}

static void test_commit_fails_after_wal_error(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_IMMEDIATE, 1);
	struct request_set set;
	struct commit_stats stats;
	char blocker[256];

	request_set_init(f, &set, 700, 3);
	submit_and_wait(p, &set, 0, 1);
	assert_int_equal(set.items[0].req.status, COMMIT_CREATED);

	/* Every record rotates the 1-byte segments; a directory in the way of the next
	 * segment file makes its creation fail. */
	commit_get_stats(p, &stats);
	snprintf(blocker, sizeof(blocker), "%s/%016" PRIx64 ".wal", f->wal_dir,
	         stats.wal_end_offset);
	assert_int_equal(mkdir(blocker, 0700), 0);

	submit_and_wait(p, &set, 1, 1);
	assert_int_equal(set.items[1].req.status, COMMIT_FAILED);
	assert_false(commit_healthy(p));
	assert_int_equal(store_has_assertion(f->store, set.items[1].req.hash), STORE_NOT_FOUND);

	submit_and_wait(p, &set, 2, 1);
	assert_int_equal(set.items[2].req.status, COMMIT_FAILED);
	assert_int_equal(atomic_load(&set.items[2].completions), 1);
	commit_stop(p);

	assert_int_equal(rmdir(blocker), 0);
	p = start_pipeline(f, DURABILITY_IMMEDIATE, 1);
	assert_true(commit_healthy(p));
	assert_int_equal(store_assertion_count(f->store), 1);
	commit_stop(p);
	request_set_free(&set);
}

static void test_commit_rejects_corrupt_wal(void **state)
{
	struct fixture *f = *state;
	struct commit_options options = {.wal_dir = f->wal_dir};
	struct request_set set;
	char path[256];
	char err[512] = "";
	FILE *file;

	request_set_init(f, &set, 900, 3);
	log_without_apply(f, &set, 0, 3);

	/* Damage the first record's payload; the two behind it are intact. */
	snprintf(path, sizeof(path), "%s/%016x.wal", f->wal_dir, 0);
	file = fopen(path, "r+b");
	assert_non_null(file);
	assert_int_equal(fseek(file, WAL_HEADER_SIZE + WAL_RECORD_HEADER_SIZE + 3, SEEK_SET), 0);
	assert_int_equal(fputc('#', file), '#');
	fclose(file);

	assert_null(commit_start(&options, f->store, err, sizeof(err)));
	if (strstr(err, path) == NULL) {
		fail_msg("expected the file %s in the error \"%s\"", path, err);
	}
	assert_int_equal(store_assertion_count(f->store), 0);
	request_set_free(&set);
}

static void test_commit_cursor_past_wal_end(void **state)
{
	struct fixture *f = *state;
	struct request_set set;
	struct commit_stats stats;
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_EVENTUAL, 0);
	char path[256];
	uint64_t cursor = 0;

	request_set_init(f, &set, 1100, 6);
	submit_and_wait(p, &set, 0, 4);
	commit_stop(p);

	/* Lose the WAL tail after the store has the records, as a power loss can in
	 * eventual mode: cut the segment inside its first record. */
	store_close(f->store);
	f->store = open_store(f->db_dir);
	assert_int_equal(store_get_cursor(f->store, &cursor), STORE_OK);
	snprintf(path, sizeof(path), "%s/%016x.wal", f->wal_dir, 0);
	assert_int_equal(truncate(path, WAL_HEADER_SIZE + 40), 0);

	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	commit_get_stats(p, &stats);
	assert_int_equal(stats.wal_end_offset, cursor);
	assert_int_equal(stats.records_replayed, 0);
	assert_int_equal(store_assertion_count(f->store), 4);

	submit_and_wait(p, &set, 4, 2);
	assert_int_equal(set.items[4].req.status, COMMIT_CREATED);
	commit_stop(p);

	p = start_pipeline(f, DURABILITY_IMMEDIATE, 0);
	assert_int_equal(store_assertion_count(f->store), 6);
	commit_stop(p);
	request_set_free(&set);
}

static void test_commit_cursor_before_wal(void **state)
{
	struct fixture *f = *state;
	struct commit_options options = {.wal_dir = f->wal_dir, .segment_bytes = 1};
	struct commit_pipeline *p = start_pipeline(f, DURABILITY_IMMEDIATE, 1);
	struct request_set set;
	struct commit_stats stats;
	char err[512] = "";

	request_set_init(f, &set, 1200, 5);
	submit_and_wait(p, &set, 0, 5);
	commit_get_stats(p, &stats);
	commit_stop(p);

	/* The applied segments are gone, so a fresh store cannot be rebuilt from the WAL. */
	store_close(f->store);
	snprintf(f->db_dir + strlen(f->db_dir), sizeof(f->db_dir) - strlen(f->db_dir), "-new");
	f->store = open_store(f->db_dir);
	assert_null(commit_start(&options, f->store, err, sizeof(err)));
	if (strstr(err, "missing") == NULL) {
		fail_msg("expected \"missing\" in the error \"%s\"", err);
	}
	request_set_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_commit_concurrent_group, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_duplicates, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_replay_after_crash, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_eventual_mode, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_rotation_trims_wal, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_fails_after_wal_error, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_rejects_corrupt_wal, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_cursor_past_wal_end, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_commit_cursor_before_wal, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
