/* Unit tests of the signed records in the RocksDB store: votes and co-signatures, against
 * a real database in a temporary directory. */

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

#include "candidate.h"
#include "stemedb/assertion.h"
#include "stemedb/buf.h"
#include "stemedb/records.h"
#include "store.h"

#define KEY_COUNT 4
#define BASE_TIME 1700000000ull

struct fixture {
	char root[64];
	struct store *store;
	struct store_batch *batch;
	uint8_t secret[KEY_COUNT][STEMEDB_SECRET_KEY_LEN];
	uint8_t agent[KEY_COUNT][STEMEDB_AGENT_ID_LEN];
	struct assertion claim;
	uint8_t claim_hash[STEMEDB_HASH_LEN];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void commit_batch(struct fixture *f, uint64_t new_assertions)
{
	char err[512] = "";

	if (store_batch_commit(f->store, f->batch, new_assertions, err, sizeof(err)) != STORE_OK)
		fail_msg("store_batch_commit failed: %s", err);
	store_batch_clear(f->batch);
}

/* Stores one clinical text claim signed by agent 0. */
static void store_claim(struct fixture *f)
{
	struct hlc_stamp hlc = {.wall_ms = BASE_TIME * 1000};
	struct buf envelope;

	assertion_init(&f->claim);
	assertion_set_subject(&f->claim, "drug/x", 6);
	assertion_set_predicate(&f->claim, "treats", 6);
	object_set_text(&f->claim.object, OBJECT_TEXT, "y", 1);
	f->claim.confidence_micro = 900000;
	f->claim.source_class = SOURCE_CLINICAL;
	f->claim.timestamp = BASE_TIME;
	assert_true(assertion_hash(&f->claim, f->claim_hash));
	assert_true(assertion_sign(&f->claim, f->claim_hash, f->secret[0], BASE_TIME));

	buf_init(&envelope);
	assert_true(assertion_encode_envelope(&f->claim, &hlc, &envelope));
	store_batch_put_assertion(f->batch, f->claim_hash, &f->claim, &hlc, envelope.data,
	                          envelope.len);
	buf_free(&envelope);
	commit_batch(f, 1);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128];
	char err[512] = "";

	if (f == NULL || sodium_init() < 0)
		return -1;
	strcpy(f->root, "/tmp/stemedb-test-records-XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	for (int i = 0; i < KEY_COUNT; i++) {
		uint8_t seed[STEMEDB_SEED_LEN];

		memset(seed, 20 + i, sizeof(seed));
		crypto_sign_seed_keypair(f->agent[i], f->secret[i], seed);
	}
	snprintf(path, sizeof(path), "%s/db", f->root);
	f->store = store_open(path, err, sizeof(err));
	if (f->store == NULL)
		fail_msg("store_open(%s) failed: %s", path, err);
	f->batch = store_batch_new();
	store_claim(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	assertion_free(&f->claim);
	store_batch_free(f->batch);
	store_close(f->store);
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Signs r by agent and puts it into the batch; id receives the record id. */
static void put_record(struct fixture *f, struct record *r, int agent, uint8_t id[STEMEDB_HASH_LEN])
{
	struct hlc_stamp hlc = {.wall_ms = BASE_TIME * 1000 + 1};
	struct buf envelope;

	assert_true(record_id(r, id));
	assert_true(record_sign(r, id, f->secret[agent]));
	buf_init(&envelope);
	assert_true(record_encode_envelope(r, &hlc, &envelope));
	store_batch_put_record(f->store, f->batch, id, r, envelope.data, envelope.len);
	buf_free(&envelope);
}

static void put_vote(struct fixture *f, int voter, int32_t weight_micro, uint64_t timestamp)
{
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];

	record_init(&r, STEMEDB_RECORD_VOTE);
	memcpy(r.u.vote.assertion_hash, f->claim_hash, STEMEDB_HASH_LEN);
	memcpy(r.u.vote.voter, f->agent[voter], STEMEDB_AGENT_ID_LEN);
	r.u.vote.weight_micro = weight_micro;
	r.u.vote.timestamp = timestamp;
	put_record(f, &r, voter, id);
	record_free(&r);
}

static void put_cosignature(struct fixture *f, int agent, uint64_t timestamp)
{
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];

