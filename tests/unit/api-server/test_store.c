/* Unit tests of the RocksDB store against a real database in a temporary directory. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "candidate.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "store.h"

struct fixture {
	char root[64];
	char path[128];
	struct store *store;
	uint8_t secret_key[STEMEDB_SECRET_KEY_LEN];
	uint8_t second_key[STEMEDB_SECRET_KEY_LEN];
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
	strcpy(f->root, "/tmp/stemedb-test-store-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/db", f->root);
	memset(seed, 7, sizeof(seed));
	crypto_sign_seed_keypair(public_key, f->secret_key, seed);
	memset(seed, 9, sizeof(seed));
	crypto_sign_seed_keypair(public_key, f->second_key, seed);
	f->store = open_store(f->path);
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

/* Builds and signs a text claim; hash receives its hash. */
static void make_claim(struct fixture *f, struct assertion *a, const char *subject,
                       const char *predicate, const char *text, uint64_t timestamp,
                       uint8_t hash[STEMEDB_HASH_LEN])
{
	assertion_init(a);
	assertion_set_subject(a, subject, strlen(subject));
	assertion_set_predicate(a, predicate, strlen(predicate));
	object_set_text(&a->object, OBJECT_TEXT, text, strlen(text));
	a->confidence_micro = 750000;
	a->source_class = SOURCE_CLINICAL;
	a->lifecycle = LIFECYCLE_APPROVED;
	a->timestamp = timestamp;
	assert_true(assertion_hash(a, hash));
	assert_true(assertion_sign(a, hash, f->secret_key, timestamp));
}

static void hlc_for(uint64_t n, struct hlc_stamp *hlc)
{
	memset(hlc, 0, sizeof(*hlc));
	hlc->wall_ms = 1700000000000ull + n;
	hlc->logical = (uint32_t)n;
	memset(hlc->node_id, 0xab, sizeof(hlc->node_id));
}

static void put_assertion(struct store_batch *b, const struct assertion *a,
                          const uint8_t hash[STEMEDB_HASH_LEN], uint64_t n)
{
	struct hlc_stamp hlc;
	struct buf envelope;

	hlc_for(n, &hlc);
	buf_init(&envelope);
	assert_true(assertion_encode_envelope(a, &hlc, &envelope));
	store_batch_put_assertion(b, hash, a, &hlc, envelope.data, envelope.len);
	buf_free(&envelope);
}

static void commit_batch(struct store *s, struct store_batch *b, uint64_t new_assertions)
{
	char err[512] = "";
	enum store_result rc = store_batch_commit(s, b, new_assertions, err, sizeof(err));

	if (rc != STORE_OK) {
		fail_msg("store_batch_commit returned %d: %s", rc, err);
	}
}

/* Stores one claim per timestamp under (subject, predicate) in one batch. */
static void store_claims(struct fixture *f, const char *subject, const char *predicate,
                         const uint64_t *timestamps, size_t count)
{
	struct store_batch *b = store_batch_new();

	for (size_t i = 0; i < count; i++) {
		struct assertion a;
		uint8_t hash[STEMEDB_HASH_LEN];
		char text[32];

		snprintf(text, sizeof(text), "value-%llu", (unsigned long long)timestamps[i]);
		make_claim(f, &a, subject, predicate, text, timestamps[i], hash);
		put_assertion(b, &a, hash, i);
		assertion_free(&a);
	}
	commit_batch(f->store, b, count);
	store_batch_free(b);
}

static size_t scan_count(struct store *s, const char *subject, const char *predicate,
                         uint64_t as_of, size_t limit)
{
	struct candidate_list list;
	size_t count;

	candidate_list_init(&list);
	assert_int_equal(store_scan_candidates(s, subject, strlen(subject), predicate,
	                                       strlen(predicate), as_of, limit, &list),
	                 STORE_OK);
	count = list.count;
	candidate_list_free(&list);
	return count;
}

