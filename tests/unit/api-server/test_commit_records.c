/* WAL replay of the signed records other than assertions: records that were logged but
 * never applied (a crash between the WAL sync and the RocksDB apply) are applied once at
 * start-up, a co-signature finds the assertion logged just before it, and trust outcomes
 * rebuild the trust view. */

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

#include "commit.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/records.h"
#include "store.h"
#include "trust.h"
#include "wal.h"

#define KEY_COUNT 4
#define BASE_TIME 1700000000ull

struct fixture {
	char root[64];
	char wal_dir[128];
	char db_dir[128];
	struct store *store;
	struct wal *wal;
	uint8_t secret[KEY_COUNT][STEMEDB_SECRET_KEY_LEN];
	uint8_t agent[KEY_COUNT][STEMEDB_AGENT_ID_LEN];
	uint64_t next_wall_ms;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512] = "";

	if (f == NULL || sodium_init() < 0)
		return -1;
	strcpy(f->root, "/tmp/stemedb-test-replay-XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	snprintf(f->wal_dir, sizeof(f->wal_dir), "%s/wal", f->root);
	snprintf(f->db_dir, sizeof(f->db_dir), "%s/db", f->root);
	for (int i = 0; i < KEY_COUNT; i++) {
		uint8_t seed[STEMEDB_SEED_LEN];

		memset(seed, 40 + i, sizeof(seed));
		crypto_sign_seed_keypair(f->agent[i], f->secret[i], seed);
	}
	f->store = store_open(f->db_dir, err, sizeof(err));
	if (f->store == NULL)
		fail_msg("store_open(%s) failed: %s", f->db_dir, err);
	f->next_wall_ms = BASE_TIME * 1000;
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

static void open_wal(struct fixture *f)
{
	struct wal_options options = {.dir = f->wal_dir};
	char err[256] = "";

	if (wal_open(&options, &f->wal, err, sizeof(err)) != WAL_OK)
		fail_msg("wal_open(%s) failed: %s", f->wal_dir, err);
}

static void log_payload(struct fixture *f, uint8_t type, const struct buf *payload)
{
	struct wal_record record = {
	        .type = type, .payload = payload->data, .payload_len = payload->len};

	assert_int_equal(wal_append(f->wal, &record, 1, NULL), WAL_OK);
}

/* Logs a clinical claim signed by agent 0 and returns its hash. */
static void log_claim(struct fixture *f, uint8_t hash[STEMEDB_HASH_LEN])
{
	struct hlc_stamp hlc = {.wall_ms = f->next_wall_ms++};
	struct assertion a;
	struct buf envelope;

	assertion_init(&a);
	assertion_set_subject(&a, "drug/x", 6);
	assertion_set_predicate(&a, "treats", 6);
	object_set_text(&a.object, OBJECT_TEXT, "y", 1);
	a.confidence_micro = 900000;
	a.source_class = SOURCE_CLINICAL;
	a.timestamp = BASE_TIME;
	assert_true(assertion_hash(&a, hash));
	assert_true(assertion_sign(&a, hash, f->secret[0], BASE_TIME));
	buf_init(&envelope);
	assert_true(assertion_encode_envelope(&a, &hlc, &envelope));
	log_payload(f, STEMEDB_RECORD_ASSERTION, &envelope);
	buf_free(&envelope);
	assertion_free(&a);
}

/* Signs r by agent, logs it and returns its id. */
static void log_record(struct fixture *f, struct record *r, int agent, uint8_t id[STEMEDB_HASH_LEN])
{
	struct hlc_stamp hlc = {.wall_ms = f->next_wall_ms++};
	struct buf envelope;

	assert_true(record_id(r, id));
	assert_true(record_sign(r, id, f->secret[agent]));
	buf_init(&envelope);
	assert_true(record_encode_envelope(r, &hlc, &envelope));
	log_payload(f, r->type, &envelope);
	buf_free(&envelope);
}

static void log_cosignature(struct fixture *f, const uint8_t hash[STEMEDB_HASH_LEN], int agent,
                            uint8_t id[STEMEDB_HASH_LEN])
{
	struct record r;

	record_init(&r, STEMEDB_RECORD_COSIGNATURE);
	memcpy(r.u.cosignature.assertion_hash, hash, STEMEDB_HASH_LEN);
	memcpy(r.u.cosignature.agent_id, f->agent[agent], STEMEDB_AGENT_ID_LEN);
	r.u.cosignature.timestamp = BASE_TIME + (uint64_t)agent;
	log_record(f, &r, agent, id);
	record_free(&r);
}

static void log_vote(struct fixture *f, const uint8_t hash[STEMEDB_HASH_LEN], int voter,
                     int32_t weight_micro, uint8_t id[STEMEDB_HASH_LEN])
{
	struct record r;

	record_init(&r, STEMEDB_RECORD_VOTE);
	memcpy(r.u.vote.assertion_hash, hash, STEMEDB_HASH_LEN);
	memcpy(r.u.vote.voter, f->agent[voter], STEMEDB_AGENT_ID_LEN);
	r.u.vote.weight_micro = weight_micro;
	r.u.vote.timestamp = BASE_TIME;
	log_record(f, &r, voter, id);
	record_free(&r);
}

static struct commit_pipeline *start_pipeline(struct fixture *f)
{
	struct commit_options options = {.wal_dir = f->wal_dir, .sync_interval_ms = 10};
	char err[512] = "";
	struct commit_pipeline *p;

	memset(options.node_id, 0x24, sizeof(options.node_id));
	p = commit_start(&options, f->store, err, sizeof(err));
	if (p == NULL)
		fail_msg("commit_start failed: %s", err);
	return p;
}

static bool add_weight(void *ctx, const struct store_vote *vote)
{
	int64_t *sum = ctx;

	*sum += vote->weight_micro;
	return true;
}

/* Checks the stored assertion's signer count in its envelope and its sp_index entry, and
 * the sum of counted votes. */
static void assert_replayed_state(struct fixture *f, const uint8_t hash[STEMEDB_HASH_LEN])
{
	struct candidate_list list;
	struct hlc_stamp hlc;
	struct assertion a;
	int64_t vote_sum = 0;

	assertion_init(&a);
	assert_int_equal(store_get_assertion(f->store, hash, &a, &hlc), STORE_OK);
	if (a.signature_count != 3)
		fail_msg("stored assertion has %zu signatures, expected 3", a.signature_count);
	assert_int_equal(assertion_verify_signatures(&a, hash, NULL), SIGNATURES_VALID);
	assertion_free(&a);

	candidate_list_init(&list);
	assert_int_equal(
	        store_scan_candidates(f->store, "drug/x", 6, "treats", 6, UINT64_MAX, 0, &list),
	        STORE_OK);
	if (list.count != 1 || list.items[0].agent_count != 3)
		fail_msg("sp_index: %zu candidates, expected 1 with 3 agents", list.count);
	candidate_list_free(&list);

	assert_int_equal(store_scan_votes(f->store, hash, add_weight, &vote_sum), STORE_OK);
	if (vote_sum != 1250000)
		fail_msg("counted vote sum %lld, expected 1250000", (long long)vote_sum);
	assert_int_equal(store_assertion_count(f->store), 1);
}

static void test_replay_applies_records_once(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[STEMEDB_HASH_LEN];
	uint8_t cosign1[STEMEDB_HASH_LEN], cosign2[STEMEDB_HASH_LEN];
	uint8_t vote1[STEMEDB_HASH_LEN], vote2[STEMEDB_HASH_LEN];
	struct commit_pipeline *p;
	char err[512] = "";

	/* The assertion and its co-signatures share one replay batch. */
	open_wal(f);
	log_claim(f, hash);
	log_cosignature(f, hash, 1, cosign1);
	log_vote(f, hash, 3, 1000000, vote1);
	log_cosignature(f, hash, 2, cosign2);
	log_cosignature(f, hash, 1, cosign1); /* logged twice, as a retried write can be */
	log_vote(f, hash, 2, 250000, vote2);
	assert_int_equal(wal_sync(f->wal), WAL_OK);
	wal_close(f->wal);

	p = start_pipeline(f);
	commit_stop(p);
	assert_replayed_state(f, hash);
	assert_int_equal(store_has_record(f->store, STEMEDB_RECORD_COSIGNATURE, cosign2), STORE_OK);
	assert_int_equal(store_has_record(f->store, STEMEDB_RECORD_VOTE, vote1), STORE_OK);

	/* A second start replays nothing new and changes nothing. */
	store_close(f->store);
	f->store = store_open(f->db_dir, err, sizeof(err));
	assert_non_null(f->store);
	p = start_pipeline(f);
	commit_stop(p);
	assert_replayed_state(f, hash);
}

static void test_replay_into_empty_store(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[STEMEDB_HASH_LEN];
	uint8_t id[STEMEDB_HASH_LEN];
	struct commit_pipeline *p;
	char err[512] = "";
	char moved[160];

	open_wal(f);
	log_claim(f, hash);
	log_cosignature(f, hash, 1, id);
	log_cosignature(f, hash, 2, id);
	log_vote(f, hash, 3, 1000000, id);
	log_vote(f, hash, 2, 250000, id);
	assert_int_equal(wal_sync(f->wal), WAL_OK);
	wal_close(f->wal);
	p = start_pipeline(f);
	commit_stop(p);

	/* A store that lost everything (cursor 0) rebuilds the same state from the WAL. */
	store_close(f->store);
	snprintf(moved, sizeof(moved), "%s/db-old", f->root);
	assert_int_equal(rename(f->db_dir, moved), 0);
	f->store = store_open(f->db_dir, err, sizeof(err));
	assert_non_null(f->store);
	p = start_pipeline(f);
	commit_stop(p);
	assert_replayed_state(f, hash);
}

static void log_trust_outcome(struct fixture *f, int agent, bool accurate, uint64_t timestamp,
                              const char *note)
{
	uint8_t id[STEMEDB_HASH_LEN];
	struct record r;

	record_init(&r, STEMEDB_RECORD_TRUST_OUTCOME);
	memcpy(r.u.trust_outcome.agent_id, f->agent[agent], STEMEDB_AGENT_ID_LEN);
	r.u.trust_outcome.accurate = accurate;
	r.u.trust_outcome.timestamp = timestamp;
	record_set_string(&r.u.trust_outcome.note, &r.u.trust_outcome.note_len, note, strlen(note));
	log_record(f, &r, 0, id);
	record_free(&r);
}

static void assert_trust_counts(struct fixture *f, int agent, uint64_t accurate,
                                uint64_t inaccurate)
{
	struct trust_summary summary;

	assert_int_equal(trust_of_agent(f->store, f->agent[agent], BASE_TIME + 100, &summary),
	                 STORE_OK);
	if (summary.accurate != accurate || summary.inaccurate != inaccurate)
		fail_msg("agent %d: %llu accurate and %llu inaccurate outcomes, expected %llu and "
		         "%llu",
		         agent, (unsigned long long)summary.accurate,
		         (unsigned long long)summary.inaccurate, (unsigned long long)accurate,
		         (unsigned long long)inaccurate);
	assert_int_equal(summary.last_outcome, BASE_TIME + 20);
}

static void test_replay_rebuilds_trust_view(void **state)
{
	struct fixture *f = *state;
	struct commit_pipeline *p;
	char err[512] = "";
	char moved[160];

	open_wal(f);
	log_trust_outcome(f, 1, true, BASE_TIME + 10, "matched the label");
	log_trust_outcome(f, 1, true, BASE_TIME + 10, "matched the label"); /* a retried write */
	log_trust_outcome(f, 1, false, BASE_TIME + 20, "");
	log_trust_outcome(f, 2, false, BASE_TIME + 20, "contradicted the label");
	assert_int_equal(wal_sync(f->wal), WAL_OK);
	wal_close(f->wal);
	p = start_pipeline(f);
	commit_stop(p);
	assert_trust_counts(f, 1, 1, 1);
	assert_trust_counts(f, 2, 0, 1);

	/* A store that lost everything rebuilds the same trust view from the WAL. */
	store_close(f->store);
	snprintf(moved, sizeof(moved), "%s/db-old", f->root);
	assert_int_equal(rename(f->db_dir, moved), 0);
	f->store = store_open(f->db_dir, err, sizeof(err));
	assert_non_null(f->store);
	p = start_pipeline(f);
	commit_stop(p);
	assert_trust_counts(f, 1, 1, 1);
	assert_trust_counts(f, 2, 0, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_replay_applies_records_once, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_replay_into_empty_store, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_replay_rebuilds_trust_view, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
