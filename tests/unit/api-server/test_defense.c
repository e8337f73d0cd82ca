/* Unit tests of content defense: MinHash estimates on strings with a known Jaccard
 * similarity, LSH recall on near-identical text, quality score cases and the trust rule
 * against a real store. */

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "defense.h"
#include "trust.h"

static void signature_of(const char *s, uint32_t out[DEFENSE_HASHES])
{
	defense_minhash((const uint8_t *)s, strlen(s), out);
}

static void test_minhash_identical_is_one(void **state)
{
	uint32_t a[DEFENSE_HASHES], b[DEFENSE_HASHES];

	(void)state;
	signature_of("the quick brown fox jumps over the lazy dog", a);
	signature_of("the quick brown fox jumps over the lazy dog", b);
	assert_true(defense_similarity(a, b) == 1.0);
}

static void test_minhash_disjoint_is_near_zero(void **state)
{
	uint32_t a[DEFENSE_HASHES], b[DEFENSE_HASHES];

	(void)state;
	signature_of("abcdefghijklmnop", a);
	signature_of("0123456789+-*/=<", b);
	assert_true(defense_similarity(a, b) < 0.05);
}

/* "abcdefghij" has 8 shingles; "abcdefghijXYZ" adds 3 more (jXY, XYZ, ... ), so the
 * exact Jaccard similarity is 8 / 11 = 0.727. 128 hashes give a standard error of
 * about 0.04, so 0.15 is more than three standard errors. */
static void test_minhash_estimates_known_jaccard(void **state)
{
	uint32_t a[DEFENSE_HASHES], b[DEFENSE_HASHES];
	double estimate;

	(void)state;
	signature_of("abcdefghij", a);
	signature_of("abcdefghijXYZ", b);
	estimate = defense_similarity(a, b);
	assert_true(estimate > 8.0 / 11.0 - 0.15);
	assert_true(estimate < 8.0 / 11.0 + 0.15);
}

static bool share_band(const uint32_t *a, const uint32_t *b)
{
	for (size_t band = 0; band < DEFENSE_BANDS; band++) {
		if (defense_band_hash(a, band) == defense_band_hash(b, band))
			return true;
	}
	return false;
}

/* A one-character edit of a 100-byte text keeps Jaccard near 0.95, where 16 bands of 8
 * rows find a candidate with probability 1 - (1 - 0.95^8)^16, above 0.9999. */
static void test_lsh_recall_near_identical(void **state)
{
	const char *base = "Aspirin at 81 mg daily lowers the risk of a second heart attack in "
	                   "adults with coronary artery disease";
	char edited[256];
	uint32_t a[DEFENSE_HASHES], b[DEFENSE_HASHES];
	size_t found = 0, trials = 0;

	(void)state;
	signature_of(base, a);
	for (size_t at = 0; base[at] != '\0'; at += 3) {
		snprintf(edited, sizeof(edited), "%s", base);
		edited[at] = edited[at] == '#' ? '%' : '#';
		signature_of(edited, b);
		found += share_band(a, b);
		trials++;
	}
	assert_int_equal(found, trials);
}

static void make_assertion(struct assertion *a, const char *subject, const char *predicate,
                           enum object_type type, const char *text, double number)
{
	assertion_init(a);
	assertion_set_subject(a, subject, strlen(subject));
	assertion_set_predicate(a, predicate, strlen(predicate));
	a->object.type = type;
	if (type == OBJECT_NUMBER)
		a->object.number = number;
	else
		object_set_text(&a->object, type, text, strlen(text));
}

static double quality_of(const char *subject, const char *predicate, enum object_type type,
                         const char *text, double number)
{
	struct assertion a;
	struct defense_input in;

	make_assertion(&a, subject, predicate, type, text, number);
	defense_prepare(&a, &in);
	assertion_free(&a);
	return defense_quality(&in, false);
}

static void test_quality_cases(void **state)
{
	(void)state;
	/* Ordinary text: high entropy, long enough, no structure. */
	assert_true(quality_of("drug:aspirin", "treats", OBJECT_TEXT, "headache", 0) >= 0.7);
	/* A number or URL object earns the structure part (0.2 more than plain text). */
	assert_true(quality_of("drug:aspirin", "dose_mg", OBJECT_NUMBER, NULL, 81) >= 0.9);
	assert_true(quality_of("site:example", "homepage", OBJECT_TEXT, "https://example.org", 0) >=
	            0.8);
	/* One repeated byte: no entropy and too few distinct bytes in the subject. */
	assert_true(quality_of("aaaaaaaaaaaa", "status", OBJECT_TEXT, "ok", 0) < 0.4);
	/* A one-byte subject and predicate. */
	assert_true(quality_of("x", "y", OBJECT_TEXT, "z", 0) < 0.4);
}

static void test_quality_trust_penalty(void **state)
{
	struct assertion a;
	struct defense_input in;

	(void)state;
	make_assertion(&a, "drug:aspirin", "treats", OBJECT_TEXT, "headache", 0);
	defense_prepare(&a, &in);
	assertion_free(&a);
	assert_true(defense_quality(&in, false) - defense_quality(&in, true) > 0.199);
	assert_true(defense_quality(&in, false) - defense_quality(&in, true) < 0.201);
}