static void test_store_put_get(void **state)
{
	struct fixture *f = *state;
	struct store_batch *b = store_batch_new();
	struct assertion a;
	struct assertion read;
	struct hlc_stamp hlc;
	uint8_t hash[STEMEDB_HASH_LEN];
	uint8_t other[STEMEDB_HASH_LEN] = {1};

	make_claim(f, &a, "aspirin", "treats", "headache", 1000, hash);
	assert_int_equal(store_has_assertion(f->store, hash), STORE_NOT_FOUND);
	put_assertion(b, &a, hash, 5);
	commit_batch(f->store, b, 1);

	assert_int_equal(store_has_assertion(f->store, hash), STORE_OK);
	assert_int_equal(store_has_assertion(f->store, other), STORE_NOT_FOUND);
	assert_int_equal(store_assertion_count(f->store), 1);

	assertion_init(&read);
	assert_int_equal(store_get_assertion(f->store, hash, &read, &hlc), STORE_OK);
	assert_string_equal(read.subject, "aspirin");
	assert_string_equal(read.predicate, "treats");
	assert_string_equal(read.object.text, "headache");
	assert_int_equal(read.confidence_micro, 750000);
	assert_int_equal(read.timestamp, 1000);
	assert_int_equal(read.signature_count, 1);
	assert_memory_equal(read.signatures[0].signature, a.signatures[0].signature,
	                    STEMEDB_SIGNATURE_LEN);
	assert_int_equal(hlc.wall_ms, 1700000000005ull);
	assert_int_equal(hlc.logical, 5);
	assertion_free(&read);

	assertion_init(&read);
	assert_int_equal(store_get_assertion(f->store, other, &read, &hlc), STORE_NOT_FOUND);
	assertion_free(&read);
	assertion_free(&a);
	store_batch_free(b);
}

static void test_store_scan_order(void **state)
{
	struct fixture *f = *state;
	const uint64_t timestamps[] = {30, 10, 20};
	struct candidate_list list;

	store_claims(f, "s", "p", timestamps, 3);
	candidate_list_init(&list);
	assert_int_equal(store_scan_candidates(f->store, "s", 1, "p", 1, UINT64_MAX, 0, &list),
	                 STORE_OK);

	assert_int_equal(list.count, 3);
	assert_int_equal(list.items[0].timestamp, 10);
	assert_int_equal(list.items[1].timestamp, 20);
	assert_int_equal(list.items[2].timestamp, 30);
	assert_string_equal(list.items[0].object.text, "value-10");
	assert_int_equal(list.items[0].object.type, OBJECT_TEXT);
	assert_int_equal(list.items[0].confidence_micro, 750000);
	assert_int_equal(list.items[0].source_class, SOURCE_CLINICAL);
	assert_int_equal(list.items[0].lifecycle, LIFECYCLE_APPROVED);
	assert_int_equal(list.items[0].agent_count, 1);
	assert_int_equal(list.items[0].hlc.logical, 1);
	assert_false(list.items[0].has_epoch);
	candidate_list_free(&list);
}

static void test_store_scan_as_of(void **state)
{
	struct fixture *f = *state;
	const uint64_t timestamps[] = {100, 200, 300};

	store_claims(f, "s", "p", timestamps, 3);
	assert_int_equal(scan_count(f->store, "s", "p", 50, 0), 0);
	assert_int_equal(scan_count(f->store, "s", "p", 150, 0), 1);
	assert_int_equal(scan_count(f->store, "s", "p", 200, 0), 2);
	assert_int_equal(scan_count(f->store, "s", "p", 250, 0), 2);
	assert_int_equal(scan_count(f->store, "s", "p", 300, 0), 3);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 0), 3);
}

static void test_store_scan_limit(void **state)
{
	struct fixture *f = *state;
	const uint64_t timestamps[] = {1, 2, 3, 4, 5};

	store_claims(f, "s", "p", timestamps, 5);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 2), 2);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 5), 5);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 9), 5);
}

static void test_store_scan_prefix_isolation(void **state)
{
	struct fixture *f = *state;
	const uint64_t one[] = {1};
	const uint64_t two[] = {1, 2};
	const uint64_t three[] = {1, 2, 3};

	store_claims(f, "a", "b", one, 1);
	store_claims(f, "a", "bc", two, 2);
	store_claims(f, "ab", "b", three, 3);

	assert_int_equal(scan_count(f->store, "a", "b", UINT64_MAX, 0), 1);
	assert_int_equal(scan_count(f->store, "a", "bc", UINT64_MAX, 0), 2);
	assert_int_equal(scan_count(f->store, "ab", "b", UINT64_MAX, 0), 3);
	assert_int_equal(scan_count(f->store, "a", "c", UINT64_MAX, 0), 0);
}

struct predicate_counts {
	size_t calls;
	size_t stop_after;
	char names[8][16];
	uint64_t counts[8];
};

static bool on_predicate(void *ctx, const char *predicate, size_t predicate_len, uint64_t count)
{
	struct predicate_counts *pc = ctx;

	if (pc->calls < 8 && predicate_len < 16) {
		memcpy(pc->names[pc->calls], predicate, predicate_len);
		pc->names[pc->calls][predicate_len] = '\0';
		pc->counts[pc->calls] = count;
	}
	pc->calls++;
	return pc->stop_after == 0 || pc->calls < pc->stop_after;
}

