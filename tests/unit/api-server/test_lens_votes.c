/* Unit tests of the vote lens on candidates built by hand, with vote sums from a table. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "lens.h"

#define NOW 1700000000ull

/* Vote sums by the first hash byte of a candidate. */
struct vote_table {
	double sums[256];
	size_t lookups;
};

static double table_votes(void *ctx, const uint8_t hash[STEMEDB_HASH_LEN])
{
	struct vote_table *t = ctx;

	t->lookups++;
	return t->sums[hash[0]];
}

static void fill(struct candidate *c, uint8_t id, bool value, uint64_t timestamp)
{
	memset(c, 0, sizeof(*c));
	c->hash[0] = id;
	c->confidence_micro = 900000;
	c->source_class = SOURCE_CLINICAL;
	c->timestamp = timestamp;
	c->agent_count = 1;
	c->agents[0][0] = id;
	c->object.type = OBJECT_BOOLEAN;
	c->object.boolean = value;
}

static struct lens_params params_for(struct vote_table *t)
{
	struct lens_params p = {.reference_time = NOW, .decay = true};

	p.votes = table_votes;
	p.votes_ctx = t;
	return p;
}

static void assert_near(double seen, double expected, const char *what)
{
	if (fabs(seen - expected) > 1e-9)
		fail_msg("%s: saw %.9f, expected %.9f", what, seen, expected);
}

static void test_vote_parse_and_name(void **state)
{
	enum lens_kind kind = LENS_RECENCY;

	(void)state;
	assert_true(lens_parse("vote", &kind));
	assert_int_equal(kind, LENS_VOTE);
	assert_true(lens_parse("Vote", &kind));
	assert_string_equal(lens_name(LENS_VOTE), "vote");
}

static void test_vote_claim_sums_members(void **state)
{
	struct vote_table t = {{0}, 0};
	struct lens_params p = params_for(&t);
	struct candidate c[3];
	struct lens_result r;

	(void)state;
	/* Two members of the true claim at 0.4 each beat one false candidate at 0.7. */
	fill(&c[0], 1, true, NOW - 30);
	fill(&c[1], 2, false, NOW - 10);
	fill(&c[2], 3, true, NOW - 20);
	t.sums[1] = 0.4;
	t.sums[2] = 0.7;
	t.sums[3] = 0.4;

	lens_resolve(LENS_VOTE, c, 3, &p, &r);

	assert_true(r.has_winner);
	if (r.winner != 2)
		fail_msg("winner %zu, expected 2 (the newest member of the true claim)", r.winner);
	assert_near(r.scores[0], 0.8, "score of candidate 0");
	assert_near(r.scores[1], 0.7, "score of candidate 1");
	assert_near(r.confidence, 0.8 / 1.5, "confidence");
	lens_result_free(&r);
}

static void test_vote_tie_goes_to_newest_claim(void **state)
{
	struct vote_table t = {{0}, 0};
	struct lens_params p = params_for(&t);
	struct candidate c[2];
	struct lens_result r;

	(void)state;
	fill(&c[0], 1, true, NOW - 100);
	fill(&c[1], 2, false, NOW - 50);
	t.sums[1] = 0.5;
	t.sums[2] = 0.5;

	lens_resolve(LENS_VOTE, c, 2, &p, &r);

	if (r.winner != 1)
		fail_msg("winner %zu, expected 1 (newer on a tie)", r.winner);
	assert_near(r.confidence, 0.5, "confidence on a tie");
	lens_result_free(&r);
}

static void test_vote_negative_sums_confidence_zero(void **state)
{
	struct vote_table t = {{0}, 0};
	struct lens_params p = params_for(&t);
	struct candidate c[2];
	struct lens_result r;

	(void)state;
	fill(&c[0], 1, true, NOW - 100);
	fill(&c[1], 2, false, NOW - 50);
	t.sums[1] = -0.2;
	t.sums[2] = -0.9;

	lens_resolve(LENS_VOTE, c, 2, &p, &r);

	if (r.winner != 0)
		fail_msg("winner %zu, expected 0 (the larger negative sum)", r.winner);
	assert_near(r.confidence, 0.0, "confidence without positive sums");
	lens_result_free(&r);
}

static void test_vote_without_lookup_newest_wins(void **state)
{
	struct lens_params p = {.reference_time = NOW, .decay = true};
	struct candidate c[2];
	struct lens_result r;

	(void)state;
	fill(&c[0], 1, true, NOW - 10);
	fill(&c[1], 2, false, NOW - 50);

	lens_resolve(LENS_VOTE, c, 2, &p, &r);

	if (r.winner != 0)
		fail_msg("winner %zu, expected 0 (newest, no votes)", r.winner);
	assert_near(r.confidence, 0.0, "confidence without votes");
	lens_result_free(&r);
}

static void test_vote_nan_sum_ignored(void **state)
{
	struct vote_table t = {{0}, 0};
	struct lens_params p = params_for(&t);
	struct candidate c[2];
	struct lens_result r;

	(void)state;
	fill(&c[0], 1, true, NOW - 100);
	fill(&c[1], 2, false, NOW - 50);
	t.sums[1] = 0.3;
	t.sums[2] = NAN;

	lens_resolve(LENS_VOTE, c, 2, &p, &r);

	if (r.winner != 0)
		fail_msg("winner %zu, expected 0 (NaN counts as no votes)", r.winner);
	assert_near(r.confidence, 1.0, "confidence");
	lens_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_vote_parse_and_name),
	        cmocka_unit_test(test_vote_claim_sums_members),
	        cmocka_unit_test(test_vote_tie_goes_to_newest_claim),
	        cmocka_unit_test(test_vote_negative_sums_confidence_zero),
	        cmocka_unit_test(test_vote_without_lookup_newest_wins),
	        cmocka_unit_test(test_vote_nan_sum_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