	record_init(&r, STEMEDB_RECORD_COSIGNATURE);
	memcpy(r.u.cosignature.assertion_hash, f->claim_hash, STEMEDB_HASH_LEN);
	memcpy(r.u.cosignature.agent_id, f->agent[agent], STEMEDB_AGENT_ID_LEN);
	r.u.cosignature.timestamp = timestamp;
	put_record(f, &r, agent, id);
	record_free(&r);
}

struct seen_votes {
	struct store_vote votes[KEY_COUNT];
	size_t count;
};

static bool collect_vote(void *ctx, const struct store_vote *vote)
{
	struct seen_votes *seen = ctx;

	if (seen->count < KEY_COUNT)
		seen->votes[seen->count] = *vote;
	seen->count++;
	return true;
}

static const struct store_vote *vote_of(const struct seen_votes *seen, const uint8_t *voter)
{
	for (size_t i = 0; i < seen->count && i < KEY_COUNT; i++) {
		if (memcmp(seen->votes[i].voter, voter, STEMEDB_AGENT_ID_LEN) == 0)
			return &seen->votes[i];
	}
	fail_msg("no counted vote of voter %02x%02x...", voter[0], voter[1]);
	return NULL;
}

static void test_scan_votes_latest_per_voter(void **state)
{
	struct fixture *f = *state;
	struct seen_votes seen = {.count = 0};
	const struct store_vote *v;

	put_vote(f, 1, 1000000, BASE_TIME + 20);
	put_vote(f, 1, -500000, BASE_TIME + 10); /* older, so it does not count */
	put_vote(f, 2, 250000, BASE_TIME + 5);
	commit_batch(f, 0);
	put_vote(f, 2, 750000, BASE_TIME + 30); /* a later batch replaces voter 2's vote */
	commit_batch(f, 0);

	assert_int_equal(store_scan_votes(f->store, f->claim_hash, collect_vote, &seen), STORE_OK);

	if (seen.count != 2)
		fail_msg("saw %zu counted votes, expected 2", seen.count);
	v = vote_of(&seen, f->agent[1]);
	assert_int_equal(v->weight_micro, 1000000);
	assert_int_equal(v->timestamp, BASE_TIME + 20);
	assert_int_equal(v->superseded, 1);
	v = vote_of(&seen, f->agent[2]);
	assert_int_equal(v->weight_micro, 750000);
	assert_int_equal(v->superseded, 1);
}

static void test_scan_votes_other_assertion_empty(void **state)
{
	struct fixture *f = *state;
	struct seen_votes seen = {.count = 0};
	uint8_t other[STEMEDB_HASH_LEN];

	put_vote(f, 1, 1000000, BASE_TIME);
	commit_batch(f, 0);
	memcpy(other, f->claim_hash, sizeof(other));
	other[STEMEDB_HASH_LEN - 1] ^= 1;

	assert_int_equal(store_scan_votes(f->store, other, collect_vote, &seen), STORE_OK);

	if (seen.count != 0)
		fail_msg("saw %zu votes on an assertion nobody voted on", seen.count);
}

static void test_put_record_then_get(void **state)
{
	struct fixture *f = *state;
	struct record r, back;
	struct hlc_stamp hlc;
	uint8_t id[STEMEDB_HASH_LEN];

	record_init(&r, STEMEDB_RECORD_ALIAS);
	record_set_string(&r.u.alias.subject_a, &r.u.alias.subject_a_len, "brand/a", 7);
	record_set_string(&r.u.alias.subject_b, &r.u.alias.subject_b_len, "ingredient/b", 12);
	r.u.alias.timestamp = BASE_TIME;
	put_record(f, &r, 3, id);
	commit_batch(f, 0);

	record_init(&back, 0);
	assert_int_equal(store_has_record(f->store, STEMEDB_RECORD_ALIAS, id), STORE_OK);
	assert_int_equal(store_has_record(f->store, STEMEDB_RECORD_VOTE, id), STORE_NOT_FOUND);
	assert_int_equal(store_get_record(f->store, STEMEDB_RECORD_ALIAS, id, &back, &hlc),
	                 STORE_OK);
	assert_string_equal(back.u.alias.subject_b, "ingredient/b");
	assert_int_equal(back.signer_count, 1);
	assert_memory_equal(back.signers[0].agent_id, f->agent[3], STEMEDB_AGENT_ID_LEN);
	record_free(&back);
	record_free(&r);
}