static void test_store_subject_predicates(void **state)
{
	struct fixture *f = *state;
	const uint64_t two[] = {5, 6};
	const uint64_t three[] = {7, 8, 9};
	struct predicate_counts pc = {0};

	store_claims(f, "s", "p2", three, 3);
	store_claims(f, "s", "p1", two, 2);
	store_claims(f, "s2", "p1", two, 2);
	store_claims(f, "r", "p9", two, 2);

	assert_int_equal(store_subject_predicates(f->store, "s", 1, on_predicate, &pc), STORE_OK);
	assert_int_equal(pc.calls, 2);
	assert_string_equal(pc.names[0], "p1");
	assert_int_equal(pc.counts[0], 2);
	assert_string_equal(pc.names[1], "p2");
	assert_int_equal(pc.counts[1], 3);

	memset(&pc, 0, sizeof(pc));
	pc.stop_after = 1;
	assert_int_equal(store_subject_predicates(f->store, "s", 1, on_predicate, &pc), STORE_OK);
	assert_int_equal(pc.calls, 1);

	memset(&pc, 0, sizeof(pc));
	assert_int_equal(store_subject_predicates(f->store, "none", 4, on_predicate, &pc),
	                 STORE_OK);
	assert_int_equal(pc.calls, 0);
}

static void test_store_set_semantics(void **state)
{
	struct fixture *f = *state;
	struct store_batch *b = store_batch_new();
	struct predicate_counts pc = {0};

	for (uint64_t t = 1; t <= 4; t++) {
		struct assertion a;
		uint8_t hash[STEMEDB_HASH_LEN];

		make_claim(f, &a, "s", t % 2 ? "odd" : "even", "v", t, hash);
		put_assertion(b, &a, hash, t);
		assertion_free(&a);
	}
	store_batch_set_cursor(b, 77);
	commit_batch(f->store, b, 4);
	commit_batch(f->store, b, 0);

	assert_int_equal(store_assertion_count(f->store), 4);
	assert_int_equal(scan_count(f->store, "s", "odd", UINT64_MAX, 0), 2);
	assert_int_equal(scan_count(f->store, "s", "even", UINT64_MAX, 0), 2);
	assert_int_equal(store_subject_predicates(f->store, "s", 1, on_predicate, &pc), STORE_OK);
	assert_int_equal(pc.calls, 2);
	assert_int_equal(pc.counts[0], 2);
	assert_int_equal(pc.counts[1], 2);

	store_close(f->store);
	f->store = open_store(f->path);
	assert_int_equal(store_assertion_count(f->store), 4);
	store_batch_free(b);
}

static void test_store_cursor_persists(void **state)
{
	struct fixture *f = *state;
	struct store_batch *b = store_batch_new();
	uint64_t cursor = 99;
	char err[256] = "";

	assert_int_equal(store_get_cursor(f->store, &cursor), STORE_OK);
	assert_int_equal(cursor, 0);

	store_batch_set_cursor(b, 123456789);
	commit_batch(f->store, b, 0);
	assert_int_equal(store_get_cursor(f->store, &cursor), STORE_OK);
	assert_int_equal(cursor, 123456789);

	assert_int_equal(store_flush(f->store, err, sizeof(err)), STORE_OK);
	store_close(f->store);
	f->store = open_store(f->path);
	assert_int_equal(store_get_cursor(f->store, &cursor), STORE_OK);
	assert_int_equal(cursor, 123456789);
	store_batch_free(b);
}

static void test_store_count_at_reopen(void **state)
{
	struct fixture *f = *state;
	const uint64_t timestamps[] = {1, 2, 3, 4, 5, 6, 7};
	char err[256] = "";

	store_claims(f, "s", "p", timestamps, 7);
	assert_int_equal(store_assertion_count(f->store), 7);
	assert_int_equal(store_flush(f->store, err, sizeof(err)), STORE_OK);
	assert_true(store_disk_bytes(f->store) > 0);

	store_close(f->store);
	f->store = open_store(f->path);
	assert_int_equal(store_assertion_count(f->store), 7);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 0), 7);
}

static bool count_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
	(void)key;
	(void)key_len;
	(void)value;
	(void)value_len;
	(*(size_t *)ctx)++;
	return true;
}

static size_t feed_key_count(struct store *s)
{
	const uint8_t prefix[1] = {STORE_VIEW_FEED};
	struct store_scan scan = {.family = STORE_INDEX_VIEWS, .prefix = prefix, .prefix_len = 1};
	size_t count = 0;

	assert_int_equal(store_index_scan(s, &scan, count_key, &count), STORE_OK);
	return count;
}