static void test_entry_round_trip(void **state)
{
	struct quarantine_entry in = {.reason = DEFENSE_DUPLICATE,
	                              .status = QUARANTINE_REJECTED,
	                              .quality = 0.625,
	                              .similarity = 0.96875,
	                              .has_resembled = true,
	                              .created_ms = 1700000000123ull,
	                              .decided_ms = 1700000000456ull};
	struct quarantine_entry out;
	uint8_t value[QUARANTINE_VALUE_LEN];

	(void)state;
	memset(in.agent, 0xab, sizeof(in.agent));
	memset(in.resembled, 0xcd, sizeof(in.resembled));
	quarantine_entry_encode(&in, value);
	assert_int_equal(value[STORE_QUARANTINE_STATUS_AT], QUARANTINE_REJECTED);
	assert_true(quarantine_entry_decode(value, sizeof(value), &out));
	assert_int_equal(out.reason, DEFENSE_DUPLICATE);
	assert_int_equal(out.status, QUARANTINE_REJECTED);
	assert_true(out.quality == 0.625);
	assert_memory_equal(out.resembled, in.resembled, STEMEDB_HASH_LEN);
	assert_int_equal(out.decided_ms, in.decided_ms);
	assert_false(quarantine_entry_decode(value, sizeof(value) - 1, &out));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Decides on one signed-looking assertion of agent with the given confidence at time
 * at_ms. The signature bytes are not checked by defense_decide. */
static enum defense_reason decide(struct store *s, const uint8_t *agent, double confidence,
                                  uint64_t at_ms)
{
	const struct defense_config config = {true, 0.9, 0.4, 0.5, 0.8};
	struct defense_window window;
	struct defense_verdict verdict;
	struct defense_input in;
	struct store_batch *batch = store_batch_new();
	struct assertion a;
	uint8_t hash[STEMEDB_HASH_LEN] = {0};

	make_assertion(&a, "drug:aspirin", "treats", OBJECT_TEXT, "headache", 0);
	a.confidence_micro = confidence_to_micro(confidence);
	a.signature_count = 1;
	memcpy(a.signatures[0].agent_id, agent, STEMEDB_AGENT_ID_LEN);
	hash[0] = (uint8_t)(confidence * 100);
	defense_prepare(&a, &in);
	defense_window_init(&window);
	assert_true(
	        defense_decide(s, &config, &window, &a, hash, &in, at_ms, false, batch, &verdict));
	defense_window_free(&window);
	store_batch_free(batch);
	assertion_free(&a);
	return verdict.reason;
}

/* Stores an inaccurate trust outcome record for agent, as the commit writer applies it. */
static void put_inaccurate_outcome(struct store *s, const uint8_t agent[STEMEDB_AGENT_ID_LEN],
                                   uint64_t timestamp)
{
	static const uint8_t envelope[] = {STEMEDB_RECORD_TRUST_OUTCOME};
	struct store_batch *b = store_batch_new();
	uint8_t id[STEMEDB_HASH_LEN];
	struct record r;
	char err[256];

	record_init(&r, STEMEDB_RECORD_TRUST_OUTCOME);
	memcpy(r.u.trust_outcome.agent_id, agent, STEMEDB_AGENT_ID_LEN);
	r.u.trust_outcome.accurate = false;
	r.u.trust_outcome.timestamp = timestamp;
	assert_true(record_id(&r, id));
	store_batch_put_record(s, b, id, &r, envelope, sizeof(envelope));
	assert_int_equal(store_batch_commit(s, b, 0, err, sizeof(err)), STORE_OK);
	store_batch_free(b);
	record_free(&r);
}

static void test_trust_rule(void **state)
{
	char root[] = "/tmp/stemedb-test-defense-XXXXXX";
	char path[64], err[256];
	uint8_t agent[STEMEDB_AGENT_ID_LEN];
	struct store *s;

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/db", root);
	s = store_open(path, err, sizeof(err));
	assert_non_null(s);
	memset(agent, 0x42, sizeof(agent));

	/* A new agent has trust 0.5, which is not below 0.5. */
	assert_int_equal(decide(s, agent, 0.95, 1700000100000ull), DEFENSE_NONE);
	put_inaccurate_outcome(s, agent, 1700000000);
	/* Trust 0.4 now: confidence above 0.8 is quarantined, 0.8 itself is not. */
	assert_int_equal(decide(s, agent, 0.95, 1700000100000ull),
	                 DEFENSE_UNTRUSTED_HIGH_CONFIDENCE);
	assert_int_equal(decide(s, agent, 0.80, 1700000100000ull), DEFENSE_NONE);
	/* Before the outcome's timestamp the agent was still at 0.5. */
	assert_int_equal(decide(s, agent, 0.95, 1699999999000ull), DEFENSE_NONE);

	store_close(s);
	nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_minhash_identical_is_one),
	        cmocka_unit_test(test_minhash_disjoint_is_near_zero),
	        cmocka_unit_test(test_minhash_estimates_known_jaccard),
	        cmocka_unit_test(test_lsh_recall_near_identical),
	        cmocka_unit_test(test_quality_cases),
	        cmocka_unit_test(test_quality_trust_penalty),
	        cmocka_unit_test(test_entry_round_trip),
	        cmocka_unit_test(test_trust_rule),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