/* Signers of the stored assertion and of its sp_index candidate. */
static void assert_signers(struct fixture *f, size_t expected)
{
	struct candidate_list list;
	struct hlc_stamp hlc;
	struct assertion a;
	uint8_t hash[STEMEDB_HASH_LEN];

	assertion_init(&a);
	assert_int_equal(store_get_assertion(f->store, f->claim_hash, &a, &hlc), STORE_OK);
	if (a.signature_count != expected)
		fail_msg("stored assertion has %zu signatures, expected %zu", a.signature_count,
		         expected);
	assert_true(assertion_hash(&a, hash));
	assert_memory_equal(hash, f->claim_hash, STEMEDB_HASH_LEN);
	assert_int_equal(assertion_verify_signatures(&a, hash, NULL), SIGNATURES_VALID);
	assertion_free(&a);

	candidate_list_init(&list);
	assert_int_equal(
	        store_scan_candidates(f->store, "drug/x", 6, "treats", 6, UINT64_MAX, 0, &list),
	        STORE_OK);
	if (list.count != 1 || list.items[0].agent_count != expected)
		fail_msg("sp_index has %zu candidates with %zu agents, expected 1 with %zu",
		         list.count, list.count ? list.items[0].agent_count : 0, expected);
	candidate_list_free(&list);
}

static void test_cosignatures_in_one_batch_both_count(void **state)
{
	struct fixture *f = *state;

	put_cosignature(f, 1, BASE_TIME + 1);
	put_cosignature(f, 2, BASE_TIME + 2);
	commit_batch(f, 0);

	assert_signers(f, 3);
}

static void test_cosignature_applied_twice_changes_nothing(void **state)
{
	struct fixture *f = *state;

	put_cosignature(f, 1, BASE_TIME + 1);
	commit_batch(f, 0);
	put_cosignature(f, 1, BASE_TIME + 1);
	put_cosignature(f, 1, BASE_TIME + 7); /* the same agent again: ignored */
	commit_batch(f, 0);

	assert_signers(f, 2);
}

static void test_cosignature_of_missing_assertion_stores_record(void **state)
{
	struct fixture *f = *state;
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];

	record_init(&r, STEMEDB_RECORD_COSIGNATURE);
	memset(r.u.cosignature.assertion_hash, 0x5a, STEMEDB_HASH_LEN);
	memcpy(r.u.cosignature.agent_id, f->agent[1], STEMEDB_AGENT_ID_LEN);
	r.u.cosignature.timestamp = BASE_TIME;
	put_record(f, &r, 1, id);
	commit_batch(f, 0);

	assert_int_equal(store_has_record(f->store, STEMEDB_RECORD_COSIGNATURE, id), STORE_OK);
	assert_signers(f, 1);
	record_free(&r);
}

struct key_list {
	uint8_t keys[4][1 + 2 * STEMEDB_HASH_LEN + 64];
	size_t lens[4];
	size_t count;
};

static bool collect_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                        size_t value_len)
{
	struct key_list *list = ctx;

	assert_int_equal(value_len, 0);
	(void)value;
	if (list->count < 4 && key_len <= sizeof(list->keys[0])) {
		memcpy(list->keys[list->count], key, key_len);
		list->lens[list->count] = key_len;
	}
	list->count++;
	return true;
}

static void scan_records_prefix(struct fixture *f, const uint8_t *prefix, size_t prefix_len,
                                struct key_list *out)
{
	struct store_scan scan = {
	        .family = STORE_INDEX_RECORDS, .prefix = prefix, .prefix_len = prefix_len};

	memset(out, 0, sizeof(*out));
	assert_int_equal(store_index_scan(f->store, &scan, collect_key, out), STORE_OK);
}