/* Deletes every key of the "views" column family with the raw RocksDB API, as if the
 * assertions had been stored before the view indexes existed. */
static void wipe_views_family(const char *path)
{
	rocksdb_options_t *options = rocksdb_options_create();
	char *error = NULL;
	size_t count = 0;
	char **names = rocksdb_list_column_families(options, path, &count, &error);
	rocksdb_column_family_handle_t *handles[16];
	const rocksdb_options_t *cf_options[16];
	rocksdb_writeoptions_t *write_options = rocksdb_writeoptions_create();
	rocksdb_t *db;
	size_t views = count;

	assert_null(error);
	assert_true(count <= 16);
	for (size_t i = 0; i < count; i++) {
		cf_options[i] = options;
		if (strcmp(names[i], "views") == 0)
			views = i;
	}
	assert_true(views < count);
	db = rocksdb_open_column_families(options, path, (int)count, (const char *const *)names,
	                                  cf_options, handles, &error);
	assert_null(error);
	rocksdb_delete_range_cf(db, write_options, handles[views], "", 0, "\xff\xff", 2, &error);
	assert_null(error);
	for (size_t i = 0; i < count; i++)
		rocksdb_column_family_handle_destroy(handles[i]);
	rocksdb_close(db);
	rocksdb_list_column_families_destroy(names, count);
	rocksdb_writeoptions_destroy(write_options);
	rocksdb_options_destroy(options);
}

static void test_store_rebuild_restores_views(void **state)
{
	struct fixture *f = *state;
	const uint64_t timestamps[] = {1, 2, 3, 4, 5};
	_Atomic uint64_t done = 0;
	char err[256] = "";

	store_claims(f, "s", "p", timestamps, 5);
	assert_int_equal(feed_key_count(f->store), 5);
	assert_int_equal(store_flush(f->store, err, sizeof(err)), STORE_OK);
	store_close(f->store);
	wipe_views_family(f->path);
	f->store = open_store(f->path);
	assert_int_equal(feed_key_count(f->store), 0);

	assert_int_equal(store_rebuild_index(f->store, &done, err, sizeof(err)), STORE_OK);
	assert_int_equal(done, 5);
	assert_int_equal(feed_key_count(f->store), 5);
	assert_int_equal(scan_count(f->store, "s", "p", UINT64_MAX, 0), 5);
}

static void test_store_candidate_fields(void **state)
{
	struct fixture *f = *state;
	struct store_batch *b = store_batch_new();
	struct assertion a;
	struct candidate_list list;
	uint8_t hash[STEMEDB_HASH_LEN];

	assertion_init(&a);
	assertion_set_subject(&a, "x", 1);
	assertion_set_predicate(&a, "weight", 6);
	a.object.type = OBJECT_NUMBER;
	a.object.number = -12.5;
	a.confidence_micro = 1000000;
	a.source_class = SOURCE_ANECDOTAL;
	a.lifecycle = LIFECYCLE_PROPOSED;
	a.has_epoch = true;
	memset(a.epoch, 0xee, sizeof(a.epoch));
	a.timestamp = 42;
	assert_true(assertion_hash(&a, hash));
	assert_true(assertion_sign(&a, hash, f->secret_key, 42));
	assert_true(assertion_sign(&a, hash, f->second_key, 43));
	put_assertion(b, &a, hash, 9);
	commit_batch(f->store, b, 1);

	candidate_list_init(&list);
	assert_int_equal(store_scan_candidates(f->store, "x", 1, "weight", 6, UINT64_MAX, 0, &list),
	                 STORE_OK);
	assert_int_equal(list.count, 1);
	assert_int_equal(list.items[0].object.type, OBJECT_NUMBER);
	assert_true(list.items[0].object.number == -12.5);
	assert_true(list.items[0].has_epoch);
	assert_memory_equal(list.items[0].epoch, a.epoch, STEMEDB_HASH_LEN);
	assert_memory_equal(list.items[0].hash, hash, STEMEDB_HASH_LEN);
	assert_int_equal(list.items[0].agent_count, 2);
	assert_memory_equal(list.items[0].agents[1], a.signatures[1].agent_id,
	                    STEMEDB_AGENT_ID_LEN);
	assert_int_equal(list.items[0].timestamp, 42);
	assert_memory_equal(list.items[0].hlc.node_id, "\xab\xab\xab\xab", 4);

	candidate_list_free(&list);
	assertion_free(&a);
	store_batch_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_store_put_get, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_scan_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_scan_as_of, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_scan_limit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_scan_prefix_isolation, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_subject_predicates, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_set_semantics, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_cursor_persists, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_count_at_reopen, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_rebuild_restores_views, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_candidate_fields, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