static void test_epoch_writes_superseded_key(void **state)
{
	struct fixture *f = *state;
	struct record old_epoch, new_epoch;
	uint8_t old_id[STEMEDB_HASH_LEN], new_id[STEMEDB_HASH_LEN];
	uint8_t prefix[1 + STEMEDB_HASH_LEN] = {STORE_RECORDS_SUPERSEDED_BY};
	struct key_list keys;

	record_init(&old_epoch, STEMEDB_RECORD_EPOCH);
	record_set_string(&old_epoch.u.epoch.name, &old_epoch.u.epoch.name_len, "old", 3);
	record_set_string(&old_epoch.u.epoch.description, &old_epoch.u.epoch.description_len, "",
	                  0);
	put_record(f, &old_epoch, 1, old_id);
	record_init(&new_epoch, STEMEDB_RECORD_EPOCH);
	record_set_string(&new_epoch.u.epoch.name, &new_epoch.u.epoch.name_len, "new", 3);
	record_set_string(&new_epoch.u.epoch.description, &new_epoch.u.epoch.description_len, "",
	                  0);
	new_epoch.u.epoch.has_supersedes = true;
	memcpy(new_epoch.u.epoch.supersedes, old_id, STEMEDB_HASH_LEN);
	put_record(f, &new_epoch, 1, new_id);
	commit_batch(f, 0);

	memcpy(prefix + 1, old_id, STEMEDB_HASH_LEN);
	scan_records_prefix(f, prefix, sizeof(prefix), &keys);
	if (keys.count != 1)
		fail_msg("saw %zu superseded-by keys of the old epoch, expected 1", keys.count);
	assert_memory_equal(keys.keys[0] + 1 + STEMEDB_HASH_LEN, new_id, STEMEDB_HASH_LEN);

	memcpy(prefix + 1, new_id, STEMEDB_HASH_LEN);
	scan_records_prefix(f, prefix, sizeof(prefix), &keys);
	if (keys.count != 0)
		fail_msg("saw %zu superseded-by keys of the new epoch, expected 0", keys.count);
	record_free(&old_epoch);
	record_free(&new_epoch);
}

static void test_alias_writes_key_each_way(void **state)
{
	struct fixture *f = *state;
	struct record r;
	uint8_t id[STEMEDB_HASH_LEN];
	struct buf prefix;
	struct key_list keys;

	record_init(&r, STEMEDB_RECORD_ALIAS);
	record_set_string(&r.u.alias.subject_a, &r.u.alias.subject_a_len, "brand", 5);
	record_set_string(&r.u.alias.subject_b, &r.u.alias.subject_b_len, "ingredient", 10);
	put_record(f, &r, 2, id);
	commit_batch(f, 0);
	buf_init(&prefix);

	store_alias_prefix(&prefix, "brand", 5);
	scan_records_prefix(f, prefix.data, prefix.len, &keys);
	if (keys.count != 1 || keys.lens[0] != prefix.len + 10 ||
	    memcmp(keys.keys[0] + prefix.len, "ingredient", 10) != 0)
		fail_msg("alias keys of 'brand': %zu, expected one naming 'ingredient'",
		         keys.count);

	buf_reset(&prefix);
	store_alias_prefix(&prefix, "ingredient", 10);
	scan_records_prefix(f, prefix.data, prefix.len, &keys);
	if (keys.count != 1 || memcmp(keys.keys[0] + prefix.len, "brand", 5) != 0)
		fail_msg("alias keys of 'ingredient': %zu, expected one naming 'brand'",
		         keys.count);

	/* "bran" is a byte prefix of "brand" but its length field differs. */
	buf_reset(&prefix);
	store_alias_prefix(&prefix, "bran", 4);
	scan_records_prefix(f, prefix.data, prefix.len, &keys);
	if (keys.count != 0)
		fail_msg("alias keys of 'bran': %zu, expected 0", keys.count);
	buf_free(&prefix);
	record_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_scan_votes_latest_per_voter, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_scan_votes_other_assertion_empty, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_put_record_then_get, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_cosignatures_in_one_batch_both_count, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_cosignature_applied_twice_changes_nothing,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_cosignature_of_missing_assertion_stores_record,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_epoch_writes_superseded_key, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_alias_writes_key_each_way, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
